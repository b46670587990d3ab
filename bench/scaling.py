"""multi_network_scaling and same_network_scaling: four writer processes against one.

Each writer is a process of its own with its own ``Ledger``, running
create-then-destroy commands for a fixed time. The writers start together
after they have connected and warmed up. The total rate of four writers is
compared with the rate of one writer measured in the same run: on four
networks, and on one network, where writers collide and then take turns.
The same-network figure also reports the fewest and the most commands one
writer ran in one run, which shows whether the turns were fair. After the
same-network run the network is reloaded and its invariants are checked.
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
from dataclasses import dataclass
from typing import Any

from bench.common import Measured, Result, RunContext, Target, command_context, ledger_on, new_database
from ledger import errors
from ledger.addresses import parse_range
from ledger.invariants import first_violation

MULTI_KEY = "multi_network_scaling"
MULTI_TARGET = Target(">=", 1.5)
SAME_KEY = "same_network_scaling"
SAME_TARGET = Target(">=", 0.7)
WRITERS = 4
# Writers open their ledgers on tables the parent created, so that their
# start runs no create statements.
WRITER_SETTINGS = {"CREATE_TABLE": "no"}
READY_TIMEOUT = 60.0


@dataclass(frozen=True)
class WriterOutcome:
    """The commands one writer process ran in its time."""

    commands: int
    refused: int
    retries: int
    turns: int
    seconds: float


@dataclass(frozen=True)
class WriterPlan:
    """The settings of each writer: for how long, and with which library settings."""

    seconds: float
    settings: tuple[tuple[str, str], ...] = ()


def writer(url: str, network: str, prefix: str, plan: WriterPlan, barrier: Any, outcomes: Any) -> None:
    """Run create-then-destroy commands on ``network`` for ``plan.seconds`` once every writer is ready (in a process)."""
    commands = refused = 0
    with ledger_on(url, **WRITER_SETTINGS, **dict(plan.settings)) as ledger:
        ledger.network(network)
        barrier.wait(READY_TIMEOUT)
        start = time.perf_counter()
        deadline = start + plan.seconds
        index = 0
        while time.perf_counter() < deadline:
            container_id = f"{prefix}-{index}"
            index += 1
            try:
                ledger.create_container(network, command_context(), container_id)
                commands += 1
                ledger.destroy_container(network, container_id, command_context())
                commands += 1
            except errors.ConcurrentUpdate:
                refused += 1
        elapsed = time.perf_counter() - start
        outcomes.put(WriterOutcome(commands, refused, ledger.conflict_retries, ledger.turns_taken, elapsed))


def run_writers(url: str, networks: list[str], plan: WriterPlan) -> list[WriterOutcome]:
    """Run one writer process per entry of ``networks``, started together, and return their outcomes."""
    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(len(networks))
    outcomes = spawn.Queue()
    processes = [
        spawn.Process(target=writer, args=(url, network, f"w{index}", plan, barrier, outcomes))
        for index, network in enumerate(networks)
    ]
    for process in processes:
        process.start()
    try:
        results = [outcomes.get(timeout=READY_TIMEOUT + plan.seconds * 4) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=10)
    failed = [process.exitcode for process in processes if process.exitcode != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} writer processes failed (exit codes {failed})")
    return results


def total_rate(outcomes: list[WriterOutcome]) -> float:
    """Return the commands per second of writers that ran over the same window."""
    return sum(outcome.commands for outcome in outcomes) / max(outcome.seconds for outcome in outcomes)


def alternate_rounds(
    url: str, single: list[str], four: list[str], plan: WriterPlan, rounds: int
) -> tuple[float, float, list[WriterOutcome]]:
    """Run one writer and then four writers ``rounds`` times in turn.

    Return the median rate of each and the four-writer outcomes of every round.
    Alternating keeps a slow spell of this shared machine from falling on one side only.
    """
    single_rates: list[float] = []
    four_rates: list[float] = []
    outcomes: list[WriterOutcome] = []
    for _ in range(rounds):
        single_rates.append(total_rate(run_writers(url, single, plan)))
        round_outcomes = run_writers(url, four, plan)
        four_rates.append(total_rate(round_outcomes))
        outcomes.extend(round_outcomes)
    return statistics.median(single_rates), statistics.median(four_rates), outcomes


def create_networks(url: str, names: list[str]) -> None:
    with ledger_on(url) as ledger:
        for index, name in enumerate(names):
            ledger.create_network(name, [parse_range(f"10.{70 + index}.0.0/16")], [], "lowest", command_context())


def run_multi_network(ctx: RunContext) -> Result:
    """Compare four writers on four networks with one writer on one network."""
    seconds = 8.0 if not ctx.quick else 1.5
    rounds = ctx.size(3, 1)
    plan = WriterPlan(seconds)
    url = new_database(ctx, "multi")
    names = [f"net{index}" for index in range(WRITERS)]
    create_networks(url, names)
    single, four, outcomes = alternate_rounds(url, names[:1], names, plan, rounds)
    return Result(
        key=MULTI_KEY,
        what="total commands/s of four writer processes on four networks over one writer",
        target=MULTI_TARGET,
        ratio=four / single,
        values={
            "one_writer": Measured(single, "commands/s"),
            "four_writers": Measured(four, "commands/s"),
            "refused_after_retries": Measured(sum(outcome.refused for outcome in outcomes), "commands"),
        },
        note=f"median of {rounds} alternating rounds of {seconds:g} s per run; "
        f"{WRITERS} processes on {multiprocessing.cpu_count()} cores",
    )


def run_same_network(ctx: RunContext) -> Result:
    """Compare four writers on one network with one writer, then check the network's invariants."""
    seconds = 8.0 if not ctx.quick else 1.5
    rounds = ctx.size(3, 1)
    plan = WriterPlan(seconds)
    url = new_database(ctx, "same")
    create_networks(url, ["shared"])
    single, four, outcomes = alternate_rounds(url, ["shared"], ["shared"] * WRITERS, plan, rounds)
    with ledger_on(url) as ledger:
        network = ledger.network("shared")
        violation = first_violation(network.net)
        containers = len(network.net.containers)
    values = {
        "one_writer": Measured(single, "commands/s"),
        "four_writers": Measured(four, "commands/s"),
        "conflict_retries": Measured(sum(outcome.retries for outcome in outcomes), "retries"),
        "turns_taken": Measured(sum(outcome.turns for outcome in outcomes), "turns"),
        "fewest_by_one_writer": Measured(min(outcome.commands for outcome in outcomes), "commands"),
        "most_by_one_writer": Measured(max(outcome.commands for outcome in outcomes), "commands"),
        "refused_after_retries": Measured(sum(outcome.refused for outcome in outcomes), "commands"),
        "invariant_violations": Measured(0 if violation is None else 1, "violations"),
        "containers_left": Measured(containers, "containers"),
    }
    if violation is None:
        note = "the reloaded network passes every invariant (no duplicate address)"
    else:
        note = f"INVARIANT BROKEN after concurrent writers: {violation}"
    return Result(
        key=SAME_KEY,
        what="total commands/s of four writer processes on one network over one writer",
        target=SAME_TARGET,
        ratio=four / single,
        values=values,
        note=f"{note}; median of {rounds} alternating rounds of {seconds:g} s per run",
    )
