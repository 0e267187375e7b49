"""Per-seller daily buckets and one running sum per window length.

Counting trick: a bucket holds the counts of all predicates in one Python ``int``,
each predicate in its own 40-bit lane (count << 40*bit). Moving an order from
predicate mask ``old`` to ``new`` is then a single big-int addition of
``LANES[new] - LANES[old]`` to its day's bucket and to each running sum whose
window covers that day: O(windows) per change whatever the number of predicates,
and reading a count is a shift and a mask. Lanes never underflow because every
lane always holds a true, non-negative count (< 2**40).

Rolling the day forward subtracts the buckets that leave each window from its sum,
so reading a metric never sums 90 buckets.
"""

from __future__ import annotations

from typing import Final, TypeVar

from streams.engine.rules import PREDICATES

_V = TypeVar("_V")

LANE_BITS: Final = 40
LANE_MASK: Final = (1 << LANE_BITS) - 1
N_PREDICATES: Final = len(PREDICATES)

LANES: Final[tuple[int, ...]] = tuple(
    sum(1 << (LANE_BITS * b) for b in range(N_PREDICATES) if mask >> b & 1)
    for mask in range(1 << N_PREDICATES)
)
"""``LANES[mask]``: the lane vector adding one to every predicate in ``mask``."""


def lane(vector: int, bit: int) -> int:
    """The count held in the lane of predicate ``bit`` (a single-bit mask)."""
    return (vector >> (LANE_BITS * (bit.bit_length() - 1))) & LANE_MASK


class SellerWindows:
    """Counts of orders per predicate, by purchase day, and per window.

    Invariant: ``sums[i] == sum(buckets[d] for d in buckets if d > day - windows[i])``
    and no bucket is older than ``day - horizon``.
    """

    __slots__ = ("windows", "horizon", "day", "buckets", "sums")

    def __init__(self, windows: tuple[int, ...], day: int) -> None:
        self.windows = windows
        self.horizon = max(windows)
        self.day = day
        self.buckets: dict[int, int] = {}
        self.sums: list[int] = [0] * len(windows)

    def add(self, purchase_day: int, delta: int) -> None:
        """Add a lane-vector ``delta`` for an order purchased on ``purchase_day``."""
        buckets = self.buckets
        total = buckets.get(purchase_day, 0) + delta
        if total:
            buckets[purchase_day] = total
        else:
            buckets.pop(purchase_day, None)
        age = self.day - purchase_day
        sums = self.sums
        for i, width in enumerate(self.windows):
            if age < width:
                sums[i] += delta

    def roll(self, new_day: int) -> None:
        """Advance to ``new_day``: buckets leaving a window leave its sum, buckets
        leaving the horizon are dropped."""
        old_day = self.day
        if new_day <= old_day:
            return
        buckets = self.buckets
        sums = self.sums
        for i, width in enumerate(self.windows):
            if new_day - old_day >= width:
                sums[i] = sum(v for d, v in buckets.items() if d > new_day - width)
            else:
                for d in range(old_day - width + 1, new_day - width + 1):
                    v = buckets.get(d)
                    if v:
                        sums[i] -= v
        for d in days_leaving(buckets, old_day, new_day, self.horizon):
            del buckets[d]
        self.day = new_day

    def in_horizon(self, purchase_day: int) -> bool:
        return self.day - purchase_day < self.horizon

    def rebuild_sums(self) -> None:
        """Recompute the running sums from the buckets (after a restore)."""
        for i, width in enumerate(self.windows):
            self.sums[i] = sum(v for d, v in self.buckets.items() if d > self.day - width)


def days_leaving(by_day: dict[int, _V], old_day: int, new_day: int, horizon: int) -> list[int]:
    """Keys of ``by_day`` that leave a ``horizon``-day window when today moves from
    ``old_day`` to ``new_day``; cost bounded by the smaller of the gap and the dict."""
    first, last = old_day - horizon + 1, new_day - horizon
    if last - first >= len(by_day):
        return sorted(d for d in by_day if d <= last)
    return [d for d in range(first, last + 1) if d in by_day]
