"""The ``Network`` aggregate and its events.

One aggregate is one network: one event stream, rebuilt to check each
command. A command asks ``Net`` (the model) to check its preconditions and
returns the events that record it, and each event's ``apply`` changes
``Net``. The ledger applies a command's events while the database stores
them; the aggregate's own command methods apply them at once.
Every event names the actor, an optional reason and the request id, and
carries the hash-chain digest described in ``ledger.chain``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Optional, TypeVar
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate

from ledger.addresses import IPAddress, IPNetwork, address_from_int
from ledger.chain import event_digest, payload_of
from ledger.intervals import IntervalSet
from ledger.model import ContainerNet, Net, host_network
from ledger.pool import NetworkPool

NETWORK_ID_NAMESPACE = UUID("6f1f3c52-8a47-4f0e-9b1e-0c5d7f3a9e21")

T = TypeVar("T")


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


# One event of a command before it is numbered and chained: its class and its payload.
EventSpec = tuple[type[LedgerEvent], dict[str, Any]]
# A checked command: its result for the caller and the events that record it.
Decision = tuple[T, list[LedgerEvent]]


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

    def new_events(self, context: CommandContext, *specs: EventSpec) -> list[LedgerEvent]:
        """Build a command's events, numbered and hash-chained after the network's last event, without applying them."""
        events: list[LedgerEvent] = []
        previous = self.net.last_digest
        version = self.version
        for event_class, payload in specs:
            version += 1
            fields = {**payload, **context.fields()}
            timestamp = event_class.create_timestamp()
            digest = event_digest(previous, event_class.__name__, self.id, version, timestamp, payload_of(fields))
            events.append(
                event_class(
                    originator_id=self.id, originator_version=version, timestamp=timestamp, digest=digest, **fields
                )
            )
            previous = digest
        return events

    def apply_new(self, events: list[LedgerEvent]) -> None:
        """Apply events built by ``new_events`` and keep them as pending events, as triggering them would."""
        for event in events:
            event.mutate(self)
            self.pending_events.append(event)

    # Commands. Each ``decide_*`` method checks a command against the network
    # and returns its result and the events that record it, and changes
    # nothing. The method of the same name without the prefix also applies the events.

    def decide_create_from_pool(self, container_id: str, context: CommandContext) -> Decision[ContainerNet]:
        """``CNCreateFromPool``: take an ip and a gateway from the pool."""
        container = self.net.plan_create_from_pool(container_id)
        return container, self.container_events(container, context)

    def decide_create_with_ip(
        self, container_id: str, ip: IPAddress, context: CommandContext
    ) -> Decision[ContainerNet]:
        """``CNCreateFromPoolWithSpecificIP``: take ``ip`` and a gateway from the pool."""
        container = self.net.plan_create_with_ip(container_id, ip)
        return container, self.container_events(container, context, ip_requested=True)

    def decide_create_in_subnet(
        self, container_id: str, subnet: IPNetwork, ip: IPAddress, context: CommandContext
    ) -> Decision[ContainerNet]:
        """``CNCreateSubnet``: place ``ip`` in a special subnet; the gateway comes from the pool."""
        container = self.net.plan_create_in_subnet(container_id, subnet, ip)
        return container, self.container_events(container, context, ip_requested=True)

    def decide_destroy(self, container_id: str, context: CommandContext) -> Decision[list[IPAddress]]:
        """Remove a container and release what was allocated for it."""
        container, freed = self.net.plan_destroy(container_id)
        addresses = [self.net.address(value) for value in freed]
        events = self.new_events(
            context,
            (ContainerDestroyed, {"container_id": container.container_id}),
            (
                AddressesReleased,
                {"addresses": [str(address) for address in addresses], "ignored": {}, "container_id": container_id},
            ),
        )
        return addresses, events

    def decide_allocate(self, count: int, context: CommandContext) -> Decision[list[IPAddress]]:
        """``Allocate`` (count 1) or ``AllocateTwo`` (count 2) without a container."""
        addresses = [self.net.address(value) for value in self.net.choose(count)]
        specs: list[EventSpec] = [(IpAllocated, {"ip": str(addresses[0]), "container_id": None})]
        if count == 2:
            specs.append((GatewayAllocated, {"gw": str(addresses[1]), "container_id": None}))
        return addresses, self.new_events(context, *specs)

    def decide_release(
        self, addresses: list[IPAddress], context: CommandContext
    ) -> Decision[tuple[list[IPAddress], dict[str, str]]]:
        """``Release``: free allocated addresses; report the ones ignored and why.

        Nothing is recorded when no address would change.
        """
        plan = self.net.plan_release(addresses)
        released = [self.net.address(value) for value in plan.released]
        events: list[LedgerEvent] = []
        if released:
            payload = {
                "addresses": [str(address) for address in released],
                "ignored": plan.ignored,
                "container_id": None,
            }
            events = self.new_events(context, (AddressesReleased, payload))
        return (released, plan.ignored), events

    def container_events(
        self, container: ContainerNet, context: CommandContext, ip_requested: bool = False
    ) -> list[LedgerEvent]:
        """Return the events of a container create checked by one of ``Net.plan_create_*``."""
        cid = container.container_id
        specs: list[EventSpec] = []
        if container.pooled:
            specs.append((IpAllocated, {"ip": str(container.ip), "container_id": cid}))
        specs.append((GatewayAllocated, {"gw": str(container.gw), "container_id": cid}))
        created = {
            "container_id": cid,
            "ip": str(container.ip),
            "subnet": str(container.subnet),
            "gw": str(container.gw),
            "pooled": container.pooled,
            "ip_requested": ip_requested,
        }
        specs.append((ContainerCreated, created))
        return self.new_events(context, *specs)

    def _applied(self, decision: Decision[T]) -> T:
        result, events = decision
        self.apply_new(events)
        return result

    def create_container(self, container: ContainerNet, context: CommandContext, ip_requested: bool = False) -> None:
        """Record a container checked by one of ``Net.plan_create_*``."""
        self.apply_new(self.container_events(container, context, ip_requested))

    def create_from_pool(self, container_id: str, context: CommandContext) -> ContainerNet:
        return self._applied(self.decide_create_from_pool(container_id, context))

    def create_with_ip(self, container_id: str, ip: IPAddress, context: CommandContext) -> ContainerNet:
        return self._applied(self.decide_create_with_ip(container_id, ip, context))

    def create_in_subnet(
        self, container_id: str, subnet: IPNetwork, ip: IPAddress, context: CommandContext
    ) -> ContainerNet:
        return self._applied(self.decide_create_in_subnet(container_id, subnet, ip, context))

    def destroy(self, container_id: str, context: CommandContext) -> list[IPAddress]:
        return self._applied(self.decide_destroy(container_id, context))

    def allocate(self, count: int, context: CommandContext) -> list[IPAddress]:
        return self._applied(self.decide_allocate(count, context))

    def release(self, addresses: list[IPAddress], context: CommandContext) -> tuple[list[IPAddress], dict[str, str]]:
        return self._applied(self.decide_release(addresses, context))
