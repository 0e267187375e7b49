"""Beyond one Prometheus, on loopback: Debian's Prometheus, configured by
``prometheus_config``, scrapes the exposition of a real ``Pipeline`` holding a
breaching seller and remote_writes to Debian's VictoriaMetrics, where the breach
must be queryable. The same Prometheus shows the sample-limit alert expression
firing for a target over its limit, while the worker's own limit admits it. And
``hashmod`` shards split the workers between servers, each worker to exactly one.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from functools import partial
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from streams.engine.catalog import default_catalog
from streams.engine.events import US_PER_DAY, format_us, parse_timestamp
from streams.observability import rendered_files
from streams.observability.prometheus_config import (
    EXAMPLE_REMOTE_WRITE,
    JOB,
    ScrapeSizing,
    Shard,
    prometheus_config,
)
from streams.runtime.broker import free_port
from streams.runtime.pipeline import Pipeline
from streams.runtime.topics import TopicNames, owner_partition
from streams.settings import from_env
from tests.integration.harness import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
AS_OF = parse_timestamp("2024-06-15T00:00:00Z")
SELLER = "BAD"
ORDERS = 40  # over the status floors (30 orders, 3 bad ones): a breach, not a warning
SAMPLE_LIMIT_ALERT = "increase(prometheus_target_scrapes_exceeded_sample_limit_total[5m]) > 0"


def _breaching_pipeline() -> Pipeline:
    """A pipeline fed, as the worker feeds it, a seller who shipped every other order
    late: late_shipment_rate 0.5 against a 4 % target."""
    p = Pipeline(from_env({}, as_of=AS_OF), default_catalog())
    p.ready = True
    names, partition = TopicNames(""), owner_partition(SELLER, 4)
    offset = 0
    for n in range(ORDERS):
        at = AS_OF - 2 * US_PER_DAY + n * 60_000_000
        ship_by = at + US_PER_DAY // 2
        shipped = ship_by + (3_600_000_000 if n % 2 == 0 else -3_600_000_000)
        for topic, doc in (
            (names.for_type("order"),
             {"event_id": f"o{n}", "type": "order", "seller_id": SELLER, "order_id": str(n),
              "occurred_at": format_us(at), "ship_by": format_us(ship_by)}),
            (names.for_type("shipment"),
             {"event_id": f"s{n}", "type": "shipment", "seller_id": SELLER,
              "order_id": str(n), "tracking_id": "1Z", "occurred_at": format_us(shipped)}),
        ):
            assert p.handle(orjson.dumps(doc), topic, partition, offset, None,
                            SELLER.encode()) == []
            offset += 1
    return p


@pytest.fixture
def exposition() -> Iterator[int]:
    """``/metrics`` of the pipeline on a loopback port (one request at a time, as a
    worker's renderer expects); yields the port."""
    pipeline = _breaching_pipeline()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pipeline.render_metrics()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _query(port: int, expr: str) -> list[Any]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as r:
        doc = json.loads(r.read())
    assert doc["status"] == "success", (expr, doc)
    result: list[Any] = doc["data"]["result"]
    return result


def _ready(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False
    return check


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """Last started, first stopped: Prometheus before the VictoriaMetrics it writes
    to (a Prometheus stopping spends up to a minute flushing to an absent one)."""
    for proc in reversed(processes):
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _tools() -> None:
    missing = [b for b in ("prometheus", "promtool", "victoria-metrics") if not shutil.which(b)]
    assert not missing, f"{missing} not installed: run scripts/install-tools.sh"


def test_committed_config_and_its_remote_write_example_pass_promtool(tmp_path: Path) -> None:
    _tools()
    committed = tmp_path / "prometheus.yml"
    committed.write_text(rendered_files()["prometheus/prometheus.yml"])
    example = tmp_path / "remote-write.yml"
    example.write_text(yaml.safe_dump(prometheus_config(remote_write=[EXAMPLE_REMOTE_WRITE])))
    for path in (committed, example):
        check = subprocess.run(["promtool", "check", "config", str(path)],
                               capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stdout + check.stderr


def test_a_breach_written_through_remote_write_is_queryable_in_victoriametrics(
    tmp_path: Path, exposition: int
) -> None:
    _tools()
    target_port = exposition
    vm_port, prom_port = free_port(), free_port()
    doc = prometheus_config(
        [f"127.0.0.1:{target_port}"],
        sizing=ScrapeSizing(interval="1s", timeout="1s"),
        evaluation_interval="1s",
        rule_files=(),
        alertmanagers=(),
        self_target=f"127.0.0.1:{prom_port}",
        remote_write=[f"http://127.0.0.1:{vm_port}/api/v1/write"],
    )
    doc["remote_write"][0]["queue_config"]["batch_send_deadline"] = "1s"
    # The same exposition under a limit it exceeds: what the alert must catch.
    doc["scrape_configs"].append({"job_name": "over-limit", "sample_limit": 10,
                                  "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}]})
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(doc))
    log = open(tmp_path / "tools.log", "wb")  # noqa: SIM115
    processes = [
        subprocess.Popen(
            ["victoria-metrics", f"-storageDataPath={tmp_path / 'vm'}",
             f"-httpListenAddr=127.0.0.1:{vm_port}",
             # Points younger than this are hidden from queries (default 30 s).
             "-search.latencyOffset=1s", "-search.disableCache"],
            stdout=log, stderr=subprocess.STDOUT),
        subprocess.Popen(
            ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=log, stderr=subprocess.STDOUT),
    ]
    try:
        wait_for(_ready(f"http://127.0.0.1:{vm_port}/health"), 15, "VictoriaMetrics to start")
        wait_for(_ready(f"http://127.0.0.1:{prom_port}/-/ready"), 15, "Prometheus to start")

        ratio = (f'popstream_seller_metric_ratio{{job="{JOB}",seller_id="{SELLER}",'
                 'metric="late_shipment_rate"}')
        found = wait_for(lambda: _query(vm_port, ratio), 25,
                         "the breaching seller's ratio in VictoriaMetrics")
        assert [float(s["value"][1]) for s in found] == [0.5]
        # The breach comparison, as a rule would run it, answered by VictoriaMetrics.
        breach = _query(vm_port, f'{ratio} >= on(metric) group_left() '
                                 'max by (metric) (popstream_metric_target_ratio{healthy="below"})')
        assert [s["metric"]["seller_id"] for s in breach] == [SELLER]
        status = (f'popstream_seller_metric_status{{seller_id="{SELLER}",'
                  'metric="late_shipment_rate",status="breach"}')
        assert [s["value"][1] for s in _query(vm_port, status)] == ["1"]

        # The worker's own limit admits it; the over-limit job fails whole, and the
        # alert expression for the lead's rules sees it.
        assert [s["value"][1] for s in _query(prom_port, f'up{{job="{JOB}"}}')] == ["1"]
        assert wait_for(lambda: _query(prom_port, SAMPLE_LIMIT_ALERT), 15,
                        "the sample-limit alert expression")
        # The refused scrape still reports its full sample count: what the rules'
        # per-worker clause compares with the limit.
        for count in ("scrape_samples_scraped", "scrape_samples_post_metric_relabeling"):
            over = _query(prom_port, f'{count}{{job="over-limit"}} > 10 '
                                     'and on() up{job="over-limit"} == 0')
            assert over, f"a target over its limit is down, and {count} says why"
    except AssertionError as exc:
        log.flush()
        tail = (tmp_path / "tools.log").read_text(errors="replace").splitlines()[-30:]
        raise AssertionError(f"{exc}\n--- VictoriaMetrics and Prometheus:\n"
                             + "\n".join(tail)) from None
    finally:
        _stop(processes)
        log.close()


def test_hashmod_shards_scrape_every_worker_exactly_once(tmp_path: Path) -> None:
    _tools()
    workers = [f"worker-{n}.popstream:6066" for n in range(8)]  # need not answer
    shards = [Shard(index, 3) for index in range(3)]
    ports = [free_port() for _ in shards]
    log = open(tmp_path / "shards.log", "wb")  # noqa: SIM115
    processes: list[subprocess.Popen[bytes]] = []
    for shard, port in zip(shards, ports, strict=True):
        config = tmp_path / f"shard-{shard.index}.yml"
        config.write_text(yaml.safe_dump(prometheus_config(
            workers, shard=shard, rule_files=(), alertmanagers=(),
            self_target=f"127.0.0.1:{port}")))
        processes.append(subprocess.Popen(
            ["prometheus", f"--config.file={config}",
             f"--storage.tsdb.path={tmp_path / f'tsdb-{shard.index}'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT))

    def scraped(port: int) -> dict[str, list[str]] | None:
        """The workers a shard scrapes, once its discovery is done."""
        url = f"http://127.0.0.1:{port}/api/v1/targets?state=any"
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                doc = json.loads(r.read())["data"]
        except OSError:
            return None
        if len(doc["activeTargets"]) + len(doc["droppedTargets"]) < len(workers) + 1:
            return None  # discovery not done yet
        return {"share": sorted(t["labels"]["instance"] for t in doc["activeTargets"]
                                if t["labels"]["job"] == JOB)}

    try:
        shares = [wait_for(partial(scraped, port), 15, f"shard on {port} to list its targets")
                  ["share"] for port in ports]
        assert sorted(w for share in shares for w in share) == sorted(workers)
        assert all(share for share in shares), f"a shard scrapes nothing: {shares}"
    finally:
        _stop(processes)
        log.close()
