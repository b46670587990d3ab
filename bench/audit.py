"""audit_speedup: "who held this address at time T" by full replay, over the same question to the read models.

The store is the long history of ``bench.history`` (1,000,000 events, or
20,000 in quick mode). T is the time of a container's creation halfway
through that history, so the replay reads and applies half the log, and
the address is that container's ip. The read models are brought up to date
before the query is timed, so the query time is that of a current read
model: a catch-up that finds nothing to do, and one indexed lookup. When
the read models cannot be rebuilt within the benchmark's budget, the query
is not timed and the ratio is null, with the rebuild rate in the note.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional

from bench import projection_api
from bench.common import Measured, Result, RunContext, Target, ledger_on
from bench.history import long_history
from ledger.application import Ledger
from ledger.history import decode_event
from ledger.replay import Point, replay

KEY = "audit_speedup"
TARGET = Target(">=", 1000)
WHAT = "full-replay time over audit-query time for who held an address at time T"


@dataclass(frozen=True)
class Question:
    """An address, a time, and the container that held the address then."""

    network_id: str
    address: str
    at: datetime
    holder: str
    position: int


def run(ctx: RunContext) -> Result:
    """Answer the question by replay and by the read models, and compare the times."""
    stored = long_history(ctx)
    replay_repeats = ctx.size(1, 2)
    query_repeats = ctx.size(20, 7)
    values: dict[str, Measured] = {"history_events": Measured(stored.events, "events")}
    with ledger_on(stored.url) as ledger:
        question = find_question(ledger, stored.events // 2)
        values["events_replayed"] = Measured(question.position, "events")
        replay_seconds = statistics.median(
            _timed_answer(lambda: replay_holder(ledger, stored.network, question), question)
            for _ in range(replay_repeats)
        )
        values["full_replay"] = Measured(replay_seconds, "s")
        result = Result(KEY, WHAT, TARGET, values=values)
        models = projection_api.open_read_models(ledger)
        budget = ctx.size(150, 10)
        setup = projection_api.rebuild_within(models, budget, stop_early=True)
        values["read_model_rebuild_rate"] = Measured(setup.rate, "events/s (untimed setup)")
        if not setup.complete:
            result.note = (
                f"audit query not measured: the read models rebuilt {setup.position:,} of {setup.head:,} events "
                f"in {setup.seconds:.0f} s ({setup.rate:,.0f} events/s), so the whole log would take about "
                f"{setup.head / max(setup.rate, 1):,.0f} s, past this benchmark's budget of {budget:g} s"
            )
            return result
        query_seconds = _query_seconds(models, stored.network, question, query_repeats)
    values["audit_query"] = Measured(query_seconds * 1000, "ms")
    result.ratio = replay_seconds / query_seconds
    result.note = (
        f"T is halfway through the history; replay median of {replay_repeats}, query median of {query_repeats} "
        "(each query catches the read models up first, as 'audit ip' does)"
    )
    return result


def find_question(ledger: Ledger, position: int) -> Question:
    """Return the first container creation at or after ``position`` as the question to ask."""
    for notification in ledger.recorder.select_notifications(start=position, limit=10):
        item = decode_event(ledger, notification)
        if item.type == "ContainerCreated":
            return Question(
                network_id=str(item.network_id),
                address=str(item.fields["ip"]),
                at=item.timestamp,
                holder=str(item.fields["container_id"]),
                position=item.position,
            )
    raise RuntimeError(f"no container was created in the ten events from position {position}")


def replay_holder(ledger: Ledger, network: str, question: Question) -> Optional[str]:
    """Replay the network up to the question's time and return who held the address then."""
    import ipaddress

    state = replay(ledger, network, Point(time=question.at))
    assert state.net is not None
    holder = state.net.holders.get(int(ipaddress.ip_address(question.address)))
    return None if holder is None else holder[0]


def _timed_answer(answer: Any, question: Question) -> float:
    start = time.perf_counter()
    holder = answer()
    elapsed = time.perf_counter() - start
    if holder != question.holder:
        raise RuntimeError(f"expected {question.holder} to hold {question.address} at {question.at}, got {holder}")
    return elapsed


def _query_seconds(models: Any, network: str, question: Question, repeats: int) -> float:
    """Return the median time of the ``audit ip`` query on read models that are up to date."""
    import ipaddress

    address = ipaddress.ip_address(question.address)

    def answer() -> Optional[str]:
        holders = projection_api.who_held(models, network, address, question.at)
        return holders[0] if len(holders) == 1 else repr(holders)

    times = [_timed_answer(answer, question) for _ in range(repeats + 1)]
    # The first query opens the read models' connections.
    return statistics.median(times[1:])
