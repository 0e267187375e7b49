"""Saving state and dead letters, then acking: the worker's durability point.

Every ``flush_interval`` the worker takes the changelog records of the chunks
changed since the last flush and the dead letters queued since, sends them, waits
for the broker to confirm all of them, and only then acks the offsets of the
messages behind them. So a committed offset always has its effect in the
changelog and its bad input on the dead-letter topic: a message is never acked
that was neither applied-and-saved nor dead-lettered.

When a write fails (the broker is away, the dead-letter topic refuses records,
authorization) the same batch is retried on the next flush, unchanged — the records
are sent again in the same order, so a later batch can only overwrite them — and
consumption stops (``may_consume`` is cleared) until it goes through: what the
worker cannot save, it does not take in. A dead letter the broker finds too large
is rebuilt with half the size limit on the retry. The clock does not wait for any
of this (the worker's tick is a separate timer).

Free of Faust: the worker passes a ``send`` coroutine and an ``ack`` callable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

from streams.runtime.changelog import Record
from streams.runtime.deadletters import DEFAULT_LIMIT, dead_letter

log = logging.getLogger("popstream.flush")

# send(topic, key, value, partition, headers) -> a delivery future
Send = Callable[[str, bytes | None, bytes | None, int | None, list[tuple[str, bytes]] | None],
                Awaitable[Awaitable[Any]]]
MIN_LETTER_LIMIT: Final = 4096


@dataclass(frozen=True, slots=True)
class Letter:
    """A dead letter's source: built into a record at send time, with the limit
    known then (it can shrink between retries)."""

    key: bytes | None
    value: bytes | None
    reason: str
    topic: str
    partition: int
    offset: int


@dataclass
class Batch:
    records: list[Record]
    letters: list[Letter]
    acks: list[Any]  # opaque to the flusher: handed back to ``ack``
    messages: list[tuple[str, bytes, bytes]] = field(default_factory=list)


@dataclass
class Flusher:
    send: Send
    ack: Callable[[list[Any]], None]
    changelog_topic: Callable[[], str]
    deadletter_topic: str
    letter_limit: int = DEFAULT_LIMIT
    letters: list[Letter] = field(default_factory=list)
    acks: list[Any] = field(default_factory=list)
    # Other records to publish with the batch: (topic, key, value), e.g. status
    # transitions — saved at least once, like everything else here.
    outbox: list[tuple[str, bytes, bytes]] = field(default_factory=list)
    retry: Batch | None = None
    may_consume: asyncio.Event = field(default_factory=asyncio.Event)
    started_at: float | None = None  # monotonic start of the flush in flight
    failure: str | None = None
    failures: int = 0
    stopping: bool = False
    _last_log: float = 0.0

    def __post_init__(self) -> None:
        self.may_consume.set()

    def dead_letter(self, key: bytes | None, value: bytes | None, reason: str, topic: str,
                    partition: int, offset: int) -> None:
        self.letters.append(Letter(key, value, reason, topic, partition, offset))

    async def flush(self, take_records: Callable[[], list[Record]]) -> bool:
        """One flush; ``True`` when everything pending is saved and acked."""
        if self.retry is not None:
            batch = self.retry
        else:
            # Everything up to the first await runs in one step of the event loop:
            # the records taken are exactly the effect of the acks taken.
            batch = Batch(take_records(), self.letters, self.acks, self.outbox)
            self.letters, self.acks, self.outbox = [], [], []
        if not (batch.records or batch.letters or batch.acks or batch.messages):
            return True
        self.started_at = time.monotonic()
        try:
            await self._write(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.started_at = None
            if self.stopping:
                return False  # a stop raced the flush: the unacked input is replayed
            self.retry = batch
            self.failures += 1
            self.failure = f"{type(exc).__name__}: {exc}".rstrip(": ")
            self.may_consume.clear()
            now = time.monotonic()
            if now - self._last_log >= 10:
                self._last_log = now
                log.warning("cannot save state or dead letters (attempt %d): %s; "
                            "consumption paused, retrying", self.failures, self.failure)
            return False
        self.started_at = None
        self.ack(batch.acks)
        if self.retry is not None or self.failure is not None:
            log.warning("state saved again after %d failed attempts; consuming", self.failures)
        self.retry = None
        self.failure = None
        self.failures = 0
        self.may_consume.set()
        return True

    async def _write(self, batch: Batch) -> None:
        deliveries: list[Awaitable[Any]] = []
        letter_futures: list[Awaitable[Any]] = []
        for source in batch.letters:
            record = dead_letter(source.key, source.value, source.reason, source.topic,
                                 source.partition, source.offset, self.letter_limit)
            try:
                future = await self.send(self.deadletter_topic, record.key, record.value,
                                         None, record.headers)
            except Exception as exc:
                self._shrink_if_too_large(exc)
                raise
            letter_futures.append(future)
        for topic, message_key, message in batch.messages:
            deliveries.append(await self.send(topic, message_key, message, None, None))
        changelog = self.changelog_topic()
        for partition, key, value in batch.records:
            deliveries.append(await self.send(changelog, key, value, partition, None))
        results = await asyncio.gather(*letter_futures, *deliveries, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                self._shrink_if_too_large(result)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    def _shrink_if_too_large(self, exc: BaseException) -> None:
        if "TooLarge" in type(exc).__name__ and self.letter_limit > MIN_LETTER_LIMIT:
            self.letter_limit = max(MIN_LETTER_LIMIT, self.letter_limit // 2)

    def stalled_for(self) -> float:
        """Seconds the flush in flight has been waiting (0 when none is)."""
        return 0.0 if self.started_at is None else time.monotonic() - self.started_at
