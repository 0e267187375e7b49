"""The demo's live view fits a terminal: one table of the worst sellers by the
catalog's metrics, at most 40 rows and 120 columns, pointing at the seller pages."""

from __future__ import annotations

import io
import random
import time
from typing import Any

import pytest
from rich.color import Color
from rich.console import Console
from rich.style import Style

from streams.demo import View, rank_sellers, render, short_names
from streams.engine.catalog import Catalog, profile_catalog
from streams.simulate import SimulationStats

pytestmark = pytest.mark.unit

PROFILES = ("amazon", "walmart", "ebay")
PORT = 6066


def _cell(metric_target: float, status: str, value: float | None = 0.0123) -> dict[str, Any]:
    if status == "insufficient_volume":
        value = None
    return {"numerator": 1, "denominator": 81, "value": value, "target": metric_target,
            "breached": status == "breach", "status": status, "window_days": 30}


def _seller(catalog: Catalog, statuses: dict[str, str] | None = None,
            default: str = "healthy") -> dict[str, Any]:
    """One seller's /api/sellers entry: every metric ``default`` unless named."""
    statuses = statuses or {}
    return {m.name: _cell(m.target, statuses.get(m.name, default)) for m in catalog.metrics}


def _mixed(catalog: Catalog, n: int) -> dict[str, Any]:
    """``n`` sellers with a seeded mix of statuses (mostly healthy, as in the
    demo); every third id long (45 characters, a shared prefix)."""
    rnd = random.Random(n)
    statuses = ("healthy",) * 6 + ("warning",) * 2 + ("breach", "insufficient_volume")
    sellers = {}
    for i in range(n):
        sid = f"S{i:06d}" if i % 3 else f"marketplace-seller-with-a-long-name-{i:09d}"
        sellers[sid] = {m.name: _cell(m.target, rnd.choice(statuses), rnd.random())
                        for m in catalog.metrics}
    return sellers


def _same(shown: str, seller_id: str) -> bool:
    """``shown`` is ``seller_id``, whole or shortened around an ellipsis."""
    if "…" not in shown:
        return shown == seller_id
    head, tail = shown.split("…")
    return len(shown) < len(seller_id) and seller_id.startswith(head) \
        and seller_id.endswith(tail)


def _view(sellers: dict[str, Any], error: str | None = None) -> View:
    view = View(port=PORT)
    view.sellers = sellers
    view.counters = {"popstream_events_processed_total": 123456.0,
                     "popstream_events_invalid_total": 7.0,
                     "popstream_pending_orders": 89.0}
    view.latency = (0.005, 0.05)
    view.error = error
    return view


def _text(view: View, catalog: Catalog, width: int = 120, height: int = 40) -> str:
    console = Console(width=width, height=height, record=True, file=io.StringIO())
    console.print(render(view, SimulationStats(backfilled=4321, live=8765),
                         time.monotonic() - 42, catalog))
    return console.export_text()


def _row_index(lines: list[str], seller_id: str) -> int:
    [index] = [i for i, line in enumerate(lines) if line.startswith(seller_id + " ")]
    return index


@pytest.mark.parametrize("n", [0, 3, 500])
@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("error", [None, "worker not answering yet (URLError)"])
def test_the_view_fits_40_rows_and_120_columns(profile: str, n: int,
                                               error: str | None) -> None:
    catalog = profile_catalog(profile)
    lines = _text(_view(_mixed(catalog, n), error), catalog).splitlines()
    assert len(lines) <= 40
    assert max(len(line) for line in lines) <= 120
    assert f"{min(n, 32 - (error is not None))} shown" in lines[-1]


@pytest.mark.parametrize("profile", PROFILES)
def test_many_sellers_fill_the_terminal_and_no_more(profile: str) -> None:
    # 4 header lines, 2 column-header lines and a rule, 32 rows, the footer.
    catalog = profile_catalog(profile)
    sellers = _mixed(catalog, 500)
    lines = _text(_view(sellers), catalog).splitlines()
    assert len(lines) == 40
    assert "; 32 shown" in lines[-1]
    ranked = [sid for sid, _, _ in rank_sellers(sellers, catalog)]
    shown = [line.split()[0] for line in lines[7:-1]]
    assert len(shown) == 32
    assert all(_same(s, sid) for s, sid in zip(shown, ranked, strict=False))
    # The long ids among them, shortened where eight metrics leave 32 columns.
    assert any("…" in s for s in shown) == (len(catalog.metrics) == 8)


