"""The worker's per-message logic without Kafka: decode, apply, dead-letter, persist."""

from __future__ import annotations

import orjson
import pytest

from streams.engine.catalog import default_catalog
from streams.engine.events import EVENT_TYPES, parse_timestamp
from streams.runtime.changelog import chunk_key, parse_chunk_key
from streams.runtime.pipeline import Pipeline
from streams.runtime.topics import owner_partition
from streams.settings import from_env

pytestmark = pytest.mark.unit
AS_OF = parse_timestamp("2024-06-15T00:00:00Z")
ORDER = {"event_id": "e1", "type": "order", "seller_id": "s1", "order_id": "o1",
         "occurred_at": "2024-06-14T00:00:00Z", "ship_by": "2024-06-14T12:00:00Z"}


P = owner_partition("s1", 4)  # the partition that owns seller s1 (of the default 4)


def pipeline(**kw: object) -> Pipeline:
    p = Pipeline(from_env({}, as_of=AS_OF, **kw), default_catalog())
    p.ready = True
    return p


def test_single_events_and_arrays_are_applied() -> None:
    p = pipeline()
    ship = dict(ORDER, event_id="e2", type="shipment", occurred_at="2024-06-14T11:00:00Z",
                tracking_id="T")
    del ship["ship_by"]
    assert p.handle(orjson.dumps(ORDER), "orders", P, 0, None) == []
    assert p.handle(orjson.dumps([ship]), "shipments", P, 0, None) == []
    doc = p.sellers_json("s1")
    assert doc is not None
    assert doc["sellers"]["s1"]["late_shipment_rate"]["denominator"] == 1
    assert doc["sellers"]["s1"]["valid_tracking_rate"]["value"] == 1.0
    assert p.seller_partition == {"s1": P}


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"\xff\xfe", "not valid JSON"),
        (b'{"type": "order"}', "missing required field"),
        (b"[1, 2", "not valid JSON"),
        (None, "empty message value"),
        (b'{"pad": "' + b"x" * 5000 + b'"}', "oversized"),
    ],
)
def test_bad_input_is_returned_for_the_dead_letter_topic(value: bytes | None,
                                                         reason: str) -> None:
    p = pipeline(max_message_bytes=4096)
    bad = p.handle(value, "orders", P, 7, None)
    assert len(bad) == 1
    assert reason in bad[0][1]
    metrics = p.render_metrics().decode()
    assert "popstream_events_invalid_total" in metrics


def test_array_elements_fail_alone() -> None:
    p = pipeline()
    bad_element = {"event_id": "x", "type": "order", "seller_id": "s1",
                   "occurred_at": "2024-06-14T00:00:00Z"}
    bad = p.handle(orjson.dumps([ORDER, bad_element]), "orders", P, 1, None)
    assert [(raw, reason.split(":")[0]) for raw, reason in bad] == [
        (orjson.dumps(bad_element), "element 1")]
    assert p.sellers_json("s1") is not None


def test_dirty_chunks_carry_the_partition_and_restore_elsewhere() -> None:
    p = pipeline()
    p.handle(orjson.dumps(ORDER), "orders", P, 0, None)
    chunks = p.dirty_chunks()
    assert {partition for partition, _, _ in chunks} == {P}
    assert p.dirty_chunks() == []  # taken
    other = pipeline()
    assert other.restore([(k, v) for _, k, v in chunks if v is not None], {P}) == 1
    assert other.sellers_json() == p.sellers_json()
    others = set(range(4)) - {P}
    assert pipeline().restore([(k, v) for _, k, v in chunks if v is not None], others) == 0


def test_restore_drops_sellers_of_revoked_partitions() -> None:
    p = pipeline()
    p.handle(orjson.dumps(ORDER), "orders", P, 0, None)
    p.restore([], set(range(4)) - {P})
    assert p.sellers_json() == {"as_of": "2024-06-15T00:00:00Z", "sellers": {}}
    assert "s1" not in p.render_metrics().decode()


