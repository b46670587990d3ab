"""The ledger's application service: commands and queries over networks.

Each command loads the network's aggregate (from its latest snapshot plus
the events after it), runs the command method, and appends the command's
events in one transaction. When another writer appended to the same
network first, the append fails on the stream's version, and the command
is reloaded and checked again against the new state.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.persistence import IntegrityError, Transcoder
from eventsourcing.utils import get_topic

from ledger import errors
from ledger.addresses import AddressRange, IPAddress, IPNetwork, build_pool, parse_network_name
from ledger.aggregate import CommandContext, Network, NetworkCreated, network_id
from ledger.model import ContainerNet
from ledger.pool import POLICIES, NetworkPool
from ledger.transcoding import NetAsDict

log = logging.getLogger(__name__)

T = TypeVar("T")

# A snapshot every 100 events bounds a load to one snapshot plus at most 99
# events, while keeping snapshot writes to about one per 30 commands.
SNAPSHOT_INTERVAL = 100
MAX_ATTEMPTS = 8


class Ledger(Application):
    """Commands and queries of the ledger, over one event store."""

    name = "netledger"
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {Network: SNAPSHOT_INTERVAL}

    def register_transcodings(self, transcoder: Transcoder) -> None:
        super().register_transcodings(transcoder)  # type: ignore[arg-type]
        transcoder.register(NetAsDict())  # type: ignore[attr-defined]

    def _take_snapshots(self, processing_event: ProcessingEvent) -> None:
        """Snapshot the in-memory aggregate when a command crosses an interval.

        The library's default reloads the aggregate from the store to take a
        snapshot; the aggregate in memory is already at the saved version.
        """
        if self.snapshots is None:
            return
        crossed = {
            event.originator_id
            for event in processing_event.events
            if event.originator_version % SNAPSHOT_INTERVAL == 0
        }
        for aggregate_id in crossed:
            aggregate = processing_event.aggregates.get(aggregate_id)
            if isinstance(aggregate, Network):
                self.snapshots.put([Network.Snapshot.take(aggregate)])

    # Queries.

    def network(self, name: str) -> Network:
        """Return the network's aggregate, rebuilt from its snapshot and events."""
        try:
            return self.repository.get(network_id(name))
        except AggregateNotFoundError:
            raise errors.NetworkNotFound(
                f"network {name} not found; 'netledger network list' shows the networks"
            ) from None

    def network_names(self) -> list[str]:
        """Return the names of all networks, in the order they were created."""
        topic = get_topic(NetworkCreated)
        names: list[str] = []
        start = 1
        while True:
            page = self.recorder.select_notifications(start=start, limit=500, topics=[topic])
            for notification in page:
                names.append(self.mapper.to_domain_event(notification).name)  # type: ignore[attr-defined]
            if len(page) < 500:
                return names
            start = page[-1].id + 1

    def event_count(self) -> int:
        """Return the position of the last stored event (0 for an empty ledger)."""
        return self.recorder.max_notification_id() or 0

    # Commands.

    def create_network(
        self,
        name: str,
        pools: list[AddressRange],
        excludes: list[AddressRange],
        policy: str,
        context: CommandContext,
    ) -> Network:
        """Create a network whose pool is ``pools`` minus reserved and excluded addresses."""
        parse_network_name(name)
        pool = _build_network_pool(name, pools, excludes, policy)
        if network_id(name) in self.repository:
            raise errors.NetworkExists(f"network {name} already exists; choose another name")
        network = Network.create(
            name,
            pool,
            [item.text for item in pools],
            [item.text for item in excludes],
            context,
        )
        try:
            self.save(network)
        except IntegrityError:
            raise errors.NetworkExists(f"network {name} already exists; choose another name") from None
        log.info("created network %s with %d pool addresses", name, pool.size)
        return network

    def create_container(
        self,
        network_name: str,
        context: CommandContext,
        container_id: str,
        ip: IPAddress | None = None,
        subnet: IPNetwork | None = None,
    ) -> ContainerNet:
        """Create a container network from the pool, with a given pool ip, or in a special subnet."""
        if subnet is not None:
            if ip is None:
                raise errors.InvalidInput("--subnet needs --ip: give the container's address in the subnet")
            return self._run(
                network_name,
                lambda network: network.create_in_subnet(container_id, subnet, ip, context),
            )
        if ip is not None:
            return self._run(network_name, lambda network: network.create_with_ip(container_id, ip, context))
        return self._run(network_name, lambda network: network.create_from_pool(container_id, context))

    def destroy_container(self, network_name: str, container_id: str, context: CommandContext) -> list[IPAddress]:
        """Destroy a container and return the pool addresses released for it."""
        return self._run(network_name, lambda network: network.destroy(container_id, context))

    def allocate(self, network_name: str, count: int, context: CommandContext) -> list[IPAddress]:
        """Allocate one address, or an address and a gateway, without a container."""
        return self._run(network_name, lambda network: network.allocate(count, context))

    def release(
        self, network_name: str, addresses: list[IPAddress], context: CommandContext
    ) -> tuple[list[IPAddress], dict[str, str]]:
        """Release addresses allocated without a container; report those ignored."""
        return self._run(network_name, lambda network: network.release(addresses, context))

    def _run(self, network_name: str, command: Callable[[Network], T]) -> T:
        """Run a command on a freshly loaded network, retrying after a concurrent append."""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            network = self.network(network_name)
            result = command(network)
            if not network.pending_events:
                return result
            try:
                self.save(network)
            except IntegrityError:
                delay = random.uniform(0, 0.005 * 2**attempt)
                log.info(
                    "network %s changed under request %s (attempt %d of %d); retrying in %.3fs",
                    network_name,
                    getattr(network.pending_events[0], "request_id", "?") if network.pending_events else "?",
                    attempt,
                    MAX_ATTEMPTS,
                    delay,
                )
                time.sleep(delay)
                continue
            return result
        raise errors.ConcurrentUpdate(
            f"network {network_name} kept changing under this command after {MAX_ATTEMPTS} attempts; "
            "retry it"
        )


def _build_network_pool(
    name: str, pools: list[AddressRange], excludes: list[AddressRange], policy: str
) -> NetworkPool:
    if not pools:
        raise errors.InvalidInput("a network needs at least one --pool CIDR or range")
    if policy not in POLICIES:
        raise errors.InvalidInput(f"invalid policy {policy!r}: use one of {', '.join(POLICIES)}")
    versions = {item.version for item in pools}
    if len(versions) > 1:
        raise errors.InvalidInput(
            f"pools of network {name} mix IPv4 and IPv6; one network uses one address family"
        )
    version = versions.pop()
    for item in excludes:
        if item.version != version:
            raise errors.InvalidInput(
                f"exclusion {item.text} is IPv{item.version} but the pool of network {name} is IPv{version}"
            )
    pool = build_pool(pools, excludes)
    if not pool:
        raise errors.InvalidInput(f"the pool of network {name} is empty after exclusions; widen --pool")
    return NetworkPool(version, pool, policy)
