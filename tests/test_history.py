"""``netledger events``, ``replay``, ``diff`` and ``export`` over a known history, on both stores.

``build_history`` records fourteen events with a clock that advances one
minute per event, so every position and timestamp below is exact:

| position | network | version | event |
|---|---|---|---|
| 1 | web | 1 | NetworkCreated 10.0.0.0/24 (alice) |
| 2-4 | web | 2-4 | container a1: IpAllocated 10.0.0.1, GatewayAllocated 10.0.0.2, ContainerCreated (alice) |
| 5 | db | 1 | NetworkCreated 10.1.0.0/24 (bob) |
| 6-8 | web | 5-7 | container a2: 10.0.0.3, gateway 10.0.0.4 (alice) |
| 9-10 | web | 8-9 | destroy a1: ContainerDestroyed, AddressesReleased 10.0.0.1 10.0.0.2 (carol) |
| 11-12 | db | 2-3 | pool allocate --two: 10.1.0.1, 10.1.0.2 (bob) |
| 13-14 | web | 10-11 | container s1 in 192.168.5.0/24 at 192.168.5.10, gateway 10.0.0.1 (alice) |
"""

from __future__ import annotations

import csv
import hashlib
import io
import ipaddress
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from typer.testing import CliRunner

import eventsourcing.domain
from cli.main import app
from ledger.addresses import parse_range
from ledger.aggregate import CommandContext
from ledger.application import Ledger
from ledger.storage import environment_for
from tests import pgserver

START = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
runner = CliRunner()


def at(position: int) -> str:
    """Return the ISO timestamp that ``build_history`` gives the event at ``position``."""
    return (START + timedelta(minutes=position - 1)).isoformat()


@contextmanager
def minute_clock() -> Iterator[None]:
    """Make each new event's timestamp one minute after the previous one, from START."""
    ticks = iter(START + timedelta(minutes=n) for n in range(10_000))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(eventsourcing.domain, "datetime_now_with_tzinfo", lambda: next(ticks))
        yield


def context(actor: str, reason: str | None = None) -> CommandContext:
    return CommandContext(actor=actor, request_id=str(uuid.uuid4()), reason=reason)


def build_history(url: str) -> None:
    """Record the fourteen events of the table in this module's docstring."""
    ledger = Ledger(env=environment_for(url))
    ledger.create_network("web", [parse_range("10.0.0.0/24")], [], "lowest", context("alice"))
    ledger.create_container("web", context("alice"), "a1")
    ledger.create_network("db", [parse_range("10.1.0.0/24")], [], "lowest", context("bob"))
    ledger.create_container("web", context("alice"), "a2")
    ledger.destroy_container("web", "a1", context("carol", "decommissioned"))
    ledger.allocate("db", 2, context("bob"))
    subnet = ipaddress.ip_network("192.168.5.0/24")
    ledger.create_container("web", context("alice"), "s1", ipaddress.ip_address("192.168.5.10"), subnet)
    ledger.close()


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def history_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Return a store holding ``build_history``, shared by this module's tests, which only read it."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('history') / 'ledger.db'}"
        with minute_clock():
            build_history(url)
        yield url
        return
    server = request.getfixturevalue("postgres_server")
    name = f"netledger_test_{uuid.uuid4().hex[:12]}"
    pgserver.create_database(server, name)
    try:
        url = pgserver.with_database(server, name)
        with minute_clock():
            build_history(url)
        yield url
    finally:
        pgserver.drop_database(server, name)


def run(*args: str) -> Any:
    return runner.invoke(app, list(args))


def run_json(*args: str) -> Any:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def container(cid: str, ip: str, subnet: str, gateway: str, kind: str) -> dict[str, str]:
    return {"id": cid, "ip": ip, "subnet": subnet, "gateway": gateway, "kind": kind}


