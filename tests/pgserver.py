"""Find a PostgreSQL server for the tests, or start a throwaway one."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


@dataclass
class Server:
    url: str
    stop: Callable[[], None] = field(default=lambda: None)


def _reachable(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def find_or_start() -> Optional[Server]:
    """Return a reachable server: NETLEDGER_TEST_DB, then the local one, then a new cluster."""
    configured = os.environ.get("NETLEDGER_TEST_DB")
    if configured:
        if not _reachable(configured):
            raise RuntimeError("NETLEDGER_TEST_DB is set but the server does not answer")
        return Server(configured)
    if _reachable(DEFAULT_URL):
        return Server(DEFAULT_URL)
    return start_cluster()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _binary(name: str) -> Optional[str]:
    for directory in PG_BIN_DIRS:
        candidate = directory / name
        if candidate.exists():
            return str(candidate)
    return shutil.which(name)


def start_cluster() -> Optional[Server]:
    """Start a throwaway cluster on a free port; None when initdb is not installed.

    initdb refuses to run as root, so as root the cluster runs as the
    ``postgres`` user.
    """
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if not initdb or not pg_ctl:
        return None
    directory = Path(tempfile.mkdtemp(prefix="netledger-pg-"))
    data = directory / "data"
    port = _free_port()
    as_root = os.geteuid() == 0
    if as_root:
        shutil.chown(directory, "postgres", "postgres")

    def run(*args: str) -> None:
        command = list(args)
        if as_root:
            command = ["su", "postgres", "-c", " ".join(f"'{part}'" for part in command)]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    run(initdb, "-D", str(data), "-A", "trust", "-U", "postgres")
    run(pg_ctl, "-D", str(data), "-o", f"-p {port} -k {directory} -c listen_addresses=127.0.0.1", "-w", "-l", str(directory / "log"), "start")

    def stop() -> None:
        try:
            run(pg_ctl, "-D", str(data), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    return Server(f"postgresql://postgres@127.0.0.1:{port}/postgres", stop)


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def create_database(url: str, name: str) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(url: str, name: str) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def writer_login(url: str) -> Iterator[str]:
    """Yield the URL of a new login role that has only ``db init --writer-role``'s grants on ``url``'s database.

    Both roles are dropped afterwards, with what the writer role was granted.
    """
    from typer.testing import CliRunner

    from cli.main import app

    suffix = uuid.uuid4().hex[:8]
    login, writer = f"netledger_test_login_{suffix}", f"netledger_test_writer_{suffix}"
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'login-Pa55'").format(sql.Identifier(login)))
    try:
        initialised = CliRunner().invoke(app, ["db", "init", "--writer-role", writer, "--db", url])
        assert initialised.exit_code == 0, initialised.output
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(writer), sql.Identifier(login)))
        parts = urlsplit(url)
        yield urlunsplit(parts._replace(netloc=f"{login}:login-Pa55@{parts.hostname}:{parts.port or 5432}"))
    finally:
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(writer)))
            connection.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(login)))
            connection.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(writer)))
