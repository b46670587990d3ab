"""Options, error handling and output shared by every command.

Commands import the ledger inside their bodies, not at module level, so
that ``netledger --help`` and quick queries do not pay for importing the
event store and database drivers they do not use.
"""

from __future__ import annotations

import getpass
import json
import logging
import re
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from ledger import MAX_POSITION

if TYPE_CHECKING:
    from ledger.aggregate import CommandContext
    from ledger.application import Ledger

log = logging.getLogger("netledger")

DbOption = Annotated[
    Optional[str],
    typer.Option(
        "--db",
        envvar="NETLEDGER_DB",
        help="Event store URL: sqlite:///PATH or postgresql://USER@HOST:PORT/DBNAME "
        "(default: a SQLite file in the user's data directory).",
        show_envvar=True,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")]
ActorOption = Annotated[
    Optional[str],
    typer.Option("--actor", help="Who is asking, recorded in every event (default: the OS user)."),
]
ReasonOption = Annotated[
    Optional[str], typer.Option("--reason", help="Why, recorded in every event (optional).")
]
RequestIdOption = Annotated[
    Optional[str],
    typer.Option(
        "--request-id",
        help="Id of this request, recorded in every event (default: a new UUID). Repeating the command with "
        "the same id returns its first result instead of applying it again, while the network still lists "
        "the request (its last 10,000 requests of the last hour).",
    ),
]
# Network create and import are not retried by request id.
RecordedRequestIdOption = Annotated[
    Optional[str],
    typer.Option("--request-id", help="Id of this request, recorded in every event (default: a new UUID)."),
]


def fail(message: str, exit_code: int) -> None:
    """Print one error line to standard error and exit with ``exit_code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(exit_code)


@contextmanager
def open_ledger(db: Optional[str], *, create: bool = False) -> Iterator[Ledger]:
    """Open the event store named by ``db`` and turn every ledger error into one line and an exit code.

    Only commands that create a network or prepare the store pass
    ``create=True``: any other command on a SQLite file that does not exist
    or holds no ledger fails instead of creating an empty ledger. A SQLite
    file with another program's tables is refused either way. A SQLite
    path given by ``--db`` or ``NETLEDGER_DB`` must be in an existing
    directory, so a mistyped path creates nothing. Only the default file's
    directory is created.
    """
    import sqlite3

    from eventsourcing.persistence import MapperDeserialisationError, PersistenceError

    from ledger.errors import LedgerError, Refused
    from ledger.storage import default_url, environment_for, redact, undo_new_ledger

    if db is not None and not db.strip():
        # An empty NETLEDGER_DB counts as unset (click ignores it), but --db '' or a blank
        # NETLEDGER_DB is most likely a script's unset variable: using the default file would hide it.
        fail(
            "the event store URL (--db or NETLEDGER_DB) is blank: give one such as sqlite:///PATH, "
            "or leave both unset for the default file",
            2,
        )
    explicit_url = db.strip() if db else ""
    url = explicit_url or default_url()
    undo = None
    try:
        env = environment_for(url, create=create, create_directory=not explicit_url)
        # A command that may start a ledger in a missing or empty file leaves the file as it was if it fails.
        undo = undo_new_ledger(env) if create else None
        if not create:
            _require_postgres_ledger(url, env)
        ledger = _connect(url, env)
        try:
            yield ledger
        finally:
            ledger.close()
    except LedgerError as error:
        _undo(undo)
        log.info("command %s: %s", "refused" if isinstance(error, Refused) else "failed", error.message)
        fail(error.message, error.exit_code)
    except (PersistenceError, sqlite3.Error) as error:
        _undo(undo)
        fail(f"database {redact(url)} failed: {_storage_reason(url, error)}", 3)
    except MapperDeserialisationError as error:
        # A stored event or snapshot that no longer decodes: damaged rows,
        # or rows written by an incompatible version of netledger.
        fail(
            f"database {redact(url)} holds a record that cannot be decoded ({_first_line(error)}); "
            "run 'netledger verify' to find its position",
            3,
        )


def _require_postgres_ledger(url: str, env: dict[str, str]) -> None:
    """Raise InvalidInput if ``env`` names a PostgreSQL database without the ledger's events table."""
    from ledger.errors import InvalidInput, StorageError
    from ledger.storage import POSTGRES_MODULE, postgres_has_ledger, redact

    if env.get("PERSISTENCE_MODULE") != POSTGRES_MODULE:
        return
    try:
        has_ledger = postgres_has_ledger(env)
    except StorageError as error:
        raise StorageError(f"cannot open database {redact(url)}: {error}{_open_advice(env, str(error))}") from None
    if not has_ledger:
        raise InvalidInput(
            f"no ledger in database {redact(url)}; create a network first with 'netledger network create' "
            "or check --db"
        )


def _undo(undo: Optional[Callable[[], None]]) -> None:
    if undo is not None:
        undo()


def _connect(url: str, env: dict[str, str]) -> Ledger:
    import sqlite3

    from eventsourcing.persistence import PersistenceError

    from ledger.application import Ledger
    from ledger.errors import StorageError
    from ledger.storage import redact

    try:
        return Ledger(env=env)
    except sqlite3.DatabaseError as error:
        # The library checks the journal mode of a new connection outside its
        # error translation, so a file that is not SQLite arrives here unwrapped.
        raise StorageError(
            f"cannot open database {redact(url)}: {_first_line(error)}; check that --db names a netledger SQLite file"
        ) from None
    except (PersistenceError, OSError) as error:
        reason = _storage_reason(url, error)
        raise StorageError(f"cannot open database {redact(url)}: {reason}{_open_advice(env, reason)}") from None


def _open_advice(env: dict[str, str], reason: str) -> str:
    """Return what to do about a PostgreSQL store that failed to open, or nothing."""
    from ledger.storage import POSTGRES_MODULE

    if env.get("PERSISTENCE_MODULE") != POSTGRES_MODULE:
        return ""
    if "permission denied" in reason and env.get("CREATE_TABLE", "yes") != "no":
        return (
            "; a role that may not create tables adds ?create_tables=no to the URL, "
            "once the owner has run 'netledger db init'"
        )
    if re.search(r'database "[^"]*" does not exist', reason):
        return "; create it (createdb NAME) or correct the name in the URL"
    return ""


def _storage_reason(url: str, error: BaseException) -> str:
    """Return why the database failed, asking it directly when the pool only timed out."""
    from eventsourcing.persistence import InterfaceError, OperationalError

    from ledger.storage import diagnose, environment_for

    if isinstance(error, (OperationalError, InterfaceError)):
        reason = diagnose(environment_for(url))
        if reason is not None:
            return reason
    return _first_line(error)


def _first_line(error: BaseException) -> str:
    from ledger.storage import redact

    text = str(error).strip().splitlines()
    line = text[0] if text else type(error).__name__
    # Driver messages can echo the connection string; never print a password.
    for word in line.split():
        if "://" in word:
            line = line.replace(word, redact(word))
    return line


def command_context(actor: Optional[str], reason: Optional[str], request_id: Optional[str]) -> CommandContext:
    """Build the who, why and request id that every event of a command records."""
    from ledger.aggregate import CommandContext
    from ledger.errors import InvalidInput

    if actor is not None and not actor.strip():
        raise InvalidInput("--actor is empty; give a name or leave the option out")
    if actor is not None and not (len(actor) <= 128 and actor.isprintable()):
        raise InvalidInput("--actor must be 1-128 printable characters on one line")
    if request_id is not None and not (1 <= len(request_id) <= 128 and request_id.isprintable() and request_id.strip()):
        raise InvalidInput("--request-id must be 1-128 printable characters, not only spaces")
    # Every event of the command stores the reason, so it is kept to a sentence or two.
    if reason is not None and not (len(reason) <= 1000 and reason.isprintable()):
        raise InvalidInput("--reason must be printable text on one line, at most 1000 characters")
    return CommandContext(
        actor=(actor or _os_user()).strip(),
        request_id=request_id or str(uuid.uuid4()),
        reason=reason or None,
    )


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def guard_input(parse: Callable[[], Any]) -> Any:
    """Run a parser of user input, turning ``InvalidInput`` into one line and exit status 2."""
    from ledger.errors import InvalidInput

    try:
        return parse()
    except InvalidInput as error:
        fail(error.message, error.exit_code)


def print_json(data: Any) -> None:
    """Print ``data`` as indented JSON on standard output."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def print_table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    """Print rows as a rich table."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold", min_width=len(column))
    for row in rows:
        table.add_row(*("" if value is None else str(value) for value in row))
    # Piped output has no terminal width; rich would assume 80 columns and
    # fold IPv6 addresses, so give it room for one row per line.
    console = Console() if sys.stdout.isatty() else Console(width=200)
    console.print(table)


def note_replayed(ledger: Ledger, request_id: str) -> None:
    """Say so when a command's request id was already applied and nothing was written."""
    if ledger.last_command_replayed:
        typer.echo(f"request {request_id} was already applied: this is its recorded result, and nothing was written")
