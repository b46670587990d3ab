"""Retries by request id return the original result and append nothing.

Container create and destroy and pool allocate and release record their
request id, arguments and result in the network's bounded record of recent
requests (``ledger.requests``). A retry with the same id and arguments
returns the recorded result; the same id with other arguments is refused.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cli.main import app
from ledger import errors
from ledger.addresses import build_pool, parse_range
from ledger.aggregate import CommandContext, Network, network_id
from ledger.application import SNAPSHOT_INTERVAL, Ledger
from ledger.pool import NetworkPool
from ledger.requests import CREATE, DESTROY, RecentRequests, RequestRecord, _line_of, _record_from
from ledger.storage import environment_for
from tests.reliability_support import replay_checking_invariants, stored_events


def context(request_id: str) -> CommandContext:
    return CommandContext(actor="test", request_id=request_id)


@pytest.fixture
def ledger(db_url: str) -> Iterator[Ledger]:
    opened = Ledger(env=environment_for(db_url))
    opened.create_network("web", [parse_range("10.1.0.0/24")], [], "lowest", context("network"))
    yield opened
    opened.close()


def test_create_retry_returns_original_and_appends_nothing(ledger: Ledger) -> None:
    first = ledger.create_container("web", context("r1"), "a1")
    count = ledger.event_count()

    again = ledger.create_container("web", context("r1"), "a1")

    assert again == first
    assert (str(again.ip), str(again.gw)) == ("10.1.0.1", "10.1.0.2")
    assert ledger.event_count() == count


def test_subnet_create_retry_returns_original(ledger: Ledger) -> None:
    subnet = ipaddress.ip_network("192.168.5.0/24")
    ip = ipaddress.ip_address("192.168.5.7")
    first = ledger.create_container("web", context("r1"), "s1", ip, subnet)
    count = ledger.event_count()

    again = ledger.create_container("web", context("r1"), "s1", ip, subnet)

    assert again == first
    assert again.pooled is False
    assert ledger.event_count() == count


def test_destroy_retry_returns_original_release(ledger: Ledger) -> None:
    ledger.create_container("web", context("r1"), "a1")
    released = ledger.destroy_container("web", "a1", context("d1"))
    count = ledger.event_count()

    again = ledger.destroy_container("web", "a1", context("d1"))

    assert [str(address) for address in again] == ["10.1.0.1", "10.1.0.2"]
    assert again == released
    assert ledger.event_count() == count


def test_pool_allocate_and_release_retries_return_originals(ledger: Ledger) -> None:
    chosen = ledger.allocate("web", 2, context("a1"))
    assert ledger.allocate("web", 2, context("a1")) == chosen
    addresses = [*chosen, ipaddress.ip_address("10.9.9.9")]
    released = ledger.release("web", addresses, context("rel1"))
    count = ledger.event_count()

    again = ledger.release("web", list(reversed(addresses)), context("rel1"))

    assert again == released
    assert again[1] == {"10.9.9.9": "not in the pool"}
    assert ledger.event_count() == count


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(lambda ledger: ledger.create_container("web", context("r1"), "a2"), id="other-id"),
        pytest.param(
            lambda ledger: ledger.create_container("web", context("r1"), "a1", ipaddress.ip_address("10.1.0.1")),
            id="ip-added",
        ),
        pytest.param(lambda ledger: ledger.destroy_container("web", "a1", context("r1")), id="destroy"),
        pytest.param(lambda ledger: ledger.allocate("web", 1, context("r1")), id="allocate"),
    ],
)
def test_reused_request_id_is_rejected(ledger: Ledger, command: Any) -> None:
    ledger.create_container("web", context("r1"), "a1")
    count = ledger.event_count()

    with pytest.raises(errors.RequestIdReused) as refused:
        command(ledger)

    assert refused.value.message == (
        "request id r1 was already used on network web for 'container create --id a1'; "
        "repeat that command exactly to retry it, or give a new request id"
    )
    assert refused.value.exit_code == 1
    assert ledger.event_count() == count


def test_retry_after_snapshot_and_reopen(db_url: str, ledger: Ledger) -> None:
    first = ledger.create_container("web", context("r1"), "a1")
    for i in range(SNAPSHOT_INTERVAL // 3 + 1):
        ledger.create_container("web", context(f"fill-{i}"), f"f{i}")
    ledger.close()

    reopened = Ledger(env=environment_for(db_url))
    snapshots = list(reopened.snapshots.get(network_id("web"))) if reopened.snapshots else []
    count = reopened.event_count()
    again = reopened.create_container("web", context("r1"), "a1")
    count_after = reopened.event_count()
    reopened.close()

    assert len(snapshots) == 1
    assert again == first
    assert count_after == count


def test_record_rebuilt_by_replay_equals_snapshot(db_url: str, ledger: Ledger) -> None:
    for i in range(40):
        ledger.create_container("web", context(f"c{i}"), f"c{i}")
    for i in range(0, 40, 3):
        ledger.destroy_container("web", f"c{i}", context(f"d{i}"))
    ledger.allocate("web", 2, context("alloc"))

    from_snapshot = ledger.network("web").net.requests
    replayed = replay_checking_invariants(stored_events(db_url))["web"].net.requests

    assert replayed.to_text() == from_snapshot.to_text()
    assert len(replayed) == 40 + 14 + 1
    assert replayed.get("d3") == RequestRecord(DESTROY, ("c3",), (("10.1.0.7", "10.1.0.8"),))


def test_racing_retry_returns_winner_result(
    db_url: str, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    rival = Ledger(env=environment_for(db_url))
    load = ledger._command_network
    raced = []

    def load_then_lose_the_race(name: str) -> Any:
        loaded = load(name)
        if not raced:
            raced.append(rival.create_container("web", context("r1"), "a1"))
        return loaded

    monkeypatch.setattr(ledger, "_command_network", load_then_lose_the_race)
    result = ledger.create_container("web", context("r1"), "a1")
    rival.close()

    assert result == raced[0]
    assert ledger.conflict_retries == 1
    assert ledger.event_count() == 1 + 3


def record(n: int) -> RequestRecord:
    return RequestRecord(CREATE, (f"c{n}", None, None), (f"10.0.0.{n}", f"10.0.1.{n}"))


def test_record_keeps_only_the_newest_requests() -> None:
    recent = RecentRequests(limit=3)
    for n in range(5):
        recent.add(f"r{n}", record(n), at=1000 + n)

    assert len(recent) == 3
    assert recent.get("r1") is None
    assert recent.get("r2") == record(2)
    reloaded = RecentRequests(recent.to_text(), limit=3)
    reloaded.add("r5", record(5), at=1005)
    assert reloaded.get("r2") is None
    assert [reloaded.get(f"r{n}") for n in (3, 4, 5)] == [record(3), record(4), record(5)]


def test_record_forgets_requests_older_than_window() -> None:
    recent = RecentRequests(limit=100, window=60)
    recent.add("old", record(1), at=1000)
    recent.add("mid", record(2), at=1030)
    recent.add("new", record(3), at=1061)

    assert recent.get("old") is None
    assert recent.get("mid") == record(2)
    assert len(recent) == 2


def test_snapshot_record_forgets_older_than_window() -> None:
    recent = RecentRequests(limit=100, window=60)
    for n in range(4):
        recent.add(f"r{n}", record(n), at=1000 + 10 * n)
    reloaded = RecentRequests(recent.to_text(), limit=100, window=60)

    reloaded.add("late", record(5), at=1075)
    assert [reloaded.get(f"r{n}") for n in range(4)] == [None, None, record(2), record(3)]
    reloaded.add("later", record(6), at=1085)
    assert reloaded.get("r2") is None
    assert reloaded.get("r3") == record(3)
    assert len(reloaded) == 3


def test_record_escapes_request_ids_with_separators() -> None:
    strange = "a b|c,d=e%f\u00e9"
    recent = RecentRequests()
    recent.add(strange, record(1), at=1000)
    recent.add("a", record(2), at=1000)
    reloaded = RecentRequests(recent.to_text())

    assert reloaded.get(strange) == record(1)
    assert reloaded.get("a") == record(2)
    assert reloaded.get("a b") is None


def test_retry_without_requested_ip_rejected(db_url: str, ledger: Ledger) -> None:
    chosen = ipaddress.ip_address("10.1.0.9")
    ledger.create_container("web", context("r1"), "a1", chosen)

    with pytest.raises(errors.RequestIdReused) as refused:
        ledger.create_container("web", context("r1"), "a1")

    assert "'container create --id a1 --ip 10.1.0.9'" in refused.value.message
    replayed = replay_checking_invariants(stored_events(db_url))["web"].net.requests
    assert replayed.get("r1") == RequestRecord(CREATE, ("a1", "10.1.0.9", None), ("10.1.0.9", "10.1.0.1"))


runner = CliRunner()


def test_cli_retried_create_prints_same_container(sqlite_url: str) -> None:
    runner.invoke(app, ["network", "create", "web", "--pool", "10.2.0.0/24", "--db", sqlite_url])

    first = runner.invoke(app, ["container", "create", "web", "--request-id", "job-7", "--db", sqlite_url])
    again = runner.invoke(app, ["container", "create", "web", "--request-id", "job-7", "--db", sqlite_url])
    other = runner.invoke(
        app, ["container", "create", "web", "--id", "x1", "--request-id", "job-7", "--db", sqlite_url]
    )

    replayed_note = "request job-7 was already applied: this is its recorded result, and nothing was written\n"
    assert first.exit_code == again.exit_code == 0
    assert again.stdout == first.stdout + replayed_note
    assert first.stdout.startswith("created container c-")
    assert "ip 10.2.0.1 subnet 10.2.0.1/32 gateway 10.2.0.2" in first.stdout
    assert other.exit_code == 1
    assert other.stderr.startswith("error: request id job-7 was already used on network web for 'container create --id c-")


def test_indexed_lookup_agrees_with_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    """After a few lookups the snapshot's text is indexed. Results must not change, before or after evictions."""
    import ledger.requests

    def record(number: int) -> RequestRecord:
        return RequestRecord(CREATE, (f"c{number}", None, None), ("10.0.0.1", "10.0.0.2"))

    source = RecentRequests(limit=50, window=10**9)
    ids = [f"r{number % 60}" if number % 7 == 0 else f"r{number}" for number in range(80)]
    for number, request_id in enumerate(ids):
        source.add(request_id, record(number), 1000 + number)
    indexed = RecentRequests(source.to_text(), limit=50, window=10**9)
    scanned = RecentRequests(source.to_text(), limit=50, window=10**9)
    probes = [*ids, "never-seen"]

    def compare() -> None:
        for request_id in probes:
            found = indexed.get(request_id)
            monkeypatch.setattr(ledger.requests, "INDEX_AFTER_SCANS", 10**9)
            assert found == scanned.get(request_id), request_id
            monkeypatch.setattr(ledger.requests, "INDEX_AFTER_SCANS", 2)

    compare()
    for number in range(30):
        indexed.add(f"new{number}", record(number), 5000 + number)
        scanned.add(f"new{number}", record(number), 5000 + number)
    compare()
    assert indexed._offsets is not None
    assert scanned._offsets is None


