"""The core commands end to end through the CLI, on SQLite and on PostgreSQL.

Each test runs ``netledger`` in process with typer's ``CliRunner``, which
keeps standard output and standard error apart. Every refused or invalid
command must exit with its status (1 refused, 2 invalid input or usage),
print exactly one ``error:`` line on standard error and nothing on standard
output, and leave the number of stored events unchanged.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from cli.main import app
from ledger.application import Ledger
from ledger.storage import environment_for

runner = CliRunner()


class Cli:
    """Runs commands against one store and reads its event count."""

    def __init__(self, url: str) -> None:
        self.url = url

    def run(self, *args: str) -> Result:
        return runner.invoke(app, [*args, "--db", self.url])

    def ok(self, *args: str) -> Result:
        result = self.run(*args)
        assert result.exit_code == 0, result.stderr
        assert result.stderr == ""
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json").stdout)

    def event_count(self) -> int:
        ledger = Ledger(env=environment_for(self.url))
        try:
            return ledger.event_count()
        finally:
            ledger.close()

    def fails(self, exit_code: int, message: str, *args: str) -> None:
        """Assert a command fails with one error line and writes no event."""
        before = self.event_count()
        result = self.run(*args)
        assert result.exit_code == exit_code
        assert result.stderr == f"error: {message}\n"
        assert result.stdout == ""
        assert self.event_count() == before


@pytest.fixture
def cli(db_url: str) -> Cli:
    return Cli(db_url)


@pytest.fixture
def web(cli: Cli) -> Cli:
    """A store with network ``web``: pool 10.1.0.1-10.1.0.13, lowest policy."""
    cli.ok("network", "create", "web", "--pool", "10.1.0.0/28", "--exclude", "10.1.0.14")
    return cli


def test_network_create_list_show(cli: Cli) -> None:
    created = cli.json("network", "create", "web", "--pool", "10.1.0.0/28", "--exclude", "10.1.0.14")
    expected = {
        "name": "web",
        "ip_version": 4,
        "policy": "lowest",
        "pool_ranges": ["10.1.0.1-10.1.0.13"],
        "pool_size": 13,
        "allocated": 0,
        "free": 13,
        "containers": 0,
        "special_subnets": [],
        "version": 1,
    }
    assert created == expected
    assert cli.json("network", "list") == [expected]
    assert cli.json("network", "show", "web") == expected
    assert cli.event_count() == 1

    text = cli.ok("network", "create", "db", "--pool", "10.2.0.10-10.2.0.19", "--policy", "round-robin").stdout
    assert text == "created network db: 10 addresses in 10.2.0.10-10.2.0.19, policy round-robin\n"
    assert [summary["name"] for summary in cli.json("network", "list")] == ["web", "db"]
    assert "10.1.0.1-10.1.0.13" in cli.ok("network", "show", "web").stdout


def test_network_create_refusals_write_nothing(web: Cli) -> None:
    web.fails(
        1,
        "network web already exists; choose another name",
        "network", "create", "web", "--pool", "10.9.0.0/24",
    )
    web.fails(
        2,
        "invalid pool 10.1.0.0/33: the prefix length must be a number from 0 to 32 for IPv4",
        "network", "create", "bad", "--pool", "10.1.0.0/33",
    )
    web.fails(
        2,
        "pools of network mixed mix IPv4 and IPv6; one network uses one address family",
        "network", "create", "mixed", "--pool", "10.3.0.0/24", "--pool", "fd00::/64",
    )
    web.fails(
        2,
        "the pool of network tiny is empty after exclusions; widen --pool",
        "network", "create", "tiny", "--pool", "10.4.0.0/30", "--exclude", "10.4.0.1-10.4.0.2",
    )
    web.fails(1, "network nope not found; 'netledger network list' shows the networks", "network", "show", "nope")
    assert web.event_count() == 1


def test_container_lifecycle(web: Cli) -> None:
    pooled = web.json("container", "create", "web", "--id", "a")
    assert pooled.pop("replayed") is False
    assert pooled == {"id": "a", "ip": "10.1.0.1", "subnet": "10.1.0.1/32", "gateway": "10.1.0.2", "kind": "pooled"}
    specific = web.json("container", "create", "web", "--id", "b", "--ip", "10.1.0.7")
    assert specific.pop("replayed") is False
    assert specific == {"id": "b", "ip": "10.1.0.7", "subnet": "10.1.0.7/32", "gateway": "10.1.0.3", "kind": "pooled"}
    text = web.ok("container", "create", "web", "--id", "s1", "--subnet", "192.168.0.0/24", "--ip", "192.168.0.5")
    assert text.stdout == "created container s1: ip 192.168.0.5 subnet 192.168.0.0/24 gateway 10.1.0.4\n"
    assert web.event_count() == 1 + 3 + 3 + 2

    listed = web.json("container", "list", "web")
    assert [row["id"] for row in listed] == ["a", "b", "s1"]
    assert listed[2] == {
        "id": "s1", "ip": "192.168.0.5", "subnet": "192.168.0.0/24", "gateway": "10.1.0.4", "kind": "subnet",
    }
    assert web.json("container", "show", "web", "b") == specific
    assert "10.1.0.7" in web.ok("container", "list", "web").stdout

    destroyed = web.json("container", "destroy", "web", "a")
    assert destroyed == {"id": "a", "released": ["10.1.0.1", "10.1.0.2"], "replayed": False}
    assert web.ok("container", "destroy", "web", "s1").stdout == "destroyed container s1; released 10.1.0.4\n"
    assert web.event_count() == 9 + 2 + 2
    summary = web.json("network", "show", "web")
    assert (summary["allocated"], summary["free"], summary["containers"]) == (2, 11, 1)


def test_container_refusals_write_nothing(web: Cli) -> None:
    web.ok("container", "create", "web", "--id", "a")
    web.ok("container", "create", "web", "--id", "s1", "--subnet", "192.168.0.0/24", "--ip", "192.168.0.5")

    web.fails(
        1,
        "container a already exists in network web with IP 10.1.0.1; choose another id or destroy it first",
        "container", "create", "web", "--id", "a",
    )
    web.fails(
        1,
        "address 10.1.0.2 in network web is taken: container a holds it as its gateway",
        "container", "create", "web", "--id", "b", "--ip", "10.1.0.2",
    )
    web.fails(
        1,
        "address 10.1.0.14 is not in the pool of network web; use --subnet for an address outside the pool",
        "container", "create", "web", "--id", "b", "--ip", "10.1.0.14",
    )
    web.fails(
        1,
        "subnet 192.168.0.0/25 overlaps subnet 192.168.0.0/24 of container s1 in network web; "
        "special subnets must be identical or disjoint",
        "container", "create", "web", "--id", "b", "--subnet", "192.168.0.0/25", "--ip", "192.168.0.9",
    )

    web.fails(
        1,
        "container zz not found in network web; 'netledger container list web' shows the containers",
        "container", "destroy", "web", "zz",
    )
    web.fails(
        1,
        "container zz not found in network web; 'netledger container list web' shows the containers",
        "container", "show", "web", "zz",
    )

    web.fails(
        2,
        "invalid --ip address 10.1.0.300: expected an IPv4 or IPv6 address such as 10.0.0.5 or fd00::5",
        "container", "create", "web", "--id", "b", "--ip", "10.1.0.300",
    )
    web.fails(
        2,
        "--subnet needs --ip: give the container's address inside the subnet",
        "container", "create", "web", "--id", "b", "--subnet", "192.168.0.0/24",
    )
    web.fails(
        2,
        "invalid container id 'bad id!': use 1-128 characters of A-Z, a-z, 0-9, '.', '_' and '-'",
        "container", "create", "web", "--id", "bad id!",
    )

    assert web.event_count() == 1 + 3 + 2


def test_pool_allocate_and_release(web: Cli) -> None:
    web.ok("container", "create", "web", "--id", "a")
    assert web.json("pool", "allocate", "web") == {"ip": "10.1.0.3", "replayed": False}
    assert web.json("pool", "allocate", "web", "--two") == {"ip": "10.1.0.4", "gateway": "10.1.0.5", "replayed": False}
    assert web.event_count() == 1 + 3 + 1 + 2

    released = web.json("pool", "release", "web", "10.1.0.4", "10.1.0.99", "10.1.0.9")
    assert released == {
        "released": ["10.1.0.4"],
        "ignored": {"10.1.0.99": "not in the pool", "10.1.0.9": "not allocated"},
        "replayed": False,
    }
    assert web.event_count() == 8

    text = web.ok("pool", "release", "web", "10.1.0.9").stdout
    assert text == "released nothing\nignored 10.1.0.9: not allocated\n"
    assert web.event_count() == 8

    web.fails(
        1,
        "address 10.1.0.1 in network web cannot be released: container a holds it as its ip; "
        "destroy that container instead",
        "pool", "release", "web", "10.1.0.3", "10.1.0.1",
    )
    web.fails(
        2,
        "invalid address 10.1.0.300: expected an IPv4 or IPv6 address such as 10.0.0.5 or fd00::5",
        "pool", "release", "web", "10.1.0.3", "10.1.0.300",
    )
    assert web.json("network", "show", "web")["allocated"] == 4


def test_pool_exhaustion_exits_one(cli: Cli) -> None:
    cli.ok("network", "create", "tiny", "--pool", "10.5.0.0/30")
    cli.ok("pool", "allocate", "tiny", "--two")
    cli.fails(
        1,
        "pool of network tiny is exhausted: 1 free address needed, 0 of 2 free; "
        "destroy containers or release addresses",
        "pool", "allocate", "tiny",
    )
    assert cli.event_count() == 3


def test_usage_errors_exit_two_and_write_nothing(web: Cli) -> None:
    before = web.event_count()
    result = web.run("pool", "allocate")
    assert result.exit_code == 2
    assert "Missing argument" in result.stderr
    assert result.stdout == ""
    result = web.run("container", "create", "web", "--colour", "red")
    assert result.exit_code == 2
    assert "No such option" in result.stderr
    assert web.event_count() == before


def test_invalid_database_url_exits_two() -> None:
    result = runner.invoke(app, ["network", "list", "--db", "mysql://x"])
    assert result.exit_code == 2
    assert result.stderr == (
        "error: invalid database URL mysql://x: use sqlite:///PATH or postgresql://USER@HOST:PORT/DBNAME\n"
    )
    assert result.stdout == ""
