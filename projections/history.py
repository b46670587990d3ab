"""The address-history read model: every tenancy of every address, and every container's life.

A tenancy is one holder's time with one address: it opens when the
address is allocated (``IpAllocated`` or ``GatewayAllocated``), or, for a
container's ip in a special subnet, when the container is created. It
closes when its container is destroyed, or, for an address taken by
``pool allocate`` (no container), when the address is released. A tenancy
covers the times ``from <= t < to``; an open one has no ``to``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import singledispatchmethod
from itertools import chain
from typing import Any, Optional

from eventsourcing.persistence import Tracking

from ledger.aggregate import (
    AddressesReleased,
    ContainerCreated,
    ContainerDestroyed,
    GatewayAllocated,
    IpAllocated,
    LedgerEvent,
    NetworkCreated,
)
from ledger.model import GATEWAY_ROLE, IP_ROLE
from projections.base import ReadModel
from projections.fold import Fold, RowSpool
from projections.store import Session, ViewSchema, network_filter
from projections.values import address_key, network_key, text_value, time_text

SCHEMA = ViewSchema(
    name="address_history",
    tables=("address_history_networks", "address_history_tenancies", "address_history_containers"),
    indexes=(
        "address_history_tenancies_by_container",
        "address_history_containers_by_id",
        "address_history_open_by_address",
        "address_history_open_by_container",
        "address_history_lives_by_container",
    ),
    ddl=(
        "CREATE TABLE IF NOT EXISTS {address_history_networks} ("
        "network_id TEXT PRIMARY KEY, name TEXT NOT NULL, ip_version INTEGER NOT NULL)",
        "CREATE TABLE IF NOT EXISTS {address_history_tenancies} ("
        "address_key TEXT NOT NULL, network_id TEXT NOT NULL, from_position BIGINT NOT NULL, "
        "address TEXT NOT NULL, container_id TEXT, role TEXT NOT NULL, "
        "from_time TEXT NOT NULL, from_actor TEXT NOT NULL, "
        "to_position BIGINT, to_time TEXT, to_actor TEXT, "
        "PRIMARY KEY (address_key, network_id, from_position))",
        "CREATE INDEX IF NOT EXISTS {address_history_tenancies_by_container} "
        "ON {address_history_tenancies} (network_id, container_id)",
        # An address reused all day gathers thousands of closed tenancies. These
        # partial indexes find the open one that an event closes without reading them.
        "CREATE INDEX IF NOT EXISTS {address_history_open_by_address} "
        "ON {address_history_tenancies} (network_id, address_key) WHERE to_position IS NULL",
        "CREATE INDEX IF NOT EXISTS {address_history_open_by_container} "
        "ON {address_history_tenancies} (network_id, container_id) WHERE to_position IS NULL",
        "CREATE TABLE IF NOT EXISTS {address_history_containers} ("
        "network_id TEXT NOT NULL, container_id TEXT NOT NULL, created_position BIGINT NOT NULL, "
        "ip TEXT NOT NULL, subnet TEXT NOT NULL, gateway TEXT NOT NULL, kind TEXT NOT NULL, "
        "created_time TEXT NOT NULL, created_actor TEXT NOT NULL, created_reason TEXT, "
        "destroyed_position BIGINT, destroyed_time TEXT, destroyed_actor TEXT, destroyed_reason TEXT, "
        "PRIMARY KEY (network_id, container_id, created_position))",
        "CREATE INDEX IF NOT EXISTS {address_history_containers_by_id} "
        "ON {address_history_containers} (container_id)",
        "CREATE INDEX IF NOT EXISTS {address_history_lives_by_container} "
        "ON {address_history_containers} (network_id, container_id) WHERE destroyed_position IS NULL",
    ),
)

TENANCY_COLUMNS = (
    "address, container_id, role, from_time, from_position, from_actor, to_time, to_position, to_actor"
)
TENANCY_FROM_POSITION = 4
CLOSE_SET = "SET to_position = ?, to_time = ?, to_actor = ?"


class AddressHistory(ReadModel):
    """The record of who held each address when, and of when each container lived."""

    name = SCHEMA.name
    schema = SCHEMA

    @singledispatchmethod
    def apply(self, domain_event: Any, tracking: Tracking, session: Session) -> None:
        """Events without a handler change nothing here."""

    @apply.register
    def _(self, event: NetworkCreated, tracking: Tracking, session: Session) -> None:
        session.execute(
            "INSERT INTO {address_history_networks} VALUES (?, ?, ?)",
            (network_key(event.originator_id), event.name, event.ip_version),
        )

    @apply.register
    def _(self, event: IpAllocated, tracking: Tracking, session: Session) -> None:
        open_tenancy(session, event, tracking, event.ip, IP_ROLE, event.container_id)

    @apply.register
    def _(self, event: GatewayAllocated, tracking: Tracking, session: Session) -> None:
        open_tenancy(session, event, tracking, event.gw, GATEWAY_ROLE, event.container_id)

    @apply.register
    def _(self, event: ContainerCreated, tracking: Tracking, session: Session) -> None:
        session.execute(
            "INSERT INTO {address_history_containers} VALUES "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, NULL)",
            (
                network_key(event.originator_id), event.container_id, tracking.notification_id,
                event.ip, event.subnet, event.gw, "pooled" if event.pooled else "subnet",
                time_text(event.timestamp), event.actor, event.reason,
            ),
        )
        if not event.pooled:
            # An ip in a special subnet is not allocated from the pool, so no
            # IpAllocated opened its tenancy.
            open_tenancy(session, event, tracking, event.ip, IP_ROLE, event.container_id)

    @apply.register
    def _(self, event: ContainerDestroyed, tracking: Tracking, session: Session) -> None:
        network_id, closing = network_key(event.originator_id), _closing(event, tracking)
        session.execute(
            "UPDATE {address_history_tenancies} " + CLOSE_SET +
            " WHERE network_id = ? AND container_id = ? AND to_position IS NULL",
            (*closing, network_id, event.container_id),
        )
        session.execute(
            "UPDATE {address_history_containers} SET destroyed_position = ?, destroyed_time = ?, "
            "destroyed_actor = ?, destroyed_reason = ? "
            "WHERE network_id = ? AND container_id = ? AND destroyed_position IS NULL",
            (*closing, event.reason, network_id, event.container_id),
        )

    @apply.register
    def _(self, event: AddressesReleased, tracking: Tracking, session: Session) -> None:
        # The ContainerDestroyed just before a container's release closed
        # its tenancies, and no other holder can have its pool addresses.
        # This closes the tenancies of addresses taken by ``pool allocate``.
        if event.container_id is not None:
            return
        network_id, closing = network_key(event.originator_id), _closing(event, tracking)
        for address in event.addresses:
            session.execute(
                "UPDATE {address_history_tenancies} " + CLOSE_SET +
                " WHERE address_key = ? AND network_id = ? AND to_position IS NULL",
                (*closing, address_key(text_value(address)), network_id),
            )


def _closing(event: LedgerEvent, tracking: Tracking) -> tuple[int, str, str]:
    return tracking.notification_id, time_text(event.timestamp), event.actor


def open_tenancy(
    session: Session, event: LedgerEvent, tracking: Tracking, address: str, role: str, container_id: Optional[str]
) -> None:
    """Record that a holder took an address at this event."""
    session.execute(
        "INSERT INTO {address_history_tenancies} VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL)",
        (
            address_key(text_value(address)), network_key(event.originator_id), tracking.notification_id,
            address, container_id, role, time_text(event.timestamp), event.actor,
        ),
    )


# The index of the first closing column in a tenancy row and in a life row.
TENANCY_TO = 8
LIFE_DESTROYED = 10


class AddressHistoryFold(Fold):
    """The address-history rows of a rebuild.

    Open tenancies and live containers stay in memory, found by address
    and by container as the handlers' indexes find them. A row that closes
    goes to a spool, since no later event changes it.
    """

    def __init__(self, connection: sqlite3.Connection) -> None:
        super().__init__(connection)
        self.tenancies = RowSpool(connection, "address_history_tenancies", 11)
        self.lives = RowSpool(connection, "address_history_containers", 14)
        self.open_by_address: dict[tuple[str, str], list[list[Any]]] = {}
        self.open_by_container: dict[tuple[str, str], list[list[Any]]] = {}
        self.live: dict[tuple[str, str], list[list[Any]]] = {}
        self.handlers.update({
            NetworkCreated: self.network_created,
            IpAllocated: lambda event, position: self.open(event, position, event.ip, IP_ROLE),
            GatewayAllocated: lambda event, position: self.open(event, position, event.gw, GATEWAY_ROLE),
            ContainerCreated: self.container_created,
            ContainerDestroyed: self.container_destroyed,
            AddressesReleased: self.released,
        })

    def network_created(self, event: NetworkCreated, position: int) -> None:
        network_id = network_key(event.originator_id)
        self.networks[network_id] = [network_id, event.name, event.ip_version]

    def open(self, event: LedgerEvent, position: int, address: str, role: str) -> None:
        network_id, container_id = network_key(event.originator_id), event.container_id
        key = address_key(text_value(address))
        row = [key, network_id, position, address, container_id, role, time_text(event.timestamp), event.actor]
        row += [None, None, None]
        self.open_by_address.setdefault((network_id, key), []).append(row)
        if container_id is not None:
            self.open_by_container.setdefault((network_id, container_id), []).append(row)

    def container_created(self, event: ContainerCreated, position: int) -> None:
        network_id = network_key(event.originator_id)
        life = [
            network_id, event.container_id, position, event.ip, event.subnet, event.gw,
            "pooled" if event.pooled else "subnet", time_text(event.timestamp), event.actor, event.reason,
            None, None, None, None,
        ]
        self.live.setdefault((network_id, event.container_id), []).append(life)
        if not event.pooled:
            self.open(event, position, event.ip, IP_ROLE)

    def container_destroyed(self, event: ContainerDestroyed, position: int) -> None:
        network_id = network_key(event.originator_id)
        closing = [position, time_text(event.timestamp), event.actor]
        for row in self.open_by_container.pop((network_id, event.container_id), ()):
            _discard(self.open_by_address, (network_id, row[0]), row)
            self.close(row, closing)
        for life in self.live.pop((network_id, event.container_id), ()):
            life[LIFE_DESTROYED:] = [*closing, event.reason]
            self.lives.append(life)

    def released(self, event: AddressesReleased, position: int) -> None:
        # As in the handler: a container's release follows its ContainerDestroyed,
        # which closed its tenancies, so only addresses taken without a container are left.
        if event.container_id is not None:
            return
        network_id = network_key(event.originator_id)
        closing = [position, time_text(event.timestamp), event.actor]
        for address in event.addresses:
            for row in self.open_by_address.pop((network_id, address_key(text_value(address))), ()):
                # NOTE: only a forged log reaches this branch, since the model rejects releasing
                # a container's address, and no test covers it.
                if row[4] is not None:
                    _discard(self.open_by_container, (network_id, row[4]), row)
                self.close(row, closing)

    def close(self, row: list[Any], closing: list[Any]) -> None:
        """Close a tenancy that no index lists any more, and spool it."""
        row[TENANCY_TO:] = closing
        self.tenancies.append(row)

    def rows(self) -> dict[str, Iterable[Sequence[Any]]]:
        open_tenancies = (row for rows in self.open_by_address.values() for row in rows)
        live = (life for lives in self.live.values() for life in lives)
        return {
            "address_history_networks": self.networks.values(),
            "address_history_tenancies": chain(self.tenancies, open_tenancies),
            "address_history_containers": chain(self.lives, live),
        }


def _discard(index: dict[tuple[str, str], list[list[Any]]], key: tuple[str, str], row: list[Any]) -> None:
    """Remove a row from an index's list, and the key once its list is empty.

    Keys of empty lists would pile up in a pool handed out round-robin, where most allocations take a new address.
    """
    rows = index[key]
    rows.remove(row)
    if not rows:
        del index[key]


@dataclass(frozen=True)
class EventStamp:
    """When an event happened (time and position in the log) and who asked for it."""

    time: str
    position: int
    actor: str


@dataclass(frozen=True)
class Tenancy:
    """One holder's time with one address; ``end`` is None while it lasts."""

    network: str
    address: str
    role: str
    container_id: Optional[str]
    start: EventStamp
    end: Optional[EventStamp]


