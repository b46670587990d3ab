"""The parts of the read models (``projections``) that the replay and audit benchmarks use.

Rebuilding and catching up take a time budget, because a read model that applies a few hundred events a
second would need most of an hour for a long history.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional

from ledger.application import Ledger

# After this many seconds the rate is known well enough to tell whether the
# rest fits in the budget.
PREDICT_AFTER = 3.0


@dataclass(frozen=True)
class CatchUp:
    """How far a budgeted rebuild or catch-up got: the position reached, the head, and the seconds taken."""

    position: int
    head: int
    seconds: float

    @property
    def complete(self) -> bool:
        return self.position >= self.head

    @property
    def rate(self) -> float:
        return self.position / self.seconds if self.seconds > 0 else 0.0


class BudgetSpent(Exception):
    """Raised from the progress callback to stop a rebuild that cannot finish in its budget."""


def open_read_models(ledger: Ledger) -> Any:
    """Return the ledger's read models, creating their tables if needed."""
    from projections.runner import ReadModels

    return ReadModels(ledger)


def rebuild_within(models: Any, budget: float, stop_early: bool = False) -> CatchUp:
    """Drop every read model and replay the log into them for at most ``budget`` seconds.

    With ``stop_early``, stop as soon as the rate shows the rest would not fit.
    Each page of events is its own transaction, so stopping leaves the read
    models consistent at the last page applied.
    """
    from projections.runner import NAMES

    start = time.perf_counter()
    reached = {"position": 0, "head": models.head()}

    def progress(position: int, head: int) -> None:
        reached["position"], reached["head"] = position, head
        elapsed = time.perf_counter() - start
        predicted = elapsed * head / max(position, 1)
        if elapsed > budget or (stop_early and elapsed > PREDICT_AFTER and predicted > budget):
            raise BudgetSpent

    try:
        models.rebuild(list(NAMES), progress)
    except BudgetSpent:
        pass
    return CatchUp(reached["position"], reached["head"], time.perf_counter() - start)


def who_held(models: Any, network: str, address: Any, at: datetime) -> list[Optional[str]]:
    """Run the ``audit ip ADDRESS --network NETWORK --at AT`` query; return the holders' container ids.

    The query catches the read models up first, as the command does.
    """
    from projections.queries import address_tenancies
    from projections.values import time_text

    return [tenancy.container_id for tenancy in address_tenancies(models, address, network, time_text(at))]
