"""``netledger events`` and ``export``: read the stored history.

A position is an event's place in the one sequence that orders the events
of every network (its notification id). ``events`` prints it, and
``replay``, ``diff`` (in ``cli.replay``) and ``events --after`` take it.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional, TextIO

import typer

from cli.common import MAX_POSITION, DbOption, JsonOption, fail, guard_input, log, open_ledger, print_json, print_table

if TYPE_CHECKING:
    from ledger.history import HistoryEvent

EXPORT_FORMATS = ("jsonl", "csv")
EXPORT_COLUMNS = [
    "position", "network", "network_id", "version", "type", "timestamp",
    "actor", "reason", "request_id", "payload", "digest",
]
TIME_HELP = "ISO 8601, such as 2024-05-01T12:00:00Z; a time without an offset is UTC"


def register(app: typer.Typer) -> None:
    """Add the history commands to the top-level application."""
    from cli import replay

    app.command("events")(events)
    app.command("replay")(replay.replay)
    app.command("diff")(replay.diff)
    app.command("export")(export)


def event_row(item: HistoryEvent, names: dict[Any, str]) -> dict[str, Any]:
    """Return the JSON form of one stored event, as ``events --json`` and ``export`` print it."""
    return {
        "position": item.position,
        "network": names.get(item.network_id, str(item.network_id)),
        "network_id": str(item.network_id),
        "version": item.version,
        "type": item.type,
        "timestamp": item.timestamp.isoformat(),
        "actor": item.actor,
        "reason": item.reason,
        "request_id": item.request_id,
        "payload": item.payload,
        "digest": item.digest,
    }


def events(
    network: Annotated[Optional[str], typer.Option("--network", help="Only this network's events.")] = None,
    since: Annotated[Optional[str], typer.Option("--since", help=f"Only events at or after this time: {TIME_HELP}.")] = None,
    until: Annotated[Optional[str], typer.Option("--until", help=f"Only events at or before this time: {TIME_HELP}.")] = None,
    event_type: Annotated[
        Optional[list[str]], typer.Option("--type", help="Only events of this type, such as ContainerCreated; repeatable.")
    ] = None,
    actor: Annotated[Optional[str], typer.Option("--actor", help="Only events recorded for this actor.")] = None,
    container: Annotated[Optional[str], typer.Option("--container", help="Only events about this container id.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10000, help="The maximum number of events to print.")] = 100,
    after: Annotated[
        int, typer.Option("--after", min=0, max=MAX_POSITION, help="Start after this position (the next page).")
    ] = 0,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the stored events, oldest first, a page at a time.

    Example: netledger events --network web --type ContainerCreated --since 2024-05-01
    """
    from ledger.addresses import parse_network_name
    from ledger.history import EventFilter, network_names, parse_event_types, require_network, select_events
    from ledger.replay import parse_time
    from ledger.text import counted

    if network is not None:
        guard_input(lambda: parse_network_name(network))
    types = guard_input(lambda: parse_event_types(event_type or []))
    start = guard_input(lambda: parse_time(since, "--since")) if since is not None else None
    end = guard_input(lambda: parse_time(until, "--until")) if until is not None else None
    if start is not None and end is not None and start > end:
        fail(f"invalid time range: --since {since} is after --until {until}; give the earlier time to --since", 2)
    with open_ledger(db) as ledger:
        identity = require_network(ledger, network) if network is not None else None
        selection = EventFilter(identity, start, end, types, actor, container)
        page = list(islice(select_events(ledger, selection, after), limit + 1))
        names = network_names(ledger) if page else {}
    rows = [event_row(item, names) for item in page[:limit]]
    next_after = rows[-1]["position"] if len(page) > limit else None
    log.info(
        "listed %s after position %d%s",
        counted(len(rows), "event"), after, f" of network {network}" if network is not None else "",
    )
    if as_json:
        print_json({"events": rows, "next_after": next_after})
        return
    print_table(
        f"Events ({len(rows)})",
        ["position", "time (UTC)", "network", "version", "type", "actor", "details"],
        [[r["position"], r["timestamp"], r["network"], r["version"], r["type"], r["actor"], _details(r)] for r in rows],
    )
    if next_after is not None:
        typer.echo(f"more events follow: repeat the command with --after {next_after} for the next page")


