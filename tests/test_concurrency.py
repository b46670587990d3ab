"""Four writer processes on one network of one PostgreSQL ledger at once.

Each writer creates its containers, then destroys half of them, all four
at the same time. Appends to one stream collide on its version, and the
application reloads and retries the command. The test checks that no
acknowledged command is lost, that no address or gateway was ever held
twice (the invariants hold after every stored event), and that collisions
were retried and logged, never surfaced. A projection follower runs
alongside the writers, and its read models must end equal to a fresh
replay of the events.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from ledger.addresses import parse_range
from ledger.application import Ledger
from ledger.storage import environment_for
from projections.compare import compare_stored
from projections.runner import ReadModels
from tests.reliability_support import (
    REPOSITORY,
    DESTROY_EVENTS,
    POOLED_CREATE_EVENTS,
    Writer,
    context,
    events_by_request,
    replay_checking_invariants,
    start_writer,
    stored_events,
)

pytestmark = pytest.mark.postgres

WRITERS = 4
# The full run (250 creates per writer, 1,500 commands) took 30 s on an idle
# 2-core machine and 90 s on a busy one, so the default run is smaller. Set
# NETLEDGER_CONCURRENCY_CREATES=250 for the full one.
CREATES_PER_WRITER = int(os.environ.get("NETLEDGER_CONCURRENCY_CREATES", "100"))


def create_plan(writer: int) -> list[dict[str, Any]]:
    return [
        {"request_id": f"w{writer}-create-{i}", "op": "create", "id": f"w{writer}-c{i}"}
        for i in range(CREATES_PER_WRITER)
    ]


def destroy_plan(writer: int) -> list[dict[str, Any]]:
    return [
        {"request_id": f"w{writer}-destroy-{i}", "op": "destroy", "id": f"w{writer}-c{i}"}
        for i in range(0, CREATES_PER_WRITER, 2)
    ]


def run_phase(writers: list[Writer], plan_of: Callable[[int], list[dict[str, Any]]]) -> None:
    """Give every writer its plan at once and wait until all have finished."""
    for w, writer in enumerate(writers):
        writer.send(plan_of(w))
    for writer in writers:
        writer.read_output()


def start_follower(url: str) -> subprocess.Popen[str]:
    """Start ``netledger projections run --follow`` in a process of its own."""
    return subprocess.Popen(
        [sys.executable, "-c", "from cli.main import main; main()", "projections", "run", "--follow",
         "--interval", "0.2", "--db", url],
        cwd=REPOSITORY,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop_follower_when_caught_up(url: str, follower: subprocess.Popen[str]) -> str | None:
    """Wait until the follower has applied every event, stop it, and compare its read models with a replay."""
    ledger = Ledger(env=environment_for(url))
    try:
        models = ReadModels(ledger)
        deadline = time.monotonic() + 120
        while any(status.lag for status in models.status()):
            assert follower.poll() is None, follower.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "the projection follower did not catch up"
            time.sleep(0.2)
        follower.send_signal(signal.SIGTERM)
        _, stderr = follower.communicate(timeout=60)
        assert follower.returncode == 0, stderr[-2000:]
        assert "Traceback" not in stderr
        return compare_stored(models)
    finally:
        ledger.close()


def phase_figures(writers: list[Writer], elapsed: float) -> dict[str, Any]:
    stats = [writer.stats or {} for writer in writers]
    return {
        "commands": sum(item.get("commands", 0) for item in stats),
        "conflict_retries": sum(item.get("conflict_retries", 0) for item in stats),
        "retries_logged": sum(item.get("retries_logged", 0) for item in stats),
        "elapsed_s": round(elapsed, 2),
    }


def test_concurrent_writers_lose_no_command(
    postgres_url: str, tmp_path: Path, record_property: Callable[[str, Any], None]
) -> None:
    ledger = Ledger(env=environment_for(postgres_url))
    ledger.create_network("shared", [parse_range("10.20.0.0/16")], [], "lowest", context("network"))
    ledger.close()

    writers = [start_writer(postgres_url, "shared", tmp_path, f"writer-{w}") for w in range(WRITERS)]
    follower = start_follower(postgres_url)
    figures: dict[str, dict[str, Any]] = {}
    for phase, plan_of in (("create", create_plan), ("destroy", destroy_plan)):
        started = time.monotonic()
        run_phase(writers, plan_of)
        figures[phase] = phase_figures(writers, time.monotonic() - started)
        for writer in writers:
            assert writer.refusals == []
            assert len(writer.acks) == len(writer.plan)
        figures[phase]["acks"] = sum(len(writer.acks) for writer in writers)
        if phase == "create":
            created = {ack["id"]: ack for writer in writers for ack in writer.acks.values()}
    for writer in writers:
        stderr = writer.stop()
        assert writer.process.returncode == 0, stderr[-2000:]
        assert "Traceback" not in stderr
    assert stop_follower_when_caught_up(postgres_url, follower) is None
    started = time.monotonic()
    events = stored_events(postgres_url)
    final = replay_checking_invariants(events)["shared"].net
    figures["replay_check"] = {"events": len(events), "elapsed_s": round(time.monotonic() - started, 2)}
    print(f"\nconcurrency figures ({WRITERS} writers x {CREATES_PER_WRITER} creates): {figures}")
    for phase, values in figures.items():
        record_property(phase, values)
    survivors = {cid for cid in created if int(cid.split("-c")[1]) % 2 == 1}
    assert set(final.containers) == survivors
    for cid in survivors:
        assert str(final.containers[cid].ip) == created[cid]["ip"]
        assert str(final.containers[cid].gw) == created[cid]["gateway"]
    grouped = events_by_request(events)
    for writer in range(WRITERS):
        for command in create_plan(writer):
            assert tuple(grouped[command["request_id"]]) == POOLED_CREATE_EVENTS
        for command in destroy_plan(writer):
            assert tuple(grouped[command["request_id"]]) == DESTROY_EVENTS
    assert len(events) == 1 + 3 * WRITERS * CREATES_PER_WRITER + 2 * WRITERS * CREATES_PER_WRITER // 2
    assert figures["create"]["conflict_retries"] > 0, "four writers on one stream never collided"
    for phase in ("create", "destroy"):
        assert figures[phase]["retries_logged"] == figures[phase]["conflict_retries"]
