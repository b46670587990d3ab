"""netledger-cni run as a runtime runs it: a subprocess with CNI_* variables and stdin.

Each test makes a SQLite ledger of its own, drives the plugin through ADD,
DEL, CHECK, VERSION, GC and STATUS, and reads the ledger back through the
Ledger API to see what was recorded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Optional

import pytest

from ledger.addresses import parse_range
from ledger.aggregate import CommandContext, network_id
from ledger.application import Ledger
from ledger.storage import environment_for

REPO = Path(__file__).resolve().parent.parent
NETWORK = "pods"


def run_plugin(
    command: str,
    config: Optional[dict[str, Any]],
    container: str = "ctr1",
    ifname: str = "eth0",
    extra_env: Optional[dict[str, str]] = None,
    stdin_text: Optional[str] = None,
) -> tuple[int, Optional[dict[str, Any]], str]:
    """Run the plugin once; return its exit status, parsed stdout (None when empty) and stderr."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CNI_")}
    env.update(
        {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container,
            "CNI_IFNAME": ifname,
            "CNI_NETNS": "/var/run/netns/unused",
            "CNI_PATH": "/usr/lib/cni",
            "PYTHONPATH": str(REPO),
        }
    )
    env.update(extra_env or {})
    text = stdin_text if stdin_text is not None else json.dumps(config)
    done = subprocess.run(
        [sys.executable, "-m", "cni.plugin"], input=text, capture_output=True, text=True, env=env, timeout=60
    )
    output = json.loads(done.stdout) if done.stdout.strip() else None
    return done.returncode, output, done.stderr


def make_config(db_url: str, version: str = "1.0.0", **ipam: Any) -> dict[str, Any]:
    return {
        "cniVersion": version,
        "name": NETWORK,
        "type": "ptp",
        "ipam": {"type": "netledger-cni", "network": NETWORK, "db": db_url, **ipam},
    }


def create_network(db_url: str, pool: str = "198.18.0.0/24") -> None:
    ledger = Ledger(env=environment_for(db_url))
    context = CommandContext(actor="test", request_id=str(uuid.uuid4()))
    ledger.create_network(NETWORK, [parse_range(pool)], [], "lowest", context)
    ledger.close()


def ledger_state(db_url: str) -> tuple[dict[str, Any], list[Any]]:
    """Return the network's containers and its events."""
    ledger = Ledger(env=environment_for(db_url))
    try:
        containers = dict(ledger.network(NETWORK).net.containers)
        events = list(ledger.repository.event_store.get(network_id(NETWORK)))
    finally:
        ledger.close()
    return containers, events


@pytest.fixture
def db(sqlite_url: str) -> str:
    create_network(sqlite_url)
    return sqlite_url


def test_version_lists_supported_versions(db: str) -> None:
    status, output, _ = run_plugin("VERSION", {"cniVersion": "1.0.0"})

    assert status == 0
    assert output == {"cniVersion": "1.0.0", "supportedVersions": ["0.4.0", "1.0.0", "1.1.0"]}


def test_add_from_pool_result(db: str) -> None:
    status, output, _ = run_plugin("ADD", make_config(db))

    assert status == 0
    assert output == {
        "cniVersion": "1.0.0",
        "ips": [{"address": "198.18.0.1/30", "gateway": "198.18.0.2"}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "198.18.0.2"}],
    }
    containers, events = ledger_state(db)
    assert str(containers["ctr1-eth0"].ip) == "198.18.0.1"
    assert str(containers["ctr1-eth0"].gw) == "198.18.0.2"
    created = [event for event in events if type(event).__name__ == "ContainerCreated"]
    assert created[0].actor == "cni"
    assert created[0].request_id.startswith("cni-add-ctr1-eth0-")


def test_add_host_prefix_reports_ledger_subnet(db: str) -> None:
    status, output, _ = run_plugin("ADD", make_config(db, addressPrefix="host"))

    assert status == 0
    assert output is not None
    assert output["ips"] == [{"address": "198.18.0.1/32", "gateway": "198.18.0.2"}]


