"""Snapshots: NetAsDict round trips, and snapshot plus later events equals a full replay."""

from __future__ import annotations

import ipaddress
import json
import uuid
from typing import Any

import pytest

from ledger.addresses import address_from_int, build_pool, parse_range
from ledger.aggregate import CommandContext, Network, network_id
from ledger.application import SNAPSHOT_INTERVAL, SNAPSHOT_ITEMS_PER_EVENT, Ledger, snapshot_interval
from ledger.invariants import first_violation
from ledger.pool import LOWEST, ROUND_ROBIN, NetworkPool
from ledger.storage import environment_for
from ledger.transcoding import NetAsDict
from tests.reference_model import net_state

IP = ipaddress.ip_address
NET = ipaddress.ip_network


def context() -> CommandContext:
    return CommandContext(actor="test", request_id=str(uuid.uuid4()))


def network_in_memory(pool_text: str, policy: str = LOWEST) -> Network:
    pools = [parse_range(pool_text)]
    pool = NetworkPool(pools[0].version, build_pool(pools, []), policy)
    return Network.create("web", pool, [pool_text], [], context())


def busy_network(pool_text: str, subnet: str, subnet_ips: list[str], policy: str = LOWEST) -> Network:
    """A network with pooled and subnet containers, bare allocations and holes from releases."""
    network = network_in_memory(pool_text, policy)
    for number in range(6):
        network.create_from_pool(f"p{number}", context())
    network.destroy("p2", context())
    for number, ip in enumerate(subnet_ips):
        network.create_in_subnet(f"s{number}", NET(subnet), IP(ip), context())
    first, second = network.allocate(2, context())
    network.allocate(1, context())
    network.release([first], context())
    return network


def round_trip(data: dict[str, Any]) -> Any:
    """Encode as the event store does (JSON text) and decode back."""
    return NetAsDict().decode(json.loads(json.dumps(data)))


def replay_from_start(app: Ledger, name: str = "web") -> Any:
    aggregate: Any = None
    for event in app.events.get(network_id(name)):
        aggregate = event.mutate(aggregate)
    return aggregate


def replay_from_snapshot(app: Ledger, name: str = "web") -> tuple[int, Any]:
    """Return the latest snapshot's version and the network rebuilt from it plus later events."""
    (snapshot,) = app.snapshots.get(network_id(name), desc=True, limit=1)
    aggregate: Any = snapshot.mutate(None)
    for event in app.events.get(network_id(name), gt=snapshot.originator_version):
        aggregate = event.mutate(aggregate)
    return snapshot.originator_version, aggregate


@pytest.mark.parametrize(
    ("pool", "subnet", "ips"),
    [
        ("10.0.0.0/24", "192.168.0.0/24", ["192.168.0.5", "192.168.0.6"]),
        ("fd00::/64", "fd01::/120", ["fd01::5", "fd01::6"]),
    ],
)
def test_net_as_dict_round_trip(pool: str, subnet: str, ips: list[str]) -> None:
    net = busy_network(pool, subnet, ips).net
    decoded = round_trip(NetAsDict().encode(net))
    assert net_state(decoded) == net_state(net)
    assert decoded.containers == net.containers
    assert first_violation(decoded) is None


def test_net_as_dict_stores_no_index() -> None:
    net = busy_network("10.0.0.0/24", "192.168.0.0/24", ["192.168.0.5"]).net
    data = NetAsDict().encode(net)
    assert "holders" not in data
    assert "subnet_members" not in data
    assert data["pool"] == [int(IP("10.0.0.1")), int(IP("10.0.0.254"))]
    base = int(IP("10.0.0.1"))
    assert data["base"] == base
    assert data["containers"][0] == ["p0", 0, None, 1]
    assert ["s0", int(IP("192.168.0.5")) - base, "192.168.0.0/24", 4] in data["containers"]


@pytest.mark.parametrize("pool", ["10.0.0.0/24", "fd00::/64", "::/120"])
def test_net_as_dict_reads_text_addresses(pool: str) -> None:
    """Snapshots stored before addresses were written as integers still load."""
    net = busy_network(pool, "192.168.0.0/24" if "." in pool else "fd01::/120", []).net
    data = NetAsDict().encode(net)
    version, base = net.pool.version, data.pop("base")
    data["containers"] = [
        [cid, str(address_from_int(base + ip, version)), subnet, str(address_from_int(base + gw, version))]
        for cid, ip, subnet, gw in data["containers"]
    ]
    decoded = round_trip(data)
    assert decoded.containers == net.containers


def test_snapshot_interval_grows_with_network() -> None:
    network = network_in_memory("10.0.0.0/16")
    assert snapshot_interval(network) == SNAPSHOT_INTERVAL
    for number in range(SNAPSHOT_INTERVAL * SNAPSHOT_ITEMS_PER_EVENT // 2 + 1):
        network.create_from_pool(f"c{number}", context())
    # Each container adds itself and its request to the snapshot.
    assert snapshot_interval(network) == 2 * SNAPSHOT_INTERVAL


def test_net_as_dict_keeps_round_robin_cursor() -> None:
    network = busy_network("10.0.0.0/24", "192.168.0.0/24", ["192.168.0.5"], policy=ROUND_ROBIN)
    decoded = round_trip(NetAsDict().encode(network.net))
    assert decoded.pool.policy == ROUND_ROBIN
    assert decoded.pool.cursor == network.net.pool.cursor
    assert decoded.pool.choose(1) == network.net.pool.choose(1)


def fill_past_snapshot(app: Ledger) -> None:
    """Run commands until the stream passes the snapshot interval, then a few more."""
    number = 0
    while app.network("web").version <= SNAPSHOT_INTERVAL:
        app.create_container("web", context(), f"c{number}")
        number += 1
    app.destroy_container("web", "c3", context())
    app.create_container("web", context(), "s1", IP("192.168.0.5"), NET("192.168.0.0/24"))
    app.allocate("web", 2, context())


def test_snapshot_plus_later_events_equals_full_replay(db_url: str) -> None:
    app = Ledger(env=environment_for(db_url))
    try:
        app.create_network("web", [parse_range("10.0.0.0/24")], [], ROUND_ROBIN, context())
        fill_past_snapshot(app)
        current = app.network("web")
        snapshot_version, from_snapshot = replay_from_snapshot(app)
        replayed = replay_from_start(app)
    finally:
        app.close()

    assert SNAPSHOT_INTERVAL <= snapshot_version < current.version
    assert from_snapshot.version == replayed.version == current.version
    assert net_state(from_snapshot.net) == net_state(replayed.net)
    assert net_state(current.net) == net_state(replayed.net)
    assert first_violation(current.net) is None


def test_reopened_ledger_loads_snapshot(sqlite_url: str) -> None:
    app = Ledger(env=environment_for(sqlite_url))
    app.create_network("web", [parse_range("10.0.0.0/24")], [], LOWEST, context())
    fill_past_snapshot(app)
    expected = net_state(app.network("web").net)
    app.close()

    reopened = Ledger(env=environment_for(sqlite_url))
    try:
        assert net_state(reopened.network("web").net) == expected
        created = reopened.create_container("web", context(), "after")
    finally:
        reopened.close()
    # c0-c33 hold 10.0.0.1-10.0.0.68; c3's 10.0.0.7 and 10.0.0.8 went to s1's
    # gateway and the first allocation, whose second address was 10.0.0.69.
    assert created.ip == IP("10.0.0.70")
    assert created.gw == IP("10.0.0.71")
