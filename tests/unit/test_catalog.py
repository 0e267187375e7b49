"""The metric catalog: defaults per issue #2, TOML overrides, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.engine.catalog import Metric, default_catalog, load_catalog
from streams.engine.engine import Engine
from streams.engine.events import parse_timestamp
from streams.errors import ConfigError

pytestmark = pytest.mark.unit


def test_default_catalog_matches_the_contract() -> None:
    table = {
        m.name: (m.window_days, m.numerator, m.denominator, m.target, m.healthy)
        for m in default_catalog().metrics
    }
    assert table == {
        "perfect_order_percentage": (90, "perfect", "order", 0.97, "at_least"),
        "order_defect_rate": (60, "defect", "order", 0.01, "below"),
        "pre_fulfillment_cancel_rate": (7, "pre_fulfillment_cancellation", "order", 0.025,
                                        "below"),
        "late_shipment_rate": (10, "late_shipment", "order", 0.04, "below"),
        "refund_rate": (60, "refunded", "order", 0.01, "below"),
        "valid_tracking_rate": (30, "valid_tracking", "shipped", 0.95, "at_least"),
        # amazon (issue #12): late shipment over 30 days too, and on-time delivery
        # over 14 days with a 7-day lag.
        "late_shipment_rate_30d": (30, "late_shipment", "order", 0.04, "below"),
        "on_time_delivery_rate": (14, "on_time_delivery", "delivery_due", 0.90, "at_least"),
    }
    assert default_catalog().by_name("on_time_delivery_rate").lag_days == 7


@pytest.mark.parametrize(
    ("healthy", "target", "value", "breached"),
    [("at_least", 0.97, 0.97, False), ("at_least", 0.97, 0.9699, True),
     ("below", 0.01, 0.01, True), ("below", 0.01, 0.0099, False)],
)
def test_breach_boundaries(healthy: str, target: float, value: float, breached: bool) -> None:
    m = Metric("x", 7, "refunded", "order", target, healthy)  # type: ignore[arg-type]
    assert m.is_breached(value) is breached


def test_toml_overrides_and_adds_a_metric(tmp_path: Path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(
        '[metrics.late_shipment_rate]\nwindow_days = 30\ntarget = 0.05\n\n'
        '[metrics.seller_cancel_rate]\nwindow_days = 14\nnumerator = "seller_cancellation"\n'
        'denominator = "order"\ntarget = 0.02\nhealthy = "below"\n'
    )
    catalog = load_catalog(path)
    late = catalog.by_name("late_shipment_rate")
    assert (late.window_days, late.target, late.numerator) == (30, 0.05, "late_shipment")
    assert catalog.windows == ((7, 0), (14, 0), (14, 7), (30, 0), (60, 0), (90, 0))
    engine = Engine(catalog, now=parse_timestamp("2024-06-15T00:00:00Z"))
    engine.apply_bytes(
        b'{"event_id":"1","type":"order","seller_id":"s","order_id":"o",'
        b'"occurred_at":"2024-06-10T00:00:00Z","ship_by":"2024-06-11T00:00:00Z"}'
    )
    engine.apply_bytes(
        b'{"event_id":"2","type":"cancellation","seller_id":"s","order_id":"o",'
        b'"occurred_at":"2024-06-10T01:00:00Z","initiated_by":"seller"}'
    )
    mv = engine.seller_metrics("s")["seller_cancel_rate"]
    assert (mv.numerator, mv.denominator, mv.window_days) == (1, 1, 14)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[metrics.x]\nwindow_days = 7\nnumerator = "nope"\ndenominator = "order"\n'
         'target = 0.1\nhealthy = "below"\n', "numerator must be one of"),
        ('[metrics.x]\nwindow_days = 7\nnumerator = "late_shipment"\n'
         'denominator = "shipped"\ntarget = 0.1\nhealthy = "below"\n', "does not imply"),
        ('[metrics.refund_rate]\nwindow_days = "60"\n', "must be an integer"),
        ('[metrics.refund_rate]\ntarget = 2\n', "target must be in 0..1"),
        ('[metrics.refund_rate]\nhealthy = "above"\n', "healthy must be one of"),
        ('[metrics.refund_rate]\nwindo_days = 3\n', "unknown keys"),
        ('[metrics.x]\nwindow_days = 7\n', "needs"),
        ("not toml [", "cannot read"),
    ],
)
def test_bad_catalog_fails_with_a_precise_message(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=message):
        load_catalog(path)


# --- status: floors, warnings, exact arithmetic (issue #10) -------------------------


def test_one_bad_order_never_breaches_a_one_percent_metric_and_three_in_100_do() -> None:
    odr = default_catalog().by_name("order_defect_rate")
    assert [odr.status(1, d) for d in (30, 50, 99, 100, 10_000)] == [
        "warning", "warning", "warning", "warning", "healthy"]
    assert odr.status(3, 100) == "breach"
    assert odr.status(2, 100) == "warning"  # breached (2 %), but 2 orders are not a case
    assert odr.breached(2, 100) is True


def test_under_the_order_floor_a_seller_is_insufficient_volume_not_healthy() -> None:
    for metric in default_catalog().metrics:
        assert metric.status(0, 0) == "insufficient_volume"
        assert metric.status(0, metric.min_orders - 1) == "insufficient_volume"
        assert metric.breached(0, 0) is None


@pytest.mark.parametrize(
    ("name", "num", "den", "breached", "status"),
    [
        ("perfect_order_percentage", 97, 100, False, "warning"),  # exactly the target
        ("perfect_order_percentage", 291, 300, False, "warning"),
        ("perfect_order_percentage", 96, 100, True, "breach"),
        ("perfect_order_percentage", 122, 125, False, "healthy"),  # exactly the warning
        ("order_defect_rate", 10, 1000, True, "breach"),  # exactly 1 % breaches
        ("order_defect_rate", 8, 1000, False, "warning"),  # exactly the warning line
        ("order_defect_rate", 7, 1000, False, "healthy"),
        ("pre_fulfillment_cancel_rate", 5, 200, True, "breach"),
        ("pre_fulfillment_cancel_rate", 4, 200, False, "warning"),
        ("valid_tracking_rate", 95, 100, False, "warning"),
        ("valid_tracking_rate", 96, 100, False, "healthy"),
        ("valid_tracking_rate", 98, 100, False, "healthy"),
        ("valid_tracking_rate", 29, 31, True, "warning"),  # 2 untracked: under min_count
        ("valid_tracking_rate", 47, 50, True, "breach"),
    ],
)
def test_status_at_the_exact_boundaries(name: str, num: int, den: int, breached: bool,
                                        status: str) -> None:
    metric = default_catalog().by_name(name)
    assert metric.breached(num, den) is breached
    assert metric.status(num, den) == status


def test_warnings_are_the_decimals_written() -> None:
    from fractions import Fraction

    cancel = default_catalog().by_name("pre_fulfillment_cancel_rate")
    assert cancel.exact_warning == Fraction(2, 100)
    assert cancel.exact_target == Fraction(25, 1000)


def test_floors_and_warnings_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[metrics.order_defect_rate]\nmin_orders = 100\nmin_count = 1\n"
                    "warning = 0.005\n[metrics.refund_rate]\ntarget = 0.05\n")
    catalog = load_catalog(path)
    odr = catalog.by_name("order_defect_rate")
    assert (odr.min_orders, odr.min_count, odr.warning) == (100, 1, 0.005)
    assert odr.status(1, 99) == "insufficient_volume"
    assert odr.status(1, 100) == "breach"
    refund = catalog.by_name("refund_rate")  # a new target, the warning follows it
    assert refund.warning is None
    assert refund.exact_warning * 5 == refund.exact_target * 4


@pytest.mark.parametrize("bad", ["min_orders = -1", "min_count = 1.5", "warning = 0.02",
                                 'warning = "x"'])
def test_bad_floors_are_config_errors(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f"[metrics.order_defect_rate]\n{bad}\n")
    with pytest.raises(ConfigError, match="order_defect_rate"):
        load_catalog(path)
