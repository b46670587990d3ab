"""The invariants of the Net schema, checked over a whole state or one change at a time.

``first_violation`` reads only the model's state (the pool, the allocated
set and the containers), never the indexes ``Net`` keeps for speed, so it
also catches an index that has drifted from the state. Tests call it after
every command, and ``verify`` at the end of every stream. ``InvariantWatch``
checks what one change can break, which ``verify`` does after every event.
"""

from __future__ import annotations

import bisect

from ledger.addresses import IPNetwork
from ledger.model import ContainerNet, Net


def first_violation(net: Net) -> str | None:
    """Return a sentence naming the first broken invariant, or None if all hold."""
    checks = (_pool_partition, _containers_valid, _pairs_valid)
    for check in checks:
        problem = check(net)
        if problem is not None:
            return f"network {net.name}: {problem}"
    return None


def _pool_partition(net: Net) -> str | None:
    """NetworkPool: ``alloc`` and ``free`` partition ``pool``, so ``alloc`` lies inside it."""
    outside = net.pool.alloc.subtract(net.pool.pool)
    if outside:
        first = net.address(next(outside.ranges())[0])
        return f"allocated address {first} is not in the pool"
    return None


def _container_valid(net: Net, container: ContainerNet) -> str | None:
    """ContainerNet and CNetValid for one container."""
    name = f"container {container.container_id}"
    ip, gw = int(container.ip), int(container.gw)
    if container.ip not in container.subnet:
        return f"{name}: ip {container.ip} is not in its subnet {container.subnet}"
    if ip == gw:
        return f"{name}: ip and gateway are both {container.ip}"
    if container.gw in container.subnet:
        return f"{name}: gateway {container.gw} is inside its subnet {container.subnet}"
    if not net.pool.is_allocated(gw):
        return f"{name}: gateway {container.gw} is not allocated from the pool"
    if container.pooled:
        if not net.pool.is_allocated(ip):
            return f"{name}: pooled ip {container.ip} is not allocated from the pool"
        if container.subnet.num_addresses != 1:
            return f"{name}: pooled container has subnet {container.subnet}, not just its ip"
        return None
    first, last = int(container.subnet.network_address), int(container.subnet.broadcast_address)
    if net.pool.pool.overlaps(first, last):
        return f"{name}: special subnet {container.subnet} overlaps the pool"
    return None


def _identity_problem(container_id: str, container: ContainerNet) -> str | None:
    if container.container_id != container_id:
        return f"container stored as {container_id} calls itself {container.container_id}"
    return None


def _containers_valid(net: Net) -> str | None:
    for container_id, container in net.containers.items():
        problem = _identity_problem(container_id, container) or _container_valid(net, container)
        if problem is not None:
            return problem
    return None


def _pairs_valid(net: Net) -> str | None:
    """CNetPairValid for every distinct pair, in O(n log n) instead of over all pairs.

    Distinct ips and distinct gateways are checked with dictionaries. The
    subnets of two containers must be identical (a shared special subnet)
    or disjoint, so after merging identical ones the distinct subnets,
    sorted by first address, must not overlap their neighbours. As a
    product rule on top of the model, no pool address serves as one
    container's ip and another's gateway.
    """
    ip_owner: dict[int, str] = {}
    gw_owner: dict[int, str] = {}
    subnet_owner: dict[object, str] = {}
    for container in net.containers.values():
        cid = container.container_id
        ip, gw = int(container.ip), int(container.gw)
        if ip in ip_owner:
            return f"containers {ip_owner[ip]} and {cid} share ip {container.ip}"
        if gw in gw_owner:
            return f"containers {gw_owner[gw]} and {cid} share gateway {container.gw}"
        ip_owner[ip] = cid
        gw_owner[gw] = cid
        subnet_owner.setdefault(container.subnet, cid)
    for address, owner in gw_owner.items():
        if address in ip_owner:
            return (
                f"address {net.address(address)} is the gateway of container {owner} "
                f"and the ip of container {ip_owner[address]}"
            )
    return _subnets_disjoint(subnet_owner)


def _subnets_disjoint(subnet_owner: dict[object, str]) -> str | None:
    ordered = sorted(
        subnet_owner.items(),
        key=lambda item: int(item[0].network_address),  # type: ignore[attr-defined]
    )
    previous = None
    for subnet, owner in ordered:
        if previous is not None and previous[0].overlaps(subnet):  # type: ignore[attr-defined]
            return (
                f"subnet {subnet} of container {owner} overlaps subnet {previous[0]} "
                f"of container {previous[1]}"
            )
        if previous is None or int(subnet.broadcast_address) > int(previous[0].broadcast_address):  # type: ignore[attr-defined]
            previous = (subnet, owner)
    return None


