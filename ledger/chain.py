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
from typing import Any
from uuid import UUID

# Fields every stored event has that are either framing or the digest itself;
# the digest covers the framing explicitly and the payload as a dict.
FRAMING_FIELDS = frozenset(
    {"originator_id", "originator_version", "timestamp", "digest", "originator_topic"}
)


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
        "network": str(network_id),
        "version": version,
        "timestamp": timestamp.isoformat(),
        "payload": payload,
    }
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def payload_of(fields: dict[str, Any]) -> dict[str, Any]:
    """Return the fields of an event that its digest covers as payload."""
    return {key: value for key, value in fields.items() if key not in FRAMING_FIELDS}
