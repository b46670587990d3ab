"""``netledger free`` and ``netledger occupancy``: queries of the read models."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from cli.common import MAX_POSITION, DbOption, JsonOption, guard_input, log, open_ledger, print_json, print_table

if TYPE_CHECKING:
    from projections.free import FreeSpace
    from projections.occupancy import NetworkOccupancy, Scope

BAR_WIDTH = 20


def register(app: typer.Typer) -> None:
    """Add the read-model queries to the top-level application."""
    app.command("free")(free)
    app.command("occupancy")(occupancy)


def free(
    network: Annotated[str, typer.Argument(help="Network name.")],
    limit: Annotated[
        int,
        typer.Option(
            "--limit", min=0, max=MAX_POSITION, help="The maximum number of free ranges to list; 0 lists them all."
        ),
    ] = 100,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show how many addresses of a network's pool are free, and the free ranges.

    Example: netledger free web --limit 10
    """
    from ledger.addresses import parse_network_name
    from projections.queries import free_space
    from projections.runner import ReadModels

    guard_input(lambda: parse_network_name(network))
    with open_ledger(db) as ledger:
        space = free_space(ReadModels(ledger), network, limit or None)
    log.info("showed free addresses of network %s: %d of %d free", network, space.free, space.pool_size)
    data = free_json(space)
    if as_json:
        print_json(data)
        return
    print_table(
        f"Free addresses of {network}: {space.free} of {space.pool_size}",
        ["first", "last", "addresses"],
        [[item["first"], item["last"], item["size"]] for item in data["ranges"]],
    )
    if space.range_count > len(space.ranges):
        typer.echo(f"showing {len(space.ranges)} of {space.range_count} free ranges; --limit 0 lists them all")


def free_json(space: FreeSpace) -> dict[str, Any]:
    """Return the JSON form of a network's free space."""
    return {
        "network": space.network,
        "ip_version": space.ip_version,
        "pool_size": space.pool_size,
        "allocated": space.allocated,
        "free": space.free,
        "range_count": space.range_count,
        "ranges": [
            {"first": str(first), "last": str(last), "size": int(last) - int(first) + 1}
            for first, last in space.ranges
        ],
    }


def occupancy(
    network: Annotated[Optional[str], typer.Argument(help="Network name (default: every network).")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the size, use and containers of each network's pool and special subnets.

    The pool's used addresses are every allocated one: containers' ips,
    their gateways, and addresses taken by 'pool allocate'. The pool lists
    every container, because every container's gateway is a pool address.
    A special-subnet container is listed in its subnet's row as well. A
    special subnet's used addresses are the ips of the containers in it.

    Example: netledger occupancy web
    """
    from ledger.addresses import parse_network_name
    from ledger.text import counted
    from projections.queries import occupancy_of
    from projections.runner import ReadModels

    if network is not None:
        guard_input(lambda: parse_network_name(network))
    with open_ledger(db) as ledger:
        networks = occupancy_of(ReadModels(ledger), network)
    log.info(
        "showed occupancy of %s", f"network {network}" if network is not None else counted(len(networks), "network")
    )
    if as_json:
        print_json([occupancy_json(item) for item in networks])
        return
    if not networks:
        typer.echo("no networks yet; 'netledger network create' makes one")
    for item in networks:
        print_table(
            f"Occupancy of {item.network} (IPv{item.ip_version})",
            ["scope", "size", "used", "free", "utilisation", "containers"],
            [_scope_row(scope) for scope in item.scopes],
        )


def occupancy_json(item: NetworkOccupancy) -> dict[str, Any]:
    """Return the JSON form of one network's occupancy."""
    scopes = [
        {
            "scope": scope.name,
            "kind": scope.kind,
            "size": scope.size,
            "used": scope.used,
            "free": scope.free,
            "utilisation": scope.utilisation,
            "containers": scope.containers,
        }
        for scope in item.scopes
    ]
    return {"network": item.network, "ip_version": item.ip_version, "pool": scopes[0], "subnets": scopes[1:]}


def _scope_row(scope: Scope) -> list[Any]:
    return [scope.name, scope.size, scope.used, scope.free, utilisation_bar(scope.utilisation), _names(scope.containers)]


def utilisation_bar(fraction: float) -> str:
    """Return a text bar and a percentage, such as '█████░░░░░  25.0%'."""
    filled = round(fraction * BAR_WIDTH)
    if fraction > 0 and filled == 0:
        # Any use at all shows, even in an IPv6 /64.
        filled = 1
    percent = fraction * 100
    label = f"{percent:5.1f}%" if percent >= 0.1 or percent == 0 else " <0.1%"
    return "█" * filled + "░" * (BAR_WIDTH - filled) + " " + label


def _names(containers: list[str], max_listed: int = 8) -> str:
    if len(containers) <= max_listed:
        return ", ".join(containers) or "-"
    return ", ".join(containers[:max_listed]) + f" and {len(containers) - max_listed} more"
