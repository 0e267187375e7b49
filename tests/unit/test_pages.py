"""The seller pages (issue #13) as HTML: every figure shown is the explain
document's, hostile ids stay text, nothing is fetched from anywhere, each metric
has its chart with the target line, and ``/sellers`` sorts worst first.

The explain documents are built here by hand, following the contract
(``numerator``, ``headroom``, ``orders_to_recover`` with the issue's exact
formulas; ``days`` summing to the denominator and to the orders listed), so a page
test does not depend on the engine.
"""

from __future__ import annotations

import html
import math
import random
import re
from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from fractions import Fraction
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from streams.engine.catalog import Catalog, Metric, default_catalog, profile_catalog
from streams.pages import NULL, seller_page, sellers_index, worst_first_key
from tests.browser import (
    chart_days,
    expected_days,
    expected_metric_figures,
    expected_order_rows,
    metric_figures,
    order_rows,
    page_figures,
    read_page,
    seller_rows,
)

pytestmark = pytest.mark.unit

TODAY = date(2025, 3, 14)
AS_OF = "2025-03-14T12:30:00.250000Z"
HOSTILE = "<script>alert(\"x\")</script>&amp;'\" onmouseover=x //evil.example/?a=1#f"


# --- explain documents, by hand ------------------------------------------------

def causes_for(spec: Metric, rng: random.Random) -> list[str]:
    """Causes as the contract lists them for the metric's numerator predicate."""
    if spec.numerator == "perfect":
        pool = ["negative_feedback", "a_to_z_claim", "chargeback", "seller_cancellation",
                "late_shipment", "refunded", "buyer_message"]
        return [c for c in pool if rng.random() < 0.4] or ["late_shipment"]
    if spec.numerator == "defect":
        return [c for c in ("negative_feedback", "a_to_z_claim", "chargeback")
                if rng.random() < 0.5] or ["chargeback"]
    if spec.numerator == "valid_tracking":
        return ["missing_tracking"]
    if spec.numerator == "on_time_delivery":
        return [rng.choice(["late_delivery", "not_delivered"])]
    if spec.numerator == "responded_on_time":
        return [rng.choice(["late_response", "no_response"])]
    return [spec.numerator] if spec.healthy == "below" else [f"not_{spec.numerator}"]


def metric_doc(spec: Metric, per_day: Sequence[tuple[int, int]] | None = None, *,
               seed: int = 0, limit: int | None = None, ids: Sequence[str] = (),
               recovers_on: str = "2025-04-02") -> dict[str, Any]:
    """One metric's entry: ``per_day`` is (denominator, bad) per window day, oldest
    first (random when None); ``ids`` name the first orders listed."""
    rng = random.Random(seed)
    window, lag = spec.window_days, spec.lag_days
    first = TODAY - timedelta(days=lag + window - 1)
    if per_day is None:
        per_day = []
        for _ in range(window):
            den = rng.randint(0, 9)
            per_day.append((den, sum(rng.random() < 0.06 for _ in range(den))))
    assert len(per_day) == window
    messages = spec.denominator == "response_due"
    id_key, at_key = ("message_id", "sent_at") if messages else ("order_id", "purchased_at")
    days, orders = [], []
    for i, (den, bad) in enumerate(per_day):
        day = first + timedelta(days=i)
        days.append({"date": day.isoformat(), "denominator": den, "bad": bad})
        for j in range(bad):
            micro = f".{rng.randint(1, 999999):06d}" if j % 2 else ""
            orders.append({
                id_key: f"{'m' if messages else 'o'}-{day:%m%d}-{j:02d}",
                at_key: f"{day.isoformat()}T{j:02d}:{rng.randint(0, 59):02d}:07{micro}Z",
                "causes": causes_for(spec, rng),
                "leaves_window_on": (day + timedelta(days=lag + window)).isoformat(),
            })
    for entry, new_id in zip(orders, ids, strict=False):
        entry[id_key] = new_id
    d = sum(den for den, _ in per_day)
    bad_total = len(orders)
    n = bad_total if spec.healthy == "below" else d - bad_total
    t = spec.exact_target
    breached = spec.breached(n, d)
    headroom = orders_to_recover = None
    if breached is False:
        headroom = (math.ceil(t * d - n) - 1 if spec.healthy == "below"
                    else math.floor(n - t * d))
    if breached:
        if spec.healthy == "below":
            orders_to_recover = None if t == 0 else max(1, math.floor(n / t - d) + 1)
        else:
            orders_to_recover = None if t == 1 else max(1, math.ceil((t * d - n) / (1 - t)))
    shown = orders if limit is None else orders[:limit]
    return {
        "numerator": n, "denominator": d, "value": n / d if d else None,
        "target": spec.target, "breached": breached, "status": spec.status(n, d),
        "window_days": window, "lag_days": lag,
        "headroom": headroom, "orders_to_recover": orders_to_recover,
        "recovers_on": recovers_on if breached else None,
        "days": days, "orders": shown,
        "next_cursor": None if limit is None or limit >= len(orders)
        else f"c:{shown[-1][at_key]}|{shown[-1][id_key]}",
    }


