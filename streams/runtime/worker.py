"""The Kafka worker: a Faust app that feeds the engine and exports its metrics.

Design (issues #3 and #9), and why:

* **One agent over all nine event topics**, raw bytes in. Each message value is
  one event or a JSON array of events; the pipeline
  (:mod:`streams.runtime.pipeline`) gives each exactly one outcome: applied, or a
  dead letter with the original bytes, topic, partition, offset and the reason. No
  input stops the worker.
* **Exact under at-least-once delivery** by idempotence, not transactions: the
  engine ignores redeliveries (event-id digests per order, content for ``order``
  events), and replaying any suffix of a partition after a crash yields the same
  state. faust-streaming's exactly-once mode has open duplicate bugs (#323, #517),
  and its windowed tables do not expire on RocksDB (#385) or lose data on restart
  (#412), so we use neither: windows live in the engine, and the Faust table only
  persists engine snapshot *chunks* (:mod:`streams.runtime.changelog`).
* **Durability order** (:mod:`streams.runtime.flusher`): events are consumed with
  ``noack``; every ``flush_interval`` the dirty chunks and queued dead letters are
  written, their delivery awaited, and only then the events behind them acked. A
  flush that fails is retried as it was, and consumption pauses meanwhile.
* **Time moves on its own**, on a timer of its own: the clock does not wait for a
  flush (late shipments when ``ship_by`` passes, windows at UTC midnight), unless
  a fixed ``--as-of`` clock is set for backfills and tests.
* **Rebalances**: when recovery completes, sellers of partitions no longer
  assigned are dropped from the engine (so the exporter stops yielding them: no
  stale series), and sellers of newly assigned partitions are rebuilt from the
  recovered chunks. Until the first recovery, ``/metrics`` answers 503.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any, Final

from streams.engine.catalog import resolve_catalog
from streams.engine.engine import Outcome
from streams.runtime.changelog import chunk_key, parse_chunk_key
from streams.runtime.faust_options import faust_options
from streams.runtime.flusher import MIN_LETTER_LIMIT, Flusher
from streams.runtime.pipeline import REFRESH_SLICE, Pipeline
from streams.runtime.topics import TopicNames, read_max_message_bytes
from streams.runtime.web import add_views
from streams.settings import Settings

log = logging.getLogger("popstream.worker")

TABLE_NAME: Final = "state"
# A flush waiting longer than this makes /health say "degraded".
_STALL_AFTER: Final = 5.0
# Seconds a stop may take before the process ends anyway (Kubernetes' default
# grace period is 30 s; ending first keeps the exit code ours).
_STOP_GRACE: Final = 20.0


def build_app(settings: Settings) -> Any:
    """The Faust app: one agent, one table, two timers, and the web views."""
    import faust
    from faust.exceptions import NotReady

    catalog = resolve_catalog(settings.catalog_path)
    pipeline = Pipeline(settings, catalog)
    names = TopicNames(settings.topic_prefix)
    scheme = "kafka"
    if settings.fast_path:
        from streams.runtime.fastpath import SCHEME

        scheme = SCHEME
    brokers = [f"{scheme}://{s.strip()}" for s in settings.bootstrap_servers.split(",")]
    app = faust.App(settings.app_id, **faust_options(settings, brokers, _credentials(settings)))
    app.popstream = pipeline  # type: ignore[attr-defined]
    source = app.topic(*names.events, key_type=bytes, value_type=bytes,
                       key_serializer="raw", value_serializer="raw",
                       partitions=settings.partitions)
    deadletter = app.topic(names.deadletter, key_type=bytes, value_type=bytes,
                           partitions=settings.partitions)
    table = app.Table(
        TABLE_NAME, default=None, partitions=settings.partitions,
        key_type=bytes, value_type=bytes,  # -> "raw" serializers for the changelog
        extra_topic_configs={"max.message.bytes": str(max(settings.max_message_bytes,
                                                          4 << 20))},
    )

    async def send(topic: str, key: bytes | None, value: bytes | None, partition: int | None,
                   headers: list[tuple[str, bytes]] | None) -> Any:
        # Faust's own producer buffer is not a durability point: its flush() gives
        # up after 0.1 s without progress, so a commit can overtake buffered
        # records. We send with the underlying producer and await each delivery.
        return await app.producer.send(topic, key, value, partition, None, headers)

    def ack(items: list[Any]) -> None:
        assigned = app.consumer.assignment()
        for item in items:
            if isinstance(item, tuple):  # fast path: (tp, first, last)
                tp, first, last = item
                if tp in assigned:  # a revoked partition's events are replayed elsewhere
                    app.consumer.ack_offsets(tp, first, last)  # type: ignore[attr-defined]
            else:  # stock path: a Faust event
                item.ack()

    flusher = Flusher(send=send, ack=ack,
                      changelog_topic=lambda: table.changelog_topic.get_topic_name(),
                      deadletter_topic=names.deadletter)
    app.popstream_flusher = flusher  # type: ignore[attr-defined]

    def handle_batch(tp: Any, records: list[Any]) -> None:
        for r in records:
            for raw, reason in pipeline.handle(r.value, tp.topic, tp.partition, r.offset,
                                               r.timestamp, r.key):
                flusher.dead_letter(r.key, raw, reason, tp.topic, tp.partition, r.offset)
        flusher.acks.append((tp, records[0].offset, records[-1].offset))

    if settings.fast_path:
        app.popstream_batch_handler = handle_batch  # type: ignore[attr-defined]
        app.popstream_batch_topics = frozenset(names.events)  # type: ignore[attr-defined]
        app.popstream_may_consume = flusher.may_consume  # type: ignore[attr-defined]

    status_topic = app.topic(names.status, key_type=bytes, value_type=bytes,
                             partitions=settings.partitions)

    @app.task  # type: ignore[untyped-decorator]
    async def prepare() -> None:
        try:
            await deadletter.maybe_declare()
            await status_topic.maybe_declare()
            await _read_limits(settings, pipeline, flusher,
                               [table.changelog_topic.get_topic_name(), names.deadletter])
        except NotReady:
            # A SIGTERM right after start stops the producer under this task: the
            # worker is on its way out, which is no crash (exit code 0, not 1).
            if not app.should_stop:
                raise
            log.info("stopping before the topics were checked")

    @app.task  # type: ignore[untyped-decorator]
    async def fleet_catch_up() -> None:
        # The fleet exporter's backlog (a midnight roll touches every seller) is
        # worked off in slices of ~25 ms, so messages and scrapes keep flowing.
        while not app.should_stop:
            if pipeline.fleet.refresh(limit=REFRESH_SLICE):
                await asyncio.sleep(0)
            else:
                await asyncio.sleep(0.2)

    # The agent subscribes the worker to the event topics. On the fast path
    # (streams.runtime.fastpath) its stream stays empty: the transport hands fetched
    # batches to handle_batch; with POPSTREAM_FAST_PATH=0 every message comes here.
    @app.agent(source)
    async def process(stream: Any) -> None:
        async for event in stream.noack().events():
            if not flusher.may_consume.is_set():
                await flusher.may_consume.wait()
            msg = event.message
            for raw, reason in pipeline.handle(msg.value, msg.topic, msg.partition,
                                               msg.offset, msg.timestamp * 1000.0, msg.key):
                flusher.dead_letter(msg.key, raw, reason, msg.topic, msg.partition,
                                    msg.offset)
            flusher.acks.append(event)

    @app.timer(interval=settings.flush_interval)  # type: ignore[untyped-decorator]
    async def tick() -> None:
        # Never awaits the broker: the clock moves while the broker is away.
        for raw, reason in pipeline.tick():
            flusher.dead_letter(None, raw, reason, "(held event)", -1, -1)
        flusher.outbox += [(names.status, key, value) for key, value in pipeline.status_events()]
        _update_lag(app, pipeline)

    @app.timer(interval=settings.flush_interval)  # type: ignore[untyped-decorator]
    async def flush() -> None:
        if app.should_stop:
            flusher.stopping = True
            return
        await flusher.flush(pipeline.dirty_chunks)

    async def stopping(sender: Any, *args: Any, **kwargs: Any) -> None:
        flusher.stopping = True

    app.on_before_shutdown.connect(stopping)  # type: ignore[arg-type]

    @table.on_recover
    async def on_recover() -> None:
        assigned = {tp.partition for tp in app.consumer.assignment()
                    if tp.topic in names.events}
        log.info("recovery done: %d table keys, assigned %s", len(table.data), sorted(assigned))
        restored = pipeline.restore(((k, v) for k, v in table.data.items()), assigned)
        pipeline.ready = True
        pipeline.metrics.ready.set(1)
        log.info("recovered %d sellers for partitions %s", restored, sorted(assigned))

    def health() -> dict[str, Any]:
        problems = pipeline.problems
        problems.pop("flush", None)
        stalled = flusher.stalled_for()
        if flusher.failure is not None:
            problems["flush"] = (f"cannot save state or dead letters, consumption paused "
                                 f"({flusher.failures} attempts): {flusher.failure}")
        elif stalled > max(_STALL_AFTER, 3 * settings.flush_interval):
            problems["flush"] = f"saving state has been waiting for the broker {stalled:.0f} s"
        return pipeline.health()

    add_views(app, pipeline, health, settings.grafana_url)
    return app


async def _read_limits(settings: Settings, pipeline: Pipeline, flusher: Flusher,
                       topics: list[str]) -> None:
    """Learn the changelog's and dead-letter topic's ``max.message.bytes`` (the
    writers use the broker's default until then, which is safe, only smaller)."""
    producer_cap = max(settings.max_message_bytes, 4 << 20)
    for attempt in range(30):
        try:
            limits = await read_max_message_bytes(settings, topics)
        except Exception as exc:
            log.info("reading topic limits failed (attempt %d): %s", attempt + 1, exc)
            limits = {}
        if topics[0] in limits:
            pipeline.changelog.set_record_limit(min(limits[topics[0]], producer_cap))
        if topics[1] in limits:
            # Never below a few KiB: a dead letter cut to nothing helps nobody, and a
            # topic refusing even that is an outage the flusher reports (backpressure).
            flusher.letter_limit = max(MIN_LETTER_LIMIT, min(limits[topics[1]], producer_cap))
        if len(limits) == len(topics):
            log.info("record limits: changelog %d, dead letters %d bytes",
                     pipeline.changelog.limit, flusher.letter_limit)
            return
        await asyncio.sleep(2.0)


def _update_lag(app: Any, pipeline: Pipeline) -> None:
    consumer = app.consumer
    try:
        assignment = consumer.assignment()
    except Exception:  # not started yet
        return
    seen: set[tuple[str, str]] = set()
    for tp in assignment:
        highwater = consumer.highwater(tp)
        committed = app.consumer._committed_offset.get(tp)
        if highwater is not None and committed is not None:
            labels = (tp.topic, str(tp.partition))
            pipeline.metrics.lag.labels(*labels).set(max(0, highwater - committed))
            seen.add(labels)
    # A partition this worker lost is another worker's to report: its series ends
    # here (a stale 0 would hide a stall; a stale N would fake one).
    for labels in pipeline.lag_labels - seen:
        pipeline.metrics.lag.remove(*labels)
    pipeline.lag_labels = seen


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
    from streams.logs import setup_logging
    from streams.runtime.faust_options import harden_worker, scrub_faust_environment

    scrub_faust_environment()  # before faust is imported: it reads them at import
    import faust

    setup_logging(loglevel)
    app = build_app(settings)

    async def watchdog(sender: Any, *args: Any, **kwargs: Any) -> None:
        # Faust's stop can hang on its consumer thread when a stop meets a start-up
        # recovery (seen once in 8 stops under load). Nothing is lost by ending
        # anyway: every message not acked is replayed, which is what at-least-once
        # and an idempotent engine are for. So a stop ends within a bound.
        def force() -> None:
            log.warning("shutdown still running after %.0f s: exiting now (unacked "
                        "messages are replayed at the next start)", _STOP_GRACE)
            logging.shutdown()
            os._exit(0)

        timer = threading.Timer(_STOP_GRACE, force)
        timer.daemon = True
        timer.start()

    app.on_before_shutdown.connect(watchdog)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False,
                          override_logging=False)
    harden_worker(worker)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        # A SIGTERM/SIGINT while Faust is still starting (declaring the changelog
        # topic, say) can fail that start inside Faust's own futures (mode's
        # InvalidStateError on a future the stop cancelled): mode turns it into
        # exit 1 after it stopped everything. A stop was asked for and done; what was
        # not acked is replayed at the next start. That is exit 0, as any stop.
        if exc.code not in (0, None) and getattr(worker, "_signal_stop_time", None):
            log.info("stopped during start-up (the start failed under the stop)")
            return 0
        raise
    return 0


__all__ = ["Outcome", "Pipeline", "build_app", "chunk_key", "parse_chunk_key", "run_worker"]
