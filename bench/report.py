"""The results table on the terminal and the results file."""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.common import Result

RESULTS_PATH = Path(__file__).with_name("results.json")


def print_results(results: list[Result], console: Console) -> None:
    """Print one row per figure: ratio, target, whether it was met, and the measured values."""
    table = Table(title="netledger benchmarks (ratios measured in this run)")
    table.add_column("key")
    table.add_column("ratio", justify="right")
    table.add_column("target")
    table.add_column("met")
    table.add_column("measured", overflow="fold")
    for result in results:
        table.add_row(
            result.key,
            _ratio_text(result.ratio),
            str(result.target),
            _met_text(result),
            _values_text(result),
        )
    console.print(table)
    for result in results:
        if result.note or result.error:
            console.print(f"[bold]{result.key}[/bold]: {result.error or result.note}")


def _ratio_text(ratio: float | None) -> str:
    if ratio is None:
        return "-"
    return f"{ratio:,.3g}" if ratio < 1000 else f"{ratio:,.0f}"


def _met_text(result: Result) -> str:
    if result.error:
        return "[red]crashed[/red]"
    if result.met is None:
        return "n/a"
    return "[green]yes[/green]" if result.met else "[red]no[/red]"


def _values_text(result: Result) -> str:
    return "\n".join(
        f"{name}: {measured.value:,.4g} {measured.unit}" for name, measured in result.values.items()
    )


def write_results(results: list[Result], metadata: dict[str, Any], path: Path = RESULTS_PATH) -> None:
    """Write the run's metadata and one top-level key per figure as JSON."""
    document = {**metadata, **{result.key: result.as_json() for result in results}}
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def run_metadata(quick: bool, postgres_version: str, seconds: float) -> dict[str, Any]:
    """Return the date, machine and versions a run is recorded with."""
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "mode": "quick" if quick else "full",
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "postgresql": postgres_version,
        "duration_seconds": round(seconds, 1),
    }


def markdown_table(document: dict[str, Any]) -> str:
    """Return the README's table of a results file: one row per figure, with its ratio, target and values."""
    lines = [
        f"Last full run: {document['date'][:10]}, {document['cpu_count']} cores, "
        f"PostgreSQL {document['postgresql'].split()[0]}, {document['duration_seconds']:.0f} s.",
        "",
        "| key | ratio | target | met | measured |",
        "|---|---|---|---|---|",
    ]
    for key, figure in document.items():
        if not isinstance(figure, dict):
            continue
        met = "crashed" if figure["error"] else {True: "yes", False: "no", None: "n/a"}[figure["met"]]
        values = "; ".join(
            f"{name.replace('_', ' ')} {value['value']:,.4g} {value['unit']}" for name, value in figure["values"].items()
        )
        lines.append(f"| `{key}` | {_ratio_text(figure['ratio'])} | {figure['target']} | {met} | {values} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table(json.loads(RESULTS_PATH.read_text(encoding="utf-8"))))
