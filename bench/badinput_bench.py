"""What bad input costs the worker in memory (issue #9): hostile messages of every
class through the pipeline, dead letters dropped at each simulated flush (as the
flusher does once they are written), state measured with tracemalloc.

    python -m bench.badinput_bench [--messages 200000] [--flush-every 5000]

Bad input must cost a bounded amount: nothing of a rejected event stays in the
engine, and the caches it can touch are bounded by design (valid seller ids,
owner partitions: 2**20 entries each, of ids that decoded). What remains is the
dead letters queued between two flushes — at most one flush interval of input,
and while the dead-letter topic cannot be written, consumption stops.
"""

from __future__ import annotations

import argparse
import gc
import random
import tracemalloc

import orjson

from streams.engine.catalog import default_catalog
from streams.runtime.pipeline import Pipeline
from streams.runtime.topics import owner_partition
from streams.settings import from_env


def hostile(n: int, rnd: random.Random) -> tuple[bytes, str, int, bytes | None]:
    seller = f"s{rnd.randrange(1_000_000)}"
    base = {"event_id": f"e{n}", "type": "order", "seller_id": seller, "order_id": f"o{n}",
            "occurred_at": "2024-06-14T00:00:00Z", "ship_by": "2024-06-15T00:00:00Z"}
    part = owner_partition(seller, 4)
    kind = n % 8
    if kind == 0:
        return orjson.dumps(base).replace(b'"o', b'"\xff', 1), "orders", part, seller.encode()
    if kind == 1:
        return b'{"x":' + b"[" * 12_000 + b"]" * 12_000 + b"}", "orders", part, None
    if kind == 2:
        return rnd.randbytes(rnd.randrange(1, 2000)), "orders", part, None
    if kind == 3:
        return orjson.dumps(base), "orders", (part + 1) % 4, seller.encode()
    if kind == 4:
        return orjson.dumps(base), "refunds", part, seller.encode()
    if kind == 5:
        return orjson.dumps(base), "orders", part, b"someone-else"
    if kind == 6:
        far = dict(base, occurred_at="2031-01-01T00:00:00Z")
        return orjson.dumps(far), "orders", part, seller.encode()
    return orjson.dumps([base, {"type": "order"}, dict(base, type="refund")]), "orders", \
        part, b"x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--flush-every", type=int, default=5_000)
    args = parser.parse_args()
    rnd = random.Random(7)
    pipeline = Pipeline(from_env({}), default_catalog())  # the wall clock: horizon on
    pipeline.ready = True
    queued: list[tuple[bytes, str]] = []
    # Warm the code paths, then measure from a settled baseline.
    for n in range(200):
        queued += pipeline.handle(*_call(hostile(n, rnd), n))
    queued.clear()
    gc.collect()
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    peak_queue = 0
    letters = 0
    for n in range(args.messages):
        queued += pipeline.handle(*_call(hostile(n, rnd), n))
        if n % args.flush_every == args.flush_every - 1:
            letters += len(queued)
            pipeline.tick()
            pipeline.dirty_chunks()
            peak_queue = max(peak_queue, tracemalloc.get_traced_memory()[0] - base)
            queued.clear()
    gc.collect()
    after, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"{args.messages:,} hostile messages, {letters:,} dead letters, "
          f"{pipeline.metrics.events.total():,.0f} events applied")
    print(f"state after: {(after - base) / 1024:,.1f} KiB retained "
          f"({len(pipeline.engine.sellers)} sellers, {pipeline.engine.tracked_orders} orders)")
    print(f"peak while {args.flush_every:,} messages' dead letters were queued: "
          f"{(peak - base) / 1024 / 1024:,.1f} MiB")


def _call(msg: tuple[bytes, str, int, bytes | None], offset: int,
          ) -> tuple[bytes, str, int, int, None, bytes | None]:
    value, topic, partition, key = msg
    return value, topic, partition, offset, None, key


if __name__ == "__main__":
    main()
