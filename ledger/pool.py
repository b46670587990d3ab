"""The NetworkPool schema: a fixed pool split into allocated and free addresses.

Only the pool and the allocated set are stored; ``free`` is always
``pool \\ alloc``, so the partition holds by construction. Both sets are
``IntervalSet`` values, which keeps an IPv6 /64 as cheap as an IPv4 /24.
"""

from __future__ import annotations

from ledger.intervals import IntervalSet

LOWEST = "lowest"
ROUND_ROBIN = "round-robin"
POLICIES = (LOWEST, ROUND_ROBIN)


class NetworkPool:
    """The pool of one network and the subset of it that is allocated.

    ``policy`` decides which free address ``choose`` returns. ``lowest``
    returns the lowest one. ``round-robin`` continues after the address
    handed out last (``cursor``) and wraps at the end, so that an address a
    crash-looping container just released is not handed out again while
    stale ARP or conntrack entries may still point at it.
    """

    __slots__ = ("version", "pool", "alloc", "policy", "cursor")

    def __init__(
        self,
        version: int,
        pool: IntervalSet,
        policy: str = LOWEST,
        alloc: IntervalSet | None = None,
        cursor: int | None = None,
    ) -> None:
        self.version = version
        self.pool = pool
        self.alloc = alloc if alloc is not None else IntervalSet()
        self.policy = policy
        self.cursor = cursor

    @property
    def size(self) -> int:
        return self.pool.count()

    @property
    def allocated_count(self) -> int:
        return self.alloc.count()

    @property
    def free_count(self) -> int:
        return self.pool.count() - self.alloc.count()

    def contains(self, address: int) -> bool:
        """Return whether the address is in the pool at all."""
        return address in self.pool

    def is_free(self, address: int) -> bool:
        return address in self.pool and address not in self.alloc

    def is_allocated(self, address: int) -> bool:
        return address in self.alloc

    def choose(self, count: int, exclude: frozenset[int] = frozenset()) -> list[int] | None:
        """Return ``count`` distinct free addresses by the policy, or None if too few are free.

        Nothing changes until the caller records the allocation.
        """
        if self.policy == ROUND_ROBIN and self.cursor is not None:
            start = self.cursor + 1
        else:
            start = self.pool.min()
        chosen: list[int] = []
        while len(chosen) < count:
            address = self._scan_from(start, exclude.union(chosen))
            if address is None:
                return None
            chosen.append(address)
            start = address + 1
        return chosen

    def _scan_from(self, start: int, skip: frozenset[int]) -> int | None:
        """Return the first free address at or after ``start`` not in ``skip``, wrapping once."""
        address = self.pool.first_free(self.alloc, start)
        while address is not None and address in skip:
            address = self.pool.first_free(self.alloc, address + 1)
        if address is not None:
            return address
        address = self.pool.first_free(self.alloc, self.pool.min())
        while address is not None and address < start and address in skip:
            address = self.pool.first_free(self.alloc, address + 1)
        if address is not None and address < start:
            return address
        return None

    def allocate(self, address: int) -> None:
        """Move one address from free to allocated (the effect of ``Allocate``)."""
        self.alloc.add(address)
        self.cursor = address

    def release(self, address: int) -> None:
        """Return one address to free; addresses not allocated are left alone."""
        self.alloc.discard(address)
