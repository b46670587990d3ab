"""A projection runner killed with SIGKILL part-way leaves consistent read models and resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from ledger.addresses import parse_range
from ledger.aggregate import CommandContext
from ledger.application import Ledger
from ledger.storage import environment_for
from projections.compare import compare_stored, compare_with_replay
from projections.runner import ReadModels

REPOSITORY = Path(__file__).resolve().parent.parent


def context() -> CommandContext:
    return CommandContext(actor="loader", request_id=str(uuid.uuid4()))


def backlog(ledger: Ledger, containers: int) -> None:
    ledger.create_network("web", [parse_range("10.0.0.0/16")], [], "lowest", context())
    for index in range(containers):
        ledger.create_container("web", context(), f"c{index}")
        if index % 3 == 2:
            ledger.destroy_container("web", f"c{index - 1}", context())


def runner_process(db_url: str, batch_size: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "cli.main", "projections", "run", "--batch-size", str(batch_size), "--db", db_url]
    return subprocess.Popen(command, cwd=REPOSITORY, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_killed_runner_resumes_exactly_once(db_url: str) -> None:
    ledger = Ledger(env=environment_for(db_url))
    backlog(ledger, 60)  # 1 + 60 * 3 + 20 * 2 = 221 events
    models = ReadModels(ledger)
    head = models.head()

    # One event per transaction makes the run long enough to be killed part-way.
    process = runner_process(db_url, batch_size=1)
    while min(status.position for status in models.status()) < 30 and process.poll() is None:
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = [status.position for status in models.status()]

    assert head == 221
    assert process.returncode == -signal.SIGKILL
    assert min(killed_at) >= 30
    assert min(killed_at) < head
    assert compare_stored(models) is None

    finished = runner_process(db_url, batch_size=100)
    _, errors = finished.communicate(timeout=120)

    assert finished.returncode == 0, errors.decode()
    assert [status.position for status in models.status()] == [head, head, head]
    assert compare_with_replay(ledger) is None
    ledger.close()
