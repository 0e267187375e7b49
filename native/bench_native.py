"""NativeEngine against Engine on the engine benchmark's logs (issue #14).

    PYTHONPATH=. python native/bench_native.py [--events 200000|1000000] [--runs 3] [--batch 1000]

Decode + validate + apply on one core, fixed clock as of the benchmark's AS_OF (as
``bench/engine_bench.py``), runs alternating: the Python engine (``apply_bytes`` a
line), the native engine a line at a time (``apply_bytes``), and in batches
(``apply_lines``); each run on a fresh engine, lines in memory before timing.
Memory first, in the fresh process: the core's heap (``memory_bytes``,
capacity-based) and the process's RSS growth per order held; at the end the Python
engine's tracemalloc heap. Then exactness (every seller's sums, outcome counts,
orders held and pending, reported sellers).
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import sys
import time
import tracemalloc
from collections import Counter

from bench.engine_bench import AS_OF, ensure_log
from streams.engine.engine import Engine
from streams.engine.events import parse_timestamp
from streams.engine.native import NativeEngine
from streams.errors import PopstreamError


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def run_python(lines: list[bytes], now: int) -> tuple[float, Engine, Counter[str]]:
    engine = Engine(now=now, fixed_clock=True)
    apply_bytes = engine.apply_bytes
    counts: Counter[str] = Counter()
    gc.collect()
    t = time.perf_counter()
    for line in lines:
        try:
            counts[apply_bytes(line).value] += 1
        except PopstreamError:
            counts["rejected"] += 1
    return time.perf_counter() - t, engine, counts


def run_native_each(lines: list[bytes], now: int) -> tuple[float, NativeEngine, Counter[str]]:
    engine = NativeEngine(now=now, fixed_clock=True)
    apply_bytes = engine.apply_bytes
    counts: Counter[str] = Counter()
    gc.collect()
    t = time.perf_counter()
    for line in lines:
        try:
            counts[apply_bytes(line).value] += 1
        except PopstreamError:
            counts["rejected"] += 1
    return time.perf_counter() - t, engine, counts


NAMES = ("applied", "pending", "duplicate", "held", "expired", "rejected", "rejected",
         "rejected")


def run_native_batch(chunks: list[list[bytes]], now: int
                     ) -> tuple[float, NativeEngine, Counter[str]]:
    engine = NativeEngine(now=now, fixed_clock=True)
    apply_lines = engine.apply_lines
    codes = bytearray()
    gc.collect()
    t = time.perf_counter()
    for chunk in chunks:
        codes += apply_lines(chunk)
    seconds = time.perf_counter() - t
    counts = Counter(NAMES[c] for c in codes)
    return seconds, engine, counts


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--sellers", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--no-python", action="store_true")
    args = parser.parse_args()
    lines = ensure_log(args.events, args.sellers, 95).read_bytes().splitlines()
    now = parse_timestamp(AS_OF)
    print(f"{len(lines):,} events, as of {AS_OF}", file=sys.stderr)
    chunks = [lines[i:i + args.batch] for i in range(0, len(lines), args.batch)]
    # memory
    gc.collect()
    rss0 = _rss()
    _, nat, _ = run_native_batch(chunks, now)
    gc.collect()
    rss = _rss() - rss0  # includes the outcome codes (1 byte an event) and malloc's slack
    orders = nat.tracked_orders
    print(f"native: {nat.memory_bytes() / orders:.1f} bytes/order (core heap, capacity-based),"
          f" RSS growth {rss / orders:.1f} bytes/order; {orders:,} orders")
    for k, v in nat.memory_breakdown().items():
        print(f"    {k:22s} {v / orders:8.1f} bytes/order")
    del nat
    gc.collect()
    results: dict[str, tuple[object, Counter[str]]] = {}
    rates: dict[str, list[float]] = {"python": [], "native_each": [], "native_batch": []}
    for run in range(args.runs):
        for name in rates:
            if name == "python" and args.no_python:
                continue
            if name == "python":
                seconds, engine, counts = run_python(lines, now)
            elif name == "native_each":
                seconds, engine, counts = run_native_each(lines, now)
            else:
                seconds, engine, counts = run_native_batch(chunks, now)
            rates[name].append(len(lines) / seconds)
            print(f"  run {run + 1} {name:13s} {len(lines) / seconds:>12,.0f} events/s "
                  f"({seconds / len(lines) * 1e6:.2f} us/event)", file=sys.stderr)
            results[name] = (engine, counts)
            del engine
    for name, r in rates.items():
        if r:
            print(f"median {name:13s} {statistics.median(r):>12,.0f} events/s "
                  f"(runs {', '.join(f'{x:,.0f}' for x in r)})")
    # exactness
    nat, ncounts = results["native_batch"]
    _, ecounts = results["native_each"]
    assert ncounts == ecounts, (ncounts, ecounts)
    if not args.no_python:
        py, pcounts = results["python"]
        assert pcounts == ncounts, (pcounts, ncounts)
        assert (py.tracked_orders, py.pending_orders) == (nat.tracked_orders, nat.pending_orders)
        assert sorted(py.seller_ids()) == sorted(nat.seller_ids())
        assert len(py.sellers) == len(nat.sellers)
        for sid, s in py.sellers.items():
            assert nat.sellers[sid].sums == s.sums, sid
        print(f"exact: {len(py.sellers):,} sellers' sums, outcome counts {dict(pcounts)}, "
              f"{py.tracked_orders:,} orders held ({py.pending_orders:,} pending)")
        del py
    results.clear()
    if not args.no_python:
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        _, py, _ = run_python(lines, now)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        print(f"python: {held / py.tracked_orders:.1f} bytes/order (tracemalloc heap)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
