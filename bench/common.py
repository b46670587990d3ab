"""Timing, database setup and the result record shared by every benchmark.

Every benchmark runs on PostgreSQL: the server named by
``NETLEDGER_BENCH_DB`` (the URL of a database on a server where the bench
may create databases), else the one at 127.0.0.1:5432, else a throwaway
cluster that ``tests/pgserver.py`` starts. Each benchmark gets databases of
its own, named after the run, and every one of them is dropped at the end.
"""

from __future__ import annotations

import os
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Optional

import psycopg

from ledger.aggregate import CommandContext
from ledger.application import Ledger
from ledger.storage import environment_for
from tests import pgserver

BENCH_DB_ENV_VAR = "NETLEDGER_BENCH_DB"
BENCH_ACTOR = "bench"


@dataclass(frozen=True)
class Measured:
    """One measured value and its unit."""

    value: float
    unit: str

    def as_json(self) -> dict[str, Any]:
        return {"value": round(self.value, 6), "unit": self.unit}


@dataclass(frozen=True)
class Target:
    """The bound a ratio should meet: ``ratio >= bound`` or ``ratio <= bound``."""

    operator: str
    bound: float

    def met_by(self, ratio: Optional[float]) -> Optional[bool]:
        if ratio is None:
            return None
        return ratio >= self.bound if self.operator == ">=" else ratio <= self.bound

    def __str__(self) -> str:
        return f"{self.operator} {self.bound:g}"


@dataclass
class Result:
    """The measurement of one figure: its values, the ratio of two of them, and the target."""

    key: str
    what: str
    target: Target
    ratio: Optional[float] = None
    values: dict[str, Measured] = field(default_factory=dict)
    note: str = ""
    error: Optional[str] = None

    @property
    def met(self) -> Optional[bool]:
        return self.target.met_by(self.ratio)

    def as_json(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "values": {name: measured.as_json() for name, measured in self.values.items()},
            "ratio": None if self.ratio is None else round(self.ratio, 4),
            "target": str(self.target),
            "met": self.met,
            "note": self.note,
            "error": self.error,
        }


@dataclass
class RunContext:
    """Settings of one run and the databases it created."""

    quick: bool
    server_url: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    created: list[str] = field(default_factory=list)
    shared: dict[str, Any] = field(default_factory=dict)

    def size(self, full: int, quick: int) -> int:
        """Return the size for this run's mode."""
        return quick if self.quick else full


def find_server() -> tuple[str, Callable[[], None]]:
    """Return the URL of a database on the benchmark server and a function that stops it if we started it."""
    configured = os.environ.get(BENCH_DB_ENV_VAR, "").strip()
    if configured:
        return configured, lambda: None
    server = pgserver.find_or_start()
    if server is None:
        raise RuntimeError(
            f"no PostgreSQL server: set {BENCH_DB_ENV_VAR}, run one on 127.0.0.1:5432, or install initdb"
        )
    return server.url, server.stop


def new_database(ctx: RunContext, label: str) -> str:
    """Create an empty database for one benchmark and return its URL; it is dropped at the end of the run."""
    name = f"netledger_bench_{ctx.run_id}_{label}"
    pgserver.create_database(ctx.server_url, name)
    ctx.created.append(name)
    return pgserver.with_database(ctx.server_url, name)


def drop_databases(ctx: RunContext) -> None:
    """Drop every database this run created."""
    while ctx.created:
        pgserver.drop_database(ctx.server_url, ctx.created.pop())


def postgres_version(url: str) -> str:
    with psycopg.connect(url) as connection:
        row = connection.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "unknown"


def open_ledger(url: str, **settings: str) -> Ledger:
    """Open a ``Ledger`` on ``url``; ``settings`` are extra eventsourcing environment variables."""
    return Ledger(env={**environment_for(url), **settings})


@contextmanager
def ledger_on(url: str, **settings: str) -> Iterator[Ledger]:
    ledger = open_ledger(url, **settings)
    try:
        yield ledger
    finally:
        ledger.close()


def command_context(request_id: Optional[str] = None) -> CommandContext:
    """Return the context every benchmark command records, with a new request id by default."""
    return CommandContext(actor=BENCH_ACTOR, request_id=request_id or uuid.uuid4().hex)


def timed(action: Callable[[], Any]) -> float:
    """Run ``action`` once and return its wall time in seconds."""
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def median_time(action: Callable[[], Any], repeats: int) -> float:
    """Return the median wall time of ``repeats`` runs of ``action``, in seconds."""
    return statistics.median(timed(action) for _ in range(repeats))


def rate_for(duration: float, step: Callable[[int], int]) -> tuple[int, float]:
    """Call ``step(i)`` until ``duration`` seconds pass; return the units it reported and the elapsed time."""
    done = 0
    index = 0
    start = time.perf_counter()
    deadline = start + duration
    while time.perf_counter() < deadline:
        done += step(index)
        index += 1
    return done, time.perf_counter() - start
