"""Large pools cost memory in proportion to what is allocated, not to the pool's size.

The 10,000 containers are created on an aggregate in memory, through the
same command methods and events the ledger uses between loading and saving.
The IPv6 network is then saved in one go, so the snapshot written by that
save is decoded from the store, with addresses far above 64 bits.
"""

from __future__ import annotations

import ipaddress
import json
import uuid

import pytest

from ledger.addresses import build_pool, parse_range
from ledger.aggregate import CommandContext, Network
from ledger.application import Ledger
from ledger.invariants import first_violation
from ledger.pool import LOWEST, NetworkPool
from ledger.storage import environment_for
from ledger.transcoding import NetAsDict
from tests.reference_model import net_state

CONTAINERS = 10_000
# A container row is its id, ip and gateway as text (about 40 bytes for IPv4,
# 50 for IPv6), so 100 bytes each leaves room without letting the pool's size in.
BYTES_PER_CONTAINER = 100

CONTEXT = CommandContext(actor="test", request_id="large-pools")


def filled_network(pool_text: str) -> Network:
    pools = [parse_range(pool_text)]
    pool = NetworkPool(pools[0].version, build_pool(pools, []), LOWEST)
    network = Network.create("big", pool, [pool_text], [], CONTEXT)
    for number in range(CONTAINERS):
        network.create_from_pool(f"c{number}", CommandContext(actor="test", request_id=f"r{number}"))
    return network


@pytest.mark.parametrize(
    ("pool_text", "first", "last", "pool_size", "through_store"),
    [
        ("10.0.0.0/8", "10.0.0.1", "10.0.78.32", 2**24 - 2, False),
        ("fd00::/64", "fd00::1", "fd00::4e20", 2**64 - 1, True),
    ],
    ids=["ipv4-slash-8", "ipv6-slash-64"],
)
def test_ten_thousand_containers_stay_small(
    pool_text: str, first: str, last: str, pool_size: int, through_store: bool, sqlite_url: str
) -> None:
    network = filled_network(pool_text)
    net = network.net
    pool = net.pool

    assert pool.pool.range_count() == 1
    assert pool.size == pool_size
    assert pool.alloc.range_count() == 1
    assert pool.allocated_count == 2 * CONTAINERS
    assert [str(net.address(bound)) for bound in pool.alloc.to_list()] == [first, last]
    assert len(net.containers) == CONTAINERS
    assert first_violation(net) is None

    encoded = json.dumps(NetAsDict().encode(net))
    assert len(encoded) < BYTES_PER_CONTAINER * CONTAINERS
    if not through_store:
        return

    saved_version = network.version
    saved_state = net_state(net)
    app = Ledger(env=environment_for(sqlite_url))
    try:
        app.save(network)
        snapshots = list(app.snapshots.get(network.id, desc=True, limit=1))
    finally:
        app.close()
    # A new Ledger has nothing cached, so it rebuilds the network from the snapshot.
    app = Ledger(env=environment_for(sqlite_url))
    try:
        reloaded = app.network("big")
        reloaded_version, reloaded_state = reloaded.version, net_state(reloaded.net)
        extra = app.create_container("big", CommandContext(actor="test", request_id=str(uuid.uuid4())), "extra")
    finally:
        app.close()

    assert [snapshot.originator_version for snapshot in snapshots] == [saved_version]
    assert reloaded_version == saved_version
    assert reloaded_state == saved_state
    assert extra.ip == ipaddress.ip_address(last) + 1