@pytest.mark.parametrize(
    "command",
    [["pool", "allocate", "web"], ["pool", "release", "web", "10.2.0.3"], ["container", "destroy", "web", "a1"]],
    ids=" ".join,
)
def test_cli_retry_says_nothing_written(sqlite_url: str, command: list[str]) -> None:
    runner.invoke(app, ["network", "create", "web", "--pool", "10.2.0.0/24", "--db", sqlite_url])
    runner.invoke(app, ["container", "create", "web", "--id", "a1", "--db", sqlite_url])
    runner.invoke(app, ["pool", "allocate", "web", "--db", sqlite_url])  # 10.2.0.3, for the release

    first = runner.invoke(app, [*command, "--request-id", "job-8", "--db", sqlite_url])
    again = runner.invoke(app, [*command, "--request-id", "job-8", "--db", sqlite_url])

    assert first.exit_code == again.exit_code == 0, again.output
    assert "already applied" not in first.stdout
    assert again.stdout.endswith("request job-8 was already applied: this is its recorded result, and nothing was written\n")


@pytest.mark.parametrize(
    "command",
    [
        ["container", "create", "web", "--id", "b1"],
        ["pool", "allocate", "web"],
        ["pool", "release", "web", "10.2.0.3"],
        ["container", "destroy", "web", "a1"],
    ],
    ids=" ".join,
)
def test_cli_json_retry_is_marked(sqlite_url: str, command: list[str]) -> None:
    runner.invoke(app, ["network", "create", "web", "--pool", "10.2.0.0/24", "--db", sqlite_url])
    runner.invoke(app, ["container", "create", "web", "--id", "a1", "--db", sqlite_url])
    runner.invoke(app, ["pool", "allocate", "web", "--db", sqlite_url])  # 10.2.0.3, for the release

    first = runner.invoke(app, [*command, "--request-id", "job-9", "--json", "--db", sqlite_url])
    again = runner.invoke(app, [*command, "--request-id", "job-9", "--json", "--db", sqlite_url])

    assert first.exit_code == again.exit_code == 0, again.output
    first_output = json.loads(first.stdout)
    again_output = json.loads(again.stdout)
    assert first_output.pop("replayed") is False
    assert again_output.pop("replayed") is True
    assert again_output == first_output