A1 = container("a1", "10.0.0.1", "10.0.0.1/32", "10.0.0.2", "pooled")
A2 = container("a2", "10.0.0.3", "10.0.0.3/32", "10.0.0.4", "pooled")
S1 = container("s1", "192.168.5.10", "192.168.5.0/24", "10.0.0.1", "subnet")


def positions(page: dict[str, Any]) -> list[int]:
    return [row["position"] for row in page["events"]]


# events


def test_events_lists_all_oldest_first(history_url: str) -> None:
    page = run_json("events", "--db", history_url)
    assert positions(page) == list(range(1, 15))
    assert page["next_after"] is None
    first = page["events"][1]
    assert first["network"] == "web"
    assert first["version"] == 2
    assert first["type"] == "IpAllocated"
    assert first["timestamp"] == "2024-05-01T12:01:00+00:00"
    assert first["actor"] == "alice"
    assert first["payload"] == {"ip": "10.0.0.1", "container_id": "a1"}


def test_events_filter_by_network(history_url: str) -> None:
    page = run_json("events", "--db", history_url, "--network", "db")
    assert positions(page) == [5, 11, 12]


def test_events_filter_by_type(history_url: str) -> None:
    page = run_json("events", "--db", history_url, "--type", "ContainerCreated", "--type", "ContainerDestroyed")
    assert positions(page) == [4, 8, 9, 14]


def test_events_filter_by_actor(history_url: str) -> None:
    page = run_json("events", "--db", history_url, "--actor", "carol")
    assert positions(page) == [9, 10]
    assert page["events"][0]["reason"] == "decommissioned"


def test_events_filter_by_container(history_url: str) -> None:
    page = run_json("events", "--db", history_url, "--container", "a1")
    assert positions(page) == [2, 3, 4, 9, 10]


def test_events_filter_by_time_window(history_url: str) -> None:
    page = run_json("events", "--db", history_url, "--since", at(6), "--until", at(10))
    assert positions(page) == [6, 7, 8, 9, 10]


def test_events_same_since_and_until(history_url: str) -> None:
    page = run_json("events", "--db", history_url, "--since", at(6), "--until", at(6))
    assert positions(page) == [6]


def test_events_naive_time_is_utc(history_url: str) -> None:
    page = run_json("events", "--db", history_url, "--since", "2024-05-01T12:12:00")
    assert positions(page) == [13, 14]


def test_events_after_largest_position(history_url: str) -> None:
    page = run_json("events", "--db", history_url, "--after", str(2**63 - 1))
    assert page == {"events": [], "next_after": None}


def test_events_pages_with_after(history_url: str) -> None:
    first = run_json("events", "--db", history_url, "--limit", "5")
    assert positions(first) == [1, 2, 3, 4, 5]
    assert first["next_after"] == 5
    second = run_json("events", "--db", history_url, "--limit", "5", "--after", "5", "--network", "web")
    assert positions(second) == [6, 7, 8, 9, 10]
    assert second["next_after"] == 10
    last = run_json("events", "--db", history_url, "--limit", "5", "--after", "10", "--network", "web")
    assert positions(last) == [13, 14]
    assert last["next_after"] is None


def test_events_table_tells_next_page(history_url: str) -> None:
    result = run("events", "--db", history_url, "--limit", "3")
    assert result.exit_code == 0
    assert "repeat the command with --after 3 for the next page" in result.stdout


def test_events_rejects_unknown_type(history_url: str) -> None:
    result = run("events", "--db", history_url, "--type", "IpReleased")
    assert result.exit_code == 2
    assert "invalid event type 'IpReleased'" in result.stderr


def test_events_rejects_bad_time(history_url: str) -> None:
    result = run("events", "--db", history_url, "--since", "yesterday")
    assert result.exit_code == 2
    assert "invalid --since time 'yesterday'" in result.stderr


def test_events_unknown_network_is_refused(history_url: str) -> None:
    result = run("events", "--db", history_url, "--network", "nosuch")
    assert result.exit_code == 1
    assert "network nosuch not found" in result.stderr


# replay


