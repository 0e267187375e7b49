"""The fleet exporter (issues #10, #11): aggregates kept by the difference equal a
recount from scratch; exactly the sellers that matter get per-seller series."""

from __future__ import annotations

import contextlib
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from streams.engine.catalog import STATUSES, Catalog, Metric, default_catalog
from streams.engine.engine import Engine
from streams.engine.events import US_PER_DAY, to_us
from streams.errors import InvalidEvent
from streams.fleet import FleetExporter, value_buckets
from tests.unit.strategies import NOW, logs

pytestmark = pytest.mark.unit

# Floors low enough that generated logs reach every status.
LOW_FLOORS = Catalog(tuple(
    Metric(m.name, m.window_days, m.numerator, m.denominator, m.target, m.healthy,
           m.description, min_orders=2, min_count=1, warning=m.warning)
    for m in default_catalog().metrics))


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text.decode()) for s in f.samples}


def recount(engine: Engine) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The fleet series computed from scratch from the engine's report."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    report = engine.report()
    for metric in engine.catalog.metrics:
        name = metric.name
        counts = dict.fromkeys(STATUSES, 0)
        bounds = value_buckets(metric)
        buckets = [0] * (len(bounds) + 1)
        num_sum = den_sum = 0
        value_sum = Fraction(0)
        for metrics in report.values():
            mv = metrics[name]
            counts[mv.status] += 1
            num_sum += mv.numerator
            den_sum += mv.denominator
            if mv.status != "insufficient_volume":
                value = Fraction(mv.numerator, mv.denominator)
                value_sum += value
                buckets[next((i for i, b in enumerate(bounds) if value <= b), len(bounds))] += 1
        for status, count in counts.items():
            out[("popstream_fleet_sellers", (("metric", name), ("status", status)))] = count
        cumulative = 0
        for bound, count in zip(bounds, buckets, strict=False):
            cumulative += count
            out[("popstream_fleet_metric_value_bucket",
                 (("le", repr(float(bound))), ("metric", name)))] = cumulative
        cumulative += buckets[-1]
        out[("popstream_fleet_metric_value_bucket", (("le", "+Inf"), ("metric", name)))] = (
            cumulative)
        out[("popstream_fleet_metric_value_count", (("metric", name),))] = cumulative
        out[("popstream_fleet_metric_value_sum", (("metric", name),))] = float(value_sum)
        out[("popstream_fleet_numerator_orders", (("metric", name),))] = num_sum
        out[("popstream_fleet_denominator_orders", (("metric", name),))] = den_sum
    out[("popstream_sellers_tracked", ())] = len(report)
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(log=logs(max_size=60), steps=st.lists(st.integers(0, 40), min_size=1, max_size=4),
       cut=st.integers(0, 60), mode=st.sampled_from(["alerting", "all"]))
