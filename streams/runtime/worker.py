"""The Kafka worker: a Faust app that feeds the engine and exports its metrics.

Design (issue #3), and why:

* **One agent over all seven event topics**, raw bytes in. Each message value is
  one event or a JSON array of events; each is decoded and applied on its own.
  Bad input (not JSON, schema violation, unknown type, oversized, a conflicting
  second ``order``) never raises out of the agent: it goes to the dead-letter
  topic with the original bytes, topic, partition, offset and the reason, and is
  counted.
* **Exact under at-least-once delivery** by idempotence, not transactions: the
  engine ignores redeliveries (event-id digests per order, content for ``order``
  events), and replaying any suffix of a partition after a crash yields the same
  state. faust-streaming's exactly-once mode has open duplicate bugs (#323, #517),
  and its windowed tables do not expire on RocksDB (#385) or lose data on restart
  (#412), so we use neither: windows live in the engine, and the Faust table only
  persists engine snapshot *chunks* (a seller's purchase day, or its meta).
* **Durability order**: events are consumed with ``noack``; every
  ``flush_interval`` a timer writes the dirty chunks to the table's changelog
  (with the seller's partition), awaits their delivery, and only then acks the
  events that made them dirty, so a committed offset always has its state in
  the changelog; a crash replays at most one interval, and the replay is
  idempotent.
* **Rebalances**: when recovery completes, sellers of partitions no longer
  assigned are dropped from the engine (so the exporter stops yielding them: no
  stale series), and sellers of newly assigned partitions are rebuilt from the
  recovered chunks.
* **Time moves on its own**: the same timer advances the engine's clock (late
  shipments when ``ship_by`` passes, windows at UTC midnight), unless a fixed
  ``--as-of`` clock is set for backfills and tests.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from streams.engine.catalog import Catalog, default_catalog, load_catalog
from streams.engine.engine import Engine, Outcome
from streams.engine.events import (
    decode_event,
    decode_events,
    format_us,
    split_batch,
    type_tag,
)
from streams.errors import InvalidEvent
from streams.exporter import SellerCache, render_sellers
from streams.runtime.tallies import LatencyHistogram, Tally, TallyCollector
from streams.runtime.topics import TopicNames
from streams.settings import Settings

log = logging.getLogger("popstream.worker")

TABLE_NAME: Final = "state"
_SEP: Final = b"\x1f"
_META: Final = b"m"
_PARTITION: Final = struct.Struct(">H")


def chunk_key(seller_id: str, chunk: int | None) -> bytes:
    """Table key of a snapshot chunk: ``seller \\x1f day`` or ``seller \\x1f m``."""
    return seller_id.encode() + _SEP + (_META if chunk is None else str(chunk).encode())


def parse_chunk_key(key: bytes) -> tuple[str, int | None]:
    seller, _, chunk = key.rpartition(_SEP)
    return seller.decode(), None if chunk == _META else int(chunk)


@dataclass
class PipelineMetrics:
    """Pipeline health, in a registry of its own (the seller series are rendered
    separately, see :mod:`streams.exporter`)."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        # Per-event counters are tallies (plain ints, exported by a collector):
        # see streams.runtime.tallies for why.
        self.events = Tally("popstream_events_processed", "Events applied, by type and outcome.",
                            ["type", "outcome"], labels_of=_event_labels)
        self.invalid = Tally("popstream_events_invalid",
                             "Invalid events sent to the dead-letter topic, by reason class.",
                             ["reason"])
        self.messages = Tally("popstream_messages_consumed", "Kafka messages consumed.",
                              ["topic"])
        self.latency = LatencyHistogram(
            "popstream_event_latency_seconds",
            "From an event's produce timestamp to its effect on the exported gauges.",
            (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.075, 0.1,
             0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0),
        )
        TallyCollector(self.events, self.invalid, self.messages, self.latency).register(r)
        self.pending = Gauge("popstream_pending_orders",
                             "Orders with events but no order event yet.", registry=r)
        self.orders = Gauge("popstream_tracked_orders", "Order records held in state.",
                            registry=r)
        self.sellers = Gauge("popstream_sellers", "Sellers owned by this worker.", registry=r)
        self.lag = Gauge("popstream_consumer_lag_messages",
                         "Messages between the committed offset and the end of each "
                         "assigned partition (includes up to one flush interval).",
                         ["topic", "partition"], registry=r)
        self.flushes = Counter("popstream_state_chunks_written",
                               "Snapshot chunks written to the changelog.", registry=r)
        self.clock = Gauge("popstream_clock_seconds", "The engine's clock (as of).", registry=r)


