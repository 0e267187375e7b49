"""How far committed offsets trail applied events under load (issue #9, item 8).

An embedded broker, one worker on the wall clock, a producer at a steady rate;
every 100 ms the number of messages the worker has handled (``/health``) and the
group's committed offsets (the admin API) are sampled. For each sample, the trail
is how long until the committed offsets cover what had been applied then — the
window a ``kill -9`` replays.

    python -m bench.commit_trail [--rate 5000] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import orjson

from streams.engine.events import format_us
from streams.runtime.broker import free_port, kafka_for_tests
from streams.runtime.topics import TopicNames, create_topics
from streams.settings import from_env


async def committed(bootstrap: str, group: str, topics: set[str]) -> int:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return sum(meta.offset for tp, meta in offsets.items()
               if tp.topic in topics and meta.offset > 0)


def handled(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return int(orjson.loads(r.read())["messages_consumed"])
    except OSError:
        return None


async def produce(bootstrap: str, rate: int, seconds: float) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < seconds:
            now = time.time_ns() // 1000
            seller = f"s{n % 2000}"
            order = {"event_id": f"e{n}", "type": "order", "seller_id": seller,
                     "order_id": f"o{n}", "occurred_at": format_us(now - 1_000_000),
                     "ship_by": format_us(now + 86_400_000_000)}
            await producer.send("orders", orjson.dumps(order), key=seller.encode())
            n += 1
            ahead = n / rate - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
        await producer.flush()
    finally:
        await producer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()
    with kafka_for_tests() as bootstrap, tempfile.TemporaryDirectory() as tmp:
        asyncio.run(create_topics(from_env({}, bootstrap_servers=bootstrap, partitions=4)))
        port = free_port()
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "POPSTREAM_APP_ID": "trail"}
        worker = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker", "--web-port", str(port),
             "--data-dir", str(Path(tmp) / "w")], env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while handled(port) is None:
                time.sleep(0.2)
            time.sleep(3)
            producer = threading.Thread(
                target=lambda: asyncio.run(produce(bootstrap, args.rate, args.seconds)))
            producer.start()
            topics = set(TopicNames().events)
            samples: list[tuple[float, int, int]] = []
            while producer.is_alive():
                t = time.monotonic()
                applied = handled(port) or 0
                done = asyncio.run(committed(bootstrap, "trail", topics))
                samples.append((t, applied, done))
                time.sleep(max(0.0, 0.1 - (time.monotonic() - t)))
        finally:
            worker.terminate()
            worker.wait(30)
    trails: list[float] = []
    for i, (t0, applied, _) in enumerate(samples):
        later = next((t for t, _, done in samples[i:] if done >= applied), None)
        if later is not None and applied > 0:
            trails.append(later - t0)
    trails.sort()
    print(f"{len(samples)} samples at {args.rate} events/s for {args.seconds:.0f} s")
    print(f"committed offsets trail applied events: median {statistics.median(trails):.2f} s, "
          f"p99 {trails[int(len(trails) * 0.99) - 1]:.2f} s, max {trails[-1]:.2f} s")


if __name__ == "__main__":
    main()
