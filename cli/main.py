"""The ``netledger`` application: one sub-command group per noun."""

from __future__ import annotations

import logging
import os

import typer

from cli import container, import_cmd, network, pool

app = typer.Typer(
    name="netledger",
    help="An event-sourced IP address ledger for container networks.\n\n"
    "Exit status: 0 done, 1 refused by the model, 2 bad input or usage, 3 database failure.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
network.app.command("import-host-local")(import_cmd.import_host_local)
app.add_typer(network.app, name="network")
app.add_typer(container.app, name="container")
app.add_typer(pool.app, name="pool")


def main() -> None:
    """Run the CLI; ``NETLEDGER_LOG`` sets the log level (default WARNING) on standard error."""
    level = os.environ.get("NETLEDGER_LOG", "WARNING").upper()
    logging.basicConfig(level=getattr(logging, level, logging.WARNING), format="%(levelname)s %(name)s: %(message)s")
    app()


if __name__ == "__main__":
    main()
