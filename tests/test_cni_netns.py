"""netledger-cni as the IPAM of Debian's ptp plugin, in network namespaces this test makes.

One namespace plays the host: ptp runs inside it, so the host ends of the
veth pairs, the gateway addresses and the forwarding switch that ptp turns
on all stay there. Twenty more namespaces play the containers. Each gets an
address and a gateway from a ledger over 198.18.0.0/16 (inside the range
reserved for benchmarks), pings its gateway once, and is deleted again.
Then the ledger's events show each address's tenancy. No packet leaves the
namespaces this test made.

The same twenty ADDs and DELs then run with host-local as the IPAM, and the
test prints how much longer netledger-cni took (no assertion on timing).

Needs root, iproute2, ping and /usr/lib/cni/{ptp,host-local}. Without a way
to make namespaces the test is skipped. On a machine that can make them it
fails under CI=true when anything else is missing.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ledger.addresses import parse_range
from ledger.aggregate import CommandContext, network_id
from ledger.application import Ledger
from ledger.storage import environment_for

REPO = Path(__file__).resolve().parent.parent
PLUGIN_DIR = Path("/usr/lib/cni")
CONTAINERS = 20
NETWORK = "pods"
# Both inside 198.18.0.0/15, the range reserved for network benchmarks.
POOL = "198.18.0.0/16"
SPECIAL_SUBNET = "198.19.7.0/24"
NETNS_DIR = Path("/var/run/netns")


def run(*command: str, check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), capture_output=True, text=True, check=check, timeout=60, **kwargs)


def namespace_problem() -> str | None:
    """Return why this machine cannot make network namespaces, or None when it can."""
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is missing"
    probe = f"nlprobe{os.getpid()}"
    made = run("ip", "netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"'ip netns add' failed: {made.stderr.strip()}"
    run("ip", "netns", "del", probe, check=False)
    return None


def tool_problem() -> str | None:
    """Return which plugin or tool is missing, or None."""
    for plugin in ("ptp", "host-local"):
        if not (PLUGIN_DIR / plugin).exists():
            return f"{PLUGIN_DIR / plugin} is missing; install Debian's containernetworking-plugins"
    if shutil.which("ping") is None:
        return "ping is missing; install iputils-ping"
    return None


@dataclass
class Namespaces:
    """The namespaces of one test run, deleted in ``remove_all``."""

    tag: str
    made: list[str] = field(default_factory=list)

    @property
    def host(self) -> str:
        return f"{self.tag}h"

    def container(self, index: int) -> str:
        return f"{self.tag}c{index}"

    def add(self, name: str) -> None:
        run("ip", "netns", "add", name)
        self.made.append(name)

    def remove_all(self) -> None:
        # Deleting a namespace also deletes the veth ends inside it.
        for name in reversed(self.made):
            run("ip", "netns", "del", name, check=False)
        self.made.clear()


@pytest.fixture
def namespaces() -> Iterator[Namespaces]:
    problem = namespace_problem()
    if problem is not None:
        pytest.skip(f"cannot make network namespaces: {problem}")
    missing = tool_problem()
    if missing is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"this machine can make network namespaces but {missing}; CI=true forbids skipping")
        pytest.skip(missing)
    spaces = Namespaces(tag=f"nlt{uuid.uuid4().hex[:6]}")
    try:
        spaces.add(spaces.host)
        run("ip", "-n", spaces.host, "link", "set", "lo", "up")
        for index in range(CONTAINERS):
            spaces.add(spaces.container(index))
        yield spaces
    finally:
        spaces.remove_all()


def plugin_dir(tmp_path: Path) -> Path:
    """Return a CNI_PATH directory with ptp, host-local and netledger-cni."""
    directory = tmp_path / "cni-bin"
    directory.mkdir()
    for plugin in ("ptp", "host-local"):
        (directory / plugin).symlink_to(PLUGIN_DIR / plugin)
    installed = Path(sys.executable).parent / "netledger-cni"
    if installed.exists():
        (directory / "netledger-cni").symlink_to(installed)
    else:
        wrapper = directory / "netledger-cni"
        wrapper.write_text(f'#!/bin/sh\nPYTHONPATH="{REPO}" exec "{sys.executable}" -m cni.plugin "$@"\n')
        wrapper.chmod(0o755)
    return directory


def ptp(spaces: Namespaces, command: str, index: int, config: dict[str, Any], cni_path: Path) -> tuple[dict[str, Any] | None, float]:
    """Run ptp inside the host namespace for container ``index``; return its output and seconds taken."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CNI_")}
    env.update(
        {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": f"pod{index}",
            "CNI_NETNS": str(NETNS_DIR / spaces.container(index)),
            "CNI_IFNAME": "eth0",
            "CNI_PATH": str(cni_path),
        }
    )
    started = time.perf_counter()
    done = run("ip", "netns", "exec", spaces.host, str(cni_path / "ptp"), input=json.dumps(config), env=env, check=False)
    elapsed = time.perf_counter() - started
    assert done.returncode == 0, f"ptp {command} for pod{index} failed: {done.stdout} {done.stderr}"
    return (json.loads(done.stdout) if done.stdout.strip() else None), elapsed