@dataclass
class ContainerLife:
    """One container from creation to destruction, with the addresses it held."""

    network: str
    container_id: str
    ip: str
    subnet: str
    gateway: str
    kind: str
    created: EventStamp
    created_reason: Optional[str]
    destroyed: Optional[EventStamp]
    destroyed_reason: Optional[str]
    tenancies: list[Tenancy] = field(default_factory=list)


def _stamp(time: Optional[str], position: Optional[int], actor: Optional[str]) -> Optional[EventStamp]:
    if position is None:
        return None
    return EventStamp(str(time), position, str(actor))


def _tenancy(network: str, row: tuple[Any, ...]) -> Tenancy:
    address, container_id, role, *marks = row
    start = _stamp(*marks[0:3])
    assert start is not None
    return Tenancy(network, address, role, container_id, start, _stamp(*marks[3:6]))


def network_names(session: Session) -> dict[str, str]:
    """Return the name of every network by its id."""
    return dict(session.all("SELECT network_id, name FROM {address_history_networks}"))


def tenancies(
    session: Session, key: str, ip_version: int, network_id: Optional[str], at: Optional[str]
) -> list[Tenancy]:
    """Return the tenancies of an address in time order, all or those covering the time ``at``.

    The key is the address's integer value, which an IPv4 and an IPv6 address
    can share (10.1.2.3 and ::a01:203), so only networks of ``ip_version`` count.
    """
    statement = (
        f"SELECT network_id, {TENANCY_COLUMNS} FROM {{address_history_tenancies}} WHERE address_key = ? "
        "AND network_id IN (SELECT network_id FROM {address_history_networks} WHERE ip_version = ?)"
    )
    params: list[Any] = [key, ip_version]
    if network_id is not None:
        statement += " AND network_id = ?"
        params.append(network_id)
    if at is not None:
        statement += " AND from_time <= ? AND (to_time IS NULL OR to_time > ?)"
        params += [at, at]
    names = network_names(session)
    rows = session.all(statement + " ORDER BY from_position", params)
    return [_tenancy(names.get(row[0], row[0]), row[1:]) for row in rows]


