"""The read models always equal a fresh replay of the events.

After random histories, after a projection fails part-way through a
batch, after two processes catch up at once, and after a tampered row is
repaired by a rebuild.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.addresses import parse_address, parse_range, parse_subnet
from ledger.aggregate import CommandContext
from ledger.application import Ledger
from ledger.errors import LedgerError
from ledger.storage import environment_for
from projections.compare import compare_stored, compare_with_replay
from projections.queries import free_space, occupancy_of
from projections.runner import NAMES, ReadModels

SUBNETS = ("192.168.0.0/29", "192.168.1.0/29", "192.168.0.0/28")
counter = itertools.count()


def context() -> CommandContext:
    number = next(counter)
    reason = f"reason {number}" if number % 3 else None
    return CommandContext(actor=f"actor-{number % 3}", request_id=str(uuid.uuid4()), reason=reason)


@pytest.fixture
def ledger(db_url: str) -> Iterator[Ledger]:
    opened = Ledger(env=environment_for(db_url))
    yield opened
    opened.close()


OPERATIONS = st.one_of(
    st.tuples(st.just("create")),
    st.tuples(st.just("create_ip"), st.integers(1, 14)),
    st.tuples(st.just("create_subnet"), st.sampled_from(SUBNETS), st.integers(1, 6)),
    st.tuples(st.just("destroy"), st.integers(0, 9)),
    st.tuples(st.just("allocate"), st.integers(1, 2)),
    st.tuples(st.just("release"), st.integers(1, 14)),
    st.tuples(st.just("catch_up")),
)


def apply_operation(ledger: Ledger, models: ReadModels, network: str, operation: tuple[Any, ...]) -> None:
    """Run one command; refusals are part of a random history and write nothing."""
    kind, *args = operation
    names = [f"c{index}" for index in range(10)]
    try:
        if kind == "create":
            ledger.create_container(network, context(), f"c{next(counter) % 10}")
        elif kind == "create_ip":
            ledger.create_container(network, context(), f"c{next(counter) % 10}", ip=parse_address(f"10.0.0.{args[0]}"))
        elif kind == "create_subnet":
            subnet = parse_subnet(args[0])
            ip = parse_address(str(subnet.network_address + args[1]))
            ledger.create_container(network, context(), f"c{next(counter) % 10}", ip=ip, subnet=subnet)
        elif kind == "destroy":
            ledger.destroy_container(network, names[args[0]], context())
        elif kind == "allocate":
            ledger.allocate(network, args[0], context())
        elif kind == "release":
            ledger.release(network, [parse_address(f"10.0.0.{args[0]}")], context())
        else:
            models.catch_up()
    except LedgerError:
        pass


def aggregate_free_ranges(ledger: Ledger, network: str) -> list[tuple[str, str]]:
    net = ledger.network(network).net
    free = net.pool.pool.subtract(net.pool.alloc)
    return [(str(net.address(first)), str(net.address(last))) for first, last in free.ranges()]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=st.lists(OPERATIONS, min_size=1, max_size=25))
def test_random_history_matches_replay(ledger: Ledger, operations: list[tuple[Any, ...]]) -> None:
    network = f"n{uuid.uuid4().hex[:10]}"
    ledger.create_network(network, [parse_range("10.0.0.0/28")], [], "round-robin", context())
    models = ReadModels(ledger, batch_size=7)

    for operation in operations:
        apply_operation(ledger, models, network, operation)

    assert compare_with_replay(ledger, network) is None
    space = free_space(models, network, None)
    assert [(str(first), str(last)) for first, last in space.ranges] == aggregate_free_ranges(ledger, network)
    (occupancy,) = occupancy_of(models, network)
    containers = ledger.network(network).net.containers
    pool, *subnets = occupancy.scopes
    assert pool.containers == sorted(containers)
    assert sorted(name for scope in subnets for name in scope.containers) == sorted(
        name for name, container in containers.items() if not container.pooled
    )


def busy_history(ledger: Ledger, containers: int) -> None:
    ledger.create_network("web", [parse_range("10.0.0.0/24")], [], "lowest", context())
    for index in range(containers):
        ledger.create_container("web", context(), f"c{index}")
        if index % 3 == 2:
            ledger.destroy_container("web", f"c{index - 1}", context())


def crash_after(models: ReadModels, name: str, calls: int) -> None:
    """Make one read model raise inside its transaction at its ``calls``-th event."""
    model = models.models[name]
    original = model.apply
    seen = itertools.count(1)

    def apply(domain_event: Any, tracking: Any, session: Any) -> None:
        if next(seen) == calls:
            raise RuntimeError("simulated crash")
        original(domain_event, tracking, session)

    model.apply = apply  # type: ignore[method-assign]


def test_crash_mid_batch_keeps_tracking_consistent(ledger: Ledger) -> None:
    busy_history(ledger, 12)  # 1 + 12 * 3 + 4 * 2 = 45 events
    head = ledger.recorder.max_notification_id()
    crashing = ReadModels(ledger, batch_size=10)
    crash_after(crashing, "occupancy", 25)

    with pytest.raises(RuntimeError, match="simulated crash"):
        crashing.catch_up()

    assert head == 45
    assert {status.name: status.position for status in crashing.status()} == {
        "free_addresses": 30, "occupancy": 20, "address_history": 20,
    }
    assert compare_stored(crashing) is None

    applied = ReadModels(ledger, batch_size=10).catch_up()

    assert applied == {"free_addresses": 15, "occupancy": 25, "address_history": 25}
    assert compare_with_replay(ledger) is None
    assert free_space(crashing, "web", None).allocated == len(ledger.network("web").net.pool.alloc)


def test_concurrent_catch_up_applies_once(db_url: str, ledger: Ledger) -> None:
    busy_history(ledger, 9)
    other_ledger = Ledger(env=environment_for(db_url))
    first, second = ReadModels(ledger, batch_size=10), ReadModels(other_ledger, batch_size=10)
    interleaved: list[int] = []

    def let_the_other_run(position: int, head: int) -> None:
        if not interleaved:
            interleaved.append(position)
            second_applied.update(second.catch_up())

    second_applied: dict[str, int] = {}
    first_applied = first.catch_up(let_the_other_run)
    other_ledger.close()

    head = ledger.recorder.max_notification_id()
    assert interleaved == [10]
    assert first_applied == dict.fromkeys(NAMES, 10)
    assert second_applied == dict.fromkeys(NAMES, head - 10)
    assert compare_stored(first) is None


def test_rebuild_repairs_tampered_row(ledger: Ledger) -> None:
    busy_history(ledger, 3)
    models = ReadModels(ledger)
    models.catch_up()
    store = models.models["free_addresses"].view
    with store.datastore.transaction(commit=True) as cursor:  # type: ignore[attr-defined]
        cursor.execute("UPDATE free_addresses_networks SET allocated = 99")

    before = compare_with_replay(ledger)
    models.rebuild(["free_addresses"])

    assert before == (
        "read model free_addresses at position 12 differs from a replay of the log: "
        "network web allocated: stored 99, a replay gives 4"
    )
    assert compare_with_replay(ledger) is None
    assert [status.position for status in models.status()] == [12, 12, 12]


def test_catch_up_rejects_contradicting_view(ledger: Ledger) -> None:
    busy_history(ledger, 1)
    models = ReadModels(ledger)
    models.catch_up()
    store = models.models["free_addresses"].view
    with store.datastore.transaction(commit=True) as cursor:  # type: ignore[attr-defined]
        cursor.execute("DELETE FROM free_addresses_ranges")
    ledger.create_container("web", context(), "late")

    with pytest.raises(LedgerError) as raised:
        models.catch_up()

    assert raised.value.exit_code == 3
    assert raised.value.message == (
        "free-addresses read model: address 10.0.0.3 of network web is not free although an event "
        "allocates it; run 'netledger projections rebuild'"
    )
    assert models.models["free_addresses"].view.position() == 4


def test_compare_by_url_limits_to_network(db_url: str, ledger: Ledger) -> None:
    busy_history(ledger, 3)  # network web, positions 1-12
    ledger.create_network("db", [parse_range("10.1.0.0/24")], [], "lowest", context())
    ledger.create_container("db", context(), "pg")  # positions 14-16
    models = ReadModels(ledger)
    models.catch_up()
    store = models.models["occupancy"].view
    with store.datastore.transaction(commit=True) as cursor:  # type: ignore[attr-defined]
        cursor.execute("DELETE FROM occupancy_members WHERE container_id = 'pg'")

    assert compare_with_replay(db_url, "web") is None
    assert compare_with_replay(db_url, "db") == (
        "read model occupancy at position 16 differs from a replay of the log: "
        "network db members pg: missing from the stored read model, a replay has (None, '10.1.0.1')"
    )
    assert compare_with_replay(db_url) == compare_with_replay(db_url, "db")
    with pytest.raises(LedgerError, match="network nosuch not found"):
        compare_with_replay(db_url, "nosuch")


def table_rows(models: ReadModels) -> dict[str, list[tuple[Any, ...]]]:
    """Return every row of every read model's tables, sorted, by table name."""
    dumped: dict[str, list[tuple[Any, ...]]] = {}
    for name, model in models.models.items():
        for table in model.schema.tables:
            _, rows = models.read(name, lambda session, table=table: session.all("SELECT * FROM {" + table + "}"))
            dumped[table] = sorted(rows, key=repr)
    return dumped


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=st.lists(OPERATIONS, min_size=1, max_size=30))
def test_rebuild_matches_catch_up(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch, operations: list[tuple[Any, ...]]
) -> None:
    import projections.fold

    # A small spool moves closed rows to its file while the rebuild runs.
    monkeypatch.setattr(projections.fold, "SPOOL_ROWS", 2)
    for network in (f"n{uuid.uuid4().hex[:10]}", f"m{uuid.uuid4().hex[:10]}"):
        ledger.create_network(network, [parse_range("10.0.0.0/28")], [], "lowest", context())
    models = ReadModels(ledger, batch_size=5)
    networks = ledger.network_names()[-2:]
    for index, operation in enumerate(operations):
        apply_operation(ledger, models, networks[index % 2], operation)
    models.catch_up()
    caught_up = table_rows(models)

    applied = models.rebuild(list(NAMES))

    assert table_rows(models) == caught_up
    assert set(applied) == set(NAMES)
    assert all(model.view.position() == models.head() for model in models.models.values())


