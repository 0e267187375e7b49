"""``popstream demo``: the whole pipeline on one machine, with a live view.

Starts an embedded Apache Kafka (unless ``KAFKA_BOOTSTRAP_SERVERS`` points at one),
creates the topics, runs a worker (its /metrics and /api/sellers on
``--web-port``), simulates marketplace traffic with a few sellers drifting into
breach, and shows the worst sellers as they change: one table of sellers by
metrics that fits the terminal, pointing at the worker's seller pages for the
rest. Ctrl-C (or ``--duration``) stops everything it started, in reverse order.
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
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client.parser import text_string_to_metric_families

from streams.engine.catalog import DEFAULT_PROFILE, Catalog, resolve_catalog
from streams.runtime.topics import create_topics
from streams.settings import Settings, from_env
from streams.simulate import SimulationSpec, SimulationStats, simulate

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderResult


def demo_traffic(sellers: int, rate: float, duration: float | None) -> SimulationSpec:
    """The demo's traffic: a quarter of the sellers drift, over two minutes, with a
    day of an order's life lasting 30 s. Live orders soon outnumber the backfill's
    (a few a seller a day against a few a second), so what the view shows is the
    live orders'; their imperfections come a few order-days after purchase, so on
    the simulator's defaults (5 minutes of drift, 90 s days) breaches came only
    after ~5 minutes. With these, the drifting sellers cross their targets within
    ~2-3 minutes (tests/unit/test_demo_view.py runs the traffic on a virtual clock)."""
    return SimulationSpec(sellers=sellers, rate=rate, duration=duration,
                          drifting_share=0.25, drift_minutes=2.0, ship_window_minutes=1.0)


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


# Lines of the live view besides the header's and the rows (see DemoView): the
# table's two header lines and the rule under them (its box has no top or
# bottom edge), and the footer.
_TABLE_CHROME = 3
_FOOTER_LINES = 1
_SELLER_MIN_WIDTH = len("seller")
_CELL_WIDTH = 8  # "!100.00%": a mark, then the value in percent with two decimals
_MARKS = {"breach": ("!", "bold red"), "warning": ("~", "yellow"),
          "healthy": ("", ""), "insufficient_volume": ("·", "dim")}


def short_names(catalog: Catalog) -> dict[str, str]:
    """Column headers short enough for eight metrics in 120 columns.

    The initials of the words, as marketplaces abbreviate them (ODR, LSR, PFCR,
    VTR, OTDR), words with digits kept whole (``late_shipment_rate_30d``: LSR30d).
    Names whose initials collide (walmart's refund_rate and return_rate) spell out
    more of their first word (RefR, RetR); the full names are in the
    ``catalog:`` line ``run_demo`` prints before the view starts.
    """

    def initials(name: str) -> str:
        return "".join(w if any(ch.isdigit() for ch in w) else w[0].upper()
                       for w in name.split("_") if w)

    def longer(name: str) -> str:
        first, *rest = [w for w in name.split("_") if w] or [name]
        return first[:3].capitalize() + initials("_".join(rest))

    names = [m.name for m in catalog.metrics]
    short = {n: initials(n) or n[:6] for n in names}
    for attempt in (longer, lambda n: n[:8]):
        taken = list(short.values())
        for n in names:
            if taken.count(short[n]) > 1:
                short[n] = attempt(n)
    taken = list(short.values())
    for i, n in enumerate(names):  # still the same: number them ("#" is in no name)
        if taken.count(short[n]) > 1:
            short[n] = f"{short[n][:5]}#{i + 1}"
    return short


def _percent(value: float) -> str:
    """A fraction as a compact percentage: two decimals, so a value just on the
    wrong side of a 99 % target does not read as 99 %; 0 and 1 without them."""
    if value in (0.0, 1.0):
        return f"{value * 100:.0f}%"
    return f"{value * 100:.2f}%"


def _shorten(seller_id: str, width: int) -> str:
    """``seller_id`` in at most ``width`` characters: an ellipsis in the middle
    keeps both ends, as ids that share a prefix differ in their tail."""
    if len(seller_id) <= width:
        return seller_id
    head = width // 2
    tail = width - 1 - head
    return seller_id[:head] + "…" + (seller_id[-tail:] if tail > 0 else "")


def _status(mv: dict[str, Any] | None) -> str:
    """A cell's status, from ``status`` (or ``breached`` and ``value`` when a
    payload lacks it); no entry at all is no data."""
    if not mv:
        return "insufficient_volume"
    status = mv.get("status")
    if status in _MARKS:
        return str(status)
    if mv.get("value") is None:
        return "insufficient_volume"
    return "breach" if mv.get("breached") else "healthy"


def rank_sellers(sellers: dict[str, Any], catalog: Catalog) -> list[tuple[str, int, int]]:
    """``(seller_id, breaches, warnings)`` over the catalog's metrics, worst first:
    more breaches, then more warnings, then by id (a stable order, so rows do not
    shuffle between refreshes while nothing changes)."""
    ranked = []
    for sid, ms in sellers.items():
        statuses = [_status(ms.get(m.name)) for m in catalog.metrics]
        ranked.append((sid, statuses.count("breach"), statuses.count("warning")))
    ranked.sort(key=lambda r: (-r[1], -r[2], r[0]))
    return ranked


class DemoView:
    """The live view: a few header lines, one table of the worst sellers (one
    column per metric of the catalog) and a footer.

    A renderable rather than a finished ``Group`` because how many sellers fit
    depends on the terminal: rich hands ``__rich_console__`` its size, so the
    view takes as many rows as the terminal has left (32 of 40 rows, 31 under
    an error line) and shortens the seller ids to what the metric columns leave
    of its width (32 of 120 columns with amazon's eight metrics). Every line
    stays one line whatever its length (no wrapping, an ellipsis instead), so
    the count of lines is known before rendering and the view never scrolls.
    """

    def __init__(self, view: View, sim: SimulationStats, started: float,
                 catalog: Catalog) -> None:
        self.view = view
        self.sim = sim
        self.elapsed = time.monotonic() - started
        self.catalog = catalog

    def header(self) -> list[Any]:
        """Four lines of facts, then the worker's error if any: what was sent
        and applied, how fast, where the endpoints and the seller pages are, and
        what the cells' marks mean (so the footer has room for the counts)."""
        from rich.text import Text

        view, sim, c = self.view, self.sim, self.view.counters
        base = f"http://127.0.0.1:{view.port}"
        p50, p99 = view.latency
        lat = "n/a" if p50 is None or p99 is None else f"p50 ≤ {p50:.3g} s, p99 ≤ {p99:.3g} s"
        lines = [
            (f"popstream demo — {self.elapsed:,.0f} s — Ctrl-C stops", "bold"),
            (f"sent {sim.backfilled:,} backfill + {sim.live:,} live events — worker applied "
             f"{c.get('popstream_events_processed_total', 0):,.0f}, invalid "
             f"{c.get('popstream_events_invalid_total', 0):,.0f}, pending orders "
             f"{c.get('popstream_pending_orders', 0):,.0f}", ""),
            (f"latency {lat} — /metrics and /api/sellers on {base}", ""),
            (f"seller pages: {base}/sellers — cells: value in %, ! breach, ~ warning, "
             f"· too few orders or no data", ""),
        ]
        out = [Text(t, style=s, no_wrap=True, overflow="ellipsis") for t, s in lines]
        if view.error:
            out.append(Text(view.error, style="yellow", no_wrap=True, overflow="ellipsis"))
        return out

    def table(self, ranked: list[tuple[str, int, int]], width: int) -> Any:
        """One row per seller of ``ranked``, one column per metric headed by its
        short name and its line (``<1% 60d``: healthy below 1 % over 60 days).

        Widths are set, not measured by rich: a metric column is as wide as its
        header or a cell, the seller column takes what is left of ``width`` (up
        to the longest id), so eight metrics fit 120 columns with room for ids.
        """
        from rich import box
        from rich.table import Table
        from rich.text import Text

        short = short_names(self.catalog)
        heads = []
        for m in self.catalog.metrics:
            op = "≥" if m.healthy == "at_least" else "<"
            sub = f"{op}{m.target * 100:g}% {m.window_days}d"
            heads.append((m, f"{short[m.name]}\n{sub}",
                          max(_CELL_WIDTH, len(short[m.name]), len(sub))))
        # Each column has one space of padding on either side and one space
        # between columns; the edges have no padding (pad_edge=False).
        room = width - sum(w + 3 for _, _, w in heads)
        longest = max((len(sid) for sid, _, _ in ranked), default=0)
        seller_width = max(_SELLER_MIN_WIDTH, min(room, longest))
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                      padding=(0, 1), expand=False)
        table.add_column("seller\n", width=seller_width, no_wrap=True, overflow="ellipsis")
        for _, head, w in heads:
            table.add_column(head, width=w, justify="right", no_wrap=True,
                             overflow="ellipsis")
        for sid, _, _ in ranked:
            ms = self.view.sellers[sid]
            # Text, not a str: an id is shown as it is, never read as markup.
            cells: list[Any] = [Text(_shorten(sid, seller_width))]
            for m, _, _ in heads:
                mv = ms.get(m.name)
                status = _status(mv)
                mark, style = _MARKS[status]
                value = None if not mv else mv.get("value")
                cells.append(Text("·" if value is None else mark + _percent(value),
                                  style=style))
            table.add_row(*cells)
        return table

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from rich.text import Text

        header = self.header()
        height = options.height or options.size.height
        room = max(0, height - len(header) - _TABLE_CHROME - _FOOTER_LINES)
        ranked = rank_sellers(self.view.sellers, self.catalog)
        shown = ranked[:room]
        breach = sum(1 for _, b, _ in ranked if b)
        warning = sum(1 for _, b, w in ranked if w and not b)
        footer = Text(
            f"{breach} of {len(ranked)} sellers in breach, {warning} in warning; "
            f"{len(shown)} shown — open http://127.0.0.1:{self.view.port}/sellers/<id>",
            no_wrap=True, overflow="ellipsis",
        )
        yield from header
        yield self.table(shown, options.max_width)
        yield footer


def render(view: View, sim: SimulationStats, started: float, catalog: Catalog) -> Any:
    """The live view (see ``DemoView``): one table that fits the terminal, where
    six stacked tables of the worst sellers per metric overflowed 60 rows."""
    return DemoView(view, sim, started, catalog)


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
        spec = demo_traffic(sellers, rate, duration)
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
