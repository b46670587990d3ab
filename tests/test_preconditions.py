"""Every precondition of every command: the exact error, its message, and nothing written.

Unless a test states otherwise, network ``web`` has the pool 10.0.0.0/28
(10.0.0.1-10.0.0.14 once the network and broadcast addresses are left
out) and hands out the lowest free address.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import errors
from ledger.addresses import parse_range
from ledger.aggregate import CommandContext
from ledger.application import Ledger
from ledger.intervals import IntervalSet
from ledger.pool import LOWEST, ROUND_ROBIN, NetworkPool
from ledger.storage import environment_for

IP = ipaddress.ip_address
NET = ipaddress.ip_network


def context() -> CommandContext:
    return CommandContext(actor="test", request_id=str(uuid.uuid4()))


def open_ledger(url: str, pool: str = "10.0.0.0/28", policy: str = "lowest") -> Ledger:
    app = Ledger(env=environment_for(url))
    app.create_network("web", [parse_range(pool)], [], policy, context())
    return app


@pytest.fixture
def ledger(sqlite_url: str) -> Iterator[Ledger]:
    app = open_ledger(sqlite_url)
    yield app
    app.close()


@pytest.fixture
def small(sqlite_url: str) -> Iterator[Ledger]:
    """A ledger whose network ``web`` has six addresses, 10.0.0.1-10.0.0.6."""
    app = open_ledger(sqlite_url, pool="10.0.0.0/29")
    yield app
    app.close()


def assert_refused(app: Ledger, error_class: type[Exception], message: str, command: Callable[[], Any]) -> None:
    """Run a command that must fail with exactly this error and message, writing nothing."""
    before = app.event_count()
    with pytest.raises(error_class) as caught:
        command()
    assert type(caught.value) is error_class
    assert caught.value.message == message  # type: ignore[attr-defined]
    assert app.event_count() == before


def create(app: Ledger, cid: str, ip: str | None = None, subnet: str | None = None) -> Any:
    address = IP(ip) if ip is not None else None
    network = NET(subnet) if subnet is not None else None
    return app.create_container("web", context(), cid, address, network)


def allocated(app: Ledger) -> list[tuple[int, int]]:
    net = app.network("web").net
    return [(int(start), int(end)) for start, end in net.pool.alloc.ranges()]


# Create network.


def test_network_with_empty_pool_after_exclusions_is_invalid(ledger: Ledger) -> None:
    assert_refused(
        ledger,
        errors.InvalidInput,
        "the pool of network empty is empty after exclusions; widen --pool",
        lambda: ledger.create_network(
            "empty", [parse_range("10.1.0.0/30")], [parse_range("10.1.0.1-10.1.0.2")], "lowest", context()
        ),
    )


def test_network_mixing_families_is_invalid(ledger: Ledger) -> None:
    assert_refused(
        ledger,
        errors.InvalidInput,
        "pools of network mixed mix IPv4 and IPv6; one network uses one address family",
        lambda: ledger.create_network(
            "mixed", [parse_range("10.1.0.0/24"), parse_range("fd00::/64")], [], "lowest", context()
        ),
    )


def test_network_exclusion_of_other_family_is_invalid(ledger: Ledger) -> None:
    assert_refused(
        ledger,
        errors.InvalidInput,
        "exclusion fd00::1/128 is IPv6 but the pool of network other is IPv4",
        lambda: ledger.create_network(
            "other", [parse_range("10.1.0.0/24")], [parse_range("fd00::1/128")], "lowest", context()
        ),
    )


def test_network_without_pool_is_invalid(ledger: Ledger) -> None:
    assert_refused(
        ledger,
        errors.InvalidInput,
        "a network needs at least one --pool CIDR or range",
        lambda: ledger.create_network("bare", [], [], "lowest", context()),
    )


def test_network_with_unknown_policy_is_invalid(ledger: Ledger) -> None:
    assert_refused(
        ledger,
        errors.InvalidInput,
        "invalid policy 'random': use one of lowest, round-robin",
        lambda: ledger.create_network("chance", [parse_range("10.1.0.0/24")], [], "random", context()),
    )


def test_network_that_exists_is_refused(ledger: Ledger) -> None:
    assert_refused(
        ledger,
        errors.NetworkExists,
        "network web already exists; choose another name",
        lambda: ledger.create_network("web", [parse_range("10.9.0.0/24")], [], "lowest", context()),
    )


def test_command_on_unknown_network_is_refused(ledger: Ledger) -> None:
    assert_refused(
        ledger,
        errors.NetworkNotFound,
        "network nope not found; 'netledger network list' shows the networks",
        lambda: ledger.create_container("nope", context(), "a"),
    )


# Create from the pool.


def test_create_from_pool_takes_lowest_ip_and_gateway(ledger: Ledger) -> None:
    before = ledger.event_count()
    container = create(ledger, "a")
    assert (container.ip, container.subnet, container.gw) == (IP("10.0.0.1"), NET("10.0.0.1/32"), IP("10.0.0.2"))
    assert container.pooled
    assert ledger.event_count() == before + 3
    assert allocated(ledger) == [(int(IP("10.0.0.1")), int(IP("10.0.0.2")))]


def test_create_with_existing_id_is_refused(ledger: Ledger) -> None:
    create(ledger, "a")
    assert_refused(
        ledger,
        errors.ContainerExists,
        "container a already exists in network web with IP 10.0.0.1; choose another id or destroy it first",
        lambda: create(ledger, "a"),
    )


def test_create_from_exhausted_pool_names_sizes(small: Ledger) -> None:
    small.allocate("web", 1, context())
    create(small, "a")
    create(small, "b")
    assert_refused(
        small,
        errors.PoolExhausted,
        "pool of network web is exhausted: 2 free addresses needed, 1 of 6 free; "
        "destroy containers or release addresses",
        lambda: create(small, "c"),
    )


# Create with a specific pool address.


def test_create_with_ip_takes_lowest_gateway(ledger: Ledger) -> None:
    container = create(ledger, "a", ip="10.0.0.7")
    assert (container.ip, container.subnet, container.gw) == (IP("10.0.0.7"), NET("10.0.0.7/32"), IP("10.0.0.1"))


@pytest.mark.parametrize("ip", ["10.0.1.5", "10.0.0.0", "10.0.0.15"])
def test_create_with_ip_outside_pool_is_refused(ledger: Ledger, ip: str) -> None:
    assert_refused(
        ledger,
        errors.AddressNotInPool,
        f"address {ip} is not in the pool of network web; use --subnet for an address outside the pool",
        lambda: create(ledger, "a", ip=ip),
    )


def test_create_with_ip_of_another_container_is_refused(ledger: Ledger) -> None:
    create(ledger, "a")
    assert_refused(
        ledger,
        errors.AddressTaken,
        "address 10.0.0.1 in network web is taken: container a holds it as its ip",
        lambda: create(ledger, "b", ip="10.0.0.1"),
    )


def test_create_with_gateway_of_another_container_is_refused(ledger: Ledger) -> None:
    create(ledger, "a")
    assert_refused(
        ledger,
        errors.AddressTaken,
        "address 10.0.0.2 in network web is taken: container a holds it as its gateway",
        lambda: create(ledger, "b", ip="10.0.0.2"),
    )


def test_create_with_bare_allocated_ip_is_refused(ledger: Ledger) -> None:
    (address,) = ledger.allocate("web", 1, context())
    assert address == IP("10.0.0.1")
    assert_refused(
        ledger,
        errors.AddressTaken,
        "address 10.0.0.1 in network web is taken: it is allocated without a container (pool allocate)",
        lambda: create(ledger, "b", ip="10.0.0.1"),
    )


def test_create_with_ip_of_other_family_is_invalid(ledger: Ledger) -> None:
    assert_refused(
        ledger,
        errors.InvalidInput,
        "address fd00::1 is IPv6 but network web is IPv4; give an IPv4 value",
        lambda: create(ledger, "a", ip="fd00::1"),
    )


def test_create_with_last_free_ip_leaves_no_gateway(small: Ledger) -> None:
    create(small, "a")
    create(small, "b")
    small.allocate("web", 1, context())
    assert_refused(
        small,
        errors.PoolExhausted,
        "pool of network web is exhausted: 1 free address needed besides 10.0.0.6, 1 of 6 free; "
        "destroy containers or release addresses",
        lambda: create(small, "c", ip="10.0.0.6"),
    )


# Create in a special subnet.


def test_create_in_subnet_takes_gateway_from_pool(ledger: Ledger) -> None:
    before = ledger.event_count()
    container = create(ledger, "s1", ip="192.168.0.5", subnet="192.168.0.0/24")
    assert (container.ip, container.subnet, container.gw) == (IP("192.168.0.5"), NET("192.168.0.0/24"), IP("10.0.0.1"))
    assert not container.pooled
    assert ledger.event_count() == before + 2
    assert allocated(ledger) == [(int(IP("10.0.0.1")), int(IP("10.0.0.1")))]


def test_containers_share_special_subnet_with_own_gateways(ledger: Ledger) -> None:
    first = create(ledger, "s1", ip="192.168.0.5", subnet="192.168.0.0/24")
    second = create(ledger, "s2", ip="192.168.0.6", subnet="192.168.0.0/24")
    assert first.subnet == second.subnet
    assert (first.gw, second.gw) == (IP("10.0.0.1"), IP("10.0.0.2"))
    members = ledger.network("web").net.subnet_members[NET("192.168.0.0/24")]
    assert members == {"s1": int(IP("192.168.0.5")), "s2": int(IP("192.168.0.6"))}


def test_subnet_ip_outside_subnet_is_refused(ledger: Ledger) -> None:
    assert_refused(
        ledger,
        errors.AddressNotInSubnet,
        "address 192.168.1.5 is not in subnet 192.168.0.0/24; give an address inside it",
        lambda: create(ledger, "s1", ip="192.168.1.5", subnet="192.168.0.0/24"),
    )


@pytest.mark.parametrize(("ip", "kind"), [("192.168.0.0", "network"), ("192.168.0.255", "broadcast")])
def test_create_in_subnet_on_reserved_address_is_refused(ledger: Ledger, ip: str, kind: str) -> None:
    assert_refused(
        ledger,
        errors.AddressReserved,
        f"address {ip} is the {kind} address of subnet 192.168.0.0/24; give a host address inside it",
        lambda: create(ledger, "s1", ip=ip, subnet="192.168.0.0/24"),
    )


def test_slash_31_subnet_uses_both_addresses(ledger: Ledger) -> None:
    first = create(ledger, "p1", ip="192.168.9.0", subnet="192.168.9.0/31")
    second = create(ledger, "p2", ip="192.168.9.1", subnet="192.168.9.0/31")
    assert (first.ip, second.ip) == (IP("192.168.9.0"), IP("192.168.9.1"))


@pytest.mark.parametrize("subnet", ["10.0.0.0/24", "10.0.0.8/29", "10.0.0.14/31"])
def test_create_in_subnet_overlapping_pool_is_refused(ledger: Ledger, subnet: str) -> None:
    ip = str(NET(subnet)[1])
    assert_refused(
        ledger,
        errors.SubnetOverlapsPool,
        f"subnet {subnet} overlaps the pool of network web; a special subnet must lie outside the pool",
        lambda: create(ledger, "s1", ip=ip, subnet=subnet),
    )


def test_create_in_subnet_adjacent_to_pool_is_accepted(ledger: Ledger) -> None:
    container = create(ledger, "s1", ip="10.0.0.17", subnet="10.0.0.16/28")
    assert container.subnet == NET("10.0.0.16/28")


@pytest.mark.parametrize(("existing", "new", "ip"), [
    ("192.168.0.0/24", "192.168.0.0/25", "192.168.0.9"),
    ("192.168.0.0/25", "192.168.0.0/24", "192.168.0.200"),
    ("192.168.0.0/24", "192.168.0.128/25", "192.168.0.130"),
])
def test_create_in_partly_overlapping_subnet_names_conflict(ledger: Ledger, existing: str, new: str, ip: str) -> None:
    create(ledger, "s1", ip="192.168.0.5", subnet=existing)
    assert_refused(
        ledger,
        errors.SubnetConflict,
        f"subnet {new} overlaps subnet {existing} of container s1 in network web; "
        "special subnets must be identical or disjoint",
        lambda: create(ledger, "s2", ip=ip, subnet=new),
    )


def test_same_ip_in_shared_subnet_is_refused(ledger: Ledger) -> None:
    create(ledger, "s1", ip="192.168.0.5", subnet="192.168.0.0/24")
    assert_refused(
        ledger,
        errors.AddressTaken,
        "address 192.168.0.5 in subnet 192.168.0.0/24 of network web is taken: container s1 holds it as its ip",
        lambda: create(ledger, "s2", ip="192.168.0.5", subnet="192.168.0.0/24"),
    )


def test_create_in_subnet_without_ip_is_invalid(ledger: Ledger) -> None:
    assert_refused(
        ledger,
        errors.InvalidInput,
        "--subnet needs --ip: give the container's address in the subnet",
        lambda: ledger.create_container("web", context(), "s1", None, NET("192.168.0.0/24")),
    )


def test_create_in_subnet_of_other_family_is_invalid(ledger: Ledger) -> None:
    assert_refused(
        ledger,
        errors.InvalidInput,
        "subnet fd00::/64 is IPv6 but network web is IPv4; give an IPv4 value",
        lambda: create(ledger, "s1", ip="fd00::5", subnet="fd00::/64"),
    )


def test_create_in_subnet_from_exhausted_pool_is_refused(small: Ledger) -> None:
    small.allocate("web", 2, context())
    small.allocate("web", 2, context())
    small.allocate("web", 2, context())
    assert_refused(
        small,
        errors.PoolExhausted,
        "pool of network web is exhausted: 1 free address needed, 0 of 6 free; "
        "destroy containers or release addresses",
        lambda: create(small, "s1", ip="192.168.0.5", subnet="192.168.0.0/24"),
    )


# Destroy.


def test_destroy_unknown_container_is_refused(ledger: Ledger) -> None:
    assert_refused(
        ledger,
        errors.ContainerNotFound,
        "container zz not found in network web; 'netledger container list web' shows the containers",
        lambda: ledger.destroy_container("web", "zz", context()),
    )


def test_destroy_releases_gateway_and_pooled_ip(ledger: Ledger) -> None:
    create(ledger, "a")
    create(ledger, "b")
    before = ledger.event_count()
    released = ledger.destroy_container("web", "a", context())
    assert released == [IP("10.0.0.1"), IP("10.0.0.2")]
    assert ledger.event_count() == before + 2
    assert allocated(ledger) == [(int(IP("10.0.0.3")), int(IP("10.0.0.4")))]
    assert "a" not in ledger.network("web").net.containers


def test_destroy_releases_only_gateway_of_subnet_container(ledger: Ledger) -> None:
    create(ledger, "s1", ip="192.168.0.5", subnet="192.168.0.0/24")
    released = ledger.destroy_container("web", "s1", context())
    assert released == [IP("10.0.0.1")]
    assert allocated(ledger) == []
    assert ledger.network("web").net.subnet_members == {}


def test_destroyed_id_can_be_used_again(ledger: Ledger) -> None:
    create(ledger, "a")
    ledger.destroy_container("web", "a", context())
    assert create(ledger, "a").ip == IP("10.0.0.1")


# Release and allocate.


@pytest.mark.parametrize(("address", "role"), [("10.0.0.1", "ip"), ("10.0.0.2", "gateway")])
def test_release_of_container_address_names_container(ledger: Ledger, address: str, role: str) -> None:
    create(ledger, "a")
    (bare,) = ledger.allocate("web", 1, context())
    assert_refused(
        ledger,
        errors.AddressHeld,
        f"address {address} in network web cannot be released: container a holds it as its {role}; "
        "destroy that container instead",
        lambda: ledger.release("web", [bare, IP(address)], context()),
    )
    assert allocated(ledger) == [(int(IP("10.0.0.1")), int(IP("10.0.0.3")))]


def test_release_ignores_foreign_and_free_addresses(ledger: Ledger) -> None:
    before = ledger.event_count()
    released, ignored = ledger.release("web", [IP("10.0.1.1"), IP("10.0.0.9"), IP("10.0.0.0")], context())
    assert released == []
    assert ignored == {"10.0.1.1": "not in the pool", "10.0.0.9": "not allocated", "10.0.0.0": "not in the pool"}
    assert ledger.event_count() == before


def test_release_frees_bare_allocation_and_reports_ignored(ledger: Ledger) -> None:
    first, second = ledger.allocate("web", 2, context())
    before = ledger.event_count()
    released, ignored = ledger.release("web", [second, second, IP("10.0.1.1")], context())
    assert released == [second]
    assert ignored == {"10.0.1.1": "not in the pool"}
    assert ledger.event_count() == before + 1
    assert allocated(ledger) == [(int(first), int(first))]


def test_release_of_other_family_is_invalid(ledger: Ledger) -> None:
    assert_refused(
        ledger,
        errors.InvalidInput,
        "address fd00::1 is IPv6 but network web is IPv4; give an IPv4 value",
        lambda: ledger.release("web", [IP("fd00::1")], context()),
    )


def test_allocate_two_gives_two_distinct_addresses(ledger: Ledger) -> None:
    before = ledger.event_count()
    first, second = ledger.allocate("web", 2, context())
    assert (first, second) == (IP("10.0.0.1"), IP("10.0.0.2"))
    assert ledger.event_count() == before + 2
    assert allocated(ledger) == [(int(first), int(second))]


def test_allocate_from_exhausted_pool_is_refused(small: Ledger) -> None:
    for _ in range(3):
        small.allocate("web", 2, context())
    assert_refused(
        small,
        errors.PoolExhausted,
        "pool of network web is exhausted: 1 free address needed, 0 of 6 free; "
        "destroy containers or release addresses",
        lambda: small.allocate("web", 1, context()),
    )


# Allocation policies.


def test_round_robin_skips_released_address(sqlite_url: str) -> None:
    app = open_ledger(sqlite_url, policy="round-robin")
    (first,) = app.allocate("web", 1, context())
    app.release("web", [first], context())
    (second,) = app.allocate("web", 1, context())
    app.close()
    assert (first, second) == (IP("10.0.0.1"), IP("10.0.0.2"))


def test_round_robin_gives_restarted_container_new_addresses(sqlite_url: str) -> None:
    app = open_ledger(sqlite_url, policy="round-robin")
    before = create(app, "a")
    app.destroy_container("web", "a", context())
    after = create(app, "a")
    app.close()
    assert (before.ip, before.gw) == (IP("10.0.0.1"), IP("10.0.0.2"))
    assert (after.ip, after.gw) == (IP("10.0.0.3"), IP("10.0.0.4"))


def test_round_robin_wraps_to_released_address(sqlite_url: str) -> None:
    app = open_ledger(sqlite_url, pool="10.0.0.0/29", policy="round-robin")
    for _ in range(3):
        app.allocate("web", 2, context())
    app.release("web", [IP("10.0.0.2")], context())
    (address,) = app.allocate("web", 1, context())
    app.close()
    assert address == IP("10.0.0.2")


def test_lowest_reuses_released_address(ledger: Ledger) -> None:
    (first,) = ledger.allocate("web", 1, context())
    ledger.release("web", [first], context())
    (second,) = ledger.allocate("web", 1, context())
    assert first == second == IP("10.0.0.1")


def policy_choice(
    pool: set[int], alloc: set[int], cursor: int | None, count: int, exclude: set[int], policy: str
) -> list[int] | None:
    """Return what the policy must pick, by brute force over the sorted pool."""
    order = sorted(pool)
    if policy == ROUND_ROBIN and cursor is not None:
        order = [a for a in order if a > cursor] + [a for a in order if a <= cursor]
    chosen = [a for a in order if a not in alloc and a not in exclude][:count]
    return chosen if len(chosen) == count else None


@settings(max_examples=300, deadline=None)
@given(
    pool=st.sets(st.integers(0, 20), min_size=1),
    alloc=st.sets(st.integers(0, 20)),
    cursor=st.one_of(st.none(), st.integers(-1, 22)),
    count=st.sampled_from([1, 2]),
    exclude=st.sets(st.integers(0, 20), max_size=2),
    policy=st.sampled_from([LOWEST, ROUND_ROBIN]),
)
def test_policy_choice_matches_brute_force(
    pool: set[int], alloc: set[int], cursor: int | None, count: int, exclude: set[int], policy: str
) -> None:
    alloc = alloc & pool
    members = IntervalSet((a, a) for a in pool)
    network_pool = NetworkPool(4, members, policy, IntervalSet((a, a) for a in alloc), cursor)
    expected = policy_choice(pool, alloc, cursor, count, exclude, policy)
    assert network_pool.choose(count, frozenset(exclude)) == expected


# The same refusals on both stores.


def test_taken_address_refused_on_each_store(db_url: str) -> None:
    app = open_ledger(db_url)
    try:
        create(app, "a")
        assert_refused(
            app,
            errors.AddressTaken,
            "address 10.0.0.2 in network web is taken: container a holds it as its gateway",
            lambda: create(app, "b", ip="10.0.0.2"),
        )
        assert_refused(
            app,
            errors.SubnetOverlapsPool,
            "subnet 10.0.0.0/24 overlaps the pool of network web; a special subnet must lie outside the pool",
            lambda: create(app, "b", ip="10.0.0.100", subnet="10.0.0.0/24"),
        )
    finally:
        app.close()


def test_exhaustion_and_destroy_on_each_store(db_url: str) -> None:
    app = open_ledger(db_url, pool="10.0.0.0/29")
    try:
        for cid in ("a", "b", "c"):
            create(app, cid)
        assert_refused(
            app,
            errors.PoolExhausted,
            "pool of network web is exhausted: 2 free addresses needed, 0 of 6 free; "
            "destroy containers or release addresses",
            lambda: create(app, "d"),
        )
        assert app.destroy_container("web", "b", context()) == [IP("10.0.0.3"), IP("10.0.0.4")]
        assert create(app, "d").ip == IP("10.0.0.3")
        assert app.event_count() == 1 + 3 * 3 + 2 + 3
    finally:
        app.close()
