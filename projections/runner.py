"""Keep the read models caught up with the ledger's notification log.

Every read model follows the log on its own tracking position. Catching
up reads the log once, a page at a time, and gives each read model the
events after its position in one transaction per page. When another
process (a follower, or a query catching up at the same time) moved a
read model first, the write is refused, nothing is written, and catching
up starts again from the positions as they now are.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from eventsourcing.persistence import IntegrityError, OperationalError, PersistenceError, Tracking

from ledger.errors import InvalidInput, StorageError
from ledger.text import counted
from projections.base import Item, ReadModel
from projections.free import FreeAddresses
from projections.history import AddressHistory
from projections.occupancy import Occupancy
from projections.store import APPLICATION_NAME, PositionMoved, Session, ViewInconsistent, ViewStore, adapter_class

if TYPE_CHECKING:
    from ledger.application import Ledger

log = logging.getLogger("netledger.projections")

T = TypeVar("T")
READ_MODELS: tuple[type[ReadModel], ...] = (FreeAddresses, Occupancy, AddressHistory)
NAMES = tuple(model.name for model in READ_MODELS)
# Events per transaction. A rebuild then commits once per 500 events instead
# of once per event, and holds only one page of decoded events in memory.
BATCH_SIZE = 500
MAX_ATTEMPTS = 8
# A follower that finds more new events than this in one poll is falling
# behind the writers, and logs a warning. The figure is a choice, not a measurement.
LAG_WARNING = 10_000
Progress = Callable[[int, int], None]
# A catch-up that finds a read model REBUILD_FROM or more events behind,
# and at least 1/rebuild_share of the log (a figure of each database's view
# store), rebuilds it instead. Catching up 2,000 events on PostgreSQL takes
# about as long as rebuilding a 30,000-event log (measured on a 2-core machine).
REBUILD_FROM = 2_000


@dataclass(frozen=True)
class ReadModelStatus:
    """How far one read model has followed the log."""

    name: str
    position: int
    head: int

    @property
    def lag(self) -> int:
        return max(self.head - self.position, 0)


class ReadModels:
    """The three read models of one ledger, in the ledger's database."""

    def __init__(self, ledger: Ledger, batch_size: int = BATCH_SIZE) -> None:
        if batch_size < 1:
            raise InvalidInput(f"invalid batch size {batch_size}: give 1 or more events per transaction")
        self.ledger = ledger
        self.batch_size = batch_size
        store_class = adapter_class(type(ledger.factory).__module__)
        datastore = ledger.recorder.datastore  # type: ignore[attr-defined]
        # A store opened with CREATE_TABLE=no (the URL option create_tables=no)
        # is used by a role that may not create tables, so the read models'
        # tables must exist already.
        create_tables = ledger.factory.env_create_table()  # type: ignore[attr-defined]
        self.models: dict[str, ReadModel] = {}
        for model_class in READ_MODELS:
            store = store_class(datastore, model_class.schema)  # type: ignore[call-arg]
            if create_tables:
                _create_tables(store)
            self.models[model_class.name] = model_class(view=store)

    def head(self) -> int:
        """Return the notification id up to which the log is complete (0 for an empty log).

        On PostgreSQL, appends run side by side, so an event can be stored
        after one with a higher id: the head is the recorder's high-water
        mark (``ledger.pgstore``). SQLite runs one write transaction at a time,
        so its highest id is complete.
        """
        high_water_mark = getattr(self.ledger.recorder, "high_water_mark", None)
        if high_water_mark is not None:
            return int(high_water_mark())
        return self.ledger.recorder.max_notification_id() or 0

    def status(self) -> list[ReadModelStatus]:
        """Return each read model's position and the head of the log."""
        head = self.head()
        return [ReadModelStatus(name, model.view.position(), head) for name, model in self.models.items()]

    def read(self, name: str, steps: Callable[[Session], T]) -> tuple[int, T]:
        """Return a read model's position and the result of ``steps`` on its tables, from one snapshot."""
        return self.models[name].view.read(steps)

    def catch_up(self, progress: Progress | None = None) -> dict[str, int]:
        """Apply every event stored now to every read model; return how many each applied.

        Read models far behind the log are rebuilt instead (REBUILD_FROM),
        where this process may replace their tables.
        """
        head = self.head()
        positions = self._positions()
        far_behind = [
            name for name, position in positions.items()
            if _worth_rebuilding(head, position, self.models[name].view.rebuild_share)
        ]
        if far_behind and all(self.models[name].view.can_replace() for name in far_behind):
            log.info("read models %s are far behind the log (head %d); rebuilding them", ", ".join(far_behind), head)
            return self.rebuild(far_behind, progress)
        applied = dict.fromkeys(self.models, 0)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                if attempt > 1:
                    # Another process moved the positions, or the database failed: read them again.
                    positions = self._positions()
                self._catch_up_to(head, positions, applied, progress)
                return applied
            except (PositionMoved, OperationalError) as error:
                if attempt == MAX_ATTEMPTS and isinstance(error, OperationalError):
                    raise
                delay = random.uniform(0, 0.01 * 2**attempt)
                log.info(
                    "catching up was interrupted (%s); reading positions again in %.3fs "
                    "(attempt %d of %d)", error, delay, attempt, MAX_ATTEMPTS,
                )
                time.sleep(delay)
        raise StorageError(
            f"read models kept moving under this process after {MAX_ATTEMPTS} attempts; "
            "another process is writing them, retry later"
        )

    def _positions(self) -> dict[str, int]:
        return {name: model.view.position() for name, model in self.models.items()}

    def _catch_up_to(
        self, head: int, positions: dict[str, int], applied: dict[str, int], progress: Progress | None
    ) -> None:
        """Apply the events after each read model's position up to ``head``; ``positions`` changes as they apply."""
        cursor = min(positions.values())
        while cursor < head:
            page = self.ledger.recorder.select_notifications(
                start=cursor, limit=self.batch_size, stop=head, inclusive_of_start=False
            )
            if not page:
                break
            items = [(self.ledger.mapper.to_domain_event(n), Tracking(APPLICATION_NAME, n.id)) for n in page]
            for name, model in self.models.items():
                pending = [item for item in items if item[1].notification_id > positions[name]]
                if pending:
                    _apply(model, pending, positions[name])
                    positions[name] = pending[-1][1].notification_id
                    applied[name] += len(pending)
            cursor = page[-1].id
            if progress is not None:
                progress(cursor, head)

    def rebuild(self, names: list[str], progress: Progress | None = None) -> dict[str, int]:
        """Replace the named read models with the whole log replayed into them, then catch every model up.

        The replay folds the log in memory (``projections.rebuild``), so the
        read models keep serving queries until their new tables replace
        the old ones in one transaction.
        """
        from projections.rebuild import rebuild as rebuild_folded

        denied = [name for name in names if not self.models[name].view.can_replace()]
        if denied:
            raise StorageError(
                f"cannot rebuild {', '.join(denied)}: this database role does not own their tables, "
                "and a rebuild replaces them; run it as the tables' owner (the role that ran 'netledger db init')"
            )
        log.info("rebuilding %s from the log", ", ".join(names))
        applied = rebuild_folded(self, names, progress)
        for name, count in self.catch_up().items():
            applied[name] = applied.get(name, 0) + count
        return applied


