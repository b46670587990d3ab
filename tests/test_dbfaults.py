"""The ledger against a PostgreSQL server that stops, and against wrong credentials.

The tests start a throwaway cluster of their own (never the shared server),
stop it while commands are in flight, and start it again. A CLI command in
flight must fail with one line and exit status 3, without a traceback and
without writing part of its events. A long-lived ``Ledger`` object must
fail while the server is down and work again after the restart, without
being reopened. No output or log line may contain the password.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable

import psycopg
import pytest
from eventsourcing.persistence import PersistenceError

from ledger.addresses import parse_range
from ledger.application import Ledger
from ledger.storage import environment_for
from tests.reliability_support import (
    CLUSTER_PASSWORD,
    POOLED_CREATE_EVENTS,
    Cluster,
    context,
    events_by_request,
    replay_checking_invariants,
    stored_events,
)

pytestmark = pytest.mark.postgres

# With a 1 s wait for a connection, the library's 10 attempts per statement
# give up after about 12 s instead of about 52 s with the default of 5 s.
FAST_FAILURE = "?connect_timeout=1"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    try:
        server = Cluster()
    except FileNotFoundError:
        if os.environ.get("CI") == "true":
            pytest.fail("initdb and pg_ctl are needed for the fault tests, and CI=true forbids skipping")
        pytest.skip("initdb and pg_ctl are not installed")
    server.start()
    yield server
    server.remove()


def netledger(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a process of its own, with every log line on standard error."""
    return subprocess.run(
        [sys.executable, "-c", "from cli.main import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "NETLEDGER_LOG": "DEBUG", **(env or {})},
    )


def assert_one_clean_error(result: subprocess.CompletedProcess[str], exit_code: int) -> str:
    """Assert the command failed with one error line, no traceback and no password; return the line."""
    assert result.returncode == exit_code, result.stderr
    assert "Traceback" not in result.stderr
    assert CLUSTER_PASSWORD not in result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert result.stdout == ""
    return errors[0]


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def append_is_waiting_for_lock(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
            ("%pg_advisory_xact_lock_shared%",),
        ).fetchone()
    return row is not None and row[0] > 0


def test_server_restart_mid_command(
    cluster: Cluster, record_property: Callable[[str, Any], None]
) -> None:
    url = cluster.create_database("outage") + FAST_FAILURE
    ledger = Ledger(env=environment_for(url))
    ledger.create_network("web", [parse_range("10.40.0.0/24")], [], "lowest", context("network"))
    for i in range(3):
        ledger.create_container("web", context(f"before-{i}"), f"before-{i}")

    # Hold a lock that lets reads through but stops the CLI's append, so the
    # CLI command is inside its append when the server stops.
    blocker = psycopg.connect(url.removesuffix(FAST_FAILURE))
    blocker.execute("LOCK TABLE netledger_events IN SHARE MODE")
    results: dict[str, Any] = {}

    def create_in_flight() -> None:
        results["cli"] = netledger("container", "create", "web", "--id", "in-flight", "--request-id", "in-flight", "--db", url)

    in_flight = threading.Thread(target=create_in_flight)
    in_flight.start()
    wait_for(lambda: append_is_waiting_for_lock(url.removesuffix(FAST_FAILURE)), "the CLI to wait in its append")

    cluster.stop()
    stopped = time.monotonic()
    with pytest.raises(PersistenceError):
        ledger.create_container("web", context("during"), "during")
    in_process_failure_s = time.monotonic() - stopped
    in_flight.join(timeout=120)
    blocker.close()
    line = assert_one_clean_error(results["cli"], 3)
    assert line.startswith(f"error: database postgresql://postgres:***@127.0.0.1:{cluster.port}/outage")
    assert "Connection refused" in line
    started_while_down = netledger("container", "create", "web", "--db", url)
    assert "Connection refused" in assert_one_clean_error(started_while_down, 3)

    cluster.start()
    restarted = time.monotonic()
    failures_after_restart = 0
    while True:
        try:
            after = ledger.create_container("web", context("after"), "after")
            break
        except PersistenceError:
            failures_after_restart += 1
            assert time.monotonic() - restarted < 120, "the ledger did not reconnect"
    recovery_s = time.monotonic() - restarted
    retried_in_flight = netledger("container", "create", "web", "--id", "in-flight", "--request-id", "in-flight", "--db", url)
    assert retried_in_flight.returncode == 0, retried_in_flight.stderr
    retried_during = ledger.create_container("web", context("during"), "during")
    ledger.close()

    events = stored_events(url)
    grouped = events_by_request(events)
    for request_id in ("in-flight", "during", "after", "before-0", "before-2"):
        assert tuple(grouped[request_id]) == POOLED_CREATE_EVENTS, request_id
    final = replay_checking_invariants(events)["web"].net
    assert sorted(final.containers) == ["after", "before-0", "before-1", "before-2", "during", "in-flight"]
    assert final.containers["after"] == after
    assert final.containers["during"] == retried_during
    figures = {
        "in_process_failure_s": round(in_process_failure_s, 1),
        "recovery_after_restart_s": round(recovery_s, 1),
        "failed_commands_after_restart": failures_after_restart,
    }
    print(f"\ndatabase fault figures: {figures}")
    record_property("faults", figures)


def test_wrong_password_never_printed(cluster: Cluster) -> None:
    cluster.create_database("secrets")
    wrong = cluster.url("secrets", password=CLUSTER_PASSWORD[::-1]) + FAST_FAILURE
    right_user_wrong_password = netledger("network", "list", "--db", wrong)
    from_environment = netledger("network", "list", env={"NETLEDGER_DB": wrong})

    for result in (right_user_wrong_password, from_environment):
        line = assert_one_clean_error(result, 3)
        assert CLUSTER_PASSWORD[::-1] not in result.stdout + result.stderr
        assert line == (
            f"error: cannot open database postgresql://postgres:***@127.0.0.1:{cluster.port}/secrets"
            f"{FAST_FAILURE}: connection to server at \"127.0.0.1\", port {cluster.port} failed: "
            'password authentication failed for user "postgres"'
        )


def test_password_absent_from_session_output(cluster: Cluster) -> None:
    url = cluster.create_database("quiet")
    results = [
        netledger("network", "create", "web", "--pool", "10.41.0.0/24", "--db", url),
        netledger("container", "create", "web", "--id", "a1", "--db", url),
        netledger("container", "create", "web", "--id", "a1", "--db", url),
        netledger("network", "show", "nope", "--db", url),
    ]

    assert [result.returncode for result in results] == [0, 0, 1, 1]
    for result in results:
        assert CLUSTER_PASSWORD not in result.stdout + result.stderr
        assert "Traceback" not in result.stderr


def test_writer_role_cannot_change_events(cluster: Cluster) -> None:
    owner_url = cluster.create_database("roles")
    assert netledger("db", "init", "--writer-role", "ledger_writer", "--db", owner_url).returncode == 0
    with psycopg.connect(owner_url, autocommit=True) as connection:
        connection.execute("CREATE ROLE ledger_app LOGIN PASSWORD 'app-Pa55' IN ROLE ledger_writer")
    app_url = f"postgresql://ledger_app:app-Pa55@127.0.0.1:{cluster.port}/roles?create_tables=no"

    created = netledger("network", "create", "web", "--pool", "10.42.0.0/24", "--db", app_url)
    container = netledger("container", "create", "web", "--id", "a1", "--db", app_url)
    # Queries catch the read models up, so the role writes their tables too.
    audited = netledger("audit", "ip", "10.42.0.1", "--db", app_url)

    assert created.returncode == 0, created.stderr
    assert container.returncode == 0, container.stderr
    assert audited.returncode == 0, audited.stderr
    assert "a1" in audited.stdout
    with psycopg.connect(app_url.removesuffix("?create_tables=no"), autocommit=True) as connection:
        for statement in (
            "UPDATE netledger_events SET topic = topic",
            "DELETE FROM netledger_events",
            "TRUNCATE netledger_events",
            "DROP TRIGGER netledger_append_only ON netledger_events",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                connection.execute(statement)
        row = connection.execute("SELECT count(*) FROM netledger_events").fetchone()
    assert row == (4,)
