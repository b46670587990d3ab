"""``netledger projections``: run, inspect and rebuild the read models."""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from cli.common import DbOption, JsonOption, guard_input, log, open_ledger, print_json, print_table

if TYPE_CHECKING:
    from projections.runner import ReadModels, ReadModelStatus

app = typer.Typer(
    help="Keep the read models (free addresses, occupancy, address history) caught up with the events.",
    no_args_is_help=True,
)

BatchOption = Annotated[
    int, typer.Option("--batch-size", min=1, max=100000, help="Events applied per transaction.")
]


def status_row(status: ReadModelStatus) -> dict[str, Any]:
    """Return the JSON form of one read model's position."""
    return {"name": status.name, "position": status.position, "head": status.head, "lag": status.lag}


def _print_statuses(statuses: list[ReadModelStatus], as_json: bool, title: str) -> None:
    rows = [status_row(status) for status in statuses]
    if as_json:
        print_json(rows)
        return
    print_table(title, ["read model", "position", "log head", "lag (events)"], [list(row.values()) for row in rows])


@app.command("run")
def run(
    follow: Annotated[
        bool,
        typer.Option("--follow", help="Keep running and apply new events as they are stored, until Ctrl-C or SIGTERM."),
    ] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=0.05, max=3600, help="Seconds between polls of the log with --follow.")
    ] = 1.0,
    batch_size: BatchOption = 500,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Apply the events stored so far to every read model, or keep doing so with --follow.

    Queries catch the read models up themselves. A follower keeps them
    current, so that queries find little left to apply.

    Example: netledger projections run --follow --interval 0.5
    """
    from projections.runner import ReadModels

    with open_ledger(db) as ledger:
        models = ReadModels(ledger, batch_size)
        if follow:
            _follow(models, interval)
            applied = None
        else:
            applied = models.catch_up()
        statuses = models.status()
    if applied is None:
        log.info("followed the log until stopped: %s", _positions(statuses))
    else:
        log.info("applied %s: %s", _applied_text(applied), _positions(statuses))
    if applied is not None and not as_json:
        typer.echo("applied " + _applied_text(applied))
    _print_statuses(statuses, as_json, "Read models")


def _applied_text(applied: dict[str, int]) -> str:
    from ledger.text import counted

    return ", ".join(f"{counted(count, 'event')} to {name}" for name, count in applied.items())


def _positions(statuses: list[ReadModelStatus]) -> str:
    return ", ".join(f"{status.name} at position {status.position}" for status in statuses)


def _follow(models: ReadModels, interval: float) -> None:
    """Follow the log until SIGINT or SIGTERM, finishing the batch in progress first."""
    from projections.runner import follow

    if "NETLEDGER_LOG" not in os.environ:
        # A long-running follower reports its starts and stops by default.
        logging.getLogger("netledger.projections").setLevel(logging.INFO)
    stop = threading.Event()
    previous = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    for number in previous:
        signal.signal(number, lambda received, frame: stop.set())
    try:
        follow(models, interval, stop)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@app.command("status")
def status(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Show each read model's position in the log and how many events it lags behind.

    Example: netledger projections status --json
    """
    from projections.runner import ReadModels

    with open_ledger(db) as ledger:
        statuses = ReadModels(ledger).status()
    log.info("showed read model status: %s", _positions(statuses))
    _print_statuses(statuses, as_json, "Read models")


@app.command("rebuild")
def rebuild(
    names: Annotated[
        Optional[list[str]],
        typer.Option("--projection", help="Rebuild only this read model, such as occupancy (repeatable; default: all)."),
    ] = None,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size", min=1, max=100000,
            help="Events applied per transaction when catching up after the swap "
            "(the replay itself runs in memory).",
        ),
    ] = 500,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Replay every event into new read-model tables, then swap them in, with a progress bar.

    The replay runs in memory, with finished rows kept in a temporary file,
    so queries keep reading the old tables until the swap. The events are
    never touched.

    Example: netledger projections rebuild --projection address_history
    """
    from projections.runner import NAMES, ReadModels

    chosen = guard_input(lambda: _check_names(names or list(NAMES), NAMES))
    with open_ledger(db) as ledger:
        models = ReadModels(ledger, batch_size)
        if as_json:
            models.rebuild(chosen)
        else:
            _rebuild_with_progress(models, chosen)
        statuses = [item for item in models.status() if item.name in chosen]
    log.info("rebuilt read models: %s", _positions(statuses))
    _print_statuses(statuses, as_json, "Rebuilt read models")


def _check_names(names: list[str], known: tuple[str, ...]) -> list[str]:
    from ledger.errors import InvalidInput

    for name in names:
        if name not in known:
            raise InvalidInput(f"invalid read model {name!r}: use one of {', '.join(known)}")
    return list(dict.fromkeys(names))


def _rebuild_with_progress(models: ReadModels, names: list[str]) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("replaying events"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task("replay", total=models.head())
        models.rebuild(names, lambda position, head: progress.update(task, completed=position, total=head))
