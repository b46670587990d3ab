"""IntervalSet: ranges merge and split as members come and go, and queries match plain sets."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.intervals import IntervalSet

UNIVERSE = 40


def members(values: IntervalSet) -> set[int]:
    return {number for start, end in values.ranges() for number in range(start, end + 1)}


def assert_well_formed(values: IntervalSet) -> None:
    """Ranges are sorted, non-empty, and separated by at least one non-member."""
    ranges = list(values.ranges())
    for start, end in ranges:
        assert start <= end
    for (_, previous_end), (next_start, _) in zip(ranges, ranges[1:]):
        assert next_start > previous_end + 1
    assert len(values) == values.count() == sum(end - start + 1 for start, end in ranges)
    assert values.range_count() == len(ranges)


def test_constructor_merges_overlapping_and_adjacent_ranges() -> None:
    values = IntervalSet([(10, 12), (1, 3), (4, 5), (11, 20), (30, 30)])
    assert list(values.ranges()) == [(1, 5), (10, 20), (30, 30)]
    assert len(values) == 17
    assert values.range_count() == 3


def test_constructor_rejects_reversed_range() -> None:
    with pytest.raises(ValueError, match="range start 5 is after its end 4"):
        IntervalSet([(5, 4)])


def test_empty_set() -> None:
    values = IntervalSet()
    assert len(values) == 0
    assert not values
    assert values.range_count() == 0
    assert 0 not in values
    assert values.to_list() == []
    assert values.first_free(IntervalSet(), 0) is None


def test_add_merges_with_left_neighbour() -> None:
    values = IntervalSet([(1, 3)])
    values.add(4)
    assert list(values.ranges()) == [(1, 4)]
    assert len(values) == 4


def test_add_merges_with_right_neighbour() -> None:
    values = IntervalSet([(5, 7)])
    values.add(4)
    assert list(values.ranges()) == [(4, 7)]
    assert len(values) == 4


def test_add_joins_two_ranges() -> None:
    values = IntervalSet([(1, 3), (5, 7)])
    values.add(4)
    assert list(values.ranges()) == [(1, 7)]
    assert len(values) == 7
    assert values.range_count() == 1


def test_add_isolated_value_inserts_range_in_order() -> None:
    values = IntervalSet([(1, 2), (10, 11)])
    values.add(6)
    assert list(values.ranges()) == [(1, 2), (6, 6), (10, 11)]
    assert len(values) == 5


def test_add_existing_member_changes_nothing() -> None:
    values = IntervalSet([(1, 5)])
    values.add(3)
    assert list(values.ranges()) == [(1, 5)]
    assert len(values) == 5


def test_discard_splits_range() -> None:
    values = IntervalSet([(1, 9)])
    values.discard(5)
    assert list(values.ranges()) == [(1, 4), (6, 9)]
    assert len(values) == 8


def test_discard_range_ends_and_single_member() -> None:
    values = IntervalSet([(1, 3), (7, 7)])
    values.discard(1)
    values.discard(3)
    values.discard(7)
    assert list(values.ranges()) == [(2, 2)]
    assert len(values) == 1


def test_discard_non_member_changes_nothing() -> None:
    values = IntervalSet([(1, 3)])
    values.discard(0)
    values.discard(4)
    values.discard(100)
    assert list(values.ranges()) == [(1, 3)]
    assert len(values) == 3


def test_contains_only_integers() -> None:
    values = IntervalSet([(1, 3)])
    assert 2 in values
    assert 4 not in values
    assert "2" not in values
    assert 2.0 not in values


def test_min_and_max() -> None:
    values = IntervalSet([(4, 6), (10, 12)])
    assert values.min() == 4
    assert values.max() == 12


def test_next_gap_skips_to_end_of_range() -> None:
    values = IntervalSet([(3, 6), (8, 9)])
    assert values.next_gap(1) == 1
    assert values.next_gap(3) == 7
    assert values.next_gap(5) == 7
    assert values.next_gap(8) == 10


def test_first_free_skips_taken_runs() -> None:
    pool = IntervalSet([(1, 10), (20, 25)])
    taken = IntervalSet([(1, 4), (6, 10), (20, 20)])
    assert pool.first_free(taken, 1) == 5
    assert pool.first_free(taken, 6) == 21
    assert pool.first_free(taken, 11) == 21
    assert pool.first_free(taken, 0) == 5


def test_first_free_none_when_all_taken() -> None:
    pool = IntervalSet([(1, 10)])
    taken = IntervalSet([(4, 10)])
    assert pool.first_free(taken, 4) is None
    assert pool.first_free(taken, 11) is None
    assert pool.first_free(taken, 1) == 1


def test_subtract_removes_middle_and_edges() -> None:
    pool = IntervalSet([(0, 15), (20, 30)])
    removed = IntervalSet([(0, 0), (5, 6), (15, 22), (30, 40)])
    result = pool.subtract(removed)
    assert list(result.ranges()) == [(1, 4), (7, 14), (23, 29)]
    assert len(result) == 19


def test_subtract_everything_leaves_empty_set() -> None:
    result = IntervalSet([(3, 5)]).subtract(IntervalSet([(0, 10)]))
    assert len(result) == 0
    assert result.range_count() == 0


def test_overlaps_checks_closed_bounds() -> None:
    values = IntervalSet([(10, 20), (30, 40)])
    assert values.overlaps(0, 10)
    assert values.overlaps(20, 25)
    assert values.overlaps(15, 16)
    assert values.overlaps(0, 100)
    assert not values.overlaps(21, 29)
    assert not values.overlaps(0, 9)
    assert not values.overlaps(41, 50)


def test_to_list_and_from_list_round_trip() -> None:
    values = IntervalSet([(1, 3), (7, 7), (10, 2**128 - 1)])
    flat = values.to_list()
    assert flat == [1, 3, 7, 7, 10, 2**128 - 1]
    assert IntervalSet.from_list(flat) == values
    assert IntervalSet.from_list(flat).count() == values.count()


def test_equality_compares_ranges() -> None:
    assert IntervalSet([(1, 2), (3, 4)]) == IntervalSet([(1, 4)])
    assert IntervalSet([(1, 4)]) != IntervalSet([(1, 5)])
    assert IntervalSet() != [(1, 4)]


def test_ipv6_sized_range_costs_one_range() -> None:
    start = 0xFD00 << 112
    values = IntervalSet([(start, start + 2**64 - 1)])
    values.discard(start + 2**63)
    assert values.range_count() == 2
    assert values.count() == 2**64 - 1
    assert bool(values)


operations = st.lists(st.tuples(st.booleans(), st.integers(0, UNIVERSE)), max_size=80)


@settings(max_examples=300, deadline=None)
@given(operations=operations, start=st.integers(-2, UNIVERSE + 2))
def test_operations_match_python_set(operations: list[tuple[bool, int]], start: int) -> None:
    values = IntervalSet()
    expected: set[int] = set()
    for adding, number in operations:
        if adding:
            values.add(number)
            expected.add(number)
        else:
            values.discard(number)
            expected.discard(number)
        assert_well_formed(values)
    assert members(values) == expected
    assert len(values) == len(expected)
    for number in range(-1, UNIVERSE + 2):
        assert (number in values) == (number in expected)
    assert IntervalSet.from_list(values.to_list()) == values


ranges = st.lists(
    st.tuples(st.integers(0, UNIVERSE), st.integers(0, 6)).map(lambda pair: (pair[0], pair[0] + pair[1])),
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(first=ranges, second=ranges, start=st.integers(-2, UNIVERSE + 8), end_offset=st.integers(0, 8))
def test_queries_match_python_set(
    first: list[tuple[int, int]], second: list[tuple[int, int]], start: int, end_offset: int
) -> None:
    pool = IntervalSet(first)
    taken = IntervalSet(second)
    pool_members = members(pool)
    taken_members = members(taken)
    assert_well_formed(pool)
    assert pool_members == {n for low, high in first for n in range(low, high + 1)}

    difference = pool.subtract(taken)
    assert_well_formed(difference)
    assert members(difference) == pool_members - taken_members

    candidates = sorted(n for n in pool_members - taken_members if n >= start)
    assert pool.first_free(taken, start) == (candidates[0] if candidates else None)

    end = start + end_offset
    assert pool.overlaps(start, end) == any(start <= n <= end for n in pool_members)

    gap = taken.next_gap(start)
    assert gap not in taken_members
    assert all(n in taken_members for n in range(start, gap))
