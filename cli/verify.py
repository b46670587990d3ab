"""``netledger verify``: check the stored history of every network, or of one."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from cli.common import DbOption, JsonOption, guard_input, log, open_ledger, print_json

if TYPE_CHECKING:
    from ledger.verify import VerifyReport

# Redrawing the bar for every event would cost more than checking it.
PROGRESS_STEP = 200


def register(app: typer.Typer) -> None:
    """Add ``verify`` to the top-level application."""
    app.command("verify")(verify)


def verify(
    network: Annotated[Optional[str], typer.Argument(help="Check only this network (default: every network).")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Replay every stored event and check the history and read models: exit 0 when all pass, 1 on a problem.

    For every event: versions are contiguous and in position order, the
    event decodes, its digest matches its stored fields and the previous
    digest, its command is complete, its precondition held, and every model
    invariant holds after it. Stored snapshots must equal the replay. When
    the history has no problem, the read models (free addresses, occupancy,
    address history) are compared with a fresh replay. Exit status 1 means
    a problem was found or the comparison could not run, and the output
    names which. The digests use no secret key: record the head digests
    printed here outside the database to detect a later rewrite.

    Example: netledger verify web
    """
    from ledger.addresses import parse_network_name
    from ledger.text import counted
    from ledger.verify import verify as verify_history

    if network is not None:
        guard_input(lambda: parse_network_name(network))
    with open_ledger(db) as ledger:
        with _progress(ledger.event_count(), enabled=not as_json) as advance:
            report = verify_history(ledger, network, advance)
    log.info(
        "verified %s, %s: %s found; projections: %s",
        f"network {network}" if network is not None else "every network",
        counted(report.events, "event"),
        counted(len(report.problems), "problem"),
        report.projections,
    )
    if as_json:
        print_json(_report_json(report))
    else:
        _print_report(report)
    if not report.passed:
        raise typer.Exit(1)


@contextmanager
def _progress(total: int, enabled: bool) -> Iterator[Callable[[int], None]]:
    """Show a progress bar over positions on standard error; yield the function that advances it."""
    # Off a terminal, rich leaves an empty line behind even for a transient bar.
    if not enabled or not sys.stderr.isatty():
        yield lambda position: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("verifying events"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("verify", total=total)

        def advance(position: int) -> None:
            if position % PROGRESS_STEP == 0:
                progress.update(task, completed=position)

        yield advance
        progress.update(task, completed=total)


def _report_json(report: VerifyReport) -> dict[str, Any]:
    problems = [
        {"network": p.network, "position": p.position, "version": p.version, "message": p.message}
        for p in report.problems
    ]
    return {
        "ok": report.passed,
        "events": report.events,
        "networks": [
            {"name": s.name, "version": s.version, "head_digest": s.digest, "ok": s.problem is None}
            for s in report.streams
        ],
        "first_problem": problems[0] if problems else None,
        "problems": problems,
        "projections": report.projections,
        "projections_compared": report.projections_compared,
    }


def _print_report(report: VerifyReport) -> None:
    if report.problems:
        first, *others = report.problems
        typer.echo(f"verify failed: {first}")
        for problem in others:
            typer.echo(f"also: {problem}")
    else:
        checked = f"{_counted(len(report.streams), 'network')} and {_counted(report.events, 'event')}"
        if report.projections_compared:
            typer.echo(f"verified {checked}: no problem found")
        else:
            typer.echo(f"verify incomplete: {checked} have no problem, but the read models were not compared with a replay")
    typer.echo(f"projections: {report.projections}")
    intact = [stream for stream in report.streams if stream.problem is None]
    if intact:
        typer.echo("head digests (record them outside the database to detect a later rewrite):")
    for stream in intact:
        typer.echo(f"  {stream.name}: version {stream.version} {stream.digest}")


def _counted(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
