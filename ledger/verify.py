"""Check stored history: replay every stream, re-check the model, and follow the hash chain.

``verify`` reads the events of every network once, in position order, and
for each event checks, in this order:

1. its version is the one after the previous event of its stream, so no
   event was deleted, inserted or moved (positions and versions must grow
   together);
2. it decodes, and a stream begins with the ``NetworkCreated`` of its own name;
3. its digest equals the one recomputed from its stored fields and the
   previous event's digest, so no stored field was edited;
4. it fits the command that wrote it (a ``ContainerCreated`` follows the
   allocations for that container, an ``AddressesReleased`` follows its
   ``ContainerDestroyed``), so no part of a command was dropped;
5. its model precondition held (an allocated address was free, a destroyed
   container existed), and after applying it every invariant of the model
   holds. ``InvariantWatch`` re-checks what the event changed, in time that
   does not grow with the number of containers, and ``first_violation``
   checks the whole state at the end of the stream;
6. the latest stored snapshot, at its version, equals the replayed state.

At the end of each stream, a command left incomplete or a snapshot past the
last event shows that the newest events were deleted. When the history has
no problem, the read models are then compared with a fresh replay, and a
report passes only when that comparison ran and found no difference.

The chain uses no secret key, so whoever can write the database can
recompute every digest after an edit. ``VerifyReport.heads`` lists each
stream's last digest: recorded somewhere the database administrator cannot
write, it lets a later run prove that nothing up to that point changed.
Deleting whole commands from the end of a stream is also invisible without
such a record, unless a snapshot was taken after them.
"""

from __future__ import annotations

import ipaddress
import logging
from functools import lru_cache
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional
from uuid import UUID

from eventsourcing.persistence import Notification

from ledger import history
from ledger.aggregate import Network, network_id
from ledger.chain import event_digest
from ledger.invariants import InvariantWatch, first_violation
from ledger.model import Net

if TYPE_CHECKING:
    from ledger.application import Ledger

log = logging.getLogger(__name__)

# Outcomes of comparing the read models with a replay. Every other outcome
# means the comparison did not run.
PROJECTIONS_MATCH = "match a replay"
PROJECTIONS_DIFFER = "differ from a replay"


@dataclass(frozen=True)
class Problem:
    """The first thing wrong in one network's history, at a position when it has one.

    ``network`` is empty for a problem of the read models, which span every network.
    """

    network: str
    position: Optional[int]
    version: Optional[int]
    message: str

    def __str__(self) -> str:
        if not self.network:
            return self.message
        where = f"network {self.network}"
        if self.position is not None:
            where += f", position {self.position}"
        if self.version is not None:
            where += f" (version {self.version})"
        return f"{where}: {self.message}"


@dataclass
class StreamCheck:
    """How far the check of one stream got: its replayed network, version, position and digest."""

    identity: UUID
    name: str
    network: Optional[Network] = None
    version: int = 0
    position: int = 0
    digest: str = ""
    pending: Optional[tuple[str, Optional[str], str]] = None
    snapshots: dict[int, Any] = field(default_factory=dict)
    watch: InvariantWatch = field(default_factory=InvariantWatch)
    problem: Optional[Problem] = None

    def fail(self, message: str, position: Optional[int], version: Optional[int]) -> None:
        self.problem = Problem(self.name, position, version, message)


@dataclass
class VerifyReport:
    """The outcome of ``verify``: the streams checked and the first problem of each, sorted by position.

    ``projections`` is the outcome of comparing the read models with a replay, or why the comparison did not run.
    """

    events: int
    streams: list[StreamCheck]
    problems: list[Problem]
    projections: str

    @property
    def projections_compared(self) -> bool:
        """Whether the read models were compared with a replay."""
        return self.projections in (PROJECTIONS_MATCH, PROJECTIONS_DIFFER)

    @property
    def passed(self) -> bool:
        """Whether the history has no problem and the read models were compared and match a replay."""
        return not self.problems and self.projections == PROJECTIONS_MATCH

    @property
    def heads(self) -> dict[str, tuple[int, str]]:
        """Each network's last version and digest, to record outside the database."""
        return {stream.name: (stream.version, stream.digest) for stream in self.streams}


