"""``netledger container``: create, destroy, list and show container networks."""

from __future__ import annotations

import hashlib
import secrets
from typing import Annotated, Any, Optional

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
    print_table,
)

app = typer.Typer(help="Create, destroy and inspect containers' networks.", no_args_is_help=True)

NetworkArgument = Annotated[str, typer.Argument(help="Network name.")]
IdArgument = Annotated[str, typer.Argument(help="Container id.")]


def container_row(container: Any) -> dict[str, Any]:
    """Return the JSON form of one container network."""
    return {
        "id": container.container_id,
        "ip": str(container.ip),
        "subnet": str(container.subnet),
        "gateway": str(container.gw),
        "kind": "pooled" if container.pooled else "subnet",
    }


@app.command("create")
def create(
    network: NetworkArgument,
    container_id: Annotated[
        Optional[str], typer.Option("--id", help="Container id, 1-128 of A-Z a-z 0-9 . _ - (default: generated).")
    ] = None,
    ip: Annotated[
        Optional[str],
        typer.Option("--ip", help="The container's address: from the pool, or inside --subnet."),
    ] = None,
    subnet: Annotated[
        Optional[str],
        typer.Option("--subnet", help="A special subnet (CIDR) outside the pool, shared with other containers; needs --ip."),
    ] = None,
    db: DbOption = None,
    actor: ActorOption = None,
    reason: ReasonOption = None,
    request_id: RequestIdOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a container's network: from the pool, with a given pool address, or in a special subnet.

    Examples: netledger container create web;
    netledger container create web --id api-1 --ip 10.1.0.50;
    netledger container create web --id db-1 --subnet 192.168.10.0/24 --ip 192.168.10.5
    """
    from ledger.addresses import parse_address, parse_id, parse_network_name, parse_subnet
    from ledger.errors import InvalidInput

    guard_input(lambda: parse_network_name(network))
    cid = guard_input(lambda: parse_id(container_id)) if container_id is not None else _generated_id(request_id)
    address = guard_input(lambda: parse_address(ip, "--ip address")) if ip is not None else None
    special = guard_input(lambda: parse_subnet(subnet, "--subnet")) if subnet is not None else None
    if special is not None and address is None:
        guard_input(lambda: _raise(InvalidInput("--subnet needs --ip: give the container's address inside the subnet")))
    with open_ledger(db) as ledger:
        context = command_context(actor, reason, request_id)
        container = ledger.create_container(network, context, cid, address, special)
    row = container_row(container)
    log.info(
        "created container %s in network %s: ip %s gateway %s, request %s",
        row["id"], network, row["ip"], row["gateway"], context.request_id,
    )
    if as_json:
        print_json({**row, "replayed": ledger.last_command_replayed})
    else:
        typer.echo(f"created container {row['id']}: ip {row['ip']} subnet {row['subnet']} gateway {row['gateway']}")
        note_replayed(ledger, context.request_id)


def _generated_id(request_id: Optional[str]) -> str:
    """Return a new container id, derived from the request id when there is one.

    A retry with the same request id then asks for the same container, so
    the ledger recognises it as a retry instead of a new command.
    """
    if request_id is None:
        return "c-" + secrets.token_hex(6)
    return "c-" + hashlib.sha256(request_id.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def _raise(error: Exception) -> None:
    raise error


@app.command("destroy")
def destroy(
    network: NetworkArgument,
    container_id: IdArgument,
    db: DbOption = None,
    actor: ActorOption = None,
    reason: ReasonOption = None,
    request_id: RequestIdOption = None,
    as_json: JsonOption = False,
) -> None:
    """Destroy a container's network and release its gateway (and its ip when pooled).

    Example: netledger container destroy web api-1
    """
    from ledger.addresses import parse_id, parse_network_name

    guard_input(lambda: parse_network_name(network))
    guard_input(lambda: parse_id(container_id))
    with open_ledger(db) as ledger:
        context = command_context(actor, reason, request_id)
        released = ledger.destroy_container(network, container_id, context)
    addresses = [str(address) for address in released]
    log.info(
        "destroyed container %s in network %s: released %s, request %s",
        container_id, network, ", ".join(addresses) or "nothing", context.request_id,
    )
    if as_json:
        print_json({"id": container_id, "released": addresses, "replayed": ledger.last_command_replayed})
    else:
        typer.echo(f"destroyed container {container_id}; released {', '.join(addresses)}")
        note_replayed(ledger, context.request_id)


@app.command("list")
def list_containers(network: NetworkArgument, db: DbOption = None, as_json: JsonOption = False) -> None:
    """List the containers of a network.

    Example: netledger container list web --json
    """
    from ledger.addresses import parse_network_name

    guard_input(lambda: parse_network_name(network))
    from ledger.text import counted

    with open_ledger(db) as ledger:
        rows = [container_row(c) for c in ledger.network(network).net.containers.values()]
    log.info("listed %s of network %s", counted(len(rows), "container"), network)
    if as_json:
        print_json(rows)
        return
    print_table(
        f"Containers of {network} ({len(rows)})",
        ["id", "ip", "subnet", "gateway", "kind"],
        [[r["id"], r["ip"], r["subnet"], r["gateway"], r["kind"]] for r in rows],
    )


@app.command("show")
def show(network: NetworkArgument, container_id: IdArgument, db: DbOption = None, as_json: JsonOption = False) -> None:
    """Show one container's ip, subnet and gateway.

    Example: netledger container show web api-1
    """
    from ledger.addresses import parse_id, parse_network_name

    guard_input(lambda: parse_network_name(network))
    guard_input(lambda: parse_id(container_id))
    with open_ledger(db) as ledger:
        row = container_row(ledger.network(network).net.container(container_id))
    log.info("showed container %s of network %s", container_id, network)
    if as_json:
        print_json(row)
        return
    print_table(f"Container {container_id}", ["field", "value"], [[k, v] for k, v in row.items()])
