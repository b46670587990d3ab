"""Writers of one PostgreSQL network take turns once they collide.

A writer whose append collided takes the network's turn before its next
commands: it waits for the turn, reads the events it missed, and appends
(``OrderedInsertRecorder.take_turn``). It keeps the turn for a few
milliseconds of commands (``TURN_LEASE``). These tests check what a turn
promises: an append without the turn stores nothing while another writer
holds it, a writer that waited reads every event stored up to the moment
it got the turn, the turn's last append ends it, a turn that its writer stops
using ends by itself, a lost connection ends it, a holder that stopped delays
the other writers but does not stop them, a database without the turn's
function means no turns, and writers that collide end up taking turns
with no address given twice.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent

from ledger.addresses import parse_range
from ledger.aggregate import CommandContext, network_id
from ledger.application import Ledger
from ledger.invariants import first_violation
from ledger.pgstore import TURN_CLASS, Turn, TurnTaken
from ledger.storage import environment_for

pytestmark = pytest.mark.postgres

NETWORK = "net"
CREATE_EVENTS = 3
WRITERS = 4
COMMANDS_PER_WRITER = 20


def context(request_id: str) -> CommandContext:
    return CommandContext(actor="turn-test", request_id=request_id)


def open_ledger(url: str, create: bool = False) -> Ledger:
    ledger = Ledger(env=environment_for(url))
    if create:
        ledger.create_network(NETWORK, [parse_range("10.4.0.0/24")], [], "lowest", context("net"))
    return ledger


def stored_create(ledger: Ledger, container_id: str) -> list[StoredEvent]:
    """Return the stored events of creating a container on the up-to-date network, without appending them."""
    network = ledger.network(NETWORK)
    _, events = network.decide_create_from_pool(container_id, context(container_id))
    return [ledger.mapper.to_stored_event(event) for event in events]


def take_turn(ledger: Ledger) -> Turn | None:
    network = ledger.network(NETWORK)
    return ledger.recorder.take_turn(network.id, network.version)


def turn_locks(url: str, granted: bool) -> int:
    """Return how many sessions hold (or wait for) a turn lock in the test's database."""
    with psycopg.connect(url, autocommit=True) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid::bigint = %s AND granted = %s "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (TURN_CLASS, granted),
        ).fetchone()
    return 0 if row is None else int(row[0])


