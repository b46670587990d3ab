"""The record is append-only in the database, and secrets stay out of every message.

``netledger db init`` installs triggers that reject UPDATE and DELETE on
stored events (and TRUNCATE on PostgreSQL). Passwords in ``--db`` or
``NETLEDGER_DB`` never appear in output, logs or errors. Text that looks
like SQL is stored as data, and identifiers reach SQL quoted.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from cli.main import app
from ledger.storage import redact, scrub
from tests.reliability_support import stored_events

runner = CliRunner()
PASSWORD = "Hunter2-s3cret"


def cli(*args: str) -> Any:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.stderr
    return result


def execute(url: str, statement: str) -> None:
    """Run one statement directly against the store's database, outside the ledger."""
    if url.startswith("sqlite:"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
            connection.execute(statement)
        return
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(statement)


def events_table(url: str) -> str:
    return "stored_events" if url.startswith("sqlite:") else "netledger_events"


def test_db_init_makes_events_append_only(db_url: str) -> None:
    cli("db", "init", "--db", db_url)
    cli("db", "init", "--db", db_url)
    cli("network", "create", "web", "--pool", "10.70.0.0/24", "--db", db_url)
    cli("container", "create", "web", "--id", "a1", "--db", db_url)
    table = events_table(db_url)
    statements = [f"UPDATE {table} SET topic = topic", f"DELETE FROM {table}"]
    if not db_url.startswith("sqlite:"):
        statements.append(f"TRUNCATE {table}")

    for statement in statements:
        with pytest.raises((sqlite3.DatabaseError, psycopg.Error)) as refused:
            execute(db_url, statement)
        assert "the netledger event store is append-only" in str(refused.value)

    cli("container", "create", "web", "--id", "a2", "--db", db_url)
    assert len(stored_events(db_url)) == 1 + 3 + 3


def test_db_init_protects_events_in_named_schema(postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("CREATE SCHEMA ledger_prod")
    url = f"{postgres_url}?schema=ledger_prod"

    result = cli("db", "init", "--db", url, "--json")
    cli("network", "create", "web", "--pool", "10.71.0.0/24", "--db", url)

    assert '"table": "ledger_prod.netledger_events"' in result.stdout
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connection.execute("DELETE FROM ledger_prod.netledger_events")
        row = connection.execute("SELECT count(*) FROM ledger_prod.netledger_events").fetchone()
    assert row == (1,)


def test_sql_like_text_is_stored_verbatim(db_url: str) -> None:
    hostile = "'); DROP TABLE netledger_events; --"
    cli("network", "create", "web", "--pool", "10.72.0.0/24", "--db", db_url)
    cli(
        "container", "create", "web", "--id", "a1", "--reason", hostile, "--actor", 'o"brien',
        "--request-id", f"{hostile} 1", "--db", db_url,
    )

    created = stored_events(db_url)[-1]
    assert (created.reason, created.actor, created.request_id) == (hostile, 'o"brien', f"{hostile} 1")


def netledger(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real CLI, with debug logging, in a process of its own."""
    return subprocess.run(
        [sys.executable, "-c", "from cli.main import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NETLEDGER_LOG": "DEBUG", **(env or {})},
    )


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/ledger?connect_timeout=1",
        f"postgresql://postgres:{PASSWORD}@localhost:1/ledger?connect_timeout=1",
        f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/ledger?bogus=1",
        f"postgresql://postgres:{PASSWORD}@127.0.0.1:70000/ledger",
        f"postgresql://postgres:{PASSWORD}@[::1/ledger",
        f"sqlite://postgres:{PASSWORD}@host/ledger",
        f"mysql://postgres:{PASSWORD}@127.0.0.1/ledger",
    ],
)
def test_password_hidden_for_bad_urls(url: str) -> None:
    from_option = netledger("network", "list", "--db", url)
    from_environment = netledger("container", "create", "web", env={"NETLEDGER_DB": url})

    for result in (from_option, from_environment):
        assert result.returncode in (2, 3)
        assert PASSWORD not in result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 1


def test_redact_hides_password_forms() -> None:
    assert redact("postgresql://u:p%40ss@h:5/db") == "postgresql://u:***@h:5/db"
    assert redact("postgresql://u:pw@h/db?connect_timeout=1") == "postgresql://u:***@h/db?connect_timeout=1"
    assert redact("postgresql://u@h/db") == "postgresql://u@h/db"
    assert redact("postgresql://u:pw@[::1/db") == "<unparsable database URL>"


def test_scrub_hides_password_in_messages() -> None:
    message = 'connection failed: FATAL:  no pg_hba entry for "pw-123" at postgresql://u:pw-123@h/db\n\tretry'

    assert scrub(message, "pw-123") == 'no pg_hba entry for "***" at postgresql://u:***@h/db; retry'

