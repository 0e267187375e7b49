"""A typed producer: validate, key by seller, route by type, send idempotently.

Producers that publish through popstream never put an invalid event on the wire:
each event is checked with the same decoder the worker uses before it is sent.
The Kafka producer is idempotent (``enable_idempotence``), so its own retries never
duplicate a message; the worker's engine ignores any duplicate that still arrives.

``popstream produce`` is split in two: :func:`plan_line` decides, without Kafka,
what one JSON Lines line becomes (messages to send, elements rejected), and
:func:`produce_lines` sends the plans. The worker takes a message only if its key
is each event's ``seller_id``, each event's type belongs to the topic, and the
partition owns the seller; keying every message by its seller (the default
partitioner then picks murmur2(seller_id) % partitions) satisfies all three, so an
array is one message only when its events share one seller and one type.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import IO, Any, Final

import orjson

from streams.engine.events import Event, EventType, decode_event, event_type, split_batch
from streams.errors import BrokerUnavailable, InvalidEvent
from streams.runtime.topics import TopicNames
from streams.settings import Settings

# Bytes a record batch of one message adds to its key and value: aiokafka's
# estimate is 85..88 (a 61-byte batch header, varints); the broker holds the
# batch to the topic's max.message.bytes.
RECORD_OVERHEAD: Final = 128
_JSON_SPACE: Final = b" \t\r\n"


@dataclass(frozen=True, slots=True)
class Send:
    """One Kafka message: ``value`` (an event, or an array of events of one seller
    and one type) to the topic of ``event_type``, keyed by ``seller_id``."""

    event_type: EventType
    seller_id: str
    value: bytes
    events: int


@dataclass(frozen=True, slots=True)
class LinePlan:
    """What one line becomes: messages to send and ``(where, error)`` rejects,
    ``where`` being ``"12"`` for line 12 or ``"12[3]"`` for its element 3."""

    sends: tuple[Send, ...] = ()
    rejects: tuple[tuple[str, InvalidEvent], ...] = ()


def max_value_bytes(seller_id: str, max_message_bytes: int) -> int:
    """The largest value a message keyed by ``seller_id`` may carry."""
    return max_message_bytes - RECORD_OVERHEAD - len(seller_id.encode())


def _oversized(size: int, seller_id: str, max_message_bytes: int) -> InvalidEvent:
    return InvalidEvent(
        f"oversized: {size} bytes > {max_value_bytes(seller_id, max_message_bytes)} "
        f"(POPSTREAM_MAX_MESSAGE_BYTES {max_message_bytes} less the key and record overhead)"
    )


def plan_line(line: bytes, number: int, max_message_bytes: int = 1_048_576) -> LinePlan:
    """Decide what line ``number`` becomes; total: never raises.

    A blank line becomes nothing. An event becomes one message. A JSON array is
    checked element by element (bad ones rejected as ``number[i]``, not sent);
    its valid events become one message if they share one seller and one type
    (the line as it is, or the valid elements re-joined) and it fits, else one
    message per event. A line that is not JSON as a whole is rejected whole.
    """
    try:
        return _plan(line.strip(_JSON_SPACE), number, max_message_bytes)
    except Exception as exc:  # a bug must cost a line, not the run
        error = InvalidEvent(f"internal error: {type(exc).__name__}: {exc}")
        return LinePlan(rejects=((str(number), error),))


def _plan(text: bytes, number: int, max_bytes: int) -> LinePlan:
    if not text:
        return LinePlan()
    try:
        batch = split_batch(text)
        if batch is None:
            event = decode_event(text)
            if len(text) > max_value_bytes(event.seller_id, max_bytes):
                raise _oversized(len(text), event.seller_id, max_bytes)
            return LinePlan(sends=(Send(event_type(event), event.seller_id, text, 1),))
    except InvalidEvent as exc:
        return LinePlan(rejects=((str(number), exc),))
    rejects: list[tuple[str, InvalidEvent]] = []
    valid: list[tuple[int, bytes, Event]] = []
    for index, element in enumerate(batch):
        raw = bytes(element)
        try:
            valid.append((index, raw, decode_event(raw)))
        except InvalidEvent as exc:
            rejects.append((f"{number}[{index}]", exc))
    if not valid:
        return LinePlan(rejects=tuple(rejects))
    first = valid[0][2]
    kind, seller = event_type(first), first.seller_id
    if all(e.seller_id == seller and event_type(e) == kind for _, _, e in valid):
        value = text if not rejects else b"[" + b",".join(raw for _, raw, _ in valid) + b"]"
        if len(value) <= max_value_bytes(seller, max_bytes):
            return LinePlan((Send(kind, seller, value, len(valid)),), tuple(rejects))
    sends: list[Send] = []
    for index, raw, event in valid:
        if len(raw) > max_value_bytes(event.seller_id, max_bytes):
            rejects.append((f"{number}[{index}]", _oversized(len(raw), event.seller_id,
                                                              max_bytes)))
        else:
            sends.append(Send(event_type(event), event.seller_id, raw, 1))
    rejects.sort(key=lambda r: int(r[0].partition("[")[2].rstrip("]") or 0))
    return LinePlan(tuple(sends), tuple(rejects))


@dataclass
class ProduceReport:
    """``sent``: events the broker acknowledged; ``failed``: events in messages it
    did not (``errors`` holds the first few reasons); ``rejected``: invalid lines
    and elements, never sent."""

    sent: int = 0
    messages: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    rejected: list[tuple[str, InvalidEvent]] = field(default_factory=list)

    def delivered(self, events: int, future: asyncio.Future[Any]) -> None:
        """Done-callback of one message's delivery future."""
        error = ("cancelled" if future.cancelled()
                 else None if future.exception() is None else str(future.exception()))
        if error is None:
            self.sent += events
            self.messages += 1
            return
        self.failed += events
        if len(self.errors) < 10:
            self.errors.append(error)


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
            # A batch bigger than the topics' max.message.bytes would be refused whole.
            max_batch_size=min(16_384, settings.max_message_bytes),
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

    async def send_raw(self, event_type: EventType, seller_id: str,
                       value: bytes) -> asyncio.Future[Any]:
        """Queue an already-validated value (or, in tests, a deliberately bad one);
        the returned future completes when the broker has it."""
        future: asyncio.Future[Any] = await self._producer.send(
            self.topics.for_type(event_type), value=value, key=seller_id.encode()
        )
        return future

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
    lines: Iterable[bytes] | AsyncIterable[bytes],
    progress: Callable[[int], None] | None = None,
) -> ProduceReport:
    """Publish a JSONL log (see :func:`plan_line`); invalid lines and elements are
    reported, not sent. ``progress`` gets the number of lines done, every 5,000.

    With an async source (:func:`stream_lines`) the event loop is free while the
    next line is awaited, so each message leaves within ``linger_ms`` of its line
    arriving, not at the end of the input.
    """
    from aiokafka.errors import KafkaError, MessageSizeTooLargeError

    report = ProduceReport()
    max_bytes = settings.max_message_bytes
    async with EventProducer(settings) as producer:
        number = 0
        source = aiter(lines) if isinstance(lines, AsyncIterable) else _from_sync(lines)
        try:
            async for line in source:
                number += 1
                plan = plan_line(line, number, max_bytes)
                report.rejected.extend(plan.rejects)
                for send in plan.sends:
                    try:
                        future = await producer.send_raw(send.event_type, send.seller_id,
                                                         send.value)
                    except MessageSizeTooLargeError as exc:  # plan_line's bound missed
                        report.rejected.append((str(number), InvalidEvent(f"oversized: {exc}")))
                        continue
                    except KafkaError as exc:
                        raise BrokerUnavailable(f"cannot send to Kafka: {exc}") from None
                    future.add_done_callback(partial(report.delivered, send.events))
                if progress is not None and number % 5000 == 0:
                    progress(number)
        finally:
            aclose = getattr(source, "aclose", None)
            if aclose is not None:  # stops stream_lines' reader thread
                await aclose()
        await producer.flush()
    await asyncio.sleep(0)  # let the last delivery callbacks run
    if progress is not None:
        progress(number)
    return report


