"""Per-command inputs outside the ipam section: requested address, prevResult, valid attachments."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from typing import Any, Optional

from cni import errors
from cni.errors import CniError
from cni.ids import attachment_id
from cni.request import Request
from ledger.addresses import IPAddress

# The CNI 1.1.0 specification names the GC input cni.dev/valid-attachments.
# Some runtimes also send it as cni.dev/attachments, so both are read.
ATTACHMENT_KEYS = ("cni.dev/valid-attachments", "cni.dev/attachments")


def requested_address(request: Request) -> Optional[IPAddress]:
    """Return the address the runtime requests, or None to take one from the pool.

    Three places may name it: ``runtimeConfig.ips`` (the ``ips`` capability),
    ``args.cni.ips`` in the configuration, and ``IP=`` in CNI_ARGS. An
    attachment has one address, so naming two different ones is an error.
    """
    candidates: list[tuple[str, Any]] = []
    runtime_config = request.config.get("runtimeConfig")
    if isinstance(runtime_config, dict) and "ips" in runtime_config:
        candidates.extend(("runtimeConfig.ips", item) for item in _as_list(runtime_config["ips"], "runtimeConfig.ips"))
    cni_section = _args_cni(request.config)
    if "ips" in cni_section:
        candidates.extend(("args.cni.ips", item) for item in _as_list(cni_section["ips"], "args.cni.ips"))
    if request.cni_args.get("IP"):
        candidates.extend(("CNI_ARGS IP", item) for item in request.cni_args["IP"].split(","))
    addresses = {_parse_requested(source, value) for source, value in candidates}
    if len(addresses) > 1:
        shown = ", ".join(sorted(str(address) for address in addresses))
        raise CniError(
            errors.INVALID_CONFIG,
            "more than one address requested",
            f"the request names {shown}; netledger-cni gives an attachment one address",
        )
    return addresses.pop() if addresses else None


def _args_cni(config: Mapping[str, Any]) -> Mapping[str, Any]:
    args = config.get("args")
    section = args.get("cni") if isinstance(args, dict) else None
    return section if isinstance(section, dict) else {}


def _as_list(value: Any, source: str) -> list[Any]:
    if not isinstance(value, list):
        raise CniError(errors.INVALID_CONFIG, f"invalid {source}", f"{source} must be a list of addresses")
    return value


def _parse_requested(source: str, value: Any) -> IPAddress:
    """Parse "10.1.0.5" or "10.1.0.5/24", ignoring the prefix because the ledger decides it."""
    try:
        return ipaddress.ip_interface(str(value).strip()).ip
    except ValueError:
        raise CniError(
            errors.INVALID_CONFIG,
            f"invalid address in {source}",
            f"{json.dumps(value)} is not an IP address such as 10.1.0.5 or fd00::5",
        ) from None


def prev_result_addresses(request: Request) -> list[tuple[IPAddress, Optional[IPAddress]]]:
    """Return (address, gateway) of each ``ips`` entry of prevResult, or raise code 7 without one."""
    prev = request.config.get("prevResult")
    if not isinstance(prev, dict) or not isinstance(prev.get("ips"), list):
        raise CniError(
            errors.INVALID_CONFIG,
            "prevResult is missing",
            "CHECK needs the result of the previous ADD as prevResult, with its ips",
        )
    addresses = []
    for entry in prev["ips"]:
        try:
            address = ipaddress.ip_interface(entry["address"]).ip
            gateway = ipaddress.ip_address(entry["gateway"]) if entry.get("gateway") else None
        except (KeyError, TypeError, ValueError):
            raise CniError(
                errors.INVALID_CONFIG, "invalid prevResult", f"ips entry {json.dumps(entry)} has no valid address"
            ) from None
        addresses.append((address, gateway))
    return addresses


def valid_attachment_ids(request: Request) -> set[str]:
    """Return the ledger ids of the attachments GC must keep."""
    key = next((name for name in ATTACHMENT_KEYS if name in request.config), None)
    if key is None:
        raise CniError(errors.INVALID_CONFIG, "cni.dev/valid-attachments is missing", "GC needs the list of attachments to keep")
    entries = request.config[key]
    if not isinstance(entries, list):
        raise CniError(errors.INVALID_CONFIG, f"invalid {key}", f"{key} must be a list of {{containerID, ifname}}")
    ids = set()
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("containerID"), str) or not isinstance(entry.get("ifname"), str):
            raise CniError(
                errors.INVALID_CONFIG, f"invalid {key}", f"entry {json.dumps(entry)} needs containerID and ifname strings"
            )
        ids.add(attachment_id(entry["containerID"], entry["ifname"]))
    return ids
