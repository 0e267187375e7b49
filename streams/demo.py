"""``popstream demo``: the whole pipeline on one machine, with a live view.

Starts an embedded Apache Kafka (unless ``KAFKA_BOOTSTRAP_SERVERS`` points at one),
creates the topics, runs a worker (its /metrics and /api/sellers on
``--web-port``), simulates marketplace traffic with a few sellers drifting into
breach, and shows the worst sellers per metric as they change. Ctrl-C (or
``--duration``) stops everything it started, in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from prometheus_client.parser import text_string_to_metric_families

from streams.engine.catalog import DEFAULT_PROFILE, Catalog, resolve_catalog
from streams.runtime.topics import create_topics
from streams.settings import Settings, from_env
from streams.simulate import SimulationSpec, SimulationStats, simulate


@dataclass
class View:
    """What the terminal shows, refreshed from the worker's HTTP endpoints."""

    port: int
    sellers: dict[str, Any] = field(default_factory=dict)
    counters: dict[str, float] = field(default_factory=dict)
    latency: tuple[float | None, float | None] = (None, None)
    error: str | None = None
    _previous: dict[float, float] = field(default_factory=dict)

    def refresh(self) -> None:
        try:
            base = f"http://127.0.0.1:{self.port}"
            with urllib.request.urlopen(base + "/api/sellers", timeout=2) as r:
                self.sellers = orjson.loads(r.read())["sellers"]
            with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
                text = r.read().decode()
            self.error = None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            self.error = f"worker not answering yet ({exc.__class__.__name__})"
            return
        buckets: list[tuple[float, float]] = []
        counters: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            if family.name.startswith("popstream_seller"):
                continue
            for s in family.samples:
                if s.name == "popstream_event_latency_seconds_bucket":
                    buckets.append((float(s.labels["le"]), s.value))
                elif s.name in ("popstream_events_processed_total",
                                "popstream_events_invalid_total"):
                    counters[s.name] = counters.get(s.name, 0.0) + s.value
                elif s.name in ("popstream_pending_orders", "popstream_tracked_orders"):
                    counters[s.name] = s.value
        self.counters = counters
        # Quantiles over the events applied since the last refresh, as
        # histogram_quantile(rate(...)) would: the backfill's backlog does not
        # linger in the live figure.
        window = [(le, n - self._previous.get(le, 0.0)) for le, n in buckets]
        self._previous = dict(buckets)
        if window and window[-1][1] > 0:
            self.latency = (quantile(window, 0.5), quantile(window, 0.99))


def quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """A quantile from cumulative histogram buckets (upper bound of its bucket)."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] == 0:
        return None
    target = q * buckets[-1][1]
    for bound, count in buckets:
        if count >= target:
            return bound
    return buckets[-1][0]


def render(view: View, sim: SimulationStats, started: float, catalog: Catalog) -> Any:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    p50, p99 = view.latency
    lat = "n/a" if p99 is None else f"p50 <= {p50:.3g} s, p99 <= {p99:.3g} s"
    c = view.counters
    header = Text(
        f"popstream demo — {time.monotonic() - started:,.0f} s — sent {sim.backfilled:,} "
        f"backfill + {sim.live:,} live events — worker applied "
        f"{c.get('popstream_events_processed_total', 0):,.0f}, invalid "
        f"{c.get('popstream_events_invalid_total', 0):,.0f}, pending orders "
        f"{c.get('popstream_pending_orders', 0):,.0f} — latency {lat}\n"
        f"/metrics and /api/sellers on http://127.0.0.1:{view.port} — Ctrl-C stops",
        style="bold",
    )
    parts: list[Any] = [header]
    if view.error:
        parts.append(Text(view.error, style="yellow"))
    for metric in catalog.metrics:
        rows = [(sid, ms[metric.name]) for sid, ms in view.sellers.items()
                if ms[metric.name]["value"] is not None]
        sign = 1.0 if metric.healthy == "at_least" else -1.0
        rows.sort(key=lambda r: sign * r[1]["value"])
        breached = sum(1 for _, mv in rows if mv["breached"])
        op = ">=" if metric.healthy == "at_least" else "<"
        table = Table(title=f"{metric.name} ({metric.window_days} d, healthy {op} "
                      f"{metric.target:g}): {breached} in breach", title_justify="left",
                      expand=False)
        for col in ("seller", "value", "num/den", ""):
            table.add_column(col)
        for sid, mv in rows[:4]:
            table.add_row(sid, f"{mv['value']:.4f}", f"{mv['numerator']}/{mv['denominator']}",
                          "[red]BREACH[/]" if mv["breached"] else "[green]ok[/]")
        parts.append(table)
    return Group(*parts)


@contextlib.contextmanager
def _broker(progress: Any) -> Iterator[str]:
    existing = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if existing:
        yield existing
        return
    from streams.runtime.broker import start_broker

    progress("starting Apache Kafka (first run resolves its jars with Maven)")
    with start_broker(progress=progress) as broker:
        yield broker.bootstrap_servers


def run_demo(sellers: int, rate: float, duration: float | None, web_port: int,
             catalog: str | None = None) -> int:
    """``catalog``: a profile name or TOML file, as ``--catalog`` (default: the
    ``POPSTREAM_CATALOG`` environment, else ``amazon``)."""
    from rich.console import Console
    from rich.live import Live

    console = Console(stderr=False)

    def say(message: str) -> None:
        console.print(f"[dim]popstream:[/] {message}")

    work = Path(tempfile.mkdtemp(prefix="popstream-demo-"))
    with _broker(say) as bootstrap:
        settings: Settings = from_env(None, bootstrap_servers=bootstrap,
                                      topic_prefix="demo-", web_port=web_port)
        settings = settings.with_(app_id="popstream-demo", data_dir=work / "worker")
        say(f"Kafka at {bootstrap}; creating topics")
        asyncio.run(create_topics(settings))
        spec_of_catalog = catalog or os.environ.get("POPSTREAM_CATALOG") or DEFAULT_PROFILE
        metrics = resolve_catalog(spec_of_catalog)  # a bad catalog fails here, not later
        say(f"catalog: {spec_of_catalog} ({', '.join(m.name for m in metrics.metrics)})")
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
               "POPSTREAM_TOPIC_PREFIX": "demo-", "POPSTREAM_APP_ID": "popstream-demo",
               "POPSTREAM_CATALOG": spec_of_catalog}
        log = open(work / "worker.log", "wb")  # noqa: SIM115
        worker = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", "--web-port", str(web_port),
             "--data-dir", str(work / "worker")],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        say(f"worker pid {worker.pid} (log {work / 'worker.log'})")
        spec = SimulationSpec(sellers=sellers, rate=rate, duration=duration)
        stats = SimulationStats()
        view = View(web_port)
        started = time.monotonic()

        def on_progress(current: SimulationStats) -> None:
            nonlocal stats
            stats = current

        async def main() -> None:
            nonlocal stats
            sim = asyncio.create_task(simulate(settings, spec, on_progress))
            interactive = console.is_terminal
            last_line = 0.0
            try:
                with Live(render(view, stats, started, metrics), console=console,
                          refresh_per_second=2, transient=False) if interactive \
                        else contextlib.nullcontext() as live:
                    while not sim.done():
                        await asyncio.sleep(1.0)
                        await asyncio.to_thread(view.refresh)
                        if live is not None:
                            live.update(render(view, stats, started, metrics))
                        elif time.monotonic() - last_line > 5:
                            last_line = time.monotonic()
                            breached = sum(1 for ms in view.sellers.values()
                                           if any(m["breached"] for m in ms.values()))
                            print(f"popstream: {len(view.sellers)} sellers, {breached} "
                                  f"breaching a target, latency p99 <= {view.latency[1]}",
                                  flush=True)
                stats = sim.result()
            finally:
                sim.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await sim

        try:
            asyncio.run(main())
        except KeyboardInterrupt:
            say("stopping")
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
            log.close()
    say("stopped everything it started")
    return 0
