"""Rebuild read models from the whole log through a private staging database.

Catching up runs each event's statements against the ledger's database,
several round trips an event, which is right for a few new events and far
too slow for a whole log. A rebuild runs the same handlers against a
staging SQLite database of its own, in a temporary file. Then it replaces
each read model's tables with the staged rows in one transaction (COPY on
PostgreSQL) and sets its position to the last event staged. The handlers
are the ones catching up uses, so both ways give the same rows.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import Notification, Tracking

from ledger.errors import StorageError
from projections.base import ReadModel
from projections.sqlite_store import SQLiteSession
from projections.store import APPLICATION_NAME, Session

if TYPE_CHECKING:
    from projections.runner import Progress, ReadModels

# Notifications read and decoded at a time.
PAGE_SIZE = 5_000
# The read model staged in a second process, and the log length from which
# that pays for the second process's start (about half a second).
SECOND_PROCESS = ("address_history",)
PARALLEL_FROM = 20_000
# The staging database's page cache, in KiB. Rows beyond it spill to the temporary file.
STAGING_CACHE_KIB = 65_536
Handler = Callable[[Any, Any, Tracking, Session], None]


class StagingSession(SQLiteSession):
    """Statements against the staging database, with table names rendered as quoted identifiers."""

    def __init__(self, connection: sqlite3.Connection, names: dict[str, str]) -> None:
        rendered: dict[str, str] = {}

        def render(statement: str) -> str:
            text = rendered.get(statement)
            if text is None:
                text = rendered[statement] = statement.format(**names)
            return text

        super().__init__(connection.cursor(), render)  # type: ignore[arg-type]
        self._rendered = rendered
        self._connection = connection
        self._names = names

    # A rebuild runs several statements an event, so these skip the base class's
    # extra calls: the statements come rendered from a dict, and sqlite3 takes
    # the handlers' tuples and returns rows as tuples.
    def execute(self, statement: str, params: Sequence[Any] = ()) -> None:
        self._cursor.execute(self._rendered.get(statement) or self._render(statement), params)

    def one(self, statement: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        self._cursor.execute(self._rendered.get(statement) or self._render(statement), params)
        return self._cursor.fetchone()  # type: ignore[no-any-return]

    def rows(self, table: str) -> sqlite3.Cursor:
        """Return a cursor over every row of one staged table."""
        return self._connection.execute(f"SELECT * FROM {self._names[table]}")


class StagedModel:
    """One read model's handlers bound to its staged tables."""

    def __init__(self, model: ReadModel, connection: sqlite3.Connection) -> None:
        schema = model.schema
        self.model = model
        self.session = StagingSession(connection, {name: _quote(name) for name in (*schema.tables, *schema.indexes)})
        for statement in schema.ddl:
            self.session.execute(statement)
        # Resolving the handler once per event type skips singledispatchmethod's lookup on every call.
        self._dispatcher = vars(type(model))["apply"].dispatcher
        self._handlers: dict[type, Handler] = {}

    def apply(self, event: Any, tracking: Tracking) -> None:
        handler = self._handlers.get(type(event))
        if handler is None:
            handler = self._handlers[type(event)] = self._dispatcher.dispatch(type(event))
        handler(self.model, event, tracking, self.session)


def rebuild(models: ReadModels, names: list[str], progress: Progress | None = None) -> dict[str, int]:
    """Replace the named read models with the whole log replayed into staging; return the events each applied.

    On a log of PARALLEL_FROM events or more in a store that another process
    can open, the address history is staged in a second process
    (``projections.rebuild_helper``) while this one stages the rest, so a
    rebuild uses two cores. Each process reads and decodes the log itself.
    """
    head = models.head()
    in_helper = [name for name in names if name in SECOND_PROCESS]
    in_this_process = [name for name in names if name not in SECOND_PROCESS]
    if not (in_helper and in_this_process and head >= PARALLEL_FROM and _shareable(models)):
        return rebuild_here(models, names, head, progress)
    helper = subprocess.Popen(
        [sys.executable, "-m", "projections.rebuild_helper", str(head), *in_helper], stdin=subprocess.PIPE
    )
    try:
        assert helper.stdin is not None
        # A helper that failed at start has closed its end, and its exit status reports that below.
        with suppress(BrokenPipeError), helper.stdin:
            helper.stdin.write(json.dumps(dict(models.ledger.env)).encode())
        applied = rebuild_here(models, in_this_process, head, progress)
        exit_status = helper.wait()
    finally:
        if helper.poll() is None:
            helper.terminate()
            helper.wait()
    if exit_status != 0:
        raise StorageError(
            f"rebuilding {', '.join(in_helper)} in a second process failed (exit status {exit_status}); "
            "see its log above, then run 'netledger projections rebuild' again"
        )
    return dict.fromkeys(names, next(iter(applied.values())))


def _shareable(models: ReadModels) -> bool:
    """Return whether a second process can open the ledger's store (not a private in-memory SQLite)."""
    return "mode=memory" not in str(models.ledger.env.get("SQLITE_DBNAME", ""))


def rebuild_here(models: ReadModels, names: list[str], head: int, progress: Progress | None) -> dict[str, int]:
    """Replace the named read models with the log up to ``head`` staged in this process; return the events each applied."""
    with tempfile.TemporaryDirectory(prefix="netledger-rebuild-") as directory:
        connection = sqlite3.connect(Path(directory) / "staging.db", isolation_level=None)
        with closing(connection):
            for pragma in ("journal_mode = OFF", "synchronous = OFF", f"cache_size = -{STAGING_CACHE_KIB}"):
                connection.execute(f"PRAGMA {pragma}")
            connection.execute("BEGIN")
            staged = [StagedModel(models.models[name], connection) for name in names]
            applied = _stage(models, staged, head, progress)
            for stage in staged:
                tables = {table: stage.session.rows(table) for table in stage.model.schema.tables}
                stage.model.view.replace(head, tables)
    return dict.fromkeys(names, applied)


def _stage(models: ReadModels, staged: list[StagedModel], head: int, progress: Progress | None) -> int:
    """Apply every event up to ``head`` to the staged models; return how many there were."""
    ledger = models.ledger
    applied = 0
    for page in _pages(models, head):
        for notification in page:
            event = ledger.mapper.to_domain_event(notification)
            tracking = Tracking(APPLICATION_NAME, notification.id)
            for stage in staged:
                stage.apply(event, tracking)
        applied += len(page)
        if progress is not None:
            progress(page[-1].id, head)
    return applied


def _pages(models: ReadModels, head: int) -> Iterator[Sequence[Notification]]:
    """Yield the log up to ``head`` a page at a time, reading the next page while the caller applies this one.

    The database driver waits for the server without holding the
    interpreter's lock, so the read and the staging overlap.
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


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