def wait_for(condition: Any, description: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {description}"
        time.sleep(0.01)


def test_append_without_the_turn_stores_nothing(postgres_url: str) -> None:
    holder = open_ledger(postgres_url, create=True)
    other = open_ledger(postgres_url)
    turn = take_turn(holder)
    assert turn is not None and turn.missed == []
    stored = stored_create(other, "late")
    before = other.event_count()

    with pytest.raises(TurnTaken):
        other.recorder.insert_events(stored)

    assert other.event_count() == before
    turn.end()
    assert len(other.recorder.insert_events(stored)) == CREATE_EVENTS
    holder.close()
    other.close()


def test_waiting_writer_reads_what_the_holder_stored(postgres_url: str) -> None:
    holder = open_ledger(postgres_url, create=True)
    waiter = open_ledger(postgres_url)
    version = waiter.network(NETWORK).version
    turn = take_turn(holder)
    assert turn is not None
    waited: list[Turn | None] = []
    waiting = threading.Thread(target=lambda: waited.append(waiter.recorder.take_turn(network_id(NETWORK), version)))
    waiting.start()
    wait_for(lambda: turn_locks(postgres_url, granted=False) == 1, "the second writer to wait for the turn")

    turn.insert_events(stored_create(holder, "first"))
    turn.insert_events(stored_create(holder, "second"), end=True)
    waiting.join(timeout=30)

    assert turn.ended
    [second_turn] = waited
    assert second_turn is not None
    assert [event.originator_version for event in second_turn.missed] == list(
        range(version + 1, version + 1 + 2 * CREATE_EVENTS)
    )
    assert turn_locks(postgres_url, granted=True) == 1
    second_turn.end()
    assert turn_locks(postgres_url, granted=True) == 0
    holder.close()
    waiter.close()


def test_last_append_prepares_its_statement(postgres_url: str) -> None:
    holder = open_ledger(postgres_url, create=True)
    turn = take_turn(holder)
    assert turn is not None
    connection = turn.connection
    connection.execute("DEALLOCATE ALL")
    before = holder.event_count()

    # Sent in one round trip with the release, the append finds no prepared statement and is sent again alone.
    ids = turn.insert_events(stored_create(holder, "a"), end=True)

    assert len(ids) == CREATE_EVENTS
    assert holder.event_count() == before + CREATE_EVENTS
    assert turn.ended
    assert turn_locks(postgres_url, granted=True) == 0
    names = [row["name"] for row in connection.execute("SELECT name FROM pg_prepared_statements").fetchall()]
    assert "netledger_append_in_turn" in names
    holder.close()


def test_turn_not_free_in_time_gives_none(postgres_url: str) -> None:
    holder = open_ledger(postgres_url, create=True)
    other = open_ledger(postgres_url)
    turn = take_turn(holder)
    assert turn is not None
    other.recorder.turn_timeout = 0.2

    assert take_turn(other) is None

    turn.end()
    later = take_turn(other)
    assert later is not None
    later.end()
    holder.close()
    other.close()


def test_stopped_holder_delays_writers_once(postgres_url: str) -> None:
    holder = open_ledger(postgres_url, create=True)
    other = open_ledger(postgres_url)
    # A turn taken and never used nor ended, as by a process suspended in its turn.
    stuck = take_turn(holder)
    assert stuck is not None
    other.recorder.turn_timeout = 0.2
    other._contended_until[network_id(NETWORK)] = time.monotonic() + 60

    first = other.create_container(NETWORK, context("a"), "a")
    second = other.create_container(NETWORK, context("b"), "b")

    assert (str(first.ip), str(second.ip)) == ("10.4.0.1", "10.4.0.3")
    assert other.turns_taken == 0
    assert other.conflict_retries == 0
    stuck.end()
    holder.close()
    other.close()


def test_unused_turn_ends_by_itself(postgres_url: str) -> None:
    holder = open_ledger(postgres_url, create=True)
    other = open_ledger(postgres_url)
    holder._contended_until[network_id(NETWORK)] = time.monotonic() + 60
    holder.create_container(NETWORK, context("a"), "a")
    assert holder.turns_taken == 1

    # The holder sends no more commands; its turn ends within twice TURN_LEASE, far below this wait.
    other.recorder.turn_timeout = 10
    turn = take_turn(other)

    assert turn is not None
    assert [event.originator_version for event in turn.missed] == []
    turn.end()
    holder.close()
    other.close()


def test_lost_connection_ends_the_turn(postgres_url: str) -> None:
    holder = open_ledger(postgres_url, create=True)
    other = open_ledger(postgres_url)
    turn = take_turn(holder)
    assert turn is not None
    stored = stored_create(holder, "a")
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("SELECT pg_terminate_backend(%s)", (turn.connection.info.backend_pid,))
    other_turn = take_turn(other)
    assert other_turn is not None

    # The holder's append finds its connection lost and appends without a turn, which the other writer holds.
    with pytest.raises(IntegrityError):
        turn.insert_events(stored)

    assert turn.ended
    other_turn.end()
    holder.close()
    other.close()


def test_one_connection_pool_takes_no_turns(postgres_url: str) -> None:
    # A turn keeps a connection between commands, and a snapshot written meanwhile would wait for another.
    ledger = Ledger(env={**environment_for(postgres_url), "POSTGRES_POOL_SIZE": "1", "POSTGRES_MAX_OVERFLOW": "0"})
    ledger.create_network(NETWORK, [parse_range("10.4.0.0/24")], [], "lowest", context("net"))
    ledger._contended_until[network_id(NETWORK)] = time.monotonic() + 60

    created = ledger.create_container(NETWORK, context("a"), "a")

    assert str(created.ip) == "10.4.0.1"
    assert ledger.turns_taken == 0
    ledger.close()


def test_missing_turn_function_means_no_turns(postgres_url: str, caplog: pytest.LogCaptureFixture) -> None:
    # A database set up by a version without turns, opened by a role that may not create functions.
    open_ledger(postgres_url, create=True).close()
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("DROP FUNCTION netledger_take_turn_uuid(uuid, bigint, integer, integer)")
    ledger = Ledger(env=environment_for(postgres_url + "?create_tables=no"))
    ledger._contended_until[network_id(NETWORK)] = time.monotonic() + 60

    first = ledger.create_container(NETWORK, context("a"), "a")
    second = ledger.create_container(NETWORK, context("b"), "b")

    assert (str(first.ip), str(second.ip)) == ("10.4.0.1", "10.4.0.3")
    assert ledger.turns_taken == 0
    warnings = [record.getMessage() for record in caplog.records if "take no turns" in record.getMessage()]
    assert len(warnings) == 1
    assert "run 'netledger db init'" in warnings[0]
    ledger.close()


def test_colliding_writers_take_turns(postgres_url: str) -> None:
    first = open_ledger(postgres_url, create=True)
    ledgers = [first] + [open_ledger(postgres_url) for _ in range(WRITERS - 1)]
    for ledger in ledgers:
        ledger.network(NETWORK)
    # Every writer but the first now has a network one command behind, so its first append collides.
    first.create_container(NETWORK, context("head-start"), "head-start")
    failures: list[BaseException] = []

    def run(index: int, ledger: Ledger) -> None:
        try:
            for number in range(COMMANDS_PER_WRITER):
                container_id = f"w{index}-{number}"
                ledger.create_container(NETWORK, context(container_id), container_id)
        except BaseException as error:  # reported by the test below
            failures.append(error)

    threads = [threading.Thread(target=run, args=(index, ledger)) for index, ledger in enumerate(ledgers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert failures == []
    assert sum(ledger.turns_taken for ledger in ledgers[1:]) >= WRITERS - 1
    network = open_ledger(postgres_url).network(NETWORK)
    assert len(network.net.containers) == 1 + WRITERS * COMMANDS_PER_WRITER
    assert first_violation(network.net) is None
    for ledger in ledgers:
        ledger.close()
    assert turn_locks(postgres_url, granted=True) == 0
