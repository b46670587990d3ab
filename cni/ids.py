"""Ledger ids for CNI attachments, and request ids for the events they cause.

The CNI specification keys an attachment by (network, CNI_CONTAINERID,
CNI_IFNAME). The ledger keys a container by an id of 1-128 characters of
A-Z, a-z, 0-9, '.', '_' and '-'. ``attachment_id`` maps the first onto the
second the same way on every call, so ADD, CHECK, DEL, GC and the
host-local import all find the same ledger container.
"""

from __future__ import annotations

import hashlib
import re
import uuid

from ledger.addresses import ID_PATTERN

MAX_ID_LENGTH = 128
NOT_ALLOWED = re.compile(r"[^A-Za-z0-9._-]")
# The hashed form keeps a readable prefix of the id and 160 bits of its
# SHA-256, so two attachments collide only if SHA-256 does.
READABLE_PREFIX_LENGTH = 80
DIGEST_LENGTH = 40
RANDOM_LENGTH = 16


def attachment_id(container_id: str, ifname: str) -> str:
    """Return the ledger container id of the attachment ``container_id`` on ``ifname``.

    ``<container id>-<ifname>`` is used as it is when it fits the ledger's
    charset and length. Otherwise the id is a sanitized prefix of it
    followed by a SHA-256 digest of the whole, so that no two attachments
    share an id.
    """
    joined = f"{container_id}-{ifname}"
    if ID_PATTERN.fullmatch(joined):
        return joined
    digest = hashlib.sha256(joined.encode("utf-8")).hexdigest()[:DIGEST_LENGTH]
    readable = NOT_ALLOWED.sub("_", joined)[:READABLE_PREFIX_LENGTH]
    return f"{readable}-{digest}"


def request_id(command: str, ledger_id: str) -> str:
    """Return a new request id for ``command`` (ADD, DEL, GC) on one attachment.

    The id names the command and the attachment, so the audit trail shows
    which CNI request wrote each event, and ends in a random part. The
    ledger treats a request id it has seen as a retry and returns the
    recorded result. But a runtime may ADD and DEL the same container id
    and interface again later (a restarted container), and that must run
    as a new command. Retries of one CNI request are recognised from the
    ledger's state instead: ADD finds the container with the same address,
    DEL finds no container.
    """
    prefix = f"cni-{command.lower()}-"
    suffix = "-" + uuid.uuid4().hex[:RANDOM_LENGTH]
    if len(prefix) + len(ledger_id) + len(suffix) <= MAX_ID_LENGTH:
        return prefix + ledger_id + suffix
    return prefix + hashlib.sha256(ledger_id.encode("utf-8")).hexdigest()[:DIGEST_LENGTH] + suffix
