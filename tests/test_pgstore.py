"""The PostgreSQL recorder: read models never pass an event still being written.

On PostgreSQL, appends run side by side (``ledger.pgstore``), so an append
that drew a lower notification id can commit after one that drew a higher
id. These tests keep one append's transaction open, let a later append
commit, and check that catching up waits for the open one instead of
moving past its ids. The last tests cover a database that lacks the
ledger's functions, many processes opening one database at once, and the
advice given when a database is missing or a role may not create tables.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from cli.main import app
from ledger.addresses import parse_range
from ledger.aggregate import CommandContext
from ledger.application import Ledger
from ledger.errors import StorageError
from ledger.pgstore import APPEND_STATEMENT
from ledger.pgwire import run_prepared
from ledger.storage import environment_for, postgres_has_ledger
from projections.compare import compare_stored
from projections.runner import ReadModels
from tests.pgserver import writer_login

pytestmark = pytest.mark.postgres

CREATE_EVENTS = 3
# CLI processes opening one new database at once. Before the ledger's
# functions were created only when missing, 3 to 5 of 16 failed here.
PARALLEL_COMMANDS = 16
runner = CliRunner()


def context(request_id: str) -> CommandContext:
    return CommandContext(actor="log-order-test", request_id=request_id)


def reader_waits_for_appends(url: str) -> bool:
    """Return whether a session is waiting for the appenders' advisory lock."""
    with psycopg.connect(url, autocommit=True) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND wait_event = 'advisory' "
            "AND datname = current_database()"
        ).fetchone()
    return row is not None and row[0] > 0


