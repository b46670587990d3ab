"""cli_start_ratio: wall time of ``netledger network list`` on a small SQLite ledger over a minimal typer app.

Both run as new processes of the same Python, alternately, and the medians
are compared. A bare ``python -c pass`` is timed as well, to show how much
of either is the interpreter's own start-up.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Measured, Result, RunContext, Target, command_context, ledger_on
from ledger.addresses import parse_range

KEY = "cli_start_ratio"
TARGET = Target("<=", 2)
MINIMAL_APP = Path(__file__).with_name("minimal_cli.py")


def netledger_command() -> list[str]:
    """Return the command that starts this environment's ``netledger`` entry point."""
    script = Path(sys.executable).with_name("netledger")
    if script.exists():
        return [str(script)]
    found = shutil.which("netledger")
    if found:
        return [found]
    return [sys.executable, "-m", "cli.main"]


def run(ctx: RunContext) -> Result:
    """Time the three commands alternately and compare the medians."""
    repeats = ctx.size(21, 5)
    with tempfile.TemporaryDirectory(prefix="netledger-bench-") as directory:
        url = f"sqlite:///{Path(directory) / 'ledger.db'}"
        _fill_small_ledger(url)
        commands = {
            "netledger_network_list": [*netledger_command(), "network", "list", "--db", url],
            "minimal_typer_app": [sys.executable, str(MINIMAL_APP)],
            "python_c_pass": [sys.executable, "-c", "pass"],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for index in range(repeats + 1):
            for name, command in commands.items():
                elapsed = _run_once(command)
                # The first round fills the file cache.
                if index > 0:
                    times[name].append(elapsed)
    medians = {name: statistics.median(values) for name, values in times.items()}
    return Result(
        key=KEY,
        what="netledger network list (SQLite, 2 networks) over a minimal typer app, wall time",
        target=TARGET,
        ratio=medians["netledger_network_list"] / medians["minimal_typer_app"],
        values={name: Measured(value * 1000, "ms") for name, value in medians.items()},
        note=f"median of {repeats} runs each, run alternately",
    )


def _fill_small_ledger(url: str) -> None:
    with ledger_on(url) as ledger:
        for name, cidr in (("web", "10.60.0.0/24"), ("db", "fd00:60::/64")):
            ledger.create_network(name, [parse_range(cidr)], [], "lowest", command_context())
            for index in range(5):
                ledger.create_container(name, command_context(), f"{name}-{index}")


def _run_once(command: list[str]) -> float:
    start = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, timeout=60, check=False)
    elapsed = time.perf_counter() - start
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {completed.returncode}: {completed.stderr.decode()[-500:]}")
    return elapsed
