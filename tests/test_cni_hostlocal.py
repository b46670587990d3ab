"""`netledger network import-host-local` moves host-local reservations into the ledger."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from ledger.addresses import parse_range
from ledger.aggregate import CommandContext, network_id
from ledger.application import Ledger
from ledger.storage import environment_for

REPO = Path(__file__).resolve().parent.parent
HOST_LOCAL = Path("/usr/lib/cni/host-local")
NETWORK = "pods"


def netledger(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args], capture_output=True, text=True, env=env, timeout=60
    )


def run_plugin(command: str, db_url: str, container: str, ifname: str = "eth0") -> subprocess.CompletedProcess[str]:
    config = {
        "cniVersion": "1.0.0",
        "name": NETWORK,
        "type": "ptp",
        "ipam": {"type": "netledger-cni", "network": NETWORK, "db": db_url},
    }
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container,
        "CNI_IFNAME": ifname,
        "CNI_NETNS": "/var/run/netns/unused",
    }
    return subprocess.run(
        [sys.executable, "-m", "cni.plugin"], input=json.dumps(config), capture_output=True, text=True, env=env, timeout=60
    )


def write_store(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "lock").write_text("")
    (directory / "last_reserved_ip.0").write_text("198.19.0.4")
    for name, content in files.items():
        (directory / name).write_text(content)
    return directory


@pytest.fixture
def db(sqlite_url: str) -> str:
    ledger = Ledger(env=environment_for(sqlite_url))
    context = CommandContext(actor="test", request_id=str(uuid.uuid4()))
    # host-local's shared gateway 198.19.0.1 stays out of the pool.
    ledger.create_network(NETWORK, [parse_range("198.19.0.0/24")], [parse_range("198.19.0.1-198.19.0.1")], "lowest", context)
    ledger.close()
    return sqlite_url


def ledger_state(db_url: str) -> tuple[dict[str, Any], list[Any]]:
    ledger = Ledger(env=environment_for(db_url))
    try:
        return dict(ledger.network(NETWORK).net.containers), list(ledger.repository.event_store.get(network_id(NETWORK)))
    finally:
        ledger.close()


def test_import_gives_each_container_own_gateway(db: str, tmp_path: Path) -> None:
    store = write_store(
        tmp_path / "pods",
        {"198.19.0.2": "abc\r\neth0", "198.19.0.3": "def\r\neth0", "198.19.0.5": "ghi\neth1"},
    )
    done = netledger("network", "import-host-local", NETWORK, str(store), "--db", db, "--json")

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [
        {"id": "abc-eth0", "ip": "198.19.0.2", "gateway": "198.19.0.4"},
        {"id": "def-eth0", "ip": "198.19.0.3", "gateway": "198.19.0.6"},
        {"id": "ghi-eth1", "ip": "198.19.0.5", "gateway": "198.19.0.7"},
    ]
    containers, events = ledger_state(db)
    assert sorted(containers) == ["abc-eth0", "def-eth0", "ghi-eth1"]
    assert {event.actor for event in events[1:]} == {"import"}


def test_import_rejects_all_on_problem(db: str, tmp_path: Path) -> None:
    store = write_store(
        tmp_path / "pods",
        {"198.19.0.2": "abc\r\neth0", "10.9.9.9": "def\r\neth0", "notes.txt": "x", "198.19.0.7": "abc\r\neth0"},
    )
    done = netledger("network", "import-host-local", NETWORK, str(store), "--db", db)

    assert done.returncode == 1
    assert "import into network pods refused, nothing written; 3 problems:" in done.stderr
    assert "notes.txt: the file name is not an IP address" in done.stderr
    assert "container abc on eth0 has 198.19.0.2, 198.19.0.7" in done.stderr
    assert "10.9.9.9 (def on eth0): address 10.9.9.9 is not in the pool of network pods" in done.stderr
    assert "only pool addresses can be imported" in done.stderr
    assert "--subnet" not in done.stderr
    containers, events = ledger_state(db)
    assert containers == {}
    assert len(events) == 1


def test_import_of_one_container_says_container(db: str, tmp_path: Path) -> None:
    store = write_store(tmp_path / "pods", {"198.19.0.2": "abc\r\neth0"})

    done = netledger("network", "import-host-local", NETWORK, str(store), "--db", db)

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "imported 1 container into network pods"


def test_import_refusal_of_one_problem_says_problem(db: str, tmp_path: Path) -> None:
    store = write_store(tmp_path / "pods", {"10.9.9.9": "def\r\neth0"})

    done = netledger("network", "import-host-local", NETWORK, str(store), "--db", db)

    assert done.returncode == 1
    assert "refused, nothing written; 1 problem:" in done.stderr


def test_import_of_old_format_needs_default_ifname(db: str, tmp_path: Path) -> None:
    store = write_store(tmp_path / "pods", {"198.19.0.2": "abc"})
    refused = netledger("network", "import-host-local", NETWORK, str(store), "--db", db)
    accepted = netledger("network", "import-host-local", NETWORK, str(store), "--db", db, "--default-ifname", "eth0")

    assert refused.returncode == 1
    assert "pass --default-ifname" in refused.stderr
    assert accepted.returncode == 0, accepted.stderr
    assert sorted(ledger_state(db)[0]) == ["abc-eth0"]


def test_import_missing_directory_invalid(db: str, tmp_path: Path) -> None:
    done = netledger("network", "import-host-local", NETWORK, str(tmp_path / "absent"), "--db", db)

    assert done.returncode == 2
    assert "is not a directory" in done.stderr


def test_imported_container_is_released_by_cni_del(db: str, tmp_path: Path) -> None:
    store = write_store(tmp_path / "pods", {"198.19.0.2": "abc\r\neth0"})
    netledger("network", "import-host-local", NETWORK, str(store), "--db", db)
    deleted = run_plugin("DEL", db, "abc")

    assert deleted.returncode == 0, deleted.stdout
    containers, events = ledger_state(db)
    assert containers == {}
    assert events[-1].addresses == ["198.19.0.2", "198.19.0.3"]


def test_import_of_real_host_local_directory(db: str, tmp_path: Path) -> None:
    if not HOST_LOCAL.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{HOST_LOCAL} is missing and CI=true forbids skipping; install containernetworking-plugins")
        pytest.skip(f"{HOST_LOCAL} is missing; install Debian's containernetworking-plugins")
    config = {
        "cniVersion": "1.0.0",
        "name": NETWORK,
        "type": "ptp",
        "ipam": {"type": "host-local", "subnet": "198.19.0.0/24", "dataDir": str(tmp_path / "data")},
    }
    for container in ("alpha", "beta"):
        env = {**os.environ, "CNI_COMMAND": "ADD", "CNI_CONTAINERID": container, "CNI_IFNAME": "eth0",
               "CNI_NETNS": "/var/run/netns/unused", "CNI_PATH": str(HOST_LOCAL.parent)}
        added = subprocess.run([str(HOST_LOCAL)], input=json.dumps(config), capture_output=True, text=True, env=env, timeout=30)
        assert added.returncode == 0, added.stdout
    done = netledger("network", "import-host-local", NETWORK, str(tmp_path / "data" / NETWORK), "--db", db, "--json")

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [
        {"id": "alpha-eth0", "ip": "198.19.0.2", "gateway": "198.19.0.4"},
        {"id": "beta-eth0", "ip": "198.19.0.3", "gateway": "198.19.0.5"},
    ]
