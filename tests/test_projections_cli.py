"""``netledger projections run``, ``status`` and ``rebuild``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


from cli.main import app
from tests.cli_support import run, run_json, runner

REPOSITORY = Path(__file__).resolve().parent.parent


def small_history(db_url: str) -> None:
    run(db_url, "network", "create", "web", "--pool", "10.0.3.0/24")
    run(db_url, "container", "create", "web", "--id", "a")
    run(db_url, "container", "create", "web", "--id", "b")
    run(db_url, "container", "destroy", "web", "a")  # 1 + 3 + 3 + 2 = 9 events


def positions(statuses: list[dict[str, Any]]) -> list[tuple[str, int, int, int]]:
    return [(item["name"], item["position"], item["head"], item["lag"]) for item in statuses]


def test_status_shows_lag_before_run(db_url: str) -> None:
    small_history(db_url)

    statuses = run_json(db_url, "projections", "status")

    assert positions(statuses) == [
        ("free_addresses", 0, 9, 9), ("occupancy", 0, 9, 9), ("address_history", 0, 9, 9),
    ]


def test_run_applies_backlog_once(db_url: str) -> None:
    small_history(db_url)

    first = run(db_url, "projections", "run", "--batch-size", "4").stdout
    second = run_json(db_url, "projections", "run")

    assert first.splitlines()[0] == (
        "applied 9 events to free_addresses, 9 events to occupancy, 9 events to address_history"
    )
    assert positions(second) == [
        ("free_addresses", 9, 9, 0), ("occupancy", 9, 9, 0), ("address_history", 9, 9, 0),
    ]


def test_query_catches_up_before_answering(db_url: str) -> None:
    small_history(db_url)
    run(db_url, "projections", "run")
    run(db_url, "container", "create", "web", "--id", "c")

    free = run_json(db_url, "free", "web")

    assert free["allocated"] == 4
    assert [item["position"] for item in run_json(db_url, "projections", "status")] == [12, 12, 12]


def test_rebuild_one_read_model(db_url: str) -> None:
    small_history(db_url)
    run(db_url, "projections", "run")

    rebuilt = run_json(db_url, "projections", "rebuild", "--projection", "occupancy")
    text = run(db_url, "projections", "rebuild")

    assert positions(rebuilt) == [("occupancy", 9, 9, 0)]
    assert "replaying events" in text.stderr
    assert "9/9" in text.stderr
    assert run_json(db_url, "occupancy", "web")[0]["pool"]["containers"] == ["b"]


def test_rebuild_rejects_unknown_read_model(sqlite_url: str) -> None:
    result = runner.invoke(app, ["projections", "rebuild", "--projection", "nosuch", "--db", sqlite_url])

    assert result.exit_code == 2
    assert result.stderr == (
        "error: invalid read model 'nosuch': use one of free_addresses, occupancy, address_history\n"
    )


def test_follow_applies_events_until_sigint(sqlite_url: str) -> None:
    small_history(sqlite_url)
    environment = {key: value for key, value in os.environ.items() if key != "NETLEDGER_LOG"}
    command = [sys.executable, "-m", "cli.main", "projections", "run", "--follow", "--interval", "0.05",
               "--json", "--db", sqlite_url]
    process = subprocess.Popen(command, cwd=REPOSITORY, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        run(sqlite_url, "container", "create", "web", "--id", "late")
        deadline = time.monotonic() + 60
        while run_json(sqlite_url, "projections", "status")[0]["position"] < 12:
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            assert time.monotonic() < deadline, "the follower did not apply the new events"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGINT)
        output, errors = process.communicate(timeout=60)

    log = errors.decode()
    assert process.returncode == 0, log
    assert "INFO netledger.projections: following the log of netledger every 0.05s" in log
    assert "INFO netledger.projections: stopped following the log" in log
    assert positions(json.loads(output)) == [
        ("free_addresses", 12, 12, 0), ("occupancy", 12, 12, 0), ("address_history", 12, 12, 0),
    ]
