"""Helpers shared by the concurrency, crash and database-fault tests.

They start writer processes (``tests.reliability_writer``), read back the
whole event stream, replay it one event at a time with the model's
invariants checked after every event, and group events by request id.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger.aggregate import CommandContext, Network
from ledger.application import Ledger
from ledger.invariants import first_violation
from ledger.storage import environment_for

REPOSITORY = Path(__file__).resolve().parent.parent

# The events one command appends, by command; every command appends all of
# them in one transaction or none.
POOLED_CREATE_EVENTS = ("IpAllocated", "GatewayAllocated", "ContainerCreated")
DESTROY_EVENTS = ("ContainerDestroyed", "AddressesReleased")
CLUSTER_PASSWORD = "s3cret-Pa55-word"


def context(request_id: str) -> CommandContext:
    return CommandContext(actor="reliability-test", request_id=request_id)


@dataclass
class Writer:
    """One writer process, the plan it runs, and what it printed for that plan."""

    process: subprocess.Popen[str]
    directory: Path
    name: str
    plan: list[dict[str, Any]] = field(default_factory=list)
    acks: dict[str, dict[str, Any]] = field(default_factory=dict)
    refusals: list[str] = field(default_factory=list)
    stats: dict[str, Any] | None = None
    plans_run: int = 0

    def send(self, plan: list[dict[str, Any]]) -> None:
        """Give the writer a plan; it starts at once."""
        self.plan, self.acks, self.refusals, self.stats = plan, {}, [], None
        self.plans_run += 1
        plan_file = self.directory / f"{self.name}-{self.plans_run}.json"
        plan_file.write_text(json.dumps(plan), encoding="utf-8")
        assert self.process.stdin is not None
        self.process.stdin.write(f"{plan_file}\n")
        self.process.stdin.flush()

    def read_output(self) -> None:
        """Read the writer's output up to the end of its plan, or to its death."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            kind, _, rest = line.rstrip("\n").partition(" ")
            if kind == "ack":
                request_id, _, result = rest.partition(" ")
                self.acks[request_id] = json.loads(result)
            elif kind == "refused":
                self.refusals.append(rest)
            elif kind == "done":
                self.stats = json.loads(rest)
                return

    def stop(self) -> str:
        """End the writer's input, wait for it to exit, and return its standard error."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        self.process.stdin.close()
        self.process.stdout.read()
        stderr = self.process.stderr.read()
        self.process.wait(timeout=120)
        return stderr


def start_writer(url: str, network: str, directory: Path, name: str) -> Writer:
    """Start a writer process and wait until it has opened the ledger."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.reliability_writer", url, network],
        cwd=REPOSITORY,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY)},
    )
    assert process.stdout is not None
    ready = process.stdout.readline()
    if ready.strip() != "ready":
        _, stderr = process.communicate(timeout=30)
        raise AssertionError(f"writer {name} did not start: {ready!r} {stderr[-2000:]}")
    return Writer(process, directory, name)


def stored_events(url: str) -> list[Any]:
    """Return every stored event of the ledger at ``url``, in notification order."""
    ledger = Ledger(env=environment_for(url))
    try:
        events: list[Any] = []
        start = 1
        while True:
            page = ledger.recorder.select_notifications(start=start, limit=1000)
            events.extend(ledger.mapper.to_domain_event(notification) for notification in page)
            if len(page) < 1000:
                return events
            start = page[-1].id + 1
    finally:
        ledger.close()


def replay_checking_invariants(events: list[Any]) -> dict[str, Network]:
    """Replay ``events`` one at a time, failing at the first broken invariant."""
    networks: dict[Any, Network] = {}
    for position, event in enumerate(events, start=1):
        network = networks.get(event.originator_id)
        networks[event.originator_id] = event.mutate(network)
        problem = first_violation(networks[event.originator_id].net)
        assert problem is None, f"after stored event {position} ({type(event).__name__}): {problem}"
    return {network.net.name: network for network in networks.values()}


def events_by_request(events: list[Any]) -> dict[str, list[str]]:
    """Return the event type names of each request id, in stream order."""
    grouped: dict[str, list[str]] = defaultdict(list)
    for event in events:
        grouped[event.request_id].append(type(event).__name__)
    return dict(grouped)


class Cluster:
    """A throwaway PostgreSQL cluster that a test may stop and start at will.

    TCP connections need the password ``CLUSTER_PASSWORD`` (SCRAM), so tests
    can try a wrong one; the Unix socket trusts local users.
    """

    def __init__(self) -> None:
        from tests import pgserver

        self.initdb, self.pg_ctl = pgserver._binary("initdb"), pgserver._binary("pg_ctl")
        if not self.initdb or not self.pg_ctl:
            raise FileNotFoundError("initdb and pg_ctl are not installed")
        self.directory = Path(tempfile.mkdtemp(prefix="netledger-faults-"))
        self.data = self.directory / "data"
        self.port = pgserver._free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.directory, "postgres", "postgres")
        password_file = self.directory / "password"
        password_file.write_text(CLUSTER_PASSWORD + "\n", encoding="utf-8")
        if self.as_root:
            shutil.chown(password_file, "postgres", "postgres")
        self._run(
            self.initdb, "-D", str(self.data), "-U", "postgres", "--auth-host=scram-sha-256",
            "--auth-local=trust", f"--pwfile={password_file}",
        )

    def _run(self, *args: str) -> None:
        command = list(args)
        if self.as_root:
            command = ["su", "postgres", "-c", " ".join(shlex.quote(part) for part in command)]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def url(self, dbname: str = "postgres", password: str = CLUSTER_PASSWORD) -> str:
        return f"postgresql://postgres:{password}@127.0.0.1:{self.port}/{dbname}"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        self._run(self.pg_ctl, "-D", str(self.data), "-o", options, "-w", "-l", str(self.directory / "log"), "start")

    def stop(self) -> None:
        """Stop the server at once, as a crash or an operator's fast shutdown would."""
        self._run(self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop")

    def create_database(self, name: str) -> str:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def remove(self) -> None:
        try:
            self._run(self.pg_ctl, "-D", str(self.data), "-m", "immediate", "stop")
        except subprocess.CalledProcessError:
            pass  # already stopped
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)
