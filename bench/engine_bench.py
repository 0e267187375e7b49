"""Engine benchmark (issue #2): events/s through decode+validate+apply on one core,
and bytes of state per tracked order, on a generated log.

    python -m bench.engine_bench --events 1000000

The log is generated once and cached under ``.cache/bench/``; lines are read into
memory before timing so that disk I/O is not measured. Throughput is the median of
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

from streams.engine.engine import Engine
from streams.engine.events import US_PER_DAY, parse_timestamp
from streams.errors import InvalidEvent
from streams.generator import LogSpec, generate

AS_OF = "2024-06-15T00:00:00Z"
EVENTS_PER_ORDER = 2.22  # measured on the generator's default profiles


def log_path(events: int, sellers: int) -> Path:
    cache = Path(os.environ.get("POPSTREAM_CACHE_DIR", ".cache")) / "bench"
    cache.mkdir(parents=True, exist_ok=True)
    return cache / f"events-{events}-{sellers}.jsonl"


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


def run_once(lines: list[bytes], now: int) -> tuple[float, Engine, int]:
    # A fixed clock, as in `popstream replay`: events after as-of are counted, not
    # kept (a live worker's clock is "now", so it holds next to nothing either).
    engine = Engine(now=now, fixed_clock=True)
    apply_bytes = engine.apply_bytes
    rejected = 0
    gc.collect()
    started = time.perf_counter()
    for line in lines:
        try:
            apply_bytes(line)
        except InvalidEvent:
            rejected += 1
    return time.perf_counter() - started, engine, rejected


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--sellers", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=95)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="do not write bench/results")
    args = parser.parse_args(argv)

    path = ensure_log(args.events, args.sellers, args.days)
    lines = path.read_bytes().splitlines()
    now = parse_timestamp(AS_OF)
    print(f"engine bench: {len(lines):,} events, {args.sellers:,} sellers, "
          f"{args.days} days, as of {AS_OF}", file=sys.stderr)

    timings = []
    engine: Engine | None = None
    for run in range(args.runs):
        seconds, engine, rejected = run_once(lines, now)
        timings.append(seconds)
        print(f"  run {run + 1}: {len(lines) / seconds:,.0f} events/s "
              f"({seconds:.2f} s, {rejected} rejected)", file=sys.stderr)
        del engine
        engine = None
    median = statistics.median(timings)

    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    _, engine, _ = run_once(lines, now)
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
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
        "events_per_second_median": round(len(lines) / median),
        "events_per_second_runs": [round(len(lines) / t) for t in timings],
        "tracked_orders": orders,
        "pending_orders": engine.pending_orders,
        "state_bytes_python_heap": held,
        "state_bytes_per_tracked_order": round(held / orders, 1),
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
    print(
        f"\n  throughput   {result['events_per_second_median']:>12,} events/s (median of "
        f"{args.runs}; target >= 200,000)\n"
        f"  state        {result['state_bytes_per_tracked_order']:>12} bytes/order in memory "
        f"({orders:,} orders; target <= 200)\n"
        f"  snapshot     {result['snapshot_bytes_per_tracked_order']:>12} bytes/order\n"
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
