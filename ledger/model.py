"""The Net schema: a network pool plus the container networks drawn from it.

``Net`` checks every precondition of a command before anything changes
(the ``plan_*`` methods raise ``Refused`` or ``InvalidInput``) and changes
state only through the ``apply_*`` methods, which the aggregate's events
call. So a refused command leaves no trace, and replaying events rebuilds
exactly the state the commands produced.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ledger import errors
from ledger.addresses import (
    IPAddress,
    IPNetwork,
    address_from_int,
    reserved_addresses,
)
from ledger.pool import NetworkPool
from ledger.requests import RecentRequests

IP_ROLE = "ip"
GATEWAY_ROLE = "gateway"


@dataclass(frozen=True)
class ContainerNet:
    """One container's network: its address, its subnet and its gateway.

    ``pooled`` is true when the address came from the pool, in which case
    the subnet is the single address. Otherwise the container sits in a
    special subnet that other containers may share.
    """

    container_id: str
    ip: IPAddress
    subnet: IPNetwork
    gw: IPAddress
    pooled: bool

    def pool_addresses(self) -> list[int]:
        """Return the addresses this container holds from the pool."""
        held = [int(self.gw)]
        if self.pooled:
            held.insert(0, int(self.ip))
        return held


@dataclass(frozen=True)
class ReleasePlan:
    """What a ``Release`` would do: the addresses freed and those ignored, with why."""

    released: list[int]
    ignored: dict[str, str]


class Net:
    """The aggregate state of one network.

    Besides the model's state (``pool`` and ``containers``) it keeps two
    indexes so that checks do not scan every container: which container holds
    each pool address, and which containers sit in each special subnet.
    ``requests`` is the bounded record of recent requests that makes
    retries idempotent (``ledger.requests``); it is not part of the model.
    """

    def __init__(self, name: str, pool: NetworkPool) -> None:
        self.name = name
        self.pool = pool
        self.containers: dict[str, ContainerNet] = {}
        self.holders: dict[int, tuple[str, str]] = {}
        self.subnet_members: dict[IPNetwork, dict[str, int]] = {}
        self.requests = RecentRequests()
        self.last_digest = ""

    @property
    def version(self) -> int:
        return self.pool.version

    def address(self, value: int) -> IPAddress:
        return address_from_int(value, self.pool.version)

    # Preconditions.

    def check_family(self, value: IPAddress | IPNetwork, what: str) -> None:
        if value.version != self.pool.version:
            raise errors.InvalidInput(
                f"{what} {value} is IPv{value.version} but network {self.name} is "
                f"IPv{self.pool.version}; give an IPv{self.pool.version} value"
            )

    def check_new_container(self, container_id: str) -> None:
        if container_id in self.containers:
            existing = self.containers[container_id]
            raise errors.ContainerExists(
                f"container {container_id} already exists in network {self.name} "
                f"with IP {existing.ip}; choose another id or destroy it first"
            )

    def container(self, container_id: str) -> ContainerNet:
        try:
            return self.containers[container_id]
        except KeyError:
            raise errors.ContainerNotFound(
                f"container {container_id} not found in network {self.name}; "
                f"'netledger container list {self.name}' shows the containers"
            ) from None

    def describe_holder(self, address: int) -> str:
        """Return who holds an allocated pool address, for refusal messages."""
        holder = self.holders.get(address)
        if holder is None:
            return "it is allocated without a container (pool allocate)"
        container_id, role = holder
        return f"container {container_id} holds it as its {role}"

    def choose(self, count: int, exclude: frozenset[int] = frozenset()) -> list[int]:
        chosen = self.pool.choose(count, exclude)
        if chosen is None:
            # A requested ip is free but cannot be its own gateway, so the message
            # names it. Otherwise "1 needed, 1 free" reads as a contradiction.
            besides = "".join(f" besides {self.address(value)}" for value in sorted(exclude))
            raise errors.PoolExhausted(
                f"pool of network {self.name} is exhausted: {count} free address"
                f"{'es' if count > 1 else ''} needed{besides}, {self.pool.free_count} of "
                f"{self.pool.size} free; destroy containers or release addresses"
            )
        return chosen

    def plan_create_from_pool(self, container_id: str) -> ContainerNet:
        """Check ``CNCreateFromPool`` and return the container it would create."""
        self.check_new_container(container_id)
        ip, gw = self.choose(2)
        return self._pooled(container_id, ip, gw)

    def plan_create_with_ip(self, container_id: str, ip: IPAddress) -> ContainerNet:
        """Check ``CNCreateFromPoolWithSpecificIP`` and return the container it would create."""
        self.check_family(ip, "address")
        self.check_new_container(container_id)
        value = int(ip)
        if not self.pool.contains(value):
            raise errors.AddressNotInPool(
                f"address {ip} is not in the pool of network {self.name}; "
                "use --subnet for an address outside the pool"
            )
        if self.pool.is_allocated(value):
            raise errors.AddressTaken(
                f"address {ip} in network {self.name} is taken: {self.describe_holder(value)}"
            )
        (gw,) = self.choose(1, exclude=frozenset((value,)))
        return self._pooled(container_id, value, gw)

    def _pooled(self, container_id: str, ip: int, gw: int) -> ContainerNet:
        address = self.address(ip)
        subnet = host_network(ip, self.pool.version)
        return ContainerNet(container_id, address, subnet, self.address(gw), pooled=True)

    def plan_create_in_subnet(
        self, container_id: str, subnet: IPNetwork, ip: IPAddress
    ) -> ContainerNet:
        """Check ``CNCreateSubnet`` and the Net invariants, and return the container."""
        self.check_family(subnet, "subnet")
        self.check_family(ip, "address")
        self.check_new_container(container_id)
        self._check_address_in_subnet(subnet, ip)
        self._check_subnet_placement(subnet)
        for member_id in self.subnet_members.get(subnet, {}):
            if self.containers[member_id].ip == ip:
                raise errors.AddressTaken(
                    f"address {ip} in subnet {subnet} of network {self.name} is taken: "
                    f"container {member_id} holds it as its ip"
                )
        (gw,) = self.choose(1)
        return ContainerNet(container_id, ip, subnet, self.address(gw), pooled=False)

    def _check_address_in_subnet(self, subnet: IPNetwork, ip: IPAddress) -> None:
        if ip not in subnet:
            raise errors.AddressNotInSubnet(
                f"address {ip} is not in subnet {subnet}; give an address inside it"
            )
        kind = reserved_addresses(subnet).get(int(ip))
        if kind is not None:
            raise errors.AddressReserved(
                f"address {ip} is the {kind} address of subnet {subnet}; "
                "give a host address inside it"
            )

    def _check_subnet_placement(self, subnet: IPNetwork) -> None:
        """Refuse a special subnet that touches the pool or partly overlaps another one."""
        first, last = int(subnet.network_address), int(subnet.broadcast_address)
        if self.pool.pool.overlaps(first, last):
            raise errors.SubnetOverlapsPool(
                f"subnet {subnet} overlaps the pool of network {self.name}; "
                "a special subnet must lie outside the pool"
            )
        for existing, members in self.subnet_members.items():
            if existing != subnet and existing.overlaps(subnet):
                member = next(iter(members))
                raise errors.SubnetConflict(
                    f"subnet {subnet} overlaps subnet {existing} of container {member} "
                    f"in network {self.name}; special subnets must be identical or disjoint"
                )

    def plan_destroy(self, container_id: str) -> tuple[ContainerNet, list[int]]:
        """Check destroy and return the container and the pool addresses it frees."""
        container = self.container(container_id)
        return container, container.pool_addresses()

    def plan_release(self, addresses: list[IPAddress]) -> ReleasePlan:
        """Check ``Release``: refuse addresses a container holds, ignore foreign ones."""
        released: list[int] = []
        ignored: dict[str, str] = {}
        for address in dict.fromkeys(addresses):
            self.check_family(address, "address")
            value = int(address)
            if value in self.holders:
                raise errors.AddressHeld(
                    f"address {address} in network {self.name} cannot be released: "
                    f"{self.describe_holder(value)}; destroy that container instead"
                )
            if not self.pool.contains(value):
                ignored[str(address)] = "not in the pool"
            elif not self.pool.is_allocated(value):
                ignored[str(address)] = "not allocated"
            else:
                released.append(value)
        return ReleasePlan(released, ignored)

    # State changes, called only by events.

    def apply_allocated(self, address: int) -> None:
        self.pool.allocate(address)

    def apply_container_created(self, container: ContainerNet) -> None:
        self.containers[container.container_id] = container
        self.holders[int(container.gw)] = (container.container_id, GATEWAY_ROLE)
        if container.pooled:
            self.holders[int(container.ip)] = (container.container_id, IP_ROLE)
        else:
            members = self.subnet_members.setdefault(container.subnet, {})
            members[container.container_id] = int(container.ip)

    def apply_container_destroyed(self, container_id: str) -> None:
        container = self.containers.pop(container_id)
        for address in container.pool_addresses():
            self.holders.pop(address, None)
        if not container.pooled:
            members = self.subnet_members[container.subnet]
            del members[container_id]
            if not members:
                del self.subnet_members[container.subnet]

    def apply_released(self, addresses: list[int]) -> None:
        for address in addresses:
            self.pool.release(address)


def host_network(value: int, version: int) -> IPNetwork:
    """Return the network of one address (a /32 or /128), from the address as an integer."""
    # Built from an integer, not from text, which takes a third of the time.
    if version == 4:
        return ipaddress.IPv4Network((value, 32))
    return ipaddress.IPv6Network((value, 128))
