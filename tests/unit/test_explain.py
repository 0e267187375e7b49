"""Explain (issue #13): the exact arithmetic, and the engine against the reference.

The formulas for headroom and orders to recover are closed forms; here they meet
the issue's definitions computed by counting, over every count a seller can have up
to 120 orders (and near the ends at a few larger sizes) and every target the
profiles ship (the boundaries where a float would be off by one are in that grid:
1/100 at 100 orders, 97/100 at 100). Then the engine's explanation meets the
reference's (tests/reference.py) on generated logs, after crashes, as time passes.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.engine.catalog import PROFILES, Catalog, Metric, profile_catalog
from streams.engine.engine import Engine
from streams.engine.events import US_PER_DAY, Event, to_us
from streams.engine.explain import explain_seller, headroom, orders_to_recover, recovers_on
from tests.reference import reference_explain, reference_report
from tests.unit.builders import ev, order
from tests.unit.strategies import NOW, logs
from tests.unit.test_engine_profiles import _recover
from tests.unit.test_engine_properties import _feed, _persist, _valid

pytestmark = pytest.mark.unit

METRICS = {(m.target, m.healthy): m for name in PROFILES
           for m in profile_catalog(name).metrics}.values()


def _target(metric: Metric) -> Fraction:
    return Fraction(Decimal(repr(metric.target)))


def _breached(metric: Metric, n: int, d: int) -> bool:
    if d == 0:
        return False
    target = _target(metric)
    p, q = target.numerator, target.denominator  # n/d vs p/q, cross-multiplied
    return n * q >= p * d if metric.healthy == "below" else n * q < p * d


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
    """The smallest m >= 1 that ends the breach, by search: adding good orders only
    moves the value toward health, so "healthy with m more" is monotone in m."""
    if not _breached(metric, n, d):
        return None

    def healthy(m: int) -> bool:
        return not _breached(metric, n if metric.healthy == "below" else n + m, d + m)

    high = 1
    while not healthy(high):
        high *= 2
        if high > 1 << 40:
            return None
    low = high // 2  # unhealthy (or 0)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if healthy(mid) else (mid, high)
    return high


@pytest.mark.parametrize("metric", METRICS, ids=lambda m: f"{m.healthy}-{m.target}")
def test_headroom_and_orders_to_recover_equal_their_definitions(metric: Metric) -> None:
    for d in (*range(0, 120), 199, 200, 201, 299, 300, 301, 333, 334, 1000):
        for n in range(0, d + 1):
            if n > 40 and d - n > 40:
                continue  # far from every shipped target either way
            assert headroom(metric, n, d) == _headroom(metric, n, d), (n, d)
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


# --- the engine against the reference -------------------------------------------

CATALOGS = {name: profile_catalog(name) for name in PROFILES}
NOW_US = to_us(NOW)
EXPLAIN = settings(max_examples=150, deadline=None,
                   suppress_health_check=[HealthCheck.too_slow])


def _explained(engine: Engine, events: list[Event], now: int, catalog: Catalog) -> int:
    """Assert the engine's explain equals the reference's for every seller of the
    reference report (and for a seller it does not know); return how many breached
    metrics were compared (so a caller can see the breach branch is exercised)."""
    report = reference_report(events, now, catalog)
    breached = 0
    for seller_id in report:
        got = explain_seller(engine, seller_id)
        assert got == reference_explain(events, now, seller_id, catalog), seller_id
        assert got is not None
        breached += sum(1 for m in got["metrics"].values() if m["breached"])
    assert explain_seller(engine, "nobody-here") is None
    return breached


@pytest.mark.parametrize("profile", sorted(CATALOGS))
@EXPLAIN
@given(lines=logs(v11=True), limit=st.integers(1, 3))
def test_explain_equals_the_reference(profile: str, lines: list[bytes], limit: int) -> None:
    catalog = CATALOGS[profile]
    engine = Engine(catalog, now=NOW_US)
    _feed(engine, lines)
    events = _valid(lines)
    _explained(engine, events, NOW_US, catalog)
    # Pages of `limit` orders, cursor to cursor, are the whole list, per metric.
    for seller_id in reference_report(events, NOW_US, catalog):
        full = explain_seller(engine, seller_id)
        assert full is not None
        for name, body in full["metrics"].items():
            pages: list[dict[str, object]] = []
            cursor = None
            while True:
                page = explain_seller(engine, seller_id, metric=name, limit=limit,
                                      cursor=cursor)
                assert page is not None
                part = page["metrics"][name]
                assert {k: v for k, v in part.items() if k not in ("orders", "next_cursor")} \
                    == {k: v for k, v in body.items() if k not in ("orders", "next_cursor")}
                pages += part["orders"]
                cursor = part["next_cursor"]
                assert len(part["orders"]) <= limit
                if cursor is None:
                    break
            assert pages == body["orders"]


@pytest.mark.parametrize("profile", sorted(CATALOGS))
@EXPLAIN
@given(lines=logs(v11=True), data=st.data())
def test_explain_after_a_crash_and_as_time_passes(profile: str, lines: list[bytes],
                                                  data: st.DataObject) -> None:
    """Purchase instants and every fact survive a crash during a flush and the
    recovery; the explanation follows the clock (orders leave, deadlines pass)."""
    catalog = CATALOGS[profile]
    engine = Engine(catalog, now=NOW_US, track_dirty=True)
    table: dict[tuple[str, int | None], bytes] = {}
    flushed_upto = 0
    for i, line in enumerate(lines, start=1):
        _feed(engine, [line])
        if data.draw(st.booleans(), label=f"flush after {i}"):
            _persist(engine, table)
            flushed_upto = i
    _persist(engine, table, cut=lambda seller, n: data.draw(
        st.integers(0, n), label=f"records of {seller} saved"))
    recovered = _recover(table, NOW_US, catalog)
    _feed(recovered, lines[flushed_upto:])
    events = _valid(lines)
    _explained(recovered, events, NOW_US, catalog)
    now = NOW_US
    for step in data.draw(st.lists(st.sampled_from(
            [3_600_000_000, US_PER_DAY, 7 * US_PER_DAY, 30 * US_PER_DAY]),
            min_size=1, max_size=3), label="steps"):
        now += step
        recovered.advance(now)
        _explained(recovered, events, now, catalog)


def test_a_breached_seller_is_explained_like_the_reference() -> None:
    """The breach branch (orders to recover, recovery date) on a fixed log, so it is
    compared whatever the generated logs happen to hold."""
    catalog = CATALOGS["amazon"]
    raw = [order(at="2024-06-14T10:00:00Z", order="o1"), ev("refund", "2024-06-14T11:00:00Z"),
           order(at="2024-05-01T10:00:00Z", order="o2")]
    engine = Engine(catalog, now=NOW_US)
    for line in raw:
        engine.apply_bytes(line)
    assert _explained(engine, _valid(raw), NOW_US, catalog) >= 1
    doc = explain_seller(engine, "s1", metric="refund_rate")
    assert doc is not None
    refund_rate = doc["metrics"]["refund_rate"]
    assert (refund_rate["numerator"], refund_rate["denominator"]) == (1, 2)
    assert refund_rate["orders_to_recover"] == 99  # 1/(2+m) < 1/100
    assert refund_rate["recovers_on"] == "2024-08-13"  # o1 (June 14) leaves the 60 days
    assert [o["order_id"] for o in refund_rate["orders"]] == ["o1"]
