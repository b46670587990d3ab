"""history_latency_ratio: the latency of one create in a network with a long history over one with a short history.

Both networks keep the same 50 live containers; only the length of their
history differs (1,000 events against 1,000,000, or 20,000 in quick mode).
The long history is written in bulk (``bench.build``) and shared with the
audit benchmark, which needs the same store.
"""

from __future__ import annotations

import statistics
import time
import uuid
from dataclasses import dataclass

from bench.build import HistoryShape, build_history
from bench.common import Measured, Result, RunContext, Target, command_context, ledger_on, new_database, timed
from ledger.aggregate import network_id
from ledger.application import Ledger

KEY = "history_latency_ratio"
TARGET = Target("<=", 1.5)
LIVE_CONTAINERS = 50
SHORT_HISTORY = 1_000
NETWORK = "history"


@dataclass(frozen=True)
class StoredHistory:
    """A database holding one network with a long history, and what it took to write it."""

    url: str
    network: str
    events: int
    build_seconds: float


def long_history(ctx: RunContext) -> StoredHistory:
    """Return the run's long-history store, writing it on first use."""
    cached = ctx.shared.get("long_history")
    if isinstance(cached, StoredHistory):
        return cached
    events = ctx.size(1_000_000, 20_000)
    stored = write_history(ctx, "long", events)
    ctx.shared["long_history"] = stored
    return stored


def write_history(ctx: RunContext, label: str, events: int) -> StoredHistory:
    """Create a database holding network ``history`` with about ``events`` events."""
    url = new_database(ctx, f"history_{label}")
    start = time.perf_counter()
    with ledger_on(url) as ledger:
        network = build_history(ledger, url, HistoryShape(NETWORK, "10.30.0.0/16", LIVE_CONTAINERS, events))
    return StoredHistory(url, NETWORK, network.version, time.perf_counter() - start)


def run(ctx: RunContext) -> Result:
    """Measure the median create latency on the short and the long history."""
    samples = ctx.size(40, 12)
    short = write_history(ctx, "short", SHORT_HISTORY)
    long = long_history(ctx)
    short_latency, short_snapshot = create_latency(short, samples)
    long_latency, long_snapshot = create_latency(long, samples)
    return Result(
        key=KEY,
        what=f"median create latency with {long.events:,} events of history over {short.events:,}",
        target=TARGET,
        ratio=long_latency / short_latency,
        values={
            "short_history_latency": Measured(short_latency * 1000, "ms"),
            "long_history_latency": Measured(long_latency * 1000, "ms"),
            "short_history_events": Measured(short.events, "events"),
            "long_history_events": Measured(long.events, "events"),
            "short_snapshot_size": Measured(short_snapshot, "bytes"),
            "long_snapshot_size": Measured(long_snapshot, "bytes"),
            "long_history_write": Measured(long.events / long.build_seconds, "events/s (bulk)"),
        },
        note=f"{LIVE_CONTAINERS} live containers in both; median of {samples} creates, each followed by an untimed destroy",
    )


def create_latency(stored: StoredHistory, samples: int, **settings: str) -> tuple[float, int]:
    """Return the median latency of a create from the pool, and the size of the latest snapshot."""
    latencies: list[float] = []
    with ledger_on(stored.url, **settings) as ledger:
        for index in range(samples + 2):
            container_id = f"probe-{uuid.uuid4().hex[:8]}"
            latency = timed(lambda: ledger.create_container(stored.network, command_context(), container_id))
            ledger.destroy_container(stored.network, container_id, command_context())
            # The first two commands open connections and warm caches.
            if index >= 2:
                latencies.append(latency)
        snapshot_size = latest_snapshot_size(ledger, stored.network)
    return statistics.median(latencies), snapshot_size


def latest_snapshot_size(ledger: Ledger, name: str) -> int:
    """Return the size in bytes of the network's latest stored snapshot (0 when there is none)."""
    assert ledger.snapshots is not None
    rows = ledger.snapshots.recorder.select_events(network_id(name), desc=True, limit=1)
    return len(rows[0].state) if rows else 0
