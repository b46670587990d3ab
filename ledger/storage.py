"""Choose the event store from one URL.

``sqlite:///relative/path``, ``sqlite:////absolute/path`` and
``sqlite:///:memory:`` select the library's SQLite recorder;
``postgresql://user:password@host:port/dbname`` selects its PostgreSQL
recorder. Nothing else in the ledger knows which database is in use.

The PostgreSQL settings keep a long-lived process working across a server
restart: the library retries a statement that failed on a broken
connection 10 times, 0.2 s apart, each waiting up to ``connect_timeout``
seconds for a connection, and the pool replaces a connection that failed.
The pool does not check a connection before handing it out
(``POSTGRES_PRE_PING``): that check is one more round trip per statement,
about a tenth of a command's time, and the retries cover what it would catch. A command in flight therefore rides out a restart shorter than
about ``10 * (connect_timeout + 0.2)`` seconds and fails after that.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

from ledger.errors import InvalidInput, StorageError

DB_ENV_VAR = "NETLEDGER_DB"
POSTGRES_SCHEMES = ("postgresql", "postgres")
# URL query options. create_tables=no lets a role that may not create or
# alter tables (one set up by 'netledger db init --writer-role') open a
# store that 'netledger db init' has created.
POSTGRES_OPTIONS = {
    "schema": "POSTGRES_SCHEMA",
    "connect_timeout": "POSTGRES_CONNECT_TIMEOUT",
    "create_tables": "CREATE_TABLE",
}
# One connection serves one command at a time; the overflow serves other
# threads (a projection follower's subscription). The library's default of
# 5 + 10 would open 5 connections for every CLI command.
POSTGRES_POOL = {"POSTGRES_POOL_SIZE": "1", "POSTGRES_MAX_OVERFLOW": "4", "POSTGRES_PRE_PING": "n"}
# The library's PostgreSQL factory with the ledger's recorders: one
# statement per command that keeps notification ids in commit order, and
# binary parameters (see ledger.pgstore).
POSTGRES_MODULE = "ledger.pgstore:LedgerPostgresFactory"
SQLITE_MODULE = "eventsourcing.sqlite"
# The table of stored events that the eventsourcing library creates in a SQLite file.
EVENTS_TABLE = "stored_events"
# Its name in PostgreSQL, where the library names it after the application ("netledger").
POSTGRES_EVENTS_TABLE = "netledger_events"
# The first bytes of every SQLite database file.
SQLITE_HEADER = b"SQLite format 3\x00"
# The files SQLite keeps beside a database while it is open.
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")
# An existing file without tables that a failed command puts back: at most this large.
MAX_SAVED_BYTES = 1 << 20


def default_url() -> str:
    """Return ``NETLEDGER_DB`` or a SQLite file in the user's data directory."""
    configured = os.environ.get(DB_ENV_VAR, "").strip()
    if configured:
        return configured
    from platformdirs import user_data_dir

    return "sqlite:///" + str(Path(user_data_dir("netledger")) / "ledger.db")