def interface_addresses(namespace: str) -> dict[str, list[str]]:
    """Return each interface's IPv4 addresses with prefix, in ``namespace``."""
    links = json.loads(run("ip", "-n", namespace, "-j", "-4", "addr", "show").stdout)
    return {link["ifname"]: [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])] for link in links}


def link_names(namespace: str) -> list[str]:
    return sorted(link["ifname"] for link in json.loads(run("ip", "-n", namespace, "-j", "link", "show").stdout))


def make_ledger(db_url: str) -> None:
    ledger = Ledger(env=environment_for(db_url))
    context = CommandContext(actor="test", request_id=str(uuid.uuid4()))
    ledger.create_network(NETWORK, [parse_range(POOL)], [], "lowest", context)
    ledger.close()


def tenancies(db_url: str) -> dict[str, list[tuple[str, str, str]]]:
    """Return, per address, the (event, container id, actor) entries of its history."""
    ledger = Ledger(env=environment_for(db_url))
    try:
        events = list(ledger.repository.event_store.get(network_id(NETWORK)))
    finally:
        ledger.close()
    history: dict[str, list[tuple[str, str, str]]] = {}
    for event in events:
        kind = type(event).__name__
        if kind == "ContainerCreated":
            history.setdefault(event.ip, []).append(("ip of", event.container_id, event.actor))
            history.setdefault(event.gw, []).append(("gateway of", event.container_id, event.actor))
        elif kind == "AddressesReleased":
            for address in event.addresses:
                history.setdefault(address, []).append(("released", event.container_id, event.actor))
    return history