def wait_for(condition: Any, description: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {description}"
        time.sleep(0.02)


def open_append(ledger: Ledger, url: str, network: str, container_id: str) -> psycopg.Connection[Any]:
    """Append a container create's events to ``network`` in a transaction left open; return its connection."""
    aggregate = ledger.network(network)
    aggregate.create_from_pool(container_id, context(container_id))
    stored = [ledger.mapper.to_stored_event(event) for event in aggregate.collect_events()]
    recorder = ledger.recorder
    types = recorder.append_types
    connection = psycopg.connect(url)
    # Prepared outside the transaction: a failed first try inside it would abort it.
    prepared = connection.pgconn.prepare(APPEND_STATEMENT, recorder.append_query, types)
    assert prepared.status == psycopg.pq.ExecStatus.COMMAND_OK, prepared.error_message
    connection.execute("SELECT 1")  # psycopg begins a transaction, which the append joins
    parameters = recorder.append_parameters(stored, connection.info.encoding)
    run_prepared(connection, APPEND_STATEMENT, recorder.append_query, types, parameters)
    return connection


def test_catch_up_waits_for_open_append(postgres_url: str) -> None:
    ledger = Ledger(env=environment_for(postgres_url))
    rival = Ledger(env=environment_for(postgres_url))
    ledger.create_network("early", [parse_range("10.1.0.0/24")], [], "lowest", context("early"))
    ledger.create_network("late", [parse_range("10.2.0.0/24")], [], "lowest", context("late"))
    models = ReadModels(ledger)
    models.catch_up()

    open_transaction = open_append(rival, postgres_url, "early", "held")
    ledger.create_container("late", context("after"), "after")
    # The later append is visible and has the highest id. The open one is not visible.
    assert ledger.recorder.max_notification_id() == 2 + 2 * CREATE_EVENTS

    applied: dict[str, int] = {}
    catching_up = threading.Thread(target=lambda: applied.update(models.catch_up()))
    catching_up.start()
    wait_for(
        lambda: reader_waits_for_appends(postgres_url) or not catching_up.is_alive(),
        "catch-up to wait for the open append or to end",
    )
    assert catching_up.is_alive(), f"catching up ended without the open append: {applied}"

    open_transaction.commit()
    open_transaction.close()
    catching_up.join(timeout=60)
    assert not catching_up.is_alive()

    assert applied == dict.fromkeys(models.models, 2 * CREATE_EVENTS)
    assert models.catch_up() == dict.fromkeys(models.models, 0)
    assert compare_stored(models) is None
    rival.close()
    ledger.close()


def test_catch_up_passes_rolled_back_ids(postgres_url: str) -> None:
    ledger = Ledger(env=environment_for(postgres_url))
    rival = Ledger(env=environment_for(postgres_url))
    ledger.create_network("early", [parse_range("10.1.0.0/24")], [], "lowest", context("early"))
    models = ReadModels(ledger)

    open_transaction = open_append(rival, postgres_url, "early", "rolled-back")
    open_transaction.rollback()
    open_transaction.close()
    ledger.create_container("early", context("kept"), "kept")

    # The rolled-back append drew ids 2 to 4 and left them unused.
    assert models.head() == 1 + 2 * CREATE_EVENTS
    assert models.catch_up() == dict.fromkeys(models.models, 1 + CREATE_EVENTS)
    assert compare_stored(models) is None
    rival.close()
    ledger.close()


def test_missing_function_says_run_db_init(postgres_url: str) -> None:
    ledger = Ledger(env=environment_for(postgres_url))
    ledger.create_network("web", [parse_range("10.1.0.0/24")], [], "lowest", context("web"))
    ledger.close()
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("DROP FUNCTION netledger_high_water_mark_uuid()")
    without_create = Ledger(env=environment_for(postgres_url + "?create_tables=no"))

    with pytest.raises(StorageError) as missing:
        ReadModels(without_create).catch_up()
    without_create.close()

    assert "no function netledger_high_water_mark_uuid" in str(missing.value)
    assert "run 'netledger db init'" in str(missing.value)
    assert stored_event_count(postgres_url) == 1


def stored_event_count(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as connection:
        row = connection.execute("SELECT count(*) FROM netledger_events").fetchone()
    assert row is not None
    return int(row[0])


def function_row_versions(url: str) -> list[tuple[str, str]]:
    """Return the name and row version (xmin) of each of the ledger's functions in the catalog."""
    with psycopg.connect(url, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT proname, xmin::text FROM pg_proc WHERE proname LIKE 'netledger%%' ORDER BY proname"
        ).fetchall()
    return [(name, version) for name, version in rows]


def test_open_leaves_functions_unchanged(postgres_url: str) -> None:
    Ledger(env=environment_for(postgres_url)).close()
    before = function_row_versions(postgres_url)

    Ledger(env=environment_for(postgres_url)).close()

    assert [name for name, _ in before] == [
        "netledger_append_events_uuid",
        "netledger_high_water_mark_uuid",
        "netledger_take_turn_uuid",
    ]
    assert function_row_versions(postgres_url) == before


def test_parallel_commands_on_new_database(postgres_url: str) -> None:
    # Each process opens the new database and creates its tables and functions, racing the others.
    commands = [
        subprocess.Popen(
            [
                sys.executable, "-c", "from cli.main import main; main()",
                "network", "create", f"net{number}", "--pool", f"10.{number}.0.0/24", "--db", postgres_url,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for number in range(PARALLEL_COMMANDS)
    ]
    outcomes = [(command.wait(timeout=120), command.stderr.read() if command.stderr else "") for command in commands]
    for command in commands:
        for stream in (command.stdout, command.stderr):
            if stream is not None:
                stream.close()

    assert [code for code, _ in outcomes] == [0] * PARALLEL_COMMANDS, [error for _, error in outcomes]
    listed = runner.invoke(app, ["network", "list", "--json", "--db", postgres_url])
    assert sorted(network["name"] for network in json.loads(listed.stdout)) == sorted(
        f"net{number}" for number in range(PARALLEL_COMMANDS)
    )


def test_missing_database_says_create_it(postgres_url: str) -> None:
    missing_url = postgres_url.rsplit("/", 1)[0] + "/netledger_missing_" + uuid.uuid4().hex[:8]

    result = runner.invoke(app, ["network", "list", "--db", missing_url])

    assert result.exit_code == 3
    assert "does not exist; create it (createdb NAME) or correct the name in the URL" in result.stderr


def test_role_without_create_says_create_tables_no(postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    with writer_login(postgres_url) as as_login:
        without_option = runner.invoke(app, ["network", "list", "--db", as_login])
        with_option = runner.invoke(app, ["network", "list", "--db", as_login + "?create_tables=no"])

    assert without_option.exit_code == 3
    assert "permission denied for schema public" in without_option.stderr
    assert "adds ?create_tables=no to the URL" in without_option.stderr
    assert with_option.exit_code == 0, with_option.stderr


NEEDS_LEDGER_COMMANDS = [["network", "list"], ["free", "web"], ["container", "create", "web"]]


@pytest.mark.parametrize("command", NEEDS_LEDGER_COMMANDS, ids=" ".join)
def test_database_without_ledger_gets_no_tables(postgres_url: str, command: list[str]) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("CREATE TABLE inventory (item text)")

    result = runner.invoke(app, [*command, "--db", postgres_url])

    assert result.exit_code == 2, result.output
    assert result.stderr == (
        f"error: no ledger in database {postgres_url}; create a network first with 'netledger network create' "
        "or check --db\n"
    )
    with psycopg.connect(postgres_url) as connection:
        tables = connection.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    assert tables == [("inventory",)]


def test_ledger_found_after_open(postgres_url: str) -> None:
    Ledger(env=environment_for(postgres_url)).close()

    assert postgres_has_ledger(environment_for(postgres_url))
