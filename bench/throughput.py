"""command_throughput_ratio: ledger commands per second against a raw psycopg loop writing the same rows.

One writer runs container create and destroy through ``Ledger`` in this
process. The baseline inserts, per command, the rows that command stores
(three events for a create, two for a destroy, with the byte sizes of the
ledger's own stored events) into a plain table, one transaction per
command. Snapshots, which the ledger also writes now and then, are not
part of the baseline: they are one of the costs the ratio shows.
"""

from __future__ import annotations

import statistics
import uuid

import psycopg

from bench.common import Measured, Result, RunContext, Target, command_context, ledger_on, new_database, rate_for
from ledger.addresses import parse_range
from ledger.aggregate import network_id
from ledger.application import Ledger

KEY = "command_throughput_ratio"
TARGET = Target(">=", 0.8)
NETWORK = "throughput"
BASELINE_TABLE = """
CREATE TABLE bench_rows (
    id bigserial PRIMARY KEY,
    originator_id uuid NOT NULL,
    originator_version integer NOT NULL,
    topic text NOT NULL,
    state bytea NOT NULL
)
"""
INSERT_ROW = "INSERT INTO bench_rows (originator_id, originator_version, topic, state) VALUES (%s, %s, %s, %s)"
Row = tuple[str, bytes]


def run(ctx: RunContext) -> Result:
    """Measure both loops in alternating rounds and compare the median rates."""
    url = new_database(ctx, "throughput")
    seconds = 0.7 if ctx.quick else 4.0
    rounds = 3
    ledger_rates: list[float] = []
    raw_rates: list[float] = []
    with ledger_on(url) as ledger, psycopg.connect(url) as connection:
        create_rows, destroy_rows = command_rows(ledger, NETWORK)
        create_baseline_table(connection)
        for round_index in range(rounds):
            ledger_rates.append(ledger_rate(ledger, fresh_network(ledger, round_index), seconds))
            raw_rates.append(raw_rate(connection, seconds, create_rows, destroy_rows))
    ledger_median = statistics.median(ledger_rates)
    raw_median = statistics.median(raw_rates)
    create_bytes = sum(len(state) for _, state in create_rows)
    destroy_bytes = sum(len(state) for _, state in destroy_rows)
    return Result(
        key=KEY,
        what="create/destroy commands per second through Ledger, over a raw psycopg loop writing the same rows",
        target=TARGET,
        ratio=ledger_median / raw_median,
        values={
            "ledger": Measured(ledger_median, "commands/s"),
            "raw_psycopg": Measured(raw_median, "commands/s"),
            "create_rows_bytes": Measured(create_bytes, "bytes in 3 rows"),
            "destroy_rows_bytes": Measured(destroy_bytes, "bytes in 2 rows"),
        },
        note=f"median of {rounds} alternating rounds of {seconds:g} s each, each round on a new network; "
        "one writer; snapshots at the ledger's own interval",
    )


def fresh_network(ledger: Ledger, index: int) -> str:
    """Create a new network for one round and return its name.

    Each network records its recent requests in its snapshots, so a network
    slows down as it serves more commands (the history benchmark measures
    that). A new network per round keeps the rounds alike.
    """
    name = f"{NETWORK}-{index}"
    ledger.create_network(name, [parse_range("10.20.0.0/16")], [], "lowest", command_context())
    return name


def command_rows(ledger: Ledger, name: str) -> tuple[list[Row], list[Row]]:
    """Create network ``name``, run one create and one destroy, and return the rows each stored."""
    ledger.create_network(name, [parse_range("10.21.0.0/16")], [], "lowest", command_context())
    ledger.create_container(name, command_context(), "warm-up")
    ledger.destroy_container(name, "warm-up", command_context())
    stored = ledger.recorder.select_events(network_id(name))
    rows = [(event.topic, bytes(event.state)) for event in stored]
    # Version 1 is NetworkCreated, 2-4 the create, 5-6 the destroy.
    return rows[1:4], rows[4:6]


def create_baseline_table(connection: psycopg.Connection) -> None:
    connection.execute(BASELINE_TABLE)
    connection.commit()


def ledger_rate(ledger: Ledger, network: str, seconds: float) -> float:
    """Return the commands per second of create-then-destroy on ``network`` through ``ledger`` over ``seconds``."""

    def step(index: int) -> int:
        container_id = f"c{index}"
        ledger.create_container(network, command_context(), container_id)
        ledger.destroy_container(network, container_id, command_context())
        return 2

    commands, elapsed = rate_for(seconds, step)
    return commands / elapsed


def raw_rate(connection: psycopg.Connection, seconds: float, create_rows: list[Row], destroy_rows: list[Row]) -> float:
    """Return the commands per second of inserting each command's rows in a transaction of its own."""
    stream = uuid.uuid4()
    version = 0

    def insert(rows: list[Row]) -> None:
        nonlocal version
        params = []
        for topic, state in rows:
            version += 1
            params.append((stream, version, topic, state))
        with connection.transaction(), connection.cursor() as cursor:
            cursor.executemany(INSERT_ROW, params)

    def step(_: int) -> int:
        insert(create_rows)
        insert(destroy_rows)
        return 2

    commands, elapsed = rate_for(seconds, step)
    return commands / elapsed
