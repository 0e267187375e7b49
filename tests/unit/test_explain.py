"""Explain (issue #13): the exact arithmetic, and the engine against the reference.

The formulas for headroom and orders to recover are closed forms; here they meet
the issue's definitions computed by counting, over every count a seller can have up
to a few hundred orders and every target the profiles ship (the boundaries where a
float would be off by one are in that grid: 1/100 at 100 orders, 97/100 at 100).
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest

from streams.engine.catalog import PROFILES, Metric, profile_catalog
from streams.engine.explain import headroom, orders_to_recover, recovers_on

pytestmark = pytest.mark.unit

METRICS = {(m.target, m.healthy): m for name in PROFILES
           for m in profile_catalog(name).metrics}.values()


def _target(metric: Metric) -> Fraction:
    return Fraction(Decimal(repr(metric.target)))


def _breached(metric: Metric, n: int, d: int) -> bool:
    if d == 0:
        return False
    value, target = Fraction(n, d), _target(metric)
    return value >= target if metric.healthy == "below" else value < target


def _headroom(metric: Metric, n: int, d: int) -> int | None:
    if d == 0 or _breached(metric, n, d):
        return None
    k = 0
    if metric.healthy == "below":
        while not _breached(metric, n + k + 1, d):
            k += 1
    else:
        while k + 1 <= n and not _breached(metric, n - k - 1, d):
            k += 1
    return k


def _to_recover(metric: Metric, n: int, d: int) -> int | None:
    if not _breached(metric, n, d):
        return None
    for m in range(1, 100_000):
        if not _breached(metric, n if metric.healthy == "below" else n + m, d + m):
            return m
    return None


@pytest.mark.parametrize("metric", METRICS, ids=lambda m: f"{m.healthy}-{m.target}")
def test_headroom_and_orders_to_recover_equal_their_definitions(metric: Metric) -> None:
    for d in range(0, 230):
        for n in range(0, d + 1):
            assert headroom(metric, n, d) == _headroom(metric, n, d), (n, d)
            if metric.healthy == "below" or n >= d - 25:  # at_least: m grows fast below
                assert orders_to_recover(metric, n, d) == _to_recover(metric, n, d), (n, d)


def test_targets_with_no_way_back() -> None:
    zero = Metric("z", 30, "refunded", "order", 0.0, "below")
    full = Metric("f", 30, "valid_tracking", "shipped", 1.0, "at_least")
    assert orders_to_recover(zero, 0, 10) is None  # 0/10 >= 0: breached for good
    assert orders_to_recover(full, 9, 10) is None
    assert headroom(full, 10, 10) == 0
    assert headroom(zero, 0, 10) is None


def test_recovery_waits_out_a_relapse() -> None:
    """Good orders leaving first can breach again after a healthy day."""
    metric = Metric("r", 3, "refunded", "order", 0.5, "below")
    today = 100
    # Day 98: 1 bad of 1; day 99: 0 of 3 good; day 100: 1 bad of 1.
    counts = {98: (1, 1), 99: (0, 3), 100: (1, 1)}
    # Today 2/5 < 0.5: not breached -> None.
    assert recovers_on(metric, today, counts) is None
    counts = {98: (2, 2), 99: (0, 1), 100: (1, 1)}  # 3/4 breached
    # t=101: days 99..101 -> 1/2 breached; t=102: 100..102 -> 1/1; t=103: empty.
    assert recovers_on(metric, today, counts) == 103
    counts = {98: (2, 2), 99: (0, 3), 100: (1, 1)}  # 3/6 breached (at the target)
    # t=101: 1/4 healthy; t=102: 1/1 breached again; t=103: empty -> 103.
    assert recovers_on(metric, today, counts) == 103