def seller_doc(catalog: Catalog, seller_id: str = "S-1", **kw: Any) -> dict[str, Any]:
    return {"as_of": AS_OF, "seller_id": seller_id,
            "metrics": {m.name: metric_doc(m, seed=i, **kw)
                        for i, m in enumerate(catalog.metrics)}}


def check_headroom_formulas(m: Mapping[str, Any], spec: Metric) -> None:
    """The builder's numbers follow the issue's definitions (checked by brute force,
    so the pages are tested against a document that could be real)."""
    n, d, t = m["numerator"], m["denominator"], spec.exact_target
    if m["headroom"] is not None:
        k = m["headroom"]
        if spec.healthy == "below":
            assert Fraction(n + k, d) < t <= Fraction(n + k + 1, d)
        else:
            assert Fraction(n - k, d) >= t > Fraction(n - k - 1, d)
    if m["orders_to_recover"] is not None:
        r = m["orders_to_recover"]

        def recovered(x: int) -> bool:
            return (Fraction(n, d + x) < t if spec.healthy == "below"
                    else Fraction(n + x, d + x) >= t)

        assert recovered(r)
        assert r == 1 or not recovered(r - 1)


# --- a minimal HTML walker for the tests' own questions ----------------------------

class Elements(HTMLParser):
    """Every start tag with its attributes, in document order."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def find(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        want = {k.rstrip("_").replace("_", "-"): v for k, v in attrs.items()}
        return [a for t, a in self.tags
                if t == tag and all(a.get(k) == v for k, v in want.items())]


CATALOGS = {"amazon": default_catalog(), "walmart": profile_catalog("walmart"),
            "ebay": profile_catalog("ebay")}


# --- the seller page ----------------------------------------------------------------

@pytest.mark.parametrize("profile", sorted(CATALOGS))
def test_seller_page_shows_the_documents_figures(profile: str) -> None:
    catalog = CATALOGS[profile]
    doc = seller_doc(catalog)
    # One metric without orders in its window: value and headroom null.
    last = catalog.metrics[-1]
    doc["metrics"][last.name] = metric_doc(last, [(0, 0)] * last.window_days)
    assert doc["metrics"][last.name]["value"] is None
    for spec in catalog.metrics:
        check_headroom_formulas(doc["metrics"][spec.name], spec)
    page = seller_page(doc, catalog=catalog)
    figures = metric_figures(page)
    assert list(figures) == [m.name for m in catalog.metrics]
    for spec in catalog.metrics:
        m = doc["metrics"][spec.name]
        assert figures[spec.name] == expected_metric_figures(m, spec.healthy), spec.name
    rows = order_rows(page)
    assert {name: rows.get(name, []) for name in doc["metrics"]} == {
        name: expected_order_rows(m) for name, m in doc["metrics"].items()}
    assert chart_days(page) == {name: expected_days(m) for name, m in doc["metrics"].items()}
    assert page_figures(page) == {"seller_id": "S-1", "as_of": AS_OF}
    assert read_page(page).problems == []


def test_the_documents_cover_every_status() -> None:
    """The documents above exercise every branch of the page (else the figure
    comparisons prove little): all four statuses, headroom and recovery."""
    entries = [m for c in CATALOGS.values() for m in seller_doc(c)["metrics"].values()]
    assert {m["status"] for m in entries} == {"healthy", "warning", "breach",
                                              "insufficient_volume"}
    assert any(m["headroom"] is not None for m in entries)
    assert any(m["recovers_on"] is not None for m in entries)
    spec = default_catalog().by_name("refund_rate")
    breach = metric_doc(spec, [(10, 1)] * 60)
    check_headroom_formulas(breach, spec)
    assert (breach["status"], breach["orders_to_recover"]) == ("breach", 5401)


def test_metrics_follow_the_catalog_order_not_the_documents() -> None:
    catalog = default_catalog()
    doc = seller_doc(catalog)
    doc["metrics"] = dict(reversed(list(doc["metrics"].items())))
    sections = [a["data-metric"] for a in Elements(seller_page(doc, catalog=catalog))
                .find("section")]
    assert sections == [m.name for m in catalog.metrics]


def section(page: str, name: str) -> str:
    start = page.index('<section class="metric')
    start = page.index(f'data-metric="{name}"', start)
    return page[start:page.index("</section>", start)]


@pytest.mark.parametrize(("n", "d", "shown"), [
    (9699, 10000, "96.99 %"),       # two decimals are enough
    (96999, 100000, "96.999 %"),    # "97.00 %" would sit on the target's other side
    (97, 100, "97.00 %"),           # exactly at the target: shown as the target
    (969999, 1000000, "96.9999 %"),
    (2, 3, "66.67 %"),
])
def test_value_has_the_digits_that_keep_its_side_of_the_target(n: int, d: int,
                                                                shown: str) -> None:
    catalog = default_catalog()
    m = metric_doc(catalog.by_name("perfect_order_percentage"), [(0, 0)] * 90)
    m.update(numerator=n, denominator=d, value=n / d)
    page = seller_page({"as_of": AS_OF, "seller_id": "S",
                        "metrics": {"perfect_order_percentage": m}}, catalog=catalog)
    text = section(page, "perfect_order_percentage")
    assert f'data-value="{n / d!r}">{shown}</span>' in text


def test_target_direction_window_and_lag() -> None:
    catalog = default_catalog()
    page = seller_page(seller_doc(catalog), catalog=catalog)
    figures = metric_figures(page)
    assert figures["on_time_delivery_rate"]["direction"] == "at least"
    assert figures["on_time_delivery_rate"]["lag_days"] == "7"
    assert figures["pre_fulfillment_cancel_rate"]["direction"] == "below"
    assert ">2.5 %</span>" in section(page, "pre_fulfillment_cancel_rate")
    assert ">97 %</span>" in section(page, "perfect_order_percentage")
    # The window as of today: 14 purchase days ending 7 days ago (t-20 .. t-7).
    assert "purchase days 2025-02-22 .. 2025-03-07" in section(page, "on_time_delivery_rate")


def test_verdict_headroom_or_recovery() -> None:
    catalog = default_catalog()
    spec = catalog.by_name("refund_rate")
    breached = metric_doc(spec, [(10, 1)] * 60, recovers_on="2025-05-13")
    healthy = metric_doc(spec, [(10, 0)] * 59 + [(10, 1)])
    single = metric_doc(spec, [(10, 0)] * 58 + [(10, 1), (10, 1)])
    empty = metric_doc(spec, [(0, 0)] * 60)
    texts = []
    for m in (breached, healthy, single, empty):
        page = seller_page({"as_of": AS_OF, "seller_id": "S", "metrics": {"refund_rate": m}},
                           catalog=catalog)
        texts.append(re.search(r'<p class="verdict[^"]*">([^<]*)</p>', page)[1])  # type: ignore[index]
    assert texts == [
        "breached: 5401 good orders to recover, recovers on 2025-05-13",
        "headroom: 4 more bad orders",    # 5/600 < 1 % <= 6/600
        "headroom: 3 more bad orders",
        "no orders in the window",
    ]
    figures = metric_figures(seller_page(
        {"as_of": AS_OF, "seller_id": "S", "metrics": {"refund_rate": empty}},
        catalog=catalog))["refund_rate"]
    assert figures["value"] == figures["headroom"] == figures["orders_to_recover"] == NULL
    assert '<span class="big" data-field="value">—</span>' in seller_page(
        {"as_of": AS_OF, "seller_id": "S", "metrics": {"refund_rate": empty}}, catalog=catalog)


@pytest.mark.parametrize("status", ["healthy", "warning", "breach", "insufficient_volume"])
def test_status_is_colour_coded(status: str) -> None:
    catalog = default_catalog()
    m = metric_doc(catalog.by_name("refund_rate"), [(10, 0)] * 60)
    m["status"] = status
    page = seller_page({"as_of": AS_OF, "seller_id": "S", "metrics": {"refund_rate": m}},
                       catalog=catalog)
    assert Elements(page).find("section")[0]["class"] == f"metric s-{status}"
    assert re.search(rf"\.s-{status}[^{{]*\{{[^}}]*background: #[0-9a-f]{{6}}", page)


def test_hostile_ids_stay_text() -> None:
    catalog = default_catalog()
    spec = catalog.by_name("late_shipment_rate")
    m = metric_doc(spec, [(5, 1)] * 10, ids=[HOSTILE, "a&b", "x\"y'z"], limit=4)
    m["next_cursor"] = HOSTILE
    doc = {"as_of": AS_OF, "seller_id": HOSTILE, "metrics": {spec.name: m}}
    page = seller_page(doc, catalog=catalog)
    assert "<script" not in page
    assert read_page(page).problems == []
    assert page_figures(page)["seller_id"] == HOSTILE
    rows = order_rows(page)[spec.name]
    assert [r["order_id"] for r in rows[:3]] == [HOSTILE, "a&b", "x\"y'z"]
    assert metric_figures(page)[spec.name]["next_cursor"] == HOSTILE
    # Every attribute of every element is one the page meant to write.
    allowed = {"class", "id", "href", "data-field", "data-value", "data-metric", "data-row",
               "data-date", "data-denominator", "data-bad", "data-chart", "data-share",
               "rel", "lang", "charset", "name", "content", "viewBox", "width", "height",
               "role", "aria-label", "x", "y", "x1", "y1", "x2", "y2", "cx", "cy", "r", "d",
               "text-anchor"}
    seen = {k for _, attrs in Elements(page).tags for k in attrs}
    assert seen <= {a.lower() for a in allowed}, seen - {a.lower() for a in allowed}
    # The link to the seller itself keeps the id in one path segment.
    link = Elements(page).find("a", class_="all-metrics")[0]["href"]
    assert link == "/sellers/" + quote(HOSTILE, safe="")
    assert urlsplit(link).path.count("/") == 2
    assert not urlsplit(link).netloc


def test_pages_fetch_nothing_and_run_nothing() -> None:
    catalog = profile_catalog("walmart")
    rows = [index_row(catalog, "A", {"refund_rate": "breach"})]
    for page in (seller_page(seller_doc(catalog, limit=2), catalog=catalog),
                 sellers_index(rows, catalog=catalog, metric=None, next_cursor="n1")):
        assert "http://" not in page
        assert "https://" not in page
        assert "url(" not in page
        assert "@import" not in page
        assert '<meta charset="utf-8">' in page
        assert "<style>" in page
        for tag, attrs in Elements(page).tags:
            assert tag not in ("script", "img", "iframe", "link", "object", "embed")
            assert "src" not in attrs
            assert not any(k.startswith("on") for k in attrs), (tag, attrs)
            for key in ("href", "action", "xlink:href"):
                if key in attrs:
                    assert attrs[key].startswith(("/", "?", "#")), attrs[key]
                    assert not attrs[key].startswith("//"), attrs[key]


def test_grafana_link_only_for_a_web_url() -> None:
    catalog = default_catalog()
    doc = seller_doc(catalog)
    url = "https://grafana.example/d/popstream-seller?var-seller_id=S-1&orgId=1"
    links = Elements(seller_page(doc, catalog=catalog, grafana_url=url)).find(
        "a", class_="grafana")
    assert [a["href"] for a in links] == [url]
    for bad in ("javascript:alert(1)", "//elsewhere.example/x", "data:text/html,x", ""):
        assert Elements(seller_page(doc, catalog=catalog, grafana_url=bad)).find(
            "a", class_="grafana") == []
    assert Elements(seller_page(doc, catalog=catalog)).find("a", href="/sellers")


@pytest.mark.parametrize("profile", sorted(CATALOGS))
def test_each_metric_has_a_chart_with_the_target_line(profile: str) -> None:
    catalog = CATALOGS[profile]
    doc = seller_doc(catalog)
    page = seller_page(doc, catalog=catalog)
    elements = Elements(page)
    charts = [a["data-chart"] for a in elements.find("svg")]
    assert charts == [m.name for m in catalog.metrics]
    lines = elements.find("line", class_="target")
    assert len(lines) == len(catalog.metrics)
    for spec, line in zip(catalog.metrics, lines, strict=True):
        allowed = (1 - spec.exact_target) if spec.healthy == "at_least" else spec.exact_target
        assert Fraction(line["data-share"]) == allowed
        assert line["y1"] == line["y2"]
        assert 22 <= float(line["y1"]) < 22 + 194  # inside the plot, never clipped
        text = section(page, spec.name)
        assert 'class="target-label"' in text
        label = ("target: at least" if spec.healthy == "at_least"
                 else "target: bad share below")
        assert label in text
        assert text.count('<g class="day"') == spec.window_days
    # A tooltip per day with the exact counts.
    spec = catalog.metrics[0]
    day = doc["metrics"][spec.name]["days"][-1]
    noun = "messages" if spec.denominator == "response_due" else "orders"
    assert (f"<title>{day['date']}: {day['denominator']} "
            f"{noun if day['denominator'] != 1 else noun[:-1]}, {day['bad']} bad") in page


def test_chart_bars_scale_with_the_counts() -> None:
    """The bars are drawn to scale: the tallest day reaches the axis top, and the
    bad bar is the bad share of its day's bar."""
    catalog = default_catalog()
    spec = catalog.by_name("late_shipment_rate")
    m = metric_doc(spec, [(0, 0), (40, 0)] + [(40, 1)] * 6 + [(20, 5), (10, 10)])
    page = seller_page({"as_of": AS_OF, "seller_id": "S", "metrics": {spec.name: m}},
                       catalog=catalog)
    rects = Elements(page)
    den = [float(a["height"]) for a in rects.find("rect", class_="den")]
    bad = [float(a["height"]) for a in rects.find("rect", class_="bad")]
    assert len(den) == 9
    assert len(bad) == 8
    assert den[0] == pytest.approx(194)  # 40 is the axis top: the full plot height
    assert den[-2] == pytest.approx(den[0] / 2, abs=0.2)
    assert den[-1] == pytest.approx(den[0] / 4, abs=0.2)
    assert bad[0] == pytest.approx(den[1] / 40, abs=0.2)
    assert bad[-2] == pytest.approx(den[-2] / 4, abs=0.2)
    assert bad[-1] == pytest.approx(den[-1], abs=0.2)
    # The share axis spans 10 % (twice the 4 % target, rounded up): the days at 25 %
    # and 100 % bad are marked at its top, the 2.5 % days are dots, days without a
    # bad order have none.
    assert len(rects.find("path", class_="off-scale")) == 2
    assert len(rects.find("circle", class_="share")) == 6


