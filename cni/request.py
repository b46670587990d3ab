"""Read a CNI invocation: the CNI_* environment and the network configuration on stdin.

Everything is validated here, so the commands only see checked values.
Each problem becomes a ``CniError`` with the specification's code:

- 1: an unsupported cniVersion;
- 2: an unknown field in the ipam section;
- 4: a missing or invalid environment variable;
- 5: a file that cannot be read;
- 6: stdin that is not a JSON object;
- 7: an invalid network configuration.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from cni import errors
from cni.errors import CniError
from ledger.addresses import IPNetwork, parse_address, parse_network_name, parse_subnet
from ledger.errors import InvalidInput

SUPPORTED_VERSIONS = ("0.4.0", "1.0.0", "1.1.0")
LATEST_VERSION = SUPPORTED_VERSIONS[-1]
COMMANDS = ("ADD", "DEL", "CHECK", "VERSION", "GC", "STATUS")
# GC and STATUS appeared in version 1.1.0 of the specification.
COMMANDS_SINCE_1_1 = ("GC", "STATUS")
# The environment variables each command needs, as libcni's plugin skeleton
# (pkg/skel) checks them, except CNI_PATH, which an IPAM plugin does not use.
REQUIRED_ENVIRONMENT = {
    "ADD": ("CNI_CONTAINERID", "CNI_IFNAME", "CNI_NETNS"),
    "CHECK": ("CNI_CONTAINERID", "CNI_IFNAME", "CNI_NETNS"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME"),
}
CONTAINER_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
MAX_IFNAME_LENGTH = 15
IPAM_FIELDS = ("type", "network", "db", "dbFile", "subnet", "addressPrefix", "routes")
ADDRESS_PREFIXES = ("link", "host")


@dataclass(frozen=True)
class Route:
    """A route for the result: destination prefix and gateway (None means the container's gateway)."""

    dst: str
    gw: Optional[str] = None


@dataclass(frozen=True)
class IpamConfig:
    """The plugin's own section of the network configuration."""

    network: str
    db_url: str
    subnet: Optional[IPNetwork] = None
    address_prefix: str = "link"
    routes: Optional[tuple[Route, ...]] = None


@dataclass(frozen=True)
class Request:
    """One invocation of the plugin."""

    command: str
    cni_version: str
    config: Mapping[str, Any]
    container_id: str = ""
    ifname: str = ""
    netns: str = ""
    cni_args: Mapping[str, str] = field(default_factory=dict)
    ipam: Optional[IpamConfig] = None


def read_command(environ: Mapping[str, str]) -> str:
    """Return CNI_COMMAND, or raise code 4 when it is missing or unknown."""
    command = environ.get("CNI_COMMAND", "")
    if command not in COMMANDS:
        shown = repr(command) if command else "missing"
        raise CniError(
            errors.INVALID_ENVIRONMENT,
            "invalid CNI_COMMAND",
            f"CNI_COMMAND is {shown}; use one of {', '.join(COMMANDS)}",
        )
    return command


def decode_config(stdin_text: str) -> dict[str, Any]:
    """Parse the network configuration, raising code 6 when it is not a JSON object."""
    try:
        config = json.loads(stdin_text)
    except ValueError as error:
        raise CniError(errors.DECODE_FAILURE, "network configuration on stdin is not valid JSON", str(error)) from None
    if not isinstance(config, dict):
        raise CniError(errors.DECODE_FAILURE, "network configuration on stdin is not a JSON object")
    return config


def config_version(config: Mapping[str, Any]) -> str:
    """Return the configuration's cniVersion, raising code 1 when this plugin does not support it."""
    version = config.get("cniVersion")
    if version not in SUPPORTED_VERSIONS:
        shown = "missing, which means 0.1.0" if version is None else repr(version)
        raise CniError(
            errors.INCOMPATIBLE_VERSION,
            "incompatible CNI version",
            f"cniVersion is {shown}; netledger-cni supports {', '.join(SUPPORTED_VERSIONS)}",
        )
    return str(version)


def version_tuple(version: str) -> tuple[int, ...]:
    """Return a dotted version as a tuple of integers, for ordering."""
    return tuple(int(part) for part in version.split("."))


def read_request(command: str, environ: Mapping[str, str], config: Mapping[str, Any]) -> Request:
    """Build the request for any command but VERSION from the environment and configuration."""
    version = config_version(config)
    if command in COMMANDS_SINCE_1_1 and version_tuple(version) < (1, 1, 0):
        raise CniError(
            errors.INCOMPATIBLE_VERSION,
            f"{command} needs cniVersion 1.1.0",
            f"the configuration has cniVersion {version}, which has no {command} command",
        )
    for name in REQUIRED_ENVIRONMENT.get(command, ()):
        if not environ.get(name):
            raise CniError(errors.INVALID_ENVIRONMENT, f"{name} is missing", f"{command} needs {name}")
    container_id = environ.get("CNI_CONTAINERID", "")
    ifname = environ.get("CNI_IFNAME", "")
    if command in REQUIRED_ENVIRONMENT:
        _check_container_id(container_id)
        _check_ifname(ifname)
    return Request(
        command=command,
        cni_version=version,
        config=config,
        container_id=container_id,
        ifname=ifname,
        netns=environ.get("CNI_NETNS", ""),
        cni_args=parse_cni_args(environ.get("CNI_ARGS", "")),
        ipam=read_ipam(config),
    )


def _check_container_id(value: str) -> None:
    if not CONTAINER_ID_PATTERN.fullmatch(value):
        raise CniError(
            errors.INVALID_ENVIRONMENT,
            "invalid CNI_CONTAINERID",
            f"CNI_CONTAINERID {value!r} must start with a letter or digit and contain only "
            "letters, digits, '_', '.' and '-'",
        )


def _check_ifname(value: str) -> None:
    invalid = (
        len(value) > MAX_IFNAME_LENGTH
        or value in (".", "..")
        or any(char in "/:" or char.isspace() for char in value)
    )
    if invalid:
        raise CniError(
            errors.INVALID_ENVIRONMENT,
            "invalid CNI_IFNAME",
            f"CNI_IFNAME {value!r} must be 1-15 characters, not '.' or '..', "
            "without '/', ':' or whitespace",
        )


def parse_cni_args(text: str) -> dict[str, str]:
    """Parse CNI_ARGS ("K8S_POD_NAME=web;IP=10.1.0.5"), keeping keys this plugin ignores."""
    pairs: dict[str, str] = {}
    for item in text.split(";"):
        if not item:
            continue
        key, separator, value = item.partition("=")
        if not separator or not key:
            raise CniError(
                errors.INVALID_ENVIRONMENT,
                "invalid CNI_ARGS",
                f"CNI_ARGS item {item!r} is not KEY=VALUE; separate items with ';'",
            )
        pairs[key] = value
    return pairs


def read_ipam(config: Mapping[str, Any]) -> IpamConfig:
    """Check the ``ipam`` section: network, db or dbFile, and the optional subnet, addressPrefix and routes."""
    ipam = config.get("ipam")
    if not isinstance(ipam, dict):
        raise CniError(errors.INVALID_CONFIG, "the network configuration has no ipam object")
    for key, value in ipam.items():
        if key not in IPAM_FIELDS:
            raise CniError(
                errors.UNSUPPORTED_FIELD,
                f"unsupported ipam field {key!r}",
                f"ipam.{key} = {json.dumps(value)}; netledger-cni knows {', '.join(IPAM_FIELDS)}",
            )
    network = _required_string(ipam, "network")
    _invalid_config_on_error(lambda: parse_network_name(network))
    subnet = None
    if "subnet" in ipam:
        text = _required_string(ipam, "subnet")
        subnet = _invalid_config_on_error(lambda: parse_subnet(text, "ipam.subnet"))
    prefix = ipam.get("addressPrefix", "link")
    if prefix not in ADDRESS_PREFIXES:
        raise CniError(
            errors.INVALID_CONFIG,
            "invalid ipam.addressPrefix",
            f"ipam.addressPrefix is {json.dumps(prefix)}; use \"link\" or \"host\"",
        )
    routes = _read_routes(ipam["routes"]) if "routes" in ipam else None
    return IpamConfig(network, _read_db_url(ipam), subnet, prefix, routes)


def _required_string(ipam: Mapping[str, Any], key: str) -> str:
    value = ipam.get(key)
    if not isinstance(value, str) or not value.strip():
        raise CniError(errors.INVALID_CONFIG, f"ipam.{key} is missing", f"set ipam.{key} to a non-empty string")
    return value.strip()


def _invalid_config_on_error(parse: Any) -> Any:
    try:
        return parse()
    except InvalidInput as error:
        raise CniError(errors.INVALID_CONFIG, "invalid ipam configuration", error.message) from None


def _read_db_url(ipam: Mapping[str, Any]) -> str:
    """Return the event store URL from ipam.db, or from the file named by ipam.dbFile."""
    if ("db" in ipam) == ("dbFile" in ipam):
        raise CniError(
            errors.INVALID_CONFIG,
            "set exactly one of ipam.db and ipam.dbFile",
            "ipam.db is an event store URL; ipam.dbFile names a file that contains one, "
            "which keeps a password out of the network configuration",
        )
    if "db" in ipam:
        return _required_string(ipam, "db")
    path = Path(_required_string(ipam, "dbFile"))
    try:
        url = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise CniError(errors.IO_FAILURE, "cannot read ipam.dbFile", f"{path}: {error}") from None
    if not url:
        raise CniError(errors.INVALID_CONFIG, "ipam.dbFile is empty", f"write the event store URL into {path}")
    return url


def _read_routes(value: Any) -> tuple[Route, ...]:
    if not isinstance(value, list):
        raise CniError(errors.INVALID_CONFIG, "invalid ipam.routes", "ipam.routes must be a list of {\"dst\", \"gw\"}")
    routes = []
    for entry in value:
        if not isinstance(entry, dict) or not isinstance(entry.get("dst"), str):
            raise CniError(
                errors.INVALID_CONFIG, "invalid ipam.routes", f"route {json.dumps(entry)} needs a \"dst\" CIDR"
            )
        dst = _invalid_config_on_error(lambda: str(_parse_route_dst(entry["dst"])))
        gw = entry.get("gw")
        if gw is not None:
            if not isinstance(gw, str):
                raise CniError(
                    errors.INVALID_CONFIG, "invalid ipam.routes", f"route {json.dumps(entry)}: gw must be a string"
                )
            gw = str(_invalid_config_on_error(lambda: parse_address(gw, "route gw")))
        routes.append(Route(dst, gw))
    return tuple(routes)


def _parse_route_dst(text: str) -> IPNetwork:
    return parse_subnet(text, "route dst")
