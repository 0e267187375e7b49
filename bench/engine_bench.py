"""Engine benchmark (issue #2): events/s through decode+validate+apply on one core,
and bytes of state per tracked order, on a generated log.

    python -m bench.engine_bench --events 1000000

The log (contract v1.1: all nine event types, deliveries and seller replies
included) is generated once and cached under ``.cache/bench/``; lines are read into
memory before timing so that disk I/O is not measured. ``--catalog`` picks the
metrics (a profile: amazon, walmart, ebay; default: the default catalog); walmart's
response rate makes the engine keep a record per buyer message too. Throughput is the median of
``--runs`` runs, each on a fresh engine. State size is measured with tracemalloc on
a separate pass (tracemalloc slows the code it watches), as the Python heap the
engine holds after the log divided by the orders it tracks; the snapshot size per
order (what the Kafka worker persists) is reported beside it.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import orjson

from streams.engine.catalog import PROFILES, Catalog, default_catalog
from streams.engine.engine import Engine, PythonEngine
from streams.engine.events import US_PER_DAY, parse_timestamp
from streams.errors import InvalidEvent
from streams.generator import LogSpec, generate

AS_OF = "2024-06-15T00:00:00Z"
EVENTS_PER_ORDER = 3.28  # measured on the generator's default profiles (2.22 before v1.1)
LOG_VERSION = "v11"
# Issue #14's goals for the engine alone (decode + validate + apply, one core).
GOAL_EVENTS_PER_SECOND = 1_000_000
GOAL_BYTES_PER_ORDER = 100  # in the cached log's name: a log of contract v1 is made again


def log_path(events: int, sellers: int) -> Path:
    cache = Path(os.environ.get("POPSTREAM_CACHE_DIR", ".cache")) / "bench"
    cache.mkdir(parents=True, exist_ok=True)
    return cache / f"events-{LOG_VERSION}-{events}-{sellers}.jsonl"


def ensure_log(events: int, sellers: int, days: int) -> Path:
    path = log_path(events, sellers)
    if path.exists():
        return path
    spec = LogSpec(
        sellers=sellers,
        orders_per_seller_per_day=events / EVENTS_PER_ORDER / sellers / days,
        days=days,
        end_us=parse_timestamp(AS_OF),
        seed=42,
    )
    tmp = path.with_suffix(".tmp")
    started = time.perf_counter()
    n = 0
    with open(tmp, "wb") as out:
        for event in generate(spec):
            out.write(orjson.dumps(event) + b"\n")
            n += 1
            if n % 200_000 == 0:
                print(f"  generated {n:,} events", file=sys.stderr, flush=True)
    tmp.rename(path)
    print(f"  log: {n:,} events in {time.perf_counter() - started:.1f} s -> {path}",
          file=sys.stderr)
    return path


def event_types(lines: list[bytes]) -> dict[str, int]:
    """Events per type in the log, most frequent first (the mix being measured)."""
    counts: dict[str, int] = {}
    for line in lines:
        kind = orjson.loads(line).get("type")
        counts[str(kind)] = counts.get(str(kind), 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


BATCH = 1000  # lines per call on the native engine's batch path (a Kafka fetch's worth)


def run_once(lines: list[bytes], now: int, catalog: Catalog,
             engine_cls: type[PythonEngine] = Engine, batched: bool = False,
             ) -> tuple[float, PythonEngine, int]:
    """Seconds to decode, validate and apply every line on a fresh engine. One
    ``apply_bytes`` call per line, or (``batched``, native engine only) one
    ``apply_lines`` call per :data:`BATCH` lines, rejects explained afterwards as
    the worker does."""
    # A fixed clock, as in `popstream replay`: events after as-of are counted, not
    # kept (a live worker's clock is "now", so it holds next to nothing either).
    engine = engine_cls(now=now, fixed_clock=True, catalog=catalog)
    rejected = 0
    gc.collect()
    started = time.perf_counter()
    if batched:
        apply_lines = engine.apply_lines  # type: ignore[attr-defined]
        for i in range(0, len(lines), BATCH):
            codes = apply_lines(lines[i:i + BATCH])
            if max(codes) >= REJECTED_CODE:
                rejected += sum(1 for c in codes if c >= REJECTED_CODE)
    else:
        apply_bytes = engine.apply_bytes
        for line in lines:
            try:
                apply_bytes(line)
            except InvalidEvent:
                rejected += 1
    return time.perf_counter() - started, engine, rejected


REJECTED_CODE = 5  # the native core's first rejection code (streams.engine.native)


def state_bytes(lines: list[bytes], now: int, catalog: Catalog,
                engine_cls: type[PythonEngine]) -> tuple[int, int, PythonEngine]:
    """``(Python heap, native core heap)`` bytes an engine holds after the log: the
    first by tracemalloc (which sees only Python's allocators), the second by the
    core's own capacity-based accounting (every slab chunk and table at capacity)."""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    _, engine, _ = run_once(lines, now, catalog, engine_cls)
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    native = getattr(engine, "memory_bytes", None)
    return held, native() if native is not None else 0, engine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--sellers", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=95)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--catalog", choices=sorted(PROFILES), default=None,
                        help="a profile (default: the default catalog)")
    parser.add_argument("--no-write", action="store_true", help="do not write bench/results")
    parser.add_argument("--no-python", action="store_true",
                        help="measure the native engine only (not the Python one beside it)")
    args = parser.parse_args(argv)
    catalog = default_catalog() if args.catalog is None else Catalog(PROFILES[args.catalog])

    path = ensure_log(args.events, args.sellers, args.days)
    lines = path.read_bytes().splitlines()
    now = parse_timestamp(AS_OF)
    by_type = event_types(lines)
    print(f"engine bench: {len(lines):,} events, {args.sellers:,} sellers, "
          f"{args.days} days, as of {AS_OF}, metrics "
          f"{', '.join(m.name for m in catalog.metrics)}\n"
          f"  events by type: {', '.join(f'{t} {n:,}' for t, n in by_type.items())}",
          file=sys.stderr)

    native = Engine is not PythonEngine
    contenders: list[tuple[str, type[PythonEngine], bool]] = []
    if native:
        contenders += [("native, 1000 lines a call", Engine, True),
                       ("native, one call an event", Engine, False)]
    if not native or not args.no_python:
        contenders.append(("python", PythonEngine, False))
    # Runs alternate between contenders: the machine's speed drifts within minutes.
    timings: dict[str, list[float]] = {name: [] for name, _, _ in contenders}
    for run in range(args.runs):
        for name, cls, batched in contenders:
            seconds, engine, rejected = run_once(lines, now, catalog, cls, batched)
            timings[name].append(seconds)
            print(f"  run {run + 1} {name:<28}{len(lines) / seconds:>12,.0f} events/s "
                  f"({seconds:.2f} s, {rejected} rejected)", file=sys.stderr)
            del engine
    headline = contenders[0][0]
    median = statistics.median(timings[headline])

    held, core_bytes, engine = state_bytes(lines, now, catalog, contenders[0][1])
    if native and "python" in timings:
        # The two engines must agree on every seller's every metric.
        python_held, _, reference = state_bytes(lines, now, catalog, PythonEngine)
        if reference.report() != engine.report():
            print("engine bench: the native and Python engines disagree", file=sys.stderr)
            return 1
        python_orders = reference.tracked_orders
        del reference
    orders = engine.tracked_orders
    snapshot = engine.snapshot()
    report_started = time.perf_counter()
    report = engine.report()
    report_seconds = time.perf_counter() - report_started

    result = {
        "benchmark": "engine",
        "events": len(lines),
        "sellers": args.sellers,
        "days": args.days,
        "runs": args.runs,
        "catalog": args.catalog or "default",
        "metrics": [m.name for m in catalog.metrics],
        "events_by_type": by_type,
        "engine": "native" if native else "python",
        "events_per_second_median": round(len(lines) / median),
        "events_per_second_runs": [round(len(lines) / t) for t in timings[headline]],
        "contenders": {name: {"events_per_second_median": round(len(lines) / statistics.median(t)),
                              "events_per_second_runs": [round(len(lines) / x) for x in t]}
                       for name, t in timings.items()},
        "tracked_orders": orders,
        "pending_orders": engine.pending_orders,
        "state_bytes_python_heap": held,
        "state_bytes_native_core": core_bytes,
        "state_bytes_per_tracked_order": round((held + core_bytes) / orders, 1),
        "snapshot_bytes": len(snapshot),
        "snapshot_bytes_per_tracked_order": round(len(snapshot) / orders, 1),
        "report_seconds_all_sellers": round(report_seconds, 3),
        "sellers_reported": len(report),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "log_days_per_window": args.days,
        "us_per_day": US_PER_DAY,
    }
    if native and "python" in timings:
        result["python_state_bytes_per_tracked_order"] = round(python_held / python_orders, 1)
        result["agrees_with_python_engine"] = True
    others = "".join(
        f"  {name:<28}{c['events_per_second_median']:>12,} events/s\n"
        for name, c in result["contenders"].items() if name != headline)
    print(
        f"\n  throughput   {result['events_per_second_median']:>12,} events/s ({headline}, "
        f"median of {args.runs}; goal >= {GOAL_EVENTS_PER_SECOND:,}, issue #14)\n"
        f"{others}"
        f"  state        {result['state_bytes_per_tracked_order']:>12} bytes/order in memory "
        f"({orders:,} orders; goal <= {GOAL_BYTES_PER_ORDER}, issue #14)\n"
        + (f"  python state {result['python_state_bytes_per_tracked_order']:>12} bytes/order\n"
           if "python_state_bytes_per_tracked_order" in result else "")
        + f"  snapshot     {result['snapshot_bytes_per_tracked_order']:>12} bytes/order\n"
        f"  report       {report_seconds:>12.3f} s for {len(report):,} sellers",
        file=sys.stderr,
    )
    if not args.no_write:
        out_dir = Path("bench/results")
        out_dir.mkdir(parents=True, exist_ok=True)
        out = out_dir / "engine.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"  wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