def test_chunk_keys_round_trip() -> None:
    for seller, chunk in [("s:1", 19_888), ("a.b-c", None)]:
        assert parse_chunk_key(chunk_key(seller, chunk)) == (seller, chunk)


def test_health_is_cheap_and_counts_messages() -> None:
    p = pipeline()
    p.handle(orjson.dumps(ORDER), "orders", P, 0, None)
    p.handle(b"{", "orders", P, 1, None)
    doc = p.health()
    assert (doc["status"], doc["messages_consumed"], doc["sellers"]) == ("ok", 2, 1)
    assert doc["engine"] == ("python" if type(p.engine).__name__ == "PythonEngine"
                             else "native")


def _counter(p: Pipeline, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(p.render_metrics().decode()):
        for s in family.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_a_conflict_inside_a_bulk_array_dead_letters_that_element_alone() -> None:
    """The bulk fast path decodes the array in one call; an element that is valid
    but conflicts with the state (a second order under a new id) must still fail
    alone, with its own bytes, and every other element count exactly once."""
    p = pipeline()
    redefine = dict(ORDER, event_id="e9", ship_by="2024-06-14T13:00:00Z")
    other = dict(ORDER, event_id="e3", order_id="o2")
    assert p.handle(orjson.dumps(ORDER), "orders", P, 0, None) == []
    bad = p.handle(orjson.dumps([ORDER, redefine, other]), "orders", P, 1, None)
    assert bad == [(orjson.dumps(redefine), bad[0][1])]
    assert bad[0][1].startswith("element 1: order 'o1' of seller 's1' already exists")
    events = _counter(p, "popstream_events_processed_total")
    assert events == {(("outcome", "applied"), ("type", "order")): 2.0,
                      (("outcome", "duplicate"), ("type", "order")): 1.0}
    assert _counter(p, "popstream_events_invalid_total") == {(("reason", "conflict"),): 1.0}
    consumed = _counter(p, "popstream_messages_consumed_total")
    assert {k: v for k, v in consumed.items() if v} == {(("topic", "orders"),): 2.0}
    assert len(consumed) == len(EVENT_TYPES)  # every event topic has a series from the start


def test_bulk_and_single_messages_give_the_same_state_and_counts() -> None:
    orders = [dict(ORDER, event_id=f"e{i}", order_id=f"o{i}") for i in range(7)]
    refunds = [dict(ORDER, event_id=f"e{i}", order_id=f"o{i % 7}", type="refund")
               for i in range(7, 20)]
    for e in refunds:
        del e["ship_by"]
    orders.insert(5, {"type": "order", "event_id": "bad"})  # invalid: fails alone
    single, bulk = pipeline(), pipeline()
    single_bad = [b for topic, group in (("orders", orders), ("refunds", refunds))
                  for i, e in enumerate(group)
                  for b in single.handle(orjson.dumps(e), topic, P, i, None)]
    bulk_bad = (bulk.handle(orjson.dumps(orders), "orders", P, 0, None)
                + bulk.handle(orjson.dumps(refunds), "refunds", P, 0, None))
    assert [raw for raw, _ in bulk_bad] == [raw for raw, _ in single_bad] == [
        orjson.dumps(orders[5])]
    assert bulk.sellers_json() == single.sellers_json()
    for name in ("popstream_events_processed_total", "popstream_events_invalid_total"):
        assert _counter(bulk, name) == _counter(single, name)
    assert sum(_counter(bulk, "popstream_events_processed_total").values()) == 20


@pytest.mark.parametrize("seller_id", ["s 1", "s1\n", "s/1", "é"])
def test_a_bad_seller_id_is_refused_every_time_on_both_paths(seller_id: str) -> None:
    """Seller ids are checked once per distinct id (a cache of valid ones), so a
    bad id must never be cached: refused alone, in an array, and again later."""
    from streams.engine.events import decode_event, decode_events
    from streams.errors import InvalidEvent

    bad = dict(ORDER, seller_id=seller_id, event_id="b")
    for _ in range(2):
        with pytest.raises(InvalidEvent, match="matching regex") as info:
            decode_event(orjson.dumps(bad))
        assert info.value.field == "$.seller_id"
        assert decode_events(orjson.dumps([ORDER, bad])) is None
    p = pipeline()
    dead = p.handle(orjson.dumps([ORDER, bad]), "orders", P, 0, None)
    assert [(raw, reason.split(":")[0]) for raw, reason in dead] == [
        (orjson.dumps(bad), "element 1")]
    assert decode_events(orjson.dumps([ORDER])) is not None


def test_a_seller_with_nothing_left_in_any_window_is_freed_everywhere() -> None:
    """Orders leave the longest window: the seller leaves the engine, the
    seller->partition map, /metrics and the API, and tombstones for every chunk
    it had go to its partition (a compacted changelog forgets it too)."""
    from streams.engine.events import US_PER_DAY

    settings = from_env({}, export="all")  # one order: exported in "all" mode only
    p = Pipeline(settings, default_catalog())
    p.ready = True
    now = p.engine.now
    order = dict(ORDER, occurred_at=_iso(now - US_PER_DAY), ship_by=_iso(now + US_PER_DAY))
    assert p.handle(orjson.dumps(order), "orders", P, 0, None, b"s1") == []
    written = {key: value for _, key, value in p.dirty_chunks()}
    assert all(value is not None for value in written.values())
    assert "s1" in p.render_metrics().decode()
    p.engine.advance(now + 100 * US_PER_DAY)  # past the 90-day window
    p.tick()
    assert p.seller_partition == {}
    assert p.sellers_json("s1") is None
    assert 'seller_id="s1"' not in p.render_metrics().decode()
    tombstones = p.dirty_chunks()
    assert {key for _, key, value in tombstones if value is None} >= set(written)
    assert {partition for partition, _, _ in tombstones} == {P}
    assert "popstream_sellers_freed_total 1.0" in p.render_metrics().decode()


def _iso(us: int) -> str:
    from streams.engine.events import format_us

    return format_us(us)


def test_api_pages_filter_and_follow_the_cursor() -> None:
    """/api/sellers in pages: id order, ``limit`` per page, ``next_cursor`` until
    the last; ``status`` and ``metric`` filter; every seller exactly once."""
    from streams.runtime.web import page_query

    p, alerting = pipeline(export="all"), pipeline()
    sellers = [f"s{n:02d}" for n in range(25)]
    for n, seller in enumerate(sellers):
        _feed(alerting, n, seller)
        part = owner_partition(seller, 4)
        for k in range(30 + n):
            late = "2024-06-14T20:00:00Z" if k < n % 3 * 2 else "2024-06-14T11:00:00Z"
            doc = dict(ORDER, seller_id=seller, event_id=f"{seller}-{k}", order_id=f"o{k}")
            assert p.handle(orjson.dumps(doc), "orders", part, k, None, seller.encode()) == []
            ship = {"event_id": f"{seller}-s{k}", "type": "shipment", "seller_id": seller,
                    "order_id": f"o{k}", "occurred_at": late, "tracking_id": "T"}
            assert p.handle(orjson.dumps(ship), "shipments", part, k, None,
                            seller.encode()) == []
    seen: list[str] = []
    cursor = None
    while True:
        page = p.sellers_page(limit=7, cursor=cursor)
        assert len(page["sellers"]) <= 7
        seen += list(page["sellers"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(sellers)
    full = p.sellers_json()
    assert full is not None
    for status in ("healthy", "warning", "breach"):
        got = p.sellers_page(status=status, metric="late_shipment_rate")["sellers"]
        want = {s for s, m in full["sellers"].items()
                if m["late_shipment_rate"]["status"] == status}
        assert set(got) == want
        assert all(set(metrics) == {"late_shipment_rate"} for metrics in got.values())
    assert {m["late_shipment_rate"]["status"] for m in full["sellers"].values()} >= {
        "healthy", "breach"}
    for status in ("warning", "breach"):  # found among the exported sellers
        assert alerting.sellers_page(status=status) == p.sellers_page(status=status)
    assert page_query({"limit": "0"}, p) == "limit must be an integer 1..10000, got '0'"
    assert "status must be one of" in str(page_query({"status": "bad"}, p))
    assert "unknown parameters" in str(page_query({"x": "1"}, p))
    assert page_query({"status": "breach", "limit": "5", "cursor": "s03"}, p) == {
        "status": "breach", "limit": 5, "cursor": "s03"}


def _feed(p: Pipeline, n: int, seller: str) -> None:
    part = owner_partition(seller, 4)
    for k in range(30 + n):
        late = "2024-06-14T20:00:00Z" if k < n % 3 * 2 else "2024-06-14T11:00:00Z"
        doc = dict(ORDER, seller_id=seller, event_id=f"{seller}-{k}", order_id=f"o{k}")
        p.handle(orjson.dumps(doc), "orders", part, k, None, seller.encode())
        ship = {"event_id": f"{seller}-s{k}", "type": "shipment", "seller_id": seller,
                "order_id": f"o{k}", "occurred_at": late, "tracking_id": "T"}
        p.handle(orjson.dumps(ship), "shipments", part, k, None, seller.encode())


def test_a_seller_with_only_pending_records_is_restored() -> None:
    """A shipment before its order leaves a pending record and no META chunk; the
    restore must still bring it back (found at 1M sellers: 2,607 were lost)."""
    ship = {"event_id": "e2", "type": "shipment", "seller_id": "s1", "order_id": "o1",
            "occurred_at": "2024-06-14T11:00:00Z", "tracking_id": "T"}
    p = pipeline()
    assert p.handle(orjson.dumps(ship), "shipments", P, 0, None, b"s1") == []
    chunks = p.dirty_chunks()
    other = pipeline()
    other.restore([(k, v) for _, k, v in chunks if v is not None], {P})
    assert other.engine.tracked_orders == 1
    assert other.handle(orjson.dumps(ORDER), "orders", P, 1, None, b"s1") == []
    doc = other.sellers_json("s1")
    assert doc is not None
    assert doc["sellers"]["s1"]["late_shipment_rate"]["numerator"] == 0


@pytest.mark.parametrize("export", ["alerting", "all"])
def test_the_sellers_index_ranks_like_full_rows(export: str) -> None:
    """``/sellers``: the cheap ranking from running sums (statuses; headroom and
    orders to recover of the filtered metric only) gives the sellers and the order
    that sorting every seller's full row by worst_first_key gives, page by page."""
    from streams.generator import LogSpec, generate
    from streams.pages import worst_first_key

    p = pipeline(export=export)
    for doc in generate(LogSpec(sellers=30, orders_per_seller_per_day=1.0, days=95,
                                end_us=AS_OF, seed=5, drifting_share=0.5)):
        p.engine.apply_bytes(orjson.dumps(doc))
    p.fleet.refresh()
    for metric in [None, *(m.name for m in default_catalog().metrics)]:
        full = [p.index_row(sid) for sid in sorted(p.engine.seller_ids())]
        wanted = sorted((r for r in full if any(
            m["status"] in ("warning", "breach") for name, m in r["metrics"].items()
            if metric is None or name == metric)), key=lambda r: worst_first_key(r, metric))
        got: list[dict[str, object]] = []
        cursor = None
        while True:
            rows, cursor = p.alerting_rows(metric, limit=7, cursor=cursor)
            got += rows
            if cursor is None:
                break
        assert got == wanted, metric
    # Not vacuous: breaches and warnings both, on several metrics.
    statuses = {(name, m["status"]) for r in full for name, m in r["metrics"].items()}
    assert len({name for name, status in statuses if status == "breach"}) >= 2
    assert len({name for name, status in statuses if status == "warning"}) >= 2