def test_ptp_with_netledger_cni_in_namespaces(
    namespaces: Namespaces, tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cni_path = plugin_dir(tmp_path)
    make_ledger(sqlite_url)
    config = {
        "cniVersion": "1.0.0",
        "name": NETWORK,
        "type": "ptp",
        "ipam": {"type": "netledger-cni", "network": NETWORK, "db": sqlite_url},
    }

    results = {}
    netledger_add = 0.0
    for index in range(CONTAINERS):
        result, seconds = ptp(namespaces, "ADD", index, config, cni_path)
        assert result is not None
        results[index] = result
        netledger_add += seconds

    ledger = Ledger(env=environment_for(sqlite_url))
    recorded = dict(ledger.network(NETWORK).net.containers)
    ledger.close()
    host_addresses = [address for addresses in interface_addresses(namespaces.host).values() for address in addresses]
    for index, result in results.items():
        container = recorded[f"pod{index}-eth0"]
        address = result["ips"][0]["address"]
        assert address.split("/")[0] == str(container.ip)
        assert result["ips"][0]["gateway"] == str(container.gw)
        assert interface_addresses(namespaces.container(index))["eth0"] == [address]
        assert f"{container.gw}/32" in host_addresses
        ping = run("ip", "netns", "exec", namespaces.container(index), "ping", "-c", "1", "-W", "1", str(container.gw), check=False)
        assert ping.returncode == 0, f"pod{index} could not ping its gateway {container.gw}: {ping.stdout}"
        ptp(namespaces, "CHECK", index, {**config, "prevResult": result}, cni_path)
    assert all(ipaddress.ip_address(str(c.ip)) in ipaddress.ip_network(POOL) for c in recorded.values())
    assert len({str(c.ip) for c in recorded.values()} | {str(c.gw) for c in recorded.values()}) == 2 * CONTAINERS

    netledger_del = 0.0
    for index in range(CONTAINERS):
        _, seconds = ptp(namespaces, "DEL", index, config, cni_path)
        netledger_del += seconds
    assert link_names(namespaces.host) == ["lo"]
    for index in range(CONTAINERS):
        assert link_names(namespaces.container(index)) == ["lo"]

    history = tenancies(sqlite_url)
    for container in recorded.values():
        cid = container.container_id
        assert history[str(container.ip)] == [("ip of", cid, "cni"), ("released", cid, "cni")]
        assert history[str(container.gw)] == [("gateway of", cid, "cni"), ("released", cid, "cni")]

    host_local = {**config, "ipam": {"type": "host-local", "subnet": POOL, "dataDir": str(tmp_path / "host-local")}}
    host_local_add = host_local_del = 0.0
    for index in range(CONTAINERS):
        host_local_add += ptp(namespaces, "ADD", index, host_local, cni_path)[1]
    for index in range(CONTAINERS):
        host_local_del += ptp(namespaces, "DEL", index, host_local, cni_path)[1]
    assert link_names(namespaces.host) == ["lo"]

    names = list(namespaces.made)
    namespaces.remove_all()
    listed = run("ip", "netns", "list").stdout
    assert [name for name in names if name in listed.split()] == []
    with capsys.disabled():
        print(
            f"\nptp ADD+DEL of {CONTAINERS} containers: netledger-cni {netledger_add:.2f}s + {netledger_del:.2f}s, "
            f"host-local {host_local_add:.2f}s + {host_local_del:.2f}s; "
            f"ratio ADD {netledger_add / host_local_add:.1f}, DEL {netledger_del / host_local_del:.1f}, "
            f"total {(netledger_add + netledger_del) / (host_local_add + host_local_del):.1f}"
        )


def test_ptp_special_subnet_without_routes(namespaces: Namespaces, tmp_path: Path, sqlite_url: str) -> None:
    # The model puts a special subnet's gateway outside the subnet, so ptp
    # cannot install a default route via it. With "routes": [] only ptp's
    # own routes remain, which reach the subnet through the gateway.
    cni_path = plugin_dir(tmp_path)
    make_ledger(sqlite_url)
    ipam = {"type": "netledger-cni", "network": NETWORK, "db": sqlite_url, "subnet": SPECIAL_SUBNET, "routes": []}
    config = {"cniVersion": "1.0.0", "name": NETWORK, "type": "ptp", "ipam": ipam, "args": {"cni": {"ips": ["198.19.7.5"]}}}

    result, _ = ptp(namespaces, "ADD", 0, config, cni_path)

    assert result is not None
    assert result["ips"][0]["address"] == "198.19.7.5/24"
    gateway = result["ips"][0]["gateway"]
    assert gateway == "198.18.0.1"
    assert interface_addresses(namespaces.container(0))["eth0"] == ["198.19.7.5/24"]
    ping = run("ip", "netns", "exec", namespaces.container(0), "ping", "-c", "1", "-W", "1", gateway, check=False)
    assert ping.returncode == 0, ping.stdout
    ptp(namespaces, "DEL", 0, config, cni_path)
    assert link_names(namespaces.host) == ["lo"]