def test_add_with_0_4_0_names_ip_version(db: str) -> None:
    status, output, _ = run_plugin("ADD", make_config(db, version="0.4.0"))

    assert status == 0
    assert output is not None
    assert output["cniVersion"] == "0.4.0"
    assert output["ips"] == [{"version": "4", "address": "198.18.0.1/30", "gateway": "198.18.0.2"}]


def test_add_retried_returns_existing_result(db: str) -> None:
    first = run_plugin("ADD", make_config(db))
    second = run_plugin("ADD", make_config(db))

    assert first[0] == 0
    assert second[0] == 0
    assert second[1] == first[1]
    _, events = ledger_state(db)
    assert len(events) == 4


def test_add_configured_routes_use_gateway(db: str) -> None:
    routes = [{"dst": "10.96.0.0/12"}, {"dst": "192.0.2.0/24", "gw": "198.18.0.200"}]
    status, output, _ = run_plugin("ADD", make_config(db, routes=routes))

    assert status == 0
    assert output is not None
    assert output["routes"] == [
        {"dst": "10.96.0.0/12", "gw": "198.18.0.2"},
        {"dst": "192.0.2.0/24", "gw": "198.18.0.200"},
    ]


@pytest.mark.parametrize(
    ("where", "value"),
    [("runtimeConfig", {"ips": ["198.18.0.50/24"]}), ("args", {"cni": {"ips": ["198.18.0.50"]}})],
)
def test_add_requested_address_from_config(db: str, where: str, value: dict[str, Any]) -> None:
    config = make_config(db)
    config[where] = value
    status, output, _ = run_plugin("ADD", config)

    assert status == 0
    assert output is not None
    assert output["ips"] == [{"address": "198.18.0.50/26", "gateway": "198.18.0.1"}]


def test_add_requested_address_from_cni_args(db: str) -> None:
    status, output, _ = run_plugin(
        "ADD", make_config(db), extra_env={"CNI_ARGS": "IGNORE_UNKNOWN=1;K8S_POD_NAME=web;IP=198.18.0.9"}
    )

    assert status == 0
    assert output is not None
    assert output["ips"][0]["address"].startswith("198.18.0.9/")


def test_add_two_addresses_is_invalid(db: str) -> None:
    config = make_config(db)
    config["runtimeConfig"] = {"ips": ["198.18.0.50"]}
    status, output, _ = run_plugin("ADD", config, extra_env={"CNI_ARGS": "IP=198.18.0.51"})

    assert status == 1
    assert output is not None
    assert output["code"] == 7
    assert "198.18.0.50, 198.18.0.51" in output["details"]


def test_add_in_special_subnet(db: str) -> None:
    status, output, _ = run_plugin(
        "ADD", make_config(db, subnet="192.168.77.0/24"), extra_env={"CNI_ARGS": "IP=192.168.77.5"}
    )

    assert status == 0
    assert output is not None
    assert output["ips"] == [{"address": "192.168.77.5/24", "gateway": "198.18.0.1"}]
    containers, _ = ledger_state(db)
    assert containers["ctr1-eth0"].pooled is False


def test_add_subnet_without_address_invalid(db: str) -> None:
    status, output, _ = run_plugin("ADD", make_config(db, subnet="192.168.77.0/24"))

    assert status == 1
    assert output is not None
    assert output["code"] == 7
    assert output["msg"] == "ipam.subnet needs an address"


def test_add_taken_address_is_ledger_refusal(db: str) -> None:
    run_plugin("ADD", make_config(db), container="first")
    status, output, _ = run_plugin("ADD", make_config(db), container="second", extra_env={"CNI_ARGS": "IP=198.18.0.1"})

    assert status == 1
    assert output == {
        "cniVersion": "1.0.0",
        "code": 100,
        "msg": "the ledger refused ADD (address-taken)",
        "details": "address 198.18.0.1 in network pods is taken: container first-eth0 holds it as its ip",
    }


