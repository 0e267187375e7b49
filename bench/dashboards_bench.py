"""Every dashboard query on a Prometheus holding a 100,000-seller fleet (issue #10).

    python -m bench.dashboards_bench --sellers 100000        (make bench-dashboards)

Synthetic series following docs/status-contract.md are written as OpenMetrics
text, backfilled with ``promtool tsdb create-blocks-from openmetrics``, and served
by Debian's ``prometheus`` on loopback with its default query limits. Then every
query of every panel of every generated dashboard runs as Grafana would run it:
timeseries panels as range queries over the 6 hours at the step Grafana picks for
the panel's width, tables, stats and bar gauges as instant queries at the end. Each
query's time (cold, then the median of the repeats), its series and samples, and
any error (a limit exceeded) go to bench/results/dashboards.json and a table.

Two fleets per run, as a worker exports them (``POPSTREAM_EXPORT``):

* ``all``: every seller's series (~29 a seller: ratio, numerator, denominator and
  status per metric, imperfect orders per cause);
* ``alerting`` (the default): only sellers with a metric in warning or breach.

Both carry the fleet series (status counts, the value histogram, numerator and
denominator sums), the catalog series and the pipeline series of ``--workers``
workers. The dashboards use no recording rule, so nothing needs evaluating.

What is synthetic: sellers' sizes are log-normal (median 3 orders a day), their
quality one latent factor per seller (most well inside the targets, a few per cent
past them); counts move by one order every few seller samples. Fleet and pipeline
series are sampled every ``--scrape`` (15 s, the compose file's scrape interval).
Per-seller series are sampled every ``--seller-interval`` (240 s by default, under
the 5-minute lookback so no query sees a gap): at 15 s, 100,000 sellers over 6 h is
4 billion samples, ~450 GB of text. The cost of the panels does not depend on it:
per-seller series are read only by instant queries (one chunk per series) and by
the picked seller's range queries (29 series). The number of series, what every
instant query scans, is the real one. The end time is chosen so that Prometheus has
no block to compact while it is measured.

Dashboards' variables run first, as Grafana runs them (``query_result``: an instant
query at the end of the range), and their values are written into the panel
queries as Grafana's Prometheus datasource writes a multi-value variable. A worst-N
table's time includes the variable ranking its sellers. The queries the dashboards
ran before issue #10 are run too, for comparison.

Latest run, this 2-core VM (2,868,735 series in ``all`` mode, 1,046,292 in
``alerting`` with 30 % of sellers in warning or breach): every panel under 2 s; the
slowest, a worst-sellers table with its variable, 1.55 s (``all``) and 0.52 s
(``alerting``); fleet panels 5-50 ms; the whole Fleet health dashboard, 6 queries
at a time, 7.7 s and 2.1 s. Before #10, a worst-N table as a range query and a
quantile over every seller's series fail in ``all`` mode (over the 50M-sample
limit) and take 12 and 24 s in ``alerting`` mode.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Final, Literal

from streams.engine.catalog import STATUSES, Catalog, Metric, default_catalog
from streams.engine.rules import CAUSE_NAMES
from streams.fleet import value_buckets
from streams.observability.dashboards import (
    WORST_N,
    Variable,
    dashboards,
    panel_targets,
    variables,
)
from streams.runtime.broker import free_port

Mode = Literal["all", "alerting"]
MODES: Final[tuple[Mode, ...]] = ("all", "alerting")
_STATUS_INDEX: Final = {status: i for i, status in enumerate(STATUSES)}
HEALTHY, WARNING, BREACH, IV = (_STATUS_INDEX[s] for s in (
    "healthy", "warning", "breach", "insufficient_volume"))
BLOCK_S: Final = 7200  # promtool writes 2-hour blocks, aligned on the epoch
GOAL_S: Final = 2.0
# Grafana's datasource timeInterval (grafana/provisioning): the scrape interval.
TIME_INTERVAL_S: Final = 15
SCREEN_PX: Final = 1920  # a panel's maxDataPoints is its width in pixels
JOB: Final = "popstream"
EVENT_TYPES: Final = ("order", "shipment", "cancellation", "refund", "feedback", "claim",
                      "message", "delivery", "return")  # contract v1.1's nine
PARTITIONS: Final = 12
# Imperfect-order causes per unit of a seller's latent badness (per order).
CAUSE_RATES: Final = {"negative_feedback": 0.006, "a_to_z_claim": 0.0025,
                      "chargeback": 0.0015, "seller_cancellation": 0.02,
                      "late_shipment": 0.032, "refunded": 0.008, "buyer_message": 0.01}
LATENCY_BOUNDS: Final = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.075,
                         0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0)


# --- the synthetic fleet ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Rule:
    """One metric's status (the catalog's, exact) and histogram bounds (the
    exporter's, streams/fleet.py), as the generator needs them."""

    metric: Metric
    bounds: tuple[tuple[int, int], ...]  # (p, q): bound p/q

    @classmethod
    def of(cls, metric: Metric) -> _Rule:
        return cls(metric, tuple((b.numerator, b.denominator) for b in value_buckets(metric)))

    def status(self, n: int, d: int) -> int:
        return _STATUS_INDEX[self.metric.status(n, d)]

    def bucket(self, n: int, d: int) -> int:
        """Index of the first bound >= n/d (len(bounds): +Inf)."""
        for i, (p, q) in enumerate(self.bounds):
            if n * q <= p * d:
                return i
        return len(self.bounds)


@dataclass
class Fleet:
    """Per seller: worker, size, latent badness, and when its counts move.

    Counts are a pure function of (seller, metric, step) — see :meth:`counts` — so
    the file writer can recompute them family by family without holding history.
    """

    catalog: Catalog
    sellers: int
    workers: int
    steps: int
    seed: int = 1
    worker: list[int] = field(default_factory=list)
    period: list[int] = field(default_factory=list)
    phase: list[int] = field(default_factory=list)
    d0: list[int] = field(default_factory=list)  # per seller x metric
    q: list[int] = field(default_factory=list)  # numerator per million denominators
    cause_ppm: list[list[int]] = field(default_factory=list)  # per seller
    pop_index: int = 0

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        metrics = self.catalog.metrics
        names = [m.name for m in metrics]
        self.pop_index = (names.index("perfect_order_percentage")
                          if "perfect_order_percentage" in names
                          else max(range(len(metrics)), key=lambda i: metrics[i].window_days))
        self.rules = [_Rule.of(m) for m in metrics]
        for i in range(self.sellers):
            self.worker.append(i % self.workers)
            self.period.append(rng.choice((3, 4, 6, 8)))
            self.phase.append(rng.randrange(8))
            per_day = min(5000.0, rng.lognormvariate(math.log(3), 1.2))
            u = rng.random()
            badness = (rng.uniform(0, 0.7) if u < 0.88 else rng.uniform(0.7, 1.2) if u < 0.95
                       else rng.uniform(1.2, 3) if u < 0.99 else rng.uniform(3, 10))
            for m in metrics:
                share = 0.95 if m.denominator == "shipped" else 1.0
                self.d0.append(round(per_day * m.window_days * share))
                noisy = badness * rng.uniform(0.6, 1.4)
                if m.healthy == "below":
                    rate = min(1.0, m.target * noisy)
                else:
                    rate = max(0.0, 1 - (1 - m.target) * noisy)
                self.q.append(round(rate * 1_000_000))
            self.cause_ppm.append([round(min(1.0, CAUSE_RATES.get(c, 0.01) * badness)
                                         * 1_000_000) for c in CAUSE_NAMES])

    def counts(self, seller: int, metric: int, step: int) -> tuple[int, int]:
        j = seller * len(self.rules) + metric
        d = self.d0[j]
        if d:
            d += (step + self.phase[seller]) // self.period[seller]
        return (d * self.q[j] + 500_000) // 1_000_000, d

    def causes(self, seller: int, step: int) -> list[int]:
        _, d = self.counts(seller, self.pop_index, step)
        return [(d * ppm + 500_000) // 1_000_000 for ppm in self.cause_ppm[seller]]

    def changing(self, step: int) -> Iterator[int]:
        """Sellers whose counts differ from the previous step."""
        for i in range(self.sellers):
            if (step + self.phase[i]) % self.period[i] == 0:
                yield i


@dataclass
class _Aggregates:
    """What a worker's fleet series say at one seller step."""

    statuses: list[list[int]]  # metric -> status -> sellers
    buckets: list[list[int]]  # metric -> non-cumulative bucket counts (+Inf last)
    value_sum: list[float]
    numerators: list[int]
    denominators: list[int]
    exported: int  # sellers with a metric in warning or breach

    def copy(self) -> _Aggregates:
        return _Aggregates([list(x) for x in self.statuses], [list(x) for x in self.buckets],
                           list(self.value_sum), list(self.numerators),
                           list(self.denominators), self.exported)


def simulate(fleet: Fleet) -> tuple[list[list[_Aggregates]], list[bytearray]]:
    """Per step and worker, the fleet aggregates; per step, which sellers the
    ``alerting`` mode exports (a flag per seller). Incremental: only sellers whose
    counts moved are re-evaluated."""
    rules = fleet.rules
    nm = len(rules)
    aggs = [_Aggregates([[0] * 4 for _ in rules], [[0] * (len(r.bounds) + 1) for r in rules],
                        [0.0] * nm, [0] * nm, [0] * nm, 0) for _ in range(fleet.workers)]
    cur: list[tuple[int, int, int, int]] = []  # (status, bucket, n, d) per seller x metric
    flags = bytearray(fleet.sellers)

    def evaluate(i: int, step: int) -> None:
        agg = aggs[fleet.worker[i]]
        attention = 0
        for m, rule in enumerate(rules):
            n, d = fleet.counts(i, m, step)
            st = rule.status(n, d)
            b = rule.bucket(n, d) if st != IV else -1
            j = i * nm + m
            if j < len(cur):
                ost, ob, on, od = cur[j]
                agg.statuses[m][ost] -= 1
                agg.numerators[m] -= on
                agg.denominators[m] -= od
                if ob >= 0:
                    agg.buckets[m][ob] -= 1
                    agg.value_sum[m] -= on / od
                cur[j] = (st, b, n, d)
            else:
                cur.append((st, b, n, d))
            agg.statuses[m][st] += 1
            agg.numerators[m] += n
            agg.denominators[m] += d
            if b >= 0:
                agg.buckets[m][b] += 1
                agg.value_sum[m] += n / d
            attention |= st in (WARNING, BREACH)
        if attention != flags[i]:
            agg.exported += 1 if attention else -1
            flags[i] = attention

    for i in range(fleet.sellers):
        evaluate(i, 0)
    per_step = [[a.copy() for a in aggs]]
    exported = [bytearray(flags)]
    for step in range(1, fleet.steps):
        for i in fleet.changing(step):
            evaluate(i, step)
        per_step.append([a.copy() for a in aggs])
        exported.append(bytearray(flags))
    return per_step, exported


# --- OpenMetrics ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Timeline:
    end: int  # seconds; the last sample of every series
    hours: float
    scrape: int
    seller_interval: int

    @property
    def start(self) -> int:
        return self.end - int(self.hours * 3600)

    def fleet_times(self) -> list[int]:
        return list(range(self.end, self.start, -self.scrape))[::-1]

    def seller_times(self) -> list[int]:
        return list(range(self.end, self.start, -self.seller_interval))[::-1]


def end_time(now: float, hours: float, scrape: int) -> int:
    """A recent end such that the backfilled 2-hour blocks give Prometheus's
    compactor nothing to do (no two of them, but the newest, share a 6-hour range)."""
    six = 6 * 3600
    anchor = int(now) // six * six + 4 * 3600
    while anchor > now:
        anchor -= six
    return anchor - scrape if hours <= 6 else int(now) // scrape * scrape


class _Writer:
    """Writes the series of one 2-hour window: one metric name at a time (OpenMetrics
    keeps a family's samples together), each series' samples in time order."""

    def __init__(self, out: IO[str], lo: int, hi: int) -> None:
        self.out, self.lo, self.hi = out, lo, hi
        self.lines = 0

    def family(self, name: str, kind: str = "gauge") -> None:
        self.out.write(f"# TYPE {name} {kind}\n")

    def write(self, chunk: list[str]) -> None:
        self.out.write("".join(chunk))
        self.lines += len(chunk)

    def window(self, times: Sequence[int]) -> list[tuple[int, int]]:
        """(index, time) of the times inside this writer's window."""
        return [(k, t) for k, t in enumerate(times) if self.lo <= t < self.hi]


def _inst(w: int) -> str:
    return f'instance="worker-{w + 1}:6066",job="{JOB}"'


def _le(bound: float) -> str:
    return "+Inf" if bound == math.inf else repr(bound)


def write_window(out: _Writer, fleet: Fleet, timeline: Timeline, mode: Mode,
                 aggs: list[list[_Aggregates]], exported: list[bytearray]) -> None:
    metrics = fleet.catalog.metrics
    nm = len(metrics)
    seller_times = timeline.seller_times()
    fleet_times = timeline.fleet_times()
    sw = out.window(seller_times)
    fw = out.window(fleet_times)

    def step_at(t: int) -> int:
        return max(0, min(len(seller_times) - 1,
                          (t - seller_times[0]) // timeline.seller_interval))

    # Per-seller families.
    ids = [f"S{i:07d}" for i in range(fleet.sellers)]
    insts = [_inst(w) for w in range(fleet.workers)]

    def sellers_at(k: int) -> Iterator[int]:
        if mode == "all":
            return iter(range(fleet.sellers))
        flags = exported[k]
        return (i for i in range(fleet.sellers) if flags[i])

    labels = [[f'{{seller_id="{ids[i]}",metric="{m.name}",{insts[fleet.worker[i]]}'
               for m in metrics] for i in range(fleet.sellers)] if sw else []
    for name in ("ratio", "numerator_orders", "denominator_orders"):
        fam = f"popstream_seller_metric_{name}"
        out.family(fam)
        for k, t in sw:
            chunk = []
            for i in sellers_at(k):
                lab = labels[i]
                for m in range(nm):
                    n, d = fleet.counts(i, m, k)
                    if not d:
                        continue
                    value = repr(n / d) if name == "ratio" else n if name[0] == "n" else d
                    chunk.append(f"{fam}{lab[m]}}} {value} {t}\n")
            out.write(chunk)
    fam = "popstream_seller_metric_status"
    out.family(fam)
    rules = fleet.rules
    for k, t in sw:
        chunk = []
        for i in sellers_at(k):
            lab = labels[i]
            for m in range(nm):
                n, d = fleet.counts(i, m, k)
                chunk.append(f'{fam}{lab[m]},status="{STATUSES[rules[m].status(n, d)]}"}} 1 {t}\n')
        out.write(chunk)
    fam = "popstream_seller_imperfect_orders"
    out.family(fam)
    for k, t in sw:
        chunk = []
        for i in sellers_at(k):
            head = f'{fam}{{seller_id="{ids[i]}",{insts[fleet.worker[i]]},cause="'
            for cause, count in zip(CAUSE_NAMES, fleet.causes(i, k), strict=True):
                if count:
                    chunk.append(f'{head}{cause}"}} {count} {t}\n')
        out.write(chunk)

    # Fleet, catalog and pipeline series, every worker, every scrape.
    def per_worker(fam: str, render: Any) -> None:
        out.family(fam)
        for _, t in fw:
            agg_step = aggs[step_at(t)]
            chunk = []
            for w in range(fleet.workers):
                for labels_, value in render(w, agg_step[w], t):
                    sep = "," if labels_ else ""
                    chunk.append(f"{fam}{{{labels_}{sep}{insts[w]}}} {value} {t}\n")
            out.write(chunk)

    names = [m.name for m in metrics]
    per_worker("popstream_fleet_sellers", lambda w, a, t: [
        (f'metric="{names[m]}",status="{STATUSES[s]}"', a.statuses[m][s])
        for m in range(nm) for s in range(4)])

    def buckets(w: int, a: _Aggregates, t: int) -> list[tuple[str, Any]]:
        rows = []
        for m in range(nm):
            running = 0
            les = [repr(p / q) for p, q in rules[m].bounds] + ["+Inf"]
            for le, count in zip(les, a.buckets[m], strict=True):
                running += count
                rows.append((f'metric="{names[m]}",le="{le}"', running))
        return rows

    per_worker("popstream_fleet_metric_value_bucket", buckets)
    per_worker("popstream_fleet_metric_value_count", lambda w, a, t: [
        (f'metric="{names[m]}"', sum(a.buckets[m])) for m in range(nm)])
    per_worker("popstream_fleet_metric_value_sum", lambda w, a, t: [
        (f'metric="{names[m]}"', round(a.value_sum[m], 6)) for m in range(nm)])
    per_worker("popstream_fleet_numerator_orders", lambda w, a, t: [
        (f'metric="{names[m]}"', a.numerators[m]) for m in range(nm)])
    per_worker("popstream_fleet_denominator_orders", lambda w, a, t: [
        (f'metric="{names[m]}"', a.denominators[m]) for m in range(nm)])
    tracked = [fleet.worker.count(w) for w in range(fleet.workers)]
    per_worker("popstream_sellers_tracked", lambda w, a, t: [("", tracked[w])])
    per_worker("popstream_sellers_unexported", lambda w, a, t: [
        ("", 0 if mode == "all" else tracked[w] - a.exported)])
    per_worker("popstream_sellers", lambda w, a, t: [("", tracked[w])])
    per_worker("popstream_metric_target_ratio", lambda w, a, t: [
        (f'metric="{m.name}",healthy="{m.healthy}"', repr(float(m.target))) for m in metrics])
    per_worker("popstream_metric_warning_ratio", lambda w, a, t: [
        (f'metric="{m.name}"', repr(float(m.exact_warning))) for m in metrics])
    per_worker("popstream_metric_min_orders", lambda w, a, t: [
        (f'metric="{names[m]}"', metrics[m].min_orders) for m in range(nm)])
    per_worker("popstream_metric_min_count", lambda w, a, t: [
        (f'metric="{names[m]}"', metrics[m].min_count) for m in range(nm)])
    per_worker("popstream_metric_window_days", lambda w, a, t: [
        (f'metric="{m.name}"', m.window_days) for m in metrics])

    # Pipeline: counters grow with time at a per-worker pace.
    def since(t: int) -> int:
        return t - timeline.start

    def events_per_s(w: int) -> float:
        return 400.0 + 100 * w

    out.family("up")
    for _, t in fw:
        out.write([f"up{{{insts[w]}}} 1 {t}\n" for w in range(fleet.workers)])
    per_worker("popstream_events_processed_total", lambda w, a, t: [
        (f'type="{ty}",outcome="applied"', int(since(t) * events_per_s(w) / (k + 1)))
        for k, ty in enumerate(EVENT_TYPES)])
    per_worker("popstream_messages_consumed_total", lambda w, a, t: [
        (f'topic="popstream-{ty}"', int(since(t) * events_per_s(w) / (k + 1)))
        for k, ty in enumerate(EVENT_TYPES)])
    per_worker("popstream_events_invalid_total", lambda w, a, t: [
        ('reason="json"', since(t) // 600), ('reason="schema"', since(t) // 900)])
    latency_share = [0.05, 0.15, 0.3, 0.45, 0.6, 0.72, 0.85, 0.93, 0.96, 0.98, 0.995, 0.999,
                     0.9995, 0.9999, 1, 1, 1, 1, 1]

    def latency(w: int, a: _Aggregates, t: int) -> list[tuple[str, Any]]:
        total = int(since(t) * events_per_s(w))
        return [(f'le="{_le(b)}"', int(total * s))
                for b, s in zip((*LATENCY_BOUNDS, math.inf), latency_share, strict=True)]

    per_worker("popstream_event_latency_seconds_bucket", latency)
    per_worker("popstream_event_latency_seconds_count", lambda w, a, t: [
        ("", int(since(t) * events_per_s(w)))])
    per_worker("popstream_event_latency_seconds_sum", lambda w, a, t: [
        ("", round(since(t) * events_per_s(w) * 0.012, 3))])
    per_worker("popstream_consumer_lag_messages", lambda w, a, t: [
        (f'topic="popstream-{ty}",partition="{p}"', (t // 15 + p + w) % 40)
        for ty in EVENT_TYPES[:3] for p in range(w, PARTITIONS, fleet.workers)])
    per_worker("popstream_pending_orders", lambda w, a, t: [("", 100 + (t // 60) % 50)])
    per_worker("popstream_tracked_orders", lambda w, a, t: [
        ("", a.denominators[fleet.pop_index])])
    per_worker("popstream_clock_seconds", lambda w, a, t: [("", t)])
    per_worker("popstream_worker_started_seconds", lambda w, a, t: [
        ("", timeline.start - 3600 * (w + 1))])
    per_worker("popstream_worker_ready", lambda w, a, t: [("", 1)])


# --- backfill and serve -----------------------------------------------------------


@dataclass
class Dataset:
    path: Path  # the TSDB directory
    timeline: Timeline
    mode: Mode
    sellers: int
    seller: str  # a seller in breach at the end, exported in every mode
    series: int
    samples: int
    lines: int
    generate_s: float  # writing OpenMetrics text
    backfill_s: float  # the rest of the wall time: waiting for promtool


def pick_seller(fleet: Fleet, exported: list[bytearray]) -> str:
    """The largest seller in breach at the last step (exported in both modes)."""
    last = fleet.steps - 1
    best, best_d = 0, -1
    for i in range(fleet.sellers):
        if not exported[last][i]:
            continue
        if any(fleet.rules[m].status(*fleet.counts(i, m, last)) == BREACH
               for m in range(len(fleet.rules))):
            _, d = fleet.counts(i, fleet.pop_index, last)
            if d > best_d:
                best, best_d = i, d
    return f"S{best:07d}"


def backfill(fleet: Fleet, timeline: Timeline, mode: Mode, tsdb: Path, scratch: Path,
             aggs: list[list[_Aggregates]], exported: list[bytearray],
             log: IO[str] = sys.stderr, overlap: bool = False) -> Dataset:
    """One OpenMetrics file per 2-hour block, each backfilled by promtool into
    ``tsdb``. With ``overlap``, files are written while promtool reads the previous
    ones (all of them on disk at once: for small fleets)."""
    tsdb.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    gen = 0.0
    lines = 0
    pending: list[tuple[subprocess.Popen[str], Path, float, str]] = []

    def finish() -> None:
        proc, path, t_start, label = pending.pop(0)
        _, err = proc.communicate()
        path.unlink()
        if proc.returncode:
            raise RuntimeError(f"promtool failed on the {mode} window at {label}: "
                               f"{err.strip()[-2000:]}")
        print(f"  {mode}: window {label} backfilled in {time.perf_counter() - t_start:.0f} s",
              file=log, flush=True)

    times = timeline.fleet_times()
    lo = timeline.start // BLOCK_S * BLOCK_S
    while lo <= timeline.end:
        if not any(lo <= t < lo + BLOCK_S for t in times):
            lo += BLOCK_S
            continue
        label = time.strftime("%H:%M UTC", time.gmtime(lo))
        path = scratch / f"{mode}-{lo}.om"
        t0 = time.perf_counter()
        with path.open("w", buffering=1 << 22) as f:
            writer = _Writer(f, lo, lo + BLOCK_S)
            write_window(writer, fleet, timeline, mode, aggs, exported)
            f.write("# EOF\n")
        lines += writer.lines
        gen += time.perf_counter() - t0
        print(f"  {mode}: window {label}: {writer.lines:,} samples, "
              f"{path.stat().st_size / 1e9:.2f} GB written in {time.perf_counter() - t0:.0f} s",
              file=log, flush=True)
        pending.append((subprocess.Popen(
            ["promtool", "tsdb", "create-blocks-from", "openmetrics", "--quiet", str(path),
             str(tsdb)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True),
            path, time.perf_counter(), label))
        if not overlap:
            finish()
        lo += BLOCK_S
    while pending:
        finish()
    series, samples = _block_stats(tsdb)
    total = time.perf_counter() - started
    return Dataset(tsdb, timeline, mode, fleet.sellers, pick_seller(fleet, exported), series,
                   samples, lines, round(gen, 1), round(total - gen, 1))


def _block_stats(tsdb: Path) -> tuple[int, int]:
    """(most series in one block, samples in all blocks), from the blocks' meta.json."""
    series = samples = 0
    for meta in tsdb.glob("*/meta.json"):
        stats = json.loads(meta.read_text())["stats"]
        series = max(series, stats["numSeries"])
        samples += stats["numSamples"]
    return series, samples


@contextmanager
def prometheus(tsdb: Path, workdir: Path, ready_timeout: float = 300) -> Iterator[int]:
    """Debian's prometheus on loopback over ``tsdb``, default query limits; yields
    its port."""
    config = workdir / "prometheus-bench.yml"
    config.write_text("global:\n  scrape_interval: 15s\n")
    port = free_port()
    log = (workdir / "prometheus-bench.log").open("wb")
    proc = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tsdb}",
         f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=30d"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {proc.returncode}: see "
                                   f"{workdir / 'prometheus-bench.log'}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise RuntimeError("prometheus not ready in time") from None
                time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


# --- the queries ------------------------------------------------------------------

# Grafana's rounding of a computed interval (kbn.roundInterval), in milliseconds.
_ROUND: Final = ((15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500),
                 (1500, 1000), (3500, 2000), (7500, 5000), (12500, 10000), (17500, 15000),
                 (25000, 20000), (45000, 30000), (90000, 60000), (210000, 120000),
                 (450000, 300000), (1050000, 600000), (1500000, 900000),
                 (2700000, 1200000), (5400000, 1800000), (9000000, 3600000),
                 (16200000, 7200000), (32400000, 10800000), (86400000, 43200000))


def grafana_step(range_s: float, width: int) -> int:
    """The interval Grafana queries a panel ``width`` columns wide at: the range over
    its width in pixels, rounded, never under the datasource's timeInterval."""
    ms = range_s * 1000 / (SCREEN_PX * width / 24)
    rounded = next((r for limit, r in _ROUND if ms < limit), 86400000)
    return max(TIME_INTERVAL_S, rounded // 1000)


def rate_interval(step: int) -> str:
    """Grafana's ``$__rate_interval``: max(interval + scrape interval, 4 scrape intervals)."""
    return f"{max(step + TIME_INTERVAL_S, 4 * TIME_INTERVAL_S)}s"


@dataclass
class QueryResult:
    dashboard: str
    panel: str
    ref_id: str
    kind: str  # "range" or "instant"
    step: int | None
    expr: str
    seconds: float  # the first run
    median_s: float  # median of the runs
    series: int
    rows_expected: int | None
    samples: int | None  # Prometheus's totalQueryableSamples
    peak_samples: int | None
    error: str | None


def _post(port: int, path: str, params: dict[str, str], timeout: float) -> dict[str, Any]:
    data = urllib.parse.urlencode(params).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            doc: dict[str, Any] = json.loads(r.read())
    except urllib.error.HTTPError as exc:
        doc = json.loads(exc.read() or b"{}") or {"status": "error", "error": str(exc)}
    return doc


def instant(port: int, expr: str, at: int) -> list[dict[str, Any]]:
    """An instant query's result; raises on an error."""
    doc = _post(port, "/api/v1/query", {"query": expr, "time": str(at)}, 60)
    if doc.get("status") != "success":
        raise RuntimeError(f"{expr}: {doc}")
    result: list[dict[str, Any]] = doc["data"]["result"]
    return result


def _measure(port: int, dashboard: str, panel: str, ref_id: str, expr: str,
             instant: bool, step: int | None, end: int, range_s: float, repeat: int,
             rows: int | None, timeout: float) -> QueryResult:
    if instant:
        path, params = "/api/v1/query", {"query": expr, "time": str(end)}
    else:
        assert step is not None
        start = (end - int(range_s)) // step * step  # Grafana aligns to the step
        path, params = "/api/v1/query_range", {
            "query": expr, "start": str(start), "end": str(end // step * step),
            "step": str(step)}
    params["stats"] = "all"
    times, doc = [], {}
    for _ in range(repeat):
        t0 = time.perf_counter()
        doc = _post(port, path, params, timeout)
        times.append(time.perf_counter() - t0)
    ok = doc.get("status") == "success"
    stats = (doc.get("data") or {}).get("stats", {}).get("samples", {}) if ok else {}
    return QueryResult(
        dashboard, panel, ref_id, "instant" if instant else "range", step, expr,
        round(times[0], 4), round(statistics.median(times), 4),
        len(doc["data"]["result"]) if ok else 0, rows,
        stats.get("totalQueryableSamples"), stats.get("peakSamples"),
        None if ok else str(doc.get("error", doc))[:300])


def resolve_variables(port: int, board: dict[str, Any], at: int, repeat: int = 1,
                      timeout: float = 130, seller: str = ""
                      ) -> tuple[dict[str, str], list[QueryResult]]:
    """Run the dashboard's ``query_result`` variables as Grafana does (an instant
    query at the end of the range, ``$seller`` filled in): their interpolated
    values, and their timings."""
    values, results = {}, []
    for var in variables(board):
        expr = var.expr.replace("$seller", seller)
        result = _measure(port, "", f"variable ${var.name}", "var", expr, True, None,
                          at, 0, repeat, WORST_N if "$seller" not in var.expr else 1,
                          timeout)
        ids = var.values(instant(port, expr, at)) if result.error is None else []
        values[var.name] = Variable.interpolate(ids)
        results.append(result)
    return values, results


def run_queries(port: int, dataset: Dataset, repeat: int = 3,
                timeout: float = 130) -> list[QueryResult]:
    """Every query of every dashboard, as Grafana runs it, ``repeat`` times each:
    the dashboard's variables first, then its panels with the variables filled in."""
    end, range_s = dataset.timeline.end, dataset.timeline.hours * 3600
    results = []
    for name, board in dashboards(default_catalog()).items():
        values, timings = resolve_variables(port, board, end, repeat, timeout,
                                            dataset.seller)
        for r in timings:
            r.dashboard = name
        results += timings
        widths = {p["title"]: p["gridPos"]["w"] for p in board["panels"]}
        for q in panel_targets(board):
            step = grafana_step(range_s, widths[q.panel])
            expr = q.runnable(rate_interval(step), dataset.seller, values)
            results.append(_measure(port, name, q.panel, q.ref_id, expr, q.instant,
                                    None if q.instant else step, end, range_s, repeat,
                                    q.rows, timeout))
    return results


def dashboard_loads(port: int, dataset: Dataset, concurrency: int = 6) -> dict[str, float]:
    """Seconds until every query of a dashboard has answered, sent ``concurrency`` at
    a time (a browser's connections per host), variables first: what a user waits
    for on opening it."""
    from concurrent.futures import ThreadPoolExecutor

    end, range_s = dataset.timeline.end, dataset.timeline.hours * 3600
    loads = {}
    for name, board in dashboards(default_catalog()).items():
        widths = {p["title"]: p["gridPos"]["w"] for p in board["panels"]}
        t0 = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            texts = list(pool.map(lambda v: Variable.interpolate(v.values(instant(
                port, v.expr.replace("$seller", dataset.seller), end))), variables(board)))
            values = {v.name: text for v, text in zip(variables(board), texts, strict=True)}
            jobs = []
            for q in panel_targets(board):
                step = grafana_step(range_s, widths[q.panel])
                jobs.append((q, step, q.runnable(rate_interval(step), dataset.seller, values)))
            list(pool.map(lambda job: _measure(
                port, "", job[0].panel, job[0].ref_id, job[2], job[0].instant,
                None if job[0].instant else job[1], end, range_s, 1, None, 130), jobs))
        loads[name] = round(time.perf_counter() - t0, 3)
    return loads


# What the dashboards did before issue #10, for comparison (not panels any more): a
# range query over every seller's series, and a worst-N table as a range query.
REFERENCE: Final = (
    ("distribution across sellers, by range over every seller",
     'quantile(0.5, popstream_seller_metric_ratio{metric="late_shipment_rate"})'),
    ("20 worst sellers, by range",
     'topk(20, popstream_seller_metric_ratio{metric="late_shipment_rate"})'),
)


def run_reference(port: int, dataset: Dataset, timeout: float = 130) -> list[QueryResult]:
    end, range_s = dataset.timeline.end, dataset.timeline.hours * 3600
    step = grafana_step(range_s, 12)
    return [_measure(port, "before #10", title, "A", expr, False, step, end, range_s, 1,
                     None, timeout) for title, expr in REFERENCE]


def panel_times(results: list[QueryResult]) -> list[dict[str, Any]]:
    """Per panel: its queries' median times added up (Grafana sends them together;
    on two cores the sum is the honest figure), the variable it waits for counted
    in (a worst-N table and the variable ranking its sellers), and any failure."""
    panels: dict[tuple[str, str], dict[str, Any]] = {}
    for r in results:
        if r.ref_id == "var":
            continue
        p = panels.setdefault((r.dashboard, r.panel), {
            "dashboard": r.dashboard, "panel": r.panel, "queries": 0, "seconds": 0.0,
            "errors": 0})
        p["queries"] += 1
        p["seconds"] = round(p["seconds"] + r.median_s, 4)
        p["errors"] += r.error is not None
    for r in results:
        if r.ref_id != "var":
            continue
        metric = r.panel.removeprefix("variable $worst_")
        for p in panels.values():
            if p["dashboard"] == r.dashboard and p["panel"].startswith(
                    f"{metric}: {WORST_N} worst"):
                p["queries"] += 1
                p["seconds"] = round(p["seconds"] + r.median_s, 4)
                p["errors"] += r.error is not None
    return list(panels.values())


def prometheus_version() -> str:
    out = subprocess.run(["prometheus", "--version"], capture_output=True, text=True)
    first = (out.stdout or out.stderr).splitlines()
    return first[0] if first else "unknown"


def build_and_measure(sellers: int, modes: Sequence[Mode], workdir: Path, hours: float = 6,
                      workers: int = 4, scrape: int = 15, seller_interval: int = 240,
                      repeat: int = 3, seed: int = 1, log: IO[str] = sys.stderr,
                      keep: bool = False) -> dict[str, Any]:
    """Generate, backfill, serve and query each mode; the report as a document."""
    timeline = Timeline(end_time(time.time(), hours, scrape), hours, scrape, seller_interval)
    steps = len(timeline.seller_times())
    t0 = time.perf_counter()
    fleet = Fleet(default_catalog(), sellers, workers, steps, seed)
    aggs, exported = simulate(fleet)
    sim_s = time.perf_counter() - t0
    print(f"  {sellers:,} sellers simulated over {steps} steps in {sim_s:.0f} s", file=log,
          flush=True)
    report: dict[str, Any] = {
        "benchmark": "dashboards", "prometheus": prometheus_version(), "sellers": sellers,
        "hours": hours, "workers": workers, "scrape_interval_s": scrape,
        "seller_interval_s": seller_interval, "end": timeline.end, "goal_s": GOAL_S,
        "simulate_s": round(sim_s, 1), "modes": {}}
    for mode in modes:
        tsdb = workdir / f"tsdb-{mode}"
        saved = workdir / f"dataset-{mode}.json"
        key = {"sellers": sellers, "hours": hours, "workers": workers, "scrape": scrape,
               "seller_interval": seller_interval, "seed": seed}
        if keep and saved.exists() and json.loads(saved.read_text())["key"] == key:
            doc = json.loads(saved.read_text())
            dataset = Dataset(tsdb, Timeline(**doc["timeline"]), mode, sellers,
                              **doc["dataset"])
            print(f"  {mode}: reusing {tsdb}", file=log)
        else:
            subprocess.run(["rm", "-rf", str(tsdb)], check=False)
            dataset = backfill(fleet, timeline, mode, tsdb, workdir, aggs, exported, log,
                               overlap=sellers <= 20_000)
            saved.write_text(json.dumps({"key": key, "timeline": asdict(dataset.timeline),
                                         "dataset": {
                "seller": dataset.seller, "series": dataset.series,
                "samples": dataset.samples, "lines": dataset.lines,
                "generate_s": dataset.generate_s, "backfill_s": dataset.backfill_s}}))
        with prometheus(tsdb, workdir) as port:
            results = run_queries(port, dataset, repeat)
            reference = run_reference(port, dataset)
            loads = dashboard_loads(port, dataset)
        report["modes"][mode] = {
            "seller": dataset.seller, "series": dataset.series, "samples": dataset.samples,
            "generate_s": dataset.generate_s, "backfill_s": dataset.backfill_s,
            "exported_sellers_at_end": sum(exported[-1]) if mode == "alerting" else sellers,
            "queries": [asdict(r) for r in results], "panels": panel_times(results),
            "dashboard_load_s": loads, "before_issue_10": [asdict(r) for r in reference]}
        if not keep:
            subprocess.run(["rm", "-rf", str(tsdb)], check=False)
    return report


def table(report: dict[str, Any]) -> str:
    lines = []
    for mode, doc in report["modes"].items():
        lines.append(f"\n{report['sellers']:,} sellers, export mode {mode}: {doc['series']:,} "
                     f"series, {doc['samples']:,} samples; goal: every panel < {GOAL_S} s")
        lines.append(f"{'dashboard':<14} {'panel':<62} {'ref':>3} {'kind':<7} {'step':>5} "
                     f"{'first s':>8} {'median s':>8} {'series':>6} {'samples':>11}  result")
        for q in doc["queries"]:
            result = q["error"] or ("ok" if q["rows_expected"] is None
                                    else f"{q['series']}/{q['rows_expected']} rows")
            samples = "" if q["samples"] is None else f"{q['samples']:,}"
            lines.append(f"{q['dashboard']:<14} {q['panel'][:62]:<62} {q['ref_id']:>3} "
                         f"{q['kind']:<7} {q['step'] or '':>5} {q['seconds']:>8.3f} "
                         f"{q['median_s']:>8.3f} {q['series']:>6} {samples:>11}  {result}")
        for q in doc.get("before_issue_10", []):
            lines.append(f"{'before #10':<14} {q['panel'][:62]:<62} {'':>3} {q['kind']:<7} "
                         f"{q['step']:>5} {q['seconds']:>8.3f} {'':>8} {q['series']:>6} "
                         f"{'':>11}  {q['error'] or 'ok'}")
        lines.append("whole dashboard, 6 queries at a time: " + ", ".join(
            f"{k} {v:.2f} s" for k, v in doc.get("dashboard_load_s", {}).items()))
        slow = [p for p in doc["panels"] if p["seconds"] >= GOAL_S or p["errors"]]
        worst = max(doc["panels"], key=lambda p: p["seconds"])
        lines.append(f"slowest panel: {worst['dashboard']}: {worst['panel']} "
                     f"{worst['seconds']:.3f} s; panels over the goal or failing: {len(slow)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sellers", type=int, default=100_000)
    parser.add_argument("--hours", type=float, default=6)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--scrape", type=int, default=15, help="fleet series interval, s")
    parser.add_argument("--seller-interval", type=int, default=240,
                        help="per-seller series interval, s (under 300: the lookback)")
    parser.add_argument("--modes", default="all,alerting")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the data goes (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the TSDBs in --workdir")
    parser.add_argument("--out", type=Path, default=Path("bench/results/dashboards.json"))
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    modes = [m for m in MODES if m in args.modes.split(",")]
    with tempfile.TemporaryDirectory(prefix="dashboards-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        report = build_and_measure(args.sellers, modes, workdir, args.hours, args.workers,
                                   args.scrape, args.seller_interval, args.repeat,
                                   keep=args.keep)
    print(table(report))
    if not args.no_write:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwritten to {args.out}")
    failing = [p for doc in report["modes"].values() for p in doc["panels"] if p["errors"]]
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
