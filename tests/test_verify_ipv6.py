"""``netledger verify`` compares the read models over IPv6 pools of /64 and wider.

Such pools hold 2**64 - 1 addresses or more, past what Python's ``len()``
can return, so every size in the comparison must be counted without it.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.main import app
from ledger.application import Ledger
from ledger.storage import environment_for
from projections.runner import ReadModels
from projections.values import address_key

runner = CliRunner()

# Each pool with the addresses the history below leaves free in it, as (first, last) pairs.
POOLS = [
    pytest.param(
        "fd00::/64",
        [("fd00::1", "fd00::2"), ("fd00::7", "fd00::4f"), ("fd00::51", "fd00::ffff:ffff:ffff:ffff")],
        id="slash-64",
    ),
    pytest.param(
        "fd00::/48",
        [("fd00::1", "fd00::2"), ("fd00::7", "fd00::4f"), ("fd00::51", "fd00::ffff:ffff:ffff:ffff:ffff")],
        id="slash-48",
    ),
]


def run(db_url: str, *args: str) -> Any:
    result = runner.invoke(app, [*args, "--db", db_url])
    assert result.exit_code == 0, result.output
    return result


def verify_json(db_url: str) -> tuple[int, dict[str, Any]]:
    result = runner.invoke(app, ["verify", "--db", db_url, "--json"])
    return result.exit_code, json.loads(result.stdout)


def ipv6_history(db_url: str, pool: str) -> None:
    """A pooled container, one with a chosen address, one in a special subnet, a bare AllocateTwo and a destroy."""
    run(db_url, "network", "create", "v6", "--pool", pool)
    run(db_url, "container", "create", "v6", "--id", "a")  # ip fd00::1, gateway fd00::2
    run(db_url, "container", "create", "v6", "--id", "b", "--ip", "fd00::50")  # gateway fd00::3
    run(db_url, "container", "create", "v6", "--id", "s", "--subnet", "fd01::/64", "--ip", "fd01::5")  # gateway fd00::4
    run(db_url, "pool", "allocate", "v6", "--two")  # fd00::5 and fd00::6
    run(db_url, "container", "destroy", "v6", "a")


@pytest.mark.parametrize(("pool", "free_ranges"), POOLS)
def test_verify_compares_large_ipv6_pools(db_url: str, pool: str, free_ranges: list[tuple[str, str]]) -> None:
    ipv6_history(db_url, pool)

    exit_code, report = verify_json(db_url)
    free = json.loads(run(db_url, "free", "v6", "--json").stdout)

    assert exit_code == 0, report
    assert report["ok"] is True
    assert report["problems"] == []
    assert report["projections"] == "match a replay"
    assert report["projections_compared"] is True
    assert [(item["first"], item["last"]) for item in free["ranges"]] == free_ranges


@pytest.mark.parametrize(("pool", "free_ranges"), POOLS)
def test_verify_finds_broken_read_model_in_large_pool(
    db_url: str, pool: str, free_ranges: list[tuple[str, str]]
) -> None:
    ipv6_history(db_url, pool)
    first, last = free_ranges[-1]
    pool_last = int(ipaddress.ip_address(last))
    ledger = Ledger(env=environment_for(db_url))
    try:
        models = ReadModels(ledger)
        models.catch_up()
        # Drop the pool's last address from the free ranges, as a lost update of the read model would.
        store = models.models["free_addresses"].view
        with store.datastore.transaction(commit=True) as cursor:  # type: ignore[attr-defined]
            cursor.execute(
                f"UPDATE free_addresses_ranges SET last_key = '{address_key(pool_last - 1)}' "
                f"WHERE last_key = '{address_key(pool_last)}'"
            )
    finally:
        ledger.close()

    exit_code, report = verify_json(db_url)

    assert exit_code == 1
    assert report["ok"] is False
    assert report["projections"] == "differ from a replay"
    message = report["first_problem"]["message"]
    assert message.startswith("read models differ from a replay: read model free_addresses at position 13")
    shortened = (first, str(ipaddress.ip_address(pool_last - 1)))
    assert f"stored {shortened!r}, a replay gives {(first, last)!r}" in message
