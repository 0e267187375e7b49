"""End to end on loopback: Kafka, a worker, Debian's Prometheus and Alertmanager.

A seller pushed over the late-shipment target must page (the breach alert reaches
the webhook with the right labels); a healthy seller raises nothing; a seller with
too few orders is held back by the minimum-orders guard. Then every dashboard
panel's query runs through the Prometheus HTTP API and must return data.
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
from streams.observability.dashboards import dashboards, panel_queries
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

    for seller, orders, late_every in (("BAD", 12, 2), ("GOOD", 12, 0), ("FEW", 3, 1)):
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


def test_breach_pages_healthy_stays_quiet_guard_holds_and_every_panel_has_data(
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
            route["group_wait"] = "1s"
        (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(am_config))
        rules = prometheus_rules(default_catalog(), timing=AlertTiming(
            breach_for="2s", warning_for="2s", worker_down_for="5s", pipeline_for="1m"))
        rules["groups"][0]["interval"] = "1s"
        (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(tmp_path / "rules.yml")],
            "alerting": {"alertmanagers": [
                {"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
            "scrape_configs": [{"job_name": "popstream", "static_configs": [
                {"targets": [f"127.0.0.1:{worker.port}"]}]}],
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

        def paged() -> list[dict[str, Any]]:
            return [a for note in _Sink.received if note["path"] == "/pager"
                    for a in note["alerts"]
                    if a["labels"].get("alertname") == "PopstreamLateShipmentRateBreach"
                    and a["status"] == "firing"]

        alerts = wait_for(paged, 120, "the breach alert to reach the webhook")
        labels = alerts[0]["labels"]
        assert labels["seller_id"] == "BAD"
        assert labels["metric"] == "late_shipment_rate"
        assert labels["severity"] == "critical"
        assert "BAD breaches late_shipment_rate: 50% (healthy < 4%)" in (
            alerts[0]["annotations"]["summary"])
        firing = _query(prom_port, 'ALERTS{alertstate="firing"}')
        by_seller = {(a["metric"].get("seller_id"), a["metric"]["alertname"]) for a in firing}
        assert not {s for s, _ in by_seller if s == "GOOD"}, "a healthy seller raised an alert"
        assert not {a for s, a in by_seller if s == "FEW" and a.endswith("Breach")}, (
            "the minimum-orders guard let a 3-order seller page")
        assert _query(prom_port, 'popstream:seller_metric_breach{seller_id="FEW"}'), (
            "FEW is over the target; only the guard holds it back")

        empty = []
        for name, dashboard in dashboards(default_catalog()).items():
            for title, expr in panel_queries(dashboard):
                if not _query(prom_port, expr.replace("$seller", "BAD")):
                    empty.append(f"{name}: {title}: {expr}")
        assert empty == [], "panels without data:\n" + "\n".join(empty)
    finally:
        stop_trickle.set()
        for proc in processes:
            proc.terminate()
            proc.wait(10)
        worker.stop()
