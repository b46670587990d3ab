"""The invariants of the Net schema, checked over a whole state from scratch.

``first_violation`` reads only the model's state (the pool, the allocated
set and the containers), never the indexes ``Net`` keeps for speed, so it
also catches an index that has drifted from the state. Tests call it after
every command, and ``verify`` after every stored event.
"""

from __future__ import annotations

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


def _containers_valid(net: Net) -> str | None:
    for container_id, container in net.containers.items():
        if container.container_id != container_id:
            return f"container stored as {container_id} calls itself {container.container_id}"
        problem = _container_valid(net, container)
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
