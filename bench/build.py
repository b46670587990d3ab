"""Write long network histories in bulk, for benchmarks that need more events than the ledger could append in time.

The commands run on a ``Network`` aggregate held in memory, exactly as the
ledger runs them, so every stored event is a real one: same fields, same
digest chain, same encoding. Only the saving differs: events are stored in
large batches through the ledger's own recorder instead of one transaction
per command. A snapshot is taken every ``snapshot_every`` events and after
the last command, which crosses a multiple of ``SNAPSHOT_INTERVAL``. The
ledger itself would snapshot more often, but a load reads only the latest
snapshot, and storing all of them would take most of the build time.
"""

from __future__ import annotations

import multiprocessing
import queue
from collections import deque
from dataclasses import dataclass
from typing import Any, Optional

from eventsourcing.persistence import StoredEvent
from rich.progress import Progress

from bench.common import command_context, ledger_on
from ledger.addresses import build_pool, parse_range
from ledger.aggregate import Network
from ledger.application import SNAPSHOT_INTERVAL, Ledger
from ledger.pool import LOWEST, NetworkPool

BATCH_EVENTS = 10_000


@dataclass(frozen=True)
class HistoryShape:
    """The history to build: ``live`` containers kept, then create-and-destroy churn up to ``events`` events."""

    name: str
    cidr: str
    live: int
    events: int
    snapshot_every: int = 100_000
    policy: str = LOWEST


def insert_batches(url: str, batches: Any, failures: Any) -> None:
    """Insert each batch of stored events from ``batches`` until a None arrives (run in a process)."""
    try:
        with ledger_on(url, CREATE_TABLE="no") as ledger:
            for batch in iter(batches.get, None):
                ledger.recorder.insert_events(batch)
    except BaseException as error:
        failures.put(f"{type(error).__name__}: {error}")
        raise


class InsertProcess:
    """Insert batches of stored events in a process of its own, so encoding and inserting overlap.

    Use it as a context manager: leaving the block waits until every batch
    is stored, or stops the process when the block raised.
    """

    def __init__(self, url: str) -> None:
        spawn = multiprocessing.get_context("spawn")
        # A short queue keeps memory bounded when the database falls behind.
        self.batches = spawn.Queue(maxsize=4)
        self.failures = spawn.Queue()
        self.process = spawn.Process(target=insert_batches, args=(url, self.batches, self.failures), daemon=True)

    def __enter__(self) -> InsertProcess:
        self.process.start()
        return self

    def __exit__(self, error_type: Any, error: Any, traceback: Any) -> None:
        if error_type is not None:
            self.process.terminate()
            self.process.join()
            return
        self._put(None)
        self.process.join()
        self._check()

    def insert(self, batch: list[StoredEvent]) -> None:
        self._put(batch)

    def _put(self, item: Optional[list[StoredEvent]]) -> None:
        while True:
            try:
                self.batches.put(item, timeout=1.0)
                return
            except queue.Full:
                self._check()

    def _check(self) -> None:
        if not self.process.is_alive() and self.process.exitcode != 0:
            raise RuntimeError(f"inserting events failed: {self.failures.get(timeout=5)}")


class BulkWriter:
    """Collect a network's new events and store them a batch at a time.

    With an ``InsertProcess`` the batches are handed to that process.
    """

    def __init__(self, ledger: Ledger, network: Network, inserter: Optional[InsertProcess] = None) -> None:
        self.ledger = ledger
        self.network = network
        self.inserter = inserter
        self.pending: list[object] = []
        self.stored = 0

    def collect(self) -> None:
        self.pending.extend(self.network.collect_events())
        if len(self.pending) >= BATCH_EVENTS:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        stored = [self.ledger.mapper.to_stored_event(event) for event in self.pending]  # type: ignore[arg-type]
        if self.inserter is None:
            self.ledger.recorder.insert_events(stored)
        else:
            self.inserter.insert(stored)
        self.stored += len(stored)
        self.pending.clear()

    def snapshot(self) -> None:
        """Store the pending events, then a snapshot of the network at its current version."""
        self.flush()
        assert self.ledger.snapshots is not None
        self.ledger.snapshots.put([Network.Snapshot.take(self.network)])


def new_network(name: str, cidr: str, policy: str = LOWEST) -> Network:
    """Return a new network aggregate over one CIDR, with its ``NetworkCreated`` event pending."""
    ranges = [parse_range(cidr, "pool")]
    pool = NetworkPool(ranges[0].version, build_pool(ranges, []), policy)
    return Network.create(name, pool, [cidr], [], command_context())


def build_history(ledger: Ledger, url: str, shape: HistoryShape, show_progress: bool = True) -> Network:
    """Store a network with ``shape.live`` containers and about ``shape.events`` events; return it.

    After the live containers are created, each step creates one container and
    destroys the oldest, so the state stays the same size while history grows.
    The build ends at the first command that crosses a multiple of
    ``SNAPSHOT_INTERVAL`` at or after ``shape.events``, with a snapshot there,
    as the ledger would leave it. Another process inserts the events
    while this one runs the commands and encodes their events.
    """
    network = new_network(shape.name, shape.cidr, shape.policy)
    live: deque[str] = deque()
    with InsertProcess(url) as inserter, Progress(transient=True, disable=not show_progress) as progress:
        writer = BulkWriter(ledger, network, inserter)
        writer.collect()
        task = progress.add_task(f"writing {shape.name}", total=shape.events)
        step = 0
        while not _churn_step(writer, shape, live, f"c{step}"):
            step += 1
            if step % 1000 == 0:
                progress.update(task, completed=network.version)
    return network


def _churn_step(writer: BulkWriter, shape: HistoryShape, live: deque[str], container_id: str) -> bool:
    """Create one container (destroying the oldest once ``shape.live`` exist); return True when the build is done."""
    network = writer.network
    before = network.version
    if len(live) >= shape.live:
        network.destroy(live.popleft(), command_context())
    network.create_from_pool(container_id, command_context())
    live.append(container_id)
    writer.collect()
    crossed = network.version // SNAPSHOT_INTERVAL > before // SNAPSHOT_INTERVAL
    if crossed and network.version >= shape.events:
        writer.snapshot()
        return True
    if network.version // shape.snapshot_every > before // shape.snapshot_every:
        writer.snapshot()
    return False


def build_containers(ledger: Ledger, name: str, cidr: str, containers: int, show_progress: bool = True) -> Network:
    """Store a network holding ``containers`` containers created from its pool, snapshotted at the end."""
    network = new_network(name, cidr)
    writer = BulkWriter(ledger, network)
    writer.collect()
    with Progress(transient=True, disable=not show_progress) as progress:
        task = progress.add_task(f"writing {name}", total=containers)
        for index in range(containers):
            network.create_from_pool(f"c{index}", command_context())
            writer.collect()
            if index % 1000 == 0:
                progress.update(task, completed=index)
    writer.snapshot()
    return network
