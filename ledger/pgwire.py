"""One prepared statement with binary parameters, run through libpq directly.

psycopg's ``execute`` adapts every parameter in Python: it finds a dumper
for each list, scans its items, and writes the array. For a command's append
(four short arrays) that took about 180 microseconds of CPU, more than the
round trip. The append's parameters have fixed types, so ``binary_array``
writes them in PostgreSQL's binary array format here, and ``run_prepared``
hands them to libpq through ``psycopg.pq``, the library's documented libpq
wrapper. With the rows of the throughput benchmark, on a 2-core machine
running PostgreSQL 15 beside the client, an append took 557 microseconds
on average through ``execute`` and 337 this way.

The statement runs on a connection that psycopg opened and the pool lends.
It is prepared on that connection the first time the server reports it
missing, so nothing here tracks which connections have it.

``run_prepared_then`` sends a prepared statement and a second statement
together in libpq's pipeline mode (libpq 14 or later), each in a
transaction of its own. A writer's last append in a turn uses it to
release the turn in the same round trip.
"""

from __future__ import annotations

import select
import struct
from collections.abc import Callable, Sequence

import psycopg
from psycopg import pq
from psycopg.errors import error_from_result

# Type OIDs from PostgreSQL's pg_type catalog, which are fixed for built-in types.
UUID_OID = 2950
TEXT_OID = 25
INT8_OID = 20
INT4_OID = 23
BYTEA_OID = 17
ARRAY_OIDS = {UUID_OID: 2951, TEXT_OID: 1009, INT8_OID: 1016, BYTEA_OID: 1001}

BINARY = 1
# SQLSTATE 26000: the named prepared statement does not exist on this connection.
INVALID_STATEMENT_NAME = "26000"

_ARRAY_HEADER = struct.Struct("!iiiii")
_LENGTH = struct.Struct("!i")
INT8 = struct.Struct("!q")
INT4 = struct.Struct("!i")


def binary_array(element_oid: int, items: Sequence[bytes]) -> bytes:
    """Return a one-dimensional array without NULLs in PostgreSQL's binary format.

    ``items`` are the elements, each already in the element type's binary
    format. The header contains the number of dimensions, a has-NULLs flag, the
    element type, then the length and lower bound (1) of the one dimension.
    """
    parts = [_ARRAY_HEADER.pack(1, 0, element_oid, len(items), 1)]
    for item in items:
        parts.append(_LENGTH.pack(len(item)))
        parts.append(item)
    return b"".join(parts)


def run_prepared(
    connection: psycopg.Connection,
    name: bytes,
    query: bytes,
    parameter_types: Sequence[int],
    parameters: Sequence[bytes],
    while_waiting: Callable[[], None] | None = None,
) -> pq.abc.PGresult:
    """Run prepared statement ``name`` with binary parameters and return its binary result.

    The statement is prepared from ``query`` when the connection does not
    have it yet. ``while_waiting`` is called once the statement is sent,
    before its result arrives. A server error is raised as psycopg raises
    it, so callers handle it as they would an error of ``execute``. If the
    statement succeeds but ``while_waiting`` raised, that error is raised.
    The connection must be in autocommit mode and idle. If the wait is
    interrupted, the connection is closed, because a statement may still be
    running on it.
    """
    pgconn = connection.pgconn
    formats = [BINARY] * len(parameters)
    waiting_error: BaseException | None = None

    def prepare() -> None:
        pgconn.send_prepare(name, query, parameter_types)
        _flush(pgconn)

    def send() -> None:
        pgconn.send_query_prepared(name, parameters, formats, BINARY)
        _flush(pgconn)

    def send_then_work() -> None:
        nonlocal waiting_error
        send()
        if while_waiting is not None:
            try:
                while_waiting()
            except BaseException as error:  # raised once the connection is idle again
                waiting_error = error

    try:
        result = _last_result(pgconn, send_then_work)
        if failed_for_missing_statement(result):
            raise_for_error(_last_result(pgconn, prepare), connection)
            result = _last_result(pgconn, send)
    except psycopg.Error:
        # libpq failed (a lost connection, say); the pool drops a broken connection when it is returned.
        raise
    except BaseException:
        connection.close()
        raise
    raise_for_error(result, connection)
    if waiting_error is not None:
        raise waiting_error
    return result