class EagerRequests(RecentRequests):
    """A record that makes each line when the request is added, for comparison."""

    def _add(self, request_id: str, source: Any, at: int) -> None:
        super()._add(request_id, _line_of(request_id, _record_from(source), at), at)


# Steps of the comparison below: a command on the network, or a snapshot of the record.
steps = st.lists(
    st.sampled_from(["create", "create", "destroy", "allocate", "allocate two", "release", "snapshot"]),
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(steps, st.integers(min_value=1, max_value=8))
def test_lazy_record_equals_eager(commands: list[str], limit: int) -> None:
    """The record makes a request's line only for a snapshot; lookups, evictions and text must not change."""
    pool = NetworkPool(4, build_pool([parse_range("10.9.0.0/24")], []))
    network = Network.create("web", pool, ["10.9.0.0/24"], [], context("network"))
    network.net.requests = RecentRequests(limit=limit)
    late = RecentRequests(limit=limit)
    eager = EagerRequests(limit=limit)
    live: list[str] = []
    allocated: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    request_ids: list[str] = []
    for number, command in enumerate(commands):
        request_id = f"r{number}"
        network.pending_events.clear()
        if command == "create":
            network.create_from_pool(f"c{number}", context(request_id))
            live.append(f"c{number}")
        elif command == "destroy" and live:
            network.destroy(live.pop(0), context(request_id))
        elif command.startswith("allocate"):
            allocated += network.allocate(2 if command == "allocate two" else 1, context(request_id))
        elif command == "release" and allocated:
            network.release([allocated.pop(), ipaddress.ip_address("10.9.0.250")], context(request_id))
        elif command == "snapshot":
            assert late.to_text() == eager.to_text()
            late = RecentRequests(late.to_text(), limit=limit)
            eager = EagerRequests(eager.to_text(), limit=limit)
        for event in network.pending_events:
            late.observe(event)
            eager.observe(event)
        request_ids.append(request_id)
        assert len(late) == len(eager)
        for known in [*request_ids, "unknown"]:
            assert late.get(known) == eager.get(known), known

    assert late.to_text() == eager.to_text()
    assert late.to_text() == network.net.requests.to_text()
