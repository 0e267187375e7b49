"""Worker throughput on a real broker: the engine benchmark's 1,000,000-event log
produced to the seven topics (single-event messages), consumed by one worker with
a fixed clock; events/s from its first consumed message to its last.

    python -m bench.worker_bench            # fast path (popkafka://)
    python -m bench.worker_bench --stock    # Faust's per-message path, for the ratio

Progress is polled on /health (no per-seller work), so it does not slow the worker.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from bench.engine_bench import AS_OF, ensure_log
from streams.runtime.broker import start_broker
from streams.runtime.topics import TopicNames, create_topics
from streams.settings import from_env
from tests.integration.harness import Worker, produce, run


def health(worker: Worker) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/health", timeout=5) as r:
            doc: dict[str, Any] = json.loads(r.read())
            return doc
    except OSError:
        return {"messages_consumed": 0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--sellers", type=int, default=10_000)
    parser.add_argument("--stock", action="store_true", help="Faust's per-message path")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    lines = ensure_log(args.events, args.sellers, 95).read_bytes().splitlines()
    with start_broker() as broker, tempfile.TemporaryDirectory() as tmp:
        names = TopicNames("bench-")
        run(create_topics(from_env({}, bootstrap_servers=broker.bootstrap_servers,
                                   topic_prefix=names.prefix)))
        msgs = []
        for line in lines:
            doc = orjson.loads(line)
            msgs.append((names.for_type(doc["type"]), doc["seller_id"].encode(), line))
        started = time.perf_counter()
        run(produce(broker.bootstrap_servers, msgs))
        print(f"  produced {len(msgs):,} messages in {time.perf_counter() - started:.1f} s",
              file=sys.stderr)
        worker = Worker(broker.bootstrap_servers, {
            "POPSTREAM_TOPIC_PREFIX": names.prefix, "POPSTREAM_APP_ID": "bench",
            "POPSTREAM_FAST_PATH": "0" if args.stock else "1"}, Path(tmp), AS_OF, "worker")
        try:
            polls = 0
            doc = health(worker)
            while doc["messages_consumed"] < len(msgs):
                polls += 1
                if polls % 25 == 0:
                    print(f"  consumed {doc['messages_consumed']:,}", file=sys.stderr)
                time.sleep(0.2)
                doc = health(worker)
        finally:
            worker.stop()
    # The worker's own clock: first to last message handled (no polling error).
    rate = (doc["messages_consumed"] - 1) / (doc["last_message_at"] - doc["first_message_at"])
    path = "stock" if args.stock else "fast"
    print(f"  worker ({path} path): {rate:,.0f} events/s", file=sys.stderr)
    if not args.no_write:
        out = Path(f"bench/results/worker-{path}.json")
        out.write_text(json.dumps({"benchmark": "worker", "path": path, "events": len(msgs),
                                   "sellers": args.sellers, "events_per_second": round(rate),
                                   "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
                                  indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
