"""Usage errors found by the command-line parser print one ``error:`` line.

These tests call ``cli.main.run``, the function behind the ``netledger``
script. ``CliRunner.invoke(app)`` skips it, and prints typer's framed panel.
"""

from __future__ import annotations

import pytest

from cli.main import run
from ledger.application import Ledger
from ledger.storage import environment_for


@pytest.mark.parametrize(
    ("args", "named", "command"),
    [
        (["network", "create", "web"], "Missing option '--pool'", "netledger network create"),
        (["container", "create"], "Missing argument 'network'", "netledger container create"),
        (["container", "list", "web", "--bogus"], "No such option: --bogus", "netledger container list"),
        (["replay", "web", "--position", "0"], "Invalid value for '--position'", "netledger replay"),
    ],
)
def test_usage_error_is_one_line(
    sqlite_url: str, capsys: pytest.CaptureFixture[str], args: list[str], named: str, command: str
) -> None:
    status = run([*args, "--db", sqlite_url])
    output, errors = capsys.readouterr()

    assert status == 2
    assert output == ""
    (line,) = errors.splitlines()
    assert line.startswith(f"error: {named}")
    assert line.endswith(f"; see '{command} --help'")
    ledger = Ledger(env=environment_for(sqlite_url))
    try:
        assert ledger.event_count() == 0
    finally:
        ledger.close()


@pytest.mark.parametrize("option", ["--db", "--json"])
def test_command_option_before_command_shows_where(capsys: pytest.CaptureFixture[str], option: str) -> None:
    status = run([option, "x", "network", "list"] if option == "--db" else [option, "network", "list"])
    output, errors = capsys.readouterr()

    assert status == 2
    assert output == ""
    (line,) = errors.splitlines()
    assert line.startswith(f"error: No such option: {option}")
    assert f"go after the command, as in 'netledger network list {option}" in line



def test_group_points_to_top_command(capsys: pytest.CaptureFixture[str]) -> None:
    status = run(["pool", "free", "web"])
    output, errors = capsys.readouterr()

    assert status == 2
    assert output == ""
    assert errors == (
        "error: No such command 'free'; 'netledger free' is a command of its own; see 'netledger pool --help'\n"
    )


def test_unknown_subcommand_has_no_pointer(capsys: pytest.CaptureFixture[str]) -> None:
    status = run(["pool", "nosuch", "web"])
    _, errors = capsys.readouterr()

    assert status == 2
    assert errors == "error: No such command 'nosuch'; see 'netledger pool --help'\n"
