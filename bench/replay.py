"""replay_ratio: events per second of a rebuild over reading and decoding the same events.

The rebuild is the read models' (``projections``): every read model
replaced by the whole log replayed into it. The baseline reads the same log
a page at a time and decodes every event without applying it.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from bench import projection_api
from bench.build import HistoryShape, build_history
from bench.common import Measured, Result, RunContext, Target, ledger_on, new_database
from ledger.application import Ledger
from ledger.history import iter_notifications

KEY = "replay_ratio"
TARGET = Target(">=", 0.3)
NETWORK = "replay"


def run(ctx: RunContext) -> Result:
    """Write a history, then time rebuilding from it and decoding the same events."""
    events = ctx.size(100_000, 5_000)
    repeats = ctx.size(3, 2)
    url = new_database(ctx, "replay")
    with ledger_on(url) as ledger:
        build_history(ledger, url, HistoryShape(NETWORK, "10.50.0.0/16", 50, events))
        rates, decode_rates, replayed, note = _alternate_rounds(ledger, repeats, ctx.size(60, 20))
    replay_rate = statistics.median(rates)
    decode_rate = statistics.median(decode_rates)
    return Result(
        key=KEY,
        what=f"read-model rebuild events/s over reading and decoding the same {replayed:,} events",
        target=TARGET,
        ratio=replay_rate / decode_rate,
        values={
            "rebuild": Measured(replay_rate, "events/s"),
            "read_and_decode": Measured(decode_rate, "events/s"),
            "events": Measured(replayed, "events"),
        },
        note=f"{note}; median of {repeats} runs",
    )


def _alternate_rounds(ledger: Ledger, repeats: int, budget: float) -> tuple[list[float], list[float], int, str]:
    """Rebuild the read models and decode the same events, in turn, ``repeats`` times.

    Each rebuild runs for at most ``budget`` seconds, and each decode reads
    as many events as the rebuild before it applied. Alternating keeps a slow
    spell of this shared machine from falling on one side only. Return the
    rebuild rates, the decode rates, the fewest events a rebuild applied, and a note.
    """
    models = projection_api.open_read_models(ledger)
    runs = []
    decode_rates = []
    for _ in range(repeats):
        run = projection_api.rebuild_within(models, budget)
        runs.append(run)
        decode_rates.append(run.position / _seconds(lambda: decode_all(ledger, run.position)))
    replayed = min(run.position for run in runs)
    note = "all read models replaced by a rebuild from the whole log, alternating with decoding"
    if not all(run.complete for run in runs):
        note += f"; each rebuild stopped after {budget:g} s, at {replayed:,} of {runs[0].head:,} events or more"
    return [run.rate for run in runs], decode_rates, replayed, note


def _seconds(action: Any) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def decode_all(ledger: Ledger, stop: int) -> int:
    """Read the stored events up to position ``stop`` a page at a time and decode them; return how many."""
    count = 0
    for notification in iter_notifications(ledger, stop=stop):
        ledger.mapper.to_domain_event(notification)
        count += 1
    return count
