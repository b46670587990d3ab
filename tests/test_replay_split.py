"""``netledger replay`` at a point inside one command's events notes the split.

The history is the fourteen events of ``tests.test_history``: positions 2-4
create a1, 9-10 destroy a1, 11-12 are db's ``pool allocate --two`` and
13-14 create s1.
"""

from __future__ import annotations

from tests.test_history import A1, A2, at, run, run_json
from tests.test_history import history_url  # noqa: F401  (the fixture the tests take)


def test_replay_inside_destroy_notes_split(history_url: str) -> None:
    state = run_json("replay", "web", "--db", history_url, "--position", "9")

    split = state["split_command"]
    assert state["containers"] == [A2]
    assert state["allocated"] == ["10.0.0.1-10.0.0.4"]
    assert (split["first_position"], split["last_position"]) == (9, 10)
    assert (split["applied_events"], split["events"]) == (1, 2)
    assert split["request_id"]


def test_replay_split_text_names_positions(history_url: str) -> None:
    result = run("replay", "web", "--db", history_url, "--position", "3")
    request_id = run_json("replay", "web", "--db", history_url, "--position", "3")["split_command"]["request_id"]

    assert result.exit_code == 0
    assert result.stdout.splitlines()[1:3] == [
        f"note: position 3 falls inside request {request_id} (positions 2 to 4): 2 of its 3 events are applied, "
        "a state no reader saw, because a command's events are committed together.",
        "      --position 1 shows the state before that command, --position 4 the state after it.",
    ]


def test_replay_at_time_inside_command(history_url: str) -> None:
    state = run_json("replay", "web", "--db", history_url, "--at", at(9))

    assert state["last_position"] == 9
    assert (state["split_command"]["first_position"], state["split_command"]["last_position"]) == (9, 10)


def test_replay_split_skips_other_networks(history_url: str) -> None:
    state = run_json("replay", "db", "--db", history_url, "--position", "11")

    assert (state["split_command"]["first_position"], state["split_command"]["last_position"]) == (11, 12)
    assert (state["split_command"]["applied_events"], state["split_command"]["events"]) == (1, 2)


def test_replay_between_commands_has_no_note(history_url: str) -> None:
    for position in ("4", "8", "10", "12", "14"):
        state = run_json("replay", "web", "--db", history_url, "--position", position)
        text = run("replay", "web", "--db", history_url, "--position", position).stdout

        assert state["split_command"] is None, position
        assert "note:" not in text, position
    assert run_json("replay", "web", "--db", history_url, "--position", "4")["containers"] == [A1]
