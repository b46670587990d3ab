"""Rebuild a network as it was at a point in its history, and compare two such points.

A point is a position (a notification id, as ``netledger events`` prints
it) or a time. Positions order the events of every network together, so
replaying a network to a position applies its events stored at that
position or before.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Optional

from ledger.addresses import address_from_int
from ledger.aggregate import Network
from ledger.errors import InvalidInput
from ledger.history import HistoryEvent, apply_event, decode_event, iter_notifications, require_network
from ledger.intervals import IntervalSet
from ledger.model import ContainerNet, Net

if TYPE_CHECKING:
    from ledger.application import Ledger


@dataclass(frozen=True)
class Point:
    """A point in history: just after the event at ``position``, or at ``time`` (UTC)."""

    position: Optional[int] = None
    time: Optional[datetime] = None

    def __str__(self) -> str:
        if self.position is not None:
            return f"position {self.position}"
        return self.time.isoformat() if self.time is not None else "no point"

    def includes(self, event: HistoryEvent) -> bool:
        """Return whether the event had happened at this point."""
        if self.position is not None:
            return event.position <= self.position
        return self.time is not None and event.timestamp <= self.time


@dataclass(frozen=True)
class NetworkState:
    """A network as it was at a point; ``net`` is None when it did not exist yet."""

    name: str
    point: Point
    net: Optional[Net]
    version: int
    position: Optional[int]
    timestamp: Optional[datetime]


@dataclass(frozen=True)
class NetworkDiff:
    """Containers and allocated addresses gained and lost between two states of a network."""

    containers_gained: list[ContainerNet]
    containers_lost: list[ContainerNet]
    allocated: IntervalSet
    released: IntervalSet


def parse_time(text: str, option: str) -> datetime:
    """Parse an ISO 8601 time; one without an offset is UTC. Return it in UTC."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(
            f"invalid {option} time {text!r}: use ISO 8601, such as 2024-05-01T12:00:00Z "
            "(a time without an offset is UTC)"
        ) from None
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def parse_position(text: str, option: str) -> int:
    """Parse a position: a whole number of 1 or more."""
    if not text.strip().isdigit() or int(text) < 1:
        raise InvalidInput(f"invalid {option} position {text!r}: use a whole number of 1 or more")
    return int(text)


def parse_point(text: str, option: str) -> Point:
    """Parse a point given as a position (digits only) or as an ISO 8601 time."""
    if text.strip().isdigit():
        return Point(position=parse_position(text, option))
    return Point(time=parse_time(text, option))


def replay(ledger: Ledger, name: str, point: Point) -> NetworkState:
    """Rebuild the network from its stream as it was at ``point``.

    For a time, the replay stops at the first event recorded after it, so it
    rebuilds a prefix of the stream even if clocks of several hosts
    disagreed. Finding positions reads the events of every network up to the
    point, because the store looks up a stream's events by version only.
    """
    identity = require_network(ledger, name)
    network: Optional[Network] = None
    last: Optional[HistoryEvent] = None
    for notification in iter_notifications(ledger, stop=point.position):
        if notification.originator_id != identity:
            continue
        item = decode_event(ledger, notification)
        if not point.includes(item):
            break
        network = apply_event(network, item)
        last = item
    return NetworkState(
        name=name,
        point=point,
        net=network.net if network is not None else None,
        version=last.version if last else 0,
        position=last.position if last else None,
        timestamp=last.timestamp if last else None,
    )


def diff(before: NetworkState, after: NetworkState) -> NetworkDiff:
    """Return what changed from ``before`` to ``after``; a network not yet created counts as empty.

    A container destroyed and created again with other addresses is both lost and gained.
    """
    old = set(before.net.containers.values()) if before.net else set()
    new = set(after.net.containers.values()) if after.net else set()
    old_alloc = before.net.pool.alloc if before.net else IntervalSet()
    new_alloc = after.net.pool.alloc if after.net else IntervalSet()
    return NetworkDiff(
        containers_gained=sorted(new - old, key=_container_key),
        containers_lost=sorted(old - new, key=_container_key),
        allocated=new_alloc.subtract(old_alloc),
        released=old_alloc.subtract(new_alloc),
    )


def _container_key(container: ContainerNet) -> tuple[str, int]:
    return container.container_id, int(container.ip)


def format_ranges(ranges: IntervalSet, version: int) -> list[str]:
    """Return each range of addresses as 'first-last', or one address alone."""
    texts = []
    for first, last in ranges.ranges():
        start, end = address_from_int(first, version), address_from_int(last, version)
        texts.append(str(start) if first == last else f"{start}-{end}")
    return texts