class Pipeline:
    """Everything the worker does per message and per tick, free of Faust, so it
    can be driven by the Faust agent or by a test directly."""

    def __init__(self, settings: Settings, catalog: Catalog) -> None:
        self.settings = settings
        now = settings.as_of if settings.as_of is not None else _now_us()
        self.engine = Engine(catalog, now=now, track_dirty=True)
        self.metrics = PipelineMetrics()
        self.seller_partition: dict[str, int] = {}
        self.max_bytes = settings.max_message_bytes
        self._scrape_cache: SellerCache = {}
        # Wall times of the first and last message handled: a throughput probe.
        self.first_message_at: float | None = None
        self.last_message_at: float | None = None

    def handle(self, value: bytes | None, topic: str, partition: int, offset: int,
               timestamp_ms: float | None) -> list[tuple[bytes, str]]:
        """Apply one Kafka message; return ``(bad bytes, reason)`` to dead-letter.

        This runs once per message, and its loop once per event: it is written for
        speed (tallies, local names, a whole bulk array decoded in one call). Any
        message with something wrong in it takes :meth:`_handle_slowly`, which
        finds and explains each bad event; what it re-applies is exact, because a
        rejected event leaves the state as it was.
        """
        messages = self.metrics.messages.counts
        key = (topic,)
        messages[key] = messages.get(key, 0) + 1
        if value is None or len(value) > self.max_bytes:
            return self._handle_slowly(value, partition, timestamp_ms)
        if self.settings.as_of is None:
            # Follow the wall clock per message, not per tick: an event stamped
            # "now" by its producer must count now, not wait for the next tick.
            self.engine.advance(_now_us())
        counts = self.metrics.events.counts
        if value[:1] != b"[":
            try:
                event = decode_event(value)
                outcome = self.engine.apply(event)
            except InvalidEvent:
                return self._handle_slowly(value, partition, timestamp_ms)
            self.seller_partition[event.seller_id] = partition
            key2 = (type(event), outcome)
            counts[key2] = counts.get(key2, 0) + 1
        else:
            events = decode_events(value)
            if events is None:
                return self._handle_slowly(value, partition, timestamp_ms)
            apply = self.engine.apply
            sellers = self.seller_partition
            for index, event in enumerate(events):
                try:
                    outcome = apply(event)
                except InvalidEvent:  # valid alone, but conflicts with the state
                    return self._handle_slowly(value, partition, timestamp_ms, index)
                sellers[event.seller_id] = partition
                key2 = (type(event), outcome)
                counts[key2] = counts.get(key2, 0) + 1
        self._handled(timestamp_ms)
        return []

    def _handled(self, timestamp_ms: float | None) -> None:
        self.last_message_at = now = time.time()
        if self.first_message_at is None:
            self.first_message_at = now
        if timestamp_ms:
            self.metrics.latency.observe(max(0.0, now - timestamp_ms / 1000))

    def _handle_slowly(self, value: bytes | None, partition: int, timestamp_ms: float | None,
                       start: int = 0) -> list[tuple[bytes, str]]:
        """A message with something wrong: each event decoded and applied on its
        own, each bad one explained. ``start``: array elements before it have
        been applied already (by :meth:`handle`)."""
        if value is None:
            self.metrics.invalid.add("empty")
            bad = [(b"", "empty message value (a tombstone?)")]
        elif len(value) > self.max_bytes:
            self.metrics.invalid.add("oversized")
            bad = [(value, f"oversized: {len(value)} bytes > {self.max_bytes}")]
        else:
            bad = self._apply_each(value, partition, start)
        self._handled(timestamp_ms)
        return bad

    def _apply_each(self, value: bytes, partition: int, start: int) -> list[tuple[bytes, str]]:
        try:
            batch = split_batch(value)
        except InvalidEvent as exc:
            self.metrics.invalid.add("json")
            return [(value, str(exc))]
        bad: list[tuple[bytes, str]] = []
        counts = self.metrics.events.counts
        items: list[bytes] = [value] if batch is None else [bytes(b) for b in batch]
        for index in range(start, len(items)):
            raw = items[index]
            try:
                event = decode_event(raw)
                outcome = self.engine.apply(event)
            except InvalidEvent as exc:
                where = "" if batch is None else f"element {index}: "
                bad.append((raw, where + str(exc)))
                self.metrics.invalid.add(_reason_class(exc))
                continue
            self.seller_partition[event.seller_id] = partition
            key = (type(event), outcome)
            counts[key] = counts.get(key, 0) + 1
        return bad

    def tick(self) -> None:
        """Let time pass (unless the clock is fixed); refresh gauges."""
        if self.settings.as_of is None:
            self.engine.advance(_now_us())
        for event, exc in self.engine.deferred_rejects:
            log.warning("held event rejected when due: %s (%s)", exc, event.event_id)
            self.metrics.invalid.add("conflict")
        self.engine.deferred_rejects.clear()
        m = self.metrics
        m.pending.set(self.engine.pending_orders)
        m.orders.set(self.engine.tracked_orders)
        m.sellers.set(sum(1 for _ in self.engine.seller_ids()))
        m.clock.set(self.engine.now / 1e6)

    def dirty_chunks(self) -> list[tuple[int, bytes, bytes | None]]:
        """``(partition, key, value)`` of every chunk changed since the last call."""
        out: list[tuple[int, bytes, bytes | None]] = []
        for seller_id, chunks in self.engine.take_dirty().items():
            partition = self.seller_partition.get(seller_id)
            if partition is None:
                continue  # never seen on this worker: nothing of ours to persist
            for chunk, data in self.engine.seller_chunks(seller_id, chunks).items():
                if chunk is None and data is not None:
                    data = _PARTITION.pack(partition) + data
                out.append((partition, chunk_key(seller_id, chunk), data))
        self.metrics.flushes.inc(len(out))
        return out

    def restore(self, items: Iterable[tuple[bytes, bytes]], assigned: set[int]) -> int:
        """Rebuild sellers of ``assigned`` partitions that the engine lacks from
        table items; drop sellers of partitions no longer assigned."""
        for seller_id, partition in list(self.seller_partition.items()):
            if partition not in assigned:
                self.engine.drop_seller(seller_id)
                del self.seller_partition[seller_id]
        grouped: dict[str, dict[int | None, bytes]] = {}
        partitions: dict[str, int] = {}
        for key, value in items:
            if value is None:
                continue
            seller_id, chunk_id = parse_chunk_key(key)
            if seller_id in self.seller_partition:
                continue  # already live here: the engine is ahead of the table
            if chunk_id is None:
                partitions[seller_id] = _PARTITION.unpack_from(value)[0]
                value = value[_PARTITION.size:]
            grouped.setdefault(seller_id, {})[chunk_id] = value
        # Keep what live events made dirty (not flushed yet); forget only what the
        # restore itself marks, which is what the table already holds.
        pending = self.engine.take_dirty()
        restored = 0
        for seller_id, chunks in grouped.items():
            owner = partitions.get(seller_id)
            if owner is None or owner not in assigned:
                continue
            self.engine.restore_seller_chunks(seller_id, chunks)
            self.seller_partition[seller_id] = owner
            restored += 1
        self.engine.take_dirty()
        self.engine.dirty = pending
        return restored

    def health(self) -> dict[str, Any]:
        consumed = self.metrics.messages.total()
        return {
            "status": "ok",
            "as_of": format_us(self.engine.now),
            "messages_consumed": int(consumed),
            "sellers": len(self.seller_partition),
            "pending_orders": self.engine.pending_orders,
            "tracked_orders": self.engine.tracked_orders,
            "first_message_at": self.first_message_at,
            "last_message_at": self.last_message_at,
        }

    def render_metrics(self) -> bytes:
        return render_sellers(
            self.engine,
            trailer=generate_latest(self.metrics.registry).decode(),
            cache=self._scrape_cache,
        )

    def sellers_json(self, seller_id: str | None = None) -> dict[str, Any] | None:
        engine = self.engine
        if seller_id is not None and seller_id not in set(engine.seller_ids()):
            return None
        ids = sorted(engine.seller_ids()) if seller_id is None else [seller_id]
        return {
            "as_of": format_us(engine.now),
            "sellers": {
                sid: {name: mv.to_dict() for name, mv in engine.seller_metrics(sid).items()}
                for sid in ids
            },
        }


