"""Choose the event store from one URL.

``sqlite:///relative/path``, ``sqlite:////absolute/path`` and
``sqlite:///:memory:`` select the library's SQLite recorder;
``postgresql://user:password@host:port/dbname`` selects its PostgreSQL
recorder. Nothing else in the ledger knows which database is in use.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

from ledger.errors import InvalidInput

DB_ENV_VAR = "NETLEDGER_DB"
POSTGRES_SCHEMES = ("postgresql", "postgres")
POSTGRES_OPTIONS = {"schema": "POSTGRES_SCHEMA", "connect_timeout": "POSTGRES_CONNECT_TIMEOUT"}


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


def environment_for(url: str) -> dict[str, str]:
    """Return the eventsourcing environment variables that select the store for ``url``."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        raise InvalidInput(f"invalid database URL {redact(url)}: it cannot be parsed") from None
    if parts.scheme == "sqlite":
        return _sqlite_environment(url, parts.netloc, parts.path)
    if parts.scheme in POSTGRES_SCHEMES:
        return _postgres_environment(url, parts)
    raise InvalidInput(
        f"invalid database URL {redact(url)}: use sqlite:///PATH or "
        "postgresql://USER@HOST:PORT/DBNAME"
    )


def _sqlite_environment(url: str, netloc: str, path: str) -> dict[str, str]:
    if netloc or not path.startswith("/") or path == "/":
        raise InvalidInput(
            f"invalid database URL {url!r}: a SQLite URL is sqlite:///relative/path "
            "or sqlite:////absolute/path"
        )
    target = unquote(path[1:])
    if target == ":memory:":
        dbname = "file:netledger?mode=memory&cache=shared"
    else:
        file_path = Path(target)
        if file_path.is_dir():
            raise InvalidInput(f"invalid database URL {url!r}: {file_path} is a directory, not a file")
        try:
            file_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise InvalidInput(
                f"invalid database URL {url!r}: cannot create {file_path.parent}: {error.strerror}"
            ) from None
        dbname = str(file_path)
    return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": dbname}


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
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": dbname,
        "POSTGRES_HOST": parts.hostname or "localhost",
        "POSTGRES_PORT": str(port or 5432),
        "POSTGRES_USER": unquote(parts.username or "") or os.environ.get("PGUSER", "postgres"),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        "POSTGRES_CONNECT_TIMEOUT": "5",
    }
    for key, values in parse_qs(parts.query).items():
        if key not in POSTGRES_OPTIONS:
            raise InvalidInput(
                f"invalid database URL {safe}: unknown option {key!r}; "
                f"known options are {', '.join(sorted(POSTGRES_OPTIONS))}"
            )
        env[POSTGRES_OPTIONS[key]] = values[-1]
    return env
