"""``netledger network import-host-local``: move host-local reservations into the ledger."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cli.common import (
    DbOption,
    JsonOption,
    ReasonOption,
    RecordedRequestIdOption,
    command_context,
    guard_input,
    log,
    open_ledger,
    print_json,
)

IMPORT_ACTOR = "import"


def import_host_local(
    network: Annotated[str, typer.Argument(help="Network to record the containers in; create it first.")],
    directory: Annotated[
        Path,
        typer.Argument(help="host-local data directory of one network, such as /var/lib/cni/networks/NAME."),
    ],
    default_ifname: Annotated[
        Optional[str],
        typer.Option(
            "--default-ifname",
            help="Interface name for files that hold only a container id (written by older host-local versions).",
        ),
    ] = None,
    db: DbOption = None,
    reason: ReasonOption = None,
    request_id: RecordedRequestIdOption = None,
    as_json: JsonOption = False,
) -> None:
    """Record each address reserved by host-local as a pooled container, with actor "import".

    Each container keeps its address and gets a gateway of its own from the
    pool, because the ledger gives no two containers the same gateway. The
    container id is the one netledger-cni uses for the same container and
    interface, so the runtime's DEL releases it later. If any reservation
    breaks the model (outside the pool, taken, two addresses for one
    interface), the command lists them all and writes nothing.

    Example: netledger network import-host-local web /var/lib/cni/networks/web
    """
    from cni.hostlocal import import_reservations, read_store
    from ledger.addresses import parse_network_name
    from ledger.text import counted

    guard_input(lambda: parse_network_name(network))
    reservations, problems = guard_input(lambda: read_store(directory, default_ifname))
    with open_ledger(db, create=True) as ledger:
        context = command_context(IMPORT_ACTOR, reason, request_id)
        created = import_reservations(ledger, network, reservations, problems, context)
    rows = [
        {"id": container.container_id, "ip": str(container.ip), "gateway": str(container.gw)}
        for container in created
    ]
    imported = counted(len(rows), "container")
    log.info("imported %s from %s into network %s, request %s", imported, directory, network, context.request_id)
    if as_json:
        print_json(rows)
        return
    typer.echo(f"imported {imported} into network {network}")
    for row in rows:
        typer.echo(f"  {row['id']}: ip {row['ip']} gateway {row['gateway']}")
