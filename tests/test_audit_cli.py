"""``netledger audit``: who held an address at any moment, and a container's whole life.

The history is driven through the CLI. The tests never sleep to control
time. They read the stored event times from the audit output and ask
about moments just before, at, between and after them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Optional

import pytest

from cli.main import app
from tests.cli_support import run, run_json, runner



def shifted(time: str, microseconds: int) -> str:
    return (datetime.fromisoformat(time) + timedelta(microseconds=microseconds)).isoformat()


def between(earlier: str, later: str) -> str:
    start, end = datetime.fromisoformat(earlier), datetime.fromisoformat(later)
    return (start + (end - start) / 2).isoformat()


def holders(db_url: str, address: str, at: str) -> list[tuple[Optional[str], str]]:
    found = run_json(db_url, "audit", "ip", address, "--at", at)["tenancies"]
    return [(item["container"], item["role"]) for item in found]


def gateway_then_ip_history(db_url: str) -> None:
    """10.0.3.7 is container a's gateway, then free, then container b's ip, then free."""
    run(db_url, "network", "create", "net", "--pool", "10.0.3.5-10.0.3.30", "--actor", "admin")
    run(db_url, "pool", "allocate", "net", "--actor", "ops")  # 10.0.3.5, no container
    run(db_url, "container", "create", "net", "--id", "a", "--ip", "10.0.3.6", "--actor", "alice")
    run(db_url, "container", "destroy", "net", "a", "--actor", "bob")
    run(db_url, "container", "create", "net", "--id", "b", "--ip", "10.0.3.7", "--actor", "carol")
    run(db_url, "container", "destroy", "net", "b", "--actor", "dave", "--reason", "retired")


def test_audit_ip_lists_every_tenancy(db_url: str) -> None:
    gateway_then_ip_history(db_url)

    history = run_json(db_url, "audit", "ip", "10.0.3.7")["tenancies"]

    summary = [
        (t["network"], t["container"], t["role"], t["from"]["position"], t["from"]["actor"],
         t["to"]["position"], t["to"]["actor"])
        for t in history
    ]
    # Positions: 1 network, 2 allocate, 3-5 create a, 6-7 destroy a, 8-10 create b, 11-12 destroy b.
    assert summary == [
        ("net", "a", "gateway", 4, "alice", 6, "bob"),
        ("net", "b", "ip", 8, "carol", 11, "dave"),
    ]


def test_audit_ip_names_holder_at_each_moment(db_url: str) -> None:
    gateway_then_ip_history(db_url)
    first, second = run_json(db_url, "audit", "ip", "10.0.3.7")["tenancies"]
    a_from, a_to = first["from"]["time"], first["to"]["time"]
    b_from, b_to = second["from"]["time"], second["to"]["time"]

    assert holders(db_url, "10.0.3.7", shifted(a_from, -1)) == []
    assert holders(db_url, "10.0.3.7", a_from) == [("a", "gateway")]
    assert holders(db_url, "10.0.3.7", between(a_from, a_to)) == [("a", "gateway")]
    assert holders(db_url, "10.0.3.7", shifted(a_to, -1)) == [("a", "gateway")]
    assert holders(db_url, "10.0.3.7", a_to) == []
    assert holders(db_url, "10.0.3.7", between(a_to, b_from)) == []
    assert holders(db_url, "10.0.3.7", b_from) == [("b", "ip")]
    assert holders(db_url, "10.0.3.7", between(b_from, b_to)) == [("b", "ip")]
    assert holders(db_url, "10.0.3.7", b_to) == []
    assert holders(db_url, "10.0.3.7", shifted(b_to, 1_000_000)) == []


def test_audit_ip_bare_pool_allocate(db_url: str) -> None:
    gateway_then_ip_history(db_url)
    run(db_url, "pool", "release", "net", "10.0.3.5", "--actor", "ops2")

    (tenancy,) = run_json(db_url, "audit", "ip", "10.0.3.5")["tenancies"]
    during = between(tenancy["from"]["time"], tenancy["to"]["time"])

    assert (tenancy["container"], tenancy["role"]) == (None, "ip")
    assert (tenancy["from"]["position"], tenancy["from"]["actor"]) == (2, "ops")
    assert (tenancy["to"]["position"], tenancy["to"]["actor"]) == (13, "ops2")
    assert holders(db_url, "10.0.3.5", during) == [(None, "ip")]


def test_audit_ip_reads_naive_time_as_utc(db_url: str) -> None:
    gateway_then_ip_history(db_url)
    (tenancy, _) = run_json(db_url, "audit", "ip", "10.0.3.7")["tenancies"]
    during = datetime.fromisoformat(between(tenancy["from"]["time"], tenancy["to"]["time"]))
    naive = during.replace(tzinfo=None).isoformat()
    two_hours_east = during.astimezone(datetime.fromisoformat("2000-01-01T00:00:00+02:00").tzinfo).isoformat()

    assert holders(db_url, "10.0.3.7", naive) == [("a", "gateway")]
    assert holders(db_url, "10.0.3.7", two_hours_east) == [("a", "gateway")]


def test_audit_ip_holder_still_open(db_url: str) -> None:
    run(db_url, "network", "create", "net", "--pool", "10.0.3.0/24")
    run(db_url, "container", "create", "net", "--id", "web-1", "--actor", "erin")

    (tenancy,) = run_json(db_url, "audit", "ip", "10.0.3.1", "--network", "net")["tenancies"]
    later = shifted(tenancy["from"]["time"], 3_600_000_000)

    assert tenancy["to"] is None
    assert holders(db_url, "10.0.3.1", later) == [("web-1", "ip")]


def test_audit_ip_text_output_when_nobody(db_url: str) -> None:
    run(db_url, "network", "create", "net", "--pool", "10.0.3.0/24")

    result = run(db_url, "audit", "ip", "10.0.3.9", "--at", "2024-05-01T12:00:00")

    assert result.stdout == "nobody held 10.0.3.9 at 2024-05-01T12:00:00.000000+00:00\n"


def test_audit_container_shows_whole_life(db_url: str) -> None:
    gateway_then_ip_history(db_url)

    (life,) = run_json(db_url, "audit", "container", "b", "--network", "net")

    assert (life["network"], life["kind"], life["ip"], life["subnet"], life["gateway"]) == (
        "net", "pooled", "10.0.3.7", "10.0.3.7/32", "10.0.3.6",
    )
    assert (life["created"]["position"], life["created"]["actor"], life["created"]["reason"]) == (10, "carol", None)
    assert (life["destroyed"]["position"], life["destroyed"]["actor"], life["destroyed"]["reason"]) == (
        11, "dave", "retired",
    )
    assert [(t["address"], t["role"], t["from"]["position"], t["to"]["position"]) for t in life["addresses"]] == [
        ("10.0.3.7", "ip", 8, 11),
        ("10.0.3.6", "gateway", 9, 11),
    ]


def test_audit_container_reused_id_has_two_lives(sqlite_url: str) -> None:
    run(sqlite_url, "network", "create", "net", "--pool", "10.0.3.0/24")
    run(sqlite_url, "container", "create", "net", "--id", "job", "--actor", "first")
    run(sqlite_url, "container", "destroy", "net", "job")
    run(sqlite_url, "container", "create", "net", "--id", "job", "--subnet", "192.168.7.0/24", "--ip",
        "192.168.7.9", "--actor", "second")

    lives = run_json(sqlite_url, "audit", "container", "job")

    assert [(life["kind"], life["created"]["actor"], life["destroyed"] is None) for life in lives] == [
        ("pooled", "first", False),
        ("subnet", "second", True),
    ]
    assert [[t["address"] for t in life["addresses"]] for life in lives] == [
        ["10.0.3.1", "10.0.3.2"],
        ["10.0.3.1", "192.168.7.9"],
    ]


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["audit", "ip", "10.0.3.300"], 2, "invalid address 10.0.3.300"),
        (["audit", "ip", "10.0.3.7", "--at", "yesterday"], 2, "invalid --at time 'yesterday'"),
        (["audit", "ip", "10.0.3.7", "--network", "nosuch"], 1, "network nosuch not found"),
        (["audit", "container", "ghost"], 1, "container ghost never existed"),
        (["audit", "container", "bad id!"], 2, "invalid container id 'bad id!'"),
    ],
)
def test_audit_rejects_bad_requests(sqlite_url: str, args: list[str], status: int, message: str) -> None:
    run(sqlite_url, "network", "create", "net", "--pool", "10.0.3.0/24")

    result = runner.invoke(app, [*args, "--db", sqlite_url])

    assert result.exit_code == status
    assert message in result.stderr


def test_audit_ip_keeps_families_apart(db_url: str) -> None:
    # 10.1.2.3 and ::a01:203 have the same integer value.
    run(db_url, "network", "create", "four", "--pool", "10.1.2.0/24")
    run(db_url, "network", "create", "six", "--pool", "::a01:200/120")
    run(db_url, "container", "create", "four", "--id", "v4", "--ip", "10.1.2.3")
    run(db_url, "container", "create", "six", "--id", "v6", "--ip", "::a01:203")

    v4 = run_json(db_url, "audit", "ip", "10.1.2.3")["tenancies"]
    v6 = run_json(db_url, "audit", "ip", "::a01:203")["tenancies"]

    assert [(item["container"], item["address"]) for item in v4] == [("v4", "10.1.2.3")]
    assert [(item["container"], item["address"]) for item in v6] == [("v6", "::a01:203")]
