"""A bounded record of a network's recent requests, for idempotent retries.

A client that loses the reply to a command (a timeout, a dropped
connection, a killed process) retries it with the same request id. The
network records the command, arguments and result of its recent requests,
so the retry returns the original result and appends nothing, and a
request id reused for a different command is rejected.

The record is rebuilt from the events (each carries its request id and
timestamp) and stored in snapshots. It keeps at most the last
``RECENT_REQUESTS_LIMIT`` requests, and none older than
``RECENT_REQUESTS_WINDOW`` seconds before the newest, so that a network's
state follows what is allocated, not the length of its history. A retry
that arrives after its request has been evicted runs again as a new
command.

Every command loads its network from a snapshot, so the record is stored as
one string that JSON decodes without per-row work: one line per request,
``|``-terminated, fields separated by spaces and percent-encoded (request
id, command code, Unix time, arguments, result). A lookup is a substring
search, and only the line found is parsed.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

# A line takes about 90 bytes, so a full record adds about 0.9 MB to each
# snapshot. At a few hundred commands a second on one network the count
# bound covers the last half minute. At a few commands a second the time
# bound applies, and an hour covers a client that retries after a database
# outage or a restart.
# The characters quote(value, safe=":/") leaves as they are.
_UNCHANGED_BY_QUOTE = re.compile(r"[A-Za-z0-9_.~:/-]*")

RECENT_REQUESTS_LIMIT = 10_000
RECENT_REQUESTS_WINDOW = 3600

CREATE = "container create"
DESTROY = "container destroy"
ALLOCATE = "pool allocate"
RELEASE = "pool release"

CODES = {CREATE: "c", DESTROY: "d", ALLOCATE: "a", RELEASE: "r"}
LINE_END = "|"


@dataclass(frozen=True)
class RequestRecord:
    """One command as the network recorded it: its name, arguments and result.

    ``arguments`` and ``result`` hold strings, None and tuples only, so that
    records compare by value.

    - container create: arguments (id, requested ip or None, subnet or None),
      result (ip, gateway)
    - container destroy: arguments (id,), result (released addresses,)
    - pool allocate: arguments (count,), result (addresses,)
    - pool release: arguments (requested addresses, sorted and distinct),
      result (released addresses, ((ignored address, why), ...))
    """

    command: str
    arguments: tuple[Any, ...]
    result: tuple[Any, ...]

    def describe(self) -> str:
        """Return the command and its arguments as a user would type them."""
        if self.command == CREATE:
            container_id, ip, subnet = self.arguments
            text = f"{CREATE} --id {container_id}"
            text += f" --ip {ip}" if ip is not None else ""
            return text + (f" --subnet {subnet}" if subnet is not None else "")
        if self.command == ALLOCATE:
            return ALLOCATE + (" --two" if self.arguments[0] == 2 else "")
        if self.command == RELEASE:
            return f"{RELEASE} {' '.join(self.arguments[0])}"
        return f"{self.command} {self.arguments[0]}"


# Lookups of request ids that scan the snapshot's text before it is indexed.
INDEX_AFTER_SCANS = 2


class RecentRequests:
    """The requests of one network within the count and time bounds.

    ``text`` contains the lines loaded from a snapshot, oldest first, after
    a leading ``|``. Lines before ``start`` are evicted. Requests recorded since
    the snapshot are kept in ``added`` until the next snapshot joins them.
    """

    def __init__(
        self, text: str = "", limit: int = RECENT_REQUESTS_LIMIT, window: int = RECENT_REQUESTS_WINDOW
    ) -> None:
        self.limit = limit
        self.window = window
        self.text = LINE_END + text.lstrip(LINE_END)
        self.start = 0
        self.text_lines = self.text.count(LINE_END) - 1
        # Each request recorded since the snapshot: its Unix time, and its line or,
        # until a snapshot needs the line, the event or record it is made from.
        self.added: OrderedDict[str, tuple[int, Any]] = OrderedDict()
        # The time of the oldest live line of ``text``, once parsed.
        self._start_time: int | None = None
        # Where each request id's last line in ``text`` starts, built on the
        # first lookup after INDEX_AFTER_SCANS scans of the text.
        self._offsets: dict[str, int] | None = None
        self._scans = 0
        while len(self) > limit:
            self._evict_oldest()

    def __len__(self) -> int:
        return self.text_lines + len(self.added)

    def get(self, request_id: str) -> RequestRecord | None:
        """Return the record of ``request_id``, or None when it is unknown or evicted."""
        entry = self.added.get(request_id)
        if entry is not None:
            source = entry[1]
            return _record_of(source) if type(source) is str else _record_from(source)
        found = self._find(_field(request_id))
        if found < 0:
            return None
        return _record_of(self.text[found + 1 : self.text.index(LINE_END, found + 1)])

    def _find(self, field: str) -> int:
        """Return the offset of the separator before the live line of a request id in ``text``, or -1.

        A process that runs one command scans the text once, which costs less
        than indexing it. One that runs many commands indexes the text once.
        """
        if self._offsets is None:
            self._scans += 1
            if self._scans <= INDEX_AFTER_SCANS:
                return self.text.rfind(LINE_END + field + " ", self.start)
            self._offsets = self._index()
        found = self._offsets.get(field, -1)
        return found if found >= self.start else -1

    def _index(self) -> dict[str, int]:
        offsets: dict[str, int] = {}
        text = self.text
        position = 0
        last = len(text) - 1
        while 0 <= position < last:
            offsets[text[position + 1 : text.index(" ", position + 1)]] = position
            position = text.find(LINE_END, position + 1)
        return offsets

    def add(self, request_id: str, record: RequestRecord, at: int) -> None:
        """Record a request made at Unix time ``at``, evicting those beyond the bounds."""
        self._add(request_id, record, at)

    def _add(self, request_id: str, source: Any, at: int) -> None:
        added = self.added
        added[request_id] = (at, source)
        added.move_to_end(request_id)
        while self.text_lines + len(added) > self.limit or self._oldest_time() < at - self.window:
            self._evict_oldest()

    def _oldest_time(self) -> int:
        if not self.text_lines:
            return next(iter(self.added.values()))[0]
        if self._start_time is None:
            line = self.text[self.start + 1 : self.text.index(LINE_END, self.start + 1)]
            self._start_time = int(line.split(" ", 3)[2])
        return self._start_time

    def _evict_oldest(self) -> None:
        if self.text_lines:
            # Moving the start is O(1); the evicted text is dropped at the next snapshot.
            self.start = self.text.index(LINE_END, self.start + 1)
            self.text_lines -= 1
            self._start_time = None
        else:
            self.added.popitem(last=False)

    def to_text(self) -> str:
        """Return every live line, oldest first, for a snapshot.

        The lines made here are kept, so that the next snapshot does not make them again.
        """
        added = self.added
        for request_id, (at, source) in list(added.items()):
            if type(source) is not str:
                added[request_id] = (at, _line_of(request_id, _record_from(source), at))
        tail = "".join(line + LINE_END for _, line in added.values())
        return self.text[self.start + 1 :] + tail

    def observe(self, event: Any) -> None:
        """Update the record from one event of a command, in stream order.

        A command's events are appended together, so the events of one
        request are adjacent in the stream. Network create is not recorded.
        """
        request_id = getattr(event, "request_id", None)
        if request_id is None:
            return
        kind = type(event).__name__
        at = int(event.timestamp.timestamp())
        if kind == "ContainerCreated" or kind == "AddressesReleased":
            self._add(request_id, event, at)
        elif kind in ("IpAllocated", "GatewayAllocated") and event.container_id is None:
            address = event.ip if kind == "IpAllocated" else event.gw
            earlier = self.get(request_id)
            before = earlier.result[0] if earlier is not None and earlier.command == ALLOCATE else ()
            addresses = (*before, address)
            self.add(request_id, RequestRecord(ALLOCATE, (len(addresses),), (addresses,)), at)


def _record_from(source: Any) -> RequestRecord:
    """Return the record of a request from its record or from the event that recorded it."""
    if type(source) is RequestRecord:
        return source
    return _created(source) if type(source).__name__ == "ContainerCreated" else _released(source)


def _created(event: Any) -> RequestRecord:
    pooled = event.pooled
    ip_requested = getattr(event, "ip_requested", False) or not pooled
    subnet = None if pooled else event.subnet
    arguments = (event.container_id, event.ip if ip_requested else None, subnet)
    return RequestRecord(CREATE, arguments, (event.ip, event.gw))


def _released(event: Any) -> RequestRecord:
    released = tuple(event.addresses)
    if event.container_id is not None:
        return RequestRecord(DESTROY, (event.container_id,), (released,))
    ignored = tuple(sorted(event.ignored.items()))
    return RequestRecord(RELEASE, release_arguments([*released, *event.ignored]), (released, ignored))


def release_arguments(addresses: list[str]) -> tuple[tuple[str, ...]]:
    """Return the arguments of a pool release: its distinct addresses, sorted."""
    return (tuple(sorted(set(addresses))),)


def _field(value: str | None) -> str:
    # Percent-encoding leaves no space, comma, '=', '|' or character that JSON
    # escapes, so those can separate fields, items and lines.
    if value is None:
        return ""
    if _UNCHANGED_BY_QUOTE.fullmatch(value):
        # Request ids, container ids and addresses usually are; skipping quote() saves a few microseconds each.
        return value
    return quote(value, safe=":/")


def _items(values: tuple[str, ...]) -> str:
    return ",".join(_field(value) for value in values)


def _line_of(request_id: str, record: RequestRecord, at: int) -> str:
    head = [_field(request_id), CODES[record.command], str(at)]
    if record.command == CREATE:
        fields = [*record.arguments, *record.result]
        return " ".join([*head, *(_field(value) for value in fields)])
    if record.command == RELEASE:
        released, ignored = record.result
        pairs = ",".join(f"{_field(address)}={_field(why)}" for address, why in ignored)
        return " ".join([*head, _items(record.arguments[0]), _items(released), pairs])
    if record.command == DESTROY:
        return " ".join([*head, _field(record.arguments[0]), _items(record.result[0])])
    return " ".join([*head, _items(record.result[0])])


def _record_of(line: str) -> RequestRecord:
    _, code, _, *fields = line.split(" ")
    if code == "c":
        container_id, requested_ip, subnet, ip, gw = (unquote(value) or None for value in fields)
        return RequestRecord(CREATE, (container_id, requested_ip, subnet), (ip, gw))
    if code == "r":
        requested, released, pairs = (_split(value) for value in fields)
        ignored = tuple(tuple(unquote(part) for part in pair.split("=")) for pair in pairs)
        return RequestRecord(RELEASE, (tuple(unquote(a) for a in requested),), (_unquoted(released), ignored))
    if code == "d":
        return RequestRecord(DESTROY, (unquote(fields[0]),), (_unquoted(_split(fields[1])),))
    addresses = _unquoted(_split(fields[0]))
    return RequestRecord(ALLOCATE, (len(addresses),), (addresses,))


def _split(items: str) -> list[str]:
    return items.split(",") if items else []


def _unquoted(values: list[str]) -> tuple[str, ...]:
    return tuple(unquote(value) for value in values)