def _worth_rebuilding(head: int, position: int, share: int) -> bool:
    """Return whether a read model at ``position`` is far enough behind ``head`` to rebuild it rather than catch up."""
    behind = head - position
    return behind >= REBUILD_FROM and behind * share >= head


def _create_tables(store: ViewStore) -> None:
    try:
        store.create_table()
    except IntegrityError:
        # PostgreSQL fails "CREATE TABLE IF NOT EXISTS" with a unique violation
        # when another process has just created the same table. That process
        # has committed by then, so the second try finds the table.
        store.create_table()


def _apply(model: ReadModel, items: list[Item], expected: int) -> None:
    try:
        model.process_batch(items, expected)
    except IntegrityError as error:
        first, last = items[0][1].notification_id, items[-1][1].notification_id
        raise ViewInconsistent(
            f"read model {model.name} could not apply events {first}-{last}: {error}; "
            "run 'netledger projections rebuild'"
        ) from None


def follow(models: ReadModels, interval: float, stop: threading.Event) -> None:
    """Catch up every ``interval`` seconds until ``stop`` is set.

    Database failures are logged and retried with a growing delay of up
    to 30 seconds. A read model that contradicts the log stops the loop,
    because only a rebuild repairs it.
    """
    log.info("following the log of %s every %gs", APPLICATION_NAME, interval)
    failures = 0
    while not stop.is_set():
        try:
            applied = models.catch_up()
        except ViewInconsistent:
            log.error("stopped following: a read model contradicts the log")
            raise
        except (PersistenceError, StorageError) as error:
            failures += 1
            delay = min(interval * 2**failures, 30.0)
            log.error("catching up failed (%s); retrying in %.1fs", error, delay)
            stop.wait(delay)
            continue
        failures = 0
        behind = max(applied.values())
        if behind > LAG_WARNING:
            log.warning(
                "read models were %d events behind the log; a larger --batch-size applies more per transaction",
                behind,
            )
        elif any(applied.values()):
            log.info("applied %s", ", ".join(f"{counted(count, 'event')} to {name}" for name, count in applied.items()))
        stop.wait(interval)
    log.info("stopped following the log")
