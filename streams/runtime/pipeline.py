"""What the worker does with one message, and per tick — free of Faust, so the
Faust agent, the fast path and tests all drive the same code.

The contract is a total function: every message (or element of a JSON array) has
exactly one outcome — applied (in any of the engine's :class:`Outcome` s) or
returned as ``(bytes, reason)`` for the dead-letter topic. No input raises. Checks,
in order, each with its own reason class (the ``reason`` label of
``popstream_events_invalid_total``):

``empty``          a null value (a tombstone)
``oversized``      more than ``POPSTREAM_MAX_MESSAGE_BYTES``
``json``/``utf8``/``nesting``/``schema``/``unknown_type``  the decoder's verdicts
``wrong_topic``    the event's ``type`` belongs to another topic
``wrong_key``      the message key is not the event's ``seller_id``
``wrong_partition`` the partition does not own the seller (Kafka's default
                   partitioner on ``seller_id``): state kept here would be lost
                   at the next restart, since recovery rebuilds a seller from
                   its own partition only
``too_far_ahead``  stamped more than ``POPSTREAM_FUTURE_HORIZON`` after the clock
``conflict``       a second, different ``order`` for an existing order
``internal``       anything else (a bug): still dead-lettered, never a crash
"""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from streams.engine.catalog import Catalog
from streams.engine.engine import Engine, Outcome
from streams.engine.events import (
    EVENT_TYPES,
    Event,
    decode_event,
    decode_events,
    encode_event,
    format_us,
    split_batch,
    type_tag,
)
from streams.engine.explain import headroom, orders_to_recover
from streams.engine.windows import lane
from streams.errors import ConfigError, ConflictingEvent, InvalidEvent, TooFarAhead
from streams.fleet import FleetExporter
from streams.pages import worst_first_key
from streams.runtime.changelog import ChangelogWriter, Record, assemble
from streams.runtime.tallies import LatencyHistogram, Tally, TallyCollector
from streams.runtime.topics import TopicNames, owner_partition
from streams.settings import Settings

log = logging.getLogger("popstream.pipeline")

Bad = tuple[bytes, str]  # (the offending bytes, the reason)
# Owner partitions of sellers not (yet) in the seller->partition map: only events
# that are refused or first of their seller look here, so a small cache will do.
_OWNERS_MAX: Final = 1 << 16
# Sellers the fleet exporter re-counts in one go (~15-40 us each): ~25 ms of loop.
REFRESH_SLICE: Final = 1000
DEFAULT_PAGE: Final = 1000
INDEX_PAGE: Final = 100  # rows of the /sellers page
_ALERTING: Final = frozenset({"warning", "breach"})
MAX_PAGE: Final = 10_000


class Misrouted(InvalidEvent):
    """A valid event on a topic, key or partition that does not belong to it."""

    def __init__(self, reason: str, kind: str) -> None:
        super().__init__(reason)
        self.kind = kind


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
        self.split_chunks = Counter(
            "popstream_state_chunks_split",
            "Chunks larger than one changelog record, written as fragments.", registry=r)
        self.freed = Counter("popstream_sellers_freed",
                             "Sellers dropped because nothing of theirs is left in any "
                             "window.", registry=r)
        self.clock = Gauge("popstream_clock_seconds", "The engine's clock (as of).", registry=r)
        # Present from the first scrape: a worker stuck before its first message
        # (no consumed-counter increase, ever) is still visibly stuck.
        self.started = Gauge("popstream_worker_started_seconds",
                             "When this worker process started (Unix time).", registry=r)
        self.started.set_to_current_time()
        self.ready = Gauge("popstream_worker_ready",
                           "1 once the worker's first state recovery is done.", registry=r)
        self.dead_letter_failures = Counter(
            "popstream_flush_failures",
            "Flushes (changelog writes and dead letters) that failed and will be retried.",
            registry=r)


