"""Prometheus exposition of seller metrics: content, format, and the two renderers agree."""

from __future__ import annotations

import orjson
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streams.engine.catalog import default_catalog
from streams.engine.engine import Engine
from streams.engine.events import parse_timestamp
from streams.exporter import SellerCollector, render_sellers
from streams.generator import LogSpec, generate

pytestmark = pytest.mark.unit
AS_OF = "2024-06-15T00:00:00Z"


def _samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


def _engine(sellers: int = 12) -> Engine:
    engine = Engine(now=parse_timestamp(AS_OF), fixed_clock=True)
    for event in generate(LogSpec(sellers=sellers, days=95, end_us=parse_timestamp(AS_OF))):
        engine.apply_bytes(orjson.dumps(event))
    return engine


def test_fast_renderer_equals_the_collector() -> None:
    engine = _engine()
    registry = CollectorRegistry()
    registry.register(SellerCollector(lambda: engine))
    fast = _samples(render_sellers(engine))
    assert fast == _samples(generate_latest(registry))
    assert len(fast) > 12 * 6 * 3


def test_values_match_the_engine_exactly() -> None:
    engine = _engine()
    samples = _samples(render_sellers(engine))
    for seller_id in engine.seller_ids():
        for name, mv in engine.seller_metrics(seller_id).items():
            labels = (("metric", name), ("seller_id", seller_id))
            if mv.denominator == 0:
                assert ("popstream_seller_metric_ratio", labels) not in samples
                continue
            assert samples[("popstream_seller_metric_ratio", labels)] == mv.value
            assert samples[("popstream_seller_metric_numerator_orders", labels)] == mv.numerator
            assert samples[("popstream_seller_metric_denominator_orders", labels)] == (
                mv.denominator
            )


def test_targets_and_windows_exported_once_per_metric() -> None:
    samples = _samples(render_sellers(_engine(2)))
    targets = {k[1]: v for k, v in samples.items() if k[0] == "popstream_metric_target_ratio"}
    assert targets[(("healthy", "at_least"), ("metric", "perfect_order_percentage"))] == 0.97
    assert targets[(("healthy", "below"), ("metric", "late_shipment_rate"))] == 0.04
    assert len(targets) == len(default_catalog().metrics) == 8
    windows = {k[1]: v for k, v in samples.items() if k[0] == "popstream_metric_window_days"}
    assert windows[(("metric", "pre_fulfillment_cancel_rate"),)] == 7


def test_no_series_for_zero_denominator_and_causes_per_seller() -> None:
    engine = Engine(now=parse_timestamp(AS_OF))
    engine.apply_bytes(
        b'{"event_id":"1","type":"order","seller_id":"s:1","order_id":"o",'
        b'"occurred_at":"2024-06-14T00:00:00Z","ship_by":"2024-06-14T12:00:00Z"}'
    )
    samples = _samples(render_sellers(engine))
    metrics = {dict(k[1])["metric"] for k in samples if k[0] == "popstream_seller_metric_ratio"}
    assert "valid_tracking_rate" not in metrics  # nothing shipped: zero denominator
    assert samples[("popstream_seller_metric_ratio",
                    (("metric", "late_shipment_rate"), ("seller_id", "s:1")))] == 1.0
    assert samples[("popstream_seller_imperfect_orders",
                    (("cause", "late_shipment"), ("seller_id", "s:1")))] == 1.0


def test_a_dropped_seller_leaves_no_series() -> None:
    engine = _engine(3)
    first = sorted(engine.seller_ids())[0]
    engine.drop_seller(first)
    text = render_sellers(engine).decode()
    assert f'seller_id="{first}"' not in text
    assert 'seller_id="' in text


def test_cached_rendering_equals_a_fresh_one_as_state_changes() -> None:
    engine = _engine(6)
    cache: dict = {}  # type: ignore[type-arg]
    assert render_sellers(engine, cache=cache) == render_sellers(engine)
    assert len(cache) == 6
    seller = sorted(engine.seller_ids())[0]
    engine.apply_bytes(orjson.dumps({
        "event_id": "extra", "type": "order", "seller_id": seller, "order_id": "new",
        "occurred_at": "2024-06-14T00:00:00Z", "ship_by": "2024-06-13T00:00:00Z"}))
    assert render_sellers(engine, cache=cache) == render_sellers(engine)
    engine.drop_seller(seller)
    assert render_sellers(engine, cache=cache) == render_sellers(engine)
    assert seller not in cache