async def _from_sync(lines: Iterable[bytes]) -> AsyncIterator[bytes]:
    for line in lines:
        yield line


# --- reading a stream as its lines arrive ----------------------------------------

_READ_AHEAD: Final = 8  # chunks read but not yet taken by the event loop
_Chunk = tuple[list[bytes], int] | BaseException | None


async def stream_lines(
    stream: IO[bytes],
    progress: Callable[[int], None] | None = None,
    chunk_size: int = 1 << 16,
) -> AsyncIterator[bytes]:
    """The lines of a binary stream (without their ``\\n``), each yielded as soon
    as it has arrived: ``tail -f log | popstream produce -`` delivers line by line.

    A daemon thread does the blocking reads (``read1``: whatever the pipe holds,
    up to ``chunk_size``), so the event loop — and the producer's sender with it —
    runs while input is awaited. ``progress`` gets the bytes read so far. The
    thread is a daemon because a read of a pipe cannot be interrupted: if sending
    fails first, the process still exits.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[_Chunk] = asyncio.Queue()
    room = threading.Semaphore(_READ_AHEAD)
    stop = threading.Event()
    reader = threading.Thread(
        target=_read_chunks, args=(stream, chunk_size, loop, queue, room, stop),
        name="popstream-read", daemon=True,
    )
    reader.start()
    done = 0
    try:
        while True:
            item = await queue.get()
            room.release()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            lines, size = item
            done += size
            if progress is not None:
                progress(done)
            for line in lines:
                yield line
    finally:
        stop.set()
        room.release()


def _read_chunks(stream: IO[bytes], chunk_size: int, loop: asyncio.AbstractEventLoop,
                 queue: asyncio.Queue[_Chunk], room: threading.Semaphore,
                 stop: threading.Event) -> None:
    read: Callable[[int], bytes] = getattr(stream, "read1", stream.read)
    pending: list[bytes] = []  # the start of a line whose end has not arrived
    unreported = 0  # bytes read since the last chunk handed over

    def put(item: _Chunk) -> bool:
        while not room.acquire(timeout=0.5):
            if stop.is_set():
                return False
        if stop.is_set():
            return False
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            return False
        return True

    try:
        while True:
            data = read(chunk_size)
            if not data:
                break
            unreported += len(data)
            cut = data.rfind(b"\n")
            if cut < 0:
                pending.append(data)
                continue
            pending.append(data[:cut])
            lines = b"".join(pending).split(b"\n")
            pending = [data[cut + 1:]] if cut + 1 < len(data) else []
            if not put((lines, unreported)):
                return
            unreported = 0
        if pending and not put(([b"".join(pending)], unreported)):
            return
        put(None)
    except BaseException as exc:  # a read error ends the input: say why, there
        put(exc)
