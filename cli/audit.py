"""``netledger audit``: who held an address when, and a container's whole life.

Both commands read the address-history read model instead of replaying
events. Times are printed in UTC.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from cli.common import DbOption, JsonOption, guard_input, log, open_ledger, print_json, print_table

if TYPE_CHECKING:
    from projections.history import ContainerLife, EventStamp, Tenancy

app = typer.Typer(help="Audit who held addresses and what containers did, from the address history.", no_args_is_help=True)

NetworkOption = Annotated[Optional[str], typer.Option("--network", help="Only this network (default: every network).")]
TENANCY_COLUMNS = ["network", "address", "role", "container", "from (UTC)", "from position", "from actor",
                   "to (UTC)", "to position", "to actor"]


def stamp_json(stamp: Optional[EventStamp]) -> Optional[dict[str, Any]]:
    """Return the JSON form of the event that opened or closed something."""
    if stamp is None:
        return None
    return {"time": stamp.time, "position": stamp.position, "actor": stamp.actor}


def tenancy_json(tenancy: Tenancy) -> dict[str, Any]:
    """Return the JSON form of one tenancy, where ``to`` is null while it lasts."""
    return {
        "network": tenancy.network,
        "address": tenancy.address,
        "role": tenancy.role,
        "container": tenancy.container_id,
        "from": stamp_json(tenancy.start),
        "to": stamp_json(tenancy.end),
    }


def _tenancy_row(tenancy: Tenancy) -> list[Any]:
    end = tenancy.end
    return [
        tenancy.network, tenancy.address, tenancy.role, tenancy.container_id or "(pool allocate)",
        tenancy.start.time, tenancy.start.position, tenancy.start.actor,
        end.time if end else "(still held)", end.position if end else "", end.actor if end else "",
    ]


@app.command("ip")
def audit_ip(
    ip: Annotated[str, typer.Argument(help="The address, IPv4 or IPv6.")],
    network: NetworkOption = None,
    at: Annotated[
        Optional[str],
        typer.Option("--at", help="Only who held it at this ISO 8601 time (without an offset, UTC)."),
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show who held an address (a container's ip or gateway, or 'pool allocate'), over time or at one moment.

    A holder held the address from its 'from' time up to, not including,
    its 'to' time.

    Example: netledger audit ip 10.0.3.7 --at 2024-05-01T12:00:00Z
    """
    from ledger.addresses import parse_address, parse_network_name
    from ledger.text import counted
    from projections.queries import address_tenancies
    from projections.runner import ReadModels
    from ledger.replay import parse_time
    from projections.values import time_text

    address = guard_input(lambda: parse_address(ip))
    if network is not None:
        guard_input(lambda: parse_network_name(network))
    moment = time_text(guard_input(lambda: parse_time(at, "--at"))) if at is not None else None
    with open_ledger(db) as ledger:
        found = address_tenancies(ReadModels(ledger), address, network, moment)
    log.info(
        "audited address %s%s%s: %s",
        address,
        f" in network {network}" if network is not None else "",
        f" at {moment}" if moment is not None else "",
        counted(len(found), "tenancy", "tenancies"),
    )
    if as_json:
        print_json({"address": str(address), "at": moment, "tenancies": [tenancy_json(item) for item in found]})
        return
    if not found:
        when = f" at {moment}" if moment is not None else " at any time"
        typer.echo(f"nobody held {address}{when}")
        return
    title = f"Holders of {address} at {moment}" if moment is not None else f"History of {address}"
    print_table(title, TENANCY_COLUMNS, [_tenancy_row(item) for item in found])


def life_json(life: ContainerLife) -> dict[str, Any]:
    """Return the JSON form of one container's life."""
    created = stamp_json(life.created)
    destroyed = stamp_json(life.destroyed)
    if created is not None:
        created["reason"] = life.created_reason
    if destroyed is not None:
        destroyed["reason"] = life.destroyed_reason
    return {
        "network": life.network,
        "container": life.container_id,
        "kind": life.kind,
        "ip": life.ip,
        "subnet": life.subnet,
        "gateway": life.gateway,
        "created": created,
        "destroyed": destroyed,
        "addresses": [tenancy_json(item) for item in life.tenancies],
    }


@app.command("container")
def audit_container(
    container_id: Annotated[str, typer.Argument(help="Container id.")],
    network: NetworkOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a container's whole life: its creation, the addresses it held and its destruction, with who and when.

    A container id used again after a destroy shows one life each time.

    Example: netledger audit container api-1 --network web
    """
    from ledger.addresses import parse_id, parse_network_name
    from ledger.text import counted
    from projections.queries import container_history
    from projections.runner import ReadModels

    guard_input(lambda: parse_id(container_id))
    if network is not None:
        guard_input(lambda: parse_network_name(network))
    with open_ledger(db) as ledger:
        lives = container_history(ReadModels(ledger), container_id, network)
    log.info(
        "audited container %s%s: %s",
        container_id,
        f" in network {network}" if network is not None else "",
        counted(len(lives), "life", "lives"),
    )
    if as_json:
        print_json([life_json(life) for life in lives])
        return
    for life in lives:
        _print_life(life)


def _print_life(life: ContainerLife) -> None:
    rows = [
        ["network", life.network],
        ["kind", life.kind],
        ["ip", life.ip],
        ["subnet", life.subnet],
        ["gateway", life.gateway],
        ["created", _stamp_text(life.created, life.created_reason)],
        ["destroyed", _stamp_text(life.destroyed, life.destroyed_reason) if life.destroyed else "(alive)"],
    ]
    print_table(f"Container {life.container_id} in {life.network}", ["field", "value"], rows)
    print_table(f"Addresses held by {life.container_id}", TENANCY_COLUMNS, [_tenancy_row(item) for item in life.tenancies])


def _stamp_text(stamp: Optional[EventStamp], reason: Optional[str]) -> str:
    if stamp is None:
        return ""
    text = f"{stamp.time} by {stamp.actor} (position {stamp.position})"
    return f"{text}: {reason}" if reason else text