def _details(row: dict[str, Any]) -> str:
    parts = [f"{key}={_compact(value)}" for key, value in row["payload"].items() if value not in (None, [], {})]
    if row["reason"]:
        parts.append(f"reason={row['reason']!r}")
    return " ".join(parts)


def _compact(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def export(
    output_format: Annotated[str, typer.Option("--format", help="jsonl (one JSON object a line) or csv.")],
    network: Annotated[Optional[str], typer.Option("--network", help="Only this network's events.")] = None,
    output: Annotated[
        Optional[Path], typer.Option("--output", help="File to write (default: standard output).", dir_okay=False)
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write every stored event, oldest first, for audit tools.

    Columns: position, network, network_id, version, type, timestamp,
    actor, reason, request_id, payload, digest (in csv, payload is a JSON
    text, and an empty reason cell stands for null). An event's digest is
    the SHA-256 of the canonical JSON (sorted keys, no spaces, and every
    character outside printable ASCII written as an escape such as \\n or
    \\uXXXX, which Python's json.dumps does by default) of {previous, type,
    network, version, timestamp, payload}: previous is the digest of the
    network's event before it (the empty string for the first), network is
    network_id, version is a JSON number, timestamp is as exported, and
    payload is this payload plus actor, reason and request_id. The
    exported timestamp is the digested one when events were recorded in
    UTC, which eventsourcing 9.5 does unless the TZINFO_TOPIC environment
    variable names another zone.
    A summary goes to standard output, or to standard error when the events
    go to standard output.

    Example: netledger export --format jsonl --output audit.jsonl
    """
    from ledger.addresses import parse_network_name
    from ledger.text import counted

    if output_format not in EXPORT_FORMATS:
        fail(f"invalid --format {output_format!r}: use jsonl or csv", 2)
    if network is not None:
        guard_input(lambda: parse_network_name(network))
    with open_ledger(db) as ledger:
        count = _export_to(ledger, network, output_format, output)
    summary = {"events": count, "format": output_format, "output": str(output) if output else "-"}
    target = str(output) if output else "standard output"
    log.info("exported %s as %s to %s", counted(count, "event"), output_format, target)
    text = json.dumps(summary) if as_json else f"exported {counted(count, 'event')} as {output_format} to {target}"
    typer.echo(text, err=output is None)


def _export_to(ledger: Any, network: Optional[str], output_format: str, output: Optional[Path]) -> int:
    """Write the events to ``output``, replacing it only once every event is written."""
    if output is None:
        return _write_events(ledger, network, output_format, sys.stdout)
    _reject_store_output(ledger, output)
    partial = output.with_name(output.name + ".partial")
    try:
        with partial.open("w", encoding="utf-8", newline="") as stream:
            count = _write_events(ledger, network, output_format, stream)
        os.replace(partial, output)
    except OSError as error:
        from ledger.errors import InvalidInput

        raise InvalidInput(f"cannot write --output {output}: {error.strerror}; choose a writable path") from None
    finally:
        partial.unlink(missing_ok=True)
    return count


def _reject_store_output(ledger: Any, output: Path) -> None:
    """Raise InvalidInput if ``output`` is the SQLite event store or one of its companion files."""
    from ledger.errors import InvalidInput
    from ledger.storage import SQLITE_COMPANIONS

    database = ledger.env.get("SQLITE_DBNAME")
    if not database or database.startswith("file:"):
        return
    for suffix in ("", *SQLITE_COMPANIONS):
        store_file = Path(database + suffix)
        if output.exists() and store_file.exists() and os.path.samefile(output, store_file):
            raise InvalidInput(f"--output {output} is the event store's own file {store_file}; choose another file")


def _write_events(ledger: Any, network: Optional[str], output_format: str, stream: TextIO) -> int:
    from ledger.history import EventFilter, network_names, require_network, select_events

    identity = require_network(ledger, network) if network is not None else None
    names = network_names(ledger)
    writer = csv.DictWriter(stream, fieldnames=EXPORT_COLUMNS) if output_format == "csv" else None
    if writer is not None:
        writer.writeheader()
    count = 0
    for item in select_events(ledger, EventFilter(network_id=identity)):
        row = event_row(item, names)
        if writer is not None:
            writer.writerow({**row, "payload": json.dumps(row["payload"], sort_keys=True, separators=(",", ":"))})
        else:
            stream.write(json.dumps(row, sort_keys=True) + "\n")
        count += 1
    return count
