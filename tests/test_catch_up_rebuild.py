"""A catch-up far behind the log rebuilds the read models instead.

A catch-up applies each event with a few statements against the database,
a rebuild folds the whole log in memory and is several times faster per
event. ``ReadModels.catch_up`` therefore rebuilds a read model that is
``REBUILD_FROM`` or more events, and at least 1/``rebuild_share`` of the
log, behind. These tests lower the threshold and check that both ways
give the same rows and that a small backlog is caught up. A role that
does not own the read models' tables catches up instead, and its
explicit rebuild fails at once with advice.
"""

from __future__ import annotations

from typing import Any

import pytest

import projections.runner
from ledger.addresses import parse_range
from ledger.aggregate import CommandContext
from ledger.application import Ledger
from ledger.errors import StorageError
from ledger.storage import environment_for
from projections.compare import compare_stored
from projections.runner import NAMES, ReadModels
from tests.pgserver import writer_login

COMMANDS = 30


def context(request_id: str) -> CommandContext:
    return CommandContext(actor="catch-up-test", request_id=request_id)


def fill(ledger: Ledger, network: str, commands: int) -> None:
    for number in range(commands):
        ledger.create_container(network, context(f"{network}-{number}"), f"{network}-{number}")


def filled_ledger(url: str) -> Ledger:
    """Return a ledger on ``url`` whose network web holds COMMANDS containers."""
    ledger = Ledger(env=environment_for(url))
    ledger.create_network("web", [parse_range("10.6.0.0/24")], [], "lowest", context("web"))
    fill(ledger, "web", COMMANDS)
    return ledger


@pytest.fixture
def low_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lower the rebuild threshold to 20 events, so a short log counts as far behind."""
    monkeypatch.setattr(projections.runner, "REBUILD_FROM", 20)


def counting_rebuilds(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    rebuilt: list[list[str]] = []
    rebuild = ReadModels.rebuild

    def counting(self: ReadModels, names: list[str], progress: Any = None) -> dict[str, int]:
        rebuilt.append(list(names))
        return rebuild(self, names, progress)

    monkeypatch.setattr(ReadModels, "rebuild", counting)
    return rebuilt


def test_far_behind_models_are_rebuilt(db_url: str, monkeypatch: pytest.MonkeyPatch, low_threshold: None) -> None:
    ledger = filled_ledger(db_url)
    models = ReadModels(ledger)
    rebuilt = counting_rebuilds(monkeypatch)

    applied = models.catch_up()

    assert rebuilt == [list(NAMES)]
    assert applied == dict.fromkeys(NAMES, ledger.event_count())
    assert compare_stored(models) is None
    ledger.close()


def test_small_backlog_is_caught_up(db_url: str, monkeypatch: pytest.MonkeyPatch, low_threshold: None) -> None:
    ledger = filled_ledger(db_url)
    models = ReadModels(ledger)
    models.catch_up()
    before = ledger.event_count()
    # A few more events: under the threshold, and a small share of the log.
    ledger.create_container("web", context("late"), "late")
    rebuilt = counting_rebuilds(monkeypatch)

    applied = models.catch_up()

    assert rebuilt == []
    assert applied == dict.fromkeys(NAMES, ledger.event_count() - before)
    assert compare_stored(models) is None
    ledger.close()


@pytest.mark.postgres
def test_role_without_ownership_catches_up(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, low_threshold: None
) -> None:
    owner = Ledger(env=environment_for(postgres_url))
    owner.create_network("web", [parse_range("10.6.0.0/24")], [], "lowest", context("web"))
    ReadModels(owner).catch_up()
    fill(owner, "web", COMMANDS)
    try:
        with writer_login(postgres_url) as as_login:
            ledger = Ledger(env=environment_for(as_login + "?create_tables=no"))
            models = ReadModels(ledger)
            rebuilt = counting_rebuilds(monkeypatch)

            applied = models.catch_up()
            rebuilt_by_catch_up = list(rebuilt)
            with pytest.raises(StorageError) as denied:
                models.rebuild(list(NAMES))
            ledger.close()
    finally:
        owner.close()

    assert rebuilt_by_catch_up == []
    assert applied == dict.fromkeys(NAMES, COMMANDS * 3)
    assert "does not own their tables" in str(denied.value)
    assert "run it as the tables' owner" in str(denied.value)


@pytest.mark.parametrize(
    ("head", "position", "share", "expected"),
    [
        (30_000, 28_000, 15, True),
        (30_001, 28_001, 15, False),
        (30_000, 28_000, 3, False),
        (6_000, 4_000, 3, True),
        (1_999, 0, 15, False),
    ],
)
def test_rebuild_threshold_follows_share(head: int, position: int, share: int, expected: bool) -> None:
    from projections.runner import _worth_rebuilding

    assert _worth_rebuilding(head, position, share) is expected
