"""Rebuild read models from the whole log, folded in memory.

Catching up runs each event's statements against the ledger's database,
several round trips an event, which is right for a few new events and far
too slow for a whole log. A rebuild instead applies the log to each read
model's fold (``projections.fold``): in-memory state that yields the read
model's rows at the end. Then it replaces each read model's tables with
those rows in one transaction (COPY on PostgreSQL) and sets its position to
the last event folded. Queries keep reading the old tables until then.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING

from eventsourcing.persistence import Notification

from projections import free, history, occupancy
from projections.fold import Fold

if TYPE_CHECKING:
    from projections.runner import Progress, ReadModels

# Notifications read and decoded at a time.
PAGE_SIZE = 5_000
# The fold of each read model.
FOLDS: dict[str, type[Fold]] = {
    free.SCHEMA.name: free.FreeAddressesFold,
    occupancy.SCHEMA.name: occupancy.OccupancyFold,
    history.SCHEMA.name: history.AddressHistoryFold,
}


def rebuild(models: ReadModels, names: list[str], progress: Progress | None = None) -> dict[str, int]:
    """Replace the named read models with the whole log folded into them; return the events each applied."""
    head = models.head()
    with tempfile.TemporaryDirectory(prefix="netledger-rebuild-") as directory:
        connection = sqlite3.connect(Path(directory) / "spool.db", isolation_level=None)
        with closing(connection):
            for pragma in ("journal_mode = OFF", "synchronous = OFF"):
                connection.execute(f"PRAGMA {pragma}")
            connection.execute("BEGIN")
            folds = {name: FOLDS[name](connection) for name in names}
            applied = _fold(models, list(folds.values()), head, progress)
            for name, fold in folds.items():
                models.models[name].view.replace(head, fold.rows())
    return dict.fromkeys(names, applied)


def _fold(models: ReadModels, folds: list[Fold], head: int, progress: Progress | None) -> int:
    """Apply every event up to ``head`` to the folds; return how many there were."""
    to_domain_event = models.ledger.mapper.to_domain_event
    applied = 0
    for page in _pages(models, head):
        for notification in page:
            event = to_domain_event(notification)
            for fold in folds:
                fold.apply(event, notification.id)
        applied += len(page)
        if progress is not None:
            progress(page[-1].id, head)
    return applied


def _pages(models: ReadModels, head: int) -> Iterator[Sequence[Notification]]:
    """Yield the log up to ``head`` a page at a time, reading the next page while the caller applies this one.

    The database driver waits for the server without holding the
    interpreter's lock, so the read and the folding overlap.
    """
    recorder = models.ledger.recorder

    def read(after: int) -> Sequence[Notification]:
        return recorder.select_notifications(start=after, limit=PAGE_SIZE, stop=head, inclusive_of_start=False)

    if head <= 0:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="netledger-rebuild-read") as reader:
        pending = reader.submit(read, 0)
        while True:
            page = pending.result()
            if not page:
                return
            last = page[-1].id
            if last < head:
                pending = reader.submit(read, last)
            yield page
            if last >= head:
                return
