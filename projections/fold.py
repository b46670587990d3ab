"""Read-model rows computed in memory from the whole log, for a rebuild.

Catching up changes a read model's tables with a few statements per
event, which suits a few new events. A rebuild replays the whole log, and
one statement per event would cost more than reading and decoding the log
itself. So each read model also has a fold. A fold keeps in memory only
the state that later events can still change (free ranges, live
containers, open tenancies) and applies each event to it with dictionary
and interval-set operations. At the end it yields the finished rows, which
the rebuild loads with ``ViewStore.replace``.

A fold and its read model's SQL handlers are two implementations of one
definition. The tests check that both give the same rows for random
histories, and ``verify`` compares stored rows with a third, independent
replay (``projections.replay``).

Rows that no later event can change (a closed tenancy, a destroyed
container's life) go to a ``RowSpool``, which moves them to a temporary
SQLite file in batches. So the memory a rebuild needs follows the live
state, not the length of the log.
"""

from __future__ import annotations

import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from ledger.errors import StorageError

# Rows a spool keeps in memory before it writes them to its file.
SPOOL_ROWS = 50_000


class LogContradiction(StorageError):
    """The log contradicts itself (an event takes an address that earlier events left taken, say)."""


class RowSpool:
    """Finished rows of one table, in memory up to SPOOL_ROWS and then in a temporary SQLite table."""

    def __init__(self, connection: sqlite3.Connection, table: str, width: int) -> None:
        self._connection = connection
        # Columns without a declared type keep each value's Python type: text, integer or NULL.
        self._table = f'"spool_{table}"'
        columns = ", ".join(f"c{index}" for index in range(width))
        connection.execute(f"CREATE TABLE {self._table} ({columns})")
        self._insert = f"INSERT INTO {self._table} VALUES ({', '.join('?' * width)})"
        self._rows: list[Sequence[Any]] = []
        self._spooled = 0

    def append(self, row: Sequence[Any]) -> None:
        self._rows.append(row)
        if len(self._rows) >= SPOOL_ROWS:
            self._connection.executemany(self._insert, self._rows)
            self._spooled += len(self._rows)
            self._rows = []

    def __iter__(self) -> Iterator[Sequence[Any]]:
        if self._spooled:
            yield from self._connection.execute(f"SELECT * FROM {self._table}")
        yield from self._rows


EventHandler = Callable[[Any, int], None]


class Fold(ABC):
    """One read model's rows, computed from events applied in log order.

    A subclass fills ``handlers`` with a method per event type it uses;
    other events change nothing. ``networks`` maps each network id to the
    network's row in the read model's networks table, whose second column is the name.
    """

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection
        self.handlers: dict[type, EventHandler] = {}
        self.networks: dict[str, list[Any]] = {}

    def apply(self, event: Any, position: int) -> None:
        """Apply one event, stored at ``position`` in the log."""
        handler = self.handlers.get(type(event))
        if handler is not None:
            handler(event, position)

    def contradiction(self, network_id: str, position: int, problem: str) -> LogContradiction:
        """Return the error for an event of a network that earlier events rule out."""
        row = self.networks.get(network_id)
        network = row[1] if row is not None else f"with id {network_id}"
        return LogContradiction(
            f"the event at position {position} of network {network} {problem}; the log contradicts "
            "itself, and 'netledger verify' names the first event that breaks it"
        )

    @abstractmethod
    def rows(self) -> dict[str, Iterable[Sequence[Any]]]:
        """Return every row of every table of the read model, by table name."""