def test_fleet_series_kept_by_difference_equal_a_recount(
        log: list[bytes], steps: list[int], cut: int, mode: str) -> None:
    engine = Engine(LOW_FLOORS, now=to_us(NOW), track_touched=True)
    exporter = FleetExporter(engine, mode)  # type: ignore[arg-type]
    for n, line in enumerate(log):
        with contextlib.suppress(InvalidEvent):
            engine.apply_bytes(line)
        if n == cut:
            exporter.refresh(limit=3)  # partial refreshes in the middle must not matter
    for days in steps:
        engine.advance(engine.now + days * US_PER_DAY // 2)
        got = samples(exporter.render())
        want = recount(engine)
        assert engine.tracked_orders == sum(len(s.orders) for s in engine.sellers.values())
        for key, value in want.items():
            if key[0] == "popstream_fleet_metric_value_sum":
                assert got[key] == pytest.approx(value, abs=1e-9)
            else:
                assert got[key] == value, key
        exported = {dict(labels)["seller_id"] for name, labels in got
                    if name == "popstream_seller_metric_status"}
        report = engine.report()
        expected = set(report) if mode == "all" else {
            sid for sid, metrics in report.items()
            if any(mv.status in ("warning", "breach") for mv in metrics.values())}
        assert exported == expected
        assert got[("popstream_sellers_unexported", ())] == len(report) - len(expected)
        for sid in exported:
            for name, mv in report[sid].items():
                # Every metric in `all` mode; an alerting seller's alerting metrics.
                shown = mode == "all" or mv.status in ("warning", "breach")
                labels = (("metric", name), ("seller_id", sid), ("status", mv.status))
                assert got.get(("popstream_seller_metric_status", labels)) == (
                    1 if shown else None)
                key = ("popstream_seller_metric_numerator_orders",
                       (("metric", name), ("seller_id", sid)))
                assert got.get(key) == (mv.numerator if shown and mv.denominator else None)
                ratio = got.get(("popstream_seller_metric_ratio",
                                 (("metric", name), ("seller_id", sid))))
                assert ratio == (mv.numerator / mv.denominator
                                 if shown and mv.denominator else None)
                room = got.get(("popstream_seller_metric_headroom_orders",
                                (("metric", name), ("seller_id", sid))))
                metric = engine.catalog.by_name(name)
                assert room == (_brute_headroom(metric, mv.numerator, mv.denominator)
                                if shown else None)


def _brute_headroom(metric: Metric, n: int, d: int) -> int | None:
    """Issue #13's headroom by counting: the largest k >= 0 that keeps the metric
    unbreached with k more bad orders; None when breached or without orders."""
    target = Fraction(Decimal(repr(metric.target)))

    def ok(k: int) -> bool:
        if metric.healthy == "below":
            return Fraction(n + k, d) < target
        return n - k >= 0 and Fraction(n - k, d) >= target

    if d == 0 or not ok(0):
        return None
    k = 0
    while ok(k + 1):
        k += 1
    return k


def test_a_watch_listed_seller_is_exported_even_when_healthy() -> None:
    from tests.unit.builders import order

    engine = Engine(now=to_us(NOW), track_touched=True)
    exporter = FleetExporter(engine, "alerting", watchlist=["s1"])
    for n in range(40):
        engine.apply_bytes(order(at="2024-06-14T10:00:00Z", order=f"o{n}", seller="s1"))
        engine.apply_bytes(order(at="2024-06-14T10:00:00Z", order=f"o{n}", seller="s2"))
    text = exporter.render().decode()
    assert 'seller_id="s1"' in text
    assert 'seller_id="s2"' not in text
    assert "popstream_sellers_unexported 1" in text
    # Healthy, yet every metric: a watched seller is watched whole.
    assert {m.name for m in engine.catalog.metrics} == {
        line.split('metric="')[1].split('"')[0] for line in text.splitlines()
        if line.startswith('popstream_seller_metric_status{seller_id="s1"')}


def test_buckets_sit_around_the_target_and_warning() -> None:
    odr = default_catalog().by_name("order_defect_rate")
    bounds = value_buckets(odr)
    assert Fraction(1, 100) in bounds
    assert Fraction(8, 1000) in bounds
    assert bounds[-1] == 1
    pop = default_catalog().by_name("perfect_order_percentage")
    assert {Fraction(97, 100), Fraction(976, 1000), Fraction(1)} <= set(value_buckets(pop))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(log=logs(max_size=60), steps=st.lists(st.integers(0, 200), min_size=1, max_size=4))
def test_status_transitions_replayed_give_every_current_status(
        log: list[bytes], steps: list[int]) -> None:
    """A consumer of popstream-status that folds the transitions, from "nothing
    known" (insufficient_volume), holds every seller's current status; no transition
    is a no-op, and each one starts where the previous one for that pair ended."""
    engine = Engine(LOW_FLOORS, now=to_us(NOW), track_touched=True)
    exporter = FleetExporter(engine, "alerting", transitions=True)
    known: dict[tuple[str, str], str] = {}

    def fold() -> None:
        exporter.refresh()
        for t in exporter.take_transitions():
            assert t.was != t.status
            assert known.get((t.seller_id, t.metric), "insufficient_volume") == t.was
            known[(t.seller_id, t.metric)] = t.status

    for line in log:
        with contextlib.suppress(InvalidEvent):
            engine.apply_bytes(line)
        fold()
    for days in steps:
        engine.advance(engine.now + days * US_PER_DAY // 2)
        fold()
        report = engine.report()
        for (seller, metric), status in known.items():
            current = report[seller][metric].status if seller in report else (
                "insufficient_volume")
            assert status == current
        for seller, metrics in report.items():
            for metric, mv in metrics.items():
                assert known.get((seller, metric), "insufficient_volume") == mv.status
