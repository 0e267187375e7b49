"""The seller pages in a real browser (issue #13): Debian's chromium, headless, loads
them from a loopback HTTP server, and what it shows (its DOM after loading) holds
the explain documents' figures exactly; it fetches nothing but the page itself;
a screenshot of each page is kept in ``build/artifacts/pages/``.

The pages are rendered from hand-built documents (tests/unit/test_pages.py); the
worker-backed test serves the same pages from the worker's routes.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from streams.engine.catalog import Catalog, default_catalog, profile_catalog
from streams.pages import seller_page, sellers_index, worst_first_key
from tests.browser import (
    ARTIFACTS,
    PNG_SIGNATURE,
    chart_days,
    dump_dom,
    expected_days,
    expected_metric_figures,
    expected_order_rows,
    metric_figures,
    order_rows,
    page_figures,
    png_facts,
    screenshot,
    seller_rows,
)
from tests.unit.test_pages import AS_OF, HOSTILE, index_row, metric_doc, seller_doc

pytestmark = pytest.mark.e2e

# Non-ASCII too: the page must declare its charset for the browser to read it right.
SELLER = "sellér-→-" + HOSTILE


@dataclass
class Site:
    """The rendered pages on a loopback server, and every path it was asked for."""

    base: str
    docs: dict[str, tuple[dict[str, Any], Catalog]]
    rows: list[dict[str, Any]]
    requested: list[str] = field(default_factory=list)


def render(root: Path) -> tuple[dict[str, tuple[dict[str, Any], Catalog]],
                                list[dict[str, Any]]]:
    """Seller pages for two catalogs (orders and messages), one paged, and the index."""
    amazon, walmart = default_catalog(), profile_catalog("walmart")
    docs = {"seller-amazon.html": (seller_doc(amazon, seller_id=SELLER, limit=5), amazon),
            "seller-walmart.html": (seller_doc(walmart, seller_id="w-7"), walmart)}
    docs["seller-amazon.html"][0]["metrics"]["refund_rate"] = metric_doc(
        amazon.by_name("refund_rate"), [(10, 1)] * 60, ids=[HOSTILE], limit=7,
        recovers_on="2025-05-13")
    for name, (doc, catalog) in docs.items():
        (root / name).write_text(seller_page(doc, catalog=catalog,
                                             grafana_url="https://grafana.example/d/s"),
                                 encoding="utf-8")
    rows = sorted([index_row(amazon, "b", {"refund_rate": "breach"}),
                   index_row(amazon, SELLER, {"refund_rate": "breach",
                                              "order_defect_rate": "breach"}),
                   index_row(amazon, "w", {"late_shipment_rate": "warning"}, headroom=0)],
                  key=worst_first_key)
    (root / "sellers.html").write_text(
        sellers_index(rows, catalog=amazon, metric=None, next_cursor="after:b"),
        encoding="utf-8")
    return docs, rows


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("pages")
    docs, rows = render(root)
    requested: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            requested.append(self.path)

    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Site(f"http://127.0.0.1:{server.server_address[1]}", docs, rows, requested)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.mark.parametrize("page", ["seller-amazon.html", "seller-walmart.html"])
def test_seller_page_in_chromium_shows_the_documents_figures(site: Site, page: str) -> None:
    doc, catalog = site.docs[page]
    before = len(site.requested)
    dom = dump_dom(f"{site.base}/{page}")
    # Only the page itself was fetched (a favicon request is the browser's own).
    assert [p for p in site.requested[before:] if p != "/favicon.ico"] == [f"/{page}"]
    assert page_figures(dom) == {"seller_id": doc["seller_id"], "as_of": AS_OF}
    figures, rows, days = metric_figures(dom), order_rows(dom), chart_days(dom)
    assert list(figures) == list(doc["metrics"])
    for spec in catalog.metrics:
        m = doc["metrics"][spec.name]
        assert figures[spec.name] == expected_metric_figures(m, spec.healthy), spec.name
        assert rows.get(spec.name, []) == expected_order_rows(m), spec.name
        assert days[spec.name] == expected_days(m), spec.name
    if page == "seller-amazon.html":
        assert rows["refund_rate"][0]["order_id"] == HOSTILE
        assert figures["refund_rate"]["recovers_on"] == "2025-05-13"
        assert figures["refund_rate"]["next_cursor"] == doc["metrics"]["refund_rate"][
            "next_cursor"]
        assert "<script" not in dom.lower()


def test_sellers_index_in_chromium_shows_the_rows(site: Site) -> None:
    dom = dump_dom(f"{site.base}/sellers.html")
    shown = seller_rows(dom)
    assert [seller for seller, _ in shown] == [SELLER, "b", "w"]
    for (seller, cells), row in zip(shown, site.rows, strict=True):
        assert row["seller_id"] == seller
        for name, m in row["metrics"].items():
            assert cells[name]["status"] == m["status"]
            assert cells[name]["value"] == repr(m["value"])
            assert (cells[name]["numerator"], cells[name]["denominator"]) == (
                str(m["numerator"]), str(m["denominator"]))
    assert shown[0][1][""] == {"seller_id": SELLER, "breaches": "2", "warnings": "0"}
    assert shown[2][1]["late_shipment_rate"]["headroom"] == "0"


@pytest.mark.parametrize(("page", "height"), [
    ("seller-amazon.html", 2400), ("seller-walmart.html", 2400), ("sellers.html", 800)])
def test_screenshot_of_each_page_is_kept(site: Site, page: str, height: int) -> None:
    path = screenshot(f"{site.base}/{page}", ARTIFACTS / page.replace(".html", ".png"),
                      width=1280, height=height)
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 10_000
    facts = png_facts(path)
    assert (facts.width, facts.height) == (1280, height)
    # A page of one colour has at most 10 distinct scanlines; a rendered page has
    # text, bars and tables on most of its rows.
    assert facts.distinct_rows > height // 4, facts
