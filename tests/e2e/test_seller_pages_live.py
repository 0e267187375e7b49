"""The explain API and the seller pages of a real worker (issue #13), on a real broker,
in a real browser.

A generated marketplace (some sellers drifting into breach) goes through Kafka to a
worker in the default export mode. Then:

* ``/api/sellers/{id}/explain`` equals ``tests/reference.py``'s explanation for every
  seller (every field, every metric), pages through ``cursor``, and answers 404 and
  400 as documented;
* the headroom series equals the explanation's headroom for every exported metric;
* Debian's chromium, headless, loads ``/sellers`` and ``/sellers/{id}`` from the
  worker: the sellers listed are exactly those in warning or breach, worst first,
  and every figure, order row and chart day shown equals the API's; a screenshot of
  each page is kept in ``build/artifacts/pages/``.
"""

from __future__ import annotations

import random
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.engine.catalog import default_catalog
from streams.engine.events import Event, decode_event, parse_timestamp
from streams.generator import LogSpec, generate
from streams.pages import worst_first_key
from streams.runtime.topics import TopicNames, create_topics
from streams.settings import from_env
from tests.browser import (
    ARTIFACTS,
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
from tests.integration.harness import Worker, produce, run, wait_equal
from tests.reference import reference_explain, reference_report

pytestmark = [pytest.mark.kafka, pytest.mark.e2e, pytest.mark.slow]

AS_OF = "2024-06-15T00:00:00Z"
NOW = parse_timestamp(AS_OF)
GRAFANA = "http://grafana.example:3000/d/popstream-seller/seller?var-seller_id="


def _status(worker: Worker, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}{path}", timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Live:
    def __init__(self, worker: Worker, events: list[Event]) -> None:
        self.worker = worker
        self.events = events
        self.report: dict[str, Any] = reference_report(events, NOW)
        self.base = f"http://127.0.0.1:{worker.port}"

    def explained(self, seller_id: str) -> dict[str, Any]:
        doc = reference_explain(self.events, NOW, seller_id)
        assert doc is not None
        return doc


@pytest.fixture(scope="module")
def live(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    prefix, app_id = f"p{uuid.uuid4().hex[:8]}-", f"ps-{uuid.uuid4().hex[:8]}"
    run(create_topics(from_env({}, bootstrap_servers=kafka_bootstrap, topic_prefix=prefix,
                               partitions=2)))
    spec = LogSpec(sellers=10, orders_per_seller_per_day=1.2, days=95, end_us=NOW, seed=7,
                   drifting_share=0.5)
    docs = list(generate(spec))
    random.Random(13).shuffle(docs)
    names = TopicNames(prefix)
    run(produce(kafka_bootstrap, [(names.for_type(d["type"]), d["seller_id"].encode(),
                                   orjson.dumps(d)) for d in docs]))
    events = [decode_event(orjson.dumps(d)) for d in docs]
    tmp = tmp_path_factory.mktemp("live-pages")
    worker = Worker(kafka_bootstrap, {"POPSTREAM_TOPIC_PREFIX": prefix,
                                      "POPSTREAM_APP_ID": app_id, "POPSTREAM_PARTITIONS": "2",
                                      "POPSTREAM_GRAFANA_URL": GRAFANA}, tmp, AS_OF, "w")
    try:
        state = Live(worker, events)
        wait_equal(worker, state.report, 120, "the worker's sellers to equal the reference")
        yield state
    finally:
        worker.stop()


def _alerting(report: dict[str, Any]) -> set[str]:
    return {sid for sid, metrics in report.items()
            if any(m["status"] in ("warning", "breach") for m in metrics.values())}


def test_explain_api_equals_the_reference_for_every_seller(live: Live) -> None:
    breached = 0
    for seller_id in live.report:
        got = live.worker.get(f"/api/sellers/{urllib.parse.quote(seller_id)}/explain")
        assert got == reference_explain(live.events, NOW, seller_id), seller_id
        breached += sum(1 for m in got["metrics"].values() if m["breached"])
        one = live.worker.get(f"/api/sellers/{seller_id}/explain?metric=refund_rate")
        assert one["metrics"] == {"refund_rate": got["metrics"]["refund_rate"]}
    assert breached, "the log should hold breached metrics (recovery is compared too)"
    # Pages of 2 orders, cursor to cursor, are the whole list.
    seller_id, metric = max(((sid, name) for sid in live.report
                             for name in live.report[sid]),
                            key=lambda p: int(live.report[p[0]][p[1]]["numerator"]))
    full = live.worker.get(f"/api/sellers/{seller_id}/explain?metric={metric}")
    pages: list[Any] = []
    query = f"metric={metric}&limit=2"
    while True:
        part = live.worker.get(f"/api/sellers/{seller_id}/explain?{query}")["metrics"][metric]
        pages += part["orders"]
        if part["next_cursor"] is None:
            break
        query = f"metric={metric}&limit=2&cursor={part['next_cursor']}"
    assert pages == full["metrics"][metric]["orders"]
    assert len(pages) > 2


def test_explain_api_errors(live: Live) -> None:
    code, body = _status(live.worker, "/api/sellers/nobody/explain")
    assert code == 404
    assert "nobody" in orjson.loads(body)["error"]
    seller_id = next(iter(live.report))
    for query, words in (("metric=nope", "metric must be one of"),
                         ("limit=0", "limit must be"), ("cursor=%25%25", "cursor"),
                         ("color=red", "unknown parameters")):
        code, body = _status(live.worker, f"/api/sellers/{seller_id}/explain?{query}")
        assert code == 400, query
        assert words in orjson.loads(body)["error"], query
    code, body = _status(live.worker, "/sellers/%3Cscript%3Enobody")
    assert code == 404
    assert b"&lt;script&gt;nobody" in body
    assert b"<script>" not in body


def test_headroom_series_equal_the_explanation(live: Live) -> None:
    text = live.worker.get("/metrics").decode()
    series = {(s.labels["seller_id"], s.labels["metric"]): s.value
              for family in text_string_to_metric_families(text) for s in family.samples
              if s.name == "popstream_seller_metric_headroom_orders"}
    assert series, "sellers in warning have a headroom series"
    for seller_id in _alerting(live.report):
        doc = live.explained(seller_id)
        for name, m in doc["metrics"].items():
            shown = m["status"] in ("warning", "breach") and m["headroom"] is not None
            assert series.get((seller_id, name)) == (m["headroom"] if shown else None), (
                seller_id, name)
    assert {sid for sid, _ in series} <= _alerting(live.report)


def test_sellers_page_in_chromium_lists_the_alerting_sellers_worst_first(live: Live) -> None:
    expected_ids = _alerting(live.report)
    assert expected_ids, "the log should hold sellers in warning or breach"
    rows = []
    for seller_id in expected_ids:
        doc = live.explained(seller_id)
        rows.append({"seller_id": seller_id, "metrics": doc["metrics"]})
    for metric in (None, "late_shipment_rate"):
        url = live.base + "/sellers" + ("" if metric is None else f"?metric={metric}")
        shown = seller_rows(dump_dom(url))
        wanted = [r for r in rows if metric is None
                  or r["metrics"][metric]["status"] in ("warning", "breach")]
        wanted.sort(key=lambda r: worst_first_key(r, metric))
        assert [sid for sid, _ in shown] == [r["seller_id"] for r in wanted], metric
        for (_, cells), row in zip(shown, wanted, strict=True):
            for name, m in row["metrics"].items():
                assert cells[name]["status"] == m["status"]
                assert (cells[name]["numerator"], cells[name]["denominator"]) == (
                    str(m["numerator"]), str(m["denominator"]))
    path = screenshot(live.base + "/sellers", ARTIFACTS / "live-sellers.png", height=900)
    assert png_facts(path).distinct_rows > 900 // 4


def test_seller_pages_in_chromium_show_the_apis_figures(live: Live) -> None:
    catalog = default_catalog()
    alerting = _alerting(live.report)
    worst = min(alerting, key=lambda sid: worst_first_key(
        {"seller_id": sid, "metrics": live.report[sid]}))
    calm = next((sid for sid in sorted(live.report) if sid not in alerting), None)
    for seller_id in [worst] + ([calm] if calm else []):
        api = live.worker.get(f"/api/sellers/{seller_id}/explain")
        dom = dump_dom(f"{live.base}/sellers/{seller_id}", height=2400)
        assert page_figures(dom) == {"seller_id": seller_id, "as_of": api["as_of"]}
        figures, rows, days = metric_figures(dom), order_rows(dom), chart_days(dom)
        for spec in catalog.metrics:
            m = api["metrics"][spec.name]
            assert figures[spec.name] == expected_metric_figures(m, spec.healthy), spec.name
            assert rows.get(spec.name, []) == expected_order_rows(m), spec.name
            assert days[spec.name] == expected_days(m), spec.name
        assert f'href="{GRAFANA}{seller_id}"' in dom
        name = "live-seller-breach.png" if seller_id == worst else "live-seller-healthy.png"
        path = screenshot(f"{live.base}/sellers/{seller_id}", ARTIFACTS / name, height=2400)
        assert png_facts(path).distinct_rows > 2400 // 4

