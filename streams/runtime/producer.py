"""A typed producer: validate, key by seller, route by type, send idempotently.

Producers that publish through popstream never put an invalid event on the wire:
each event is checked with the same decoder the worker uses before it is sent.
The Kafka producer is idempotent (``enable_idempotence``), so its own retries never
duplicate a message; the worker's engine ignores any duplicate that still arrives.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.engine.events import EventType, decode_event, event_type
from streams.errors import BrokerUnavailable, InvalidEvent
from streams.runtime.topics import TopicNames
from streams.settings import Settings


@dataclass
class ProduceReport:
    sent: int = 0
    rejected: list[tuple[int, InvalidEvent]] = field(default_factory=list)


class EventProducer:
    """Async producer of v1 events (``async with EventProducer(settings) as p``)."""

    def __init__(self, settings: Settings, linger_ms: int = 5) -> None:
        from aiokafka import AIOKafkaProducer

        self.topics = TopicNames(settings.topic_prefix)
        self._producer = AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap_servers,
            enable_idempotence=True,
            acks="all",
            linger_ms=linger_ms,
            max_request_size=settings.max_message_bytes,
            **settings.security.aiokafka_kwargs(),
        )

    async def __aenter__(self) -> EventProducer:
        from aiokafka.errors import KafkaError

        try:
            await self._producer.start()
        except KafkaError as exc:
            raise BrokerUnavailable(f"cannot reach Kafka: {exc}") from None
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    async def send(self, event: dict[str, Any] | bytes) -> None:
        """Validate one event and queue it (raises :class:`InvalidEvent`)."""
        raw = event if isinstance(event, bytes) else orjson.dumps(event)
        decoded = decode_event(raw)
        await self.send_raw(event_type(decoded), decoded.seller_id, raw)

    async def send_raw(self, event_type: EventType, seller_id: str, value: bytes) -> None:
        """Queue an already-validated value (or, in tests, a deliberately bad one)."""
        await self._producer.send(
            self.topics.for_type(event_type), value=value, key=seller_id.encode()
        )

    async def send_batch(self, event_type: EventType, seller_id: str,
                         events: list[dict[str, Any]]) -> None:
        """One message holding a JSON array of events (bulk producers)."""
        for event in events:
            decode_event(orjson.dumps(event))
        await self.send_raw(event_type, seller_id, orjson.dumps(events))

    async def flush(self) -> None:
        await self._producer.flush()


async def produce_lines(
    settings: Settings,
    lines: Iterable[bytes],
    progress: Callable[[int], None] | None = None,
) -> ProduceReport:
    """Publish a JSONL log; invalid lines are reported, not sent."""
    report = ProduceReport()
    async with EventProducer(settings) as producer:
        for number, line in enumerate(lines, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                await producer.send(line)
            except InvalidEvent as exc:
                report.rejected.append((number, exc))
                continue
            report.sent += 1
            if progress is not None and report.sent % 5000 == 0:
                progress(report.sent)
        await producer.flush()
    if progress is not None:
        progress(report.sent)
    return report
