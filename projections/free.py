"""The free-addresses read model: per network, the free count and the free ranges.

Free space is stored as ranges, one row per run of consecutive free
addresses, so an untouched IPv6 /64 pool is one row and the table grows
with fragmentation, never with the pool's size. Allocating an address
splits the range that contains it. Releasing one merges it with the
ranges that end just before it and start just after it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import singledispatchmethod
from typing import Any

from eventsourcing.persistence import Tracking

from ledger.addresses import IPAddress
from ledger.aggregate import AddressesReleased, GatewayAllocated, IpAllocated, NetworkCreated
from ledger.intervals import IntervalSet
from projections.base import ReadModel
from projections.fold import Fold
from projections.store import Session, ViewInconsistent, ViewSchema, network_filter
from projections.values import address_key, key_address, key_value, network_key, text_value

SCHEMA = ViewSchema(
    name="free_addresses",
    tables=("free_addresses_networks", "free_addresses_ranges"),
    indexes=(),
    ddl=(
        "CREATE TABLE IF NOT EXISTS {free_addresses_networks} ("
        "network_id TEXT PRIMARY KEY, name TEXT NOT NULL, ip_version INTEGER NOT NULL, "
        "pool_size TEXT NOT NULL, allocated BIGINT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS {free_addresses_ranges} ("
        "network_id TEXT NOT NULL, first_key TEXT NOT NULL, last_key TEXT NOT NULL, "
        "PRIMARY KEY (network_id, first_key))",
    ),
)

INSERT_RANGE = "INSERT INTO {free_addresses_ranges} VALUES (?, ?, ?)"
DELETE_RANGE = "DELETE FROM {free_addresses_ranges} WHERE network_id = ? AND first_key = ?"
RANGE_AT_OR_BEFORE = (
    "SELECT first_key, last_key FROM {free_addresses_ranges} "
    "WHERE network_id = ? AND first_key <= ? ORDER BY first_key DESC LIMIT 1"
)
COUNT_ALLOCATED = "UPDATE {free_addresses_networks} SET allocated = allocated + ? WHERE network_id = ?"


class FreeAddresses(ReadModel):
    """Each network's free count and free ranges."""

    name = SCHEMA.name
    schema = SCHEMA

    @singledispatchmethod
    def apply(self, domain_event: Any, tracking: Tracking, session: Session) -> None:
        """Events without a handler change nothing here."""

    @apply.register
    def _(self, event: NetworkCreated, tracking: Tracking, session: Session) -> None:
        network_id = network_key(event.originator_id)
        bounds = [(text_value(first), text_value(last)) for first, last in event.ranges]
        size = sum(last - first + 1 for first, last in bounds)
        session.execute(
            "INSERT INTO {free_addresses_networks} VALUES (?, ?, ?, ?, 0)",
            (network_id, event.name, event.ip_version, str(size)),
        )
        for first, last in bounds:
            session.execute(INSERT_RANGE, (network_id, address_key(first), address_key(last)))

    @apply.register
    def _(self, event: IpAllocated, tracking: Tracking, session: Session) -> None:
        take(session, network_key(event.originator_id), event.ip)

    @apply.register
    def _(self, event: GatewayAllocated, tracking: Tracking, session: Session) -> None:
        take(session, network_key(event.originator_id), event.gw)

    @apply.register
    def _(self, event: AddressesReleased, tracking: Tracking, session: Session) -> None:
        for text in event.addresses:
            give_back(session, network_key(event.originator_id), text)


def take(session: Session, network_id: str, address: str) -> None:
    """Remove one address from the free ranges, splitting its range."""
    value = text_value(address)
    row = session.one(RANGE_AT_OR_BEFORE, (network_id, address_key(value)))
    if row is None or key_value(row[1]) < value:
        raise _inconsistent(session, network_id, address, "not free although an event allocates it")
    first, last = key_value(row[0]), key_value(row[1])
    if first == value == last:
        session.execute(DELETE_RANGE, (network_id, row[0]))
    elif first == value:
        # The lowest-first policy takes the first address of a range, so this is the usual case.
        session.execute(
            "UPDATE {free_addresses_ranges} SET first_key = ? WHERE network_id = ? AND first_key = ?",
            (address_key(value + 1), network_id, row[0]),
        )
    else:
        session.execute(
            "UPDATE {free_addresses_ranges} SET last_key = ? WHERE network_id = ? AND first_key = ?",
            (address_key(value - 1), network_id, row[0]),
        )
        if value < last:
            session.execute(INSERT_RANGE, (network_id, address_key(value + 1), row[1]))
    session.execute(COUNT_ALLOCATED, (1, network_id))


