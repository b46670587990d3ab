"""Read the stored events of every network, oldest first, by position.

A position is an event's notification id: its place in the one sequence
that orders the events of every network, assigned when the event is stored.
Positions grow with each append but may skip numbers (PostgreSQL sequences
skip the ids of rolled-back inserts). A network's stream numbers its own
events by version, 1 to n, in the same order as their positions.

Stored events are untrusted input here. A row that cannot be decoded
raises ``UnreadableEvent`` naming its position. A topic that is not one of
the ledger's six event types is never resolved, because resolving a topic
imports the module it names.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Optional
from uuid import UUID

from eventsourcing.persistence import MapperDeserialisationError, Notification
from eventsourcing.utils import get_topic

from ledger import MAX_POSITION
from ledger import aggregate as events_module
from ledger.aggregate import Network, network_id
from ledger.chain import payload_of
from ledger.errors import InvalidInput, NetworkNotFound, StorageError
from ledger.model import Net
from ledger.transcoding import NetAsDict

if TYPE_CHECKING:
    from ledger.application import Ledger

EVENT_TYPES = (
    "NetworkCreated",
    "IpAllocated",
    "GatewayAllocated",
    "ContainerCreated",
    "ContainerDestroyed",
    "AddressesReleased",
)
EVENT_TOPICS = {get_topic(getattr(events_module, name)): name for name in EVENT_TYPES}
NETWORK_TOPIC = get_topic(Network)
NONE = type(None)
# The JSON types of each event's own fields, checked on decoding because stored rows are untrusted.
FIELD_TYPES: dict[str, dict[str, tuple[type, ...]]] = {
    "NetworkCreated": {
        "name": (str,), "ip_version": (int,), "policy": (str,), "pools": (list,), "excludes": (list,), "ranges": (list,),
    },
    "IpAllocated": {"ip": (str,), "container_id": (str, NONE)},
    "GatewayAllocated": {"gw": (str,), "container_id": (str, NONE)},
    "ContainerCreated": {"container_id": (str,), "ip": (str,), "subnet": (str,), "gw": (str,), "pooled": (bool,)},
    "ContainerDestroyed": {"container_id": (str,)},
    "AddressesReleased": {"addresses": (list,), "ignored": (dict,), "container_id": (str, NONE)},
}
CONTEXT_FIELDS = ("actor", "reason", "request_id")
PAGE_SIZE = 500


class UnreadableEvent(StorageError):
    """A stored event that cannot be decoded or applied, so history cannot be read past it.

    ``detail`` is the problem without the position, for reports that name the position already.
    """

    def __init__(self, position: int, where: str, detail: str) -> None:
        super().__init__(f"{where} {detail}; 'netledger verify' checks the whole history")
        self.position = position
        self.detail = detail


@dataclass(frozen=True)
class HistoryEvent:
    """One decoded stored event with its position; ``fields`` is what its digest covers."""

    position: int
    network_id: UUID
    version: int
    type: str
    timestamp: datetime
    digest: str
    fields: dict[str, Any]
    event: Any

    @property
    def actor(self) -> str:
        return str(self.fields["actor"])

    @property
    def reason(self) -> Optional[str]:
        return self.fields.get("reason")

    @property
    def request_id(self) -> str:
        return str(self.fields["request_id"])

    @property
    def payload(self) -> dict[str, Any]:
        """The event's own fields, without the actor, reason and request id."""
        return {key: value for key, value in self.fields.items() if key not in CONTEXT_FIELDS}

    @property
    def container_id(self) -> Optional[str]:
        return self.fields.get("container_id")


def parse_event_types(names: list[str]) -> tuple[str, ...]:
    """Check event type names against the six the ledger records."""
    for name in names:
        if name not in EVENT_TYPES:
            raise InvalidInput(f"invalid event type {name!r}: use one of {', '.join(EVENT_TYPES)}")
    return tuple(names)


def iter_notifications(
    ledger: Ledger, after: int = 0, stop: Optional[int] = None, topics: tuple[str, ...] = ()
) -> Iterator[Notification]:
    """Yield stored events after position ``after`` (up to ``stop``), oldest first, a page at a time."""
    start = after + 1
    while start <= MAX_POSITION:
        try:
            page = _select(ledger, start, PAGE_SIZE, stop, topics)
        except Exception as error:
            if not _row_error(error):
                raise
            start = yield from _rows_before_unparsable(ledger, start, stop, topics)
            continue
        yield from page
        if len(page) < PAGE_SIZE:
            return
        start = page[-1].id + 1


def _select(
    ledger: Ledger, start: int, limit: int, stop: Optional[int], topics: tuple[str, ...]
) -> list[Notification]:
    return list(ledger.recorder.select_notifications(start=start, limit=limit, stop=stop, topics=list(topics)))


def _row_error(error: Exception) -> bool:
    """Return whether a failed read of stored events was caused by a stored row, not by the database.

    The recorder parses every row's stream id while reading a page, and
    SQLite's driver decodes every text column as UTF-8. So one row whose id
    is not a UUID, or whose state is text that is not UTF-8, fails the whole
    page. Only SQLite can store such rows, because its columns take any type.
    """
    if isinstance(error, (ValueError, TypeError, AttributeError)):
        return True
    cause = error.__cause__ if error.__cause__ is not None else error
    return isinstance(cause, sqlite3.OperationalError) and str(cause).startswith("Could not decode to UTF-8")