@pytest.mark.parametrize("profile", PROFILES)
def test_every_metric_of_the_catalog_is_a_column(profile: str) -> None:
    catalog = profile_catalog(profile)
    lines = _text(_view(_mixed(catalog, 3)), catalog).splitlines()
    heads = lines[4].split()
    assert heads == ["seller", *short_names(catalog).values()]


def test_worst_sellers_come_first() -> None:
    catalog = profile_catalog("amazon")
    odr, lsr, vtr = "order_defect_rate", "late_shipment_rate", "valid_tracking_rate"
    sellers = {
        "a-healthy": _seller(catalog),
        "e-one-warning": _seller(catalog, {odr: "warning"}),
        "f-one-breach-one-warning": _seller(catalog, {odr: "breach", lsr: "warning"}),
        "d-one-breach-one-warning": _seller(catalog, {lsr: "breach", vtr: "warning"}),
        "c-one-breach-two-warnings": _seller(catalog, {odr: "breach", lsr: "warning",
                                                       vtr: "warning"}),
        "b-two-breaches": _seller(catalog, {odr: "breach", vtr: "breach"}),
        "0-no-data": _seller(catalog, default="insufficient_volume"),
    }
    worst_first = ["b-two-breaches", "c-one-breach-two-warnings", "d-one-breach-one-warning",
                   "f-one-breach-one-warning", "e-one-warning", "0-no-data", "a-healthy"]
    assert [sid for sid, _, _ in rank_sellers(sellers, catalog)] == worst_first
    lines = _text(_view(sellers), catalog).splitlines()
    assert [_row_index(lines, sid) for sid in worst_first] == list(range(7, 14))
    assert lines[-1].startswith("4 of 7 sellers in breach, 1 in warning; 7 shown")


@pytest.mark.parametrize("profile", PROFILES)
def test_the_few_breaching_sellers_among_500_are_the_top_rows(profile: str) -> None:
    catalog = profile_catalog(profile)
    first = catalog.metrics[0].name
    sellers = {f"S{i:06d}": _seller(catalog) for i in range(500)}
    for i in (499, 498, 250):  # high ids: sorting by id alone would not show them
        sellers[f"S{i:06d}"] = _seller(catalog, {first: "breach"})
    sellers["S000497"] = _seller(catalog, {first: "warning"})
    lines = _text(_view(sellers), catalog).splitlines()
    assert [line.split()[0] for line in lines[7:11]] == ["S000250", "S000498", "S000499",
                                                         "S000497"]
    assert lines[-1].startswith("3 of 500 sellers in breach, 1 in warning; 32 shown")


def test_the_header_keeps_its_facts_and_points_at_the_seller_pages() -> None:
    catalog = profile_catalog("ebay")
    text = _text(_view(_mixed(catalog, 3), error="worker not answering yet (URLError)"),
                 catalog)
    for fact in ("42 s", "4,321 backfill", "8,765 live", "applied 123,456", "invalid 7",
                 "pending orders 89", "p50 ≤ 0.005 s, p99 ≤ 0.05 s", "/metrics",
                 "/api/sellers on http://127.0.0.1:6066",
                 "seller pages: http://127.0.0.1:6066/sellers",
                 "open http://127.0.0.1:6066/sellers/<id>",
                 "worker not answering yet (URLError)"):
        assert fact in text, fact


def test_a_seller_id_with_markup_is_shown_literally() -> None:
    catalog = profile_catalog("walmart")
    # Read as markup, "[/]" alone raises and "[red]x[/]" would print as "x".
    sellers = {"[red]x[/]": _seller(catalog, default="breach"),
               "[/]": _seller(catalog, default="warning")}
    lines = _text(_view(sellers), catalog).splitlines()
    assert lines[7].startswith("[red]x[/] ")
    assert lines[8].startswith("[/] ")


def test_long_ids_keep_both_ends_around_an_ellipsis() -> None:
    catalog = profile_catalog("amazon")
    long_id = "a-very-long-seller-identifier-from-some-marketplace-" + "0123456789"
    sellers = {long_id: _seller(catalog, default="breach"), "S1": _seller(catalog)}
    lines = _text(_view(sellers), catalog).splitlines()
    row = lines[7]
    assert long_id not in row
    assert row.startswith("a-very-long-sell")
    assert "…lace-0123456789 " in row  # 32 columns: 16, the ellipsis, 15
    assert max(len(line) for line in lines) <= 120


