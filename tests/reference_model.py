"""A reference implementation of the container network model, with plain sets.

It follows the schemas of the model directly: a pool split into ``alloc``
and ``free``, and ``cnet`` mapping container ids to their ip, subnet and
gateway. It never chooses an address itself. The stateful test passes it
the addresses the real ledger chose, and it asserts that each choice was
legal (free, and ip different from gateway) before applying it.

``expected_choice`` states the allocation policies by brute force, so the
test can also check which free address the ledger picked.

The ``check_*`` methods return the ``Refused.code`` (or ``INVALID_INPUT``)
of the first precondition that fails, or None. When several fail, they
are checked in the order the ledger documents in its error messages:
container id first, then the address against the pool or subnet, then the
special subnet's placement, and pool exhaustion last.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Union

from ledger.model import Net

IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

INVALID_INPUT = "invalid-input"


@dataclass(frozen=True)
class RefContainer:
    """One entry of ``cnet``: addresses as integers, the subnet as a network."""

    ip: int
    subnet: IPNetwork
    gw: int
    pooled: bool


class ReferenceNet:
    """The Net schema over plain Python sets, for a small pool."""

    def __init__(self, pool: set[int], policy: str = "lowest", version: int = 4) -> None:
        self.version = version
        self.policy = policy
        self.pool = frozenset(pool)
        self.alloc: set[int] = set()
        self.cnet: dict[str, RefContainer] = {}
        self.last_allocated: int | None = None

    @property
    def free(self) -> set[int]:
        return set(self.pool - self.alloc)

    def special_subnets(self) -> dict[IPNetwork, str]:
        """Return each special subnet in use and one container in it."""
        found: dict[IPNetwork, str] = {}
        for cid, container in self.cnet.items():
            if not container.pooled:
                found.setdefault(container.subnet, cid)
        return found

    def holder_of(self, address: int) -> str | None:
        """Return the container holding a pool address as its ip or gateway."""
        for cid, container in self.cnet.items():
            if container.gw == address or (container.pooled and container.ip == address):
                return cid
        return None

    def expected_choice(self, count: int, exclude: frozenset[int] = frozenset()) -> list[int]:
        """Return the free addresses the network's policy must pick, by brute force.

        ``lowest`` takes the lowest free ones. ``round-robin`` takes the first
        free ones after the address allocated last, wrapping to the start.
        """
        order = sorted(self.pool)
        if self.policy == "round-robin" and self.last_allocated is not None:
            cursor = self.last_allocated
            order = [a for a in order if a > cursor] + [a for a in order if a <= cursor]
        return [a for a in order if a not in self.alloc and a not in exclude][:count]

    # Preconditions.

    def check_create_from_pool(self, cid: str) -> str | None:
        if cid in self.cnet:
            return "container-exists"
        if len(self.free) < 2:
            return "pool-exhausted"
        return None

    def check_create_with_ip(self, cid: str, ip: int) -> str | None:
        if cid in self.cnet:
            return "container-exists"
        if ip not in self.pool:
            return "address-not-in-pool"
        if ip in self.alloc:
            return "address-taken"
        if len(self.free - {ip}) < 1:
            return "pool-exhausted"
        return None

    def check_create_in_subnet(self, cid: str, subnet: IPNetwork, ip: int) -> str | None:
        address = ipaddress.ip_address(ip)
        if cid in self.cnet:
            return "container-exists"
        if address not in subnet:
            return "address-not-in-subnet"
        reserved = subnet.version == 4 and subnet.prefixlen <= 30
        if reserved and address in (subnet.network_address, subnet.broadcast_address):
            return "address-reserved"
        first, last = int(subnet.network_address), int(subnet.broadcast_address)
        if any(first <= value <= last for value in self.pool):
            return "subnet-overlaps-pool"
        for existing in self.special_subnets():
            if existing != subnet and existing.overlaps(subnet):
                return "subnet-conflict"
        for container in self.cnet.values():
            if container.subnet == subnet and container.ip == ip:
                return "address-taken"
        if not self.free:
            return "pool-exhausted"
        return None

    def check_destroy(self, cid: str) -> str | None:
        return None if cid in self.cnet else "container-not-found"

    def check_allocate(self, count: int) -> str | None:
        return "pool-exhausted" if len(self.free) < count else None

    def check_release(self, addresses: list[int]) -> str | None:
        for address in addresses:
            if self.holder_of(address) is not None:
                return "address-held"
        return None

    # State changes, given the addresses the ledger chose.

    def create(self, cid: str, ip: int, subnet: IPNetwork, gw: int, pooled: bool) -> None:
        """Add a container, asserting that the ledger's choice of addresses was legal."""
        free = self.free
        assert gw in free, f"gateway {ipaddress.ip_address(gw)} was not free"
        assert ip != gw, f"ip and gateway are both {ipaddress.ip_address(ip)}"
        if pooled:
            assert ip in free, f"pooled ip {ipaddress.ip_address(ip)} was not free"
            assert subnet.num_addresses == 1, f"pooled subnet {subnet} is not a single address"
            assert ipaddress.ip_address(ip) in subnet
            self.alloc.add(ip)
        else:
            assert ip not in self.pool, f"subnet ip {ipaddress.ip_address(ip)} is in the pool"
        self.alloc.add(gw)
        self.last_allocated = gw
        self.cnet[cid] = RefContainer(ip, subnet, gw, pooled)

    def destroy(self, cid: str) -> list[int]:
        """Remove a container and release its gateway, and its ip when pooled."""
        container = self.cnet.pop(cid)
        released = [container.ip, container.gw] if container.pooled else [container.gw]
        self.alloc.difference_update(released)
        return released

    def allocate(self, chosen: list[int]) -> None:
        """``Allocate`` or ``AllocateTwo``, asserting the choice was free and distinct."""
        assert len(set(chosen)) == len(chosen), f"chosen addresses repeat: {chosen}"
        assert set(chosen) <= self.free, f"chosen addresses {chosen} were not all free"
        self.alloc.update(chosen)
        self.last_allocated = chosen[-1]

    def release(self, addresses: list[int]) -> tuple[list[int], dict[int, str]]:
        """``Release``: free allocated addresses, report foreign and free ones as ignored."""
        released: list[int] = []
        ignored: dict[int, str] = {}
        for address in dict.fromkeys(addresses):
            if address not in self.pool:
                ignored[address] = "not in the pool"
            elif address not in self.alloc:
                ignored[address] = "not allocated"
            else:
                released.append(address)
        self.alloc.difference_update(released)
        return released, ignored

    def first_violation(self) -> str | None:
        """Check the Net invariants by brute force over every pair of containers."""
        if not self.alloc <= self.pool:
            return f"alloc has addresses outside the pool: {sorted(self.alloc - self.pool)}"
        items = list(self.cnet.items())
        for cid, c in items:
            if c.gw not in self.alloc or c.ip == c.gw:
                return f"container {cid} has an invalid gateway"
            if c.pooled and c.ip not in self.alloc:
                return f"container {cid} holds ip {c.ip} that is not allocated"
            if not c.pooled and c.ip in self.pool:
                return f"container {cid} sits in a special subnet but its ip is in the pool"
        for index, (cid_a, a) in enumerate(items):
            for cid_b, b in items[index + 1 :]:
                if a.ip == b.ip or a.gw == b.gw:
                    return f"containers {cid_a} and {cid_b} share an address"
                shared = not a.pooled and a.subnet == b.subnet
                if not shared and a.subnet.overlaps(b.subnet):
                    return f"containers {cid_a} and {cid_b} have overlapping subnets"
        return None


def expand(ranges: Any) -> set[int]:
    """Return every member of an iterable of closed ``(start, end)`` ranges."""
    members: set[int] = set()
    for start, end in ranges:
        members.update(range(start, end + 1))
    return members


def net_state(net: Net) -> dict[str, Any]:
    """Return everything a ``Net`` holds, state and indexes, as comparable values."""
    return {
        "name": net.name,
        "ip_version": net.pool.version,
        "policy": net.pool.policy,
        "pool": net.pool.pool.to_list(),
        "alloc": net.pool.alloc.to_list(),
        "cursor": net.pool.cursor,
        "containers": {
            cid: (str(c.ip), str(c.subnet), str(c.gw), c.pooled) for cid, c in net.containers.items()
        },
        "holders": dict(net.holders),
        "subnet_members": {str(subnet): dict(members) for subnet, members in net.subnet_members.items()},
        "digest": net.last_digest,
    }
