"""The fast JSON paths write exactly the bytes of the library paths they replace.

Digests of stored events were computed over ``json.dumps`` output, and stored
states were written by the library's JSON transcoder. A byte of difference
would make ``verify`` report tampering, or store events that earlier versions
wrote differently.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from eventsourcing.persistence import (
    DatetimeAsISO,
    JSONTranscoder,
    Mapper,
    MapperDeserialisationError,
    StoredEvent,
    UUIDAsHex,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.addresses import parse_range
from ledger.aggregate import (
    AddressesReleased,
    CommandContext,
    ContainerCreated,
    ContainerDestroyed,
    GatewayAllocated,
    IpAllocated,
    Network,
    NetworkCreated,
)
from ledger.application import Ledger
from ledger.chain import canonical_json, iso_text
from ledger.transcoding import EventMapper, NetAsDict

# Text as events hold it: ids, addresses, reasons, any Unicode and control characters included.
texts = st.text(max_size=30)
optional_texts = st.none() | texts
json_scalars = st.none() | st.booleans() | st.integers() | texts
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=12,
)
timestamps = st.datetimes(timezones=st.just(timezone.utc))


def slow_canonical_json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")


@settings(max_examples=400)
@given(st.dictionaries(texts, json_values, max_size=8))
def test_canonical_json_matches_json_dumps(document: dict[str, Any]) -> None:
    assert canonical_json(document) == slow_canonical_json(document)


def test_canonical_json_beyond_64_bits() -> None:
    document = {"big": 2**70, "negative": -(2**64)}
    assert canonical_json(document) == slow_canonical_json(document)


def test_canonical_json_escapes_non_ascii() -> None:
    document = {"reason": "maintenance \u00e9t\u00e9 \U0001f600", "actor": "\u0000\u001f\u007f"}
    assert canonical_json(document) == slow_canonical_json(document)
    assert canonical_json(document).isascii()


def test_canonical_json_escapes_delete() -> None:
    # DEL is ASCII, and orjson writes it as it is; json.dumps escapes it.
    document = {"reason": "typo\u007f fixed", "actor": "ops"}
    assert canonical_json(document) == slow_canonical_json(document)
    assert b"\\u007f" in canonical_json(document)


def library_mapper() -> Mapper[Any]:
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DatetimeAsISO(), NetAsDict()):
        transcoder.register(transcoding)
    return Mapper(transcoder=transcoder)


def fast_mapper() -> EventMapper:
    library = library_mapper()
    return EventMapper(transcoder=library.transcoder)


def context_fields(draw: Any) -> dict[str, Any]:
    return {"actor": draw(texts), "reason": draw(optional_texts), "request_id": draw(texts), "digest": draw(texts)}


@st.composite
def ledger_events(draw: Any) -> Any:
    framing = {
        "originator_id": uuid.uuid4(),
        "originator_version": draw(st.integers(min_value=2, max_value=2**40)),
        "timestamp": draw(timestamps),
        **context_fields(draw),
    }
    kind = draw(st.sampled_from(["ip", "gw", "created", "destroyed", "released"]))
    if kind == "ip":
        return IpAllocated(ip=draw(texts), container_id=draw(optional_texts), **framing)
    if kind == "gw":
        return GatewayAllocated(gw=draw(texts), container_id=draw(optional_texts), **framing)
    if kind == "created":
        return ContainerCreated(
            container_id=draw(texts),
            ip=draw(texts),
            subnet=draw(texts),
            gw=draw(texts),
            pooled=draw(st.booleans()),
            ip_requested=draw(st.booleans()),
            **framing,
        )
    if kind == "destroyed":
        return ContainerDestroyed(container_id=draw(texts), **framing)
    return AddressesReleased(
        addresses=draw(st.lists(texts, max_size=3)),
        ignored=draw(st.dictionaries(texts, texts, max_size=3)),
        container_id=draw(optional_texts),
        **framing,
    )


@settings(max_examples=300)
@given(ledger_events())
def test_event_mapper_writes_library_bytes(event: Any) -> None:
    expected = library_mapper().to_stored_event(event)
    stored = fast_mapper().to_stored_event(event)
    assert stored.state == expected.state
    assert stored.topic == expected.topic
    assert stored.originator_id == expected.originator_id
    assert stored.originator_version == expected.originator_version


@settings(max_examples=100)
@given(ledger_events())
def test_event_mapper_round_trip(event: Any) -> None:
    mapper = fast_mapper()
    assert mapper.to_domain_event(mapper.to_stored_event(event)) == event


@settings(max_examples=300)
@given(ledger_events())
def test_event_mapper_reads_as_library(event: Any) -> None:
    stored = library_mapper().to_stored_event(event)
    expected = library_mapper().to_domain_event(stored)
    decoded = fast_mapper().to_domain_event(stored)
    assert type(decoded) is type(expected)
    assert vars(decoded) == vars(expected)


def test_ledger_event_read_without_library_path(monkeypatch: pytest.MonkeyPatch) -> None:
    event = ContainerCreated(
        originator_id=uuid.uuid4(), originator_version=3, timestamp=datetime(2026, 1, 2, tzinfo=timezone.utc),
        container_id="c", ip="10.0.0.2", subnet="10.0.0.2/32", gw="10.0.0.3", pooled=True, ip_requested=False,
        actor="a", reason='déploiement "_type_"', request_id="r", digest="d",
    )
    stored = library_mapper().to_stored_event(event)
    mapper = fast_mapper()

    def library_path(self: Any, stored_event: Any) -> Any:
        raise AssertionError("the library's path was taken")

    monkeypatch.setattr(Mapper, "to_domain_event", library_path)

    assert mapper.to_domain_event(stored) == event


def test_other_transcoded_value_takes_library_path() -> None:
    # A dict shaped like a transcoded value, which the library decodes to a datetime.
    event = AddressesReleased(
        originator_id=uuid.uuid4(), originator_version=3, timestamp=datetime(2026, 1, 2, tzinfo=timezone.utc),
        addresses=[], ignored={}, container_id=None, actor="a", reason=None, request_id="r", digest="d",
    )
    stored = library_mapper().to_stored_event(event)
    forged = stored.state.replace(b'"ignored":{}', b'"ignored":{"_type_":"datetime_iso","_data_":"2026-01-01T00:00:00+00:00"}')
    assert forged != stored.state
    forged_event = StoredEvent(stored.originator_id, stored.originator_version, stored.topic, forged)

    decoded = fast_mapper().to_domain_event(forged_event)

    assert decoded.ignored == datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert vars(decoded) == vars(library_mapper().to_domain_event(forged_event))


@pytest.mark.parametrize(
    "timestamp",
    [
        b'{"_type_":"datetime_iso","_data_":"2026-01-01T00:00:00+00:00","extra":1}',
        b'{"_type_":"uuid_hex","_data_":"0123456789abcdef0123456789abcdef"}',
    ],
)
def test_odd_timestamp_decodes_as_library(timestamp: bytes) -> None:
    event = ContainerDestroyed(
        originator_id=uuid.uuid4(), originator_version=3, timestamp=datetime(2026, 1, 2, tzinfo=timezone.utc),
        container_id="c", actor="a", reason=None, request_id="r", digest="d",
    )
    stored = library_mapper().to_stored_event(event)
    start = stored.state.index(b'"timestamp":') + len(b'"timestamp":')
    end = stored.state.index(b"}", start) + 1
    forged = StoredEvent(
        stored.originator_id, stored.originator_version, stored.topic, stored.state[:start] + timestamp + stored.state[end:]
    )

    assert vars(fast_mapper().to_domain_event(forged)) == vars(library_mapper().to_domain_event(forged))


def test_undecodable_state_raises_library_error() -> None:
    event = ContainerDestroyed(
        originator_id=uuid.uuid4(), originator_version=3, timestamp=datetime(2026, 1, 2, tzinfo=timezone.utc),
        container_id="c", actor="a", reason=None, request_id="r", digest="d",
    )
    stored = library_mapper().to_stored_event(event)
    broken = StoredEvent(stored.originator_id, stored.originator_version, stored.topic, stored.state[:-3])

    with pytest.raises(MapperDeserialisationError):
        fast_mapper().to_domain_event(broken)


@given(st.lists(texts, max_size=3), st.lists(texts, max_size=3), texts, timestamps)
def test_network_created_library_bytes(pools: list[str], excludes: list[str], actor: str, timestamp: datetime) -> None:
    event = NetworkCreated(
        originator_id=uuid.uuid4(),
        originator_version=1,
        timestamp=timestamp,
        originator_topic="ledger.aggregate:Network",
        name="net",
        ip_version=4,
        policy="lowest",
        pools=pools,
        excludes=excludes,
        ranges=[["10.0.0.1", "10.0.0.254"]],
        actor=actor,
        reason=None,
        request_id="r1",
        digest="d",
    )
    assert fast_mapper().to_stored_event(event).state == library_mapper().to_stored_event(event).state


def test_snapshot_takes_library_path() -> None:
    ledger = Ledger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    context = CommandContext(actor="encoding-test", request_id="r1")
    network = ledger.create_network("snap", [parse_range("10.9.0.0/24")], [], "lowest", context)
    snapshot = Network.Snapshot.take(network)

    stored = ledger.mapper.to_stored_event(snapshot)

    assert isinstance(ledger.mapper, EventMapper)
    assert stored.state == library_mapper().to_stored_event(snapshot).state
    restored = ledger.mapper.to_domain_event(stored)
    assert restored.mutate(None).net.name == "snap"


def test_iso_text_keeps_time_zones_apart() -> None:
    utc = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
    same_instant = utc.astimezone(timezone(timedelta(hours=2)))
    assert iso_text(utc) == "2026-01-01T12:00:00+00:00"
    assert iso_text(same_instant) == "2026-01-01T14:00:00+02:00"
