"""The quick benchmark runs end to end and writes every figure.

Targets are not checked here: the machine running the tests is shared and
noisy, and the full benchmark (``make bench``) is where targets are judged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench.__main__ import FIGURES


def test_quick_bench_writes_every_key(postgres_server: str, tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NETLEDGER_BENCH_DB": postgres_server},
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]

    results = json.loads(output.read_text())

    assert results["mode"] == "quick"
    for key in FIGURES:
        figure = results[key]
        assert figure["error"] is None, f"{key}: {figure['error']}"
        assert figure["values"], f"{key} recorded no values"
        assert isinstance(figure["ratio"], float), f"{key} has no ratio: {figure['note']}"
        assert figure["met"] in (True, False)
