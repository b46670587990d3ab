"""Parsing of addresses, subnets, pool ranges and ids at the edge.

Every string a user types passes through here before the model sees it, so
the model only ever handles ``ipaddress`` values and checked ids.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Union

from ledger.errors import InvalidInput
from ledger.intervals import IntervalSet

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,128}")
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

# IPAM plugins leave out the network and broadcast addresses of IPv4 subnets
# of /30 and wider, because hosts cannot use them; /31 and /32 have neither.
WIDEST_PREFIX_WITHOUT_RESERVED = 30
# In IPv6 the all-zero host address of a prefix is the Subnet-Router anycast
# address (RFC 4291, section 2.6.1), so pools leave it out too, except for
# /127 point-to-point links (RFC 6164) and /128 single addresses.
WIDEST_IPV6_PREFIX_WITHOUT_ANYCAST = 126


def _printable(value: str) -> str:
    return repr(value) if value.strip() != value or not value else value


def parse_address(value: str, what: str = "address") -> IPAddress:
    """Parse one IPv4 or IPv6 address, rejecting prefixes and ranges."""
    text = value.strip()
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise InvalidInput(
            f"invalid {what} {_printable(value)}: expected an IPv4 or IPv6 address "
            "such as 10.0.0.5 or fd00::5"
        ) from None


def parse_subnet(value: str, what: str = "subnet") -> IPNetwork:
    """Parse a CIDR prefix, rejecting one with host bits set."""
    text = value.strip()
    if "/" not in text:
        raise InvalidInput(
            f"invalid {what} {_printable(value)}: expected a CIDR prefix such as 10.0.0.0/24"
        )
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as error:
        raise InvalidInput(f"invalid {what} {_printable(value)}: {error}") from None


def parse_id(value: str, what: str = "container id") -> str:
    """Check a container id: 1-128 characters of A-Z, a-z, 0-9, '.', '_' and '-'."""
    if not ID_PATTERN.fullmatch(value):
        raise InvalidInput(
            f"invalid {what} {value!r}: use 1-128 characters of A-Z, a-z, 0-9, '.', '_' and '-'"
        )
    return value


def parse_network_name(value: str) -> str:
    """Check a network name: 1-64 characters of A-Z, a-z, 0-9, '.', '_', '-', starting alphanumeric."""
    if not NAME_PATTERN.fullmatch(value):
        raise InvalidInput(
            f"invalid network name {value!r}: use 1-64 characters of A-Z, a-z, 0-9, '.', '_' "
            "and '-', starting with a letter or digit"
        )
    return value


@dataclass(frozen=True)
class AddressRange:
    """A closed range of addresses of one family, from a CIDR or 'FIRST-LAST'."""

    text: str
    version: int
    first: int
    last: int
    reserved: tuple[int, ...] = ()

    @property
    def size(self) -> int:
        return self.last - self.first + 1


def parse_range(value: str, what: str = "pool") -> AddressRange:
    """Parse a CIDR prefix or an inclusive range 'FIRST-LAST'."""
    text = value.strip()
    if "-" in text and "/" not in text:
        return _parse_dash_range(value, text, what)
    network = parse_subnet(value, what)
    if network.prefixlen == 0:
        raise InvalidInput(
            f"invalid {what} {_printable(value)}: a /0 prefix would take the whole address space"
        )
    reserved: tuple[int, ...] = ()
    if network.version == 4 and network.prefixlen <= WIDEST_PREFIX_WITHOUT_RESERVED:
        reserved = (int(network.network_address), int(network.broadcast_address))
    elif network.version == 6 and network.prefixlen <= WIDEST_IPV6_PREFIX_WITHOUT_ANYCAST:
        reserved = (int(network.network_address),)
    return AddressRange(
        text=str(network),
        version=network.version,
        first=int(network.network_address),
        last=int(network.broadcast_address),
        reserved=reserved,
    )


def _parse_dash_range(value: str, text: str, what: str) -> AddressRange:
    first_text, _, last_text = text.partition("-")
    first = parse_address(first_text, f"first address of {what} range {value!r}")
    last = parse_address(last_text, f"last address of {what} range {value!r}")
    if first.version != last.version:
        raise InvalidInput(
            f"invalid {what} range {value!r}: it mixes IPv{first.version} and IPv{last.version}"
        )
    if int(first) > int(last):
        raise InvalidInput(
            f"invalid {what} range {value!r}: {first} comes after {last}; write the lower address first"
        )
    return AddressRange(text=f"{first}-{last}", version=first.version, first=int(first), last=int(last))


def build_pool(pools: list[AddressRange], excludes: list[AddressRange]) -> IntervalSet:
    """Return the union of ``pools`` minus their reserved addresses and ``excludes``."""
    pool = IntervalSet((item.first, item.last) for item in pools)
    removed = IntervalSet((item.first, item.last) for item in excludes)
    for item in pools:
        for address in item.reserved:
            removed.add(address)
    return pool.subtract(removed)


def address_from_int(value: int, version: int) -> IPAddress:
    """Return the address of the given family for an integer."""
    if version == 4:
        return ipaddress.IPv4Address(value)
    return ipaddress.IPv6Address(value)
