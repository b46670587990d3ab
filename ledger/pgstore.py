"""The PostgreSQL recorders of the ledger: events and snapshots in one round trip each.

Events. The library can append a command's events through a database
function, one statement in one implicit transaction, which is much faster
than its default path (a transaction with a table lock and the inserts).
Both paths draw notification ids from a sequence, so a writer that drew id
11 can commit before one that drew id 10. A read model that has read up to
11 would then never read 10, and the read models here track one position
each. The library's default path prevents that: it holds the table's lock
until commit, so appends run one at a time. Its function takes no lock.

``OrderedInsertRecorder`` appends with one statement that first takes an
advisory lock in shared mode instead, so appends run side by side. A reader
asks for the high-water mark: a function that takes the same lock in
exclusive mode, which waits for the appends in progress to end and holds
new ones back, then reads the highest id. Every lower id that will ever be
stored is stored by then, so a reader that reads no further than the mark
skips nothing. Four writers on four networks ran 1.3 times as fast as one
with the table lock, 1.7 times with the shared lock. The append sends no
notification, as the library's function does: the read models poll the
log, and a notification takes one more lock at every commit. Earlier
versions appended the same way through a function of their own
(``netledger_append_events_<type>``), which is still installed for their
processes. The plain statement took 271 microseconds an append where the
function took 304, measured side by side on a 2-core machine.

Turns. Writers of one stream (one network) that never pause collide, and
the one that has just appended tends to win again, so the others can wait
for seconds. A writer that collided therefore takes the stream's turn:
a function (``netledger_take_turn_<type>``) waits for an advisory lock of
the stream in exclusive mode, at session level, then reads the events
stored after the writer's version. Each statement of the function reads a
new snapshot, so that read returns every append that ended before the lock
was granted. PostgreSQL grants waiting requests in the order they were
made, so writers get the turn in turn. The holder appends with a
statement that takes no turn lock, and its last append of the turn sends
the unlock in the same round trip (``ledger.pgwire.run_prepared_then``).
Every other append tries the same lock in shared mode, which fails while
another session holds or waits for it, and then stores nothing. The writer
gets ``TurnTaken`` and requests the turn. A writer waits for the turn at
most ``turn_timeout`` seconds. The ledger then appends to that stream
with ``ignore_turn`` for a while (``ledger.application.TURNS_OFF_SECONDS``),
so that a holder that stopped (a suspended process, say) delays the
stream's other writers but does not stop them.

Parameters. The library passes events as an array of a composite type,
which psycopg sends as text, escaping every byte of every state. Both
recorders here write one array per column (ids, versions, topics, states)
in PostgreSQL's binary format and send them through libpq
(``ledger.pgwire``). Binary arrays sent through psycopg already saved about
a tenth of a command's append (610 to 545 microseconds) and most of a large
snapshot's write; libpq saves psycopg's adaptation of the lists as well.

Snapshots. A snapshot of a busy network is a few hundred kilobytes, and
PostgreSQL compresses such a value before it stores it. For a snapshot of
363 kB (5,000 recorded requests), the library's path took 30 ms, binary
parameters 8.6 ms, and binary parameters into an uncompressed column 2.5 ms.
``SnapshotRecorder`` therefore stores the state column uncompressed, which
costs disk: only the latest snapshot of each network is ever read, but none
is deleted.
"""

from __future__ import annotations