class InvariantWatch:
    """The invariants of one network, re-checked after each change for what the change touched.

    ``first_violation`` reads the whole state, so running it after every
    event of a history costs O(events x containers). ``verify`` instead
    passes each event's change to the watch, which checks only the clauses
    that change can break. It checks them against indexes of its own: the
    owner of each ip and gateway, the distinct subnets in address order, and
    the containers that hold each pool address. Given a state where every invariant held, the
    watch finds a violation after such a change exactly when
    ``first_violation`` would, which ``tests/test_invariant_watch.py``
    checks over random changes. The indexes are built from the containers
    as stored in the state after each event, not from the event, and a
    count of containers catches a change the events did not announce.
    ``verify`` still runs ``first_violation`` at the end of every stream.
    Each method returns a sentence naming the first violation, or None.
    """

    def __init__(self) -> None:
        self.ip_owner: dict[int, str] = {}
        self.gw_owner: dict[int, str] = {}
        self.subnets: dict[IPNetwork, int] = {}
        self.subnet_starts: list[int] = []
        self.subnet_order: list[IPNetwork] = []
        self.holders: dict[int, set[str]] = {}
        self.containers: dict[str, ContainerNet] = {}

    def allocated(self, net: Net, address: int) -> str | None:
        """Check the state after ``address`` joined the allocated set."""
        if address not in net.pool.pool:
            return f"network {net.name}: allocated address {net.address(address)} is not in the pool"
        return self._count_problem(net)

    def created(self, net: Net, container_id: str) -> str | None:
        """Check the state after the container ``container_id`` was created, and index it."""
        container = net.containers.get(container_id)
        if container is None:
            return f"network {net.name}: container {container_id} is missing after its creation"
        problem = _identity_problem(container_id, container) or _container_valid(net, container)
        problem = problem or self._pair_problem(net, container)
        if problem is not None:
            return f"network {net.name}: {problem}"
        self._add(container)
        return self._count_problem(net)

    def destroyed(self, net: Net, container_id: str) -> str | None:
        """Check the state after the container ``container_id`` was destroyed, and forget it."""
        if container_id in net.containers:
            return f"network {net.name}: container {container_id} is still there after its destruction"
        container = self.containers.pop(container_id, None)
        if container is not None:
            self._remove(container)
        return self._count_problem(net)

    def released(self, net: Net, addresses: list[int]) -> str | None:
        """Check the state after ``addresses`` left the allocated set: no container may still hold one."""
        for address in addresses:
            for container_id in sorted(self.holders.get(address, ())):
                problem = _container_valid(net, self.containers[container_id])
                if problem is not None:
                    return f"network {net.name}: {problem}"
        return self._count_problem(net)

    def _pair_problem(self, net: Net, container: ContainerNet) -> str | None:
        """CNetPairValid between a new container and every container before it."""
        cid, ip, gw = container.container_id, int(container.ip), int(container.gw)
        if ip in self.ip_owner:
            return f"containers {self.ip_owner[ip]} and {cid} share ip {container.ip}"
        if gw in self.gw_owner:
            return f"containers {self.gw_owner[gw]} and {cid} share gateway {container.gw}"
        if gw in self.ip_owner:
            return f"address {container.gw} is the gateway of container {cid} and the ip of container {self.ip_owner[gw]}"
        if ip in self.gw_owner:
            return f"address {container.ip} is the gateway of container {self.gw_owner[ip]} and the ip of container {cid}"
        return self._subnet_problem(container)

    def _subnet_problem(self, container: ContainerNet) -> str | None:
        """Check that the new container's subnet equals an existing one or overlaps none."""
        subnet = container.subnet
        if subnet in self.subnets:
            return None
        first, last = int(subnet.network_address), int(subnet.broadcast_address)
        # The distinct subnets are disjoint, so only the nearest one on each side can overlap.
        index = bisect.bisect_right(self.subnet_starts, first)
        neighbours = [i for i in (index - 1, index) if 0 <= i < len(self.subnet_starts)]
        for i in neighbours:
            other = self.subnet_order[i]
            if self.subnet_starts[i] <= last and first <= int(other.broadcast_address):
                return f"subnet {subnet} of container {container.container_id} overlaps subnet {other}"
        return None

    def _add(self, container: ContainerNet) -> None:
        cid = container.container_id
        self.containers[cid] = container
        self.ip_owner[int(container.ip)] = cid
        self.gw_owner[int(container.gw)] = cid
        for address in container.pool_addresses():
            self.holders.setdefault(address, set()).add(cid)
        subnet = container.subnet
        if subnet not in self.subnets:
            first = int(subnet.network_address)
            index = bisect.bisect_left(self.subnet_starts, first)
            self.subnet_starts.insert(index, first)
            self.subnet_order.insert(index, subnet)
        self.subnets[subnet] = self.subnets.get(subnet, 0) + 1

    def _remove(self, container: ContainerNet) -> None:
        cid = container.container_id
        del self.ip_owner[int(container.ip)]
        del self.gw_owner[int(container.gw)]
        for address in container.pool_addresses():
            holders = self.holders[address]
            holders.discard(cid)
            if not holders:
                del self.holders[address]
        subnet = container.subnet
        self.subnets[subnet] -= 1
        if not self.subnets[subnet]:
            del self.subnets[subnet]
            index = bisect.bisect_left(self.subnet_starts, int(subnet.network_address))
            del self.subnet_starts[index]
            del self.subnet_order[index]

    def _count_problem(self, net: Net) -> str | None:
        if len(net.containers) != len(self.containers):
            return (
                f"network {net.name}: the state has {len(net.containers)} containers "
                f"where its events created {len(self.containers)}"
            )
        return None
