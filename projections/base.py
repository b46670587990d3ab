"""The base of the three read models: batches of events applied in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from functools import singledispatchmethod
from typing import Any, ClassVar

from eventsourcing.persistence import Tracking
from eventsourcing.projection import Projection

from projections.store import Session, ViewSchema, ViewStore

Item = tuple[Any, Tracking]


class ReadModel(Projection[ViewStore]):
    """A projection of the ledger's events into tables of its own.

    Each subclass declares its own ``apply`` as a ``singledispatchmethod``
    with a handler per event type it uses; other events only move the
    tracking position.
    """

    schema: ClassVar[ViewSchema]

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:  # type: ignore[override]
        """Apply one event and record its position, in one transaction."""
        self.process_batch([(domain_event, tracking)], expected=None)

    def process_batch(self, items: Sequence[Item], expected: int | None) -> None:
        """Apply events in order and record the last one's position, in one transaction.

        ``expected`` is the position the read model must be at when the
        transaction starts (see ``ViewStore.write``).
        """

        def steps(session: Session) -> None:
            for domain_event, tracking in items:
                self.apply(domain_event, tracking, session)

        self.view.write(items[-1][1].notification_id, expected, steps)

    @singledispatchmethod
    def apply(self, domain_event: Any, tracking: Tracking, session: Session) -> None:
        """Change the view for one event; events without a handler change nothing."""