def verify(
    ledger: Ledger, name: Optional[str] = None, progress: Optional[Callable[[int], None]] = None
) -> VerifyReport:
    """Check the history of every network, or of the one named; ``progress`` gets each position read."""
    only = history.require_network(ledger, name) if name is not None else None
    streams: dict[UUID, StreamCheck] = {}
    events, complete, unreadable = _scan(ledger, only, streams, progress)
    if complete:
        for stream in streams.values():
            _check_stream_end(stream)
    problems = [stream.problem for stream in streams.values() if stream.problem is not None]
    if unreadable is not None:
        problems.append(unreadable)
    projections = _compare_projections(ledger, name, problems)
    problems.sort(key=lambda problem: (problem.position is None, problem.position or 0))
    return VerifyReport(events, list(streams.values()), problems, projections)


def _scan(
    ledger: Ledger,
    only: Optional[UUID],
    streams: dict[UUID, StreamCheck],
    progress: Optional[Callable[[int], None]],
) -> tuple[int, bool, Optional[Problem]]:
    """Check every stored event once; return the count, whether the scan finished, and a row it could not read."""
    events = 0
    try:
        for notification in history.iter_notifications(ledger):
            if progress is not None:
                progress(notification.id)
            if only is not None and notification.originator_id != only:
                continue
            stream = streams.get(notification.originator_id)
            if stream is None:
                stream = streams[notification.originator_id] = StreamCheck(
                    notification.originator_id, str(notification.originator_id)
                )
            if stream.problem is None:
                _check_event(ledger, stream, notification)
            events += 1
    except history.UnreadableEvent as error:
        return events, False, Problem("unknown", error.position, None, error.detail)
    return events, True, None


def _check_event(ledger: Ledger, stream: StreamCheck, notification: Notification) -> None:
    """Check one stored event of a stream and apply it, or record the stream's problem."""
    version = notification.originator_version
    try:
        problem = _sequence_problem(stream, version) or _check_and_apply(ledger, stream, notification)
    except history.UnreadableEvent as error:
        problem = error.detail
    if problem is not None:
        stream.fail(problem, notification.id, version)


def _check_and_apply(ledger: Ledger, stream: StreamCheck, notification: Notification) -> Optional[str]:
    """Decode, check and apply the next event of a stream; return the first problem, or None once applied."""
    item = history.decode_event(ledger, notification)
    problem = _identity_problem(stream, item)
    if problem is None and item.type == "NetworkCreated":
        stream.name = str(item.fields["name"])
        stream.snapshots = _load_snapshots(ledger, stream.identity)
    problem = problem or _digest_problem(stream, item) or _command_shape_problem(stream.pending, item)
    problem = problem or _transition_problem(stream.network.net if stream.network else None, item)
    if problem is not None:
        return problem
    stream.network = history.apply_event(stream.network, item)
    problem = _invariant_problem(stream.watch, stream.network.net, item) or _snapshot_problem(stream, item.version)
    if problem is None:
        stream.version, stream.position, stream.digest = item.version, item.position, item.digest
        stream.pending = _next_in_command(item)
    return problem


def _sequence_problem(stream: StreamCheck, version: Any) -> Optional[str]:
    expected = stream.version + 1
    if version == expected:
        return None
    if not isinstance(version, int):
        return f"version {version!r} is not a whole number"
    if version <= stream.version:
        return (
            f"version {version} comes after version {stream.version} in position order: "
            "events were reordered, or a stored event was copied"
        )
    missing = str(expected) if version == expected + 1 else f"{expected} to {version - 1}"
    return f"version {missing} is missing before this event: stored events were deleted or moved"


