"""The CLI's outcome log lines, NETLEDGER_LOG, and singular and plural nouns in its messages."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from cli.main import app

REPO = Path(__file__).resolve().parent.parent
runner = CliRunner()


def netledger(*args: str, log_level: str) -> subprocess.CompletedProcess[str]:
    """Run the installed entry point's code in a new process, as a user would."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "NETLEDGER_LOG": log_level}
    return subprocess.run(
        [sys.executable, "-c", "from cli.main import main; main()", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def invoke(url: str, *args: str) -> Result:
    result = runner.invoke(app, [*args, "--db", url])
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize("value", ["LOUD", "10", "info;"])
def test_invalid_log_level_exits_two(sqlite_url: str, value: str) -> None:
    done = netledger("network", "list", "--db", sqlite_url, log_level=value)

    assert done.returncode == 2
    assert done.stderr == (
        f"error: invalid NETLEDGER_LOG value {value!r}: use one of DEBUG, INFO, WARNING, ERROR, CRITICAL\n"
    )
    assert done.stdout == ""


def test_info_log_level_logs_outcome(sqlite_url: str) -> None:
    created = netledger(
        "network", "create", "web", "--pool", "10.0.0.0/29", "--request-id", "r-web", "--db", sqlite_url,
        log_level="info",
    )

    assert created.returncode == 0, created.stderr
    assert "INFO netledger: created network web: 6 addresses, request r-web\n" in created.stderr


def test_default_log_level_logs_nothing(sqlite_url: str) -> None:
    created = netledger("network", "create", "web", "--pool", "10.0.0.0/29", "--db", sqlite_url, log_level="")

    assert created.returncode == 0, created.stderr
    assert created.stderr == ""


# Each command that succeeds, run in this order on one store, and words its INFO line must contain.
OUTCOMES: list[tuple[list[str], list[str]]] = [
    (["network", "create", "web", "--pool", "10.0.0.0/29", "--request-id", "r-net"], ["created network web", "r-net"]),
    (["network", "list"], ["listed 1 network"]),
    (["network", "show", "web"], ["showed network web"]),
    (["container", "create", "web", "--id", "a1", "--request-id", "r-a1"], ["container a1", "network web", "r-a1"]),
    (["container", "create", "web", "--request-id", "r-gen"], ["created container c-", "network web", "r-gen"]),
    (["container", "show", "web", "a1"], ["container a1", "network web"]),
    (["container", "list", "web"], ["listed 2 containers of network web"]),
    (["pool", "allocate", "web", "--request-id", "r-alloc"], ["allocated 10.0.0.5", "network web", "r-alloc"]),
    (["pool", "release", "web", "10.0.0.5", "--request-id", "r-rel"], ["released 10.0.0.5", "network web", "r-rel"]),
    (["container", "destroy", "web", "a1", "--request-id", "r-del"], ["destroyed container a1", "network web", "r-del"]),
    (["events", "--network", "web"], ["listed", "events", "network web"]),
    (["replay", "web", "--position", "1"], ["replayed network web at position 1"]),
    (["diff", "web", "1", "2"], ["compared network web from position 1"]),
    (["free", "web"], ["free addresses of network web"]),
    (["occupancy", "web"], ["occupancy of network web"]),
    (["audit", "ip", "10.0.0.1"], ["audited address 10.0.0.1"]),
    (["audit", "container", "a1"], ["audited container a1", "1 life"]),
    (["projections", "run"], ["applied"]),
    (["projections", "status"], ["read model status"]),
    (["projections", "rebuild"], ["rebuilt read models"]),
    (["verify"], ["verified every network", "0 problems found"]),
    (["db", "init"], ["append-only"]),
]


def test_each_command_logs_one_outcome_line(
    sqlite_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="netledger")
    empty_store = tmp_path / "host-local"
    empty_store.mkdir()
    commands = [
        *OUTCOMES,
        (["export", "--format", "jsonl", "--output", str(tmp_path / "out.jsonl")], ["exported", "events as jsonl"]),
        (["network", "import-host-local", "web", str(empty_store)], ["imported 0 containers", "network web"]),
    ]
    for args, words in commands:
        caplog.clear()

        invoke(sqlite_url, *args)

        lines = [record for record in caplog.records if record.name == "netledger"]
        assert len(lines) == 1, (args, [record.getMessage() for record in lines])
        assert lines[0].levelno == logging.INFO
        for word in words:
            assert word in lines[0].getMessage(), (args, lines[0].getMessage())


def test_one_address_pool_says_address(sqlite_url: str) -> None:
    created = invoke(sqlite_url, "network", "create", "w2", "--pool", "10.0.0.1/32")
    replayed = invoke(sqlite_url, "replay", "w2", "--position", "1")

    assert created.stdout == "created network w2: 1 address in 10.0.0.1-10.0.0.1, policy lowest\n"
    assert "allocated 0 of 1 address (none); 1 free" in replayed.stdout


def test_one_event_says_event(sqlite_url: str, tmp_path: Path) -> None:
    invoke(sqlite_url, "network", "create", "web", "--pool", "10.0.0.0/29")

    exported = invoke(sqlite_url, "export", "--format", "jsonl", "--output", str(tmp_path / "out.jsonl"))
    applied = invoke(sqlite_url, "projections", "run")

    assert exported.stdout == f"exported 1 event as jsonl to {tmp_path / 'out.jsonl'}\n"
    assert applied.stdout.splitlines()[0] == (
        "applied 1 event to free_addresses, 1 event to occupancy, 1 event to address_history"
    )
