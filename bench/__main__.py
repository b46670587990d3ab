"""Run the benchmarks: ``python -m bench [--quick] [--only KEY]``.

Targets are recorded, never asserted: the exit status is 1 only when a
benchmark crashed (or the database could not be set up), 0 otherwise.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from bench import audit, cli_start, history, large_pool, replay, scaling, throughput
from bench.common import Result, RunContext, Target, drop_databases, find_server, postgres_version
from bench.report import RESULTS_PATH, print_results, run_metadata, write_results

# In the order they run: audit reuses the long history that history writes.
FIGURES: dict[str, tuple[Callable[[RunContext], Result], Target]] = {
    throughput.KEY: (throughput.run, throughput.TARGET),
    history.KEY: (history.run, history.TARGET),
    large_pool.KEY: (large_pool.run, large_pool.TARGET),
    replay.KEY: (replay.run, replay.TARGET),
    audit.KEY: (audit.run, audit.TARGET),
    cli_start.KEY: (cli_start.run, cli_start.TARGET),
    scaling.MULTI_KEY: (scaling.run_multi_network, scaling.MULTI_TARGET),
    scaling.SAME_KEY: (scaling.run_same_network, scaling.SAME_TARGET),
}


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Run with small sizes (about a minute in all).")
    parser.add_argument(
        "--only", action="append", choices=list(FIGURES), metavar="KEY",
        help=f"Run only this figure; repeatable. Keys: {', '.join(FIGURES)}.",
    )
    parser.add_argument(
        "--output", type=Path, default=RESULTS_PATH, help=f"Where to write the results (default: {RESULTS_PATH})."
    )
    return parser.parse_args(argv)


def run_figure(key: str, ctx: RunContext, console: Console) -> Result:
    """Run one figure; a crash becomes a result with an error instead of stopping the run."""
    function, target = FIGURES[key]
    console.print(f"[bold]{key}[/bold] (target {target}) ...")
    start = time.perf_counter()
    try:
        result = function(ctx)
    except Exception as error:  # noqa: BLE001 - one crashed benchmark must not hide the others
        console.print(traceback.format_exc(), markup=False, highlight=False)
        result = Result(key, "crashed", target, error=f"{type(error).__name__}: {error}")
    console.print(f"  done in {time.perf_counter() - start:.1f} s, ratio {result.ratio}")
    return result


def main(argv: list[str]) -> int:
    arguments = parse_arguments(argv)
    console = Console()
    logging.basicConfig(level=logging.WARNING)
    start = time.perf_counter()
    server_url, stop_server = find_server()
    ctx = RunContext(quick=arguments.quick, server_url=server_url)
    keys = arguments.only or list(FIGURES)
    results: list[Result] = []
    try:
        version = postgres_version(server_url)
        for key in FIGURES:
            if key in keys:
                results.append(run_figure(key, ctx, console))
    finally:
        drop_databases(ctx)
        stop_server()
    print_results(results, console)
    write_results(results, run_metadata(ctx.quick, version, time.perf_counter() - start), arguments.output)
    console.print(f"results written to {arguments.output}")
    return 1 if any(result.error for result in results) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
