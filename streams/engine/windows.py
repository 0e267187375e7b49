"""Running sums per window, as lane vectors, and the global index by purchase day.

Counting trick: one Python ``int`` holds the counts of all predicates, each in its
own 32-bit lane (count << 32*bit). Moving an order from predicate mask ``old`` to
``new`` is a single big-int addition of ``LANES[new] - LANES[old]`` to each running
sum whose window covers the order's purchase day: O(windows) per change whatever
the number of predicates, and reading a count is a shift and a mask. Lanes never
underflow because every lane always holds a true, non-negative count (< 2**32).

Why no per-seller daily buckets: the typical seller has a few orders a day, so 90
buckets per seller (a dict entry and a ~60-byte int each) cost more than the
orders themselves (measured: 465 bytes per order with buckets and a per-seller
day index, on 10k sellers with 45 orders each). Instead one :class:`DayIndex`
for the whole engine lists ``(seller, order)`` by purchase day (16 bytes an
order); when a day leaves a window, the orders of that day leave its sum, each
subtracting the mask it is counted with. Same O(1) amortised work per order and
window, a fraction of the memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

from streams.engine.rules import PREDICATES

LANE_BITS: Final = 32
LANE_MASK: Final = (1 << LANE_BITS) - 1
N_PREDICATES: Final = len(PREDICATES)

class _Lanes(dict[int, int]):
    """``LANES[mask]``: the lane vector adding one to every predicate in ``mask``,
    computed on first use (a table of all 2**22 masks would cost ~200 MB; an
    engine meets a few hundred)."""

    def __missing__(self, mask: int) -> int:
        vector = sum(1 << (LANE_BITS * b) for b in range(N_PREDICATES) if mask >> b & 1)
        self[mask] = vector
        return vector


LANES: Final = _Lanes()


def lane(vector: int, bit: int) -> int:
    """The count held in the lane of predicate ``bit`` (a single-bit mask)."""
    return (vector >> (LANE_BITS * (bit.bit_length() - 1))) & LANE_MASK


def windows_by_age(windows: tuple[tuple[int, int], ...]) -> tuple[tuple[int, ...], ...]:
    """For an order purchased ``age`` days ago (0 = today), the indexes of the
    ``(days, lag)`` windows that cover it: ages ``lag .. lag + days - 1``."""
    horizon = max(days + lag for days, lag in windows)
    return tuple(
        tuple(i for i, (days, lag) in enumerate(windows) if lag <= age < lag + days)
        for age in range(horizon)
    )


class DayIndex:
    """Keys ``(owner, item)`` listed under a day, flattened into one list per day.

    Owners are seller ids (str), items order keys (bytes) or message ids (str).

    Entries are never removed one by one: an entry whose record moved to another
    day, or was dropped, is skipped by the reader (it checks the record's day).
    A day's list is dropped as a whole when the day leaves the horizon.
    """

    __slots__ = ("_days",)

    def __init__(self) -> None:
        self._days: dict[int, list[Any]] = {}

    def add(self, day: int, owner: str, item: Any) -> None:
        entries = self._days.get(day)
        if entries is None:
            self._days[day] = [owner, item]
        else:
            entries.append(owner)
            entries.append(item)

    def days_in(self, first: int, last: int) -> list[int]:
        """Indexed days in ``first..last`` (inclusive), ascending."""
        if last - first + 1 <= len(self._days):
            return [d for d in range(first, last + 1) if d in self._days]
        return sorted(d for d in self._days if first <= d <= last)

    def entries(self, day: int) -> Iterator[tuple[str, Any]]:
        """Distinct ``(owner, item)`` pairs listed under ``day``."""
        flat = self._days.get(day, [])
        seen: set[tuple[str, Any]] = set()
        for i in range(0, len(flat), 2):
            key = (flat[i], flat[i + 1])
            if key not in seen:
                seen.add(key)
                yield key

    def drop(self, day: int) -> None:
        self._days.pop(day, None)

    def __len__(self) -> int:
        return sum(len(v) for v in self._days.values()) // 2
