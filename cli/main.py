"""The ``netledger`` application: one sub-command group per noun."""

from __future__ import annotations

import logging
import os
import re
import sys

import typer

from cli import container, import_cmd, network, pool
from cli import history, verify
from cli import audit, projections_cmd, readmodels
from cli import db

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
history.register(app)
verify.register(app)
app.add_typer(projections_cmd.app, name="projections")
app.add_typer(audit.app, name="audit")
readmodels.register(app)
app.add_typer(db.app, name="db")


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Options that each command takes, and that users also put before the command name.
COMMAND_OPTION_EXAMPLES = {
    "--db": "netledger network list --db URL",
    "--json": "netledger network list --json",
}


def main() -> None:
    """Run the CLI; ``NETLEDGER_LOG`` sets the log level (default WARNING) on standard error."""
    value = os.environ.get("NETLEDGER_LOG", "").strip()
    level = value.upper() or "WARNING"
    if level not in LOG_LEVELS:
        typer.echo(f"error: invalid NETLEDGER_LOG value {value!r}: use one of {', '.join(LOG_LEVELS)}", err=True)
        sys.exit(2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(run(sys.argv[1:]))


def run(arguments: list[str]) -> int:
    """Run one command line and return its exit status.

    A usage error (a missing argument, an unknown option) prints one
    ``error:`` line like every other failure, instead of typer's framed
    panel, so that scripts see one shape of message everywhere.
    """
    command = typer.main.get_command(app)
    try:
        result = command.main(args=arguments, prog_name="netledger", standalone_mode=False)
    except Exception as error:
        # typer 0.29 raises its own copy of click's exceptions and older
        # releases raise click's, so match on click's public interface.
        if not (hasattr(error, "exit_code") and hasattr(error, "format_message")):
            raise
        if type(error).__name__ == "NoArgsIsHelpError":
            error.show()  # type: ignore[attr-defined]
            return int(error.exit_code)  # type: ignore[attr-defined]
        context = getattr(error, "ctx", None)
        path = context.command_path if context is not None else "netledger"
        message = error.format_message().rstrip(".")  # type: ignore[attr-defined]
        example = COMMAND_OPTION_EXAMPLES.get(getattr(error, "option_name", None) or "")
        if path == "netledger" and example is not None:
            message += f"; options such as this one go after the command, as in '{example}'"
        unknown = re.match(r"No such command '([^']+)'", message)
        if unknown and path != "netledger" and unknown.group(1) in getattr(command, "commands", {}):
            # Such as 'netledger pool free', where 'free' is a command of the top level.
            message += f"; 'netledger {unknown.group(1)}' is a command of its own"
        typer.echo(f"error: {message}; see '{path} --help'", err=True)
        return int(error.exit_code)  # type: ignore[attr-defined]
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    main()
