"""The rules and the Alertmanager config pass Prometheus' own tools: promtool checks
the rules and runs their unit tests (floors, a restart gap, stalls, fleet alerts),
amtool checks the config and its routes, and a real Alertmanager on loopback shows
what inhibits what: a seller's breach silences only the same seller's warning on the
same metric, never a pipeline or fleet page, and never an alert missing the labels."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from streams.observability.rules import alertmanager_config
from streams.runtime.broker import free_port

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
AM_CONFIG = "prometheus/alertmanager.yml"


def run(*cmd: str) -> str:
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def test_promtool_check_rules() -> None:
    assert "SUCCESS" in run("promtool", "check", "rules", "prometheus/rules/popstream.rules.yml")


def test_promtool_rule_unit_tests() -> None:
    out = run("promtool", "test", "rules", "prometheus/tests/popstream.test.yml",
              "prometheus/tests/fleet.test.yml")
    assert out.count("SUCCESS") == 2, out


def test_amtool_check_config() -> None:
    out = run("amtool", "check-config", AM_CONFIG)
    assert "1 inhibit rules" in out
    assert "2 receivers" in out


@pytest.mark.parametrize(("labels", "receiver"), [
    (("severity=seller", "seller_status=breach", "seller_id=A", "metric=refund_rate"),
     "seller-notifications"),
    (("severity=seller", "seller_status=warning", "seller_id=A", "metric=refund_rate"),
     "seller-notifications"),
    (("severity=page", "alertname=PopstreamWorkerDown", "instance=w1"), "pager"),
    (("severity=page", "alertname=PopstreamFleetRefundRatePastTarget", "metric=refund_rate"),
     "pager"),
    # Anything not marked as a seller's pages rather than vanishing.
    (("alertname=SomethingNew",), "pager"),
])
def test_amtool_routes(labels: tuple[str, ...], receiver: str) -> None:
    out = run("amtool", "config", "routes", "test", f"--config.file={AM_CONFIG}",
              f"--verify.receivers={receiver}", *labels)
    assert out.splitlines()[0] == receiver


# --- a real Alertmanager: inhibition ---------------------------------------------


class _Sink(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Sink.received.append({"path": self.path, **json.loads(body)})
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    """Debian's Alertmanager with the generated config, its webhooks on a local sink
    and its waits cut to a second; yields its base URL."""
    _Sink.received = []
    sink = HTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    config = alertmanager_config(f"http://127.0.0.1:{sink.server_address[1]}")
    config["route"]["group_wait"] = "1s"
    for route in config["route"]["routes"]:
        route["group_wait"] = "1s"
    (tmp_path / "am.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    proc = subprocess.Popen(
        ["prometheus-alertmanager", f"--config.file={tmp_path / 'am.yml'}",
         f"--storage.path={tmp_path / 'am'}", f"--web.listen-address=127.0.0.1:{port}",
         "--cluster.listen-address="],
        stdout=open(tmp_path / "am.log", "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(url + "/-/ready", timeout=2):
                    break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, (tmp_path / "am.log").read_text()
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        sink.shutdown()


def _post(url: str, alerts: list[dict[str, str]]) -> None:
    body = json.dumps([{"labels": labels} for labels in alerts]).encode()
    request = urllib.request.Request(url + "/api/v2/alerts", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def _states(url: str) -> dict[str, str]:
    with urllib.request.urlopen(url + "/api/v2/alerts", timeout=5) as response:
        alerts = json.loads(response.read())
    return {a["labels"]["alertname"]: a["status"]["state"] for a in alerts}


def _seller(name: str, status: str, seller: str | None, metric: str | None) -> dict[str, str]:
    labels = {"alertname": name, "severity": "seller", "seller_status": status}
    labels |= {"seller_id": seller} if seller else {}
    labels |= {"metric": metric} if metric else {}
    return labels


def test_a_seller_breach_inhibits_only_its_own_warning(alertmanager: str) -> None:
    _post(alertmanager, [
        _seller("Breach-A-late", "breach", "A", "late_shipment_rate"),
        _seller("Warning-A-late", "warning", "A", "late_shipment_rate"),
        _seller("Warning-A-refund", "warning", "A", "refund_rate"),
        _seller("Warning-B-late", "warning", "B", "late_shipment_rate"),
        # Without seller_id and metric on either side, "equal" would hold (absent on
        # both counts as equal); the matchers require the labels, so it does not.
        _seller("Breach-nolabels", "breach", None, None),
        _seller("Warning-nolabels", "warning", None, None),
        {"alertname": "PopstreamWorkerDown", "severity": "page", "instance": "w1",
         "job": "popstream"},
        {"alertname": "PopstreamDeadLetters", "severity": "page", "job": "popstream"},
        {"alertname": "PopstreamFleetLateShipmentRatePastTarget", "severity": "page",
         "metric": "late_shipment_rate"},
    ])
    states = _states(alertmanager)
    assert states == {
        "Breach-A-late": "active",
        "Warning-A-late": "suppressed",
        "Warning-A-refund": "active",
        "Warning-B-late": "active",
        "Breach-nolabels": "active",
        "Warning-nolabels": "active",
        "PopstreamWorkerDown": "active",
        "PopstreamDeadLetters": "active",
        "PopstreamFleetLateShipmentRatePastTarget": "active",
    }

    # And what is delivered: pages to the pager, sellers' alerts to the sellers'
    # receiver (one notification per seller), nothing of a seller's paged.
    def delivered() -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for note in _Sink.received:
            out.setdefault(note["path"], set()).update(
                a["labels"]["alertname"] for a in note["alerts"])
        return out

    deadline = time.monotonic() + 20
    want = {"/pager": {"PopstreamWorkerDown", "PopstreamDeadLetters",
                       "PopstreamFleetLateShipmentRatePastTarget"},
            "/sellers": {"Breach-A-late", "Warning-A-refund", "Warning-B-late"}}
    while not all(want[k] <= delivered().get(k, set()) for k in want):
        assert time.monotonic() < deadline, delivered()
        time.sleep(0.2)
    got = delivered()
    assert got["/pager"] == want["/pager"]
    assert "Warning-A-late" not in got["/sellers"]
    seller_notes = [n for n in _Sink.received if n["path"] == "/sellers"]
    assert all(len({a["labels"].get("seller_id") for a in n["alerts"]}) == 1
               for n in seller_notes), "a seller notification mixes sellers"
