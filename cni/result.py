"""The IPAM result of an ADD: the container's address with a prefix, its gateway, and routes.

The ledger gives a pooled container the subnet {ip}, a /32 or /128, and a
gateway outside it. Plugins such as ``ptp`` configure the address first and
then add a default route via the gateway, which the kernel rejects when the
gateway is not on the link. So by default (``addressPrefix: "link"``) the
result gives the address the longest prefix that contains both the ip and
the gateway. For IPv4 that prefix is widened while either address would be
its network or broadcast address. ``addressPrefix: "host"`` reports the ledger's /32 or
/128 as it is, for plugins that route to the gateway on their own. A
container in a special subnet is always reported with that subnet's prefix.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from cni.request import IpamConfig, Route
from ledger.addresses import IPAddress
from ledger.model import ContainerNet

IPV4_POINT_TO_POINT_PREFIX = 31
DEFAULT_DESTINATIONS = {4: "0.0.0.0/0", 6: "::/0"}


def link_prefix(ip: IPAddress, gateway: IPAddress) -> int:
    """Return the longest prefix that contains ``ip`` and ``gateway`` as host addresses.

    An IPv4 /31 has no network or broadcast address, but wider prefixes do.
    An interface would treat a gateway at the broadcast address as
    broadcast, so the prefix grows until neither address is one.
    """
    bits = ip.max_prefixlen
    prefix = bits - (int(ip) ^ int(gateway)).bit_length()
    if ip.version == 6:
        return prefix
    while prefix < IPV4_POINT_TO_POINT_PREFIX and prefix > 0:
        network = ipaddress.ip_network(f"{ip}/{prefix}", strict=False)
        if {ip, gateway}.isdisjoint({network.network_address, network.broadcast_address}):
            break
        prefix -= 1
    return prefix


def address_prefix(container: ContainerNet, ipam: IpamConfig) -> int:
    """Return the prefix length the result gives the container's address."""
    if not container.pooled:
        return container.subnet.prefixlen
    if ipam.address_prefix == "host":
        return container.ip.max_prefixlen
    return link_prefix(container.ip, container.gw)


def build_result(container: ContainerNet, ipam: IpamConfig, cni_version: str) -> dict[str, Any]:
    """Return the IPAM result JSON for ``container`` in the shape of ``cni_version``."""
    entry: dict[str, Any] = {
        "address": f"{container.ip}/{address_prefix(container, ipam)}",
        "gateway": str(container.gw),
    }
    if cni_version == "0.4.0":
        # Results before 1.0.0 name each address's IP version.
        entry = {"version": str(container.ip.version), **entry}
    routes = ipam.routes if ipam.routes is not None else (Route(DEFAULT_DESTINATIONS[container.ip.version]),)
    return {
        "cniVersion": cni_version,
        "ips": [entry],
        "routes": [{"dst": route.dst, "gw": route.gw or str(container.gw)} for route in routes],
    }