def test_add_retry_with_other_address_is_refused(db: str) -> None:
    run_plugin("ADD", make_config(db))
    status, output, _ = run_plugin("ADD", make_config(db), extra_env={"CNI_ARGS": "IP=198.18.0.77"})

    assert status == 1
    assert output is not None
    assert output["code"] == 100
    assert output["msg"] == "the ledger refused ADD (container-exists)"


def test_add_exhausted_pool_is_ledger_refusal(sqlite_url: str) -> None:
    create_network(sqlite_url, pool="198.18.0.0/31")
    first = run_plugin("ADD", make_config(sqlite_url), container="first")
    status, output, _ = run_plugin("ADD", make_config(sqlite_url), container="second")

    assert first[0] == 0
    assert status == 1
    assert output is not None
    assert output["code"] == 100
    assert output["msg"] == "the ledger refused ADD (pool-exhausted)"


def test_del_releases_and_repeats_succeed(db: str) -> None:
    run_plugin("ADD", make_config(db))
    first = run_plugin("DEL", make_config(db))
    second = run_plugin("DEL", make_config(db))
    other_network = make_config(db)
    other_network["ipam"]["network"] = "absent"
    third = run_plugin("DEL", other_network)

    assert first[:2] == (0, None)
    assert second[:2] == (0, None)
    assert third[:2] == (0, None)
    containers, events = ledger_state(db)
    assert containers == {}
    released = [event for event in events if type(event).__name__ == "AddressesReleased"]
    assert len(released) == 1
    assert released[0].addresses == ["198.18.0.1", "198.18.0.2"]
    assert released[0].request_id.startswith("cni-del-ctr1-eth0-")


def test_add_after_del_allocates_again(db: str) -> None:
    run_plugin("ADD", make_config(db))
    run_plugin("DEL", make_config(db))
    run_plugin("ADD", make_config(db), extra_env={"CNI_ARGS": "IP=198.18.0.40"})
    status, output, _ = run_plugin("DEL", make_config(db))

    assert (status, output) == (0, None)
    containers, events = ledger_state(db)
    assert containers == {}
    released = [event.addresses for event in events if type(event).__name__ == "AddressesReleased"]
    assert released == [["198.18.0.1", "198.18.0.2"], ["198.18.0.40", "198.18.0.1"]]


def test_del_without_netns_succeeds(db: str) -> None:
    run_plugin("ADD", make_config(db))
    status, output, _ = run_plugin("DEL", make_config(db), extra_env={"CNI_NETNS": ""})

    assert (status, output) == (0, None)
    assert ledger_state(db)[0] == {}


def check_config(db: str, address: str, gateway: str) -> dict[str, Any]:
    config = make_config(db)
    config["prevResult"] = {"cniVersion": "1.0.0", "ips": [{"address": address, "gateway": gateway}]}
    return config


def test_check_passes_on_match(db: str) -> None:
    run_plugin("ADD", make_config(db))
    status, output, _ = run_plugin("CHECK", check_config(db, "198.18.0.1/30", "198.18.0.2"))

    assert (status, output) == (0, None)


@pytest.mark.parametrize(
    ("address", "gateway", "details"),
    [
        ("198.18.0.9/30", "198.18.0.2", "the ledger gives container ctr1-eth0 ip 198.18.0.1 but prevResult has 198.18.0.9"),
        ("198.18.0.1/30", "198.18.0.3", "the ledger gives container ctr1-eth0 gateway 198.18.0.2 but prevResult has 198.18.0.3"),
    ],
)
def test_check_fails_on_mismatch(db: str, address: str, gateway: str, details: str) -> None:
    run_plugin("ADD", make_config(db))
    status, output, _ = run_plugin("CHECK", check_config(db, address, gateway))

    assert status == 1
    assert output is not None
    assert output["code"] == 101
    assert output["details"] == details