def _identity_problem(stream: StreamCheck, item: history.HistoryEvent) -> Optional[str]:
    """Check that a stream begins with the NetworkCreated of the network it belongs to, and only there."""
    if item.version == 1 and item.type != "NetworkCreated":
        return f"the stream begins with {item.type}, not NetworkCreated"
    if item.version > 1 and item.type == "NetworkCreated":
        return "NetworkCreated appears again inside the stream"
    name = item.fields.get("name")
    if item.type == "NetworkCreated" and network_id(str(name)) != stream.identity:
        return f"NetworkCreated names network {name!r}, whose stream id is not {stream.identity}"
    return None


def _digest_problem(stream: StreamCheck, item: history.HistoryEvent) -> Optional[str]:
    computed = event_digest(
        stream.digest, item.type, item.network_id, item.version, item.event.timestamp, item.fields
    )
    if computed == item.digest:
        return None
    return (
        f"stored digest {item.digest[:12]}... of this {item.type} does not match {computed[:12]}... "
        "computed from its stored fields and the previous digest: the event was edited or replaced"
    )


def _next_in_command(item: history.HistoryEvent) -> Optional[tuple[str, Optional[str], str]]:
    """Return the event type, container and request id that must follow ``item`` in its command."""
    following = {
        "IpAllocated": "GatewayAllocated",
        "GatewayAllocated": "ContainerCreated",
        "ContainerDestroyed": "AddressesReleased",
    }
    if item.container_id is None or item.type not in following:
        return None
    return following[item.type], item.container_id, item.request_id


def _command_shape_problem(
    pending: Optional[tuple[str, Optional[str], str]], item: history.HistoryEvent
) -> Optional[str]:
    """Check that the events of one command are all there, in the order the aggregate emits them."""
    if pending is not None and (item.type, item.container_id, item.request_id) != pending:
        expected, container_id, request_id = pending
        return (
            f"request {request_id} needs {expected} for container {container_id} next, but this is "
            f"{item.type} for container {item.container_id} of request {item.request_id}: "
            "an event of that command is missing or was changed"
        )
    closes_command = item.type == "ContainerCreated" or (
        item.type == "AddressesReleased" and item.container_id is not None
    )
    if pending is None and closes_command:
        return f"{item.type} for container {item.container_id} does not follow the events that begin its command"
    return None


def _transition_problem(net: Optional[Net], item: history.HistoryEvent) -> Optional[str]:
    """Check the precondition in the model of the change the event records."""
    if net is None:
        return None
    fields = item.fields
    if item.type in ("IpAllocated", "GatewayAllocated"):
        text = fields.get("ip" if item.type == "IpAllocated" else "gw")
        value = _address_value(text)
        if value is None or not net.pool.is_free(value):
            return f"{item.type} takes {text!r}, which is not a free address of the pool"
    elif item.type == "ContainerCreated" and fields.get("container_id") in net.containers:
        return f"container {fields.get('container_id')} is created while it already exists"
    elif item.type == "ContainerDestroyed" and fields.get("container_id") not in net.containers:
        return f"container {fields.get('container_id')} is destroyed while it does not exist"
    elif item.type == "AddressesReleased":
        for text in fields.get("addresses") or []:
            value = _address_value(text)
            if value is None or not net.pool.is_allocated(value):
                return f"AddressesReleased frees {text!r}, which is not an allocated address"
    return None


def _invariant_problem(watch: InvariantWatch, net: Net, item: history.HistoryEvent) -> Optional[str]:
    """Check the invariants after an event has been applied, through what the event changed.

    ``_transition_problem`` has already rejected an event whose addresses do not parse.
    """
    fields = item.fields
    if item.type in ("IpAllocated", "GatewayAllocated"):
        value = _address_value(fields["ip" if item.type == "IpAllocated" else "gw"])
        assert value is not None
        return watch.allocated(net, value)
    if item.type == "ContainerCreated":
        return watch.created(net, str(fields.get("container_id")))
    if item.type == "ContainerDestroyed":
        return watch.destroyed(net, str(fields.get("container_id")))
    if item.type == "AddressesReleased":
        values = [_address_value(text) for text in fields.get("addresses") or []]
        assert None not in values
        return watch.released(net, values)  # type: ignore[arg-type]
    return first_violation(net)


