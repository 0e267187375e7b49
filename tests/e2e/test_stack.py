"""End to end on loopback: Kafka, a worker, Debian's Prometheus and Alertmanager.

Routing as an on-call team needs it: a seller pushed over the late-shipment target
(with enough orders and late ones for the worker's status to say ``breach``)
reaches the seller-notification receiver and never the pager; a healthy seller
and a seller with too few orders raise nothing. Every dashboard panel's query
returns data from the live Prometheus. Then the worker stops: ``WorkerDown``
reaches the pager while the seller's breach keeps firing through the gap
(``keep_firing_for``), neither inhibiting the other, and no "resolved" reaches the
seller.
"""

from __future__ import annotations

import json
import subprocess
import threading
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest
import yaml

from streams.engine.catalog import default_catalog
from streams.engine.events import US_PER_DAY, format_us, parse_timestamp
from streams.observability.dashboards import dashboards, panel_queries, variables
from streams.observability.rules import AlertTiming, alertmanager_config, prometheus_rules
from streams.runtime.broker import free_port
from streams.runtime.topics import TopicNames, create_topics
from streams.settings import from_env
from tests.integration.harness import Worker, produce, run, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]
AS_OF = "2024-06-15T00:00:00Z"


class _Sink(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Sink.received.append({"path": self.path, **json.loads(body)})
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _events(prefix: str) -> list[tuple[str, bytes, bytes]]:
    now = parse_timestamp(AS_OF)
    names = TopicNames(prefix)
    out: list[tuple[str, bytes, bytes]] = []

    def send(doc: dict[str, Any]) -> None:
        out.append((names.for_type(doc["type"]), doc["seller_id"].encode(), orjson.dumps(doc)))

    # BAD: 40 orders, 20 late (over min_orders 30 and min_count 3); FEW: 3 late of 3,
    # insufficient_volume.
    for seller, orders, late_every in (("BAD", 40, 2), ("GOOD", 40, 0), ("FEW", 3, 1)):
        for n in range(orders):
            oid = f"{seller}-{n}"
            at = now - 2 * US_PER_DAY + n * 60_000_000
            ship_by = at + US_PER_DAY // 2
            late = late_every and n % late_every == 0
            send({"event_id": oid + "o", "type": "order", "seller_id": seller,
                  "order_id": oid, "occurred_at": format_us(at), "ship_by": format_us(ship_by)})
            send({"event_id": oid + "s", "type": "shipment", "seller_id": seller,
                  "order_id": oid, "tracking_id": "1Z",
                  "occurred_at": format_us(ship_by + (3_600_000_000 if late else -3_600_000_000))})
    out.append((names.for_type("order"), b"BAD", b"{not json"))  # for the dead-letter panels
    return out


@pytest.fixture
def sink() -> Iterator[str]:
    _Sink.received = []
    server = HTTPServer(("127.0.0.1", 0), _Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _query(port: int, expr: str) -> list[Any]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as r:
        doc = json.loads(r.read())
    assert doc["status"] == "success", (expr, doc)
    result: list[Any] = doc["data"]["result"]
    return result


def _notes(path: str, alertname: str | None = None, status: str = "firing"
           ) -> list[dict[str, Any]]:
    """Alerts delivered to one webhook path (``/pager``, ``/sellers``)."""
    return [a for note in list(_Sink.received) if note["path"] == path
            for a in note["alerts"]
            if (alertname is None or a["labels"].get("alertname") == alertname)
            and a["status"] == status]


def _am_alerts(port: int) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v2/alerts"
    with urllib.request.urlopen(url, timeout=10) as r:
        alerts: list[dict[str, Any]] = json.loads(r.read())
    return alerts


def test_seller_breach_to_sellers_worker_down_to_pager_both_at_once_and_panels_have_data(
    kafka_bootstrap: str, tmp_path: Path, sink: str
) -> None:
    prefix, app_id = f"e{uuid.uuid4().hex[:8]}-", f"ps-{uuid.uuid4().hex[:8]}"
    run(create_topics(from_env({}, bootstrap_servers=kafka_bootstrap, topic_prefix=prefix)))
    run(produce(kafka_bootstrap, _events(prefix)))
    worker = Worker(kafka_bootstrap, {"POPSTREAM_TOPIC_PREFIX": prefix,
                                      "POPSTREAM_APP_ID": app_id}, tmp_path, AS_OF, "w")
    processes: list[subprocess.Popen[bytes]] = []
    stop_trickle = threading.Event()
    try:
        wait_for(lambda: (worker.sellers() or {}).keys() >= {"BAD", "GOOD", "FEW"}, 90,
                 "the worker to serve the three sellers")
        sellers = worker.sellers() or {}
        assert sellers["BAD"]["late_shipment_rate"]["status"] == "breach"
        assert sellers["GOOD"]["late_shipment_rate"]["status"] == "healthy"
        assert sellers["FEW"]["late_shipment_rate"]["status"] == "insufficient_volume"

        def trickle() -> None:  # keeps rate() and latency panels fed
            n = 0
            while not stop_trickle.wait(0.5):
                n += 1
                doc = {"event_id": f"t{n}", "type": "refund", "seller_id": "TRICKLE",
                       "order_id": f"o{n}", "occurred_at": AS_OF}
                run(produce(kafka_bootstrap, [(TopicNames(prefix).for_type("refund"),
                                               b"TRICKLE", orjson.dumps(doc))]))

        threading.Thread(target=trickle, daemon=True).start()

        am_port, prom_port = free_port(), free_port()
        am_config = alertmanager_config(sink)
        am_config["route"].update(group_wait="1s", group_interval="1s", repeat_interval="1h")
        for route in am_config["route"]["routes"]:
            route.update(group_wait="1s", group_interval="1s")
        (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(am_config))
        # Holds cut to seconds; keep_firing_for stays what production has (10m).
        rules = prometheus_rules(default_catalog(), timing=AlertTiming(
            breach_for="2s", warning_for="2s", worker_down_for="2s", pipeline_for="5m",
            fleet_for="5m"))
        (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(tmp_path / "rules.yml")],
            "alerting": {"alertmanagers": [
                {"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
            "scrape_configs": [{"job_name": "popstream", "static_configs": [
                {"targets": [f"127.0.0.1:{worker.port}"],
                 # Where a browser reaches the worker: the seller dashboard's link.
                 "labels": {"popstream_url": f"http://127.0.0.1:{worker.port}"}}]}],
        }))
        log = open(tmp_path / "tools.log", "wb")  # noqa: SIM115
        processes.append(subprocess.Popen(
            ["prometheus-alertmanager", f"--config.file={tmp_path / 'alertmanager.yml'}",
             f"--storage.path={tmp_path / 'am'}", f"--web.listen-address=127.0.0.1:{am_port}",
             "--cluster.listen-address="], stdout=log, stderr=subprocess.STDOUT))
        processes.append(subprocess.Popen(
            ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=log, stderr=subprocess.STDOUT))

        # 1. A seller's breach reaches the sellers' receiver, and not the pager.
        breach = "PopstreamLateShipmentRateBreach"
        alerts = wait_for(lambda: _notes("/sellers", breach), 60,
                          "the breach alert to reach the seller receiver")
        labels = alerts[0]["labels"]
        assert labels["seller_id"] == "BAD"
        assert labels["metric"] == "late_shipment_rate"
        assert labels["severity"] == "seller"
        assert labels["seller_status"] == "breach"
        assert alerts[0]["annotations"]["summary"] == (
            "Seller BAD breaches late_shipment_rate: 50% (healthy below 4%)")
        firing = _query(prom_port, 'ALERTS{alertstate="firing"}')
        by_seller = {(a["metric"].get("seller_id"), a["metric"]["alertname"]) for a in firing}
        assert not {s for s, _ in by_seller if s == "GOOD"}, "a healthy seller raised an alert"
        assert not {s for s, _ in by_seller if s == "FEW"}, (
            "a seller under min_orders raised an alert")

        # 2. Every dashboard panel has data, but those the default export mode
        #    (POPSTREAM_EXPORT=alerting) leaves empty by design: an alerting seller
        #    has series only for its metrics in warning or breach, so a worst-sellers
        #    table is empty while no seller alerts on its metric, and BAD's panel of
        #    a metric it does not alert on is empty. Exactly those, no others.
        served = worker.sellers() or {}
        alerting = {"warning", "breach"}
        quiet = {m.name for m in default_catalog().metrics
                 if not any(ms[m.name]["status"] in alerting for ms in served.values())}
        bad_quiet = {m for m, mv in served["BAD"].items() if mv["status"] not in alerting}
        assert "late_shipment_rate" not in quiet | bad_quiet
        empty, leaked = [], []
        for name, dashboard in dashboards(default_catalog()).items():
            for title, expr in panel_queries(dashboard):
                runnable = expr.replace("$__rate_interval", "1m").replace("$seller", "BAD")
                metric = title.split(":")[0].split(" (")[0]
                by_design = ((name == "fleet-health" and "worst sellers" in title
                              and metric in quiet)
                             or (name == "seller-detail" and metric in bad_quiet))
                has_data = bool(_query(prom_port, runnable))
                if not has_data and not by_design:
                    empty.append(f"{name}: {title}: {expr}")
                if has_data and by_design:
                    leaked.append(f"{name}: {title}: {expr}")
        assert empty == [], "panels without data:\n" + "\n".join(empty)
        assert leaked == [], "series the export rule leaves out:\n" + "\n".join(leaked)
        # The seller dashboard's link: its hidden variable finds BAD's worker, whose
        # page for BAD is there (issue #13).
        board = dashboards(default_catalog())["seller-detail"]
        (owner,) = [v for v in variables(board) if v.name == "worker"]
        instances = owner.values(_query(prom_port, owner.expr.replace("$seller", "BAD")))
        assert instances == [f"http://127.0.0.1:{worker.port}"]
        url = board["links"][0]["url"].replace("${worker}", instances[0]).replace(
            "${seller:percentencode}", "BAD")
        with urllib.request.urlopen(url, timeout=10) as page:
            assert page.status == 200
            assert b'data-field="seller_id">BAD<' in page.read()

        # 3. The worker stops: WorkerDown pages; the seller's breach rides out the gap
        # (keep_firing_for), so both are active at once and neither inhibits the other.
        stop_trickle.set()
        worker.stop()
        down = wait_for(lambda: _notes("/pager", "PopstreamWorkerDown"), 30,
                        "WorkerDown to reach the pager")
        assert down[0]["labels"]["instance"] == f"127.0.0.1:{worker.port}"
        assert down[0]["labels"]["severity"] == "page"
        states = {a["labels"]["alertname"]: a["status"]["state"]
                  for a in _am_alerts(am_port)
                  if a["labels"]["alertname"] in (breach, "PopstreamWorkerDown")}
        assert states == {breach: "active", "PopstreamWorkerDown": "active"}
        assert not _query(prom_port, 'popstream_seller_metric_status{seller_id="BAD"}'), (
            "the worker's series should be gone")
        assert _query(prom_port, f'ALERTS{{alertname="{breach}",alertstate="firing"}}')

        # Nothing of a seller was paged, nothing of the pipeline went to sellers, and
        # the seller was never told "resolved" during the gap.
        paged = {a["labels"]["alertname"] for a in _notes("/pager")}
        assert not any(a["labels"].get("severity") == "seller" for a in _notes("/pager"))
        assert "PopstreamWorkerDown" in paged
        # (BAD's 20 late orders of 40 also breach the Perfect Order Percentage and,
        # in the default amazon profile, the 30-day late shipment rate.)
        told = {(a["labels"]["seller_id"], a["labels"]["alertname"]) for a in _notes("/sellers")}
        assert told == {("BAD", breach), ("BAD", "PopstreamPerfectOrderPercentageBreach"),
                        ("BAD", "PopstreamLateShipmentRate30DBreach")}
        assert _notes("/sellers", status="resolved") == []
    finally:
        stop_trickle.set()
        for proc in processes:
            proc.terminate()
            proc.wait(10)
        worker.stop()
