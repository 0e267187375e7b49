"""The embedded broker is a real Apache Kafka: produce, consume, stop cleanly."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.runtime.broker import start_broker

pytestmark = pytest.mark.kafka


def test_round_trip_on_the_session_broker(kafka_bootstrap: str) -> None:
    topic = f"t-{uuid.uuid4().hex[:8]}"

    async def run() -> list[bytes]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, 2, 1)])
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            for i in range(10):
                await producer.send_and_wait(topic, f"m{i}".encode(), key=b"k")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap,
                                    auto_offset_reset="earliest", group_id=None)
        await consumer.start()
        got: list[bytes] = []
        try:
            while len(got) < 10:
                batch = await asyncio.wait_for(consumer.getmany(timeout_ms=1000), 30)
                got += [m.value for msgs in batch.values() for m in msgs if m.value]
        finally:
            await consumer.stop()
        return got

    assert asyncio.run(run()) == [f"m{i}".encode() for i in range(10)]


def test_a_second_broker_starts_and_stops() -> None:
    broker = start_broker()
    try:
        assert broker.process.poll() is None
        assert "Kafka Server started" in broker.log_path.read_text()
    finally:
        broker.stop()
    assert broker.process.poll() is not None
    assert not broker.data_dir.exists()