def run_prepared_then(
    connection: psycopg.Connection,
    name: bytes,
    parameters: Sequence[bytes],
    then: bytes,
    while_waiting: Callable[[], None] | None = None,
) -> tuple[pq.abc.PGresult, pq.abc.PGresult]:
    """Run prepared statement ``name``, then the statement ``then`` in a transaction of its own, in one round trip.

    The two are sent together in libpq's pipeline mode, with a sync point
    after each, so ``then`` runs after the first statement has committed,
    and runs even when the first one fails. Return both results, errors
    included; nothing is raised for them. The statement must already be
    prepared on the connection: if it is not, its result is the server's
    error 26000. ``while_waiting`` and the connection's state are as for
    ``run_prepared``; an error of ``while_waiting`` is raised once both
    results have arrived. After any error on the way, libpq's included, the
    connection is closed.
    """
    pgconn = connection.pgconn
    waiting_error: BaseException | None = None
    try:
        pgconn.enter_pipeline_mode()
        pgconn.send_query_prepared(name, parameters, [BINARY] * len(parameters), BINARY)
        pgconn.pipeline_sync()
        pgconn.send_query_params(then, None)
        pgconn.pipeline_sync()
        _flush(pgconn)
        if while_waiting is not None:
            try:
                while_waiting()
            except BaseException as error:  # raised once both results have arrived
                waiting_error = error
        results = _pipeline_results(pgconn, syncs=2)
        pgconn.exit_pipeline_mode()
    except BaseException:
        # The pipeline may be half read; the pool drops a closed connection when it is returned.
        connection.close()
        raise
    if waiting_error is not None:
        raise waiting_error
    first, second = results
    return first, second


def _pipeline_results(pgconn: pq.abc.PGconn, syncs: int) -> list[pq.abc.PGresult]:
    """Read a pipeline's results up to its ``syncs``-th sync point: the last result of each statement."""
    results: list[pq.abc.PGresult] = []
    last = None
    while syncs:
        result = _next_result(pgconn)
        if result is None:
            # The end of one statement's results.
            if last is not None:
                results.append(last)
            last = None
        elif result.status == pq.ExecStatus.PIPELINE_SYNC:
            syncs -= 1
        else:
            last = result
    return results


def failed_for_missing_statement(result: pq.abc.PGresult) -> bool:
    if result.status != pq.ExecStatus.FATAL_ERROR:
        return False
    state = result.error_field(pq.DiagnosticField.SQLSTATE)
    return state is not None and state.decode() == INVALID_STATEMENT_NAME


def raise_for_error(result: pq.abc.PGresult, connection: psycopg.Connection) -> None:
    if result.status in (pq.ExecStatus.FATAL_ERROR, pq.ExecStatus.NONFATAL_ERROR):
        raise error_from_result(result, encoding=connection.info.encoding)


def _last_result(pgconn: pq.abc.PGconn, send: Callable[[], None]) -> pq.abc.PGresult:
    """Send one query with ``send``, wait for every result, and return the last one."""
    send()
    last = None
    while (result := _next_result(pgconn)) is not None:
        last = result
    if last is None:
        raise psycopg.OperationalError("the server returned no result")
    return last


def _next_result(pgconn: pq.abc.PGconn) -> pq.abc.PGresult | None:
    """Wait for libpq's next result and return it, or None at the end of a statement's results."""
    while pgconn.is_busy():
        _wait(pgconn.socket, select.POLLIN)
        pgconn.consume_input()
    return pgconn.get_result()


def _flush(pgconn: pq.abc.PGconn) -> None:
    """Send what libpq has buffered; psycopg's connections are non-blocking, so a send may stop short.

    While the socket cannot take more, the server may be sending (a notice,
    say), and libpq must read that to avoid a deadlock.
    """
    while pgconn.flush():
        ready = _wait(pgconn.socket, select.POLLIN | select.POLLOUT)
        if ready & select.POLLIN:
            pgconn.consume_input()


def _wait(fd: int, events: int) -> int:
    poller = select.poll()
    poller.register(fd, events)
    ready = 0
    while not ready:
        for _, mask in poller.poll():
            ready |= mask
    if ready & (select.POLLERR | select.POLLHUP | select.POLLNVAL) and not ready & select.POLLIN:
        raise psycopg.OperationalError("the connection to the server was lost")
    return ready
