"""How a network's state is stored in snapshots.

The library snapshots an aggregate's attributes as JSON. ``Net`` is stored
as the model's state only: the pool and allocated set as flat lists of
range bounds, the cursor, and one short row per container. A row stores the
ip and gateway as integer offsets from the pool's first address. Writing an
IPv6 address as text costs several times more than the rest of its row, and
an offset is shorter than either the text or the whole integer. The indexes are
rebuilt on load, so a snapshot's size follows the number of containers and
the fragmentation of the allocated set, never the size of the pool.
The record of recent requests is bounded and stored as one string
(``ledger.requests``).

Events are stored as the library's JSON transcoder writes them, but
``EventMapper`` writes and reads the ledger's own events with orjson.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Any

import orjson
from eventsourcing.persistence import Mapper, StoredEvent, Transcoding, find_id_convertor
from eventsourcing.utils import get_topic, resolve_topic

from ledger.addresses import address_from_int
from ledger.aggregate import LedgerEvent, NetworkCreated
from ledger.chain import iso_text
from ledger.intervals import IntervalSet
from ledger.model import ContainerNet, Net
from ledger.pool import NetworkPool
from ledger.requests import RecentRequests


class NetAsDict(Transcoding):
    """Encode ``Net`` compactly; decode it with its indexes rebuilt."""

    type = Net
    name = "netledger_net"

    def encode(self, obj: Net) -> dict[str, Any]:
        pool = obj.pool
        base = pool.pool.to_list()[0]
        rows = [
            [c.container_id, int(c.ip) - base, None if c.pooled else str(c.subnet), int(c.gw) - base]
            for c in obj.containers.values()
        ]
        return {
            "name": obj.name,
            "ip_version": pool.version,
            "policy": pool.policy,
            "pool": pool.pool.to_list(),
            "alloc": pool.alloc.to_list(),
            "cursor": pool.cursor,
            "base": base,
            "containers": rows,
            "digest": obj.last_digest,
            "requests": obj.requests.to_text(),
        }

    def decode(self, data: dict[str, Any]) -> Net:
        version = data["ip_version"]
        pool = NetworkPool(
            version,
            IntervalSet.from_list(data["pool"]),
            data["policy"],
            IntervalSet.from_list(data["alloc"]),
            data["cursor"],
        )
        net = Net(data["name"], pool)
        host_network = ipaddress.IPv4Network if version == 4 else ipaddress.IPv6Network
        host_prefix = 32 if version == 4 else 128
        base = data.get("base", 0)
        for container_id, ip_value, subnet_text, gw_value in data["containers"]:
            ip = _address(ip_value, base, version)
            pooled = subnet_text is None
            subnet = host_network((int(ip), host_prefix)) if pooled else ipaddress.ip_network(subnet_text)
            gw = _address(gw_value, base, version)
            net.apply_container_created(ContainerNet(container_id, ip, subnet, gw, pooled))
        net.last_digest = data["digest"]
        # Snapshots taken before requests were recorded have no rows.
        net.requests = RecentRequests(data.get("requests", ""))
        return net


def _address(value: int | str, base: int, version: int) -> Any:
    """Return an address stored as an offset from ``base``, or as text by snapshots of earlier versions."""
    if isinstance(value, str):
        return ipaddress.ip_address(value)
    return address_from_int(base + value, version)


class EventMapper(Mapper):
    """The library's mapper, with the ledger's events written and read by orjson.

    The library's JSON transcoder took about 10 microseconds to write an
    event, and orjson 3 for the same bytes. The ledger's events hold text,
    booleans, None, lists and dicts, and a datetime (``timestamp``), which is
    written as the library's ``datetime_iso`` transcoding writes it. Any
    other event or snapshot, or a state orjson cannot write, takes the
    library's path, so what is stored is the same either way. Reading takes
    the library's path too unless the state is one the fast path decodes
    exactly as the library would (``to_domain_event``).
    """

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        if self.compressor or self.cipher or not isinstance(domain_event, (LedgerEvent, NetworkCreated)):
            return super().to_stored_event(domain_event)
        state = dict(vars(domain_event))
        originator_id = state.pop("originator_id")
        originator_version = state.pop("originator_version")
        class_version = getattr(type(domain_event), "class_version", 1)
        if class_version > 1:
            state["class_version"] = class_version
        try:
            encoded = orjson.dumps(state, default=_datetime_iso, option=orjson.OPT_PASSTHROUGH_DATETIME)
        except orjson.JSONEncodeError:
            return super().to_stored_event(domain_event)
        return StoredEvent(
            originator_id=originator_id,
            originator_version=originator_version,
            topic=get_topic(type(domain_event)),
            state=encoded,
        )


    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        """Decode a ledger event with orjson, or any other stored event with the library.

        The fast path takes only states in which the library's transcoder
        would decode one value, the top-level ``timestamp``: one occurrence
        of the ``"_type_"`` key in the bytes (inside a JSON string it would
        be escaped). Anything else, or a state that fails here, takes the
        library's path, which also raises the library's errors.
        """
        cls = resolve_topic(stored_event.topic)
        data = stored_event.state
        if (
            self.compressor or self.cipher or type(data) is not bytes
            or not issubclass(cls, (LedgerEvent, NetworkCreated))
            or getattr(cls, "class_version", 1) != 1 or data.count(b'"_type_"') != 1
        ):
            return super().to_domain_event(stored_event)
        try:
            state = orjson.loads(data)
            stamp = state["timestamp"]
            if len(stamp) != 2 or stamp["_type_"] != "datetime_iso" or "class_version" in state:
                return super().to_domain_event(stored_event)
            state["timestamp"] = datetime.fromisoformat(stamp["_data_"])
        # Stored bytes are untrusted, and the library's path reports what is wrong with them.
        except Exception:  # noqa: BLE001
            return super().to_domain_event(stored_event)
        originator_id = stored_event.originator_id
        state["originator_id"] = find_id_convertor(cls, type(originator_id))(originator_id)
        state["originator_version"] = stored_event.originator_version
        domain_event = object.__new__(cls)
        object.__setattr__(domain_event, "__dict__", state)
        return domain_event


def _datetime_iso(value: Any) -> dict[str, str]:
    """Encode a datetime as the library's ``DatetimeAsISO`` transcoding does; refuse anything else."""
    if type(value) is not datetime:
        raise TypeError(f"no fast encoding for {type(value).__name__}")
    return {"_type_": "datetime_iso", "_data_": iso_text(value)}