def test_next_page_link_keeps_metric_and_page_size() -> None:
    catalog = default_catalog()
    spec = catalog.by_name("late_shipment_rate")
    m = metric_doc(spec, [(5, 2)] * 10, limit=3)
    assert m["next_cursor"] is not None
    page = seller_page({"as_of": AS_OF, "seller_id": "S", "metrics": {spec.name: m}},
                       catalog=catalog)
    links = Elements(page).find("a", rel="next")
    assert len(links) == 1
    href = links[0]["href"]
    assert href.startswith("?")
    assert parse_qs(href[1:]) == {"metric": [spec.name], "limit": ["3"],
                                  "cursor": [m["next_cursor"]]}
    figures = metric_figures(page)[spec.name]
    assert (figures["orders_shown"], figures["orders_total"]) == ("3", "20")
    m["next_cursor"] = None
    page = seller_page({"as_of": AS_OF, "seller_id": "S", "metrics": {spec.name: m}},
                       catalog=catalog)
    assert Elements(page).find("a", rel="next") == []


def test_one_metric_document_links_to_all_metrics() -> None:
    catalog = default_catalog()
    doc = seller_doc(catalog, seller_id="S/1?x")
    doc["metrics"] = {"refund_rate": doc["metrics"]["refund_rate"]}
    elements = Elements(seller_page(doc, catalog=catalog))
    assert [a["href"] for a in elements.find("a", class_="all-metrics")] == [
        "/sellers/S%2F1%3Fx"]
    assert [a["data-metric"] for a in elements.find("section")] == ["refund_rate"]
    full = Elements(seller_page(seller_doc(catalog), catalog=catalog))
    assert full.find("a", class_="all-metrics") == []


