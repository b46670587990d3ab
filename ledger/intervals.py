"""A set of integers stored as sorted, disjoint, non-adjacent closed ranges.

Pools and allocations are sets of addresses, and an address is an integer.
Storing ranges instead of members keeps an IPv6 /64 pool as one pair of
integers, and a run of addresses handed out one after another as one range,
so memory follows how fragmented the allocations are, never the pool's size.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator


class IntervalSet:
    """Sorted disjoint ranges ``[start, end]`` of integers, with a member count.

    Adjacent ranges are always merged, so the integer right after a range is
    never a member: ``next_gap`` relies on that.
    """

    __slots__ = ("_starts", "_ends", "_count")

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._count = 0
        for start, end in sorted(ranges):
            self._append_range(start, end)

    def _append_range(self, start: int, end: int) -> None:
        if start > end:
            raise ValueError(f"range start {start} is after its end {end}")
        if self._ends and start <= self._ends[-1] + 1:
            previous_end = self._ends[-1]
            if end > previous_end:
                self._ends[-1] = end
                self._count += end - previous_end
            return
        self._starts.append(start)
        self._ends.append(end)
        self._count += end - start + 1

    def count(self) -> int:
        """Return the number of members.

        Use this rather than ``len()``: Python's ``len()`` fails above
        2**63 - 1 members, and an IPv6 /64 pool has 2**64.
        """
        return self._count

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IntervalSet):
            return NotImplemented
        return self._starts == other._starts and self._ends == other._ends

    def __repr__(self) -> str:
        return f"IntervalSet({list(self.ranges())!r})"

    def range_count(self) -> int:
        """Return how many stored ranges there are (a measure of fragmentation)."""
        return len(self._starts)

    def ranges(self) -> Iterator[tuple[int, int]]:
        """Yield the ranges in ascending order."""
        return zip(self._starts, self._ends)

    def min(self) -> int:
        return self._starts[0]

    def max(self) -> int:
        return self._ends[-1]

    def _index_containing(self, value: int) -> int:
        index = bisect_right(self._starts, value) - 1
        if index >= 0 and self._ends[index] >= value:
            return index
        return -1

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and self._index_containing(value) >= 0

    def add(self, value: int) -> None:
        """Add one integer, merging it with the ranges on either side."""
        if self._index_containing(value) >= 0:
            return
        index = bisect_right(self._starts, value)
        joins_left = index > 0 and self._ends[index - 1] == value - 1
        joins_right = index < len(self._starts) and self._starts[index] == value + 1
        if joins_left and joins_right:
            self._ends[index - 1] = self._ends[index]
            del self._starts[index]
            del self._ends[index]
        elif joins_left:
            self._ends[index - 1] = value
        elif joins_right:
            self._starts[index] = value
        else:
            self._starts.insert(index, value)
            self._ends.insert(index, value)
        self._count += 1

    def discard(self, value: int) -> None:
        """Remove one integer if present, splitting its range when needed."""
        index = self._index_containing(value)
        if index < 0:
            return
        start, end = self._starts[index], self._ends[index]
        if start == end:
            del self._starts[index]
            del self._ends[index]
        elif value == start:
            self._starts[index] = value + 1
        elif value == end:
            self._ends[index] = value - 1
        else:
            self._ends[index] = value - 1
            self._starts.insert(index + 1, value + 1)
            self._ends.insert(index + 1, end)
        self._count -= 1

    def overlaps(self, start: int, end: int) -> bool:
        """Return whether any member lies in ``[start, end]``."""
        index = bisect_right(self._starts, end) - 1
        return index >= 0 and self._ends[index] >= start

    def next_gap(self, value: int) -> int:
        """Return the smallest integer at or after ``value`` that is not a member."""
        index = self._index_containing(value)
        return value if index < 0 else self._ends[index] + 1

    def first_free(self, taken: IntervalSet, start: int) -> int | None:
        """Return the smallest member at or after ``start`` that is not in ``taken``.

        One lookup in ``taken`` per range of this set is enough: ``taken``
        merges adjacent members, so the integer after a taken range is free.
        """
        index = max(bisect_right(self._starts, start) - 1, 0)
        for position in range(index, len(self._starts)):
            range_end = self._ends[position]
            if range_end < start:
                continue
            candidate = taken.next_gap(max(self._starts[position], start))
            if candidate <= range_end:
                return candidate
        return None

    def subtract(self, other: IntervalSet) -> IntervalSet:
        """Return the members of this set that are not in ``other``."""
        result: list[tuple[int, int]] = []
        for start, end in self.ranges():
            cursor = start
            for other_start, other_end in other.ranges():
                if other_end < cursor or other_start > end:
                    continue
                if other_start > cursor:
                    result.append((cursor, other_start - 1))
                cursor = other_end + 1
            if cursor <= end:
                result.append((cursor, end))
        return IntervalSet(result)

    def to_list(self) -> list[int]:
        """Flatten to ``[start0, end0, start1, end1, ...]`` for compact storage."""
        flat: list[int] = []
        for start, end in self.ranges():
            flat.append(start)
            flat.append(end)
        return flat

    @classmethod
    def from_list(cls, flat: list[int]) -> IntervalSet:
        """Rebuild a set from the output of ``to_list``."""
        return cls(zip(flat[0::2], flat[1::2]))
