"""The ``Network`` aggregate and its events.

One aggregate is one network: one event stream, rebuilt to check each
command. Command methods ask ``Net`` (the model) to check preconditions
first and then trigger events, and each event's ``apply`` changes ``Net``.
Every event names the actor, an optional reason and the request id, and
carries the hash-chain digest described in ``ledger.chain``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Optional
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from ledger.addresses import IPAddress, IPNetwork, address_from_int
from ledger.chain import event_digest, payload_of
from ledger.intervals import IntervalSet
from ledger.model import ContainerNet, Net, host_network
from ledger.pool import NetworkPool

NETWORK_ID_NAMESPACE = UUID("6f1f3c52-8a47-4f0e-9b1e-0c5d7f3a9e21")


@dataclass(frozen=True)
class CommandContext:
    """Who asked for a command, why, and the id of the request."""

    actor: str
    request_id: str
    reason: Optional[str] = None

    def fields(self) -> dict[str, Any]:
        return {"actor": self.actor, "reason": self.reason, "request_id": self.request_id}


@lru_cache(maxsize=1024)
def network_id(name: str) -> UUID:
    """Return the stream id of the network with this name (the same on every host)."""
    return uuid5(NETWORK_ID_NAMESPACE, name)


class LedgerEvent(Aggregate.Event):
    """Fields every network event carries besides the library's framing."""

    actor: str
    reason: Optional[str]
    request_id: str
    digest: str

    def mutate(self, aggregate: Any) -> Any:
        """Apply the event, then note its command in the network's recent requests."""
        mutated = super().mutate(aggregate)
        aggregate.net.requests.observe(self)
        return mutated


class NetworkCreated(Aggregate.Created):
    """A network and its fixed pool came into being."""

    name: str
    ip_version: int
    policy: str
    pools: list[str]
    excludes: list[str]
    ranges: list[list[str]]
    actor: str
    reason: Optional[str]
    request_id: str
    digest: str

    def apply(self, aggregate: Network) -> None:
        bounds = [(int(_parse(first)), int(_parse(last))) for first, last in self.ranges]
        pool = NetworkPool(self.ip_version, IntervalSet(bounds), self.policy)
        aggregate.net = Net(self.name, pool)
        aggregate.net.last_digest = self.digest


class IpAllocated(LedgerEvent):
    """An address left the free set (for a container's ip, or by ``pool allocate``)."""

    ip: str
    container_id: Optional[str]

    def apply(self, aggregate: Network) -> None:
        aggregate.net.apply_allocated(int(_parse(self.ip)))
        aggregate.net.last_digest = self.digest


class GatewayAllocated(LedgerEvent):
    """An address left the free set to serve as a gateway."""

    gw: str
    container_id: Optional[str]

    def apply(self, aggregate: Network) -> None:
        aggregate.net.apply_allocated(int(_parse(self.gw)))
        aggregate.net.last_digest = self.digest


class ContainerCreated(LedgerEvent):
    """A container network joined the network, with its ip, subnet and gateway."""

    container_id: str
    ip: str
    subnet: str
    gw: str
    pooled: bool
    # Whether the caller chose the ip, so that a retry by request id can be
    # compared with the original arguments. Events stored before this field
    # existed read as False.
    ip_requested: bool = False

    def apply(self, aggregate: Network) -> None:
        ip = _parse(self.ip)
        if self.subnet == f"{self.ip}/{ip.max_prefixlen}":
            # The usual case, a pooled container's own address: built from the integer, faster than parsing.
            subnet = host_network(int(ip), ip.version)
        else:
            subnet = ipaddress.ip_network(self.subnet)
        container = ContainerNet(
            container_id=self.container_id,
            ip=ip,
            subnet=subnet,
            gw=_parse(self.gw),
            pooled=self.pooled,
        )
        aggregate.net.apply_container_created(container)
        aggregate.net.last_digest = self.digest


class ContainerDestroyed(LedgerEvent):
    """A container network left the network; its addresses are released next."""

    container_id: str

    def apply(self, aggregate: Network) -> None:
        aggregate.net.apply_container_destroyed(self.container_id)
        aggregate.net.last_digest = self.digest


class AddressesReleased(LedgerEvent):
    """Addresses returned to the free set; ``ignored`` lists those that were not allocated."""

    addresses: list[str]
    ignored: dict[str, str]
    container_id: Optional[str]

    def apply(self, aggregate: Network) -> None:
        aggregate.net.apply_released([int(_parse(text)) for text in self.addresses])
        aggregate.net.last_digest = self.digest


# Events name addresses as text. A network's commands reuse a few gateways
# and recently released addresses, and parsing the text took about a quarter
# of an event's apply in a profile, so recent parses are kept.
@lru_cache(maxsize=4096)
def _parse(text: str) -> IPAddress:
    return ipaddress.ip_address(text)