def test_response_metric_lists_messages() -> None:
    catalog = profile_catalog("walmart")
    spec = catalog.by_name("seller_response_rate")
    m = metric_doc(spec, [(30, 1)] * 30)
    page = seller_page({"as_of": AS_OF, "seller_id": "S", "metrics": {spec.name: m}},
                       catalog=catalog)
    rows = order_rows(page)[spec.name]
    assert rows == expected_order_rows(m)
    assert set(rows[0]) == {"message_id", "sent_at", "causes", "leaves_window_on"}
    assert "<th>message_id</th><th>sent_at (UTC)</th>" in page
    assert "headroom: " in page
    assert "bad messages" in page


def test_a_metric_unknown_to_the_catalog_still_shows() -> None:
    catalog = profile_catalog("ebay")
    doc = seller_doc(catalog)
    doc["metrics"]["refund_rate"] = metric_doc(default_catalog().by_name("refund_rate"))
    figures = metric_figures(seller_page(doc, catalog=catalog))
    assert list(figures)[-1] == "refund_rate"
    assert figures["refund_rate"]["numerator"] == str(doc["metrics"]["refund_rate"]["numerator"])


# --- /sellers ----------------------------------------------------------------------

def index_row(catalog: Catalog, seller_id: str, statuses: Mapping[str, str], *,
              headroom: int | None = 2, to_recover: int | None = 7) -> dict[str, Any]:
    metrics = {}
    for i, spec in enumerate(catalog.metrics):
        status = statuses.get(spec.name, "healthy")
        n, d = 3 + i, 200 + i
        metrics[spec.name] = {
            "status": status, "value": n / d, "numerator": n, "denominator": d,
            "target": spec.target,
            "headroom": None if status == "breach" else headroom,
            "orders_to_recover": to_recover if status == "breach" else None,
        }
    return {"seller_id": seller_id, "metrics": metrics}


