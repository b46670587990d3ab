"""``netledger free`` and ``netledger occupancy`` give exact numbers for known histories."""

from __future__ import annotations

from cli.main import app
from tests.cli_support import run, run_json, runner

IPV6_64_POOL = 2**64 - 1  # fd00::/64 without its Subnet-Router anycast address fd00::


def mixed_history(db_url: str) -> None:
    """Pooled and subnet containers, a bare AllocateTwo, a destroy and a release."""
    run(db_url, "network", "create", "web", "--pool", "10.0.3.0/24")
    run(db_url, "container", "create", "web", "--id", "a")  # ip .1, gateway .2
    run(db_url, "container", "create", "web", "--id", "b")  # ip .3, gateway .4
    run(db_url, "container", "create", "web", "--id", "s1", "--subnet", "192.168.10.0/24", "--ip", "192.168.10.5")
    run(db_url, "container", "create", "web", "--id", "s2", "--subnet", "192.168.10.0/24", "--ip", "192.168.10.6")
    run(db_url, "container", "create", "web", "--id", "t", "--subnet", "172.16.0.0/30", "--ip", "172.16.0.1")
    run(db_url, "pool", "allocate", "web", "--two")  # .8 and .9
    run(db_url, "container", "destroy", "web", "a")
    run(db_url, "pool", "release", "web", "10.0.3.9")


def test_free_counts_and_ranges(db_url: str) -> None:
    mixed_history(db_url)

    free = run_json(db_url, "free", "web")

    assert (free["pool_size"], free["allocated"], free["free"], free["range_count"]) == (254, 6, 248, 2)
    assert free["ranges"] == [
        {"first": "10.0.3.1", "last": "10.0.3.2", "size": 2},
        {"first": "10.0.3.9", "last": "10.0.3.254", "size": 246},
    ]


def test_free_limit_lists_first_ranges(db_url: str) -> None:
    mixed_history(db_url)

    limited = run_json(db_url, "free", "web", "--limit", "1")
    text = run(db_url, "free", "web", "--limit", "1").stdout

    assert limited["ranges"] == [{"first": "10.0.3.1", "last": "10.0.3.2", "size": 2}]
    assert limited["range_count"] == 2
    assert "showing 1 of 2 free ranges; --limit 0 lists them all" in text


def test_occupancy_of_pool_and_subnets(db_url: str) -> None:
    mixed_history(db_url)

    (web,) = run_json(db_url, "occupancy", "web")

    # The subnet containers s1, s2 and t hold their gateways in the pool.
    assert web["pool"] == {
        "scope": "pool", "kind": "pool", "size": 254, "used": 6, "free": 248,
        "utilisation": 6 / 254, "containers": ["b", "s1", "s2", "t"],
    }
    assert web["subnets"] == [
        {"scope": "172.16.0.0/30", "kind": "subnet", "size": 2, "used": 1, "free": 1,
         "utilisation": 0.5, "containers": ["t"]},
        {"scope": "192.168.10.0/24", "kind": "subnet", "size": 254, "used": 2, "free": 252,
         "utilisation": 2 / 254, "containers": ["s1", "s2"]},
    ]


def test_occupancy_subnet_disappears_with_last_member(db_url: str) -> None:
    mixed_history(db_url)
    run(db_url, "container", "destroy", "web", "t")

    (web,) = run_json(db_url, "occupancy", "web")

    assert [scope["scope"] for scope in web["subnets"]] == ["192.168.10.0/24"]
    assert (web["pool"]["used"], web["pool"]["free"]) == (5, 249)
    assert web["pool"]["containers"] == ["b", "s1", "s2"]


def test_occupancy_table_draws_utilisation_bars(sqlite_url: str) -> None:
    mixed_history(sqlite_url)

    lines = run(sqlite_url, "occupancy", "web").stdout.splitlines()

    (half,) = [line for line in lines if "172.16.0.0/30" in line]
    (pool,) = [line for line in lines if "│ pool " in line]
    assert "██████████░░░░░░░░░░  50.0%" in half
    assert "█░░░░░░░░░░░░░░░░░░░   2.4%" in pool


def test_free_and_occupancy_of_ipv6_64(db_url: str) -> None:
    run(db_url, "network", "create", "v6", "--pool", "fd00::/64")
    run(db_url, "container", "create", "v6", "--id", "x")  # ip fd00::1, gateway fd00::2
    run(db_url, "container", "create", "v6", "--id", "y")  # ip fd00::3, gateway fd00::4
    run(db_url, "container", "destroy", "v6", "x")

    free = run_json(db_url, "free", "v6")
    (v6,) = run_json(db_url, "occupancy", "v6")

    assert (free["pool_size"], free["allocated"], free["free"]) == (IPV6_64_POOL, 2, IPV6_64_POOL - 2)
    assert free["ranges"] == [
        {"first": "fd00::1", "last": "fd00::2", "size": 2},
        {"first": "fd00::5", "last": "fd00::ffff:ffff:ffff:ffff", "size": IPV6_64_POOL - 4},
    ]
    assert (v6["pool"]["size"], v6["pool"]["used"], v6["pool"]["free"]) == (IPV6_64_POOL, 2, IPV6_64_POOL - 2)
    assert v6["pool"]["containers"] == ["y"]


def test_occupancy_pool_lists_subnet_containers(sqlite_url: str) -> None:
    run(sqlite_url, "network", "create", "web", "--pool", "10.0.3.0/29")
    run(sqlite_url, "container", "create", "web", "--id", "s", "--subnet", "192.168.10.0/24", "--ip", "192.168.10.5")

    (web,) = run_json(sqlite_url, "occupancy", "web")
    lines = run(sqlite_url, "occupancy", "web").stdout.splitlines()

    assert (web["pool"]["used"], web["pool"]["containers"]) == (1, ["s"])
    assert web["subnets"][0]["containers"] == ["s"]
    (pool,) = [line for line in lines if "│ pool " in line]
    assert pool.split("│")[-2].strip() == "s"


def test_occupancy_lists_every_network_by_name(sqlite_url: str) -> None:
    run(sqlite_url, "network", "create", "zeta", "--pool", "10.9.0.0/29")
    run(sqlite_url, "network", "create", "alpha", "--pool", "10.8.0.0/29")
    run(sqlite_url, "container", "create", "zeta", "--id", "z1")

    networks = run_json(sqlite_url, "occupancy")

    assert [(item["network"], item["pool"]["size"], item["pool"]["used"]) for item in networks] == [
        ("alpha", 6, 0),
        ("zeta", 6, 2),
    ]


def test_free_unknown_network_is_refused(sqlite_url: str) -> None:
    run(sqlite_url, "network", "create", "web", "--pool", "10.0.3.0/29")

    result = runner.invoke(app, ["free", "nosuch", "--db", sqlite_url])

    assert result.exit_code == 1
    assert result.stderr == "error: network nosuch not found; 'netledger network list' shows the networks\n"