def container_lives(session: Session, container_id: str, network_id: Optional[str]) -> list[ContainerLife]:
    """Return every life of a container id (ids may be reused after a destroy), oldest first."""
    statement = (
        "SELECT network_id, ip, subnet, gateway, kind, created_time, created_position, created_actor, "
        "created_reason, destroyed_time, destroyed_position, destroyed_actor, destroyed_reason "
        "FROM {address_history_containers} WHERE container_id = ?"
    )
    params: list[Any] = [container_id]
    if network_id is not None:
        statement += " AND network_id = ?"
        params.append(network_id)
    names = network_names(session)
    lives = []
    for row in session.all(statement + " ORDER BY created_position", params):
        network = names.get(row[0], row[0])
        created = _stamp(*row[5:8])
        assert created is not None
        life = ContainerLife(
            network, container_id, row[1], row[2], row[3], row[4], created, row[8], _stamp(*row[9:12]), row[12]
        )
        life.tenancies = _life_tenancies(session, row[0], network, container_id, created.position, lives)
        lives.append(life)
    return lives


def _life_tenancies(
    session: Session, network_id: str, network: str, container_id: str, created: int, earlier: list[ContainerLife]
) -> list[Tenancy]:
    """Return the tenancies a container took in the command that created it at ``created``."""
    previous = max((life.created.position for life in earlier if life.network == network), default=0)
    rows = session.all(
        f"SELECT {TENANCY_COLUMNS} FROM {{address_history_tenancies}} "
        "WHERE network_id = ? AND container_id = ? AND from_position > ? AND from_position <= ? "
        "ORDER BY from_position",
        (network_id, container_id, previous, created),
    )
    return [_tenancy(network, row) for row in rows]


def export(session: Session, selected_id: Optional[str]) -> dict[str, Any]:
    """Return the stored history of one network or all, in the form the replay check compares."""
    where, params = network_filter(selected_id)
    networks: dict[str, Any] = {
        network_id: {"name": name, "tenancies": [], "containers": []}
        for network_id, name in network_names(session).items()
        if selected_id is None or network_id == selected_id
    }
    tenancies_query = f"SELECT network_id, {TENANCY_COLUMNS} FROM {{address_history_tenancies}}" + where
    for row in session.all(tenancies_query, params):
        networks.setdefault(row[0], {"name": None, "tenancies": [], "containers": []})["tenancies"].append(row[1:])
    for row in session.all("SELECT * FROM {address_history_containers}" + where, params):
        networks.setdefault(row[0], {"name": None, "tenancies": [], "containers": []})["containers"].append(row[1:])
    for entry in networks.values():
        # Each event opens at most one tenancy and creates at most one
        # container, so positions order the rows uniquely.
        entry["tenancies"].sort(key=lambda row: row[TENANCY_FROM_POSITION])
        entry["containers"].sort(key=lambda row: row[1])
    return networks
