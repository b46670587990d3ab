"""Random sequences of every operation, run on the ledger and on the reference model.

The ledger runs on an in-memory SQLite store, fresh for each example, over
a pool of eleven addresses so that exhaustion happens. After every step
the two must agree on whether the command was accepted, and if not, on the
kind of refusal. They must also agree on the addresses the allocation
policy picks, on the allocated set and on the containers, and the model's
invariants must hold on both. A step that reloads the network from
the store (snapshot plus later events) and replays it from its first event
checks that all three agree with the aggregate the last command used.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Callable
from typing import Any

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

import ledger.application
from ledger import errors
from ledger.addresses import parse_range
from ledger.aggregate import CommandContext, Network, network_id
from ledger.application import Ledger
from ledger.invariants import first_violation
from ledger.pool import POLICIES
from tests.reference_model import INVALID_INPUT, ReferenceNet, expand, net_state

NAME = "net"
BASE = int(ipaddress.IPv4Address("10.0.0.0"))
# 10.0.0.0/28 less its network and broadcast addresses, 10.0.0.5 and 10.0.0.9-10.0.0.10.
REFERENCE_POOL = {BASE + offset for offset in range(1, 15)} - {BASE + 5, BASE + 9, BASE + 10}

IDS = [f"c{number}" for number in range(8)]
POOL_CANDIDATES = [f"10.0.0.{last}" for last in range(16)] + ["10.0.0.20"]
# Special subnets, some nested in others or overlapping the pool, each with
# addresses to try: inside it, its network and broadcast addresses, and outside it.
SUBNET_CANDIDATES = {
    "192.168.0.0/24": ["192.168.0.0", "192.168.0.1", "192.168.0.70", "192.168.0.130", "192.168.0.255", "192.168.1.1"],
    "192.168.0.0/25": ["192.168.0.0", "192.168.0.1", "192.168.0.70", "192.168.0.127", "192.168.0.130"],
    "192.168.0.128/25": ["192.168.0.128", "192.168.0.130", "192.168.0.255", "192.168.0.1"],
    "192.168.0.64/26": ["192.168.0.64", "192.168.0.70", "192.168.0.127", "192.168.0.1"],
    "192.168.1.0/30": ["192.168.1.0", "192.168.1.1", "192.168.1.3"],
    "192.168.1.0/31": ["192.168.1.0", "192.168.1.1"],
    "192.168.1.4/32": ["192.168.1.4", "192.168.1.5"],
    "10.0.0.16/28": ["10.0.0.17", "10.0.0.31", "10.0.0.9"],
    "10.0.0.8/29": ["10.0.0.9", "10.0.0.12"],
    "10.0.0.0/24": ["10.0.0.9", "10.0.0.200"],
}
SUBNET_AND_IP = st.sampled_from(sorted(SUBNET_CANDIDATES)).flatmap(
    lambda subnet: st.tuples(st.just(subnet), st.sampled_from(SUBNET_CANDIDATES[subnet]))
)
RELEASE_CANDIDATES = POOL_CANDIDATES + ["192.168.0.1"]



def context() -> CommandContext:
    """Return a command context with a new request id, so no command counts as a retry."""
    return CommandContext(actor="stateful-test", request_id=str(uuid.uuid4()))


class RecordingLedger(Ledger):
    """The ledger, keeping the aggregate that its last command loaded and changed."""

    name = "netledger"
    last_network: Network | None = None

    def _command_network(self, name: str) -> tuple[Network, bool]:
        network, loaded = super()._command_network(name)
        self.last_network = network
        return network, loaded


def memory_env() -> dict[str, str]:
    """Return the environment of a new, private in-memory SQLite store."""
    return {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": f"file:stateful-{uuid.uuid4().hex}?mode=memory&cache=shared",
    }


def replay_from_start(application: Ledger) -> Network:
    """Rebuild the network from its first event, ignoring snapshots."""
    aggregate: Any = None
    for event in application.events.get(network_id(NAME)):
        aggregate = event.mutate(aggregate)
    return aggregate


def outcome_of(command: Callable[[], Any]) -> tuple[str | None, Any]:
    """Run a ledger command; return (refusal kind or None, result)."""
    try:
        return None, command()
    except errors.Refused as error:
        return error.code, None
    except errors.InvalidInput:
        return INVALID_INPUT, None


class LedgerMachine(RuleBasedStateMachine):
    """Drive the ledger and the reference model with the same commands."""

    def __init__(self) -> None:
        super().__init__()
        self.env = memory_env()
        self.ledger = RecordingLedger(env=self.env)
        self.ref = ReferenceNet(REFERENCE_POOL)

    @initialize(policy=st.sampled_from(POLICIES))
    def create_network(self, policy: str) -> None:
        excludes = [parse_range("10.0.0.5/32"), parse_range("10.0.0.9-10.0.0.10")]
        self.ledger.create_network(NAME, [parse_range("10.0.0.0/28")], excludes, policy, context())
        self.ref.policy = policy

    def teardown(self) -> None:
        self.ledger.close()

    def run(self, command: Callable[[], Any], expected_kind: str | None) -> Any:
        """Run a command and assert the refusal kind matches; a refusal must write nothing."""
        before = self.ledger.event_count()
        kind, result = outcome_of(command)
        assert kind == expected_kind, f"ledger: {kind}, reference: {expected_kind}"
        event(f"outcome: {kind or 'accepted'}")
        if kind is not None:
            assert self.ledger.event_count() == before
        self.events_written = self.ledger.event_count() - before
        return result

    def current_network(self) -> Network:
        if self.ledger.last_network is None:
            return self.ledger.network(NAME)
        return self.ledger.last_network

    @rule(cid=st.sampled_from(IDS))
    def create_from_pool(self, cid: str) -> None:
        expected = self.ref.check_create_from_pool(cid)
        container = self.run(lambda: self.ledger.create_container(NAME, context(), cid), expected)
        if container is not None:
            assert [int(container.ip), int(container.gw)] == self.ref.expected_choice(2)
            self.ref.create(cid, int(container.ip), container.subnet, int(container.gw), True)
            assert container.pooled
            assert self.events_written == 3

    @rule(cid=st.sampled_from(IDS), ip=st.sampled_from(POOL_CANDIDATES))
    def create_with_ip(self, cid: str, ip: str) -> None:
        address = ipaddress.IPv4Address(ip)
        expected = self.ref.check_create_with_ip(cid, int(address))
        container = self.run(lambda: self.ledger.create_container(NAME, context(), cid, ip=address), expected)
        if container is not None:
            assert container.ip == address
            assert [int(container.gw)] == self.ref.expected_choice(1, frozenset({int(address)}))
            self.ref.create(cid, int(address), container.subnet, int(container.gw), True)
            assert self.events_written == 3

    @rule(cid=st.sampled_from(IDS), subnet_and_ip=SUBNET_AND_IP)
    def create_in_subnet(self, cid: str, subnet_and_ip: tuple[str, str]) -> None:
        subnet, ip = subnet_and_ip
        network = ipaddress.IPv4Network(subnet)
        address = ipaddress.IPv4Address(ip)
        expected = self.ref.check_create_in_subnet(cid, network, int(address))
        container = self.run(
            lambda: self.ledger.create_container(NAME, context(), cid, ip=address, subnet=network), expected
        )
        if container is not None:
            assert (container.ip, container.subnet, container.pooled) == (address, network, False)
            assert [int(container.gw)] == self.ref.expected_choice(1)
            self.ref.create(cid, int(address), network, int(container.gw), False)
            assert self.events_written == 2

    @rule(cid=st.sampled_from(IDS))
    def destroy(self, cid: str) -> None:
        expected = self.ref.check_destroy(cid)
        released = self.run(lambda: self.ledger.destroy_container(NAME, cid, context()), expected)
        if released is not None:
            assert [int(address) for address in released] == self.ref.destroy(cid)
            assert self.events_written == 2

    @rule(count=st.sampled_from([1, 2]))
    def allocate(self, count: int) -> None:
        expected = self.ref.check_allocate(count)
        chosen = self.run(lambda: self.ledger.allocate(NAME, count, context()), expected)
        if chosen is not None:
            assert [int(address) for address in chosen] == self.ref.expected_choice(count)
            self.ref.allocate([int(address) for address in chosen])
            assert self.events_written == count

    @rule(texts=st.lists(st.sampled_from(RELEASE_CANDIDATES), min_size=1, max_size=3))
    def release(self, texts: list[str]) -> None:
        self._release([ipaddress.IPv4Address(text) for text in texts])

    @rule(data=st.data())
    def release_bare_allocation(self, data: st.DataObject) -> None:
        """Release an address allocated without a container, or any pool address when there is none."""
        candidates = self.bare_allocations() or sorted(self.ref.pool)
        address = data.draw(st.sampled_from(candidates))
        self._release([ipaddress.IPv4Address(address)])

    def bare_allocations(self) -> list[int]:
        return sorted(a for a in self.ref.alloc if self.ref.holder_of(a) is None)

    def _release(self, addresses: list[ipaddress.IPv4Address]) -> None:
        values = [int(address) for address in addresses]
        expected = self.ref.check_release(values)
        result = self.run(lambda: self.ledger.release(NAME, addresses, context()), expected)
        if result is None:
            return
        released, ignored = result
        expected_released, expected_ignored = self.ref.release(values)
        assert [int(address) for address in released] == expected_released
        assert {int(ipaddress.IPv4Address(k)): v for k, v in ignored.items()} == expected_ignored
        assert self.events_written == (1 if expected_released else 0)

    @rule()
    def reload_from_store(self) -> None:
        in_memory = self.current_network()
        fresh = Ledger(env=self.env)
        try:
            loaded = fresh.network(NAME)
            replayed = replay_from_start(fresh)
            snapshots = list(fresh.snapshots.get(network_id(NAME), desc=True, limit=1))
        finally:
            fresh.close()

        event(f"reloaded with {len(snapshots)} snapshot")
        assert loaded.version == in_memory.version == replayed.version
        assert net_state(loaded.net) == net_state(in_memory.net)
        assert net_state(replayed.net) == net_state(in_memory.net)

        interval = ledger.application.SNAPSHOT_INTERVAL
        if in_memory.version >= interval:
            assert snapshots, f"no snapshot at version {in_memory.version}, interval {interval}"
            latest = snapshots[0].originator_version
            assert in_memory.version // interval * interval <= latest <= in_memory.version

    @invariant()
    def agrees_with_reference(self) -> None:
        net = self.current_network().net
        assert first_violation(net) is None
        assert self.ref.first_violation() is None
        assert expand(net.pool.pool.ranges()) == set(self.ref.pool)
        assert expand(net.pool.alloc.ranges()) == self.ref.alloc
        containers = {
            cid: (int(c.ip), c.subnet, int(c.gw), c.pooled) for cid, c in net.containers.items()
        }
        expected = {cid: (c.ip, c.subnet, c.gw, c.pooled) for cid, c in self.ref.cnet.items()}
        assert containers == expected


TestLedgerMatchesReference = LedgerMachine.TestCase
TestLedgerMatchesReference.settings = settings(max_examples=200, stateful_step_count=30, deadline=None)


def test_snapshot_every_five_events_matches_reference(monkeypatch: Any) -> None:
    """Snapshots are taken and loaded many times per sequence when the interval is small."""
    monkeypatch.setattr(ledger.application, "SNAPSHOT_INTERVAL", 5)
    run_state_machine_as_test(
        LedgerMachine, settings=settings(max_examples=60, stateful_step_count=30, deadline=None)
    )