def _rows_before_unparsable(
    ledger: Ledger, start: int, stop: Optional[int], topics: tuple[str, ...]
) -> Iterator[Notification]:
    """Yield a failed page's rows one at a time, then raise ``UnreadableEvent`` for the row that fails.

    Returns the position to go on from if every row of the page reads on its own (see ``_row_error``).
    """
    for _ in range(PAGE_SIZE):
        try:
            rows = _select(ledger, start, 1, stop, topics)
        except Exception as error:
            if not _row_error(error):
                raise
            where = f"the event after position {start - 1}"
            raise UnreadableEvent(start, where, f"cannot be read: {type(error).__name__}: {error}") from None
        if not rows:
            break
        yield rows[0]
        start = rows[0].id + 1
    return start


def decode_event(ledger: Ledger, notification: Notification) -> HistoryEvent:
    """Decode one stored event, or raise ``UnreadableEvent`` naming its position."""
    where = f"event at position {notification.id} (version {notification.originator_version})"
    event_type = EVENT_TOPICS.get(notification.topic)
    if event_type is None:
        raise UnreadableEvent(notification.id, where, f"has unknown type {notification.topic!r}")
    try:
        event = ledger.mapper.to_domain_event(notification)
        fields = vars(event)
        decoded = HistoryEvent(
            position=notification.id,
            network_id=UUID(str(notification.originator_id)),
            version=int(notification.originator_version),
            type=event_type,
            timestamp=_utc(fields["timestamp"]),
            digest=_text(fields["digest"], "digest"),
            fields=payload_of(fields),
            event=event,
        )
        _check_types(event_type, fields)
    # Stored bytes are untrusted, and any failure to read them is the finding to report.
    except Exception as error:  # noqa: BLE001
        # The mapper wraps the decoder's error in a message that repeats the stream id and version.
        cause = error.__cause__ if isinstance(error, MapperDeserialisationError) and error.__cause__ else error
        # A KeyError's text is only the key, so name it as a missing field.
        detail = f"field {cause.args[0]} is missing" if isinstance(cause, KeyError) and cause.args else str(cause)
        raise UnreadableEvent(notification.id, where, f"cannot be decoded: {detail}") from None
    topic = fields.get("originator_topic")
    if event_type == "NetworkCreated" and topic != NETWORK_TOPIC:
        raise UnreadableEvent(notification.id, where, f"names aggregate type {topic!r}")
    return decoded


def _utc(value: Any) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError(f"timestamp {value!r} is not a time with a UTC offset")
    return value.astimezone(timezone.utc)


def _check_types(event_type: str, fields: dict[str, Any]) -> None:
    expected = {**FIELD_TYPES[event_type], "actor": (str,), "reason": (str, NONE), "request_id": (str,)}
    for name, types in expected.items():
        if name not in fields:
            raise ValueError(f"field {name} is missing")
        if not isinstance(fields[name], types):
            raise ValueError(f"field {name} is {fields[name]!r}, of the wrong type")
    if event_type == "AddressesReleased" and not all(isinstance(text, str) for text in fields["addresses"]):
        raise ValueError(f"field addresses is {fields['addresses']!r}, not a list of texts")


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"field {name} is {value!r}, not text")
    return value


def apply_event(network: Optional[Network], item: HistoryEvent) -> Network:
    """Apply one event to the network it belongs to (None before ``NetworkCreated``)."""
    try:
        result = item.event.mutate(network)
    # Stored events are untrusted: a value the model cannot apply is reported, not raised.
    except Exception as error:  # noqa: BLE001
        where = f"event at position {item.position} ({item.type}, version {item.version})"
        raise UnreadableEvent(item.position, where, f"cannot be applied: {type(error).__name__}: {error}") from None
    assert isinstance(result, Network)
    return result


def canonical_state(net: Net) -> dict[str, Any]:
    """Return the network's state as stored in snapshots, with containers sorted by id."""
    state = NetAsDict().encode(net)
    state["containers"] = sorted(state["containers"])
    return state


@dataclass(frozen=True)
class EventFilter:
    """The conditions an event must meet to be returned by ``select_events``; None matches every event."""

    network_id: Optional[UUID] = None
    since: Optional[datetime] = None
    until: Optional[datetime] = None
    types: tuple[str, ...] = ()
    actor: Optional[str] = None
    container_id: Optional[str] = None

    def matches(self, item: HistoryEvent) -> bool:
        """Return whether the event passes every filter that is set."""
        if self.since is not None and item.timestamp < self.since:
            return False
        if self.until is not None and item.timestamp > self.until:
            return False
        if self.actor is not None and item.actor != self.actor:
            return False
        return self.container_id is None or item.container_id == self.container_id


def select_events(ledger: Ledger, selection: EventFilter, after: int = 0) -> Iterator[HistoryEvent]:
    """Yield the events after position ``after`` that pass ``selection``, oldest first.

    The store filters by type, and networks are filtered before decoding.
    Times, actors and containers are filtered after decoding, so a narrow
    filter still reads every later event.
    """
    parse_event_types(list(selection.types))
    topics = tuple(topic for topic, name in EVENT_TOPICS.items() if name in selection.types)
    for notification in iter_notifications(ledger, after=after, topics=topics):
        if selection.network_id is not None and notification.originator_id != selection.network_id:
            continue
        item = decode_event(ledger, notification)
        if selection.matches(item):
            yield item


def network_names(ledger: Ledger) -> dict[UUID, str]:
    """Return the name of every network, by its stream id."""
    topic = next(topic for topic, name in EVENT_TOPICS.items() if name == "NetworkCreated")
    names: dict[UUID, str] = {}
    for notification in iter_notifications(ledger, topics=(topic,)):
        item = decode_event(ledger, notification)
        names[item.network_id] = str(item.fields.get("name"))
    return names


def require_network(ledger: Ledger, name: str) -> UUID:
    """Return the network's stream id, or raise ``NetworkNotFound`` when it has no events."""
    identity = network_id(name)
    if not ledger.recorder.select_events(identity, limit=1):
        raise NetworkNotFound(f"network {name} not found; 'netledger network list' shows the networks")
    return identity
