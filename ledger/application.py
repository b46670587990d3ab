"""The ledger's application service: commands and queries over networks.

Each command runs on the network's aggregate as this process last saw it,
kept in an in-process cache, and appends the command's events in one
statement. The command is checked and its events built without changing
the aggregate, and the events are applied once they are sent (on
PostgreSQL, while the server stores them). A network not in the cache is
rebuilt from its latest snapshot plus the events after it. The cached
aggregate is not refreshed before the command. If another writer appended
to the network since, the append fails on the stream's version. When the
command's events were already applied, the cached aggregate is dropped and
the network rebuilt from the store; otherwise it is brought up to date with
the events it missed. Either way the command is then checked again. For a
second after such a collision, the network counts as contended. On
PostgreSQL, commands on a contended network run in the network's turn. A
writer waits for the turn and reads the events stored after its cached
version. It keeps the turn for TURN_LEASE seconds of commands, and no
other writer appends to the network meanwhile. Elsewhere they first read
the events stored after the cached version, and apply their own events
only once stored. A command refused against a cached aggregate is also checked
again against a rebuilt one before the refusal is raised. A command that
fails in any other way drops the cached aggregate too, so that events it
applied but never stored cannot leak into the next command. Queries bring
the cached aggregate up to date with the events stored after its version
before they read it.

Container create and destroy and pool allocate and release are idempotent
by request id: a command whose request id the network has recorded
(``ledger.requests``) returns the recorded result and appends nothing, so
a client may retry after losing the reply. The same request id with other
arguments is rejected with ``RequestIdReused``.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import threading
import time
from contextlib import suppress
from functools import partial
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.persistence import IntegrityError, Mapper, StoredEvent, Transcoder
from eventsourcing.utils import get_topic

from ledger import errors
from ledger.addresses import AddressRange, IPAddress, IPNetwork, build_pool, parse_network_name
from ledger.aggregate import CommandContext, Decision, LedgerEvent, Network, NetworkCreated, network_id
from ledger.model import ContainerNet
from ledger.pool import POLICIES, NetworkPool
from ledger.requests import ALLOCATE, CREATE, DESTROY, RELEASE, RequestRecord, release_arguments
from ledger.transcoding import EventMapper, NetAsDict

log = logging.getLogger(__name__)

T = TypeVar("T")

# A small network is snapshotted every 100 events, which bounds a load to one
# snapshot plus at most 99 events and costs one snapshot write per about 30
# commands. A snapshot's size grows with the containers and recorded
# requests, so the interval doubles until it is at least 1/8 of those items.
# The cost of snapshots per command then stays flat as a network grows, and a
# load of a large network replays fewer events than a quarter of its items.
SNAPSHOT_INTERVAL = 100
SNAPSHOT_ITEMS_PER_EVENT = 8

# A command retries after a collision until RETRY_DEADLINE seconds have
# passed, not a fixed number of times. Where writers cannot take turns
# (SQLite, or a turn not free in time), it first waits a jittered
# exponential backoff capped at MAX_BACKOFF seconds. Without turns, four
# writers on one network lost the race eight times in a row about once in
# 250 commands. The one that had just appended tended to win again, so in
# one 6 s run they ran 6,558, 562, 2 and 2 commands.
RETRY_DEADLINE = 30.0
MAX_BACKOFF = 0.2

# Networks whose aggregates a Ledger keeps in memory between commands.
AGGREGATE_CACHE_SIZE = 64

# After a command on a network collides with another writer's append, this
# process reads the network's new events before each command on it for
# CONTENDED_SECONDS. Its commands then collide only with appends made
# during their own round trip, so fewer of them rebuild the network from
# its snapshot, which costs far more than the read.
CONTENDED_SECONDS = 1.0

# On a contended network, writers take turns (see OrderedInsertRecorder.take_turn), in
# the order of their requests. A writer keeps its turn for TURN_LEASE seconds of commands, so
# that handing the turn on (a lock handed between processes, and a read of the events
# the next writer missed) is not paid on every command. A turn that its writer stops
# using ends after twice TURN_LEASE. With four writers on one network of a 2-core
# machine, 5 ms gave 0.73 to 0.74 times one writer, 10 ms 0.81 to 0.83, and 20 ms
# 0.82 to 0.83 (bench same_network_scaling, two runs each).
TURN_LEASE = 0.01
# When a network's turn is not free within the recorder's turn_timeout, its holder may
# have stopped (a suspended process, say). This process then appends to the network
# without turns for TURNS_OFF_SECONDS, relying on the stream's version alone.
TURNS_OFF_SECONDS = 30.0


@dataclass(frozen=True)
class Retry(Generic[T]):
    """The request id, command and arguments of a command, and the function that rebuilds its recorded result."""

    request_id: str
    command: str
    arguments: tuple[Any, ...]
    result_of: Callable[[RequestRecord], T]


class Ledger(Application):
    """Commands and queries of the ledger, over one event store."""

    name = "netledger"
    # Commands run on the cached aggregate itself, not on a copy: copying a
    # network with thousands of containers costs more than the command, and
    # _run drops the cached aggregate whenever a command does not end stored.
    # Without fast-forwarding, the library's repository returns the cached
    # aggregate as it is and caches each aggregate it saves.
    env: ClassVar[dict[str, str]] = {
        "AGGREGATE_CACHE_MAXSIZE": str(AGGREGATE_CACHE_SIZE),
        "AGGREGATE_CACHE_FASTFORWARD": "n",
        "DEEPCOPY_FROM_AGGREGATE_CACHE": "n",
    }
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {Network: SNAPSHOT_INTERVAL}
    # Appends retried after another writer appended first, since this object was made.
    conflict_retries = 0
    # Turns this object took on contended networks (see _turn_for).
    turns_taken = 0
    # Whether the last command's request id was already recorded, so that it
    # returned the recorded result and appended nothing.
    last_command_replayed = False

    def __init__(self, env: Any = None) -> None:
        super().__init__(env)
        # The cached aggregates are shared, so commands of one Ledger run one at a time.
        self._command_lock = threading.RLock()
        # Until when (time.monotonic()) each network counts as contended.
        self._contended_until: dict[UUID, float] = {}
        # Whether the recorder can apply a command's events while it stores them (PostgreSQL).
        self._applies_while_waiting = bool(getattr(self.recorder, "applies_while_waiting", False))
        # Whether writers of one network can take turns on it (PostgreSQL). A turn keeps one of the
        # pool's connections between commands, and a snapshot written meanwhile needs another.
        self._takes_turns = hasattr(self.recorder, "take_turn") and self.recorder.datastore.pool.max_size >= 2
        # Until when (time.monotonic()) this process appends to each network without turns.
        self._turns_off_until: dict[UUID, float] = {}
        # The turn this Ledger holds between commands, and until when (time.monotonic()) it keeps it.
        self._held_turn: Any = None
        self._turn_ends = 0.0

    def construct_mapper(self) -> Mapper[UUID]:
        return self.factory.mapper(transcoder=self.construct_transcoder(), mapper_class=EventMapper)

    def register_transcodings(self, transcoder: Transcoder) -> None:
        super().register_transcodings(transcoder)  # type: ignore[arg-type]
        transcoder.register(NetAsDict())  # type: ignore[attr-defined]

    def _take_snapshots(self, processing_event: ProcessingEvent) -> None:
        """Snapshot each saved network whose new events cross a snapshot interval.

        The library's default reloads the aggregate from the store to take a
        snapshot; the aggregate in memory is already at the saved version.
        """
        for aggregate in processing_event.aggregates.values():
            if isinstance(aggregate, Network):
                events = processing_event.events
                versions = [event.originator_version for event in events if event.originator_id == aggregate.id]
                self._snapshot_if_due(aggregate, versions)

    def _snapshot_if_due(self, network: Network, versions: Iterable[int]) -> None:
        """Snapshot the network if one of the versions just stored is a multiple of its interval."""
        if self.snapshots is None:
            return
        interval = snapshot_interval(network)
        if any(version % interval == 0 for version in versions):
            self.snapshots.put([Network.Snapshot.take(network)])

    # Queries.

    def network(self, name: str) -> Network:
        """Return the network's aggregate with every stored event applied.

        The aggregate is the cached one (callers must not change it), brought
        up to date with the events stored after its version.
        """
        with self._command_lock:
            network = self._cached_network(name)
            self._fast_forward(network)
            return network

    def _fast_forward(self, network: Network) -> None:
        """Apply to the aggregate, in place, the events stored after its version."""
        select_after = getattr(self.recorder, "select_events_after", None)
        if select_after is None:
            for event in self.repository.event_store.get(network.id, gt=network.version):
                event.mutate(network)
        else:
            self._apply_stored(network, select_after(network.id, network.version))

    def _apply_stored(self, network: Network, stored_events: Iterable[StoredEvent]) -> None:
        """Apply stored events of the network to its aggregate, in place."""
        for stored in stored_events:
            self.mapper.to_domain_event(stored).mutate(network)

    def _cached_network(self, name: str) -> Network:
        """Return the cached aggregate as it is, or rebuild it from the store."""
        try:
            return self.repository.get(network_id(name), projector_func=_project)
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
        if subnet is not None and ip is None:
            raise errors.InvalidInput("--subnet needs --ip: give the container's address in the subnet")
        arguments = (container_id, None if ip is None else str(ip), None if subnet is None else str(subnet))
        retry = Retry(context.request_id, CREATE, arguments, _container_of)
        if subnet is not None and ip is not None:
            return self._run(
                network_name, lambda network: network.decide_create_in_subnet(container_id, subnet, ip, context), retry
            )
        if ip is not None:
            return self._run(
                network_name, lambda network: network.decide_create_with_ip(container_id, ip, context), retry
            )
        return self._run(network_name, lambda network: network.decide_create_from_pool(container_id, context), retry)

    def destroy_container(self, network_name: str, container_id: str, context: CommandContext) -> list[IPAddress]:
        """Destroy a container and return the pool addresses released for it."""
        retry = Retry(context.request_id, DESTROY, (container_id,), _addresses_of)
        return self._run(network_name, lambda network: network.decide_destroy(container_id, context), retry)

    def allocate(self, network_name: str, count: int, context: CommandContext) -> list[IPAddress]:
        """Allocate one address, or an address and a gateway, without a container."""
        retry = Retry(context.request_id, ALLOCATE, (count,), _addresses_of)
        return self._run(network_name, lambda network: network.decide_allocate(count, context), retry)

    def release(
        self, network_name: str, addresses: list[IPAddress], context: CommandContext
    ) -> tuple[list[IPAddress], dict[str, str]]:
        """Release addresses allocated without a container; report those ignored."""
        arguments = release_arguments([str(address) for address in addresses])
        retry = Retry(context.request_id, RELEASE, arguments, _release_of)
        return self._run(network_name, lambda network: network.decide_release(addresses, context), retry)

    def _run(self, network_name: str, command: Callable[[Network], Decision[T]], retry: Retry[T]) -> T:
        """Run a command on the up-to-date network, retrying after a concurrent append."""
        with self._command_lock:
            return self._run_unlocked(network_name, command, retry)

    def _command_network(self, network_name: str) -> tuple[Network, bool]:
        """Return the network a command runs on, and whether it was rebuilt from the store (not cached)."""
        if self.repository.cache is not None:
            with suppress(KeyError):
                return self.repository.cache.get(network_id(network_name)), False
        return self._cached_network(network_name), True

    def _append(self, network: Network, events: list[LedgerEvent], apply_early: bool, turn: Any = None) -> None:
        """Store a command's events, apply them to the network, and take a snapshot when one is due.

        With ``apply_early``, the PostgreSQL recorder applies the events
        while the server stores them, which takes most of a command's time,
        and a failed append leaves the network changed. Otherwise the events
        are applied once stored, and a failed append leaves the network as
        it was. This does what the library's ``save`` does for
        one aggregate. It skips the checks of what kind of object each
        argument is, which took about 8% of a command's Python time in a
        profile, and the records of each stored event that ``save`` returns.
        """
        stored = [self.mapper.to_stored_event(event) for event in events]

        # NOTE: an event whose apply raises is stored before the error shows. The
        # command's checks (Net.plan_*) must cover every condition an apply relies on.
        def apply() -> None:
            for event in events:
                event.mutate(network)

        if turn is None and self._takes_turns and self._turns_off(network):
            insert_events = partial(self.recorder.insert_events, ignore_turn=True)
        elif turn is None:
            insert_events = self.recorder.insert_events
        else:
            # The first append after TURN_LEASE has run out ends the turn, in the same round trip.
            end = time.monotonic() >= self._turn_ends
            if end:
                self._held_turn = None
            insert_events = partial(turn.insert_events, end=end)
        if apply_early:
            insert_events(stored, while_waiting=apply)
        else:
            insert_events(stored)
            apply()
        if self.repository.cache is not None:
            self.repository.cache.put(network.id, network)
        self._snapshot_if_due(network, (event.originator_version for event in events))

    def _forget(self, network: Network) -> None:
        """Drop a network's cached aggregate, so that the next command rebuilds it from the store."""
        if self.repository.cache is not None:
            with suppress(KeyError):
                self.repository.cache.get(network.id, evict=True)

    def _run_unlocked(self, network_name: str, command: Callable[[Network], Decision[T]], retry: Retry[T]) -> T:
        deadline = time.monotonic() + RETRY_DEADLINE
        attempt = 0
        rebuilt = self.repository.cache is None
        behind = False
        while True:
            attempt += 1
            network, loaded = self._command_network(network_name)
            contended = self._contended_until.get(network.id, 0.0) > time.monotonic()
            turn = None
            apply_early = False
            try:
                turn = self._turn_for(network, contended)
                if turn is not None:
                    # In a turn, the network has every stored event: no other writer appends.
                    loaded = True
                # A network read from the store just now is as fresh as a rebuilt one.
                elif not loaded and (contended or behind):
                    self._fast_forward(network)
                    loaded = True
                behind = False
                # Without a turn, on a contended network the events are applied only once stored, so
                # that a collision leaves the cached network as it was, only behind.
                apply_early = self._applies_while_waiting and (turn is not None or not contended)
                rebuilt = rebuilt or loaded
                earlier = _recorded(network, retry)
                self.last_command_replayed = earlier is not None
                if earlier is not None:
                    return retry.result_of(earlier)
                result, events = command(network)
                if not events:
                    return result
                self._append(network, events, apply_early, turn)
            except errors.Refused:
                self._end_turn()
                self._forget(network)
                if rebuilt:
                    raise
                # The cached aggregate may be behind the store: check again on a rebuilt one.
                rebuilt = True
                continue
            except IntegrityError:
                self._end_turn()
                rebuilt = True
                if apply_early:
                    self._forget(network)
                else:
                    # The cached network is unchanged but behind the store: the next attempt reads what it missed.
                    behind = True
                self._contended_until[network.id] = time.monotonic() + CONTENDED_SECONDS
                # The next attempt waits for the network's turn. Where there are no turns, or the
                # turn was not free in time, a jittered backoff keeps writers that collided from
                # colliding again at once.
                delay = 0.0
                if not self._takes_turns or (contended and turn is None):
                    delay = random.uniform(0, min(MAX_BACKOFF, 0.005 * 2 ** min(attempt, 10)))
                if time.monotonic() + delay > deadline:
                    break
                self.conflict_retries += 1
                log.info(
                    "network %s changed under request %s (attempt %d); retrying in %.3fs",
                    network_name,
                    retry.request_id,
                    attempt,
                    delay,
                )
                time.sleep(delay)
                continue
            except BaseException:
                self._end_turn()
                self._forget(network)
                raise
            return result
        log.warning("request %s on network %s gave up after %d attempts", retry.request_id, network_name, attempt)
        raise errors.ConcurrentUpdate(
            f"network {network_name} kept changing under this command for {RETRY_DEADLINE:.0f} s "
            f"({attempt} attempts); retry it"
        )

    def _turn_for(self, network: Network, contended: bool) -> Any:
        """Return the turn a command on the network runs in, or None to run it without one.

        A turn this Ledger holds on the network is used until TURN_LEASE
        seconds have passed since it was taken. Otherwise a turn is taken
        on a contended network, where the store has turns, and the events
        it missed are applied to the network.
        """
        held_turn = self._held_turn
        if held_turn is not None:
            if held_turn.originator_id == network.id and not held_turn.ended:
                return held_turn
            self._end_turn()
        if not contended or not self._takes_turns or self._turns_off(network):
            return None
        try:
            turn = self.recorder.take_turn(network.id, network.version)  # type: ignore[attr-defined]
        except errors.TurnsUnavailable as error:
            # Turns make writers fair and faster, but correctness rests on the stream's version.
            self._takes_turns = False
            log.warning("network %s: writers take no turns: %s", network.net.name, error)
            return None
        if turn is None:
            self._turns_off_until[network.id] = time.monotonic() + TURNS_OFF_SECONDS
            log.warning(
                "network %s: no turn within %.1f s; appending without turns for %.0f s",
                network.net.name,
                self.recorder.turn_timeout,  # type: ignore[attr-defined]
                TURNS_OFF_SECONDS,
            )
            return None
        self.turns_taken += 1
        if turn.missed:
            # Other writers still append to the network: keep taking turns.
            self._contended_until[network.id] = time.monotonic() + CONTENDED_SECONDS
        try:
            self._apply_stored(network, turn.missed)
        except BaseException:
            turn.end()
            raise
        self._held_turn = turn
        self._turn_ends = time.monotonic() + TURN_LEASE
        # A process that stops sending commands must not keep the other writers waiting.
        timer = threading.Timer(TURN_LEASE * 2, self._end_idle_turn, (turn,))
        timer.daemon = True
        timer.start()
        return turn

    def _turns_off(self, network: Network) -> bool:
        """Return whether this process appends to the network without turns."""
        return self._turns_off_until.get(network.id, 0.0) > time.monotonic()

    def _end_turn(self) -> None:
        """End the turn this Ledger holds, if any."""
        turn, self._held_turn = self._held_turn, None
        if turn is not None:
            turn.end()

    def _end_idle_turn(self, turn: Any) -> None:
        with self._command_lock:
            if self._held_turn is turn:
                self._end_turn()

    def close(self) -> None:
        with self._command_lock:
            self._end_turn()
        super().close()


