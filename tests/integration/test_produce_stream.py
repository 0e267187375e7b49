"""``popstream produce -`` on a real broker: lines leave as they arrive, not at EOF.

``tail -f log | popstream produce -`` keeps standard input open for ever; each line
must reach Kafka within about ``linger_ms`` of being written. Arrays go as one
message when they hold one seller and one type, event by event otherwise, every
message keyed by its seller on the partition that owns it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from typing import Any

import orjson
import pytest

from streams.runtime.topics import TopicNames, create_topics, owner_partition
from streams.settings import from_env

pytestmark = pytest.mark.kafka

PARTITIONS = 4


def _event(n: int, seller: str = "s1", kind: str = "order") -> bytes:
    doc: dict[str, Any] = {"event_id": f"e{n}", "type": kind, "seller_id": seller,
                           "order_id": f"o{n}", "occurred_at": "2024-06-14T00:00:00Z"}
    if kind == "order":
        doc["ship_by"] = "2024-06-16T00:00:00Z"
    else:
        doc["tracking_id"] = "1Z"
    return orjson.dumps(doc)


async def _scenario(bootstrap: str, prefix: str) -> tuple[list[Any], list[float], bytes, int]:
    from aiokafka import AIOKafkaConsumer

    names = TopicNames(prefix)
    consumer = AIOKafkaConsumer(*names.events, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest")
    await consumer.start()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "produce", "-"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
             "POPSTREAM_TOPIC_PREFIX": prefix, "POPSTREAM_PARTITIONS": str(PARTITIONS)},
    )
    assert proc.stdin is not None
    got: list[Any] = []
    waits: list[float] = []

    async def write_and_wait(line: bytes, expect: int, timeout: float) -> None:
        assert proc.stdin is not None
        started = time.monotonic()
        proc.stdin.write(line + b"\n")
        proc.stdin.flush()
        while len(got) < expect and time.monotonic() - started < timeout:
            for messages in (await consumer.getmany(timeout_ms=100)).values():
                got.extend(messages)
        waits.append(time.monotonic() - started)
        assert len(got) >= expect, f"{len(got)} of {expect} messages after {timeout} s"

    try:
        # The first line also waits for the process to start and connect.
        await write_and_wait(_event(1), 1, 60)
        # Then each line on its own, the pipe still open: within a few seconds.
        await write_and_wait(_event(2, "s2"), 2, 5)
        await write_and_wait(b"[" + _event(3) + b"," + _event(4) + b"]", 3, 5)
        await write_and_wait(b"[" + _event(5) + b"," + _event(6, "s2") + b","
                             + _event(7, "s1", "shipment") + b", {}]", 6, 5)
        await write_and_wait(b'{"type":"order","seller_id":"s\xff1"}', 6, 0.5)
        assert proc.poll() is None, "produce exited before its input ended"
    finally:
        _, err = proc.communicate(timeout=30)
        await consumer.stop()
    return got, waits, err, proc.returncode


def test_produce_stdin_delivers_each_line_before_eof(kafka_bootstrap: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    settings = from_env({}, bootstrap_servers=kafka_bootstrap, topic_prefix=prefix,
                        partitions=PARTITIONS)
    asyncio.run(create_topics(settings))

    got, waits, err, code = asyncio.run(_scenario(kafka_bootstrap, prefix))

    assert code == 0, err.decode(errors="replace")
    assert max(waits[1:4]) < 5, waits
    names = TopicNames(prefix)
    seen = [(m.topic, m.key, m.partition, m.value) for m in got]
    for topic, key, partition, value in seen:
        events = orjson.loads(value)
        for event in events if isinstance(events, list) else [events]:
            assert key == event["seller_id"].encode()
            assert topic == names.for_type(event["type"])
        assert partition == owner_partition(key.decode(), PARTITIONS)
    values = [v for _, _, _, v in seen]
    assert values[:3] == [_event(1), _event(2, "s2"), b"[" + _event(3) + b"," + _event(4) + b"]"]
    assert sorted(values[3:]) == sorted([_event(5), _event(6, "s2"),
                                         _event(7, "s1", "shipment")])
    text = err.decode()
    assert "line 4[3]: Object missing required field `type`" in text
    assert "line 5: invalid UTF-8 at byte 30: 0xff, invalid start byte (at $.seller_id)" in text
    assert "sent 7 events in 6 messages, 2 invalid lines or elements not sent" in text
