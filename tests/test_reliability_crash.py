"""Writers killed with SIGKILL at random moments lose nothing acknowledged.

Three writer processes run plans on one PostgreSQL network. In each round
every writer gets a plan and one of them is killed at a random moment. The
killed writer is restarted for the next round and retries, with the same
request ids, every command of its plan that it had not acknowledged. After
every round:

- every acknowledged command is in the stream, with the result the writer
  printed;
- every request id in the stream has exactly the events of its command
  (all of them, once), so no command is half-applied or applied twice.

At the end the invariants hold after every stored event, and the network
contains exactly the containers that the plans leave alive.
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from ledger.addresses import parse_range
from ledger.application import Ledger
from ledger.storage import environment_for
from tests.reliability_support import (
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

ROUNDS = int(os.environ.get("NETLEDGER_CRASH_ROUNDS", "20"))
WRITERS = 3
CREATES_PER_ROUND = 8
DESTROYS_PER_ROUND = 3
# The kill comes at a random moment within the time the surviving writers of
# the previous round took for their plans, so it lands before, between and
# inside commands.
FIRST_KILL_WITHIN_S = 0.5
EXPECTED_EVENTS = {"create": POOLED_CREATE_EVENTS, "destroy": DESTROY_EVENTS}


class Plans:
    """What each writer must do, and what it has acknowledged so far."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self.pending: dict[int, list[dict[str, Any]]] = {w: [] for w in range(WRITERS)}
        self.alive: dict[int, list[str]] = {w: [] for w in range(WRITERS)}
        self.acks: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        self.expected_alive: set[str] = set()
        self.kill_within_s = FIRST_KILL_WITHIN_S

    def plan(self, writer: int, round_number: int) -> list[dict[str, Any]]:
        """Return the unacknowledged commands of the writer, then new ones."""
        commands = list(self.pending[writer])
        for i in range(CREATES_PER_ROUND):
            cid = f"w{writer}-r{round_number}-{i}"
            commands.append({"request_id": f"create-{cid}", "op": "create", "id": cid})
            self.expected_alive.add(cid)
        victims = self.alive[writer][:DESTROYS_PER_ROUND]
        self.alive[writer] = self.alive[writer][DESTROYS_PER_ROUND:]
        for cid in victims:
            commands.append({"request_id": f"destroy-{cid}", "op": "destroy", "id": cid})
            self.expected_alive.discard(cid)
        return commands

    def record(self, writer: int, run: Writer) -> None:
        """Note the writer's acknowledgements; what it did not acknowledge is retried next time."""
        for command in run.plan:
            ack = run.acks.get(command["request_id"])
            if ack is not None:
                self.acks[command["request_id"]] = (command, ack)
                if command["op"] == "create":
                    self.alive[writer].append(command["id"])
        self.pending[writer] = [command for command in run.plan if command["request_id"] not in run.acks]


def run_round(writers: list[Writer], plans: Plans, round_number: int) -> tuple[int, int]:
    """Run one round, kill one writer, and return the victim and its acknowledged commands."""
    victim = plans.random.randrange(WRITERS)
    for w, writer in enumerate(writers):
        writer.send(plans.plan(w, round_number))
    time.sleep(plans.random.uniform(0, plans.kill_within_s))
    writers[victim].process.send_signal(signal.SIGKILL)
    for w, writer in enumerate(writers):
        writer.read_output()
        if w != victim:
            assert writer.stats is not None, f"writer {w} stopped in round {round_number}"
            assert len(writer.acks) == len(writer.plan)
        assert writer.refusals == []
        plans.record(w, writer)
    assert writers[victim].process.wait(timeout=30) == -signal.SIGKILL
    plans.kill_within_s = max(writer.stats["seconds"] for w, writer in enumerate(writers) if w != victim)
    return victim, len(writers[victim].acks)


def check_round(url: str, plans: Plans) -> set[str]:
    """Check acknowledged commands are stored and no command is partly stored; return the stored request ids."""
    events = stored_events(url)
    grouped = events_by_request(events)
    grouped.pop("network")
    for request_id, names in grouped.items():
        op = request_id.split("-", 1)[0]
        assert tuple(names) == EXPECTED_EVENTS[op], f"request {request_id} stored {names}"
    created = {event.request_id: event for event in events if type(event).__name__ == "ContainerCreated"}
    for request_id, (command, ack) in plans.acks.items():
        assert request_id in grouped, f"acknowledged request {request_id} is not stored"
        if command["op"] == "create":
            assert (created[request_id].ip, created[request_id].gw) == (ack["ip"], ack["gateway"])
    return set(grouped)


def test_killed_writers_lose_no_acknowledged_command(
    postgres_url: str, tmp_path: Path, record_property: Callable[[str, Any], None]
) -> None:
    ledger = Ledger(env=environment_for(postgres_url))
    ledger.create_network("crashy", [parse_range("10.30.0.0/16")], [], "lowest", context("network"))
    ledger.close()
    plans = Plans(seed=int(os.environ.get("NETLEDGER_CRASH_SEED", "20240607")))

    started = time.monotonic()
    writers = [start_writer(postgres_url, "crashy", tmp_path, f"w{w}") for w in range(WRITERS)]
    kills = []
    retried = stored_before_retry = 0
    stored: set[str] = set()
    for round_number in range(ROUNDS):
        pending = [command["request_id"] for w in range(WRITERS) for command in plans.pending[w]]
        retried += len(pending)
        stored_before_retry += len(stored.intersection(pending))
        victim, acked = run_round(writers, plans, round_number)
        kills.append(acked)
        stored = check_round(postgres_url, plans)
        writers[victim] = start_writer(postgres_url, "crashy", tmp_path, f"w{victim}-restart{round_number}")

    recovery_plan = [command for w in range(WRITERS) for command in plans.pending[w]]
    retried += len(recovery_plan)
    stored_before_retry += len(stored.intersection(command["request_id"] for command in recovery_plan))
    writers[0].send(recovery_plan)
    writers[0].read_output()
    assert len(writers[0].acks) == len(recovery_plan)
    for writer in writers:
        stderr = writer.stop()
        assert writer.process.returncode == 0, stderr[-2000:]
        assert "Traceback" not in stderr
    stored = check_round(postgres_url, plans)

    events = stored_events(postgres_url)
    final = replay_checking_invariants(events)["crashy"].net
    assert set(final.containers) == plans.expected_alive
    figures = {
        "rounds": ROUNDS,
        "acks_before_kill": kills,
        "commands_retried_after_restart": retried,
        "of_which_committed_before_the_kill": stored_before_retry,
        "requests": len(stored),
        "events": len(events),
        "elapsed_s": round(time.monotonic() - started, 2),
    }
    print(f"\ncrash figures: {figures}")
    record_property("crash", figures)
