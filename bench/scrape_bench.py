"""Scrape time and size of a worker's /metrics at 100,000 sellers (issue #3).

    python -m bench.scrape_bench --sellers 100000

Builds engine state directly (5 orders a seller, shipped, some defects), then
times the exposition the worker serves (seller series + pipeline metrics).
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from streams.engine.catalog import default_catalog
from streams.engine.events import format_us, parse_timestamp
from streams.runtime.pipeline import Pipeline
from streams.settings import from_env

AS_OF = "2024-06-15T00:00:00Z"


def build(sellers: int, export: str = "all") -> Pipeline:
    now = parse_timestamp(AS_OF)
    pipeline = Pipeline(from_env({}, as_of=now, export=export), default_catalog())
    day = 86_400_000_000
    for s in range(sellers):
        sid = f"S{s:07d}"
        for o in range(5):
            at = now - (o * 11 + s % 7) * day // 2
            oid = f"{sid}-{o}"
            base = {"seller_id": sid, "order_id": oid}
            events: list[dict[str, Any]] = [
                {**base, "event_id": oid + "o", "type": "order", "occurred_at": format_us(at),
                 "ship_by": format_us(at + 2 * day)},
                {**base, "event_id": oid + "s", "type": "shipment",
                 "occurred_at": format_us(at + (3 if (s + o) % 13 == 0 else 1) * day),
                 "tracking_id": "1Z" if (s + o) % 17 else ""},
            ]
            if (s + o) % 11 == 0:
                events.append({**base, "event_id": oid + "f", "type": "feedback",
                               "occurred_at": format_us(at + day), "rating": 1})
            for ev in events:
                pipeline.engine.apply_bytes(orjson.dumps(ev))
    pipeline.tick()
    return pipeline


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sellers", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--export", choices=("all", "alerting"), default="all",
                        help="POPSTREAM_EXPORT of the measured worker (default all: every "
                        "seller's series, the figure earlier runs reported)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    pipeline = build(args.sellers, args.export)
    print(f"  state for {args.sellers:,} sellers built in {time.perf_counter() - started:.1f} s",
          file=sys.stderr)
    t = time.perf_counter()
    body = pipeline.render_metrics()  # cold: every seller rendered
    cold = time.perf_counter() - t
    timings = []
    for _ in range(args.runs):  # warm: unchanged sellers reuse their text
        t = time.perf_counter()
        body = pipeline.render_metrics()
        timings.append(time.perf_counter() - t)
    lines = body.count(b"\n")
    result = {
        "benchmark": "scrape",
        "sellers": args.sellers,
        "scrape_seconds_cold": round(cold, 3),
        "scrape_seconds_median": round(statistics.median(timings), 3),
        "scrape_seconds_runs": [round(t, 3) for t in timings],
        "bytes": len(body),
        "bytes_gzip": len(gzip.compress(body, 1)),
        "lines": lines,
    }
    print(f"  scrape {result['scrape_seconds_median']} s warm (median of {args.runs}), "
          f"{cold:.3f} s cold (every seller re-rendered); target < 1 s, "
          f"{len(body) / 1e6:.1f} MB ({result['bytes_gzip'] / 1e6:.1f} MB gzip), "
          f"{lines:,} lines", file=sys.stderr)
    if not args.no_write:
        out = Path("bench/results/scrape.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