def test_sellers_index_shows_each_rows_figures() -> None:
    catalog = default_catalog()
    rows = [index_row(catalog, "B", {"refund_rate": "breach", "order_defect_rate": "warning"}),
            index_row(catalog, HOSTILE, {"late_shipment_rate": "warning"}),
            index_row(catalog, "a&b", {"refund_rate": "breach"}, to_recover=None)]
    page = sellers_index(rows, catalog=catalog, metric=None, next_cursor=None)
    assert "<script" not in page
    assert read_page(page).problems == []
    shown = seller_rows(page)
    assert [seller for seller, _ in shown] == ["B", HOSTILE, "a&b"]
    for (seller, cells), row in zip(shown, rows, strict=True):
        assert cells[""]["seller_id"] == seller
        assert cells[""]["breaches"] == str(
            sum(m["status"] == "breach" for m in row["metrics"].values()))
        assert cells[""]["warnings"] == str(
            sum(m["status"] == "warning" for m in row["metrics"].values()))
        for name, m in row["metrics"].items():
            want = {"status": m["status"], "value": repr(m["value"]),
                    "numerator": str(m["numerator"]), "denominator": str(m["denominator"])}
            if m["status"] == "breach":
                want["orders_to_recover"] = NULL if m["orders_to_recover"] is None else str(
                    m["orders_to_recover"])
            else:
                want["headroom"] = str(m["headroom"])
            assert cells[name] == want, (seller, name)
    links = [a["href"] for a in Elements(page).find("a") if a.get("data-field") == "seller_id"]
    assert links == ["/sellers/B", "/sellers/" + quote(HOSTILE, safe=""), "/sellers/a%26b"]
    refund_cells = Elements(page).find("td", data_metric="refund_rate")
    assert [c["class"] for c in refund_cells] == [
        "cell s-breach", "cell s-healthy", "cell s-breach"]
    assert Elements(page).find("a", rel="next") == []


