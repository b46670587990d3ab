"""The PostgreSQL append through libpq: prepared statements, lost connections, and work done while waiting.

A command's events are sent first and applied to the cached network while
the server stores them (``ledger.pgwire``). These tests check that the
append prepares its statement again when a connection lost it, that a
lost connection is retried without applying the events twice, and that an
error raised while applying still leaves the connection usable.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from ledger.addresses import parse_range
from ledger.aggregate import CommandContext, ContainerCreated
from ledger.application import Ledger
from ledger.pgstore import APPEND_STATEMENT
from ledger.storage import environment_for

pytestmark = pytest.mark.postgres


def context(request_id: str) -> CommandContext:
    return CommandContext(actor="pgwire-test", request_id=request_id)


def open_ledger(url: str) -> Ledger:
    # One connection, so that every statement of a test runs on the one the append uses.
    ledger = Ledger(env={**environment_for(url), "POSTGRES_POOL_SIZE": "1", "POSTGRES_MAX_OVERFLOW": "0"})
    ledger.create_network("net", [parse_range("10.3.0.0/24")], [], "lowest", context("net"))
    return ledger


def end_other_sessions(url: str) -> int:
    """Terminate every other session on the test database, as a server restart would; return how many."""
    with psycopg.connect(url, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return len(rows)


def prepared_statement_names(ledger: Ledger) -> list[str]:
    with ledger.recorder.datastore.get_connection() as connection:
        rows = connection.execute("SELECT name FROM pg_prepared_statements ORDER BY name").fetchall()
    return [row["name"] for row in rows]


def test_append_prepares_again_after_deallocate(postgres_url: str) -> None:
    ledger = open_ledger(postgres_url)
    ledger.create_container("net", context("a"), "a")
    assert APPEND_STATEMENT.decode() in prepared_statement_names(ledger)
    with ledger.recorder.datastore.get_connection() as connection:
        connection.execute("DEALLOCATE ALL")
    assert APPEND_STATEMENT.decode() not in prepared_statement_names(ledger)

    created = ledger.create_container("net", context("b"), "b")

    assert str(created.ip) == "10.3.0.3"
    assert APPEND_STATEMENT.decode() in prepared_statement_names(ledger)
    ledger.close()


def test_lost_connection_applies_events_once(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ledger = open_ledger(postgres_url)
    ledger.create_container("net", context("a"), "a")
    applied: list[str] = []
    original_apply = ContainerCreated.apply

    def counting_apply(self: ContainerCreated, aggregate: Any) -> None:
        applied.append(self.container_id)
        original_apply(self, aggregate)

    monkeypatch.setattr(ContainerCreated, "apply", counting_apply)
    assert end_other_sessions(postgres_url) >= 1

    created = ledger.create_container("net", context("b"), "b")

    assert applied == ["b"]
    assert str(created.ip) == "10.3.0.3"
    assert sorted(ledger.network("net").net.containers) == ["a", "b"]
    ledger.close()
    reopened = Ledger(env=environment_for(postgres_url))
    assert sorted(reopened.network("net").net.containers) == ["a", "b"]
    reopened.close()


def test_apply_error_raised_after_append(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ledger = open_ledger(postgres_url)

    def failing_apply(self: ContainerCreated, aggregate: Any) -> None:
        raise RuntimeError("apply failed")

    with monkeypatch.context() as patch:
        patch.setattr(ContainerCreated, "apply", failing_apply)
        with pytest.raises(RuntimeError, match="apply failed"):
            ledger.create_container("net", context("a"), "a")

    # The append had succeeded: the network rebuilt from the store contains the
    # container, and the connection that waited for it still works.
    assert sorted(ledger.network("net").net.containers) == ["a"]
    created = ledger.create_container("net", context("b"), "b")
    assert str(created.ip) == "10.3.0.3"
    ledger.close()