def redact(url: str) -> str:
    """Return the URL with any password replaced by '***', safe to print or log."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparsable database URL>"
    if not password:
        return url
    netloc = parts.netloc.replace(f":{password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def environment_for(url: str, *, create: bool = True, create_directory: bool = True) -> dict[str, str]:
    """Return the eventsourcing environment variables that select the store for ``url``.

    The flags apply to a SQLite file only. With ``create=False`` a missing
    file, or one with no tables, raises ``InvalidInput`` instead of getting
    a new ledger, for commands that only read. A file with tables but no
    ledger raises it whatever the flags. With ``create_directory=False`` a
    missing parent directory raises ``InvalidInput`` instead of being
    created, so that a mistyped path creates nothing. A directory is only
    created when ``create`` is set.
    """
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        raise InvalidInput(f"invalid database URL {redact(url)}: it cannot be parsed") from None
    if parts.fragment:
        raise InvalidInput(
            f"invalid database URL {redact(url)}: a database URL has no #fragment; remove #{parts.fragment}"
        )
    if parts.scheme == "sqlite":
        if parts.query:
            raise InvalidInput(
                f"invalid database URL {redact(url)}: a SQLite URL takes no options; remove ?{parts.query}"
            )
        return _sqlite_environment(url, parts.netloc, parts.path, create, create_directory)
    if parts.scheme in POSTGRES_SCHEMES:
        return _postgres_environment(url, parts)
    raise InvalidInput(
        f"invalid database URL {redact(url)}: use sqlite:///PATH or "
        "postgresql://USER@HOST:PORT/DBNAME"
    )


def _sqlite_environment(url: str, netloc: str, path: str, create: bool, create_directory: bool) -> dict[str, str]:
    # urlsplit gives sqlite:/tmp/x the same path as sqlite:///tmp/x, where the path is relative.
    has_empty_authority = url.strip()[len("sqlite:"):].startswith("//")
    if netloc or not has_empty_authority or not path.startswith("/") or path == "/":
        raise InvalidInput(
            f"invalid database URL {redact(url)}: a SQLite URL is sqlite:///relative/path "
            "or sqlite:////absolute/path"
        )
    target = unquote(path[1:])
    if target == ":memory:":
        dbname = "file:netledger?mode=memory&cache=shared"
    else:
        file_path = Path(target)
        if file_path.is_dir():
            raise InvalidInput(f"invalid database URL {redact(url)}: {file_path} is a directory, not a file")
        _check_sqlite_file(url, file_path, create, create_directory)
        dbname = str(file_path)
    return {"PERSISTENCE_MODULE": SQLITE_MODULE, "SQLITE_DBNAME": dbname}


def _check_sqlite_file(url: str, file_path: Path, create: bool, create_directory: bool) -> None:
    """Check that ``file_path`` can be opened as the flags allow, creating its directory if they allow that."""
    directory = file_path.parent
    if not directory.is_dir() and not create_directory:
        if directory.exists():
            raise InvalidInput(f"invalid database URL {redact(url)}: {directory} is not a directory; fix the path")
        relative = "" if file_path.is_absolute() else " (sqlite:///PATH is relative; sqlite:////PATH is absolute)"
        raise InvalidInput(
            f"invalid database URL {redact(url)}: directory {directory} does not exist; "
            f"create it or fix the path{relative}"
        )
    no_ledger = InvalidInput(
        f"no ledger at {file_path}; create a network first with 'netledger network create' or check --db"
    )
    if not create and not file_path.exists():
        raise no_ledger
    if not _empty_or_sqlite(file_path):
        # SQLite would take a file shorter than its 100-byte header for an empty database and overwrite it.
        raise InvalidInput(f"{file_path} is not a SQLite database; check --db")
    tables = _sqlite_tables(file_path)
    if tables is None:
        # A damaged or locked file: the store's own error names the problem.
        return
    if tables and EVENTS_TABLE not in tables:
        first_tables = ", ".join(sorted(tables)[:3]) + (", ..." if len(tables) > 3 else "")
        raise InvalidInput(
            f"{file_path} is a SQLite database of another program (tables {first_tables}) "
            "and holds no ledger; check --db"
        )
    if not create and not tables:
        raise no_ledger
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InvalidInput(
            f"invalid database URL {redact(url)}: cannot create {directory}: {error.strerror}"
        ) from None


def undo_new_ledger(env: dict[str, str]) -> Callable[[], None] | None:
    """Return a function that restores a SQLite file without a ledger, or None if there is nothing to restore.

    Call it before the store opens the file, and the function after a
    command on it failed. A command that would start a ledger in a missing
    or empty file leaves, when it fails, an empty ledger that later commands
    would take for a real one. The function removes the file (or restores
    its bytes) unless an event was stored in it meanwhile.
    """
    name = env.get("SQLITE_DBNAME", "")
    if not name or name.startswith("file:"):
        return None
    path = Path(name)
    saved: bytes | None = None
    if path.exists():
        if path.stat().st_size > MAX_SAVED_BYTES or _sqlite_tables(path) != []:
            return None
        saved = path.read_bytes()

    def undo() -> None:
        # NOTE: another process that stores its first event between this check and the removal loses it.
        if _has_events(path):
            return
        for suffix in SQLITE_COMPANIONS:
            Path(name + suffix).unlink(missing_ok=True)
        if saved is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(saved)

    return undo


def _has_events(file_path: Path) -> bool:
    """Return whether a SQLite file's events table contains a row (True if that cannot be read)."""
    if not file_path.exists():
        return False
    import sqlite3

    try:
        connection = sqlite3.connect(file_path)
        try:
            found = connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (EVENTS_TABLE,))
            if found.fetchone() is None:
                return False
            return connection.execute(f"SELECT 1 FROM {EVENTS_TABLE} LIMIT 1").fetchone() is not None
        finally:
            connection.close()
    except sqlite3.Error:
        return True


def _empty_or_sqlite(file_path: Path) -> bool:
    """Return whether a file is missing, empty or starts with SQLite's header (True if it cannot be read)."""
    try:
        with file_path.open("rb") as stream:
            head = stream.read(len(SQLITE_HEADER))
    except OSError:
        return True
    return not head or head == SQLITE_HEADER


def _sqlite_tables(file_path: Path) -> list[str] | None:
    """Return the table names of a SQLite file (none if it is missing or empty), or None if it cannot be read."""
    if not file_path.is_file() or file_path.stat().st_size == 0:
        return []
    import sqlite3

    try:
        connection = sqlite3.connect(file_path)
        try:
            rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        finally:
            connection.close()
    except sqlite3.Error:
        return None
    return [name for (name,) in rows]


