"""The interface every database adapter of the read models implements.

A read model's tables live in the ledger's own database, beside a tracking
table that records the position (notification id) of the last event the
read model has applied. Each adapter is a subclass of the eventsourcing
library's tracking recorder for its database. It writes view rows and the
new tracking position in one transaction, so after a crash a read model is
exactly as it was after some whole batch of events, and resuming from the
tracking position applies each event once.

Statements are written once for both databases, with ``?`` for each
parameter and ``{name}`` for each table or index name of the view. The
adapter renders them for its database. Only these fixed names reach SQL
text, never a value.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar

from eventsourcing.persistence import TrackingRecorder
from eventsourcing.utils import resolve_topic

from ledger.errors import StorageError

# The application whose notification log the read models follow.
APPLICATION_NAME = "netledger"

T = TypeVar("T")

# The adapter for the module of each infrastructure factory the ledger uses,
# and so for each URL scheme, because ledger.storage maps schemes to factories. The values are
# topics, not classes, so that a SQLite user never imports the PostgreSQL driver.
ADAPTER_TOPICS = {
    "eventsourcing.sqlite": "projections.sqlite_store:SQLiteViewStore",
    "ledger.pgstore": "projections.postgres_store:PostgresViewStore",
}


@dataclass(frozen=True)
class ViewSchema:
    """The tables of one read model: its name, table and index names, and DDL."""

    name: str
    tables: tuple[str, ...]
    indexes: tuple[str, ...]
    ddl: tuple[str, ...]

    @property
    def tracking_table(self) -> str:
        return f"{self.name}_tracking"


class PositionMoved(Exception):
    """Another process advanced or reset a read model after this one read its position."""


class ViewInconsistent(StorageError):
    """A read model's rows contradict an event; the read model must be rebuilt."""


class Session(Protocol):
    """Statements run inside one transaction of a view store."""

    def execute(self, statement: str, params: Sequence[Any] = ()) -> None:
        """Run a statement that returns no rows."""

    def one(self, statement: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        """Run a query and return its first row, or None."""

    def all(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a query and return all its rows."""


class ViewStore(TrackingRecorder, ABC):
    """The tables and the tracking record of one read model in one database."""

    schema: ViewSchema
    # A catch-up rebuilds a read model that is at least 1/rebuild_share of the log
    # behind: about how many times faster a rebuild applies an event than a catch-up.
    rebuild_share: ClassVar[int]

    @abstractmethod
    def write(self, position: int, expected: int | None, steps: Callable[[Session], None]) -> None:
        """Run ``steps`` and move the tracking position to ``position``, in one transaction.

        Raises ``PositionMoved`` and writes nothing unless the tracking
        position is ``expected`` when the transaction starts. With ``None``
        the only check is the library's: the position must increase.
        """

    @abstractmethod
    def read(self, steps: Callable[[Session], T]) -> tuple[int, T]:
        """Return the tracking position and the result of ``steps``, from one snapshot."""

    @abstractmethod
    def reset(self) -> None:
        """Drop and recreate the view's tables and set its position to 0, in one transaction."""

    @abstractmethod
    def replace(self, position: int, rows: Mapping[str, Iterable[Sequence[Any]]]) -> None:
        """Replace every table's rows with ``rows`` (by table name) and set the position, in one transaction.

        The tables are dropped and created again, so this also serves as a
        reset. A writer that read the old position fails its next write
        with ``PositionMoved``.
        """

    def can_replace(self) -> bool:
        """Return whether this connection may drop and create the view's tables, as ``replace`` does."""
        return True

    def position(self) -> int:
        """Return the notification id of the last event this read model applied (0 for none)."""
        return self.max_tracking_id(APPLICATION_NAME) or 0


def network_filter(network_id: str | None) -> tuple[str, tuple[str, ...]]:
    """Return a WHERE clause and its parameters that keep one network's rows, or nothing for all."""
    if network_id is None:
        return "", ()
    return " WHERE network_id = ?", (network_id,)


def adapter_class(persistence_module: str) -> type[ViewStore]:
    """Return the view store class for the ledger's persistence module."""
    topic = ADAPTER_TOPICS.get(persistence_module)
    if topic is None:
        raise StorageError(
            f"read models are not supported on persistence module {persistence_module!r}; "
            "use a sqlite:/// or postgresql:// database URL"
        )
    store_class: type[ViewStore] = resolve_topic(topic)
    return store_class