def test_check_fails_for_unrecorded_attachment(db: str) -> None:
    status, output, _ = run_plugin("CHECK", check_config(db, "198.18.0.1/30", "198.18.0.2"))

    assert status == 1
    assert output is not None
    assert output["code"] == 101
    assert output["msg"] == "the ledger has no record of this attachment"


def test_check_without_prev_result_is_invalid(db: str) -> None:
    status, output, _ = run_plugin("CHECK", make_config(db))

    assert status == 1
    assert output is not None
    assert output["code"] == 7


def test_gc_destroys_attachments_not_listed(db: str) -> None:
    for container in ("keep", "stale1", "stale2"):
        run_plugin("ADD", make_config(db, version="1.1.0"), container=container)
    config = make_config(db, version="1.1.0")
    config["cni.dev/valid-attachments"] = [{"containerID": "keep", "ifname": "eth0"}]
    status, output, _ = run_plugin("GC", config, extra_env={"CNI_CONTAINERID": "", "CNI_IFNAME": ""})

    assert (status, output) == (0, None)
    containers, events = ledger_state(db)
    assert sorted(containers) == ["keep-eth0"]
    destroyed = [event.request_id for event in events if type(event).__name__ == "ContainerDestroyed"]
    assert [request[: len("cni-gc-stale1-eth0-")] for request in destroyed] == [
        "cni-gc-stale1-eth0-",
        "cni-gc-stale2-eth0-",
    ]


def test_gc_on_1_0_0_is_incompatible_version(db: str) -> None:
    config = make_config(db)
    config["cni.dev/valid-attachments"] = []
    status, output, _ = run_plugin("GC", config)

    assert status == 1
    assert output is not None
    assert output["code"] == 1
    assert output["msg"] == "GC needs cniVersion 1.1.0"


def test_status_succeeds_while_pool_has_room(db: str) -> None:
    status, output, _ = run_plugin("STATUS", make_config(db, version="1.1.0"))

    assert (status, output) == (0, None)


def test_status_reports_full_pool_as_unavailable(sqlite_url: str) -> None:
    create_network(sqlite_url, pool="198.18.0.0/31")
    run_plugin("ADD", make_config(sqlite_url, version="1.1.0"))
    status, output, _ = run_plugin("STATUS", make_config(sqlite_url, version="1.1.0"))

    assert status == 1
    assert output == {
        "cniVersion": "1.1.0",
        "code": 50,
        "msg": "the plugin cannot serve ADD",
        "details": "the pool of network pods has 0 of 2 addresses free; an ADD needs 2",
    }


def test_status_unreachable_hides_password(tmp_path: Path) -> None:
    # Port 1 on loopback refuses connections, so the ledger cannot be opened.
    url = "postgresql://postgres:sekret@127.0.0.1:1/absent?connect_timeout=1"
    status, output, _ = run_plugin("STATUS", make_config(url, version="1.1.0"))

    assert status == 1
    assert output is not None
    assert output["code"] == 50
    assert output["msg"] == "the ledger is unreachable"
    assert "sekret" not in json.dumps(output)


def test_db_file_supplies_url(db: str, tmp_path: Path) -> None:
    url_file = tmp_path / "db-url"
    url_file.write_text(db + "\n")
    config = make_config(db)
    del config["ipam"]["db"]
    config["ipam"]["dbFile"] = str(url_file)
    status, output, _ = run_plugin("ADD", config)

    assert status == 0
    assert output is not None
    assert output["ips"][0]["address"] == "198.18.0.1/30"