def give_back(session: Session, network_id: str, address: str) -> None:
    """Add one address to the free ranges, merging it with its neighbours."""
    value = text_value(address)
    before = session.one(RANGE_AT_OR_BEFORE, (network_id, address_key(value)))
    if before is not None and key_value(before[1]) >= value:
        raise _inconsistent(session, network_id, address, "already free although an event releases it")
    first = last = address_key(value)
    if before is not None and key_value(before[1]) == value - 1:
        first = before[0]
        session.execute(DELETE_RANGE, (network_id, before[0]))
    after = session.one(
        "SELECT last_key FROM {free_addresses_ranges} WHERE network_id = ? AND first_key = ?",
        (network_id, address_key(value + 1)),
    )
    if after is not None:
        last = after[0]
        session.execute(DELETE_RANGE, (network_id, address_key(value + 1)))
    session.execute(INSERT_RANGE, (network_id, first, last))
    session.execute(COUNT_ALLOCATED, (-1, network_id))


class FreeAddressesFold(Fold):
    """The free-addresses rows of a rebuild: each network's free addresses as an interval set."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        super().__init__(connection)
        self.free: dict[str, IntervalSet] = {}
        self.handlers.update({
            NetworkCreated: self.created,
            IpAllocated: lambda event, position: self.take(event, position, event.ip),
            GatewayAllocated: lambda event, position: self.take(event, position, event.gw),
            AddressesReleased: self.released,
        })

    def created(self, event: NetworkCreated, position: int) -> None:
        network_id = network_key(event.originator_id)
        bounds = [(text_value(first), text_value(last)) for first, last in event.ranges]
        size = sum(last - first + 1 for first, last in bounds)
        self.networks[network_id] = [network_id, event.name, event.ip_version, str(size), 0]
        self.free[network_id] = IntervalSet(bounds)

    def take(self, event: Any, position: int, address: str) -> None:
        network_id, value = network_key(event.originator_id), text_value(address)
        free = self.free.get(network_id)
        if free is None or value not in free:
            raise self.contradiction(network_id, position, f"allocates {address}, which is not free")
        free.discard(value)
        self.networks[network_id][4] += 1

    def released(self, event: AddressesReleased, position: int) -> None:
        network_id = network_key(event.originator_id)
        free = self.free.get(network_id)
        for address in event.addresses:
            value = text_value(address)
            if free is None or value in free:
                raise self.contradiction(network_id, position, f"releases {address}, which is already free")
            free.add(value)
            self.networks[network_id][4] -= 1

    def rows(self) -> dict[str, Iterable[Sequence[Any]]]:
        ranges = (
            (network_id, address_key(first), address_key(last))
            for network_id, free in self.free.items()
            for first, last in free.ranges()
        )
        return {"free_addresses_networks": self.networks.values(), "free_addresses_ranges": ranges}


def _inconsistent(session: Session, network_id: str, address: str, problem: str) -> ViewInconsistent:
    row = session.one("SELECT name FROM {free_addresses_networks} WHERE network_id = ?", (network_id,))
    network = row[0] if row else network_id
    return ViewInconsistent(
        f"free-addresses read model: address {address} of network {network} is {problem}; "
        "run 'netledger projections rebuild'"
    )


@dataclass(frozen=True)
class FreeSpace:
    """A network's free addresses: counts, and the first ``len(ranges)`` free ranges."""

    network: str
    ip_version: int
    pool_size: int
    allocated: int
    range_count: int
    ranges: list[tuple[IPAddress, IPAddress]]

    @property
    def free(self) -> int:
        return self.pool_size - self.allocated


def free_space(session: Session, network_id: str, limit: int | None) -> FreeSpace | None:
    """Return a network's free space with at most ``limit`` ranges (all when None)."""
    row = session.one(
        "SELECT name, ip_version, pool_size, allocated FROM {free_addresses_networks} WHERE network_id = ?",
        (network_id,),
    )
    if row is None:
        return None
    name, version, pool_size, allocated = row
    count_row = session.one("SELECT COUNT(*) FROM {free_addresses_ranges} WHERE network_id = ?", (network_id,))
    statement = "SELECT first_key, last_key FROM {free_addresses_ranges} WHERE network_id = ? ORDER BY first_key"
    params: tuple[Any, ...] = (network_id,)
    if limit is not None:
        statement += " LIMIT ?"
        params = (network_id, limit)
    ranges = [(key_address(first, version), key_address(last, version)) for first, last in session.all(statement, params)]
    return FreeSpace(name, version, int(pool_size), allocated, count_row[0] if count_row else 0, ranges)


def export(session: Session, selected_id: str | None) -> dict[str, Any]:
    """Return the stored state of one network or all, in the form the replay check compares."""
    where, params = network_filter(selected_id)
    networks: dict[str, Any] = {}
    versions: dict[str, int] = {}
    for network_id, name, version, size, allocated in session.all(
        "SELECT network_id, name, ip_version, pool_size, allocated FROM {free_addresses_networks}" + where, params
    ):
        networks[network_id] = {"name": name, "pool_size": int(size), "allocated": allocated, "ranges": []}
        versions[network_id] = version
    for network_id, first, last in session.all(
        "SELECT network_id, first_key, last_key FROM {free_addresses_ranges}" + where + " ORDER BY first_key", params
    ):
        entry = networks.setdefault(network_id, {"name": None, "ranges": []})
        # Ranges without a network row print as IPv6, which every key converts to.
        version = versions.get(network_id, 6)
        entry["ranges"].append((str(key_address(first, version)), str(key_address(last, version))))
    return networks
