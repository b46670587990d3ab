"""``netledger db``: prepare the event store's database."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from cli.common import DbOption, JsonOption, guard_input, log, open_ledger, print_json

app = typer.Typer(help="Prepare the event store's database.", no_args_is_help=True)


@app.command("init")
def init(
    db: DbOption = None,
    writer_role: Annotated[
        Optional[str],
        typer.Option(
            "--writer-role",
            help="PostgreSQL only: also create this role (NOLOGIN) with the privileges to read and append "
            "events and nothing more; grant it to the ledger's login role.",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Create the event store's tables and make the events table append-only.

    Installs triggers that reject UPDATE and DELETE on stored events (and
    TRUNCATE on PostgreSQL), in the database itself. Safe to run again.

    Example: netledger db init --db postgresql://postgres@127.0.0.1:5432/ledger
    """
    from ledger.dbinit import parse_role_name, protect

    if writer_role is not None:
        guard_input(lambda: parse_role_name(writer_role))
    with open_ledger(db, create=True) as ledger:
        report = protect(ledger, writer_role)
    log.info(
        "made events table %s of database %s append-only%s",
        report.table, report.database, f", with role {report.role}" if report.role is not None else "",
    )
    if as_json:
        print_json({"database": report.database, "table": report.table, "triggers": report.triggers, "role": report.role})
        return
    typer.echo(f"events table {report.table} is append-only: triggers {', '.join(report.triggers)}")
    if report.role is not None:
        typer.echo(f"role {report.role} may read and append events; grant it to the ledger's login role")
