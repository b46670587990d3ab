"""The occupancy read model: size, use and containers of each pool and special subnet.

A network's pool counts every allocated address as used: containers' ips,
every container's gateway (gateways always come from the pool) and
addresses taken by ``pool allocate``. The pool lists every container that
holds a pool address, which is every container of the network: a pooled
container holds its ip and gateway, a special-subnet container its gateway.
A special subnet counts and lists the containers whose ip lies in it, and
exists while at least one container is in it.
"""

from __future__ import annotations

import ipaddress
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import singledispatchmethod
from typing import Any

from eventsourcing.persistence import Tracking

from ledger.aggregate import (
    AddressesReleased,
    ContainerCreated,
    ContainerDestroyed,
    GatewayAllocated,
    IpAllocated,
    NetworkCreated,
)
from projections.base import ReadModel
from projections.fold import Fold
from projections.store import Session, ViewSchema, network_filter
from projections.values import address_key, network_key, subnet_size, text_value, utilisation

SCHEMA = ViewSchema(
    name="occupancy",
    tables=("occupancy_networks", "occupancy_members"),
    indexes=(),
    ddl=(
        "CREATE TABLE IF NOT EXISTS {occupancy_networks} ("
        "network_id TEXT PRIMARY KEY, name TEXT NOT NULL, ip_version INTEGER NOT NULL, "
        "pool_size TEXT NOT NULL, used BIGINT NOT NULL)",
        # subnet is NULL for a container whose ip came from the pool.
        "CREATE TABLE IF NOT EXISTS {occupancy_members} ("
        "network_id TEXT NOT NULL, container_id TEXT NOT NULL, subnet TEXT, subnet_key TEXT, "
        "ip TEXT NOT NULL, PRIMARY KEY (network_id, container_id))",
    ),
)

COUNT_USED = "UPDATE {occupancy_networks} SET used = used + ? WHERE network_id = ?"
POOL = "pool"


class Occupancy(ReadModel):
    """Each network's pool use, and the containers in its pool and in its special subnets."""

    name = SCHEMA.name
    schema = SCHEMA

    @singledispatchmethod
    def apply(self, domain_event: Any, tracking: Tracking, session: Session) -> None:
        """Events without a handler change nothing here."""

    @apply.register
    def _(self, event: NetworkCreated, tracking: Tracking, session: Session) -> None:
        size = sum(text_value(last) - text_value(first) + 1 for first, last in event.ranges)
        session.execute(
            "INSERT INTO {occupancy_networks} VALUES (?, ?, ?, ?, 0)",
            (network_key(event.originator_id), event.name, event.ip_version, str(size)),
        )

    @apply.register
    def _(self, event: IpAllocated, tracking: Tracking, session: Session) -> None:
        session.execute(COUNT_USED, (1, network_key(event.originator_id)))

    @apply.register
    def _(self, event: GatewayAllocated, tracking: Tracking, session: Session) -> None:
        session.execute(COUNT_USED, (1, network_key(event.originator_id)))

    @apply.register
    def _(self, event: AddressesReleased, tracking: Tracking, session: Session) -> None:
        session.execute(COUNT_USED, (-len(event.addresses), network_key(event.originator_id)))

    @apply.register
    def _(self, event: ContainerCreated, tracking: Tracking, session: Session) -> None:
        session.execute("INSERT INTO {occupancy_members} VALUES (?, ?, ?, ?, ?)", member_row(event))

    @apply.register
    def _(self, event: ContainerDestroyed, tracking: Tracking, session: Session) -> None:
        session.execute(
            "DELETE FROM {occupancy_members} WHERE network_id = ? AND container_id = ?",
            (network_key(event.originator_id), event.container_id),
        )


def member_row(event: ContainerCreated) -> tuple[str, str, str | None, str | None, str]:
    """Return the row of ``occupancy_members`` for a created container."""
    subnet = subnet_key = None
    if not event.pooled:
        network = ipaddress.ip_network(event.subnet)
        subnet, subnet_key = str(network), address_key(int(network.network_address))
    return network_key(event.originator_id), event.container_id, subnet, subnet_key, event.ip


