"""The read models' tables in PostgreSQL, through the library's PostgreSQL tracking recorder.

Tables go in the same schema as the ledger's events, and names reach SQL
only as quoted identifiers composed by psycopg.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from psycopg import Cursor
from psycopg.rows import DictRow, TupleRow, tuple_row
from psycopg.sql import SQL, Composed, Identifier

from projections.store import APPLICATION_NAME, PositionMoved, Session, ViewSchema, ViewStore

T = TypeVar("T")


class PostgresSession(Session):
    """Statements of one PostgreSQL transaction, rendered for PostgreSQL."""

    def __init__(self, cursor: Cursor[DictRow], render: Callable[[str], Composed]) -> None:
        # A second cursor on the same connection shares the transaction and
        # returns tuples, as SQLite does, instead of the library's dicts.
        self._cursor: Cursor[TupleRow] = cursor.connection.cursor(row_factory=tuple_row)
        self._render = render

    def execute(self, statement: str, params: Sequence[Any] = ()) -> None:
        self._cursor.execute(self._render(statement), tuple(params))

    def one(self, statement: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        self.execute(statement, params)
        return self._cursor.fetchone()

    def all(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self.execute(statement, params)
        return self._cursor.fetchall()


class PostgresViewStore(ViewStore, PostgresTrackingRecorder):
    """One read model's tables and tracking table in the ledger's PostgreSQL database."""

    # Measured on a 2-core machine: a catch-up applied 1,500 to 1,600 events/s, a rebuild 30,000 to 35,000.
    rebuild_share = 15

    def __init__(self, datastore: PostgresDatastore, schema: ViewSchema) -> None:
        super().__init__(datastore, tracking_table_name=schema.tracking_table)
        if not datastore.single_row_tracking:
            raise ValueError("read models need single-row tracking (SINGLE_ROW_TRACKING=yes)")
        self.schema = schema
        database_schema = datastore.schema
        self._names: dict[str, Identifier] = {
            name: Identifier(database_schema, name) for name in schema.tables
        }
        self._names.update({name: Identifier(name) for name in schema.indexes})
        self._names["tracking"] = Identifier(database_schema, schema.tracking_table)
        self._rendered: dict[str, Composed] = {}
        self.sql_create_statements.extend(self._render(statement) for statement in schema.ddl)

    def _render(self, statement: str) -> Composed:
        rendered = self._rendered.get(statement)
        if rendered is None:
            rendered = SQL(statement.replace("?", "%s")).format(**self._names)
            self._rendered[statement] = rendered
        return rendered

    def create_table(self) -> None:
        super().create_table()
        # A tracking row from the start gives every write a row to lock.
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(
                self._render("INSERT INTO {tracking} VALUES (?, 0) ON CONFLICT (application_name) DO NOTHING"),
                (APPLICATION_NAME,),
            )

    def write(self, position: int, expected: int | None, steps: Callable[[Session], None]) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            # Locking the tracking row serialises the writers of this read model.
            # A second writer waits here and then reads the moved position.
            cursor.execute(
                self._render("SELECT notification_id FROM {tracking} WHERE application_name = ? FOR UPDATE"),
                (APPLICATION_NAME,),
            )
            row = cursor.fetchone()
            current = None if row is None else row["notification_id"]
            if expected is not None and current != expected:
                raise PositionMoved(f"{self.schema.name} is at {current}, not {expected}")
            self._insert_tracking(cursor, Tracking(APPLICATION_NAME, position))
            steps(PostgresSession(cursor, self._render))

    def read(self, steps: Callable[[Session], T]) -> tuple[int, T]:
        with self.datastore.transaction(commit=False) as cursor:
            # One snapshot for every statement, as SQLite gives a read transaction.
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            position = self._max_tracking_id(APPLICATION_NAME, cursor) or 0
            return position, steps(PostgresSession(cursor, self._render))

    def can_replace(self) -> bool:
        """Return whether the current role owns the view's tables (or is a member of their owner), as DROP TABLE needs."""
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(
                "SELECT bool_and(pg_has_role(current_user, c.relowner, 'USAGE')) AS owner "
                "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = ANY(%s)",
                (self.datastore.schema or "public", list(self.schema.tables)),
            )
            row = cursor.fetchone()
        return row is not None and row["owner"] is not False

    def reset(self) -> None:
        self.replace(0, {})

    def replace(self, position: int, rows: Mapping[str, Iterable[Sequence[Any]]]) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            # Updating the tracking row first waits for any writer that has locked it.
            cursor.execute(
                self._render("UPDATE {tracking} SET notification_id = ? WHERE application_name = ?"),
                (position, APPLICATION_NAME),
            )
            for table in self.schema.tables:
                cursor.execute(SQL("DROP TABLE IF EXISTS {}").format(self._names[table]))
            for statement in self.schema.ddl:
                cursor.execute(self._render(statement))
            for table, table_rows in rows.items():
                # COPY sends the rows in one stream instead of a statement each.
                with cursor.copy(SQL("COPY {} FROM STDIN").format(self._names[table])) as copy:
                    for row in table_rows:
                        copy.write_row(row)
