"""Running ``netledger`` commands in-process from tests, against one event store."""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner, Result

from cli.main import app

runner = CliRunner()


def run(db_url: str, *args: str) -> Result:
    """Run a command on ``db_url`` and assert it succeeded."""
    result = runner.invoke(app, [*args, "--db", db_url])
    assert result.exit_code == 0, result.stderr
    return result


def run_json(db_url: str, *args: str) -> Any:
    """Run a command with ``--json`` on ``db_url`` and return its decoded output."""
    return json.loads(run(db_url, *args, "--json").stdout)
