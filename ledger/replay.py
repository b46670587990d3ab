"""Rebuild a network as it was at a point in its history, and compare two such points.

A point is a position (a notification id, as ``netledger events`` prints
it) or a time. Positions order the events of every network together, so
replaying a network to a position applies its events stored at that
position or before.

A command's events are committed together, and they share its request id.
A point between two events of one command therefore gives a state that no
reader ever saw committed. ``replay`` still rebuilds that state, because it
is what the events up to the point give, and reports the command the point
splits in ``NetworkState.split``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Optional

from ledger import MAX_POSITION
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


# The maximum number of events one command appends: a container create writes three.
MAX_COMMAND_EVENTS = 3


@dataclass(frozen=True)
class SplitCommand:
    """A command whose events a point divides: the first ``applied`` of its ``events`` are replayed."""

    request_id: str
    first_position: int
    last_position: int
    applied: int
    events: int


@dataclass(frozen=True)
class NetworkState:
    """A network as it was at a point; ``net`` is None when it did not exist yet.

    ``split`` names the command the point falls inside, or is None when the
    point lies between two commands.
    """

    name: str
    point: Point
    net: Optional[Net]
    version: int
    position: Optional[int]
    timestamp: Optional[datetime]
    split: Optional[SplitCommand] = None


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
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:
        raise InvalidInput(
            f"invalid {option} time {text!r}: in UTC it falls outside the years 1 to 9999"
        ) from None


def parse_position(text: str, option: str) -> int:
    """Parse a position: a whole number from 1 to MAX_POSITION."""
    if not text.strip().isdigit() or not 1 <= int(text) <= MAX_POSITION:
        raise InvalidInput(f"invalid {option} position {text!r}: use a whole number from 1 to {MAX_POSITION}")
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
    # Where the last replayed command's first event is, and how many of its events were replayed.
    command_start, command_applied = 0, 0
    for notification in iter_notifications(ledger, stop=point.position):
        if notification.originator_id != identity:
            continue
        item = decode_event(ledger, notification)
        if not point.includes(item):
            break
        network = apply_event(network, item)
        if last is None or item.request_id != last.request_id:
            command_start, command_applied = item.position, 0
        command_applied += 1
        last = item
    return NetworkState(
        name=name,
        point=point,
        net=network.net if network is not None else None,
        version=last.version if last else 0,
        position=last.position if last else None,
        timestamp=last.timestamp if last else None,
        split=_split_command(ledger, last, command_start, command_applied) if last else None,
    )


def _split_command(ledger: Ledger, last: HistoryEvent, command_start: int, applied: int) -> Optional[SplitCommand]:
    """Return the command whose events continue after ``last`` in its stream, or None when ``last`` ends one.

    NOTE: events are grouped by request id, so two adjacent commands that
    used the same request id (possible once the first has left the
    request-id record) count as one command here.
    """
    following = ledger.recorder.select_events(last.network_id, gt=last.version, limit=MAX_COMMAND_EVENTS)
    remaining = 0
    for stored in following:
        try:
            request_id = getattr(ledger.mapper.to_domain_event(stored), "request_id", None)
        # A stored row past the point does not change the state shown, so one that
        # cannot be decoded only ends the search. 'netledger verify' reports it.
        except Exception:  # noqa: BLE001
            break
        if request_id != last.request_id:
            break
        remaining += 1
    if remaining == 0:
        return None
    # The command's events were appended in one transaction, so its last event
    # follows ``last`` closely and this search reads few rows.
    last_version = last.version + remaining
    for notification in iter_notifications(ledger, after=last.position):
        if notification.originator_id == last.network_id and notification.originator_version == last_version:
            return SplitCommand(last.request_id, command_start, notification.id, applied, applied + remaining)
    return None


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