class Pipeline:
    """Everything the worker does per message and per tick, free of Faust, so it
    can be driven by the Faust agent or by a test directly."""

    def __init__(self, settings: Settings, catalog: Catalog) -> None:
        self.settings = settings
        now = settings.as_of if settings.as_of is not None else _now_us()
        # The horizon follows the wall clock. A fixed ``--as-of`` clock (a backfill)
        # never moves, so events after it never count there; they are held as
        # before rather than dead-lettered by the thousand.
        horizon = (None if settings.as_of is not None
                   else int(settings.future_horizon * 1_000_000))
        self.engine = Engine(catalog, now=now, track_dirty=True, track_touched=True,
                             future_horizon=horizon)
        self.fleet = FleetExporter(self.engine, settings.export,  # type: ignore[arg-type]
                                   _watchlist(settings.watchlist), transitions=True)
        self._index_plan = [(m, wi, num, den) for m, (_, wi, num, den) in zip(
            catalog.metrics, self.engine.metric_plan(), strict=True)]
        self.metrics = PipelineMetrics()
        self.seller_partition: dict[str, int] = {}
        # Sellers freed by the engine, until their tombstones are written.
        self._leaving: dict[str, int] = {}
        self.max_bytes = settings.max_message_bytes
        self.partitions = settings.partitions
        self.changelog = ChangelogWriter()
        names = TopicNames(settings.topic_prefix)
        self._topic_type: dict[str, type] = {
            names.for_type(t): _CLASS_OF[t] for t in EVENT_TYPES}
        # The native engine's batch path (see _handle_natively), and its type codes.
        self._native = hasattr(self.engine, "decode_message")
        self._kind_code: dict[type, int] = {c: i for i, c in enumerate(_KIND_CLASSES)}
        for topic in self._topic_type:  # a series per topic from the start, at 0
            self.metrics.messages.counts[(topic,)] = 0
        self.lag_labels: set[tuple[str, str]] = set()
        self._sorted: list[str] = []
        self._sorted_key: tuple[int, int, int] | None = None
        self._owner: dict[str, int] = {}
        # Wall times of the first and last message handled: a throughput probe.
        self.first_message_at: float | None = None
        self.last_message_at: float | None = None
        # Set by the worker: until the first recovery is done, state is partial.
        self.ready = False
        self.problems: dict[str, str] = {}  # condition -> reason, for /health

    # --- messages ---------------------------------------------------------------

    def handle(self, value: bytes | None, topic: str, partition: int, offset: int,
               timestamp_ms: float | None, key: bytes | None = None) -> list[Bad]:
        """Apply one Kafka message; return ``(bad bytes, reason)`` to dead-letter.

        This runs once per message, and its loop once per event: it is written for
        speed (tallies, local names, a whole bulk array decoded in one call). Any
        message with something wrong in it takes :meth:`_handle_slowly`, which
        finds and explains each bad event; what it re-applies is exact, because a
        rejected event leaves the state as it was.
        """
        messages = self.metrics.messages.counts
        mkey = (topic,)
        messages[mkey] = messages.get(mkey, 0) + 1
        if value is None or len(value) > self.max_bytes:
            return self._handle_slowly(value, topic, partition, key, timestamp_ms)
        if self.settings.as_of is None:
            # Follow the wall clock per message, not per tick: an event stamped
            # "now" by its producer must count now, not wait for the next tick.
            self.engine.advance(_now_us())
        counts = self.metrics.events.counts
        expected = self._topic_type.get(topic)
        sellers = self.seller_partition
        seller_key = None
        if key is not None:
            try:
                seller_key = key.decode()
            except UnicodeDecodeError:
                return self._handle_slowly(value, topic, partition, key, timestamp_ms)
        if self._native:
            native = self._handle_natively(value, topic, partition, key, timestamp_ms,
                                           expected, seller_key)
            if native is not None:
                return native
        index = 0
        try:
            if value[:1] != b"[":
                try:
                    event = decode_event(value)
                except InvalidEvent as exc:
                    if value.lstrip()[:1] == b"[":  # an array behind whitespace
                        raise
                    # Explained once: decoding a hostile value can cost milliseconds
                    # (a nesting bomb), so the slow path must not do it again.
                    self.metrics.invalid.add(_reason_class(exc))
                    self._handled(timestamp_ms)
                    return [(value, str(exc))]
                sid = event.seller_id
                if (type(event) is not expected
                        or (sellers.get(sid, -1) != partition and not self._owned(sid, partition))
                        or (seller_key is not None and sid != seller_key)):
                    return self._handle_slowly(value, topic, partition, key, timestamp_ms)
                outcome = self.engine.apply(event)
                sellers[sid] = partition
                key2 = (type(event), outcome)
                counts[key2] = counts.get(key2, 0) + 1
            else:
                events = decode_events(value)
                if events is None:
                    return self._handle_slowly(value, topic, partition, key, timestamp_ms)
                apply = self.engine.apply
                for index, event in enumerate(events):
                    sid = event.seller_id
                    if (type(event) is not expected
                            or (sellers.get(sid, -1) != partition
                                and not self._owned(sid, partition))
                            or (seller_key is not None and sid != seller_key)):
                        return self._handle_slowly(value, topic, partition, key,
                                                   timestamp_ms, index)
                    outcome = apply(event)
                    sellers[sid] = partition
                    key2 = (type(event), outcome)
                    counts[key2] = counts.get(key2, 0) + 1
        except Exception:  # explained, element by element, by the slow path
            return self._handle_slowly(value, topic, partition, key, timestamp_ms, index)
        self._handled(timestamp_ms)
        return []

    def _handle_natively(self, value: bytes, topic: str, partition: int, key: bytes | None,
                         timestamp_ms: float | None, expected: type | None,
                         seller_key: str | None) -> list[Bad] | None:
        """:meth:`handle` on the native engine: the core decodes the whole message,
        routing is checked for all its events, then the core applies them all;
        Python's work per event is a few C-level passes over their codes.

        ``None``: the core found something invalid in the message (or it is not
        the native engine's to decide), and :meth:`handle`'s Python path explains
        it. A misrouted event sends the whole message to the slow path before
        anything is applied. Events the engine rejects (a conflict, too far
        ahead) leave the state unchanged and are dead-lettered with the Python
        engine's exact reasons, as the slow path would."""
        engine = self.engine
        batch = engine.decode_message(value)  # type: ignore[attr-defined]
        if batch is None:
            return None
        kinds: bytes = batch.kinds
        seller_ids: list[str] = batch.seller_ids
        code = self._kind_code.get(expected, -1) if expected is not None else -1
        if code < 0 or kinds.count(code) != len(kinds):
            return self._handle_slowly(value, topic, partition, key, timestamp_ms)
        sellers = self.seller_partition
        for sid in set(seller_ids) if len(seller_ids) > 1 else seller_ids:
            if ((sellers.get(sid, -1) != partition and not self._owned(sid, partition))
                    or (seller_key is not None and sid != seller_key)):
                return self._handle_slowly(value, topic, partition, key, timestamp_ms)
        codes: bytes = engine.apply_decoded(batch)  # type: ignore[attr-defined]
        counts = self.metrics.events.counts
        kind = _KIND_CLASSES[code]
        bad: list[Bad] = []
        if max(codes) < len(_NATIVE_OUTCOMES):  # no event rejected: the common case
            sellers.update(dict.fromkeys(seller_ids, partition))
            for outcome_code, n in _count_bytes(codes):
                k = (kind, _NATIVE_OUTCOMES[outcome_code])
                counts[k] = counts.get(k, 0) + n
        else:
            for i, c in enumerate(codes):
                if c < len(_NATIVE_OUTCOMES):
                    sellers[seller_ids[i]] = partition
                    k = (kind, _NATIVE_OUTCOMES[c])
                    counts[k] = counts.get(k, 0) + 1
                    continue
                raw = batch.raw(i)
                exc = engine.error(c, raw)  # type: ignore[attr-defined]
                where = f"element {i}: " if batch.is_array else ""
                bad.append((raw, where + str(exc)))
                self.metrics.invalid.add(_reason_class(exc))
        self._handled(timestamp_ms)
        return bad

    def _owned(self, seller_id: str, partition: int) -> bool:
        owner = self._owner.get(seller_id)
        if owner is None:
            if len(self._owner) >= _OWNERS_MAX:
                self._owner.clear()
            owner = self._owner[seller_id] = owner_partition(seller_id, self.partitions)
        return owner == partition

    def _handled(self, timestamp_ms: float | None) -> None:
        self.last_message_at = now = time.time()
        if self.first_message_at is None:
            self.first_message_at = now
        if timestamp_ms:
            self.metrics.latency.observe(max(0.0, now - timestamp_ms / 1000))

    def _handle_slowly(self, value: bytes | None, topic: str, partition: int,
                       key: bytes | None, timestamp_ms: float | None,
                       start: int = 0) -> list[Bad]:
        """A message with something wrong: each event decoded, checked and applied
        on its own, each bad one explained. ``start``: array elements before it
        have been applied already (by :meth:`handle`)."""
        invalid = self.metrics.invalid
        if value is None:
            invalid.add("empty")
            bad = [(b"", "empty message value (a tombstone?)")]
        elif len(value) > self.max_bytes:
            invalid.add("oversized")
            bad = [(value, f"oversized: {len(value)} bytes > {self.max_bytes} "
                           "(POPSTREAM_MAX_MESSAGE_BYTES)")]
        else:
            try:
                bad = self._apply_each(value, topic, partition, key, start)
            except Exception as exc:  # a bug; the message still has an outcome
                log.exception("internal error on %s[%d]", topic, partition)
                invalid.add("internal")
                bad = [(value, f"internal error: {type(exc).__name__}: {exc}")]
        self._handled(timestamp_ms)
        return bad

    def _apply_each(self, value: bytes, topic: str, partition: int, key: bytes | None,
                    start: int) -> list[Bad]:
        try:
            batch = split_batch(value)
        except InvalidEvent as exc:
            self.metrics.invalid.add(_reason_class(exc))
            return [(value, str(exc))]
        bad: list[Bad] = []
        items: list[bytes] = [value] if batch is None else [bytes(b) for b in batch]
        for index in range(start, len(items)):
            raw = items[index]
            where = "" if batch is None else f"element {index}: "
            try:
                self.apply_checked(raw, topic, partition, key)
            except InvalidEvent as exc:
                bad.append((raw, where + str(exc)))
                self.metrics.invalid.add(_reason_class(exc))
            except Exception as exc:  # a bug: dead-letter, count, say so, go on
                log.exception("internal error on %s[%d]", topic, partition)
                bad.append((raw, f"{where}internal error: {type(exc).__name__}: {exc}"))
                self.metrics.invalid.add("internal")
        return bad

    def apply_checked(self, raw: bytes, topic: str, partition: int,
                      key: bytes | None) -> Outcome:
        """Decode, check where it arrived, apply; raises :class:`InvalidEvent`."""
        event = decode_event(raw)
        self._check_route(event, topic, partition, key)
        outcome = self.engine.apply(event)
        self.seller_partition[event.seller_id] = partition
        counts = self.metrics.events.counts
        k = (type(event), outcome)
        counts[k] = counts.get(k, 0) + 1
        return outcome

    def _check_route(self, event: Event, topic: str, partition: int,
                     key: bytes | None) -> None:
        expected = self._topic_type.get(topic)
        kind = type_tag(type(event))
        if type(event) is not expected:
            home = ", ".join(t for t, c in self._topic_type.items() if c is type(event))
            raise Misrouted(f"a {kind!r} event on topic {topic!r}; {kind} events belong "
                            f"on {home!r}", "wrong_topic")
        seller_id = event.seller_id
        if key is not None and key != seller_id.encode():
            shown = key[:80].decode("utf-8", "backslashreplace")
            raise Misrouted(f"message key {shown!r} is not the event's seller_id "
                            f"{seller_id!r} (key each message by seller_id)", "wrong_key")
        if not self._owned(seller_id, partition):
            owner = self._owner[seller_id]
            raise Misrouted(
                f"seller {seller_id!r} belongs on partition {owner} of {self.partitions} "
                f"(murmur2 of seller_id), not {partition}: produce with the seller id as "
                "key and no explicit partition", "wrong_partition")

    # --- time -------------------------------------------------------------------

    def tick(self) -> list[Bad]:
        """Let time pass (unless the clock is fixed); refresh gauges. Returns held
        events that turned out to conflict when they became due (dead letters)."""
        if self.settings.as_of is None:
            self.engine.advance(_now_us())
        bad: list[Bad] = []
        for event, exc in self.engine.deferred_rejects:
            self.metrics.invalid.add("conflict")
            bad.append((encode_event(event), f"held until due, then: {exc}"))
        self.engine.deferred_rejects.clear()
        freed = self.engine.take_freed()
        for seller_id in freed:
            partition = self.seller_partition.pop(seller_id, None)
            if partition is not None and seller_id in self.engine.dirty:
                self._leaving[seller_id] = partition  # until its tombstones are written
        if freed:
            self.metrics.freed.inc(len(freed))
        self.fleet.refresh(limit=REFRESH_SLICE)  # the worker's catch-up task does the rest
        m = self.metrics
        m.pending.set(self.engine.pending_orders)
        m.orders.set(self.engine.tracked_orders)
        m.sellers.set(len(self.seller_partition))
        m.clock.set(self.engine.now / 1e6)
        return bad

    # --- persistence ------------------------------------------------------------

    def dirty_chunks(self) -> list[Record]:
        """``(partition, key, value)`` records of every chunk changed since the
        last call (fragments and tombstones included), in write order."""
        out: list[Record] = []
        leaving = self._leaving
        for seller_id, chunks in self.engine.take_dirty().items():
            partition = self.seller_partition.get(seller_id)
            if partition is None:
                partition = leaving.pop(seller_id, None)
                if partition is None:
                    continue  # never seen on this worker: nothing of ours to persist
            before = self.changelog.split_writes
            for chunk, data in self.engine.seller_chunks(seller_id, chunks).items():
                out += self.changelog.records(partition, seller_id, chunk, data)
            if self.changelog.split_writes != before:
                self.metrics.split_chunks.inc(self.changelog.split_writes - before)
        self.metrics.flushes.inc(len(out))
        return out

    def restore(self, items: Iterable[tuple[bytes, bytes | None]], assigned: set[int]) -> int:
        """Rebuild sellers of ``assigned`` partitions that the engine lacks from
        table items; drop sellers of partitions no longer assigned."""
        # Sellers leaving with their partition, or coming back from the changelog,
        # did not change status: settle what live events changed first, then take
        # the restore's moves without transitions.
        self.fleet.refresh()
        for seller_id, partition in list(self.seller_partition.items()):
            if partition not in assigned:
                self.engine.drop_seller(seller_id)
                del self.seller_partition[seller_id]
        chunks, problems = assemble(items, self.changelog)
        for problem in problems:
            log.error("changelog chunk skipped: %s", problem)
        grouped: dict[str, dict[int | None, bytes]] = {}
        partitions: dict[str, int] = {}
        for c in chunks:
            if c.seller_id in self.seller_partition:
                continue  # already live here: the engine is ahead of the table
            if c.partition is not None:
                partitions[c.seller_id] = c.partition
            grouped.setdefault(c.seller_id, {})[c.chunk] = c.data
        # What a restore marks dirty differs from the table: days that left the
        # window while the worker was away (tombstones), deadlines that passed and
        # held events that fell due. All of it is written by the next flush.
        restored = 0
        for seller_id, seller_chunks in grouped.items():
            # A seller with only pending records has no META chunk: its owner is
            # the partition its id hashes to (every event was checked against it).
            owner = partitions.get(seller_id, owner_partition(seller_id, self.partitions))
            if owner is None or owner not in assigned:
                continue
            self.engine.restore_seller_chunks(seller_id, seller_chunks)
            self.seller_partition[seller_id] = owner
            restored += 1
        self.fleet.refresh(emit=False)
        return restored

    def status_events(self) -> list[tuple[bytes, bytes]]:
        """``(key, value)`` of each status transition since the last call, for the
        ``popstream-status`` topic (keyed by seller)."""
        return [(t.seller_id.encode(), t.to_json()) for t in self.fleet.take_transitions()]

    # --- reading ----------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        consumed = self.metrics.messages.total()
        status = "starting" if not self.ready else "degraded" if self.problems else "ok"
        return {
            "status": status,
            "problems": dict(self.problems),
            "engine": "native" if self._native else "python",
            "as_of": format_us(self.engine.now),
            "messages_consumed": int(consumed),
            "sellers": len(self.seller_partition),
            "pending_orders": self.engine.pending_orders,
            "tracked_orders": self.engine.tracked_orders,
            "first_message_at": self.first_message_at,
            "last_message_at": self.last_message_at,
        }

    def render_metrics(self) -> bytes:
        """The whole page at once, caught up (tests, tools)."""
        return self.fleet.render(trailer=generate_latest(self.metrics.registry).decode())

    def render_parts(self) -> Iterator[str]:
        """The page in parts, for a server that yields between them (see
        :meth:`FleetExporter.render_parts`); not caught up first: a scrape during a
        midnight catch-up shows some sellers as of a few seconds ago."""
        self.fleet.refresh(limit=REFRESH_SLICE)
        yield from self.fleet.render_parts()
        yield generate_latest(self.metrics.registry).decode()

    def sellers_page(self, status: str | None = None, metric: str | None = None,
                     limit: int = DEFAULT_PAGE, cursor: str | None = None) -> dict[str, Any]:
        """One page of ``/api/sellers``: sellers in id order after ``cursor``, at most
        ``limit``, those with ``status`` (on ``metric``, or on any metric) only, and
        only ``metric`` shown if given. ``next_cursor`` is null on the last page.

        Sellers in warning or breach are found among the exported ones (in the
        default export mode that is exactly them); other filters walk the tracked
        sellers in id order, kept sorted until the set of sellers changes."""
        engine = self.engine
        fleet = self.fleet
        caught_up = fleet.refresh(limit=REFRESH_SLICE) == 0
        if status in ("warning", "breach") and fleet.mode == "alerting" and caught_up:
            candidates = sorted(fleet.exported)
        else:
            candidates = self._sorted_ids()
        start = 0 if cursor is None else bisect.bisect_right(candidates, cursor)
        page: dict[str, Any] = {}
        next_cursor: str | None = None
        for index in range(start, len(candidates)):
            seller_id = candidates[index]
            seller = engine.sellers.get(seller_id)
            if seller is None or not seller.sums[-1]:
                continue
            metrics = engine.seller_metrics(seller_id)
            shown = {metric: metrics[metric]} if metric is not None else metrics
            if status is not None and all(mv.status != status for mv in shown.values()):
                continue
            if len(page) == limit:
                next_cursor = next(reversed(page))
                break
            page[seller_id] = {name: mv.to_dict() for name, mv in shown.items()}
        return {"as_of": format_us(engine.now), "sellers": page, "next_cursor": next_cursor}

    def index_candidates(self) -> list[str]:
        """The sellers ``/sellers`` may list: the exported ones in the default export
        mode (exactly those in warning or breach, plus the watch list: a few per cent
        of a worker's sellers), else every tracked seller."""
        fleet = self.fleet
        caught_up = fleet.refresh(limit=REFRESH_SLICE) == 0
        if fleet.mode == "alerting" and caught_up:
            return list(fleet.exported)
        return list(self.engine.seller_ids())

    def index_key(self, seller_id: str, metric: str | None = None
                  ) -> tuple[int, int, int, str] | None:
        """Where a seller ranks on ``/sellers`` (:func:`streams.pages.worst_first_key`),
        or None when it is not in warning or breach (on ``metric``, or on any).

        Straight from the seller's running sums: statuses, and the headroom or the
        orders to recover of ``metric`` only. ~10x cheaper than a full row, which only
        the page's rows need (:meth:`index_row`)."""
        seller = self.engine.sellers.get(seller_id)
        if seller is None or not seller.sums[-1]:
            return None
        sums = seller.sums
        figures: dict[str, dict[str, Any]] = {}
        alerting = False
        for m, wi, num_bit, den_bit in self._index_plan:
            if metric is not None and m.name != metric:
                continue
            vector = sums[wi]
            num, den = lane(vector, num_bit), lane(vector, den_bit)
            status = m.status(num, den)
            entry: dict[str, Any] = {"status": status}
            if status in _ALERTING:
                alerting = True
                if metric is not None:
                    entry["headroom"] = headroom(m, num, den)
                    entry["orders_to_recover"] = orders_to_recover(m, num, den)
            figures[m.name] = entry
        if not alerting:
            return None
        return worst_first_key({"seller_id": seller_id, "metrics": figures}, metric)

    def index_row(self, seller_id: str) -> dict[str, Any]:
        """One ``/sellers`` row: every metric's figures, headroom and recovery."""
        values = self.engine.seller_metrics(seller_id)
        return {"seller_id": seller_id, "metrics": {
            m.name: {**values[m.name].to_dict(),
                     "headroom": headroom(m, values[m.name].numerator,
                                          values[m.name].denominator),
                     "orders_to_recover": orders_to_recover(m, values[m.name].numerator,
                                                            values[m.name].denominator)}
            for m in self.engine.catalog.metrics}}

    def alerting_rows(self, metric: str | None = None, limit: int = INDEX_PAGE,
                      cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """The ``/sellers`` page at once (tools and tests; the worker ranks in slices
        between messages, see streams.runtime.web): sellers in warning or breach,
        worst first, ``limit`` from position ``cursor`` on, and the next position
        (None on the last page). Positions are in the order of the moment."""
        keyed = [(key, sid) for sid in self.index_candidates()
                 if (key := self.index_key(sid, metric)) is not None]
        return self.index_page(keyed, limit, cursor)

    def index_page(self, keyed: list[tuple[tuple[int, int, int, str], str]], limit: int,
                   cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        keyed.sort()
        start = int(cursor) if cursor is not None else 0
        rows = [self.index_row(sid) for _, sid in keyed[start:start + limit]]
        return rows, str(start + limit) if start + limit < len(keyed) else None

    def _sorted_ids(self) -> list[str]:
        key = (self.fleet.tracked, len(self.engine.sellers), self.fleet.version)
        if self._sorted_key != key:
            self._sorted = sorted(self.engine.seller_ids())
            self._sorted_key = key
        return self._sorted

    def sellers_json(self, seller_id: str | None = None) -> dict[str, Any] | None:
        engine = self.engine
        if seller_id is not None:
            seller = engine.sellers.get(seller_id)
            if seller is None or not seller.has_orders:
                return None
        ids = sorted(engine.seller_ids()) if seller_id is None else [seller_id]
        return {
            "as_of": format_us(engine.now),
            "sellers": {
                sid: {name: mv.to_dict() for name, mv in engine.seller_metrics(sid).items()}
                for sid in ids
            },
        }


def _event_labels(key: tuple[type, Outcome]) -> tuple[str, str]:
    kind, outcome = key
    return type_tag(kind), outcome.value


def _reason_class(exc: InvalidEvent) -> str:
    if isinstance(exc, Misrouted):
        return exc.kind
    if isinstance(exc, TooFarAhead):
        return "too_far_ahead"
    if isinstance(exc, ConflictingEvent):
        return "conflict"
    text = exc.reason
    if text.startswith("invalid UTF-8"):
        return "utf8"
    if text.startswith("nesting deeper"):
        return "nesting"
    if text.startswith("not valid JSON") or text.startswith("undecodable"):
        return "json"
    if text.startswith("unknown event type"):
        return "unknown_type"
    return "schema"


def _watchlist(path: Path | None) -> list[str]:
    if path is None:
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"POPSTREAM_WATCHLIST: cannot read {str(path)!r}: {exc}") from None
    return [line.strip() for line in text.splitlines() if line.strip()
            and not line.lstrip().startswith("#")]


def _class_of() -> dict[str, type]:
    from streams.engine import events as ev

    return {"order": ev.Order, "cancellation": ev.Cancellation, "shipment": ev.Shipment,
            "refund": ev.Refund, "feedback": ev.Feedback, "claim": ev.Claim,
            "message": ev.Message, "delivery": ev.Delivery, "return": ev.Return}


_CLASS_OF: Final = _class_of()
_KIND_CLASSES: Final = tuple(_CLASS_OF[t] for t in EVENT_TYPES)
"""Event classes by the native core's type code (its order is EVENT_TYPES')."""
_NATIVE_OUTCOMES: Final = (Outcome.APPLIED, Outcome.PENDING, Outcome.DUPLICATE,
                           Outcome.HELD, Outcome.EXPIRED)
"""Outcomes by the native core's outcome code; a higher code is a rejection."""


def _count_bytes(codes: bytes) -> Iterator[tuple[int, int]]:
    """``(code, how many)`` for each code present in ``codes`` (C-level counting)."""
    if len(codes) == 1:
        yield codes[0], 1
        return
    for c in range(len(_NATIVE_OUTCOMES)):
        n = codes.count(c)
        if n:
            yield c, n


def _now_us() -> int:
    return time.time_ns() // 1000