def test_sellers_index_filter_form_and_next_page() -> None:
    catalog = default_catalog()
    rows = [index_row(catalog, "A", {"refund_rate": "breach"})]
    page = sellers_index(rows, catalog=catalog, metric="refund_rate", next_cursor="k&1")
    elements = Elements(page)
    form = elements.find("form")
    assert [(f["method"], f["action"]) for f in form] == [("get", "/sellers")]
    assert [s["name"] for s in elements.find("select")] == ["metric"]
    options = [o["value"] for o in elements.find("option")]
    assert options == ["", *[m.name for m in catalog.metrics]]
    assert [o["value"] for o in elements.find("option") if "selected" in o] == ["refund_rate"]
    assert [a["class"] for a in elements.find("td", data_metric="refund_rate")] == [
        "cell s-breach filtered"]
    href = elements.find("a", rel="next")[0]["href"]
    assert parse_qs(href[1:]) == {"metric": ["refund_rate"], "cursor": ["k&1"]}
    unfiltered = sellers_index(rows, catalog=catalog, metric=None, next_cursor="z")
    assert parse_qs(Elements(unfiltered).find("a", rel="next")[0]["href"][1:]) == {
        "cursor": ["z"]}
    assert "filtered" not in "".join(a.get("class", "") for a in Elements(unfiltered)
                                     .find("td"))


