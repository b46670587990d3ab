"""Rebuild the read models in memory from the events, and compare them with the stored ones.

The in-memory models are written separately from the SQL ones, with the
ledger's own interval sets. A difference therefore points at stored rows
that drifted (an event applied twice or skipped, an edited row), or at a
mistake in one of the two implementations.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Optional

from ledger.addresses import address_from_int
from ledger.aggregate import (
    AddressesReleased,
    ContainerCreated,
    ContainerDestroyed,
    GatewayAllocated,
    IpAllocated,
    NetworkCreated,
)
from ledger.intervals import IntervalSet
from ledger.model import GATEWAY_ROLE, IP_ROLE
from projections.values import text_value, time_text


class ReplayedNetwork:
    """One network's read-model state, rebuilt from its events."""

    def __init__(self, event: NetworkCreated) -> None:
        self.name = event.name
        self.version = event.ip_version
        self.pool = IntervalSet((text_value(first), text_value(last)) for first, last in event.ranges)
        self.alloc = IntervalSet()
        self.members: dict[str, tuple[Optional[str], str]] = {}
        self.tenancies: list[list[Any]] = []
        self.open_by_address: dict[str, list[Any]] = {}
        self.containers: list[list[Any]] = []
        # The lives not yet destroyed, by container id: a destroy must not scan every life of a long history.
        self.living: dict[str, list[list[Any]]] = {}

    def open(self, position: int, event: Any, address: str, role: str, container_id: Optional[str]) -> None:
        # The columns of ``history.TENANCY_COLUMNS``.
        row = [address, container_id, role, time_text(event.timestamp), position, event.actor, None, None, None]
        self.tenancies.append(row)
        self.open_by_address[address] = row

    def close(self, row: list[Any], position: int, event: Any) -> None:
        row[6:9] = [time_text(event.timestamp), position, event.actor]
        del self.open_by_address[row[0]]

    def apply(self, event: Any, position: int) -> None:
        """Change the state for one event of this network."""
        if isinstance(event, (IpAllocated, GatewayAllocated)):
            address = event.ip if isinstance(event, IpAllocated) else event.gw
            self.alloc.add(text_value(address))
            self.open(position, event, address, IP_ROLE if isinstance(event, IpAllocated) else GATEWAY_ROLE, event.container_id)
        elif isinstance(event, ContainerCreated):
            self.created(event, position)
        elif isinstance(event, ContainerDestroyed):
            self.destroyed(event, position)
        elif isinstance(event, AddressesReleased):
            for address in event.addresses:
                self.alloc.discard(text_value(address))
                row = self.open_by_address.get(address)
                if row is not None:
                    self.close(row, position, event)

    def created(self, event: ContainerCreated, position: int) -> None:
        subnet = None if event.pooled else str(ipaddress.ip_network(event.subnet))
        self.members[event.container_id] = (subnet, event.ip)
        kind = "pooled" if event.pooled else "subnet"
        life = [
            event.container_id, position, event.ip, event.subnet, event.gw, kind,
            time_text(event.timestamp), event.actor, event.reason, None, None, None, None,
        ]
        self.containers.append(life)
        self.living.setdefault(event.container_id, []).append(life)
        if not event.pooled:
            self.open(position, event, event.ip, IP_ROLE, event.container_id)

    def destroyed(self, event: ContainerDestroyed, position: int) -> None:
        del self.members[event.container_id]
        for row in list(self.open_by_address.values()):
            if row[1] == event.container_id:
                self.close(row, position, event)
        for life in self.living.pop(event.container_id, []):
            life[9:13] = [position, time_text(event.timestamp), event.actor, event.reason]

    def exports(self) -> dict[str, dict[str, Any]]:
        """Return this network's state in the forms each read model's ``export`` returns."""
        ranges = [(str(self.address(first)), str(self.address(last))) for first, last in self.pool.subtract(self.alloc).ranges()]
        # count(), not len(): len() raises OverflowError above 2**63 - 1 members, so for IPv6 pools of /64 and wider.
        pool_size, allocated = self.pool.count(), self.alloc.count()
        return {
            "free_addresses": {"name": self.name, "pool_size": pool_size, "allocated": allocated, "ranges": ranges},
            "occupancy": {"name": self.name, "pool_size": pool_size, "used": allocated, "members": dict(self.members)},
            "address_history": {
                "name": self.name,
                "tenancies": [tuple(row) for row in self.tenancies],
                "containers": [tuple(row) for row in self.containers],
            },
        }

    def address(self, value: int) -> Any:
        return address_from_int(value, self.version)


def first_difference(stored: Any, replayed: Any, path: str) -> Optional[str]:
    """Return a sentence naming the first place where two exported states differ, or None."""
    if isinstance(stored, dict) and isinstance(replayed, dict):
        for key in sorted(set(stored) | set(replayed), key=str):
            if key not in stored:
                return f"{path} {key}: missing from the stored read model, a replay has {replayed[key]!r}"
            if key not in replayed:
                return f"{path} {key}: stored as {stored[key]!r}, a replay has nothing"
            difference = first_difference(stored[key], replayed[key], f"{path} {key}")
            if difference is not None:
                return difference
        return None
    if isinstance(stored, list) and isinstance(replayed, list):
        for index, (left, right) in enumerate(zip(stored, replayed), start=1):
            if left != right:
                return f"{path} item {index}: stored {left!r}, a replay gives {right!r}"
        if len(stored) != len(replayed):
            return f"{path}: {len(stored)} items stored, a replay gives {len(replayed)}"
        return None
    if stored != replayed:
        return f"{path}: stored {stored!r}, a replay gives {replayed!r}"
    return None
