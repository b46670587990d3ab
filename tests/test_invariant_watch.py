"""The incremental check of ``verify`` finds a violation exactly when the full check does.

Random changes are applied to a network's state directly, past the
commands' checks, so that many of them break an invariant. Each change
meets the precondition that ``verify`` checks before the invariants (an
allocated address was free, a destroyed container existed), as in
``verify``.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.intervals import IntervalSet
from ledger.invariants import InvariantWatch, first_violation
from ledger.model import ContainerNet, Net
from ledger.pool import NetworkPool

BASE = int(ipaddress.ip_address("10.0.0.0"))
# The pool is 10.0.0.0/28; addresses up to 10.0.0.31 include some outside it.
POOL = IntervalSet([(BASE, BASE + 15)])
SUBNETS = [ipaddress.ip_network(text) for text in ("10.0.0.16/29", "10.0.0.16/30", "10.0.0.24/29", "10.0.0.8/29", "10.0.0.16/28")]
IDS = [f"c{index}" for index in range(6)]

ADDRESS = st.integers(0, 31)
# An index into the allocated addresses, so that most containers are valid and later ones collide with them.
PICK = st.integers(0, 7)
CREATE = st.tuples(st.just("create"), st.sampled_from(IDS), PICK, PICK, st.sampled_from([None, *SUBNETS]), PICK)
# Changes that pick allocated addresses: these break only the invariants between containers
# (shared addresses, overlapping subnets) or free a held address.
CHANGES = st.one_of(
    CREATE,
    st.tuples(st.just("allocate"), st.integers(0, 15)),
    st.tuples(st.just("destroy"), st.sampled_from(IDS)),
    st.tuples(st.just("release"), st.lists(PICK, min_size=1, max_size=3, unique=True)),
)
# A last change with any addresses, which can also break the invariants of a single container.
LAST = st.one_of(
    CHANGES,
    st.tuples(st.just("allocate"), ADDRESS),
    st.tuples(st.just("create_any"), st.sampled_from(IDS), ADDRESS, ADDRESS, st.sampled_from([None, *SUBNETS])),
)


def container(container_id: str, ip: int, gw: int, subnet: Any) -> ContainerNet:
    """Return a container with ``ip`` and ``gw`` given as offsets from 10.0.0.0; no subnet means pooled."""
    address = ipaddress.ip_address(BASE + ip)
    if subnet is None:
        return ContainerNet(container_id, address, ipaddress.ip_network(f"{address}/32"), ipaddress.ip_address(BASE + gw), True)
    return ContainerNet(container_id, address, subnet, ipaddress.ip_address(BASE + gw), False)


def picked(net: Net, pick: int) -> int:
    """Return the offset of an allocated address, chosen by index (10.0.0.0 when none is allocated)."""
    allocated = [value for first, last in net.pool.alloc.ranges() for value in range(first, last + 1)]
    return allocated[pick % len(allocated)] - BASE if allocated else 0


def apply(net: Net, watch: InvariantWatch, change: tuple[Any, ...]) -> tuple[bool, str | None]:
    """Apply a change whose precondition holds; return whether it ran and the watch's verdict."""
    kind, *args = change
    if kind == "allocate":
        address = BASE + args[0]
        if address in net.pool.alloc:
            return False, None
        net.apply_allocated(address)
        return True, watch.allocated(net, address)
    if kind in ("create", "create_any"):
        container_id, ip, gw, subnet, *offset = args
        if container_id in net.containers:
            return False, None
        if kind == "create":
            gw = picked(net, gw)
            ip = picked(net, ip) if subnet is None else int(subnet.network_address) - BASE + offset[0] % subnet.num_addresses
            if ip == gw or net.pool.alloc.count() < 2:
                return False, None
        net.apply_container_created(container(container_id, ip, gw, subnet))
        return True, watch.created(net, container_id)
    if kind == "destroy":
        if args[0] not in net.containers:
            return False, None
        net.apply_container_destroyed(args[0])
        return True, watch.destroyed(net, args[0])
    addresses = sorted({BASE + picked(net, pick) for pick in args[0]})
    if not all(address in net.pool.alloc for address in addresses):
        return False, None
    net.apply_released(addresses)
    return True, watch.released(net, addresses)


@settings(max_examples=1000, deadline=None)
@given(
    allocated=st.lists(st.integers(0, 15), min_size=2, max_size=12, unique=True),
    changes=st.lists(CHANGES, max_size=40),
    last=LAST,
)
def test_watch_agrees_with_full_check(
    allocated: list[int], changes: list[tuple[Any, ...]], last: tuple[Any, ...]
) -> None:
    net = Net("n", NetworkPool(4, IntervalSet(POOL.ranges())))
    watch = InvariantWatch()
    for change in [*(("allocate", offset) for offset in allocated), *changes, last]:
        ran, verdict = apply(net, watch, change)
        if not ran:
            continue
        expected = first_violation(net)
        assert (verdict is None) == (expected is None), (change, verdict, expected)
        if expected is not None:
            return


def watched_network(*containers: ContainerNet) -> tuple[Net, InvariantWatch]:
    """Return a network holding valid containers, with 10.0.0.1 to 10.0.0.6 allocated, and its watch."""
    net = Net("n", NetworkPool(4, IntervalSet(POOL.ranges())))
    watch = InvariantWatch()
    for address in range(BASE + 1, BASE + 7):
        net.apply_allocated(address)
        assert watch.allocated(net, address) is None
    for item in containers:
        net.apply_container_created(item)
        assert watch.created(net, item.container_id) is None
    return net, watch


def test_watch_names_shared_gateway() -> None:
    net, watch = watched_network(container("a", 1, 2, None))

    net.apply_container_created(container("b", 3, 2, None))

    assert watch.created(net, "b") == "network n: containers a and b share gateway 10.0.0.2"


def test_watch_names_released_gateway() -> None:
    net, watch = watched_network(container("a", 1, 2, None))

    net.apply_released([BASE + 2])

    assert watch.released(net, [BASE + 2]) == "network n: container a: gateway 10.0.0.2 is not allocated from the pool"


def test_watch_names_overlapping_subnets() -> None:
    net, watch = watched_network(container("a", 17, 1, SUBNETS[0]))

    net.apply_container_created(container("b", 18, 2, SUBNETS[1]))

    assert watch.created(net, "b") == "network n: subnet 10.0.0.16/30 of container b overlaps subnet 10.0.0.16/29"


def test_watch_finds_subnet_overlapping_later_one() -> None:
    net, watch = watched_network(container("a", 26, 1, SUBNETS[2]))

    net.apply_container_created(container("b", 18, 2, SUBNETS[4]))

    assert watch.created(net, "b") == "network n: subnet 10.0.0.16/28 of container b overlaps subnet 10.0.0.24/29"


def test_watch_accepts_shared_subnet() -> None:
    net, watch = watched_network(container("a", 17, 1, SUBNETS[0]))

    net.apply_container_created(container("b", 18, 2, SUBNETS[0]))

    assert watch.created(net, "b") is None


def test_watch_sees_unannounced_change() -> None:
    net, watch = watched_network(container("a", 1, 2, None))

    # A container removed from the state with no ContainerDestroyed.
    del net.containers["a"]

    assert watch.allocated(net, BASE + 7) == "network n: the state has 0 containers where its events created 1"
