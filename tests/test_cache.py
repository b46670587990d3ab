"""A Ledger keeps networks in memory between commands and stays correct.

Two Ledger objects on one store stand for two processes: each caches what
it last saw, and the other one changes the store behind its back.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ledger import errors
from ledger.addresses import parse_range
from ledger.aggregate import CommandContext, Network
from ledger import application
from ledger.application import Ledger
from ledger.storage import environment_for
from tests.reliability_support import replay_checking_invariants, stored_events


def context(request_id: str) -> CommandContext:
    return CommandContext(actor="test", request_id=request_id)


@pytest.fixture
def pair(db_url: str) -> Iterator[tuple[Ledger, Ledger]]:
    first = Ledger(env=environment_for(db_url))
    second = Ledger(env=environment_for(db_url))
    first.create_network("web", [parse_range("10.1.0.0/29")], [], "lowest", context("network"))
    yield first, second
    first.close()
    second.close()


def test_stale_command_checked_again(db_url: str, pair: tuple[Ledger, Ledger]) -> None:
    first, second = pair
    first.create_container("web", context("a"), "a")  # first now caches the network
    second.create_container("web", context("b"), "b")

    c = first.create_container("web", context("c"), "c")

    assert first.conflict_retries == 1
    assert (str(c.ip), str(c.gw)) == ("10.1.0.5", "10.1.0.6")
    final = replay_checking_invariants(stored_events(db_url))["web"].net
    assert sorted(final.containers) == ["a", "b", "c"]


def test_stale_refusal_checked_again(pair: tuple[Ledger, Ledger]) -> None:
    first, second = pair
    first.create_container("web", context("a"), "a")
    second.destroy_container("web", "a", context("destroy-a"))

    # The cached network still contains "a"; the store does not.
    again = first.create_container("web", context("a-again"), "a")

    assert str(again.ip) == "10.1.0.1"


def test_refusal_raised_when_store_agrees(pair: tuple[Ledger, Ledger]) -> None:
    first, second = pair
    first.create_container("web", context("a"), "a")
    second.create_container("web", context("b"), "b")
    count = first.event_count()

    with pytest.raises(errors.ContainerExists):
        first.create_container("web", context("b-again"), "b")
    assert first.event_count() == count


def test_query_reads_other_writers_events(pair: tuple[Ledger, Ledger]) -> None:
    first, second = pair
    assert first.network("web").version == 1
    second.create_container("web", context("b"), "b")

    network = first.network("web")

    assert network.version == 4
    assert "b" in network.net.containers


def test_failed_command_leaves_no_events(
    db_url: str, pair: tuple[Ledger, Ledger], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _ = pair
    first.create_container("web", context("a"), "a")
    original = Network.decide_create_from_pool

    def apply_then_fail(self: Network, container_id: str, ctx: CommandContext) -> object:
        # The cached aggregate changes, as when a command's events are applied and their append then fails.
        _, events = original(self, container_id, ctx)
        self.apply_new(events)
        raise RuntimeError("lost the connection after the command ran")

    monkeypatch.setattr(Network, "decide_create_from_pool", apply_then_fail)
    with pytest.raises(RuntimeError):
        first.create_container("web", context("b"), "b")
    monkeypatch.undo()

    c = first.create_container("web", context("c"), "c")

    assert (str(c.ip), str(c.gw)) == ("10.1.0.3", "10.1.0.4")
    assert "b" not in first.network("web").net.containers
    final = replay_checking_invariants(stored_events(db_url))["web"].net
    assert sorted(final.containers) == ["a", "c"]


def test_contended_network_read_before_commands(
    db_url: str, pair: tuple[Ledger, Ledger], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = pair
    second.create_container("web", context("s0"), "s0")  # second now caches the network
    for n in range(3):
        first.create_container("web", context(f"fc{n}"), f"f{n}")
        first.destroy_container("web", f"f{n}", context(f"fd{n}"))
        second.create_container("web", context(f"sc{n}"), f"s{n + 1}")
        second.destroy_container("web", f"s{n + 1}", context(f"sd{n}"))

    # One collision marks the network as contended for second, which then
    # reads the new events before each command and collides no more.
    assert second.conflict_retries == 1
    # Past the window, second runs on its cached network again and collides.
    # On PostgreSQL, turns then end with each command, so that first does not hold one when second appends.
    monkeypatch.setattr(application, "CONTENDED_SECONDS", 0.0)
    monkeypatch.setattr(application, "TURN_LEASE", 0.0)
    second._contended_until.clear()
    first.create_container("web", context("x"), "x")
    second.create_container("web", context("y"), "y")
    assert second.conflict_retries == 2
    final = replay_checking_invariants(stored_events(db_url))["web"].net
    assert sorted(final.containers) == ["s0", "x", "y"]