@pytest.mark.parametrize(
    ("change", "code", "msg"),
    [
        ({"cniVersion": "0.3.1"}, 1, "incompatible CNI version"),
        ({"ipam": {"type": "netledger-cni", "network": NETWORK}}, 7, "set exactly one of ipam.db and ipam.dbFile"),
        ({"ipam": {"type": "netledger-cni", "network": NETWORK, "dbFile": "/nonexistent/db-url"}}, 5, "cannot read ipam.dbFile"),
        ({"ipam": {"type": "netledger-cni", "db": "sqlite:///x.db"}}, 7, "ipam.network is missing"),
        ({"ipam": {"type": "netledger-cni", "network": NETWORK, "db": "mysql://x"}}, 7, "invalid event store URL"),
        ({"ipam": {"type": "netledger-cni", "network": NETWORK, "db": "sqlite:///x.db", "addressPrefix": "wide"}}, 7, "invalid ipam.addressPrefix"),
    ],
)
def test_invalid_configuration_errors(db: str, change: dict[str, Any], code: int, msg: str) -> None:
    config = {**make_config(db), **change}
    status, output, _ = run_plugin("ADD", config)

    assert status == 1
    assert output is not None
    assert output["code"] == code
    assert output["msg"] == msg


def test_unknown_ipam_field_names_key_and_value(db: str) -> None:
    status, output, _ = run_plugin("ADD", make_config(db, dbfile="/etc/url"))

    assert status == 1
    assert output is not None
    assert output["code"] == 2
    assert output["msg"] == "unsupported ipam field 'dbfile'"
    assert output["details"].startswith('ipam.dbfile = "/etc/url"')


def test_stdin_not_json_is_decode_failure(db: str) -> None:
    status, output, _ = run_plugin("ADD", None, stdin_text="{not json")

    assert status == 1
    assert output is not None
    assert output["code"] == 6
    assert output["cniVersion"] == "1.1.0"


@pytest.mark.parametrize(
    ("env", "msg"),
    [
        ({"CNI_CONTAINERID": ""}, "CNI_CONTAINERID is missing"),
        ({"CNI_NETNS": ""}, "CNI_NETNS is missing"),
        ({"CNI_IFNAME": "eth0:1"}, "invalid CNI_IFNAME"),
        ({"CNI_CONTAINERID": "-starts-with-dash"}, "invalid CNI_CONTAINERID"),
        ({"CNI_ARGS": "IP"}, "invalid CNI_ARGS"),
        ({"CNI_COMMAND": "REMOVE"}, "invalid CNI_COMMAND"),
    ],
)
def test_invalid_environment_is_code_4(db: str, env: dict[str, str], msg: str) -> None:
    status, output, _ = run_plugin("ADD", make_config(db), extra_env=env)

    assert status == 1
    assert output is not None
    assert output["code"] == 4
    assert output["msg"] == msg
    assert ledger_state(db)[0] == {}


def test_long_attachment_id_is_hashed_consistently(db: str) -> None:
    container = "c" * 200
    added = run_plugin("ADD", make_config(db), container=container)
    deleted = run_plugin("DEL", make_config(db), container=container)

    assert added[0] == 0
    assert deleted[0] == 0
    _, events = ledger_state(db)
    created = [event for event in events if type(event).__name__ == "ContainerCreated"][0]
    destroyed = [event for event in events if type(event).__name__ == "ContainerDestroyed"][0]
    assert len(created.container_id) <= 128
    assert created.container_id.startswith("c" * 80 + "-")
    assert destroyed.container_id == created.container_id


def test_parallel_adds_get_distinct_addresses(db: str) -> None:
    # Runtimes may run ADD for different containers at the same time.
    env = {key: value for key, value in os.environ.items() if not key.startswith("CNI_")}
    env.update({"CNI_COMMAND": "ADD", "CNI_IFNAME": "eth0", "CNI_NETNS": "/var/run/netns/unused", "PYTHONPATH": str(REPO)})
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "cni.plugin"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**env, "CNI_CONTAINERID": f"par{index}"},
        )
        for index in range(8)
    ]
    outputs = [process.communicate(json.dumps(make_config(db)), timeout=120)[0] for process in processes]

    assert [process.returncode for process in processes] == [0] * 8
    addresses = [json.loads(text)["ips"][0]["address"].split("/")[0] for text in outputs]
    gateways = [json.loads(text)["ips"][0]["gateway"] for text in outputs]
    assert len(set(addresses) | set(gateways)) == 16
    containers, _ = ledger_state(db)
    assert sorted(str(container.ip) for container in containers.values()) == sorted(addresses)