def _dead_headers(reason: str, topic: str, partition: int,
                  offset: int) -> list[tuple[str, bytes]]:
    return [
        ("popstream-reason", reason.encode()),
        ("popstream-topic", topic.encode()),
        ("popstream-partition", str(partition).encode()),
        ("popstream-offset", str(offset).encode()),
    ]


def _event_labels(key: tuple[type, Outcome]) -> tuple[str, str]:
    kind, outcome = key
    return type_tag(kind), outcome.value


def _reason_class(exc: InvalidEvent) -> str:
    text = str(exc)
    if text.startswith("not valid JSON"):
        return "json"
    if text.startswith("unknown event type"):
        return "unknown_type"
    if exc.__class__.__name__ == "ConflictingEvent":
        return "conflict"
    return "schema"


def _now_us() -> int:
    return time.time_ns() // 1000


def build_app(settings: Settings) -> Any:
    """The Faust app: one agent, one table, a timer, and the web views."""
    import faust

    catalog = load_catalog(settings.catalog_path) if settings.catalog_path else default_catalog()
    pipeline = Pipeline(settings, catalog)
    names = TopicNames(settings.topic_prefix)
    credentials = _credentials(settings)
    scheme = "kafka"
    if settings.fast_path:
        from streams.runtime.fastpath import SCHEME

        scheme = SCHEME
    app = faust.App(
        settings.app_id,
        broker=[f"{scheme}://{s.strip()}" for s in settings.bootstrap_servers.split(",")],
        broker_credentials=credentials,
        store=settings.store,
        datadir=str(settings.data_dir),
        web_port=settings.web_port,
        web_host=settings.web_host,
        web_enabled=True,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication,
        topic_allow_declare=True,
        producer_max_request_size=max(settings.max_message_bytes, 4 << 20),
        consumer_max_fetch_size=max(settings.max_message_bytes, 4 << 20),
        broker_commit_every=10_000,
        broker_session_timeout=settings.session_timeout,
        consumer_group_instance_id=settings.instance_id,
        broker_heartbeat_interval=max(1.0, settings.session_timeout / 6),
        broker_rebalance_timeout=max(settings.session_timeout, 10.0),
        broker_commit_interval=settings.flush_interval,
        table_cleanup_interval=3600.0,
        stream_wait_empty=False,
        logging_config=None,
    )
    app.popstream = pipeline  # type: ignore[attr-defined]
    source = app.topic(*names.events, key_type=bytes, value_type=bytes,
                       key_serializer="raw", value_serializer="raw",
                       partitions=settings.partitions)
    deadletter_name = names.deadletter
    deadletter = app.topic(deadletter_name, key_type=bytes, value_type=bytes,
                           partitions=settings.partitions)

    @app.task  # type: ignore[untyped-decorator]
    async def declare_deadletter() -> None:
        await deadletter.maybe_declare()
    table = app.Table(
        TABLE_NAME, default=None, partitions=settings.partitions,
        key_type=bytes, value_type=bytes,  # -> "raw" serializers for the changelog
        extra_topic_configs={"max.message.bytes": str(max(settings.max_message_bytes,
                                                          4 << 20))},
    )
    unacked: list[Any] = []  # events applied but not yet acked (stock path)
    in_flight: list[Any] = []  # delivery futures of dead letters not yet awaited
    # Fast path (streams.runtime.fastpath): offsets applied per partition, dead letters to send.
    batch_acks: dict[Any, tuple[int, int]] = {}
    batch_dead: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]] = []

    def handle_batch(tp: Any, records: list[Any]) -> None:
        for r in records:
            for raw, reason in pipeline.handle(r.value, tp.topic, tp.partition, r.offset,
                                               r.timestamp):
                batch_dead.append((r.key, raw, _dead_headers(reason, tp.topic, tp.partition,
                                                             r.offset)))
        first = batch_acks[tp][0] if tp in batch_acks else records[0].offset
        batch_acks[tp] = (first, records[-1].offset)

    if settings.fast_path:
        app.popstream_batch_handler = handle_batch  # type: ignore[attr-defined]
        app.popstream_batch_topics = frozenset(names.events)  # type: ignore[attr-defined]

    async def flush() -> None:
        # Faust's own producer buffer is not a durability point: its flush() gives
        # up after 0.1 s without progress, so a commit can overtake buffered
        # records. We therefore send chunks with the underlying producer, await
        # their delivery, and only then ack the events they contain. Everything
        # up to the first await happens in one step of the event loop: the chunks
        # captured are exactly the effect of the events captured.
        chunks = pipeline.dirty_chunks()
        to_ack, dead = unacked[:], in_flight[:]
        offsets, letters = dict(batch_acks), batch_dead[:]
        unacked.clear()
        in_flight.clear()
        batch_acks.clear()
        batch_dead.clear()
        changelog = table.changelog_topic.get_topic_name()
        deliveries = list(dead)
        for key, raw, headers in letters:
            deliveries.append(
                await app.producer.send(deadletter_name, key, raw, None, None, headers)
            )
        # The changelog is the state's home; the table's local store is filled from
        # it by Faust's recovery (memory or RocksDB alike), which is when we read it.
        for partition, key, value in chunks:
            deliveries.append(
                await app.producer.send(changelog, key, value, partition, None, None)
            )
        if deliveries:
            await asyncio.gather(*deliveries)
        for event in to_ack:
            event.ack()
        if offsets:
            assigned = app.consumer.assignment()
            for tp, (first, last) in offsets.items():
                if tp in assigned:  # a revoked partition's events are replayed elsewhere
                    app.consumer.ack_offsets(tp, first, last)  # type: ignore[attr-defined]

    # The agent subscribes the worker to the event topics. On the fast path
    # (streams.runtime.fastpath) its stream stays empty: the transport hands fetched batches
    # to handle_batch; with POPSTREAM_FAST_PATH=0 every message comes through here.
    @app.agent(source)
    async def process(stream: Any) -> None:
        async for event in stream.noack().events():
            msg = event.message
            for raw, reason in pipeline.handle(msg.value, msg.topic, msg.partition,
                                               msg.offset, msg.timestamp * 1000.0):
                in_flight.append(await app.producer.send(
                    deadletter_name, msg.key, raw, None, None,
                    _dead_headers(reason, msg.topic, msg.partition, msg.offset),
                ))
                log.info("dead-lettered %s[%d]@%d: %s", msg.topic, msg.partition,
                         msg.offset, reason)
            unacked.append(event)

    @app.timer(interval=settings.flush_interval)  # type: ignore[untyped-decorator]
    async def tick() -> None:
        pipeline.tick()
        await flush()
        _update_lag(app, pipeline)

    @table.on_recover
    async def on_recover() -> None:
        assigned = {tp.partition for tp in app.consumer.assignment()
                    if tp.topic in names.events}
        log.info("recovery done: %d table keys, assigned %s", len(table.data), sorted(assigned))
        restored = pipeline.restore(((k, v) for k, v in table.data.items()), assigned)
        log.info("recovered %d sellers for partitions %s", restored, sorted(assigned))

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        return web.bytes(pipeline.render_metrics(),
                         content_type="text/plain; version=0.0.4")

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        # Cheap, for health checks and benchmarks: no per-seller work.
        return web.json(pipeline.health())

    @app.page("/api/sellers")
    async def sellers(web: Any, request: Any) -> Any:
        return web.bytes(orjson.dumps(pipeline.sellers_json()),
                         content_type="application/json")

    @app.page("/api/sellers/{seller_id}")
    async def seller(web: Any, request: Any, seller_id: str) -> Any:
        doc = pipeline.sellers_json(seller_id)
        if doc is None:
            return web.json({"error": f"seller {seller_id!r} is not owned by this worker"},
                            status=404)
        return web.bytes(orjson.dumps(doc), content_type="application/json")

    return app