class OccupancyFold(Fold):
    """The occupancy rows of a rebuild: each network's use count and live containers."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        super().__init__(connection)
        self.members: dict[tuple[str, str], tuple[Any, ...]] = {}
        self.handlers.update({
            NetworkCreated: self.created,
            IpAllocated: lambda event, position: self.count(event, 1),
            GatewayAllocated: lambda event, position: self.count(event, 1),
            AddressesReleased: lambda event, position: self.count(event, -len(event.addresses)),
            ContainerCreated: self.container_created,
            ContainerDestroyed: self.container_destroyed,
        })

    def created(self, event: NetworkCreated, position: int) -> None:
        size = sum(text_value(last) - text_value(first) + 1 for first, last in event.ranges)
        network_id = network_key(event.originator_id)
        self.networks[network_id] = [network_id, event.name, event.ip_version, str(size), 0]

    def count(self, event: Any, change: int) -> None:
        row = self.networks.get(network_key(event.originator_id))
        if row is not None:
            row[4] += change

    def container_created(self, event: ContainerCreated, position: int) -> None:
        row = member_row(event)
        if row[:2] in self.members:
            raise self.contradiction(row[0], position, f"creates container {event.container_id}, which exists")
        self.members[row[:2]] = row

    def container_destroyed(self, event: ContainerDestroyed, position: int) -> None:
        self.members.pop((network_key(event.originator_id), event.container_id), None)

    def rows(self) -> dict[str, Iterable[Sequence[Any]]]:
        return {"occupancy_networks": self.networks.values(), "occupancy_members": self.members.values()}


@dataclass
class Scope:
    """The pool of a network, or one of its special subnets."""

    kind: str
    name: str
    size: int
    used: int
    containers: list[str] = field(default_factory=list)

    @property
    def free(self) -> int:
        return self.size - self.used

    @property
    def utilisation(self) -> float:
        return utilisation(self.used, self.size)


@dataclass
class NetworkOccupancy:
    """A network's pool followed by its special subnets in address order."""

    network: str
    ip_version: int
    scopes: list[Scope]


def occupancy(session: Session, network_id: str | None) -> list[NetworkOccupancy]:
    """Return the occupancy of one network, or of every network by name."""
    statement = "SELECT network_id, name, ip_version, pool_size, used FROM {occupancy_networks}"
    params: tuple[Any, ...] = ()
    if network_id is not None:
        statement += " WHERE network_id = ?"
        params = (network_id,)
    result = []
    rows = sorted(session.all(statement, params), key=lambda row: row[1])
    for row_id, name, version, pool_size, used in rows:
        pool = Scope(POOL, POOL, int(pool_size), used)
        subnets: dict[str, Scope] = {}
        members = session.all(
            "SELECT container_id, subnet FROM {occupancy_members} WHERE network_id = ? ORDER BY subnet_key",
            (row_id,),
        )
        for container_id, subnet in members:
            # Every container's gateway is a pool address, so the pool lists every container.
            pool.containers.append(container_id)
            if subnet is None:
                continue
            scope = subnets.get(subnet)
            if scope is None:
                scope = subnets[subnet] = Scope("subnet", subnet, subnet_size(ipaddress.ip_network(subnet)), 0)
            scope.used += 1
            scope.containers.append(container_id)
        scopes = [pool, *subnets.values()]
        for scope in scopes:
            # Sorted here, not in SQL, so that the order never depends on a database collation.
            scope.containers.sort()
        result.append(NetworkOccupancy(name, version, scopes))
    return result


def export(session: Session, selected_id: str | None) -> dict[str, Any]:
    """Return the stored state of one network or all, in the form the replay check compares."""
    where, params = network_filter(selected_id)
    networks: dict[str, Any] = {
        network_id: {"name": name, "pool_size": int(size), "used": used, "members": {}}
        for network_id, name, size, used in session.all(
            "SELECT network_id, name, pool_size, used FROM {occupancy_networks}" + where, params
        )
    }
    for network_id, container_id, subnet, ip in session.all(
        "SELECT network_id, container_id, subnet, ip FROM {occupancy_members}" + where, params
    ):
        entry = networks.setdefault(network_id, {"name": None, "members": {}})
        entry["members"][container_id] = (subnet, ip)
    return networks
