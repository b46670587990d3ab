"""The hash chain that makes every stored event tamper-evident.

Each event carries ``digest = sha256(previous digest + canonical JSON of the
event)``. The first event of a stream starts from the empty string. Editing,
deleting, inserting or reordering a stored event breaks the chain from that
position on, and ``verify`` reports the first position where it breaks.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from functools import lru_cache
from typing import Any
from uuid import UUID

import orjson

# Fields every stored event has that are either framing or the digest itself;
# the digest covers the framing explicitly and the payload as a dict.
FRAMING_FIELDS = frozenset(
    {"originator_id", "originator_version", "timestamp", "digest", "originator_topic"}
)

# Dates and dataclasses go to ``default`` (str), as json.dumps sends them there.
FAST_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def event_digest(
    previous: str,
    event_type: str,
    network_id: UUID,
    version: int,
    timestamp: datetime,
    payload: dict[str, Any],
) -> str:
    """Return the hex digest that links one event to the one before it."""
    document = {
        "previous": previous,
        "type": event_type,
        "network": _uuid_text(network_id),
        "version": version,
        "timestamp": iso_text(timestamp),
        "payload": payload,
    }
    return hashlib.sha256(canonical_json(document)).hexdigest()


def canonical_json(document: dict[str, Any]) -> bytes:
    """Return the document as JSON with sorted keys, no spaces, and every non-ASCII character escaped.

    The digests of stored events were computed over exactly these bytes, as
    ``json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)``
    writes them, so the output must never change. orjson writes the same bytes
    ten times faster for what events hold (text, integers, booleans, None,
    lists and dicts), but it writes non-ASCII characters and DEL (U+007F)
    unescaped, and it rejects integers beyond 64 bits. Those documents take
    the slow path.
    NOTE: the two libraries also differ on floats and enums, which no event holds.
    """
    try:
        fast: bytes | None = orjson.dumps(document, option=FAST_OPTIONS, default=str)
    except orjson.JSONEncodeError:
        fast = None
    if fast is not None and fast.isascii() and b"\x7f" not in fast:
        return fast
    return json.dumps(document, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")


def iso_text(value: datetime) -> str:
    """Return ``value.isoformat()``.

    An event's digest and its stored state both write its timestamp, so
    the text of the last few is kept. The key
    includes the time zone because datetimes of one instant in different
    zones compare equal but print differently.
    """
    return _iso_text(value, value.tzinfo)


@lru_cache(maxsize=16)
def _iso_text(value: datetime, zone: Any) -> str:
    return value.isoformat()


@lru_cache(maxsize=1024)
def _uuid_text(value: UUID) -> str:
    return str(value)


def payload_of(fields: dict[str, Any]) -> dict[str, Any]:
    """Return the fields of an event that its digest covers as payload."""
    return {key: value for key, value in fields.items() if key not in FRAMING_FIELDS}