def test_replay_at_position(history_url: str) -> None:
    state = run_json("replay", "web", "--db", history_url, "--position", "8")
    assert state["containers"] == [A1, A2]
    assert state["version"] == 7
    assert state["last_position"] == 8
    assert state["allocated"] == ["10.0.0.1-10.0.0.4"]
    assert state["allocated_count"] == 4
    assert state["free"] == 250


def test_replay_position_counts_other_networks(history_url: str) -> None:
    state = run_json("replay", "web", "--db", history_url, "--position", "12")
    assert state["containers"] == [A2]
    assert state["version"] == 9
    assert state["last_position"] == 10
    assert state["allocated"] == ["10.0.0.3-10.0.0.4"]


def test_replay_at_time(history_url: str) -> None:
    state = run_json("replay", "web", "--db", history_url, "--at", at(10))
    assert state["containers"] == [A2]
    assert state["last_timestamp"] == at(10)
    early = run_json("replay", "web", "--db", history_url, "--at", "2024-05-01T12:03:30Z")
    assert early["containers"] == [A1]
    assert early["last_position"] == 4


def test_replay_latest_matches_current_state(history_url: str) -> None:
    state = run_json("replay", "web", "--db", history_url, "--position", "14")
    assert state["containers"] == [A2, S1]
    assert state["allocated"] == ["10.0.0.1", "10.0.0.3-10.0.0.4"]
    current = run_json("container", "list", "web", "--db", history_url)
    assert sorted(current, key=lambda row: row["id"]) == state["containers"]


def test_replay_past_log_end_says_so(history_url: str) -> None:
    latest = run_json("replay", "web", "--db", history_url, "--position", "14")
    beyond = run_json("replay", "web", "--db", history_url, "--position", "15")
    text = run("replay", "web", "--db", history_url, "--position", "99")
    assert latest["past_log_end"] is False
    assert beyond["past_log_end"] is True
    assert beyond["containers"] == latest["containers"]
    assert text.exit_code == 0
    assert "note: position 99 is past the last stored event (position 14), so this is the network's current state" in text.stdout


def test_replay_before_creation_is_refused(history_url: str) -> None:
    result = run("replay", "db", "--db", history_url, "--position", "4")
    assert result.exit_code == 1
    assert "network db did not exist yet at position 4" in result.stderr


def test_replay_needs_exactly_one_point(history_url: str) -> None:
    both = run("replay", "web", "--db", history_url, "--position", "3", "--at", at(3))
    neither = run("replay", "web", "--db", history_url)
    assert both.exit_code == 2
    assert neither.exit_code == 2
    assert "give exactly one of --at TIME and --position N" in neither.stderr


# diff


def test_diff_between_positions(history_url: str) -> None:
    change = run_json("diff", "web", "4", "14", "--db", history_url)
    assert change["containers_gained"] == [A2, S1]
    assert change["containers_lost"] == [A1]
    assert change["addresses_gained"] == ["10.0.0.3-10.0.0.4"]
    assert change["addresses_lost"] == ["10.0.0.2"]
    assert change["from"] == {"at": "position 4", "version": 4, "last_position": 4}
    assert change["to"] == {"at": "position 14", "version": 11, "last_position": 14}


def test_diff_between_times_and_mixed(history_url: str) -> None:
    by_time = run_json("diff", "web", at(8), at(10), "--db", history_url)
    mixed = run_json("diff", "web", at(8), "10", "--db", history_url)
    for change in (by_time, mixed):
        assert change["containers_gained"] == []
        assert change["containers_lost"] == [A1]
        assert change["addresses_gained"] == []
        assert change["addresses_lost"] == ["10.0.0.1-10.0.0.2"]


def test_diff_from_before_creation(history_url: str) -> None:
    change = run_json("diff", "db", "1", "12", "--db", history_url)
    assert change["from"]["version"] == 0
    assert change["addresses_gained"] == ["10.1.0.1-10.1.0.2"]
    assert change["containers_gained"] == []


