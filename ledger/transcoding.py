"""How a network's state is stored in snapshots.

The library snapshots an aggregate's attributes as JSON. ``Net`` is stored
as the model's state only: the pool and allocated set as flat lists of
range bounds, the cursor, and one short row per container. The indexes are
rebuilt on load, so a snapshot's size follows the number of containers and
the fragmentation of the allocated set, never the size of the pool.
The record of recent requests is bounded and stored as one string
(``ledger.requests``).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from eventsourcing.persistence import Transcoding

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
        rows = [
            [c.container_id, str(c.ip), None if c.pooled else str(c.subnet), str(c.gw)]
            for c in obj.containers.values()
        ]
        return {
            "name": obj.name,
            "ip_version": pool.version,
            "policy": pool.policy,
            "pool": pool.pool.to_list(),
            "alloc": pool.alloc.to_list(),
            "cursor": pool.cursor,
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
        host_prefix = 32 if version == 4 else 128
        for container_id, ip_text, subnet_text, gw_text in data["containers"]:
            ip = ipaddress.ip_address(ip_text)
            pooled = subnet_text is None
            subnet = ipaddress.ip_network(f"{ip_text}/{host_prefix}" if pooled else subnet_text)
            gw = ipaddress.ip_address(gw_text)
            net.apply_container_created(ContainerNet(container_id, ip, subnet, gw, pooled))
        net.last_digest = data["digest"]
        # Snapshots taken before requests were recorded have no rows.
        net.requests = RecentRequests(data.get("requests", ""))
        return net