def _project(network: Network | None, events: Iterable[Any]) -> Network | None:
    """Apply events in order to a network, or to None for a stream's first event.

    This is the library's default projector without its check that each
    event can mutate an aggregate. That check tests a runtime protocol, and
    took a third of a rebuild's time in a profile.
    """
    for event in events:
        network = event.mutate(network)
    return network


def snapshot_interval(network: Network) -> int:
    """Return the number of events between snapshots for a network of this size."""
    items = len(network.net.containers) + len(network.net.requests)
    interval = SNAPSHOT_INTERVAL
    while interval * SNAPSHOT_ITEMS_PER_EVENT < items:
        interval *= 2
    return interval


def _recorded(network: Network, retry: Retry[Any]) -> RequestRecord | None:
    """Return the record of a request the network has already applied, or None.

    Raises ``RequestIdReused`` when the recorded command or arguments differ.
    """
    earlier = network.net.requests.get(retry.request_id)
    if earlier is None:
        return None
    if earlier.command != retry.command or earlier.arguments != retry.arguments:
        raise errors.RequestIdReused(
            f"request id {retry.request_id} was already used on network {network.net.name} "
            f"for '{earlier.describe()}'; repeat that command exactly to retry it, "
            "or give a new request id"
        )
    log.info(
        "request %s on network %s was already applied; returning its recorded result",
        retry.request_id,
        network.net.name,
    )
    return earlier


def _container_of(record: RequestRecord) -> ContainerNet:
    container_id, _, subnet_text = record.arguments
    ip_text, gw_text = record.result
    ip = ipaddress.ip_address(ip_text)
    if subnet_text is None:
        subnet = ipaddress.ip_network(f"{ip_text}/{ip.max_prefixlen}")
    else:
        subnet = ipaddress.ip_network(subnet_text)
    return ContainerNet(container_id, ip, subnet, ipaddress.ip_address(gw_text), pooled=subnet_text is None)


def _addresses_of(record: RequestRecord) -> list[IPAddress]:
    return [ipaddress.ip_address(text) for text in record.result[0]]


def _release_of(record: RequestRecord) -> tuple[list[IPAddress], dict[str, str]]:
    released, ignored = record.result
    return [ipaddress.ip_address(text) for text in released], dict(ignored)


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