def test_spooled_rebuild_matches_catch_up(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    import projections.fold
    import projections.rebuild

    network = f"n{uuid.uuid4().hex[:10]}"
    ledger.create_network(network, [parse_range("10.0.0.0/28")], [], "lowest", context())
    models = ReadModels(ledger, batch_size=5)
    operations = [("create",), ("create_ip", 9), ("create_subnet", SUBNETS[0], 3), ("destroy", 1), ("allocate", 2)]
    for operation in [*operations * 4, ("release", 2), ("destroy", 0)]:
        apply_operation(ledger, models, network, operation)
    models.catch_up()
    caught_up = table_rows(models)
    # Closed tenancies and lives move to the spool's file every three rows.
    monkeypatch.setattr(projections.fold, "SPOOL_ROWS", 3)
    for model in models.models.values():
        model.view.reset()

    # The rebuild alone, without the catch-up that ReadModels.rebuild runs after it.
    applied = projections.rebuild.rebuild(models, list(NAMES))

    assert table_rows(models) == caught_up
    assert len(caught_up["address_history_tenancies"]) > 6
    assert applied == dict.fromkeys(NAMES, models.head())
    assert all(model.view.position() == models.head() for model in models.models.values())


def network_events(ledger: Ledger, network: str) -> list[Any]:
    """Return the decoded events of one network, oldest first."""
    from ledger.aggregate import network_id

    stored = ledger.recorder.select_events(network_id(network))
    return [ledger.mapper.to_domain_event(item) for item in stored]


def test_folds_reject_contradicting_log(ledger: Ledger) -> None:
    import sqlite3

    from ledger.aggregate import ContainerCreated, IpAllocated, NetworkCreated
    from projections.fold import LogContradiction
    from projections.free import FreeAddressesFold
    from projections.occupancy import OccupancyFold

    network = f"n{uuid.uuid4().hex[:10]}"
    ledger.create_network(network, [parse_range("10.0.0.0/28")], [], "lowest", context())
    ledger.create_container(network, context(), "c1")
    events = network_events(ledger, network)
    created = next(event for event in events if isinstance(event, NetworkCreated))
    allocated = next(event for event in events if isinstance(event, IpAllocated))
    container = next(event for event in events if isinstance(event, ContainerCreated))
    connection = sqlite3.connect(":memory:")

    free = FreeAddressesFold(connection)
    free.apply(created, 1)
    free.apply(allocated, 2)
    with pytest.raises(LogContradiction, match=f"position 3 of network {network} allocates 10.0.0.1, which is not free"):
        free.apply(allocated, 3)

    occupancy = OccupancyFold(connection)
    occupancy.apply(created, 1)
    occupancy.apply(container, 4)
    with pytest.raises(LogContradiction, match=f"position 5 of network {network} creates container c1, which exists"):
        occupancy.apply(container, 5)