def test_diff_text_lists_changes(history_url: str) -> None:
    result = run("diff", "web", "4", "8", "--db", history_url)
    assert result.exit_code == 0
    assert result.stdout.splitlines()[1:] == [
        "+ container a2: ip 10.0.0.3 subnet 10.0.0.3/32 gateway 10.0.0.4",
        "+ allocated 10.0.0.3-10.0.0.4",
    ]


def test_diff_same_point_is_no_change(history_url: str) -> None:
    result = run("diff", "web", "8", "8", "--db", history_url)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1:] == ["no change"]


def test_diff_rejects_time_after_position(history_url: str) -> None:
    result = run("diff", "web", at(10), "4", "--db", history_url)
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: invalid range: FROM {at(10)} is after TO 4; FROM must not be after TO, so give the earlier point first\n"
    )
    assert result.stdout == ""


def test_diff_rejects_bad_point(history_url: str) -> None:
    result = run("diff", "web", "4", "soon", "--db", history_url)
    assert result.exit_code == 2
    assert "invalid TO time 'soon'" in result.stderr


# export


def test_export_jsonl_matches_events(history_url: str, tmp_path: Any) -> None:
    target = tmp_path / "audit.jsonl"
    result = run("export", "--db", history_url, "--format", "jsonl", "--output", str(target))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"exported 14 events as jsonl to {target}\n"
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert rows == run_json("events", "--db", history_url)["events"]
    assert rows[8]["reason"] == "decommissioned"
    assert rows[9]["payload"] == {"addresses": ["10.0.0.1", "10.0.0.2"], "ignored": {}, "container_id": "a1"}


def test_export_csv_to_stdout(history_url: str) -> None:
    result = run("export", "--db", history_url, "--format", "csv", "--network", "db")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [row["position"] for row in rows] == ["5", "11", "12"]
    assert list(rows[0]) == [
        "position", "network", "network_id", "version", "type", "timestamp",
        "actor", "reason", "request_id", "payload", "digest",
    ]
    assert rows[1]["type"] == "IpAllocated"
    assert rows[1]["timestamp"] == at(11)
    assert rows[1]["reason"] == ""
    assert json.loads(rows[1]["payload"]) == {"container_id": None, "ip": "10.1.0.1"}
    assert result.stderr == "exported 3 events as csv to standard output\n"


def test_export_digests_recomputable(history_url: str) -> None:
    """An audit tool recomputes every digest from the exported rows alone, as export's help describes."""
    result = run("export", "--db", history_url, "--format", "jsonl")
    previous: dict[str, str] = {}
    for line in result.stdout.splitlines():
        row = json.loads(line)
        document = {
            "previous": previous.get(row["network_id"], ""),
            "type": row["type"],
            "network": row["network_id"],
            "version": row["version"],
            "timestamp": row["timestamp"],
            "payload": {**row["payload"], "actor": row["actor"], "reason": row["reason"], "request_id": row["request_id"]},
        }
        canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
        assert hashlib.sha256(canonical.encode()).hexdigest() == row["digest"], row["position"]
        previous[row["network_id"]] = row["digest"]
    assert len(previous) == 2


def test_export_summary_as_json(history_url: str, tmp_path: Any) -> None:
    target = tmp_path / "audit.csv"
    result = run("export", "--db", history_url, "--format", "csv", "--output", str(target), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"events": 14, "format": "csv", "output": str(target)}
    assert len(target.read_text().splitlines()) == 15


def test_export_unwritable_output(history_url: str, tmp_path: Any) -> None:
    target = tmp_path / "missing" / "audit.jsonl"
    result = run("export", "--db", history_url, "--format", "jsonl", "--output", str(target))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: cannot write --output {target}: No such file or directory")
    assert not (tmp_path / "missing").exists()


def test_export_rejects_unknown_format(history_url: str) -> None:
    result = run("export", "--db", history_url, "--format", "xml")
    assert result.exit_code == 2
    assert "invalid --format 'xml': use jsonl or csv" in result.stderr
