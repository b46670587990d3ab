"""``netledger verify`` over untouched and tampered history, on both stores.

Each test builds the fourteen-event history described in ``tests.test_history``
and then changes the stored rows directly, as an administrator with write
access to the database could: editing a row's JSON, deleting, copying or
swapping rows, or renumbering positions. ``verify`` must name the first
position where the history stops adding up.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import uuid
from datetime import datetime
from typing import Any

import psycopg
import pytest

from ledger.addresses import parse_range
from ledger.application import Ledger
from ledger.chain import event_digest, payload_of
from ledger.storage import environment_for
from tests.test_history import build_history, context, minute_clock, run


class StoredRows:
    """The events and snapshots tables of one store, reached with the database's own driver."""

    def __init__(self, url: str) -> None:
        if url.startswith("sqlite:///"):
            self.connection: Any = sqlite3.connect(url[len("sqlite:///") :], isolation_level=None)
            self.events, self.snapshots, self.position, self.mark = "stored_events", "stored_snapshots", "rowid", "?"
        else:
            self.connection = psycopg.connect(url, autocommit=True)
            self.events, self.snapshots = "netledger_events", "netledger_snapshots"
            self.position, self.mark = "notification_id", "%s"

    def execute(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        cursor = self.connection.execute(sql.replace("?", self.mark), params)
        return list(cursor.fetchall()) if cursor.description else []

    def row(self, position: int) -> tuple[Any, int, str, bytes]:
        (row,) = self.execute(
            f"SELECT originator_id, originator_version, topic, state FROM {self.events} WHERE {self.position} = ?",
            position,
        )
        return row[0], row[1], row[2], bytes(row[3])

    def state(self, position: int) -> bytes:
        return self.row(position)[3]

    def set_state(self, position: int, state: bytes, topic: str | None = None) -> None:
        topic = topic if topic is not None else self.row(position)[2]
        self.execute(f"UPDATE {self.events} SET state = ?, topic = ? WHERE {self.position} = ?", state, topic, position)

    def delete(self, *positions: int) -> None:
        for position in positions:
            self.execute(f"DELETE FROM {self.events} WHERE {self.position} = ?", position)

    def copy_as_version(self, position: int, version: int) -> None:
        """Store a copy of the row at ``position`` as a new row with ``version``, at the next position."""
        originator_id, _, topic, state = self.row(position)
        self.execute(
            f"INSERT INTO {self.events} (originator_id, originator_version, topic, state) VALUES (?, ?, ?, ?)",
            originator_id, version, topic, state,
        )

    def swap_positions(self, first: int, second: int) -> None:
        self.execute(f"UPDATE {self.events} SET {self.position} = -1 WHERE {self.position} = ?", first)
        self.execute(f"UPDATE {self.events} SET {self.position} = ? WHERE {self.position} = ?", first, second)
        self.execute(f"UPDATE {self.events} SET {self.position} = ? WHERE {self.position} = -1", second)

    def replace_in_snapshot(self, version: int, old: bytes, new: bytes) -> None:
        (row,) = self.execute(f"SELECT state FROM {self.snapshots} WHERE originator_version = ?", version)
        state = bytes(row[0])
        assert old in state
        self.execute(f"UPDATE {self.snapshots} SET state = ? WHERE originator_version = ?", state.replace(old, new), version)

    def close(self) -> None:
        self.connection.close()


@pytest.fixture
def rows(db_url: str) -> Any:
    with minute_clock():
        build_history(db_url)
    stored = StoredRows(db_url)
    yield stored
    stored.close()


@pytest.fixture
def sqlite_rows(sqlite_url: str) -> Any:
    """The history on SQLite only, for checks whose logic does not depend on the store."""
    with minute_clock():
        build_history(sqlite_url)
    stored = StoredRows(sqlite_url)
    yield stored
    stored.close()


def verify_json(url: str, *args: str) -> tuple[int, dict[str, Any]]:
    result = run("verify", *args, "--db", url, "--json")
    return result.exit_code, json.loads(result.stdout)


def first_problem(url: str) -> dict[str, Any]:
    exit_code, report = verify_json(url)
    assert exit_code == 1, report
    assert report["ok"] is False
    return report["first_problem"]


def forge(rows: StoredRows, position: int, previous_digest: str, **changes: Any) -> None:
    """Edit an event's fields and store a digest recomputed to fit them, as a careful forger would."""
    originator_id, version, topic, state = rows.row(position)
    document = json.loads(state)
    document.update(changes)
    timestamp = datetime.fromisoformat(document["timestamp"]["_data_"])
    document["digest"] = event_digest(
        previous_digest, topic.split(":")[1], uuid.UUID(str(originator_id)), version, timestamp, payload_of(document)
    )
    rows.set_state(position, json.dumps(document).encode())


def digest_at(rows: StoredRows, position: int) -> str:
    return json.loads(rows.state(position))["digest"]


def test_verify_passes_untouched_history(rows: StoredRows, db_url: str) -> None:
    exit_code, report = verify_json(db_url)
    assert exit_code == 0
    assert report["ok"] is True
    assert report["events"] == 14
    assert report["problems"] == []
    assert [(n["name"], n["version"]) for n in report["networks"]] == [("web", 11), ("db", 3)]
    assert report["networks"][0]["head_digest"] == digest_at(rows, 14)
    assert report["projections"] == "match a replay"
    assert report["projections_compared"] is True


def test_verify_text_summary(sqlite_rows: StoredRows, sqlite_url: str) -> None:
    result = run("verify", "--db", sqlite_url)
    assert result.exit_code == 0
    assert result.stdout.splitlines()[:3] == [
        "verified 2 networks and 14 events: no problem found",
        "projections: match a replay",
        "head digests (record them outside the database to detect a later rewrite):",
    ]
    assert result.stdout.splitlines()[3] == f"  web: version 11 {digest_at(sqlite_rows, 14)}"


def test_projection_difference_fails_verify(sqlite_rows: StoredRows, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import projections

    calls = []

    def differing(ledger: Any, network: Any) -> str:
        calls.append(network)
        return "read model free at position 14 differs from a replay of the log: network web"

    monkeypatch.setattr(projections, "compare_with_replay", differing)
    result = run("verify", "web", "--db", sqlite_url)
    assert result.exit_code == 1
    assert calls == ["web"]
    assert result.stdout.splitlines()[:2] == [
        "verify failed: read models differ from a replay: read model free at position 14 differs "
        "from a replay of the log: network web",
        "projections: differ from a replay",
    ]


def test_projections_comparison_failure(
    sqlite_rows: StoredRows, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import projections

    def failing(ledger: Any, network: Any) -> None:
        raise RuntimeError("read model tables are locked\nsecond line")

    monkeypatch.setattr(projections, "compare_with_replay", failing)
    exit_code, report = verify_json(sqlite_url)
    text = run("verify", "--db", sqlite_url)

    assert exit_code == 1
    assert report["ok"] is False
    assert report["problems"] == []
    assert report["projections_compared"] is False
    assert report["projections"] == "not checked (the comparison failed: RuntimeError: read model tables are locked)"
    assert text.exit_code == 1
    assert text.stdout.splitlines()[:2] == [
        "verify incomplete: 2 networks and 14 events have no problem, but the read models were not compared "
        "with a replay",
        "projections: not checked (the comparison failed: RuntimeError: read model tables are locked)",
    ]


def test_projections_module_missing(sqlite_rows: StoredRows, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "projections", None)
    exit_code, report = verify_json(sqlite_url)
    assert exit_code == 1
    assert report["ok"] is False
    assert report["projections_compared"] is False
    assert report["projections"] == "not checked (module missing)"


def test_projections_skipped_on_bad_history(sqlite_rows: StoredRows, sqlite_url: str) -> None:
    sqlite_rows.delete(7)
    exit_code, report = verify_json(sqlite_url)
    assert exit_code == 1
    assert report["projections"] == "not checked (the history has problems)"


def test_edited_payload_fails_digest(rows: StoredRows, db_url: str) -> None:
    rows.set_state(6, rows.state(6).replace(b'"10.0.0.3"', b'"10.0.0.9"'))
    problem = first_problem(db_url)
    assert (problem["network"], problem["position"], problem["version"]) == ("web", 6, 5)
    assert "does not match" in problem["message"]


def test_forged_digest_breaks_next_link(rows: StoredRows, db_url: str) -> None:
    forge(rows, 9, digest_at(rows, 8), actor="mallory")
    problem = first_problem(db_url)
    assert (problem["position"], problem["version"]) == (10, 9)
    assert "does not match" in problem["message"]


def test_undecodable_json_reported(rows: StoredRows, db_url: str) -> None:
    rows.set_state(7, rows.state(7)[:-7])
    problem = first_problem(db_url)
    assert (problem["network"], problem["position"]) == ("web", 7)
    assert problem["message"].startswith("cannot be decoded")


def test_non_utf8_state_reported_on_sqlite(sqlite_rows: StoredRows, sqlite_url: str) -> None:
    # Text that is not UTF-8 makes SQLite's driver fail the whole page that contains it.
    sqlite_rows.execute("UPDATE stored_events SET state = CAST(X'00ff00ff' || substr(state, 5) AS TEXT) WHERE rowid = 7")
    problem = first_problem(sqlite_url)
    assert problem["position"] == 7
    assert "Could not decode to UTF-8 column 'state'" in problem["message"]


def test_empty_state_names_missing_field(rows: StoredRows, db_url: str) -> None:
    rows.set_state(7, b"{}")
    problem = first_problem(db_url)
    assert (problem["network"], problem["position"]) == ("web", 7)
    assert problem["message"] == "cannot be decoded: field timestamp is missing"


def test_deleted_event_is_reported_at_next(rows: StoredRows, db_url: str) -> None:
    rows.delete(7)
    problem = first_problem(db_url)
    assert (problem["network"], problem["position"], problem["version"]) == ("web", 8, 7)
    assert problem["message"] == "version 6 is missing before this event: stored events were deleted or moved"


def test_deleted_network_created_is_reported(rows: StoredRows, db_url: str) -> None:
    rows.delete(5)
    problem = first_problem(db_url)
    assert (problem["position"], problem["version"]) == (11, 2)
    assert problem["message"].startswith("version 1 is missing")


def test_deleted_newest_event_reported(rows: StoredRows, db_url: str) -> None:
    rows.delete(14)
    problem = first_problem(db_url)
    assert (problem["network"], problem["position"], problem["version"]) == ("web", 13, 10)
    assert problem["message"].startswith("the stream ends inside a command: ContainerCreated for container s1")


def test_copied_row_at_later_version(rows: StoredRows, db_url: str) -> None:
    rows.copy_as_version(14, 12)
    problem = first_problem(db_url)
    assert (problem["network"], problem["position"], problem["version"]) == ("web", 15, 12)
    assert "does not match" in problem["message"]


def test_swapped_payloads_same_type(rows: StoredRows, db_url: str) -> None:
    first, second = rows.state(2), rows.state(6)
    rows.set_state(2, second)
    rows.set_state(6, first)
    problem = first_problem(db_url)
    assert (problem["position"], problem["version"]) == (2, 2)
    assert "does not match" in problem["message"]


def test_swapped_rows_of_one_command(rows: StoredRows, db_url: str) -> None:
    _, _, topic_9, state_9 = rows.row(9)
    _, _, topic_10, state_10 = rows.row(10)
    rows.set_state(9, state_10, topic_10)
    rows.set_state(10, state_9, topic_9)
    problem = first_problem(db_url)
    assert (problem["position"], problem["version"]) == (9, 8)
    assert "does not match" in problem["message"]


def test_reordered_positions(rows: StoredRows, db_url: str) -> None:
    rows.swap_positions(6, 8)
    problem = first_problem(db_url)
    assert (problem["network"], problem["position"], problem["version"]) == ("web", 6, 7)
    assert problem["message"] == "version 5 to 6 is missing before this event: stored events were deleted or moved"


def test_unknown_topic_is_not_imported(rows: StoredRows, db_url: str) -> None:
    rows.set_state(3, rows.state(3), "antigravity:fly")
    problem = first_problem(db_url)
    assert problem["position"] == 3
    assert problem["message"] == "has unknown type 'antigravity:fly'"


def test_forged_chain_still_fails_invariant(sqlite_rows: StoredRows, sqlite_url: str) -> None:
    forge(sqlite_rows, 14, digest_at(sqlite_rows, 13), gw="10.0.0.3")
    problem = first_problem(sqlite_url)
    assert (problem["position"], problem["version"]) == (14, 11)
    assert problem["message"] == (
        "network web: address 10.0.0.3 is the gateway of container s1 and the ip of container a2"
    )


def test_forged_chain_fails_precondition(sqlite_rows: StoredRows, sqlite_url: str) -> None:
    forge(sqlite_rows, 12, digest_at(sqlite_rows, 11), gw="10.1.0.1")
    problem = first_problem(sqlite_url)
    assert (problem["network"], problem["position"]) == ("db", 12)
    assert problem["message"] == "GatewayAllocated takes '10.1.0.1', which is not a free address of the pool"


def test_forged_command_shape(sqlite_rows: StoredRows, sqlite_url: str) -> None:
    forge(sqlite_rows, 10, digest_at(sqlite_rows, 9), container_id=None)
    problem = first_problem(sqlite_url)
    assert (problem["position"], problem["version"]) == (10, 9)
    request_id = json.loads(sqlite_rows.state(9))["request_id"]
    assert problem["message"] == (
        f"request {request_id} needs AddressesReleased for container a1 next, but this is "
        f"AddressesReleased for container None of request {request_id}: "
        "an event of that command is missing or was changed"
    )


def test_forged_chain_orphan_container(sqlite_rows: StoredRows, sqlite_url: str) -> None:
    forge(sqlite_rows, 13, digest_at(sqlite_rows, 10), container_id=None)
    forge(sqlite_rows, 14, digest_at(sqlite_rows, 13))
    problem = first_problem(sqlite_url)
    assert (problem["position"], problem["version"]) == (14, 11)
    assert problem["message"] == "ContainerCreated for container s1 does not follow the events that begin its command"


def test_first_problem_across_networks(rows: StoredRows, db_url: str) -> None:
    rows.set_state(12, rows.state(12).replace(b'"bob"', b'"eve"'))
    rows.set_state(13, rows.state(13).replace(b'"alice"', b'"eve"'))
    exit_code, report = verify_json(db_url)
    assert exit_code == 1
    assert [(p["network"], p["position"]) for p in report["problems"]] == [("db", 12), ("web", 13)]
    result = run("verify", "--db", db_url)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("verify failed: network db, position 12 (version 3): stored digest")
    assert lines[1].startswith("also: network web, position 13 (version 10): stored digest")


def test_verify_one_network_ignores_others(rows: StoredRows, db_url: str) -> None:
    rows.set_state(12, rows.state(12)[:10])
    exit_code, report = verify_json(db_url, "web")
    # The history of web is intact, but the read models follow every network's
    # events, so the comparison stops at the broken event and the check is incomplete.
    assert exit_code == 1
    assert report["events"] == 11
    assert report["problems"] == []
    assert report["projections_compared"] is False
    assert report["projections"].startswith("not checked (the comparison failed: ")
    assert first_problem(db_url)["position"] == 12


def test_verify_unknown_network_is_refused(sqlite_rows: StoredRows, sqlite_url: str) -> None:
    result = run("verify", "nosuch", "--db", sqlite_url)
    assert result.exit_code == 1
    assert "network nosuch not found" in result.stderr


def test_reading_commands_name_the_unreadable_event(rows: StoredRows, db_url: str) -> None:
    rows.set_state(7, b"{not json")
    for args in (["events"], ["replay", "web", "--position", "9"], ["export", "--format", "jsonl"]):
        result = run(*args, "--db", db_url)
        assert result.exit_code == 3, args
        assert result.stderr.startswith("error: event at position 7 (version 6) cannot be decoded"), args


def test_sqlite_unparsable_stream_id_is_reported(sqlite_url: str) -> None:
    with minute_clock():
        build_history(sqlite_url)
    connection = sqlite3.connect(sqlite_url[len("sqlite:///") :])
    connection.execute("UPDATE stored_events SET originator_id = 'not-a-uuid' WHERE rowid = 9")
    connection.commit()
    connection.close()
    problem = first_problem(sqlite_url)
    assert problem["position"] == 9
    assert problem["message"].startswith("cannot be read: ValueError")


def test_sqlite_problem_before_unparsable_row(sqlite_rows: StoredRows, sqlite_url: str) -> None:
    sqlite_rows.set_state(3, sqlite_rows.state(3).replace(b'"alice"', b'"eve"'))
    sqlite_rows.execute("UPDATE stored_events SET originator_id = 'not-a-uuid' WHERE rowid = 9")
    exit_code, report = verify_json(sqlite_url)
    assert exit_code == 1
    assert [(p["network"], p["position"]) for p in report["problems"]] == [("web", 3), ("unknown", 9)]


def test_renamed_network_created_is_reported(sqlite_rows: StoredRows, sqlite_url: str) -> None:
    forge(sqlite_rows, 5, "", name="dbx")
    problem = first_problem(sqlite_url)
    assert problem["position"] == 5
    assert problem["message"].startswith("NetworkCreated names network 'dbx', whose stream id is not ")


def build_snapshotted(url: str, containers: int) -> None:
    """Record a network whose 100th event is a ContainerCreated, so the store contains a snapshot at version 100."""
    ledger = Ledger(env=environment_for(url))
    ledger.create_network("big", [parse_range("10.0.0.0/24")], [], "lowest", context("alice"))
    for number in range(containers):
        ledger.create_container("big", context("alice"), f"c{number}")
    ledger.close()


def test_edited_snapshot_differs_from_replay(db_url: str) -> None:
    build_snapshotted(db_url, 35)
    rows = StoredRows(db_url)
    # The snapshot stores addresses as offsets from the pool's first address, 10.0.0.1:
    # 10.0.0.5 becomes 10.0.0.250.
    rows.replace_in_snapshot(100, b",4,", b",249,")
    rows.close()
    problem = first_problem(db_url)
    assert (problem["network"], problem["position"], problem["version"]) == ("big", 100, 100)
    assert problem["message"].startswith("the stored snapshot at this version differs from the replayed state in containers")


def test_deleted_events_before_snapshot(db_url: str) -> None:
    build_snapshotted(db_url, 35)
    rows = StoredRows(db_url)
    rows.delete(*range(98, 107))
    rows.close()
    problem = first_problem(db_url)
    assert (problem["position"], problem["version"]) == (97, 97)
    assert problem["message"] == (
        "a snapshot exists at version 100 but the stream ends at version 97, so its newest events were deleted"
    )
