"""``netledger network``: create, list and show networks."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from cli.common import (
    ActorOption,
    DbOption,
    JsonOption,
    ReasonOption,
    RecordedRequestIdOption,
    command_context,
    guard_input,
    log,
    open_ledger,
    print_json,
    print_table,
)

app = typer.Typer(help="Create and inspect networks.", no_args_is_help=True)


def network_summary(network: Any) -> dict[str, Any]:
    """Return the JSON form of a network's pool and usage."""
    net = network.net
    pool = net.pool
    return {
        "name": net.name,
        "ip_version": pool.version,
        "policy": pool.policy,
        "pool_ranges": [
            f"{net.address(first)}-{net.address(last)}" for first, last in pool.pool.ranges()
        ],
        "pool_size": pool.size,
        "allocated": pool.allocated_count,
        "free": pool.free_count,
        "containers": len(net.containers),
        "special_subnets": sorted(str(subnet) for subnet in net.subnet_members),
        "version": network.version,
    }


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Network name: 1-64 of A-Z a-z 0-9 . _ -")],
    pool: Annotated[
        list[str],
        typer.Option("--pool", help="A CIDR (10.1.0.0/16) or range (10.1.0.10-10.1.0.99); repeat for more."),
    ],
    exclude: Annotated[
        Optional[list[str]],
        typer.Option("--exclude", help="An address, CIDR or range to leave out of the pool; repeatable."),
    ] = None,
    policy: Annotated[
        str, typer.Option("--policy", help="Which free address to hand out: lowest or round-robin.")
    ] = "lowest",
    db: DbOption = None,
    actor: ActorOption = None,
    reason: ReasonOption = None,
    request_id: RecordedRequestIdOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a network over a fixed pool of addresses.

    Example: netledger network create web --pool 10.1.0.0/16 --exclude 10.1.0.1
    """
    from ledger.addresses import parse_network_name, parse_range
    from ledger.text import counted

    guard_input(lambda: parse_network_name(name))
    pools = guard_input(lambda: [parse_range(item, "pool") for item in pool])
    excludes = guard_input(lambda: [_parse_exclusion(item) for item in exclude or []])
    with open_ledger(db, create=True) as ledger:
        context = command_context(actor, reason, request_id)
        network = ledger.create_network(name, pools, excludes, policy, context)
        summary = network_summary(network)
    size = counted(summary["pool_size"], "address", "addresses")
    log.info("created network %s: %s, request %s", name, size, context.request_id)
    if as_json:
        print_json(summary)
    else:
        typer.echo(f"created network {name}: {size} in {', '.join(summary['pool_ranges'])}, policy {policy}")


def _parse_exclusion(text: str) -> Any:
    from ledger.addresses import AddressRange, parse_address, parse_range

    if "/" in text or "-" in text:
        return parse_range(text, "exclusion")
    address = parse_address(text, "exclusion")
    return AddressRange(str(address), address.version, int(address), int(address))


@app.command("list")
def list_networks(db: DbOption = None, as_json: JsonOption = False) -> None:
    """List every network with its pool usage.

    Example: netledger network list --json
    """
    from ledger.text import counted

    with open_ledger(db) as ledger:
        summaries = [network_summary(ledger.network(name)) for name in ledger.network_names()]
    log.info("listed %s", counted(len(summaries), "network"))
    if as_json:
        print_json(summaries)
        return
    rows = [
        [s["name"], f"IPv{s['ip_version']}", ", ".join(s["pool_ranges"]), s["pool_size"], s["allocated"], s["free"], s["containers"], s["policy"]]
        for s in summaries
    ]
    print_table("Networks", ["name", "family", "pool", "size", "allocated", "free", "containers", "policy"], rows)


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Network name.")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one network: its pool, usage, policy and special subnets.

    Example: netledger network show web
    """
    from ledger.addresses import parse_network_name

    guard_input(lambda: parse_network_name(name))
    with open_ledger(db) as ledger:
        summary = network_summary(ledger.network(name))
    log.info("showed network %s", name)
    if as_json:
        print_json(summary)
        return
    rows = [[key.replace("_", " "), _text(value)] for key, value in summary.items()]
    print_table(f"Network {name}", ["field", "value"], rows)


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(item) for item in value) or "-"
    return str(value)