def _postgres_environment(url: str, parts) -> dict[str, str]:  # type: ignore[no-untyped-def]
    safe = redact(url)
    try:
        port = parts.port
    except ValueError:
        raise InvalidInput(f"invalid database URL {safe}: the port is not a number from 1 to 65535") from None
    dbname = unquote(parts.path.lstrip("/"))
    if not dbname or "/" in dbname:
        raise InvalidInput(f"invalid database URL {safe}: name one database, as in postgresql://HOST/DBNAME")
    env = {
        "PERSISTENCE_MODULE": POSTGRES_MODULE,
        "POSTGRES_DBNAME": dbname,
        "POSTGRES_HOST": parts.hostname or "localhost",
        "POSTGRES_PORT": str(port or 5432),
        "POSTGRES_USER": unquote(parts.username or "") or os.environ.get("PGUSER", "postgres"),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        "POSTGRES_CONNECT_TIMEOUT": "5",
        **POSTGRES_POOL,
    }
    for key, values in parse_qs(parts.query, keep_blank_values=True).items():
        if key not in POSTGRES_OPTIONS:
            raise InvalidInput(
                f"invalid database URL {safe}: unknown option {key!r}; "
                f"known options are {', '.join(sorted(POSTGRES_OPTIONS))}"
            )
        if not values[-1]:
            raise InvalidInput(f"invalid database URL {safe}: option {key!r} has no value; give one or leave it out")
        env[POSTGRES_OPTIONS[key]] = values[-1]
    timeout = env["POSTGRES_CONNECT_TIMEOUT"]
    if not (timeout.isdigit() and 1 <= int(timeout) <= 600):
        raise InvalidInput(
            f"invalid database URL {safe}: connect_timeout {timeout!r} is not a whole number of seconds from 1 to 600"
        )
    if env.get("CREATE_TABLE", "yes") not in ("yes", "no"):
        raise InvalidInput(f"invalid database URL {safe}: create_tables must be yes or no")
    # The library writes the schema into some statements unquoted, so only
    # plain lower-case names work. NOTE: a reserved word (user, select) passes
    # this check and fails when the store opens, with the server's syntax error.
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", env.get("POSTGRES_SCHEMA", "public")):
        raise InvalidInput(
            f"invalid database URL {safe}: schema must be 1-63 of a-z, 0-9 and '_', not starting with a digit"
        )
    return env


def diagnose(env: dict[str, str]) -> str | None:
    """Connect once, outside the pool, and return why it fails (None when it works).

    The pool hides the cause of a failed connection behind "couldn't get a
    connection after N sec"; one direct attempt names it (refused, wrong
    password, no such database). The password never appears in the result.
    """
    if env.get("PERSISTENCE_MODULE") != POSTGRES_MODULE:
        return None
    import psycopg

    try:
        connection = _postgres_connect(env)
    except psycopg.Error as error:
        return scrub(str(error), env.get("POSTGRES_PASSWORD", ""))
    connection.close()
    return None


def postgres_has_ledger(env: dict[str, str]) -> bool:
    """Return whether a PostgreSQL database contains the ledger's events table.

    Opening the store creates its tables, so a command that only reads checks
    first: on a database without a ledger it fails instead of creating one.
    Raise StorageError, with the server's reason and no password, when the
    question fails.
    """
    import psycopg

    try:
        with _postgres_connect(env) as connection:
            row = connection.execute(
                "SELECT to_regclass(format('%%I.%%I', %s::text, %s::text)) IS NOT NULL",
                (env.get("POSTGRES_SCHEMA", "public"), POSTGRES_EVENTS_TABLE),
            ).fetchone()
    except psycopg.Error as error:
        raise StorageError(scrub(str(error), env.get("POSTGRES_PASSWORD", ""))) from None
    return bool(row and row[0])


def _postgres_connect(env: dict[str, str]):  # type: ignore[no-untyped-def]
    import psycopg

    return psycopg.connect(
        dbname=env["POSTGRES_DBNAME"],
        host=env["POSTGRES_HOST"],
        port=env["POSTGRES_PORT"],
        user=env["POSTGRES_USER"],
        password=env["POSTGRES_PASSWORD"],
        connect_timeout=max(1, int(float(env.get("POSTGRES_CONNECT_TIMEOUT", "5")))),
    )


def scrub(message: str, password: str) -> str:
    """Return a driver message on one line, without the password or a URL's password."""
    text = re.sub(r"^connection failed: ", "", message.strip())
    text = re.sub(r"FATAL:\s+", "", text)
    text = "; ".join(" ".join(line.split()) for line in text.splitlines() if line.strip())
    if password:
        text = text.replace(password, "***")
    return re.sub(r"\S+://\S+", lambda match: redact(match.group(0)), text)