def test_cells_show_the_value_marked_and_coloured_by_status() -> None:
    catalog = profile_catalog("ebay")
    tdr, ccr, lsr = (m.name for m in catalog.metrics)
    marked = {tdr: _cell(0.02, "breach", 0.125), ccr: _cell(0.003, "warning", 0.0025),
              lsr: _cell(0.07, "healthy", 0.0)}
    few = {tdr: _cell(0.02, "insufficient_volume"),
           ccr: {**_cell(0.003, "insufficient_volume"), "value": 0.5},
           lsr: _cell(0.07, "healthy", 1.0)}
    console = Console(width=120, height=40, file=io.StringIO())
    segments = console.render(render(_view({"S1": marked, "S2": few}), SimulationStats(),
                                     time.monotonic(), catalog))
    styles = {s.text.strip(): s.style or Style() for s in segments if s.text.strip()}
    assert {"!12.50%", "~0.25%", "0%", "·", "·50.00%", "100%"} <= styles.keys()
    assert (styles["!12.50%"].color, styles["!12.50%"].bold) == (Color.parse("red"), True)
    assert styles["~0.25%"].color == Color.parse("yellow")
    assert styles["·50.00%"].dim
    assert styles["0%"].color is None
    assert styles["100%"].color is None


@pytest.mark.parametrize("profile", PROFILES)
def test_short_names_are_short_and_unique(profile: str) -> None:
    short = short_names(profile_catalog(profile))
    assert len(set(short.values())) == len(short)
    assert all(1 <= len(name) <= 8 for name in short.values())


def test_short_names_follow_the_marketplaces_abbreviations() -> None:
    assert short_names(profile_catalog("amazon")) == {
        "perfect_order_percentage": "POP", "order_defect_rate": "ODR",
        "pre_fulfillment_cancel_rate": "PFCR", "late_shipment_rate": "LSR",
        "refund_rate": "RR", "valid_tracking_rate": "VTR",
        "late_shipment_rate_30d": "LSR30d", "on_time_delivery_rate": "OTDR"}
    walmart = short_names(profile_catalog("walmart"))
    assert (walmart["refund_rate"], walmart["return_rate"]) == ("RefR", "RetR")


def test_a_smaller_terminal_gets_fewer_rows_and_no_wrapped_lines() -> None:
    catalog = profile_catalog("amazon")
    lines = _text(_view(_mixed(catalog, 500)), catalog, width=80, height=24).splitlines()
    assert len(lines) <= 24
    assert max(len(line) for line in lines) <= 80
    assert "16 shown" in lines[-1]


def test_the_demo_traffic_drives_drifting_sellers_into_breach_within_minutes() -> None:
    """The live traffic on a virtual clock (no Kafka): every second, the events the
    simulator would send, applied to an engine whose clock moves with them. The
    drifting sellers must cross a target within three minutes, and stay across."""
    import heapq

    import orjson

    from streams.demo import demo_traffic
    from streams.engine.engine import Engine
    from streams.engine.events import US_PER_DAY, decode_event, parse_timestamp
    from streams.generator import LogSpec, generate
    from streams.simulate import _Live

    spec = demo_traffic(sellers=16, rate=60, duration=None)
    start = 1_750_000_000_000_000
    history = LogSpec(sellers=spec.sellers, days=spec.history_days,
                      orders_per_seller_per_day=spec.history_orders_per_seller_per_day,
                      end_us=start - US_PER_DAY // 24, drifting_share=0.0, seed=spec.seed)
    engine = Engine(now=start)
    later: list[tuple[int, int, dict[str, object]]] = []
    for n, doc in enumerate(generate(history)):
        at = parse_timestamp(str(doc["occurred_at"]))
        if at > start:
            heapq.heappush(later, (at, n, doc))
        else:
            engine.apply(decode_event(orjson.dumps(doc)))
    live = _Live(spec, start)

    def breaching() -> set[str]:
        return {sid for sid, ms in engine.report().items()
                if any(m.status == "breach" for m in ms.values())}

    seen: list[set[str]] = []
    for second in range(1, 181):
        now = start + second * 1_000_000
        engine.advance(now)
        for _ in range(int(spec.rate)):
            engine.apply(decode_event(orjson.dumps(live.next_event(now))))
        while later and later[0][0] <= now:
            engine.apply(decode_event(orjson.dumps(heapq.heappop(later)[2])))
        if second % 30 == 0:
            seen.append(breaching())
    assert len(live.drifting) == 4
    assert len(seen[-1] & live.drifting) >= 3, seen
    assert len(seen[-1] - live.drifting) <= 1, seen  # healthy sellers stay healthy
