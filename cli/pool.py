"""``netledger pool``: the bare Allocate, AllocateTwo and Release operations."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.common import (
    ActorOption,
    DbOption,
    JsonOption,
    ReasonOption,
    RequestIdOption,
    command_context,
    guard_input,
    log,
    note_replayed,
    open_ledger,
    print_json,
)

app = typer.Typer(help="Allocate and release pool addresses without a container (administrators).", no_args_is_help=True)


@app.command("allocate")
def allocate(
    network: Annotated[str, typer.Argument(help="Network name.")],
    two: Annotated[bool, typer.Option("--two", help="Allocate an address and a gateway (AllocateTwo).")] = False,
    db: DbOption = None,
    actor: ActorOption = None,
    reason: ReasonOption = None,
    request_id: RequestIdOption = None,
    as_json: JsonOption = False,
) -> None:
    """Take one free address (or two with --two) out of the pool without a container.

    Example: netledger pool allocate web --two --reason "reserved for the load balancer"
    """
    from ledger.addresses import parse_network_name

    guard_input(lambda: parse_network_name(network))
    with open_ledger(db) as ledger:
        context = command_context(actor, reason, request_id)
        chosen = ledger.allocate(network, 2 if two else 1, context)
    result = {"ip": str(chosen[0])}
    if two:
        result["gateway"] = str(chosen[1])
    log.info(
        "allocated %s in network %s, request %s",
        ", ".join(str(address) for address in chosen), network, context.request_id,
    )
    if as_json:
        print_json({**result, "replayed": ledger.last_command_replayed})
    else:
        typer.echo("allocated " + ", ".join(f"{role} {address}" for role, address in result.items()))
        note_replayed(ledger, context.request_id)


@app.command("release")
def release(
    network: Annotated[str, typer.Argument(help="Network name.")],
    addresses: Annotated[list[str], typer.Argument(help="Addresses to return to the pool.")],
    db: DbOption = None,
    actor: ActorOption = None,
    reason: ReasonOption = None,
    request_id: RequestIdOption = None,
    as_json: JsonOption = False,
) -> None:
    """Return addresses allocated without a container to the pool.

    Addresses outside the pool, or not allocated, are ignored and listed as
    such. An address a container holds is refused: destroy the container.

    Example: netledger pool release web 10.1.0.7 10.1.0.8
    """
    from ledger.addresses import parse_address, parse_network_name

    guard_input(lambda: parse_network_name(network))
    parsed = guard_input(lambda: [parse_address(text) for text in addresses])
    with open_ledger(db) as ledger:
        context = command_context(actor, reason, request_id)
        released, ignored = ledger.release(network, parsed, context)
    result = {"released": [str(address) for address in released], "ignored": ignored}
    log.info(
        "released %s in network %s, ignored %s, request %s",
        ", ".join(result["released"]) or "nothing",
        network,
        ", ".join(str(address) for address in ignored) or "nothing",
        context.request_id,
    )
    if as_json:
        print_json({**result, "replayed": ledger.last_command_replayed})
        return
    typer.echo(f"released {', '.join(result['released']) or 'nothing'}")
    for address, why in ignored.items():
        typer.echo(f"ignored {address}: {why}")
    note_replayed(ledger, context.request_id)
