"""The stored forms of addresses, sizes and times in the read-model tables.

Both databases hold the same text forms, so one set of statements serves
both and rows compare equal across them:

- an address is 32 lowercase hex digits (its integer value, zero-padded),
  so text order is numeric order for IPv4 and IPv6 alike;
- a count that may exceed a signed 64-bit integer (the size of an IPv6
  /64 pool is 2**64) is decimal text;
- a time is ISO 8601 in UTC with microseconds, fixed width, so text order
  is time order.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime, timezone
from functools import lru_cache
from uuid import UUID

from ledger.addresses import IPAddress, IPNetwork, WIDEST_PREFIX_WITHOUT_RESERVED, address_from_int

KEY_DIGITS = 32


def address_key(value: int) -> str:
    """Return the stored form of an address given as an integer."""
    return f"{value:0{KEY_DIGITS}x}"


def key_value(key: str) -> int:
    """Return the integer value of a stored address."""
    return int(key, 16)


def key_address(key: str, version: int) -> IPAddress:
    """Return the address of a stored key for an IP version."""
    return address_from_int(int(key, 16), version)


# A released address was parsed when it was allocated, and a rebuild parses
# every address of the log, so recent ones are worth keeping.
@lru_cache(maxsize=65_536)
def text_value(text: str) -> int:
    """Return the integer value of an address written as text in an event."""
    return int(ipaddress.ip_address(text))


# Every handler keys its rows by the event's network id as text. str() of a
# UUID took about 5% of a rebuild in a profile, and a ledger has few
# networks, so the text of each is kept.
@lru_cache(maxsize=4096)
def network_key(network_id: UUID) -> str:
    """Return the stored form of a network's id (its stream id)."""
    return str(network_id)


def time_text(moment: datetime) -> str:
    """Return the stored form of a time: UTC, ISO 8601, microseconds, fixed width."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


def subnet_size(subnet: IPNetwork) -> int:
    """Return how many addresses of a special subnet containers may take.

    The network and broadcast addresses of IPv4 subnets of /30 and wider are
    left out, because the model refuses them as a container's ip.
    """
    size = subnet.num_addresses
    if subnet.version == 4 and subnet.prefixlen <= WIDEST_PREFIX_WITHOUT_RESERVED:
        size -= 2
    return size


def utilisation(used: int, size: int) -> float:
    """Return used / size as a fraction from 0 to 1 (0 for an empty size)."""
    return used / size if size else 0.0
