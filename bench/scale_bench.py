"""A million sellers on one worker (issue #11 item 6): ``make bench-scale``.

    python -m bench.scale_bench                          # the full run (~1 hour)
    python -m bench.scale_bench --sellers 20000 --orders 200000 --no-write   # a smoke run

What it builds: ``--sellers`` sellers whose orders follow a long tail — a
Zipf-Mandelbrot law over the seller's rank, ``orders ~ 1 / (rank + q) ** s``
(``s = 1``, ``q = 8``: the biggest seller has ~1 % of all orders, as on a large
marketplace), every seller with at least one order — ``--orders`` orders in all,
purchased uniformly over ``--days`` days before the fixed clock. Each order has
the life the generator gives it (:mod:`streams.generator`'s healthy and drifting
profiles, 10 % of sellers drifting), contract v1.1: a shipment (late for some,
without tracking for some), carrier deliveries against ``deliver_by``,
cancellations, feedback, claims (item-not-received too), refunds, returns, buyer
messages and seller replies, ~3.3 events an order (~2.2 before v1.1: results
from earlier runs are not comparable event for event). Events are written as
bulk JSON arrays of one type (``--bulk`` events), keyless, sent to the partition
that owns their sellers (:func:`streams.runtime.topics.owner_partition`) — what a
bulk producer does and what the worker accepts. Generated once (two processes) and
cached under ``.cache/bench/``.

Then, against one worker (``popstream worker``, fixed ``--as-of`` clock, the
memory:// store, static membership) on an embedded broker:

1. **ingest** the log; events/s, RSS (VmHWM and current), bytes per order;
2. **CPU with no traffic**: utime + stime from ``/proc/PID/stat`` over 30 s;
3. **scrape** in the default mode (``POPSTREAM_EXPORT=alerting``): time, size,
   series; ``/health`` latency sampled while scrapes run back to back;
4. **recovery** after ``kill -9``: until ``/api/sellers`` answers 200 and the
   worker tracks as many sellers and orders as before the kill;
5. the same worker restarted with ``POPSTREAM_EXPORT=all``: scrape and
   ``/health`` again (and a second recovery time);
6. the log replayed in this process (engine and fleet exporter as the worker
   has them): which metrics export the sellers, and the series that start and
   end over two UTC midnights (Prometheus' head-block churn);

and, in this process, **memory per seller**: tracemalloc over a
:class:`~streams.runtime.pipeline.Pipeline` (engine, fleet exporter,
seller -> partition map) holding ``--memory-sellers`` sellers of 1 order, then
of 10: the slope is the cost of an order, the rest the cost of a seller beyond
its orders; the same on a copy of the engine patched in ``/tmp`` whose
``Seller`` creates its message, timer and held-event containers only when
first needed (``--no-lazy-variant`` to skip); the cost of a UTC midnight for that
state; and one flush of a seller with ``--hot-seller`` orders.

Each goal of the issue is reported met or MISS; on a miss the phase is measured
again under ``py-spy`` and the profile summarised in the results
(``bench/results/scale.json``; ``--profile-dir`` keeps the raw stacks).
Progress lines go to stderr; the table to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import gc
import gzip
import itertools
import json
import multiprocessing
import os
import platform
import random
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

from bench import profiles
from streams.engine.events import US_PER_DAY, EventType, parse_timestamp
from streams.generator import (
    DRIFTING,
    HEALTHY,
    NO_PROMISE,
    RETURN_REASONS,
    SECOND_PACKAGE,
    UNDELIVERED_INR,
    Profile,
    mix_profiles,
)
from streams.runtime.topics import TopicNames, owner_partition

AS_OF: Final = "2024-06-15T00:00:00Z"
TYPES: Final[tuple[EventType, ...]] = ("order", "cancellation", "shipment", "refund",
                                       "feedback", "claim", "message", "delivery", "return")
LOG_VERSION: Final = "v11"  # in the cache key: a log of contract v1 is made again
_HEADER: Final = struct.Struct("<BHI")  # type index, partition, value length
GOALS: Final = {
    "scrape_seconds": 1.0, "scrape_bytes": 50_000_000, "idle_cpu_percent": 5.0,
    "health_p99_seconds": 0.1, "recovery_seconds": 60.0,
}


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# --- the sellers ---------------------------------------------------------------------

_B36: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def seller_id(rank: int) -> str:
    """A 14-character id that does not sort by rank (Amazon's look: ``A`` + 13)."""
    x = (rank * 11400714819323198485) % 36**13  # a bijection: the factor is coprime to 36
    chars = []
    for _ in range(13):
        x, d = divmod(x, 36)
        chars.append(_B36[d])
    return "A" + "".join(reversed(chars))


def order_counts(sellers: int, orders: int, s: float, q: float) -> list[int]:
    """Orders per seller by rank (1-based ranks; index 0 is rank 1): at least one
    each, the rest ``C / (rank + q) ** s`` with ``C`` solved so the total is
    ``orders``; fractions rounded by a fixed pseudo-random draw per rank."""
    if orders < sellers:
        raise ValueError(f"--orders ({orders}) must be >= --sellers ({sellers})")
    weights = [(r + q) ** -s for r in range(1, sellers + 1)]
    prefix = list(itertools.accumulate(weights))
    descending = [-w for w in weights]

    def expected(c: float) -> float:
        # ranks with c * w >= 1 get c * w on average, the others exactly 1
        n = bisect.bisect_right(descending, -1.0 / c)
        return c * (prefix[n - 1] if n else 0.0) + (sellers - n)

    lo, hi = 0.0, float(orders) * (1 + q) ** s
    for _ in range(100):
        mid = (lo + hi) / 2
        if expected(mid) < orders:
            lo = mid
        else:
            hi = mid
    rnd = random.Random(7)
    return [max(1, int(hi * w + rnd.random())) for w in weights]


@dataclass(frozen=True)
class Plan:
    sellers: int
    orders: int
    days: int
    s: float
    q: float
    partitions: int
    bulk: int
    seed: int

    @property
    def key(self) -> str:
        return (f"scale-{LOG_VERSION}-{self.sellers}-{self.orders}-{self.days}-s{self.s}"
                f"-q{self.q}"
                f"-p{self.partitions}-b{self.bulk}-{self.seed}")


def _drifting(rank: int) -> bool:
    return (rank * 40503) % 100 < 10  # 10 % of sellers, spread over every rank


# --- the log ---------------------------------------------------------------------------

class _Clock:
    """RFC 3339 strings for whole seconds, days cached (strftime is ~2 us a call)."""

    def __init__(self) -> None:
        self.days: dict[int, str] = {}

    def __call__(self, sec: int) -> str:
        day, rest = divmod(sec, 86400)
        text = self.days.get(day)
        if text is None:
            text = self.days[day] = time.strftime("%Y-%m-%d", time.gmtime(day * 86400))
        h, rest = divmod(rest, 3600)
        m, s = divmod(rest, 60)
        return f"{text}T{h:02d}:{m:02d}:{s:02d}Z"


def _order_life(rnd: random.Random, clock: _Clock, sid: str, oid: str, at: int,
                p: Profile, emit: Callable[[int, bytes], None]) -> None:
    """One order's events, as :func:`streams.generator.order_events` makes them
    (same probabilities and contract v1.1 events, whole seconds, no dict per event:
    ~6x faster; the draws differ, so the same seed gives another log)."""
    random_ = rnd.random

    def randrange(a: int, b: int | None = None) -> int:  # random.randrange's cost / 4
        return int(random_() * a) if b is None else a + int(random_() * (b - a))

    day, hour = 86400, 3600
    ship_by = at + (1, 2, 2, 3)[randrange(4)] * day
    deliver_by = None if random_() < NO_PROMISE else ship_by + randrange(2, 6) * day
    promise = "" if deliver_by is None else f',"deliver_by":"{clock(deliver_by)}"'
    head = f'"seller_id":"{sid}","order_id":"{oid}"'
    emit(0, (f'{{"event_id":"{oid}-o","type":"order",{head},"occurred_at":"{clock(at)}",'
             f'"ship_by":"{clock(ship_by)}"{promise},"marketplace":"US",'
             f'"amount":{randrange(500, 30000) / 100},"currency":"USD"}}').encode())
    r = random_()
    if r < p.seller_cancel + p.buyer_cancel:
        by = "seller" if r < p.seller_cancel else "buyer"
        emit(1, (f'{{"event_id":"{oid}-c","type":"cancellation",{head},"occurred_at":'
                 f'"{clock(at + randrange(30 * hour))}","initiated_by":"{by}"}}').encode())
        return
    if random_() < p.late:
        shipped = ship_by + randrange(1, 2 * day)
    else:
        shipped = at + randrange(max(1, ship_by - at))
    tracking = "null" if random_() < p.no_tracking else f'"1Z{randrange(10**12):012d}"'
    emit(2, (f'{{"event_id":"{oid}-s","type":"shipment",{head},"occurred_at":'
             f'"{clock(shipped)}","tracking_id":{tracking}}}').encode())

    def inr_claim(after: int) -> None:
        when = after + randrange(day, 7 * day)
        emit(5, (f'{{"event_id":"{oid}-i1","type":"claim",{head},"occurred_at":'
                 f'"{clock(when)}","claim_type":"item_not_received","status":"opened"}}'
                 ).encode())
        if random_() < 0.6:
            r = random_()
            status = "granted" if r < 0.45 else "withdrawn" if r < 0.8 else "denied"
            emit(5, (f'{{"event_id":"{oid}-i2","type":"claim",{head},"occurred_at":'
                     f'"{clock(when + randrange(hour, 7 * day))}",'
                     f'"claim_type":"item_not_received","status":"{status}"}}').encode())

    if deliver_by is None:
        delivered = shipped + randrange(day, 5 * day)
    elif random_() < p.late_delivery or deliver_by - shipped < 12 * hour:
        delivered = max(deliver_by, shipped) + randrange(1, 4 * day)
    else:
        delivered = shipped + randrange(12 * hour, deliver_by - shipped + 1)
    if random_() < p.undelivered:
        if random_() < UNDELIVERED_INR:
            inr_claim(max(delivered, deliver_by or 0))
    else:
        emit(7, (f'{{"event_id":"{oid}-d1","type":"delivery",{head},"occurred_at":'
                 f'"{clock(delivered)}"}}').encode())
        if random_() < SECOND_PACKAGE:
            delivered += randrange(hour, 3 * day)
            emit(7, (f'{{"event_id":"{oid}-d2","type":"delivery",{head},"occurred_at":'
                     f'"{clock(delivered)}"}}').encode())
        if random_() < p.item_not_received:
            inr_claim(delivered)
    if random_() < p.buyer_message:
        when = shipped + randrange(3 * day)
        emit(6, (f'{{"event_id":"{oid}-m1","type":"message",{head},"message_id":"{oid}-M",'
                 f'"sender":"buyer","occurred_at":"{clock(when)}"}}').encode())
        if random_() < 0.3:  # the seller marks it "No Response Needed"
            emit(6, (f'{{"event_id":"{oid}-m2","type":"message",{head},'
                     f'"message_id":"{oid}-M","sender":"buyer","response_needed":false,'
                     f'"occurred_at":"{clock(when + randrange(1, 4 * hour))}"}}').encode())
        elif random_() < p.reply:  # the seller's reply, mostly within 48 h
            delay = (randrange(48 * hour + 1, 6 * day) if random_() < p.late_reply
                     else randrange(60, 40 * hour))
            emit(6, (f'{{"event_id":"{oid}-m3","type":"message",{head},'
                     f'"message_id":"{oid}-R","sender":"seller","in_reply_to":"{oid}-M",'
                     f'"occurred_at":"{clock(when + delay)}"}}').encode())
    if random_() < p.feedback:
        negative = random_() < p.negative_feedback
        when = delivered + randrange(7 * day)
        rating = (1, 2)[randrange(2)] if negative else (4, 5, 5)[randrange(3)]
        emit(4, (f'{{"event_id":"{oid}-f1","type":"feedback",{head},"occurred_at":'
                 f'"{clock(when)}","rating":{rating}}}').encode())
        if negative and random_() < 0.2:
            emit(4, (f'{{"event_id":"{oid}-f2","type":"feedback",{head},"occurred_at":'
                     f'"{clock(when + randrange(1, 3 * day))}","rating":1,"removed":true}}'
                     ).encode())
    for claim, chance in (("a_to_z", p.a_to_z), ("chargeback", p.chargeback)):
        if random_() < chance:
            when = delivered + randrange(10 * day)
            emit(5, (f'{{"event_id":"{oid}-{claim[0]}1","type":"claim",{head},"occurred_at":'
                     f'"{clock(when)}","claim_type":"{claim}","status":"opened"}}').encode())
            if random_() < 0.3:
                status = ("withdrawn", "denied", "granted")[randrange(3)]
                emit(5, (f'{{"event_id":"{oid}-{claim[0]}2","type":"claim",{head},'
                         f'"occurred_at":"{clock(when + randrange(1, 5 * day))}",'
                         f'"claim_type":"{claim}","status":"{status}"}}').encode())
    if random_() < p.refund:
        emit(3, (f'{{"event_id":"{oid}-r","type":"refund",{head},"occurred_at":'
                 f'"{clock(delivered + randrange(5 * day))}","amount":10.0,'
                 f'"reason":"item not as described"}}').encode())
    if random_() < p.returned:
        reason = RETURN_REASONS[randrange(len(RETURN_REASONS))]
        emit(8, (f'{{"event_id":"{oid}-t","type":"return",{head},"occurred_at":'
                 f'"{clock(delivered + randrange(day, 14 * day))}","reason":'
                 f'{orjson.dumps(reason).decode()}}}').encode())


def _write_partition(job: tuple[Plan, int, list[tuple[int, str, int]], Path]) -> dict[str, int]:
    """Every event of one partition's sellers, in purchase order, as bulk arrays
    per type, to ``path`` (records: type index, partition, length, value)."""
    plan, partition, sellers, path = job
    rnd = random.Random(plan.seed * 100_003 + partition)
    end = parse_timestamp(AS_OF) // 1_000_000
    start = end - plan.days * 86400
    span = end - start
    shift = 22  # local seller index < 2**22
    keys: list[int] = []
    for local, (_, _, count) in enumerate(sellers):
        keys += [(start + rnd.randrange(span)) << shift | local for _ in range(count)]
    keys.sort()
    profiles_by_day = [mix_profiles(HEALTHY, DRIFTING, d / plan.days)
                       for d in range(plan.days + 1)]
    clock = _Clock()
    buffers: list[list[bytes]] = [[] for _ in TYPES]
    counts = [0] * len(TYPES)
    messages = 0
    mask = (1 << shift) - 1
    with open(path.with_suffix(".tmp"), "wb") as out:
        write = out.write

        def flush(kind: int) -> None:
            nonlocal messages
            value = b"[" + b",".join(buffers[kind]) + b"]"
            write(_HEADER.pack(kind, partition, len(value)))
            write(value)
            buffers[kind].clear()
            messages += 1

        def emit(kind: int, event: bytes) -> None:
            buffer = buffers[kind]
            buffer.append(event)
            counts[kind] += 1
            if len(buffer) >= plan.bulk:
                flush(kind)

        for n, k in enumerate(keys):
            at, local = k >> shift, k & mask
            rank, sid, _ = sellers[local]
            profile = (profiles_by_day[(at - start) // 86400] if _drifting(rank)
                       else HEALTHY)
            oid = f"{100 + partition:03d}-{n // 10_000_000:07d}-{n % 10_000_000:07d}"
            _order_life(rnd, clock, sid, oid, at, profile, emit)
        for kind in range(len(TYPES)):
            if buffers[kind]:
                flush(kind)
    path.with_suffix(".tmp").rename(path)
    return {"partition": partition, "events": sum(counts), "messages": messages,
            **dict(zip(TYPES, counts, strict=True))}


def ensure_log(plan: Plan, counts: list[int], cache: Path) -> tuple[Path, dict[str, Any]]:
    """The log's directory (one file per partition) and its summary, generated
    once per plan."""
    folder = cache / plan.key
    summary_path = folder / "summary.json"
    if summary_path.exists():
        summary: dict[str, Any] = json.loads(summary_path.read_text())
        return folder, summary
    folder.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    by_partition: list[list[tuple[int, str, int]]] = [[] for _ in range(plan.partitions)]
    for rank, count in enumerate(counts, start=1):
        sid = seller_id(rank)
        by_partition[owner_partition(sid, plan.partitions)].append((rank, sid, count))
    jobs = [(plan, p, by_partition[p], folder / f"p{p}.bin") for p in range(plan.partitions)]
    say(f"generating the log: {plan.orders:,} orders of {plan.sellers:,} sellers over "
        f"{plan.partitions} partitions (two processes, cached in {folder})")
    with multiprocessing.get_context("fork").Pool(2) as pool:
        parts = []
        for part in pool.imap_unordered(_write_partition, jobs):
            parts.append(part)
            say(f"  partition {part['partition']}: {part['events']:,} events in "
                f"{part['messages']:,} messages")
    summary = {"events": sum(p["events"] for p in parts),
               "messages": sum(p["messages"] for p in parts),
               "events_by_type": {t: sum(p[t] for p in parts) for t in TYPES},
               "bytes": sum((folder / f"p{p}.bin").stat().st_size
                            for p in range(plan.partitions)),
               "seconds_to_generate": round(time.monotonic() - started, 1)}
    summary_path.write_text(json.dumps(summary, indent=2))
    say(f"log: {summary['events']:,} events, {summary['messages']:,} messages, "
        f"{summary['bytes'] / 1e9:.2f} GB in {summary['seconds_to_generate']} s")
    return folder, summary


def read_log(folder: Path, partitions: int) -> Iterator[tuple[int, int, bytes]]:
    """``(type index, partition, value)``, the partitions' files interleaved."""
    files = [open(folder / f"p{p}.bin", "rb") for p in range(partitions)]  # noqa: SIM115
    try:
        live = list(files)
        while live:
            for f in list(live):
                head = f.read(_HEADER.size)
                if not head:
                    live.remove(f)
                    continue
                kind, partition, length = _HEADER.unpack(head)
                yield kind, partition, f.read(length)
    finally:
        for f in files:
            f.close()


async def produce_log(bootstrap: str, folder: Path, plan: Plan, names: TopicNames,
                      total: int) -> None:
    from aiokafka import AIOKafkaProducer

    # A record batch must fit the topics' max.message.bytes (1 MiB) as a whole.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20,
                                max_request_size=8 << 20, max_batch_size=1_000_000)
    await producer.start()
    try:
        last = time.monotonic()
        topics = [names.for_type(t) for t in TYPES]
        pending = []
        for n, (kind, partition, value) in enumerate(read_log(folder, plan.partitions), 1):
            pending.append(await producer.send(topics[kind], value=value, key=None,
                                               partition=partition))
            if len(pending) >= 500:
                await asyncio.gather(*pending)
                pending.clear()
            if time.monotonic() - last > 15:
                last = time.monotonic()
                say(f"  produced {n:,} of {total:,} messages")
        await asyncio.gather(*pending)
        await producer.flush()
    finally:
        await producer.stop()


# --- memory per seller (in process) ----------------------------------------------------

def pipeline_heap(sellers: int, per_seller: int, first_rank: int) -> dict[str, Any]:
    """Python heap a worker's :class:`Pipeline` holds for ``sellers`` sellers of
    ``per_seller`` orders each (orders only, shipped on time: no timers), fed as
    bulk arrays through :meth:`Pipeline.handle` like the worker's."""
    from streams.engine.catalog import default_catalog
    from streams.runtime.pipeline import Pipeline
    from streams.settings import from_env

    now = parse_timestamp(AS_OF)
    partitions = 4
    names = TopicNames()
    topic = names.for_type("order")
    ids = [seller_id(r) for r in range(first_rank, first_rank + sellers)]
    owners = [owner_partition(sid, partitions) for sid in ids]
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    pipeline = Pipeline(from_env({}, as_of=now, partitions=partitions), default_catalog())
    empty = tracemalloc.get_traced_memory()[0] - base
    offset = 0
    for p in range(partitions):
        batch: list[bytes] = []
        for n, (sid, owner) in enumerate(zip(ids, owners, strict=True)):
            if owner != p:
                continue
            for k in range(per_seller):
                at = now - ((n * 7 + k * 13) % 85 + 1) * US_PER_DAY + (n % 86_400) * 1_000_000
                oid = f"{first_rank + n:09d}-{k:07d}"
                batch.append(orjson.dumps({
                    "event_id": oid + "-o", "type": "order", "seller_id": sid,
                    "order_id": oid, "occurred_at": _rfc3339(at),
                    "ship_by": _rfc3339(at - 1), "marketplace": "US", "amount": 12.5,
                    "currency": "USD"}))
                if len(batch) == 1000:
                    pipeline.handle(b"[" + b",".join(batch) + b"]", topic, p, offset, None)
                    offset += 1
                    batch.clear()
        if batch:
            pipeline.handle(b"[" + b",".join(batch) + b"]", topic, p, offset, None)
            offset += 1
    pipeline.tick()
    pipeline.fleet.refresh()
    pipeline.dirty_chunks()  # what a flush drains
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - base - empty
    tracemalloc.stop()
    orders = pipeline.engine.tracked_orders
    out = {"sellers": sellers, "orders_per_seller": per_seller, "orders": orders,
           "heap_bytes": held, "exported": len(pipeline.fleet.exported),
           "breakdown_one_seller": _breakdown(pipeline, ids[0])}
    # What a UTC midnight costs this state (a fixed-clock worker never pays it):
    # the engine's roll, then the fleet exporter's re-count of the touched sellers.
    started = time.perf_counter()
    pipeline.engine.advance(now + US_PER_DAY)
    rolled = time.perf_counter() - started
    touched = len(pipeline.engine.touched or {})
    started = time.perf_counter()
    pipeline.fleet.refresh()
    out["midnight"] = {"roll_seconds": round(rolled, 3), "sellers_touched": touched,
                       "fleet_refresh_seconds": round(time.perf_counter() - started, 3)}
    del pipeline
    gc.collect()
    return out


def _rfc3339(us: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(us // 1_000_000))


def _breakdown(pipeline: Any, sid: str) -> dict[str, int]:
    """Where one seller's bytes are (sys.getsizeof, containers apart from the
    orders in them); a container shared by every seller (a sentinel) counts 0."""
    sellers = pipeline.engine.sellers
    seller = sellers[sid]
    other = next(s for s in sellers.values() if s is not seller)

    def own(name: str) -> int:
        obj = getattr(seller, name)
        return 0 if obj is getattr(other, name) else sys.getsizeof(obj)

    ints = {id(v): sys.getsizeof(v) for v in seller.sums if v}  # 0 is a shared singleton
    return {
        "Seller object (7 slots, GC header)": sys.getsizeof(seller) + 16,
        "id string": sys.getsizeof(seller.id),
        "sums list (5 windows)": sys.getsizeof(seller.sums),
        "sums ints (lane vectors, distinct non-zero objects)": sum(ints.values()),
        "orders dict (container only)": sys.getsizeof(seller.orders),
        "messages dict (empty)": own("messages"),
        "timers list (empty)": own("timers"),
        "future list (empty)": own("future"),
    }


def memory_per_seller(sellers: int) -> dict[str, Any]:
    """The cost of an order and of a seller beyond its orders: two runs (1 and 10
    orders a seller), ``heap = sellers * (seller + k * order)``."""
    one = pipeline_heap(sellers, 1, 10_000_000)
    ten = pipeline_heap(sellers, 10, 20_000_000)
    per_order = (ten["heap_bytes"] - one["heap_bytes"]) / (ten["orders"] - one["orders"])
    per_seller = one["heap_bytes"] / sellers - per_order * one["orders"] / sellers
    return {"method": "tracemalloc over a Pipeline (engine, fleet exporter, seller->partition "
                      "map, decoder cache) fed bulk arrays of order events; "
                      f"{sellers:,} sellers of 1 order, then of 10",
            "bytes_per_order": round(per_order, 1),
            "bytes_per_seller_beyond_orders": round(per_seller, 1),
            "one_order_each": one, "ten_orders_each": ten}


def hot_seller(orders: int) -> dict[str, Any]:
    """What one flush costs for a seller with ``orders`` orders over 90 days when
    one of its days changed: :meth:`Engine.seller_chunks` makes one pass over all
    the seller's orders to pick that day's, then encodes the day's chunk."""
    from streams.engine.engine import Engine

    now = parse_timestamp(AS_OF)
    engine = Engine(now=now, track_dirty=True)
    sid = seller_id(1)
    for k in range(orders):
        at = now - (k % 89 + 1) * US_PER_DAY + (k % 86_000) * 1_000_000
        engine.apply_bytes(orjson.dumps({
            "event_id": f"h{k}", "type": "order", "seller_id": sid, "order_id": f"h{k}",
            "occurred_at": _rfc3339(at), "ship_by": _rfc3339(at - 1)}))
    engine.take_dirty()
    at = now - US_PER_DAY + 3_600_000_000
    engine.apply_bytes(orjson.dumps({
        "event_id": "hot", "type": "order", "seller_id": sid, "order_id": "hot",
        "occurred_at": _rfc3339(at), "ship_by": _rfc3339(at - 1)}))
    dirty = engine.take_dirty()[sid]
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        chunks = engine.seller_chunks(sid, dirty)
        timings.append(time.perf_counter() - started)
    size = sum(len(c or b"") for c in chunks.values())
    return {"orders": orders, "dirty_chunks": len(dirty),
            "seconds_per_flush": round(statistics.median(timings), 4),
            "chunk_bytes": size}


def statuses_from_log(folder: Path, partitions: int, days: int = 2) -> dict[str, Any]:
    """The log replayed in process, through an engine and the worker's fleet
    exporter as of the same clock: which metrics put the exported sellers in
    warning or breach (a check of the worker's count, and what a fleet would
    export without the metric that exports most); then ``days`` UTC midnights,
    the clock moved a day at a time, counting the per-seller series that start
    and end (Prometheus keeps ended series in its head block for up to ~3 h).
    No new orders arrive meanwhile (held follow-ups do): windows only age, so
    the churn is that of a fleet whose new orders balance the ones leaving."""
    from streams.engine.engine import Engine
    from streams.engine.events import decode_events
    from streams.fleet import FleetExporter

    now = parse_timestamp(AS_OF)
    engine = Engine(now=now, track_touched=True)
    apply = engine.apply
    for _, _, value in read_log(folder, partitions):
        for event in decode_events(value) or []:
            apply(event)
    fleet = FleetExporter(engine)
    alerting = ("warning", "breach")
    by_metric: dict[str, int] = {}
    only: dict[str, int] = {}
    exported = 0
    for sid in engine.seller_ids():
        hot = [name for name, mv in engine.seller_metrics(sid).items() if mv.status in alerting]
        if not hot:
            continue
        exported += 1
        for name in hot:
            by_metric[name] = by_metric.get(name, 0) + 1
        if len(hot) == 1:
            only[hot[0]] = only.get(hot[0], 0) + 1
    top = max(by_metric, key=lambda k: by_metric[k]) if by_metric else None

    def series() -> set[str]:
        return {line.rpartition(" ")[0] for chunks in fleet.exported.values()
                for chunk in chunks for line in chunk.splitlines()}

    before = series()
    churn = []
    for day in range(1, days + 1):
        engine.advance(now + day * US_PER_DAY)
        fleet.refresh()
        after = series()
        churn.append({"day": day, "sellers_exported": len(fleet.exported),
                      "series": len(after), "series_started": len(after - before),
                      "series_ended": len(before - after),
                      "sellers_tracked": fleet.tracked})
        before = after
    return {"sellers_exported": exported, "exported_by_metric": by_metric,
            "exported_by_this_metric_only": only, "metric_exporting_most": top,
            "sellers_exported_without_it": exported - (only.get(top, 0) if top else 0),
            "daily_churn": churn}


# The patch measured by the lazy variant: a Seller's messages, timers and held
# events containers created on first use (most sellers never have any).
_LAZY_PATCH: Final = [
    ("        self.messages: dict[str, MessageState] = {}\n"
     "        self.timers: list[tuple[int, bytes]] = []  # (ship_by, order key) heap\n"
     "        self.future: list[tuple[int, int, Event]] = []  # (occurred_at, seq, event) heap\n",
     "        self.messages: dict[str, MessageState] = _NO_MESSAGES\n"
     "        self.timers: list[tuple[int, bytes]] = _NO_TIMERS\n"
     "        self.future: list[tuple[int, int, Event]] = _NO_FUTURE\n"),
    ("class Seller:\n",
     "_NO_MESSAGES: dict = {}  # shared, never written: replaced on first write\n"
     "_NO_TIMERS: list = []\n_NO_FUTURE: list = []\n\n\nclass Seller:\n"),
    ("        heapq.heappush(seller.future, (occurred_at, self._seq, event))\n",
     "        if seller.future is _NO_FUTURE:\n            seller.future = []\n"
     "        heapq.heappush(seller.future, (occurred_at, self._seq, event))\n"),
    ("            heapq.heappush(seller.timers, (ship_by, ev.order_id.encode()))\n",
     "            if seller.timers is _NO_TIMERS:\n                seller.timers = []\n"
     "            heapq.heappush(seller.timers, (ship_by, ev.order_id.encode()))\n"),
    ("        message_id = ev.message_id\n        old = seller.messages.get(message_id)\n",
     "        message_id = ev.message_id\n        if seller.messages is _NO_MESSAGES:\n"
     "            seller.messages = {}\n        old = seller.messages.get(message_id)\n"),
    ("        seller = self._new_seller(seller_id)\n        seller.has_orders = snap.has_orders\n",
     "        seller = self._new_seller(seller_id)\n        seller.has_orders = snap.has_orders\n"
     "        seller.timers, seller.messages, seller.future = [], {}, []\n"),
]


def lazy_variant(sellers: int) -> dict[str, Any]:
    """:func:`memory_per_seller` on a copy of ``streams`` in /tmp whose engine
    applies :data:`_LAZY_PATCH` (restored sellers keep eager containers: the
    measurement needs only the live path)."""
    repo = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory(prefix="popstream-lazy-") as tmp:
        shutil.copytree(repo / "streams", Path(tmp) / "streams")
        engine = Path(tmp) / "streams" / "engine" / "engine.py"
        text = engine.read_text()
        for old, new in _LAZY_PATCH:
            if text.count(old) != 1:
                return {"error": f"patch does not apply (engine changed): {old[:60]!r}"}
            text = text.replace(old, new)
        engine.write_text(text)
        out = subprocess.run(
            [sys.executable, "-c", "import json, sys; from bench.scale_bench import "
             "memory_per_seller; print(json.dumps(memory_per_seller(int(sys.argv[1]))))",
             str(sellers)],
            cwd=tmp, env={**os.environ, "PYTHONPATH": str(repo)}, capture_output=True,
            text=True, check=False)
        if out.returncode != 0:
            return {"error": out.stderr[-2000:]}
        doc: dict[str, Any] = json.loads(out.stdout.splitlines()[-1])
        doc["patch"] = ("Seller.messages / .timers / .future start as shared empty "
                        "sentinels and become real containers on first write "
                        "(_hold, _on_order's timer, _on_message); bench/scale_bench.py "
                        "_LAZY_PATCH has the diff")
        return doc


# --- a worker and its probes -------------------------------------------------------------

def http(port: int, path: str, timeout: float = 30) -> tuple[int, bytes, float]:
    """``(status, body, seconds)``; status 0 when nothing answered."""
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            body: bytes = r.read()
            return r.status, body, time.perf_counter() - started
    except urllib.error.HTTPError as exc:
        return exc.code, b"", time.perf_counter() - started
    except OSError:
        return 0, b"", time.perf_counter() - started


def health(port: int) -> dict[str, Any]:
    status, body, _ = http(port, "/health", 10)
    return dict(orjson.loads(body)) if status == 200 else {}


def proc_memory(pid: int) -> dict[str, int]:
    """VmHWM (peak) and VmRSS (current), bytes."""
    out = {}
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith((b"VmHWM:", b"VmRSS:")):
                out[line[:5].decode().lower()] = int(line.split()[1]) * 1024
    return {"peak_rss_bytes": out.get("vmhwm", 0), "rss_bytes": out.get("vmrss", 0)}


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), seconds."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def mem_available() -> int:
    with open("/proc/meminfo", "rb") as f:
        for line in f:
            if line.startswith(b"MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def sample(body: bytes, name: str) -> float:
    """Sum of a family's samples (any labels) in an exposition."""
    import re

    pattern = rb"^" + re.escape(name.encode()) + rb"(?:\{[^}]*\})? (\S+)$"
    return sum(float(v) for v in re.findall(pattern, body, re.M))


def quantiles(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    ordered = sorted(values)

    def q(f: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(len(ordered) * f))], 4)

    return {"n": len(ordered), "p50": q(0.5), "p99": q(0.99), "max": round(ordered[-1], 4)}


# Frames worth naming in a worker's main thread (the event loop); py-spy samples
# every thread, and Faust's consumer thread waits in select() half the time.
_MAIN_FRAMES: Final = (
    "Recovery._slurp_changelogs", "Conductor._compile_message_handler", "apply_changelog_batch",
    "Pipeline.restore", "assemble", "Engine.restore_seller_chunks", "Engine._restore_seller",
    "FleetExporter", "Pipeline.handle", "Engine.apply", "Flusher._write", "Pipeline.dirty_chunks",
    "AIOKafkaProducer.send", "render_parts", "add_views.<locals>.metrics", "Pipeline.tick",
    "EpollSelector.select",
)


def main_thread(raw: str) -> dict[str, Any]:
    """Share of the worker's main-thread samples under each of :data:`_MAIN_FRAMES`
    (inclusive), and its top frames by self time."""
    import re
    from collections import Counter

    total = 0
    under: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for line in raw.splitlines():
        m = re.match(r"^(.*) (\d+)$", line.strip())
        if not m or "run_worker" not in m.group(1):
            continue
        stack, n = m.group(1), int(m.group(2))
        total += n
        own[profiles.frame_name(stack.rsplit(";", 1)[-1])] += n
        for frame in _MAIN_FRAMES:
            if frame in stack:
                under[frame] += n
    if not total:
        return {"samples": 0}
    return {"samples": total,
            "inclusive_percent": [(f, round(100 * n / total, 1)) for f, n in under.most_common()],
            "self_percent": [(f, round(100 * n / total, 1)) for f, n in own.most_common(12)]}


class Spy:
    """``py-spy record`` on a process until :meth:`stop` (SIGINT makes it write)."""

    def __init__(self, pid: int, out: Path) -> None:
        self.out = out
        self.proc = profiles.record(pid, out, rate=100)

    def stop(self) -> dict[str, Any]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if not self.out.exists():
            return {"error": "py-spy wrote nothing (ptrace not permitted?)"}
        raw = self.out.read_text()
        summary = profiles.summarise(raw, top=12)
        say(profiles.render(self.out.stem, summary))
        thread = main_thread(raw)
        say(f"  main thread: {thread.get('inclusive_percent')}")
        return {**summary, "main_thread": thread}


def scrape_stats(port: int, runs: int) -> dict[str, Any]:
    """The first scrape, then ``runs`` more back to back: seconds, bytes, series."""
    status, body, first = http(port, "/metrics", 600)
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    times = []
    for _ in range(runs):
        _, body, seconds = http(port, "/metrics", 600)
        times.append(seconds)
    fleet = body[body.find(b"# HELP popstream_fleet_sellers"):]  # regexes on 2 GB are slow
    tracked = sample(fleet, "popstream_sellers_tracked")
    unexported = sample(fleet, "popstream_sellers_unexported")
    lines = body.count(b"\n")
    comments = body.count(b"\n#") + body.startswith(b"#")
    return {
        "first_seconds": round(first, 3),
        "seconds_median": round(statistics.median(times), 3) if times else round(first, 3),
        "seconds_max": round(max(times), 3) if times else round(first, 3),
        "seconds_runs": [round(t, 3) for t in times],
        "bytes": len(body),
        "bytes_gzip": len(gzip.compress(body, 1)),
        "series": lines - comments,
        "seller_series": body.count(b"\npopstream_seller_"),
        "sellers_tracked": int(tracked),
        "sellers_exported": int(tracked - unexported),
        "statuses": _statuses(fleet),
    }


def _statuses(body: bytes) -> dict[str, dict[str, int]]:
    import re

    out: dict[str, dict[str, int]] = {}
    for metric, status, value in re.findall(
            rb'^popstream_fleet_sellers\{metric="([^"]+)",status="([^"]+)"\} (\S+)$', body, re.M):
        out.setdefault(metric.decode(), {})[status.decode()] = int(float(value))
    return out


def health_during_scrapes(port: int, seconds: float, interval: float = 0.05
                          ) -> dict[str, Any]:
    """``/health`` probed every ``interval`` (a new connection each, like a
    kubelet) while ``curl`` scrapes ``/metrics`` back to back."""
    stop = threading.Event()
    scrapes: list[float] = []

    def scraper() -> None:
        while not stop.is_set():
            out = subprocess.run(
                ["curl", "-s", "-o", "/dev/null", "-m", "600", "-w", "%{http_code} %{time_total}",
                 f"http://127.0.0.1:{port}/metrics"], capture_output=True, text=True,
                check=False)
            code, _, total = out.stdout.partition(" ")
            if code == "200":
                scrapes.append(float(total))

    thread = threading.Thread(target=scraper, daemon=True)
    thread.start()
    latencies: list[float] = []
    failures = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline or not scrapes:
        status, _, took = http(port, "/health", 30)
        if status == 200:
            latencies.append(took)
        else:
            failures += 1
        time.sleep(max(0.0, interval - took))
        if time.monotonic() > deadline + 600:
            break
    stop.set()
    thread.join(660)
    return {"health": quantiles(latencies), "health_failures": failures,
            "scrapes_during": quantiles(scrapes), "seconds": seconds,
            "probe_interval_seconds": interval}


def idle_cpu(pid: int, seconds: float) -> dict[str, Any]:
    before = cpu_seconds(pid)
    time.sleep(seconds)
    used = cpu_seconds(pid) - before
    return {"seconds": seconds, "cpu_seconds": round(used, 3),
            "percent_of_one_core": round(100 * used / seconds, 2)}


# --- the run ---------------------------------------------------------------------------

@dataclass
class Ctx:
    args: argparse.Namespace
    plan: Plan
    bootstrap: str
    tmp: Path
    env: dict[str, str]
    port: int
    results: dict[str, Any]
    save: Callable[[], None]
    spies: Path


def start_worker(ctx: Ctx, name: str, extra: dict[str, str] | None = None) -> Any:
    from tests.integration.harness import Worker

    return Worker(ctx.bootstrap, {**ctx.env, **(extra or {})}, ctx.tmp, AS_OF, name,
                  port=ctx.port)


def ingest(ctx: Ctx, worker: Any, summary: dict[str, Any]) -> dict[str, Any]:
    total = summary["messages"]
    started = time.monotonic()
    last = started
    doc: dict[str, Any] = {}
    while doc.get("messages_consumed", 0) < total:
        if worker.proc.poll() is not None or time.monotonic() - started > ctx.args.timeout:
            raise RuntimeError(f"ingest: worker stopped or timed out at "
                               f"{doc.get('messages_consumed')} of {total} messages:\n"
                               + worker.log_tail())
        if time.monotonic() - last > 20:
            last = time.monotonic()
            mem = proc_memory(worker.proc.pid)
            say(f"  ingest: {doc.get('messages_consumed', 0):,} of {total:,} messages, "
                f"{doc.get('tracked_orders', 0):,} orders, {doc.get('sellers', 0):,} sellers, "
                f"RSS {mem['rss_bytes'] / 2**30:.2f} GiB")
        time.sleep(1.0)
        doc = health(ctx.port)
    span = doc["last_message_at"] - doc["first_message_at"]
    say(f"  all {total:,} messages consumed in {span:.0f} s; waiting for lag 0")
    consumed_at = time.monotonic()
    deadline = consumed_at + ctx.args.timeout
    profiled = False
    while True:  # every change saved and committed: what kill -9 must find
        status, body, _ = http(ctx.port, "/metrics", 600)
        if (status == 200 and b"popstream_consumer_lag_messages{" in body
                and sample(body, "popstream_consumer_lag_messages") == 0
                and sample(body, "popstream_sellers_tracked") > 0):
            break
        if time.monotonic() > deadline:
            raise RuntimeError("ingest: lag never reached 0:\n" + worker.log_tail())
        if not profiled and time.monotonic() - consumed_at > 30:
            profiled = True  # the flusher is behind: where the time goes
            say("  the flush is behind the consumer: 15 s of py-spy")
            spy = Spy(worker.proc.pid, ctx.spies / "flush-backlog.txt")
            time.sleep(15)
            ctx.results.setdefault("profiles", {})["flush_backlog_after_ingest"] = spy.stop()
        time.sleep(2.0)
    lag_zero_after = time.monotonic() - consumed_at
    doc = health(ctx.port)
    events = sample(body, "popstream_events_processed_total")
    invalid = sample(body, "popstream_events_invalid_total")
    if invalid:
        raise RuntimeError(f"ingest: {invalid:.0f} events dead-lettered: the log is wrong")
    mem = proc_memory(worker.proc.pid)
    orders = int(doc["tracked_orders"])
    return {
        "messages": total, "events": int(events), "seconds": round(span, 1),
        "events_per_second": round(events / span) if span > 0 else None,
        "seconds_to_lag_zero_after_last_message": round(lag_zero_after, 1),
        "outcomes": _outcomes(body),
        "sellers": int(doc["sellers"]),
        "sellers_tracked": int(sample(body, "popstream_sellers_tracked")),
        "tracked_orders": orders, "pending_orders": int(doc["pending_orders"]),
        **mem,
        "rss_bytes_per_tracked_order": round(mem["rss_bytes"] / orders, 1),
        "rss_bytes_per_seller": round(mem["rss_bytes"] / int(doc["sellers"]), 1),
        "rss_bytes_net_of_empty_worker_per_tracked_order": round(
            (mem["rss_bytes"] - ctx.results.get("empty_worker", {}).get("rss_bytes", 0))
            / orders, 1),
    }


def _outcomes(body: bytes) -> dict[str, int]:
    import re

    out: dict[str, int] = {}
    for outcome, value in re.findall(
            rb'^popstream_events_processed_total\{[^}]*outcome="([^"]+)"[^}]*\} (\S+)$',
            body, re.M):
        out[outcome.decode()] = out.get(outcome.decode(), 0) + int(float(value))
    return out


def recover(ctx: Ctx, name: str, want: dict[str, int], extra: dict[str, str] | None = None,
            spy: Path | None = None, on_start: Callable[[Any], None] | None = None
            ) -> tuple[Any, dict[str, Any], Spy | None]:
    """Start a worker on the saved state; time until ``/api/sellers`` answers 200
    and it tracks as many sellers (``popstream_sellers_tracked``: sellers with an
    order in a window) as before the kill (``want``)."""
    started = time.monotonic()
    wall = time.time()
    worker = start_worker(ctx, name, extra)
    if on_start:
        on_start(worker)
    sampler = Spy(worker.proc.pid, spy) if spy else None
    http_up = ready = None
    last = started
    tracked = -1
    while True:
        doc = health(ctx.port)
        now = time.monotonic() - started
        if doc and http_up is None:
            http_up = now
        if doc and doc.get("status") != "starting":
            ready = ready or now
            if http(ctx.port, "/api/sellers?limit=1", 60)[0] == 200:
                answered = time.monotonic() - started
                # The fleet counts are settled before the worker says it is ready
                # (Pipeline.restore), so one scrape tells; its own time is not counted.
                _, body, _ = http(ctx.port, "/metrics", 900)
                fleet = body[body.find(b"# HELP popstream_fleet_sellers"):]
                tracked = int(sample(fleet, "popstream_sellers_tracked"))
                if tracked == want["sellers_tracked"]:
                    break
        if worker.proc.poll() is not None or now > ctx.args.timeout:
            raise RuntimeError(f"{name}: did not recover ({doc}, {tracked} sellers tracked):\n"
                               + worker.log_tail())
        if time.monotonic() - last > 15:
            last = time.monotonic()
            say(f"  {name}: recovering for {now:.0f} s, RSS "
                f"{proc_memory(worker.proc.pid)['rss_bytes'] / 2**30:.2f} GiB")
        time.sleep(0.05)
    doc = health(ctx.port)
    out = {"seconds": round(answered, 2), "seconds_to_http": round(http_up or 0.0, 2),
           "seconds_to_ready": round(ready or 0.0, 2), "sellers_tracked": tracked,
           "sellers_tracked_before": want["sellers_tracked"],
           "tracked_orders": doc.get("tracked_orders"),
           "tracked_orders_before": want["tracked_orders"],
           "pending_orders": doc.get("pending_orders"),
           "pending_orders_before": want["pending_orders"],
           "sellers": doc.get("sellers"), "sellers_before": want["sellers"],
           **_recovery_phases(worker.log, wall), **proc_memory(worker.proc.pid)}
    say(f"  {name}: {tracked:,} sellers tracked and {doc.get('tracked_orders', 0):,} orders "
        f"back in {answered:.1f} s (HTTP after {http_up or 0:.1f} s, ready after "
        f"{ready or 0:.1f} s; {want['tracked_orders']:,} orders before the kill)")
    return worker, out, sampler


def _recovery_phases(log: Path, started: float) -> dict[str, float]:
    """From the worker's log: Faust's changelog read (until "recovery done"), then
    popstream's restore of the engine (until "recovered N sellers")."""
    import datetime as dt

    stamps: dict[str, float] = {}
    for line in log.read_text(errors="replace").splitlines():
        for marker, key in (("recovery done:", "read"), ("msg=\"recovered ", "restored")):
            if marker in line and line.startswith("ts=") and key not in stamps:
                text = line[3:line.index(" ")].replace("Z", "+00:00")
                stamps[key] = dt.datetime.fromisoformat(text).timestamp()
    if len(stamps) < 2:
        return {}
    return {"seconds_faust_changelog_read": round(stamps["read"] - started, 1),
            "seconds_popstream_restore": round(stamps["restored"] - stamps["read"], 1)}


def stop_worker(worker: Any) -> None:
    worker.stop()


def baseline(ctx: Ctx) -> dict[str, Any]:
    """RSS of a worker holding nothing (its own empty topics): what a worker
    costs before its first seller."""
    from streams.runtime.topics import create_topics
    from streams.settings import from_env

    prefix = "scale-empty-"
    asyncio.run(create_topics(from_env({}, bootstrap_servers=ctx.bootstrap,
                                       topic_prefix=prefix, partitions=ctx.plan.partitions)))
    worker = start_worker(ctx, "w0-empty", {"POPSTREAM_TOPIC_PREFIX": prefix,
                                            "POPSTREAM_APP_ID": "scale-empty",
                                            "POPSTREAM_INSTANCE_ID": "scale-empty-1"})
    try:
        deadline = time.monotonic() + 120
        while health(ctx.port).get("status") not in ("ok", "degraded"):
            if worker.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the empty worker never got ready:\n" + worker.log_tail())
            time.sleep(0.2)
        time.sleep(5)
        return proc_memory(worker.proc.pid)
    finally:
        worker.stop()


def worker_phases(ctx: Ctx, summary: dict[str, Any]) -> None:
    args, results, save = ctx.args, ctx.results, ctx.save
    results["empty_worker"] = baseline(ctx)
    say(f"an empty worker: RSS {results['empty_worker']['rss_bytes'] / 2**20:.0f} MiB")
    say("worker 1 (default export mode): ingest")
    worker = start_worker(ctx, "w1")
    try:
        results["ingest"] = ing = ingest(ctx, worker, summary)
        save()
        say(f"  {ing['events']:,} events at {ing['events_per_second']:,}/s; "
            f"{ing['tracked_orders']:,} orders, {ing['sellers_tracked']:,} sellers tracked; "
            f"RSS {ing['rss_bytes'] / 2**30:.2f} GiB (peak {ing['peak_rss_bytes'] / 2**30:.2f})")
        time.sleep(5)  # the fleet exporter's catch-up and the last flush settle
        say(f"CPU with no traffic, {args.idle_seconds:.0f} s")
        results["idle_cpu"] = idle = idle_cpu(worker.proc.pid, args.idle_seconds)
        say(f"  {idle['percent_of_one_core']} % of one core")
        if idle["percent_of_one_core"] >= GOALS["idle_cpu_percent"]:
            spy = Spy(worker.proc.pid, ctx.spies / "idle.txt")
            time.sleep(args.idle_seconds)
            results.setdefault("profiles", {})["idle_cpu"] = spy.stop()
        save()
        say("scrapes, default mode")
        results["scrape_default"] = sc = scrape_stats(ctx.port, args.scrapes)
        say(f"  {sc['seconds_median']} s (first {sc['first_seconds']} s, max {sc['seconds_max']}"
            f" s), {sc['bytes'] / 1e6:.1f} MB, {sc['series']:,} series, "
            f"{sc['sellers_exported']:,} of {sc['sellers_tracked']:,} sellers exported")
        if (sc["seconds_median"] >= GOALS["scrape_seconds"]
                or sc["bytes"] >= GOALS["scrape_bytes"]):
            spy = Spy(worker.proc.pid, ctx.spies / "scrape-default.txt")
            scrape_stats(ctx.port, 5)
            results.setdefault("profiles", {})["scrape_default"] = spy.stop()
        say(f"/health while scrapes run back to back, {args.health_seconds:.0f} s")
        results["health_default"] = hd = health_during_scrapes(ctx.port, args.health_seconds)
        say(f"  /health p50 {hd['health']['p50']} s, p99 {hd['health']['p99']} s, max "
            f"{hd['health']['max']} s over {hd['health']['n']} probes; "
            f"{hd['scrapes_during']['n']} scrapes")
        if (hd["health"]["p99"] or 0) >= GOALS["health_p99_seconds"]:
            spy = Spy(worker.proc.pid, ctx.spies / "health-default.txt")
            health_during_scrapes(ctx.port, 20)
            results.setdefault("profiles", {})["health_default"] = spy.stop()
        save()
        want = {"sellers": ing["sellers"], "tracked_orders": ing["tracked_orders"],
                "sellers_tracked": ing["sellers_tracked"],
                "pending_orders": ing["pending_orders"]}
        say("kill -9, then recovery")
        worker.kill9()
    except BaseException:
        worker.stop()
        raise
    worker, results["recovery"], _ = recover(ctx, "w2", want)
    save()
    try:
        if results["recovery"]["seconds"] >= GOALS["recovery_seconds"]:
            say("recovery missed its goal: kill -9 again, recovery under py-spy")
            worker.kill9()
            worker, again, sampler = recover(ctx, "w2-profiled", want,
                                             spy=ctx.spies / "recovery.txt")
            results["recovery_profiled_run"] = again
            if sampler:
                results.setdefault("profiles", {})["recovery"] = sampler.stop()
            save()
        say("idle CPU after recovery")
        results["idle_cpu_after_recovery"] = idle = idle_cpu(worker.proc.pid, args.idle_seconds)
        say(f"  {idle['percent_of_one_core']} % of one core")
        if idle["percent_of_one_core"] >= GOALS["idle_cpu_percent"]:
            spy = Spy(worker.proc.pid, ctx.spies / "idle-after-recovery.txt")
            time.sleep(args.idle_seconds)
            results.setdefault("profiles", {})["idle_cpu_after_recovery"] = spy.stop()
            results["idle_cpu_after_recovery_again"] = idle_cpu(worker.proc.pid,
                                                                args.idle_seconds)
    finally:
        stop_worker(worker)
    if args.skip_all_mode:
        return
    say("worker 3: POPSTREAM_EXPORT=all, recovering the same state")
    results["all_mode"] = all_mode(ctx, want)
    save()


def all_mode(ctx: Ctx, want: dict[str, int]) -> dict[str, Any]:
    out: dict[str, Any] = {"sellers": want["sellers"]}
    guard_stop = threading.Event()
    tripped: list[int] = []
    worker_box: list[Any] = []

    def guard() -> None:  # never let the machine swap: other work runs on it
        while not guard_stop.wait(0.5):
            if worker_box and mem_available() < ctx.args.min_free_gb * 2**30:
                tripped.append(mem_available())
                worker_box[0].proc.send_signal(signal.SIGKILL)
                return

    watcher = threading.Thread(target=guard, daemon=True)
    watcher.start()
    worker = None
    try:
        worker, out["recovery"], _ = recover(ctx, "w3-all", want, {"POPSTREAM_EXPORT": "all"},
                                             on_start=worker_box.append)
        say("scrapes, all mode")
        out["scrape"] = sc = scrape_stats(ctx.port, ctx.args.all_scrapes)
        say(f"  {sc['seconds_median']} s (first {sc['first_seconds']} s), "
            f"{sc['bytes'] / 1e6:.0f} MB, {sc['series']:,} series")
        say(f"/health while scrapes run back to back (all mode), "
            f"{ctx.args.all_health_seconds:.0f} s")
        out["health"] = h = health_during_scrapes(ctx.port, ctx.args.all_health_seconds)
        say(f"  /health p99 {h['health']['p99']} s, max {h['health']['max']} s; "
            f"{h['scrapes_during']['n']} scrapes")
        out.update(proc_memory(worker.proc.pid))
    except RuntimeError as exc:
        if not tripped:
            raise
        out["infeasible"] = (f"stopped: the machine's available memory fell under "
                             f"{ctx.args.min_free_gb} GiB ({tripped[0] / 2**30:.1f} GiB): {exc}")
        say(out["infeasible"])
    finally:
        guard_stop.set()
        if worker is not None:
            stop_worker(worker)
    return out


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue #11's goals, each with the measured value, met or not."""
    out: list[dict[str, Any]] = []

    def check(what: str, value: float | None, goal: float, unit: str) -> None:
        if value is not None:
            out.append({"goal": what, "value": value, "limit": goal, "unit": unit,
                        "met": value < goal})

    sc = results.get("scrape_default", {})
    check("default-mode scrape < 1 s (median of back-to-back scrapes)",
          sc.get("seconds_median"), GOALS["scrape_seconds"], "s")
    check("default-mode scrape < 1 s (slowest scrape seen, incl. during the /health test)",
          max([sc.get("seconds_max", 0.0),
               results.get("health_default", {}).get("scrapes_during", {}).get("max") or 0.0])
          if sc else None, GOALS["scrape_seconds"], "s")
    check("default-mode scrape < 50 MB", sc.get("bytes"), GOALS["scrape_bytes"], "bytes")
    check("CPU with no traffic < 5 % (of one core, 30 s after ingest)",
          results.get("idle_cpu", {}).get("percent_of_one_core"), GOALS["idle_cpu_percent"],
          "%")
    check("/health p99 < 100 ms while scrapes run back to back (default mode)",
          results.get("health_default", {}).get("health", {}).get("p99"),
          GOALS["health_p99_seconds"], "s")
    rec = results.get("recovery", {})
    check(f"recovery of {rec.get('tracked_orders', 0):,} orders after kill -9 < 60 s",
          rec.get("seconds"), GOALS["recovery_seconds"], "s")
    return out


def table(results: dict[str, Any]) -> str:
    rows: list[tuple[str, str]] = []

    def add(name: str, value: Any) -> None:
        rows.append((name, value if isinstance(value, str) else f"{value:,}"))

    d = results.get("distribution", {})
    if d:
        add("sellers / orders planned", f"{d['sellers']:,} / {d['orders']:,}")
        add("orders per seller: median / p90 / p99 / max",
            f"{d['p50']} / {d['p90']} / {d['p99']} / {d['max']:,}")
    log = results.get("log", {})
    if log:
        add("events (all types) / bulk messages", f"{log['events']:,} / {log['messages']:,}")
    m = results.get("memory_per_seller", {})
    if m:
        add("heap per order (tracemalloc)", f"{m['bytes_per_order']} B")
        add("heap per seller beyond its orders", f"{m['bytes_per_seller_beyond_orders']} B")
    lz = results.get("memory_per_seller_lazy_containers", {})
    if "bytes_per_seller_beyond_orders" in lz:
        add("  ... with lazy Seller containers", f"{lz['bytes_per_seller_beyond_orders']} B")
    if m.get("ten_orders_each", {}).get("midnight"):
        mn, ten = m["ten_orders_each"]["midnight"], m["ten_orders_each"]
        add(f"midnight at {ten['sellers']:,} sellers / {ten['orders']:,} orders",
            f"roll {mn['roll_seconds']} s + fleet re-count {mn['fleet_refresh_seconds']} s "
            f"({mn['sellers_touched']:,} sellers touched)")
    for hot in results.get("hot_seller", []):
        add(f"flush of a seller with {hot['orders']:,} orders, one day changed",
            f"{hot['seconds_per_flush']} s ({hot['chunk_bytes']:,} bytes written)")
    ing = results.get("ingest", {})
    if ing:
        add("ingest", f"{ing['events']:,} events in {ing['seconds']} s "
                      f"({ing['events_per_second']:,}/s)")
        add("all saved and committed (lag 0) after the last message",
            f"{ing['seconds_to_lag_zero_after_last_message']} s")
        add("tracked orders / sellers", f"{ing['tracked_orders']:,} / {ing['sellers_tracked']:,}")
        add("RSS after ingest (peak)", f"{ing['rss_bytes'] / 2**30:.2f} GiB "
                                       f"({ing['peak_rss_bytes'] / 2**30:.2f} GiB)")
        add("RSS per tracked order / per seller (all-in)",
            f"{ing['rss_bytes_per_tracked_order']} B / {ing['rss_bytes_per_seller']} B")
        add("RSS per tracked order, net of an empty worker",
            f"{ing['rss_bytes_net_of_empty_worker_per_tracked_order']} B")
    if "idle_cpu" in results:
        add("CPU with no traffic", f"{results['idle_cpu']['percent_of_one_core']} %")
    for label, key in (("default", "scrape_default"),):
        sc = results.get(key)
        if sc:
            add(f"scrape ({label}): median / first / max",
                f"{sc['seconds_median']} / {sc['first_seconds']} / {sc['seconds_max']} s")
            add(f"scrape ({label}): size, gzip", f"{sc['bytes'] / 1e6:.1f} MB, "
                                                 f"{sc['bytes_gzip'] / 1e6:.1f} MB")
            add(f"scrape ({label}): series / sellers exported",
                f"{sc['series']:,} / {sc['sellers_exported']:,} of {sc['sellers_tracked']:,}")
    hd = results.get("health_default")
    if hd:
        h = hd["health"]
        add("/health during scrapes (default): p50 / p99 / max",
            f"{h['p50']} / {h['p99']} / {h['max']} s ({h['n']} probes)")
    rec = results.get("recovery")
    if rec:
        add("recovery after kill -9", f"{rec['seconds']} s (HTTP {rec['seconds_to_http']} s)")
        add("RSS after recovery (peak)", f"{rec['rss_bytes'] / 2**30:.2f} GiB "
                                         f"({rec['peak_rss_bytes'] / 2**30:.2f} GiB)")
    am = results.get("all_mode", {})
    if am.get("infeasible"):
        add("all mode", am["infeasible"])
    if "recovery" in am:
        add("all mode: recovery", f"{am['recovery']['seconds']} s")
    if "scrape" in am:
        sc = am["scrape"]
        add("all mode: scrape median / first", f"{sc['seconds_median']} / "
                                               f"{sc['first_seconds']} s")
        add("all mode: scrape size, gzip, series",
            f"{sc['bytes'] / 1e6:.0f} MB, {sc['bytes_gzip'] / 1e6:.0f} MB, {sc['series']:,}")
    if "health" in am:
        h = am["health"]["health"]
        add("all mode: /health p50 / p99 / max", f"{h['p50']} / {h['p99']} / {h['max']} s")
    if "peak_rss_bytes" in am:
        add("all mode: RSS (peak)", f"{am['rss_bytes'] / 2**30:.2f} GiB "
                                    f"({am['peak_rss_bytes'] / 2**30:.2f} GiB)")
    st = results.get("statuses_from_log")
    if st:
        add("exported sellers (log replayed in process)", f"{st['sellers_exported']:,}; "
            f"{st['sellers_exported_without_it']:,} without {st['metric_exporting_most']}")
        for c in st["daily_churn"]:
            add(f"midnight {c['day']}: series started / ended / exported",
                f"{c['series_started']:,} / {c['series_ended']:,} / {c['series']:,}")
    width = max(len(n) for n, _ in rows) if rows else 0
    lines = [f"{n:<{width}}  {v}" for n, v in rows]
    for g in results.get("goals", []):
        lines.append(f"{'met ' if g['met'] else 'MISS'}  {g['goal']}: {g['value']:,} {g['unit']}")
    return "\n".join(lines)


def distribution(counts: list[int]) -> dict[str, Any]:
    ordered = sorted(counts)
    n = len(ordered)
    total = sum(ordered)
    return {"sellers": n, "orders": total, "p50": ordered[n // 2],
            "p90": ordered[int(n * 0.9)], "p99": ordered[int(n * 0.99)], "max": ordered[-1],
            "top_seller_share": round(ordered[-1] / total, 4),
            "sellers_with_1_order": sum(1 for c in ordered if c == 1),
            "sellers_with_30_or_more": sum(1 for c in ordered if c >= 30)}


def _memory_subprocess(sellers: int, lazy: bool) -> subprocess.Popen[str]:
    fn = "lazy_variant" if lazy else "memory_per_seller"
    return subprocess.Popen(
        [sys.executable, "-c", f"import json, sys; from bench.scale_bench import {fn}; "
         f"print(json.dumps({fn}(int(sys.argv[1]))))", str(sellers)],
        stdout=subprocess.PIPE, text=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sellers", type=int, default=1_000_000)
    parser.add_argument("--orders", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--zipf-s", type=float, default=1.0)
    parser.add_argument("--zipf-q", type=float, default=8.0)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--bulk", type=int, default=1000, help="events per bulk message")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--memory-sellers", type=int, default=100_000,
                        help="sellers of the in-process memory measurement (0: skip)")
    parser.add_argument("--no-lazy-variant", action="store_true")
    parser.add_argument("--reuse-memory", type=Path, default=None,
                        help="take the memory-per-seller figures from this results file "
                             "instead of measuring them again")
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--health-seconds", type=float, default=30.0)
    parser.add_argument("--scrapes", type=int, default=10)
    parser.add_argument("--all-scrapes", type=int, default=3)
    parser.add_argument("--all-health-seconds", type=float, default=60.0)
    parser.add_argument("--skip-all-mode", action="store_true")
    parser.add_argument("--min-free-gb", type=float, default=1.5,
                        help="all mode is stopped if the machine's free memory drops below")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--profile-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("bench/results/scale.json"))
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--hot-seller", type=int, nargs="*", default=[95_000, 1_000_000],
                        help="orders of one seller: the cost of a flush when one of its "
                             "days changed (in process)")
    parser.add_argument("--skip-extras", action="store_true",
                        help="no in-process replay of the log (statuses, churn)")
    parser.add_argument("--extras-only", action="store_true",
                        help="only the in-process hot-seller measurement, added to --out")
    args = parser.parse_args(argv)
    if args.extras_only:
        done = json.loads(args.out.read_text())
        done["hot_seller"] = [hot_seller(n) for n in args.hot_seller]
        folder = (Path(os.environ.get("POPSTREAM_CACHE_DIR", ".cache")) / "bench"
                  / done["plan"]["key"])
        done["statuses_from_log"] = statuses_from_log(folder, done["plan"]["partitions"])
        if args.profile_dir:  # profiles of a run made before main_thread() existed
            files = {"idle_cpu": "idle", "scrape_default": "scrape-default",
                     "health_default": "health-default", "recovery": "recovery",
                     "flush_backlog_after_ingest": "flush-backlog"}
            for key, summary in done.get("profiles", {}).items():
                path = args.profile_dir / f"{files.get(key, key)}.txt"
                if path.exists() and "main_thread" not in summary:
                    summary["main_thread"] = main_thread(path.read_text())
        args.out.write_text(json.dumps(done, indent=2) + "\n")
        print(json.dumps({k: done[k] for k in ("hot_seller", "statuses_from_log")}, indent=2))
        return 0

    from streams.runtime.broker import start_broker
    from streams.runtime.topics import create_topics
    from streams.settings import from_env

    plan = Plan(args.sellers, args.orders, args.days, args.zipf_s, args.zipf_q,
                args.partitions, args.bulk, args.seed)
    results: dict[str, Any] = {
        "benchmark": "scale", "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(), "cpus": os.cpu_count(),
        "memory_total_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        "as_of": AS_OF, "plan": plan.__dict__ | {"key": plan.key},
        "goals_set": GOALS,
        "load_average_columns": ["time", "1 min", "5 min", "15 min", "GiB available"],
    }

    def save() -> None:
        # Other work shares this 2-core machine: the load at each save, beside the figures.
        results.setdefault("load_average", []).append(
            [time.strftime("%H:%M:%S"), *(round(x, 2) for x in os.getloadavg()),
             round(mem_available() / 2**30, 1)])
        results["goals"] = goals(results)
        if not args.no_write:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=2) + "\n")

    counts = order_counts(plan.sellers, plan.orders, plan.s, plan.q)
    results["distribution"] = distribution(counts)
    say(f"plan: {plan.sellers:,} sellers, {sum(counts):,} orders; median "
        f"{results['distribution']['p50']}, p99 {results['distribution']['p99']}, max "
        f"{results['distribution']['max']:,} orders a seller")
    cache = Path(os.environ.get("POPSTREAM_CACHE_DIR", ".cache")) / "bench"
    folder, summary = ensure_log(plan, counts, cache)
    results["log"] = summary
    del counts
    if args.reuse_memory:
        done = json.loads(args.reuse_memory.read_text())
        for key in ("memory_per_seller", "memory_per_seller_lazy_containers"):
            if key in done:
                results[key] = done[key] | {"measured_at": done["at"]}
    elif args.memory_sellers:
        say(f"memory per seller: tracemalloc, {args.memory_sellers:,} sellers x 1 and x 10 "
            "orders" + ("" if args.no_lazy_variant else ", and on the lazy-container patch")
            + " (two processes)")
        procs = {"memory_per_seller": _memory_subprocess(args.memory_sellers, False)}
        if not args.no_lazy_variant:
            procs["memory_per_seller_lazy_containers"] = _memory_subprocess(
                args.memory_sellers, True)
        for key, proc in procs.items():
            stdout, _ = proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"{key}: the measurement failed ({proc.returncode})")
            results[key] = json.loads(stdout.splitlines()[-1])
            say(f"  {key}: {results[key].get('bytes_per_seller_beyond_orders')} B a seller "
                f"beyond its orders, {results[key].get('bytes_per_order')} B an order")
        save()
    if args.hot_seller:
        say(f"one flush of a hot seller: {args.hot_seller} orders")
        results["hot_seller"] = [hot_seller(n) for n in args.hot_seller]
        save()
    spies = args.profile_dir or Path(tempfile.mkdtemp(prefix="popstream-scale-spy-"))
    spies.mkdir(parents=True, exist_ok=True)
    with start_broker() as broker, tempfile.TemporaryDirectory(prefix="popstream-scale-") as t:
        names = TopicNames("scale-")
        settings = from_env({}, bootstrap_servers=broker.bootstrap_servers,
                            topic_prefix=names.prefix, partitions=plan.partitions)
        asyncio.run(create_topics(settings))
        time.sleep(3)  # partition leaders elected: no NotLeaderForPartition retries
        say(f"producing {summary['messages']:,} messages ({summary['bytes'] / 1e9:.2f} GB)")
        started = time.monotonic()
        asyncio.run(produce_log(broker.bootstrap_servers, folder, plan, names,
                                summary["messages"]))
        results["log"]["seconds_to_produce"] = round(time.monotonic() - started, 1)
        say(f"  produced in {results['log']['seconds_to_produce']} s")
        from streams.runtime.broker import free_port

        env = {"POPSTREAM_TOPIC_PREFIX": names.prefix, "POPSTREAM_APP_ID": "scale",
               "POPSTREAM_PARTITIONS": str(plan.partitions), "POPSTREAM_FAST_PATH": "1",
               "POPSTREAM_INSTANCE_ID": "scale-1", "POPSTREAM_STORE": "memory://",
               "POPSTREAM_WEB_HOST": "127.0.0.1", "POPSTREAM_EXPORT": "alerting"}
        ctx = Ctx(args, plan, broker.bootstrap_servers, Path(t), env, free_port(), results,
                  save, spies)
        worker_phases(ctx, summary)
    save()
    if not args.skip_extras:
        say("the log replayed in process: exported sellers by metric, and two midnights' "
            "series churn")
        results["statuses_from_log"] = statuses_from_log(folder, plan.partitions)
    results["goals"] = goals(results)
    save()
    print(table(results))
    if not args.no_write:
        say(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as exc:
        say(f"bench: {exc}")
        sys.exit(1)
