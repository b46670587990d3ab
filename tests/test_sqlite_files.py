"""Which SQLite files and directories the CLI creates, and which it refuses to.

A command that only reads must not create a ledger: a mistyped path would
otherwise show an empty one. A path given by --db or NETLEDGER_DB must lie in
an existing directory, so a typo in the directory creates nothing either.
Only the default file in the user's data directory gets its directory made.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from ledger.storage import SQLITE_HEADER

runner = CliRunner()

NEEDS_LEDGER_COMMANDS = [
    ["network", "list"],
    ["network", "show", "web"],
    ["container", "list", "web"],
    ["container", "show", "web", "a1"],
    ["events"],
    ["export", "--format", "jsonl"],
    ["replay", "web", "--position", "1"],
    ["diff", "web", "1", "2"],
    ["verify"],
    ["free", "web"],
    ["occupancy"],
    ["audit", "ip", "10.0.0.1"],
    ["audit", "container", "a1"],
    ["projections", "run"],
    ["projections", "status"],
    ["projections", "rebuild"],
    # These write, but only to a network that exists, so a missing file is a mistyped path.
    ["container", "create", "web"],
    ["container", "destroy", "web", "a1"],
    ["pool", "allocate", "web"],
    ["pool", "release", "web", "10.0.0.1"],
]
CREATES_LEDGER_COMMANDS = [
    ["network", "create", "web", "--pool", "10.0.0.0/24"],
    ["db", "init"],
]


def only_error_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize("command", NEEDS_LEDGER_COMMANDS, ids=" ".join)
def test_missing_file_creates_nothing(tmp_path: Path, command: list[str]) -> None:
    path = tmp_path / "ledger.db"

    result = runner.invoke(app, [*command, "--db", f"sqlite:///{path}"])

    assert result.exit_code == 2, result.output
    assert only_error_line(result.stderr) == (
        f"error: no ledger at {path}; create a network first with 'netledger network create' or check --db"
    )
    assert result.stdout == ""
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", NEEDS_LEDGER_COMMANDS + CREATES_LEDGER_COMMANDS, ids=" ".join)
def test_missing_directory_is_not_created(tmp_path: Path, command: list[str]) -> None:
    url = f"sqlite:///{tmp_path / 'typo' / 'ledger.db'}"

    result = runner.invoke(app, [*command, "--db", url])

    assert result.exit_code == 2, result.output
    assert only_error_line(result.stderr) == (
        f"error: invalid database URL {url}: directory {tmp_path / 'typo'} does not exist; "
        "create it or fix the path"
    )
    assert list(tmp_path.iterdir()) == []


def test_missing_directory_in_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NETLEDGER_DB", f"sqlite:///{tmp_path / 'typo' / 'ledger.db'}")

    result = runner.invoke(app, ["network", "create", "web", "--pool", "10.0.0.0/24"])

    assert result.exit_code == 2, result.output
    assert "directory" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_file_as_directory_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    url = f"sqlite:///{tmp_path / 'file' / 'ledger.db'}"

    result = runner.invoke(app, ["network", "create", "web", "--pool", "10.0.0.0/24", "--db", url])

    assert result.exit_code == 2, result.output
    assert only_error_line(result.stderr) == (
        f"error: invalid database URL {url}: {tmp_path / 'file'} is not a directory; fix the path"
    )


def test_write_creates_file_in_existing_directory(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"

    created = runner.invoke(app, ["network", "create", "web", "--pool", "10.0.0.0/24", "--db", url])
    listed = runner.invoke(app, ["network", "list", "--json", "--db", url])

    assert created.exit_code == 0, created.output
    assert (tmp_path / "ledger.db").is_file()
    assert listed.exit_code == 0, listed.output
    assert '"name": "web"' in listed.stdout


def test_default_file_gets_its_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # platformdirs puts the user data directory under XDG_DATA_HOME on Linux.
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("NETLEDGER_DB", raising=False)
    default_file = tmp_path / "data" / "netledger" / "ledger.db"

    listed_before = runner.invoke(app, ["network", "list"])
    directory_before = (tmp_path / "data").exists()
    created = runner.invoke(app, ["network", "create", "web", "--pool", "10.0.0.0/24"])
    listed_after = runner.invoke(app, ["network", "list", "--json"])

    assert listed_before.exit_code == 2
    assert only_error_line(listed_before.stderr) == (
        f"error: no ledger at {default_file}; create a network first with 'netledger network create' or check --db"
    )
    assert not directory_before
    assert created.exit_code == 0, created.output
    assert default_file.is_file()
    assert listed_after.exit_code == 0, listed_after.output


@pytest.mark.parametrize("content", ["garbage\n", "\n", "x" * 200], ids=["text", "one byte", "long text"])
@pytest.mark.parametrize("command", NEEDS_LEDGER_COMMANDS + CREATES_LEDGER_COMMANDS, ids=" ".join)
def test_non_sqlite_file_is_left_alone(tmp_path: Path, command: list[str], content: str) -> None:
    # SQLite itself takes a file shorter than its header for an empty database.
    path = tmp_path / "x.db"
    path.write_text(content)

    result = runner.invoke(app, [*command, "--db", f"sqlite:///{path}"])

    assert result.exit_code == 2, result.output
    assert only_error_line(result.stderr) == f"error: {path} is not a SQLite database; check --db"
    assert result.stdout == ""
    assert path.read_text() == content
    assert sorted(item.name for item in tmp_path.iterdir()) == ["x.db"]


def test_damaged_sqlite_file_exits_three(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    damaged = SQLITE_HEADER + b"\xff" * 200
    path.write_bytes(damaged)
    url = f"sqlite:///{path}"

    result = runner.invoke(app, ["network", "list", "--db", url])

    assert result.exit_code == 3, result.output
    assert only_error_line(result.stderr).startswith(f"error: cannot open database {url}: ")
    assert path.read_bytes() == damaged


def other_program_database(path: Path) -> bytes:
    """Write a SQLite file with one table of another program and return its bytes."""
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE settings (key TEXT, value TEXT)")
    connection.commit()
    connection.close()
    return path.read_bytes()


@pytest.mark.parametrize("command", NEEDS_LEDGER_COMMANDS + CREATES_LEDGER_COMMANDS, ids=" ".join)
def test_other_program_database_is_left_alone(tmp_path: Path, command: list[str]) -> None:
    path = tmp_path / "app.db"
    before = other_program_database(path)

    result = runner.invoke(app, [*command, "--db", f"sqlite:///{path}"])

    assert result.exit_code == 2, result.output
    assert only_error_line(result.stderr) == (
        f"error: {path} is a SQLite database of another program (tables settings) and holds no ledger; check --db"
    )
    assert path.read_bytes() == before
    assert sorted(item.name for item in tmp_path.iterdir()) == ["app.db"]


@pytest.mark.parametrize("command", NEEDS_LEDGER_COMMANDS, ids=" ".join)
def test_empty_file_is_no_ledger(tmp_path: Path, command: list[str]) -> None:
    path = tmp_path / "ledger.db"
    path.touch()

    result = runner.invoke(app, [*command, "--db", f"sqlite:///{path}"])

    assert result.exit_code == 2, result.output
    assert "error: no ledger at" in only_error_line(result.stderr)
    assert path.read_bytes() == b""


def test_empty_file_takes_a_new_ledger(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    path.touch()
    url = f"sqlite:///{path}"

    created = runner.invoke(app, ["network", "create", "web", "--pool", "10.0.0.0/24", "--db", url])
    listed = runner.invoke(app, ["network", "list", "--json", "--db", url])

    assert created.exit_code == 0, created.output
    assert listed.exit_code == 0, listed.output
    assert '"name": "web"' in listed.stdout


@pytest.mark.parametrize("option", ["create_tables=no", "bogus=1"])
def test_sqlite_url_options_are_rejected(tmp_path: Path, option: str) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}?{option}"

    result = runner.invoke(app, ["network", "create", "web", "--pool", "10.0.0.0/24", "--db", url])

    assert result.exit_code == 2, result.output
    assert only_error_line(result.stderr) == (
        f"error: invalid database URL {url}: a SQLite URL takes no options; remove ?{option}"
    )
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_to_overwrite_the_store(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    url = f"sqlite:///{path}"
    assert runner.invoke(app, ["network", "create", "web", "--pool", "10.0.0.0/24", "--db", url]).exit_code == 0
    before = path.read_bytes()

    result = runner.invoke(app, ["export", "--format", "csv", "--output", str(path), "--db", url])

    assert result.exit_code == 2, result.output
    assert only_error_line(result.stderr) == (
        f"error: --output {path} is the event store's own file {path}; choose another file"
    )
    assert path.read_bytes() == before
    listed = runner.invoke(app, ["network", "list", "--json", "--db", url])
    assert '"name": "web"' in listed.stdout


FAILING_CREATES = [
    ["network", "create", "web", "--pool", "10.0.0.0/30", "--policy", "weird"],
    ["network", "create", "web", "--pool", "10.0.0.0/30", "--exclude", "10.0.0.0/30"],
    ["network", "import-host-local", "web", "{hostlocal}"],
]


@pytest.mark.parametrize("command", FAILING_CREATES, ids=" ".join)
def test_failed_create_leaves_no_file(tmp_path: Path, command: list[str]) -> None:
    path = tmp_path / "ledger.db"
    (tmp_path / "hostlocal").mkdir()
    argv = [part.format(hostlocal=tmp_path / "hostlocal") for part in command]

    result = runner.invoke(app, [*argv, "--db", f"sqlite:///{path}"])

    assert result.exit_code in (1, 2), result.output
    assert only_error_line(result.stderr).startswith("error: ")
    assert sorted(item.name for item in tmp_path.iterdir()) == ["hostlocal"]


@pytest.mark.parametrize("empty", ["zero bytes", "no tables"])
def test_failed_create_restores_empty_file(tmp_path: Path, empty: str) -> None:
    path = tmp_path / "ledger.db"
    if empty == "zero bytes":
        path.touch()
    else:
        sqlite3.connect(path).execute("VACUUM").connection.close()
    before = path.read_bytes()

    result = runner.invoke(app, [*FAILING_CREATES[0], "--db", f"sqlite:///{path}"])

    assert result.exit_code == 2, result.output
    assert path.read_bytes() == before
    assert sorted(item.name for item in tmp_path.iterdir()) == ["ledger.db"]