import random
import time
import zlib
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import (
    DatabaseError,
    DataError,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    PersistenceError,
    ProgrammingError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresAggregateRecorder, PostgresApplicationRecorder, PostgresFactory
from eventsourcing.utils import retry
import psycopg
from psycopg import pq
from psycopg.sql import SQL, Composable, Composed, Identifier, Literal

from ledger.errors import StorageError, TurnsUnavailable
from ledger.pgwire import (
    ARRAY_OIDS,
    BYTEA_OID,
    INT4,
    INT4_OID,
    INT8,
    INT8_OID,
    TEXT_OID,
    UUID_OID,
    binary_array,
    failed_for_missing_statement,
    raise_for_error,
    run_prepared,
    run_prepared_then,
)

INSERT_FUNCTION_PREFIX = "netledger_append_events_"
HIGH_WATER_MARK_PREFIX = "netledger_high_water_mark_"
TAKE_TURN_PREFIX = "netledger_take_turn_"
# The names under which each connection prepares the append, the read of a stream's new events, and the snapshot insert.
APPEND_STATEMENT = b"netledger_append_events"
SELECT_AFTER_STATEMENT = b"netledger_select_events_after"
SNAPSHOT_STATEMENT = b"netledger_insert_snapshots"
TAKE_TURN_STATEMENT = b"netledger_take_turn"
TURN_APPEND_STATEMENT = b"netledger_append_in_turn"
# The first key of the advisory lock that appends share (the letters "nldg").
LOCK_CLASS = SQL(str(0x6E6C6467))
# The first key of a stream's turn lock (the letters "nltn"); the second is ``turn_key``.
TURN_CLASS = 0x6E6C746E
# Seconds a writer waits for a stream's turn before it appends without one.
TURN_TIMEOUT = 5
# Seconds a reader waits for the appends in progress before it fails.
HIGH_WATER_MARK_TIMEOUT = 10
# Attempts at creating the tables and functions while other processes create them at the same time.
CREATE_ATTEMPTS = 5


def appenders_lock_key(schema: str, table: str) -> SQL:
    """Return the second key of the appenders' advisory lock: a signed 32-bit hash of the table's name.

    The key is computed here, not from the table's OID, so that it cannot
    change under a running session.
    """
    value = zlib.crc32(f"{schema}.{table}".encode()) - 2**31
    return SQL(str(value))


def turn_key(originator_id: UUID | str) -> int:
    """Return the second key of a stream's turn lock: a signed 32-bit hash of the stream's id.

    Two streams may share a key; their writers then take turns together.
    """
    data = originator_id.bytes if isinstance(originator_id, UUID) else str(originator_id).encode()
    return zlib.crc32(data) - 2**31


def stream_parameter(originator_id: UUID | str, id_type: str) -> bytes:
    """Return a stream's id in the binary format of the events table's id column."""
    return originator_id.bytes if id_type == "uuid" else str(originator_id).encode()  # type: ignore[union-attr]


def stored_events_of(result: Any, originator_id: Any) -> list[StoredEvent]:
    """Return the stream's events in a binary result of (originator_version, topic, state) rows."""
    return [
        StoredEvent(
            originator_id=originator_id,
            originator_version=INT8.unpack(result.get_value(row, 0))[0],
            topic=result.get_value(row, 1).decode(),
            state=result.get_value(row, 2),
        )
        for row in range(result.ntuples)
    ]


def call_once(work: Callable[[], None] | None) -> Callable[[], None]:
    """Return a function that calls ``work`` on its first call only, and never when ``work`` is None."""
    calls = [work] if work is not None else []

    def once() -> None:
        if calls:
            calls.pop()()

    return once


class TurnTaken(IntegrityError):
    """An append without a turn found that another writer holds the stream's turn, and stored nothing."""


# psycopg's errors and the library's, most specific first, as the library's get_connection translates them.
PERSISTENCE_ERRORS: tuple[tuple[type[psycopg.Error], type[PersistenceError]], ...] = (
    (psycopg.InterfaceError, InterfaceError),
    (psycopg.OperationalError, OperationalError),
    (psycopg.DataError, DataError),
    (psycopg.IntegrityError, IntegrityError),
    (psycopg.InternalError, InternalError),
    (psycopg.ProgrammingError, ProgrammingError),
    (psycopg.NotSupportedError, NotSupportedError),
    (psycopg.DatabaseError, DatabaseError),
)


def persistence_error(error: psycopg.Error) -> PersistenceError:
    """Return the library's persistence error for a psycopg error, with the same message."""
    for driver_error, library_error in PERSISTENCE_ERRORS:
        if isinstance(error, driver_error):
            return library_error(str(error))
    return PersistenceError(str(error))


def set_lock_timeout(seconds: int) -> SQL:
    """Return the statement that bounds the transaction's lock waits, or nothing for 0, which keeps the session's setting."""
    return SQL("SET LOCAL lock_timeout = '{}s'; ".format(int(seconds))) if seconds else SQL("")


def explain_missing_function(error: ProgrammingError, function: str) -> None:
    """Raise a StorageError that says what to do when ``error`` is the server's "function does not exist" for ``function``.

    A database set up by an earlier version lacks the functions of this one.
    A store opened with table creation on installs them, but one opened with
    ``create_tables=no`` cannot. For any other error, return.
    """
    if function in str(error) and "does not exist" in str(error):
        raise StorageError(
            f"the database has no function {function}, which this version of netledger appends and reads "
            "through; run 'netledger db init' as the owner of the tables to install it"
        ) from None


def create_racing_others(create: Callable[[], None]) -> None:
    """Run a recorder's create statements, again after a clash with another process creating the same objects.

    On a new database, processes that open the store at once all create the
    tables and functions. The server can then fail all but one with a unique
    violation in its catalog, "tuple concurrently updated", or "relation ...
    already exists" (even for CREATE TABLE IF NOT EXISTS). By the next
    attempt the objects exist.
    """
    for attempt in range(1, CREATE_ATTEMPTS + 1):
        try:
            create()
            return
        except (IntegrityError, InternalError, ProgrammingError) as error:
            raced = not isinstance(error, ProgrammingError) or "already exists" in str(error)
            if attempt == CREATE_ATTEMPTS or not raced:
                raise
            time.sleep(random.uniform(0, 0.05 * attempt))


def create_function_once(schema: str, name: str, arguments: Composable, returns: Composable, body: Composable) -> Composed:
    """Return a statement that creates a plpgsql function unless one of that name already has this body.

    Every open of the store runs its create statements. CREATE OR REPLACE
    rewrites the function's catalog row even when nothing changed, and two
    processes doing that at once fail with "tuple concurrently updated", so
    parallel commands (CNI calls, say) failed now and then.
    """
    text = body.as_string(None)
    return SQL(
        "DO $do$ BEGIN "
        "IF NOT EXISTS (SELECT 1 FROM pg_proc JOIN pg_namespace ON pg_namespace.oid = pg_proc.pronamespace "
        "WHERE nspname = {schema_text} AND proname = {name_text} AND prosrc = {body_text}) THEN "
        "CREATE OR REPLACE FUNCTION {schema}.{name}({arguments}) RETURNS {returns} LANGUAGE plpgsql "
        "AS $body${body}$body$; "
        "END IF; END $do$"
    ).format(
        schema_text=Literal(schema),
        name_text=Literal(name),
        body_text=Literal(text),
        schema=Identifier(schema),
        name=Identifier(name),
        arguments=arguments,
        returns=returns,
        body=SQL(text),
    )


def column_types(id_type: str) -> list[int]:
    """Return the type OIDs of the four column arrays that ``binary_columns`` writes."""
    id_oid = UUID_OID if id_type == "uuid" else TEXT_OID
    return [ARRAY_OIDS[oid] for oid in (id_oid, INT8_OID, TEXT_OID, BYTEA_OID)]


def binary_columns(stored_events: Sequence[StoredEvent], id_type: str, encoding: str) -> list[bytes]:
    """Return the events' ids, versions, topics and states as four arrays in PostgreSQL's binary format."""
    if id_type == "uuid":
        ids = binary_array(UUID_OID, [event.originator_id.bytes for event in stored_events])
    else:
        ids = binary_array(TEXT_OID, [str(event.originator_id).encode(encoding) for event in stored_events])
    return [
        ids,
        binary_array(INT8_OID, [INT8.pack(event.originator_version) for event in stored_events]),
        binary_array(TEXT_OID, [event.topic.encode(encoding) for event in stored_events]),
        binary_array(BYTEA_OID, [bytes(event.state) for event in stored_events]),
    ]


def run_on_lent_connection(
    datastore: Any,
    name: bytes,
    query: bytes,
    parameter_types: list[int],
    parameters: list[bytes] | Callable[[str], list[bytes]],
    while_waiting: Callable[[], None] | None = None,
) -> Any:
    """Run a prepared statement on a connection lent by the pool and return its result.

    ``parameters`` may be a function of the connection's encoding. The
    statement runs through ``run_prepared``. The pool is used directly: the library's get_connection context took 14
    microseconds a call here, getconn and putconn 6. Errors are translated as
    the library translates them.
    """
    pool = datastore.pool
    pool.open(datastore.pool_open_timeout is not None, datastore.pool_open_timeout or 30.0)
    try:
        connection = pool.getconn()
        try:
            values = parameters(connection.info.encoding) if callable(parameters) else parameters
            return run_prepared(connection, name, query, parameter_types, values, while_waiting)
        finally:
            pool.putconn(connection)
    except psycopg.Error as error:
        raise persistence_error(error) from error


class OrderedInsertRecorder(PostgresApplicationRecorder):
    """Append events in one statement, and tell readers how far the log is complete."""

    # insert_events takes ``while_waiting``, work to do while the server stores the events.
    applies_while_waiting = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        id_type = self.datastore.originator_id_type
        schema = Identifier(self.datastore.schema)
        table = Identifier(self.events_table_name)
        self.pg_function_name_insert_events = INSERT_FUNCTION_PREFIX + id_type
        self.high_water_mark_function = HIGH_WATER_MARK_PREFIX + id_type
        high_water_mark = Identifier(self.high_water_mark_function)
        lock_key = SQL("{}, {}").format(LOCK_CLASS, appenders_lock_key(self.datastore.schema, self.events_table_name))
        qualified_table = SQL("{}.{}").format(schema, table)
        # The lock is taken before any row draws its id from the sequence. The inserted rows come from a
        # join with the one-row CTE, and PostgreSQL evaluates that CTE once, in full, because it calls a
        # volatile function. tests/test_pgstore.py fails if an append does not take the lock.
        timeout_setting = (
            SQL("set_config('lock_timeout', '{}s', true), ").format(SQL(str(int(self.datastore.lock_timeout))))
            if self.datastore.lock_timeout
            else SQL("")
        )
        append = SQL(
            "WITH appenders AS (SELECT {timeout_setting}pg_advisory_xact_lock_shared({lock_key}){turn_free}) "
            "INSERT INTO {table} (originator_id, originator_version, topic, state) "
            "SELECT event.* FROM appenders, unnest($1, $2, $3, $4) AS event{where} "
            "RETURNING notification_id"
        )
        # An append stores nothing while another writer holds the stream's turn (see take_turn).
        self.append_query = append.format(
            timeout_setting=timeout_setting,
            lock_key=lock_key,
            turn_free=SQL(", pg_try_advisory_xact_lock_shared({}, $5) AS turn_free").format(SQL(str(TURN_CLASS))),
            table=qualified_table,
            where=SQL(" WHERE appenders.turn_free"),
        ).as_bytes(None)
        self.append_types = column_types(id_type) + [INT4_OID]
        # The turn's holder appends without trying the turn lock, because while other writers wait
        # for it, the server rejects even the holder's try in another mode.
        self.turn_append_query = append.format(
            timeout_setting=timeout_setting, lock_key=lock_key, turn_free=SQL(""), table=qualified_table, where=SQL("")
        ).as_bytes(None)
        id_oid = UUID_OID if id_type == "uuid" else TEXT_OID
        events_after = SQL(
            "SELECT originator_version, topic, state FROM {table} "
            "WHERE originator_id = {stream} AND originator_version > {after} ORDER BY originator_version"
        )
        self.select_after_query = events_after.format(table=qualified_table, stream=SQL("$1"), after=SQL("$2")).as_bytes(
            None
        )
        self.select_after_types = [id_oid, INT8_OID]
        self.take_turn_function = TAKE_TURN_PREFIX + id_type
        # Each statement of the function reads a new snapshot, so the events are read once the turn is held.
        take_turn_body = SQL(
            "BEGIN "
            "PERFORM set_config('lock_timeout', wait_ms || 'ms', true); "
            "PERFORM pg_advisory_lock({turn_class}, turn); "
            "RETURN QUERY {events_after}; "
            "END"
        ).format(
            turn_class=SQL(str(TURN_CLASS)),
            events_after=events_after.format(table=qualified_table, stream=SQL("stream"), after=SQL("after")),
        )
        self.sql_create_statements.append(
            create_function_once(
                self.datastore.schema,
                self.take_turn_function,
                SQL("stream {id_type}, after bigint, turn integer, wait_ms integer").format(id_type=SQL(id_type)),
                SQL("TABLE (turn_version bigint, turn_topic text, turn_state bytea)"),
                take_turn_body,
            )
        )
        self.take_turn_query = (
            SQL("SELECT * FROM {schema}.{function}($1, $2, $3, $4)")
            .format(schema=schema, function=Identifier(self.take_turn_function))
            .as_bytes(None)
        )
        self.take_turn_types = [id_oid, INT8_OID, INT4_OID, INT4_OID]
        self.turn_timeout: float = TURN_TIMEOUT
        # The function of earlier versions, which appended the same way; it stays installed for their processes.
        append_body = SQL(
            "BEGIN "
            "{set_lock_timeout}"
            "PERFORM pg_advisory_xact_lock_shared({lock_key}); "
            "RETURN QUERY "
            "INSERT INTO {table} (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(ids, versions, topics, states) "
            "RETURNING notification_id; "
            "END"
        ).format(
            set_lock_timeout=set_lock_timeout(self.datastore.lock_timeout),
            lock_key=lock_key,
            table=qualified_table,
        )
        self.sql_create_statements[self.create_insert_function_statement_index] = create_function_once(
            self.datastore.schema,
            self.pg_function_name_insert_events,
            SQL("ids {id_type}[], versions bigint[], topics text[], states bytea[]").format(id_type=SQL(id_type)),
            SQL("SETOF bigint"),
            append_body,
        )
        # In READ COMMITTED (the default), each statement of a plpgsql function
        # reads a new snapshot, so the maximum is read after every earlier append has ended.
        high_water_mark_body = SQL(
            "BEGIN "
            "{set_lock_timeout}"
            "PERFORM pg_advisory_xact_lock({lock_key}); "
            "RETURN (SELECT max(notification_id) FROM {table}); "
            "END"
        ).format(
            set_lock_timeout=set_lock_timeout(HIGH_WATER_MARK_TIMEOUT),
            lock_key=lock_key,
            table=qualified_table,
        )
        self.sql_create_statements.append(
            create_function_once(
                self.datastore.schema, self.high_water_mark_function, SQL(""), SQL("bigint"), high_water_mark_body
            )
        )
        self.sql_high_water_mark = SQL("SELECT {schema}.{high_water_mark}() AS head").format(
            schema=schema, high_water_mark=high_water_mark
        )

    def create_table(self) -> None:
        create_racing_others(super().create_table)

    def insert_events(
        self,
        stored_events: Sequence[StoredEvent],
        *,
        while_waiting: Callable[[], None] | None = None,
        ignore_turn: bool = False,
        **kwargs: Any,
    ) -> Sequence[int] | None:
        """Append the events in one statement and return their notification ids.

        ``while_waiting`` is called once, after the first attempt is sent and
        before the server replies. The append is tried again after a lost
        connection, so it may run before an attempt that fails. With
        ``ignore_turn``, the append stores the events even while another
        writer holds the stream's turn; the stream's version still
        rejects an append that missed an event.
        """
        return self._insert_events(stored_events, call_once(while_waiting), ignore_turn)

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def _insert_events(
        self, stored_events: Sequence[StoredEvent], while_waiting: Callable[[], None], ignore_turn: bool = False
    ) -> list[int]:
        if ignore_turn:
            id_type = self.datastore.originator_id_type
            result = run_on_lent_connection(
                self.datastore,
                TURN_APPEND_STATEMENT,
                self.turn_append_query,
                column_types(id_type),
                lambda encoding: binary_columns(stored_events, id_type, encoding),
                while_waiting,
            )
        else:
            result = run_on_lent_connection(
                self.datastore,
                APPEND_STATEMENT,
                self.append_query,
                self.append_types,
                lambda encoding: self.append_parameters(stored_events, encoding),
                while_waiting,
            )
        return self.appended_ids(result, stored_events)

    def append_parameters(self, stored_events: Sequence[StoredEvent], encoding: str) -> list[bytes]:
        """Return the append statement's parameters: the four columns and the turn key of the first event's stream."""
        columns = binary_columns(stored_events, self.datastore.originator_id_type, encoding)
        key = turn_key(stored_events[0].originator_id) if stored_events else 0
        return columns + [INT4.pack(key)]

    @staticmethod
    def appended_ids(result: Any, stored_events: Sequence[StoredEvent]) -> list[int]:
        """Return the notification ids of an append's result; raise TurnTaken if it stored nothing."""
        if stored_events and not result.ntuples:
            raise TurnTaken(f"another writer holds the turn of stream {stored_events[0].originator_id}")
        return [INT8.unpack(result.get_value(row, 0))[0] for row in range(result.ntuples)]

    def take_turn(self, originator_id: Any, version: int) -> Turn | None:
        """Take the stream's turn, and read the events stored after ``version``.

        While a writer holds a stream's turn, appends to the stream by
        other writers store nothing and raise ``TurnTaken``, and writers
        that request the turn wait for it, in the order of their requests. Return
        None, holding nothing, when the turn is not free within
        ``turn_timeout`` seconds or the server cannot be reached: the caller
        then appends without a turn. The turn keeps a connection of the
        pool until it ends.
        """
        datastore = self.datastore
        pool = datastore.pool
        pool.open(datastore.pool_open_timeout is not None, datastore.pool_open_timeout or 30.0)
        connection = pool.getconn()
        key = turn_key(originator_id)
        parameters = [
            stream_parameter(originator_id, datastore.originator_id_type),
            INT8.pack(version),
            INT4.pack(key),
            INT4.pack(max(1, int(self.turn_timeout * 1000))),
        ]
        try:
            result = run_prepared(connection, TAKE_TURN_STATEMENT, self.take_turn_query, self.take_turn_types, parameters)
        except (psycopg.errors.LockNotAvailable, psycopg.OperationalError, psycopg.InterfaceError):
            pool.putconn(connection)
            return None
        except psycopg.Error as error:
            # The turn may be held: closing the connection releases it.
            connection.close()
            pool.putconn(connection)
            library_error = persistence_error(error)
            if isinstance(library_error, ProgrammingError):
                try:
                    explain_missing_function(library_error, self.take_turn_function)
                except StorageError as missing:
                    raise TurnsUnavailable(str(missing)) from None
            raise library_error from error
        except BaseException:
            pool.putconn(connection)
            raise
        return Turn(self, connection, originator_id, key, result)

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def select_events_after(self, originator_id: Any, version: int) -> list[StoredEvent]:
        """Return a stream's events after ``version``, in order, read as the append is written.

        A writer on a contended network reads the events other writers
        appended before each command. Through the library's select_events
        (psycopg's execute, rows as dicts) that read took about 350
        microseconds for one other command's events, most of it in the client.
        """
        parameters = [stream_parameter(originator_id, self.datastore.originator_id_type), INT8.pack(version)]
        result = run_on_lent_connection(
            self.datastore, SELECT_AFTER_STATEMENT, self.select_after_query, self.select_after_types, parameters
        )
        return stored_events_of(result, originator_id)

    def high_water_mark(self) -> int:
        """Return the notification id up to which the log is complete (0 for an empty log).

        Every event with this id or a lower one is stored now or will never
        be: appends that had begun have ended, and appends that begin later
        draw higher ids. The call waits for the appends in progress, and
        holds back new ones for as long.
        """
        try:
            with self.datastore.get_connection() as connection, connection.cursor() as cursor:
                cursor.execute(self.sql_high_water_mark, prepare=True)
                row = cursor.fetchone()
        except ProgrammingError as error:
            explain_missing_function(error, self.high_water_mark_function)
            raise
        return 0 if row is None or row["head"] is None else int(row["head"])


class Turn:
    """A writer's turn on one stream, taken by ``OrderedInsertRecorder.take_turn``, on a connection it keeps until it ends."""

    def __init__(
        self, recorder: OrderedInsertRecorder, connection: psycopg.Connection, originator_id: Any, key: int, result: Any
    ) -> None:
        self.recorder = recorder
        self.connection = connection
        self.originator_id = originator_id
        self.ended = False
        # The stream's events stored after the version given to take_turn, in order.
        self.missed = stored_events_of(result, originator_id)
        self.release_query = f"SELECT pg_advisory_unlock({TURN_CLASS}, {key})".encode()

    def insert_events(
        self, stored_events: Sequence[StoredEvent], while_waiting: Callable[[], None] | None = None, end: bool = False
    ) -> list[int]:
        """Append the events in the turn, and with ``end`` end it in the same round trip; return their notification ids.

        ``while_waiting`` is called once, as for the recorder's insert_events.
        """
        if self.ended:
            raise RuntimeError("the turn has ended")
        recorder = self.recorder
        once = call_once(while_waiting)
        connection = self.connection
        id_type = recorder.datastore.originator_id_type
        try:
            columns = binary_columns(stored_events, id_type, connection.info.encoding)
            if end:
                return self._append_and_end(stored_events, columns, once)
            appended = run_prepared(
                connection, TURN_APPEND_STATEMENT, recorder.turn_append_query, column_types(id_type), columns, once
            )
            return recorder.appended_ids(appended, stored_events)
        except psycopg.Error as error:
            if not connection.closed or isinstance(error, psycopg.DatabaseError) and error.sqlstate:
                raise persistence_error(error) from error
            # The lost connection ended the turn, and whether the events were stored is not known.
            self._give_back()
            return recorder._insert_events(stored_events, once)

    def _append_and_end(
        self, stored_events: Sequence[StoredEvent], columns: list[bytes], once: Callable[[], None]
    ) -> list[int]:
        """Append the events and release the turn in one round trip, then give the connection back."""
        connection, recorder = self.connection, self.recorder
        appended: Any = None
        try:
            appended, released = run_prepared_then(connection, TURN_APPEND_STATEMENT, columns, self.release_query, once)
            if released.status != pq.ExecStatus.TUPLES_OK:
                # The turn may still be held: closing the connection releases it.
                connection.close()
            elif failed_for_missing_statement(appended):
                # The first turn on this connection. Prepare its append for the next one, and append
                # this time without the turn, which has ended.
                types = column_types(recorder.datastore.originator_id_type)
                raise_for_error(connection.pgconn.prepare(TURN_APPEND_STATEMENT, recorder.turn_append_query, types), connection)
                appended = None
        finally:
            self._give_back()
        if appended is None:
            return recorder._insert_events(stored_events, once)
        raise_for_error(appended, connection)
        return recorder.appended_ids(appended, stored_events)

    def _give_back(self) -> None:
        """Mark the turn ended, with its lock released or its connection closed, and give the connection back to the pool."""
        if not self.ended:
            self.ended = True
            self.recorder.datastore.pool.putconn(self.connection)

    def end(self) -> None:
        """End the turn, unless it has ended, and give its connection back to the pool."""
        if self.ended:
            return
        connection = self.connection
        if not connection.closed and connection.pgconn.transaction_status == pq.TransactionStatus.IDLE:
            try:
                connection.execute(self.release_query)
            except psycopg.Error:
                connection.close()
        else:
            connection.close()
        self._give_back()


class SnapshotRecorder(PostgresAggregateRecorder):
    """Store snapshots from binary parameters, in a state column PostgreSQL does not compress."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        schema = self.datastore.schema
        table = self.events_table_name
        self.insert_query = (
            SQL("INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state) "
                "SELECT * FROM unnest($1, $2, $3, $4)")
            .format(schema=Identifier(schema), table=Identifier(table))
            .as_bytes(None)
        )
        # ALTER TABLE locks the table against readers, so it runs once, not on every open.
        self.sql_create_statements.append(
            SQL(
                "DO $body$ BEGIN "
                "IF (SELECT attstorage FROM pg_attribute WHERE attrelid = {relation}::regclass "
                "AND attname = 'state') <> 'e' THEN "
                "ALTER TABLE {schema}.{table} ALTER COLUMN state SET STORAGE EXTERNAL; "
                "END IF; END $body$"
            ).format(
                relation=SQL("'{}'").format(SQL(f"{schema}.{table}")),
                schema=Identifier(schema),
                table=Identifier(table),
            )
        )

    def create_table(self) -> None:
        create_racing_others(super().create_table)

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        """Insert snapshots in one statement, with the append's binary columns."""
        id_type = self.datastore.originator_id_type
        run_on_lent_connection(
            self.datastore,
            SNAPSHOT_STATEMENT,
            self.insert_query,
            column_types(id_type),
            lambda encoding: binary_columns(stored_events, id_type, encoding),
        )
        return None


class LedgerPostgresFactory(PostgresFactory):
    """The library's PostgreSQL infrastructure, with the ledger's recorders for events and snapshots."""

    aggregate_recorder_class = SnapshotRecorder
    application_recorder_class = OrderedInsertRecorder
