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


# Longer values are cut in error messages, so that one message stays one line.
SHOWN_LENGTH = 64


def _printable(value: str) -> str:
    if len(value) > SHOWN_LENGTH:
        return _quoted(value)
    return repr(value) if value.strip() != value or not value or not value.isprintable() else value


def _quoted(value: str) -> str:
    """Return ``value`` quoted for an error message, cut to SHOWN_LENGTH characters."""
    if len(value) > SHOWN_LENGTH:
        return repr(value[:SHOWN_LENGTH]) + f"... ({len(value)} characters)"
    return repr(value)


def _reject_zone_index(value: str, what: str) -> None:
    if "%" in value:
        raise InvalidInput(
            f"invalid {what} {_printable(value)}: an IPv6 zone index (%...) has no meaning in a pool "
            "or subnet; leave it out"
        )


def parse_address(value: str, what: str = "address") -> IPAddress:
    """Parse one IPv4 or IPv6 address, rejecting prefixes and ranges."""
    text = value.strip()
    _reject_zone_index(value, what)
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
    # Check for a zone index before reading the prefix length, because in
    # fe80::/64%eth0 it follows the prefix length and makes that look malformed.
    _reject_zone_index(value, what)
    address_text, _, prefix_text = text.partition("/")
    try:
        address = ipaddress.ip_address(address_text)
    except ValueError:
        raise InvalidInput(
            f"invalid {what} {_printable(value)}: {address_text!r} is not an IPv4 or IPv6 address"
        ) from None
    valid_number = prefix_text.isascii() and prefix_text.isdigit() and len(prefix_text) <= 3
    if not (valid_number and int(prefix_text) <= address.max_prefixlen):
        raise InvalidInput(
            f"invalid {what} {_printable(value)}: the prefix length must be a number from 0 to "
            f"{address.max_prefixlen} for IPv{address.version}"
        )
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as error:
        raise InvalidInput(f"invalid {what} {_printable(value)}: {error}") from None


def parse_id(value: str, what: str = "container id") -> str:
    """Check a container id: 1-128 characters of A-Z, a-z, 0-9, '.', '_' and '-'."""
    if not ID_PATTERN.fullmatch(value):
        raise InvalidInput(
            f"invalid {what} {_quoted(value)}: use 1-128 characters of A-Z, a-z, 0-9, '.', '_' and '-'"
        )
    return value


def parse_network_name(value: str) -> str:
    """Check a network name: 1-64 characters of A-Z, a-z, 0-9, '.', '_', '-', starting alphanumeric."""
    if not NAME_PATTERN.fullmatch(value):
        raise InvalidInput(
            f"invalid network name {_quoted(value)}: use 1-64 characters of A-Z, a-z, 0-9, '.', '_' "
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
    return AddressRange(
        text=str(network),
        version=network.version,
        first=int(network.network_address),
        last=int(network.broadcast_address),
        reserved=tuple(reserved_addresses(network)),
    )


def reserved_addresses(network: IPNetwork) -> dict[int, str]:
    """Return the addresses of a prefix that no host may use, each with its kind."""
    if network.version == 4 and network.prefixlen <= WIDEST_PREFIX_WITHOUT_RESERVED:
        return {int(network.network_address): "network", int(network.broadcast_address): "broadcast"}
    if network.version == 6 and network.prefixlen <= WIDEST_IPV6_PREFIX_WITHOUT_ANYCAST:
        return {int(network.network_address): "Subnet-Router anycast"}
    return {}


def _parse_dash_range(value: str, text: str, what: str) -> AddressRange:
    if text.count("-") != 1:
        raise InvalidInput(
            f"invalid {what} range {_quoted(value)}: expected FIRST-LAST with one '-', such as 10.1.0.10-10.1.0.99"
        )
    first_text, _, last_text = text.partition("-")
    first = parse_address(first_text, f"first address of {what} range {_quoted(value)}")
    last = parse_address(last_text, f"last address of {what} range {_quoted(value)}")
    if first.version != last.version:
        raise InvalidInput(
            f"invalid {what} range {_quoted(value)}: it mixes IPv{first.version} and IPv{last.version}"
        )
    if int(first) > int(last):
        raise InvalidInput(
            f"invalid {what} range {_quoted(value)}: {first} comes after {last}; write the lower address first"
        )
    return AddressRange(text=f"{first}-{last}", version=first.version, first=int(first), last=int(last))


def build_pool(pools: list[AddressRange], excludes: list[AddressRange]) -> IntervalSet:
    """Return the union of ``pools`` minus their reserved addresses and ``excludes``.

    Raises ``InvalidInput`` for an exclusion that overlaps no pool. Such an
    exclusion changes nothing and is most likely a typo, which could never be
    corrected, because a network's pool is fixed when it is created.
    """
    for exclusion in excludes:
        if not any(item.first <= exclusion.last and exclusion.first <= item.last for item in pools):
            listed = ", ".join(item.text for item in pools)
            raise InvalidInput(
                f"invalid exclusion {exclusion.text}: it overlaps no pool ({listed}); "
                "fix --exclude or leave it out"
            )
    pool = IntervalSet((item.first, item.last) for item in pools)
    removed = IntervalSet((item.first, item.last) for item in excludes)
    for item in pools:
        for address in item.reserved:
            # With overlapping pools, 10.0.0.127 is the broadcast address of
            # 10.0.0.0/25 but an ordinary host of 10.0.0.0/24: keep it then.
            if not any(_usable_in(other, address) for other in pools):
                removed.add(address)
    return pool.subtract(removed)


def _usable_in(item: AddressRange, address: int) -> bool:
    return item.first <= address <= item.last and address not in item.reserved


def address_from_int(value: int, version: int) -> IPAddress:
    """Return the address of the given family for an integer."""
    if version == 4:
        return ipaddress.IPv4Address(value)
    return ipaddress.IPv6Address(value)