# Each allocated address is parsed by the precondition check and again by the invariant check.
@lru_cache(maxsize=4096)
def _address_value(text: Any) -> Optional[int]:
    try:
        return int(ipaddress.ip_address(text))
    except ValueError:
        return None


def _load_snapshots(ledger: Ledger, identity: UUID) -> dict[int, Any]:
    """Return the latest stored snapshot's canonical state by its version, or why it cannot be read.

    Commands load only the latest snapshot, and decoding every older one
    would cost as much as the replay itself.
    """
    if ledger.snapshots is None:
        return {}
    snapshots: dict[int, Any] = {}
    for stored in ledger.snapshots.recorder.select_events(identity, desc=True, limit=1):
        try:
            snapshot = ledger.snapshots.mapper.to_domain_event(stored)
            if getattr(snapshot, "topic", None) != history.NETWORK_TOPIC:
                raise ValueError(f"it names aggregate type {getattr(snapshot, 'topic', None)!r}")
            snapshots[stored.originator_version] = history.canonical_state(snapshot.mutate(None).net)
        # Stored snapshots are untrusted; a failure to read one is reported at its version.
        except Exception as error:  # noqa: BLE001
            snapshots[stored.originator_version] = f"the stored snapshot cannot be decoded: {error}"
    return snapshots


def _snapshot_problem(stream: StreamCheck, version: int) -> Optional[str]:
    if version not in stream.snapshots:
        return None
    stored = stream.snapshots.pop(version)
    if isinstance(stored, str):
        return stored
    replayed = history.canonical_state(stream.network.net)
    differing = sorted(key for key in replayed if replayed[key] != stored.get(key))
    if not differing:
        return None
    return (
        f"the stored snapshot at this version differs from the replayed state in {', '.join(differing)}; "
        "commands load the snapshot, so they would act on a forged state"
    )


def _check_stream_end(stream: StreamCheck) -> None:
    """Report a stream whose newest events show signs of deletion."""
    if stream.problem is not None:
        return
    if stream.pending is not None:
        expected, container_id, request_id = stream.pending
        stream.fail(
            f"the stream ends inside a command: {expected} for container {container_id} "
            f"(request {request_id}) is missing, so its newest events were deleted",
            stream.position,
            stream.version,
        )
    elif stream.snapshots:
        stream.fail(
            f"a snapshot exists at version {max(stream.snapshots)} but the stream ends at version "
            f"{stream.version}, so its newest events were deleted",
            stream.position,
            stream.version,
        )
    elif stream.network is not None:
        problem = first_violation(stream.network.net)
        if problem is not None:
            stream.fail(problem, stream.position, stream.version)


def _compare_projections(ledger: Ledger, name: Optional[str], problems: list[Problem]) -> str:
    """Compare the read models with a fresh replay, when the history is intact and the projections module exists."""
    try:
        from projections import compare_with_replay
    except ImportError as error:
        log.warning("projections not compared: %s", error)
        return "not checked (module missing)"
    if problems:
        return "not checked (the history has problems)"
    try:
        difference = compare_with_replay(ledger, name)
    # The comparison catches up the read models over every network's events,
    # including rows this run did not check when it verified one network.
    except Exception as error:  # noqa: BLE001
        lines = str(error).strip().splitlines()
        summary = f"{type(error).__name__}: {lines[0] if lines else ''}"
        log.warning("projections not compared: %s", summary)
        return f"not checked (the comparison failed: {summary})"
    if difference is not None:
        problems.append(Problem("", None, None, f"read models differ from a replay: {difference}"))
        return PROJECTIONS_DIFFER
    return PROJECTIONS_MATCH