def _update_lag(app: Any, pipeline: Pipeline) -> None:
    consumer = app.consumer
    try:
        assignment = consumer.assignment()
    except Exception:  # not started yet
        return
    for tp in assignment:
        highwater = consumer.highwater(tp)
        committed = app.consumer._committed_offset.get(tp)
        if highwater is not None and committed is not None:
            pipeline.metrics.lag.labels(tp.topic, str(tp.partition)).set(
                max(0, highwater - committed))


def _credentials(settings: Settings) -> Any:
    import faust

    sec = settings.security
    if sec.protocol == "PLAINTEXT":
        return None
    if sec.protocol == "SSL":
        return faust.SSLCredentials(sec.ssl_context())
    return faust.SASLCredentials(
        username=sec.sasl_username, password=sec.sasl_password,
        ssl_context=sec.ssl_context(), mechanism=sec.sasl_mechanism,
    )


def run_worker(settings: Settings, loglevel: str = "warning") -> int:
    """Run until SIGTERM/SIGINT (graceful: Faust stops the agent, commits, leaves)."""
    import faust

    from streams.logs import setup_logging

    setup_logging(loglevel)
    app = build_app(settings)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False,
                          override_logging=False)
    worker.execute_from_commandline()
    return 0


__all__ = ["Outcome", "Pipeline", "build_app", "chunk_key", "parse_chunk_key", "run_worker"]