def test_sellers_index_without_rows_says_so() -> None:
    catalog = default_catalog()
    page = sellers_index([], catalog=catalog, metric="refund_rate", next_cursor=None)
    assert "No seller is in warning or breach on refund_rate." in html.unescape(page)
    assert Elements(page).find("table", class_="sellers") == []


# --- worst first ---------------------------------------------------------------------

def test_worst_first_without_a_metric() -> None:
    catalog = default_catalog()
    rows = [
        index_row(catalog, "w3", dict.fromkeys(("refund_rate", "order_defect_rate",
                                                "late_shipment_rate"), "warning")),
        index_row(catalog, "b1w1", {"refund_rate": "breach", "order_defect_rate": "warning"}),
        index_row(catalog, "b2", {"refund_rate": "breach", "order_defect_rate": "breach"}),
        index_row(catalog, "b1", {"late_shipment_rate": "breach"}),
        index_row(catalog, "a-b1", {"refund_rate": "breach"}),
        index_row(catalog, "w1", {"refund_rate": "warning"}),
    ]
    ordered = [r["seller_id"] for r in sorted(rows, key=worst_first_key)]
    assert ordered == ["b2", "b1w1", "a-b1", "b1", "w3", "w1"]


def test_worst_first_on_one_metric() -> None:
    catalog = default_catalog()
    rows = [
        index_row(catalog, "warn-h5", {"refund_rate": "warning"}, headroom=5),
        index_row(catalog, "breach-7", {"refund_rate": "breach"}, to_recover=7),
        index_row(catalog, "healthy", {"order_defect_rate": "breach"}),
        index_row(catalog, "warn-h0", {"refund_rate": "warning"}, headroom=0),
        index_row(catalog, "breach-40", {"refund_rate": "breach"}, to_recover=40),
        index_row(catalog, "warn-null", {"refund_rate": "warning"}, headroom=None),
        index_row(catalog, "breach-null", {"refund_rate": "breach"}, to_recover=None),
        index_row(catalog, "a-breach-7", {"refund_rate": "breach"}, to_recover=7),
        {"seller_id": "absent", "metrics": {}},
    ]
    ordered = [r["seller_id"] for r in sorted(rows, key=lambda r: worst_first_key(
        r, "refund_rate"))]
    assert ordered == ["breach-null", "breach-40", "a-breach-7", "breach-7", "warn-null",
                       "warn-h0", "warn-h5", "healthy", "absent"]