class Network(Aggregate):
    """One network's event-sourced state; ``net`` is the model it rebuilds."""

    net: Net

    def __init__(self) -> None:
        """State is set by ``NetworkCreated.apply``."""

    @classmethod
    def create(
        cls,
        name: str,
        pool: NetworkPool,
        pools: list[str],
        excludes: list[str],
        context: CommandContext,
    ) -> Network:
        """Create a network over a fixed pool (``NetworkCreated``)."""
        identity = network_id(name)
        ranges = [
            [str(address_from_int(first, pool.version)), str(address_from_int(last, pool.version))]
            for first, last in pool.pool.ranges()
        ]
        fields: dict[str, Any] = {
            "name": name,
            "ip_version": pool.version,
            "policy": pool.policy,
            "pools": pools,
            "excludes": excludes,
            "ranges": ranges,
            **context.fields(),
        }
        timestamp = NetworkCreated.create_timestamp()
        digest = event_digest("", "NetworkCreated", identity, 1, timestamp, fields)
        return cls._create(NetworkCreated, id=identity, timestamp=timestamp, digest=digest, **fields)

    def _emit(self, event_class: type[LedgerEvent], context: CommandContext, **payload: Any) -> None:
        """Trigger one event, chaining its digest to the previous event of the stream."""
        fields = {**payload, **context.fields()}
        timestamp = event_class.create_timestamp()
        digest = event_digest(
            self.net.last_digest,
            event_class.__name__,
            self.id,
            self.version + 1,
            timestamp,
            payload_of(fields),
        )
        self.trigger_event(event_class, timestamp=timestamp, digest=digest, **fields)

    def create_container(self, container: ContainerNet, context: CommandContext, ip_requested: bool = False) -> None:
        """Record a container checked by one of ``Net.plan_create_*``."""
        cid = container.container_id
        if container.pooled:
            self._emit(IpAllocated, context, ip=str(container.ip), container_id=cid)
        self._emit(GatewayAllocated, context, gw=str(container.gw), container_id=cid)
        self._emit(
            ContainerCreated,
            context,
            container_id=cid,
            ip=str(container.ip),
            subnet=str(container.subnet),
            gw=str(container.gw),
            pooled=container.pooled,
            ip_requested=ip_requested,
        )

    def create_from_pool(self, container_id: str, context: CommandContext) -> ContainerNet:
        """``CNCreateFromPool``: take an ip and a gateway from the pool."""
        container = self.net.plan_create_from_pool(container_id)
        self.create_container(container, context)
        return container

    def create_with_ip(self, container_id: str, ip: IPAddress, context: CommandContext) -> ContainerNet:
        """``CNCreateFromPoolWithSpecificIP``: take ``ip`` and a gateway from the pool."""
        container = self.net.plan_create_with_ip(container_id, ip)
        self.create_container(container, context, ip_requested=True)
        return container

    def create_in_subnet(
        self, container_id: str, subnet: IPNetwork, ip: IPAddress, context: CommandContext
    ) -> ContainerNet:
        """``CNCreateSubnet``: place ``ip`` in a special subnet; the gateway comes from the pool."""
        container = self.net.plan_create_in_subnet(container_id, subnet, ip)
        self.create_container(container, context, ip_requested=True)
        return container

    def destroy(self, container_id: str, context: CommandContext) -> list[IPAddress]:
        """Remove a container and release what was allocated for it."""
        container, freed = self.net.plan_destroy(container_id)
        self._emit(ContainerDestroyed, context, container_id=container.container_id)
        addresses = [str(self.net.address(value)) for value in freed]
        self._emit(AddressesReleased, context, addresses=addresses, ignored={}, container_id=container_id)
        return [self.net.address(value) for value in freed]

    def allocate(self, count: int, context: CommandContext) -> list[IPAddress]:
        """``Allocate`` (count 1) or ``AllocateTwo`` (count 2) without a container."""
        chosen = self.net.choose(count)
        self._emit(IpAllocated, context, ip=str(self.net.address(chosen[0])), container_id=None)
        if count == 2:
            self._emit(GatewayAllocated, context, gw=str(self.net.address(chosen[1])), container_id=None)
        return [self.net.address(value) for value in chosen]

    def release(self, addresses: list[IPAddress], context: CommandContext) -> tuple[list[IPAddress], dict[str, str]]:
        """``Release``: free allocated addresses; report the ones ignored and why.

        Nothing is recorded when no address would change.
        """
        plan = self.net.plan_release(addresses)
        released = [self.net.address(value) for value in plan.released]
        if released:
            self._emit(
                AddressesReleased,
                context,
                addresses=[str(address) for address in released],
                ignored=plan.ignored,
                container_id=None,
            )
        return released, plan.ignored
