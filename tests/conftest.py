"""Shared fixtures: a fresh event store per test, on SQLite and on PostgreSQL.

PostgreSQL comes from, in order: ``NETLEDGER_TEST_DB`` (a URL of a server
where the tests may create databases), the server at 127.0.0.1:5432, or a
throwaway cluster started with ``initdb``/``pg_ctl`` for this run. Each test
gets a database of its own, dropped afterwards. Only when none of these
exist are PostgreSQL tests skipped, and never when ``CI=true``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import pgserver


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """Return the URL of a PostgreSQL server's maintenance database."""
    server = pgserver.find_or_start()
    if server is None:
        if os.environ.get("CI") == "true":
            pytest.fail("no PostgreSQL server found or startable, and CI=true forbids skipping")
        pytest.skip("no PostgreSQL: set NETLEDGER_TEST_DB, run one on 127.0.0.1:5432, or install initdb")
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """Return the URL of a new, empty database, dropped after the test."""
    name = f"netledger_test_{uuid.uuid4().hex[:12]}"
    pgserver.create_database(postgres_server, name)
    try:
        yield pgserver.with_database(postgres_server, name)
    finally:
        pgserver.drop_database(postgres_server, name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """Return a fresh event store URL, once for SQLite and once for PostgreSQL."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("postgres_url")
