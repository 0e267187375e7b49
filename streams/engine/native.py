"""The compiled engine (issue #14): :class:`NativeEngine`, :class:`Engine`'s API over
the Rust core in ``streams._native`` (the crate in ``native/``).

Same semantics, same results, same persistence formats as
:class:`streams.engine.engine.Engine` (the reference, kept): snapshots and changelog
chunks written by either engine restore in the other. What differs is where the
state lives: in compact records inside the core (under 100 bytes an order), not in
Python objects, so readers get *views*:

* :attr:`NativeEngine.sellers` is a read-only mapping of :class:`SellerView`, whose
  ``sums`` (the lane-vector ints of ``Seller.sums``), ``orders`` (order key ->
  record in :mod:`streams.engine.orders`'s packed format, buyer-message records
  under ``RESPONSE_KEY + id`` included), ``messages``, ``future``, ``replies`` are
  built when read;
* errors come back from the core as outcome codes and are raised here with the
  Python engine's exact messages (:class:`~streams.errors.InvalidEvent` from
  :func:`~streams.engine.events.decode_event` itself, which doubles as a parity
  check of the core's decoder).

The batch entry points (:meth:`NativeEngine.apply_lines`,
:meth:`NativeEngine.decode_message` / :meth:`NativeEngine.apply_decoded`) keep the
per-event Python work to a byte of outcome code.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Final

import msgspec

from streams import _native  # type: ignore[attr-defined]
from streams.engine import orders as rec
from streams.engine.catalog import Catalog, default_catalog
from streams.engine.engine import (
    META,
    SNAPSHOT_VERSION,
    Engine,
    MessageState,
    Outcome,
    SnapshotError,
    _decode_chunk,
    _decode_meta,
    _encode_chunk,
    _encode_meta,
    _EngineSnapshot,
    _Meta,
    _SellerSnapshot,
    _span,
)
from streams.engine.events import (
    EVENT_TYPES,
    Event,
    decode_event,
    encode_event,
    format_us,
)
from streams.engine.rules import HAS_ORDER
from streams.engine.windows import windows_by_age
from streams.errors import (
    ConfigError,
    ConflictingEvent,
    InvalidEvent,
    PopstreamError,
    TooFarAhead,
)

__all__ = ["KIND_TAGS", "NativeEngine", "NativeParityError", "SellerView"]

OUTCOMES: Final[tuple[Outcome, ...]] = (
    Outcome.APPLIED, Outcome.PENDING, Outcome.DUPLICATE, Outcome.HELD, Outcome.EXPIRED,
)
INVALID: Final = 5
CONFLICT: Final = 6
TOO_FAR: Final = 7
UNSURE: Final = 8
KIND_TAGS: Final = EVENT_TYPES
"""The event type of each code in :attr:`DecodedBatch.kinds` (the core's order)."""
_LANE_BYTES: Final = 22 * 4


class NativeParityError(PopstreamError):
    """The core's decoder rejected what :func:`decode_event` accepts: a bug, never
    papered over by a silent fallback."""


def _lanes(raw: bytes, n_windows: int) -> list[int]:
    """Little-endian u32 counts [window][predicate] -> one lane-vector int a window
    (count of predicate bit b in bits 32*b .. 32*b+31: exactly the bytes' value)."""
    return [int.from_bytes(raw[i * _LANE_BYTES:(i + 1) * _LANE_BYTES], "little")
            for i in range(n_windows)]


class SellerView:
    """One seller's state, read from the core when asked (``Seller``'s attributes)."""

    __slots__ = ("_engine", "id")

    def __init__(self, engine: NativeEngine, seller_id: str) -> None:
        self._engine = engine
        self.id = seller_id

    def _core_or_gone(self) -> _native.Core:
        return self._engine._core

    @property
    def sums(self) -> list[int]:
        raw = self._engine._core.sums(self.id)
        if raw is None:
            return [0] * self._engine._n_windows
        return _lanes(raw, self._engine._n_windows)

    @property
    def orders(self) -> dict[bytes, bytes]:
        records = self._engine._core.records(self.id, True) or []
        return {key: record for _, key, record in records}

    @property
    def messages(self) -> dict[str, MessageState]:
        meta = self._engine._core.meta(self.id)
        if meta is None:
            return {}
        return {mid: MessageState(at, about, counts, anchor, digests, asks)
                for mid, at, about, counts, anchor, digests, asks in meta[1]}

    @property
    def future(self) -> list[tuple[int, int, Event]]:
        meta = self._engine._core.meta(self.id)
        if meta is None:
            return []
        return [(at, seq, decode_event(raw)) for at, seq, raw in meta[2]]

    @property
    def replies(self) -> dict[str, tuple[int, int]]:
        meta = self._engine._core.meta(self.id)
        if meta is None:
            return {}
        return {q: (at, anchor) for q, at, anchor in meta[3]}

    @property
    def has_orders(self) -> bool:
        meta = self._engine._core.meta(self.id)
        return bool(meta and meta[0])

    @property
    def timers(self) -> list[tuple[int, int]]:
        """(deadline, hash of the order key): the core keeps no key copy."""
        return self._engine._core.timers(self.id)  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"SellerView({self.id!r})"


class _Sellers(Mapping[str, SellerView]):
    """``NativeEngine.sellers``: the sellers the core holds, in creation order."""

    __slots__ = ("_engine",)

    def __init__(self, engine: NativeEngine) -> None:
        self._engine = engine

    def __getitem__(self, seller_id: str) -> SellerView:
        if not isinstance(seller_id, str) or not self._engine._core.has_seller(seller_id):
            raise KeyError(seller_id)
        return SellerView(self._engine, seller_id)

    def get(self, seller_id: str, default: SellerView | None = None  # type: ignore[override]
            ) -> SellerView | None:
        if isinstance(seller_id, str) and self._engine._core.has_seller(seller_id):
            return SellerView(self._engine, seller_id)
        return default

    def __contains__(self, seller_id: object) -> bool:
        return isinstance(seller_id, str) and self._engine._core.has_seller(seller_id)

    def __len__(self) -> int:
        return len(self._engine._core)

    def __iter__(self) -> Iterator[str]:
        return iter(self._engine._core.seller_ids(False))

    def items(self):  # type: ignore[no-untyped-def]
        engine = self._engine
        return [(sid, SellerView(engine, sid)) for sid in engine._core.seller_ids(False)]

    def values(self):  # type: ignore[no-untyped-def]
        engine = self._engine
        return [SellerView(engine, sid) for sid in engine._core.seller_ids(False)]

    def keys(self):  # type: ignore[no-untyped-def]
        return self._engine._core.seller_ids(False)


class _DirtyView(Mapping[str, set[int | None]]):
    """``NativeEngine.dirty``: chunks changed since the last take_dirty (read only)."""

    __slots__ = ("_engine",)

    def __init__(self, engine: NativeEngine) -> None:
        self._engine = engine

    def _peek(self) -> dict[str, set[int | None]]:
        return self._engine._core_dirty_peek()

    def __getitem__(self, seller_id: str) -> set[int | None]:
        return self._peek()[seller_id]

    def __contains__(self, seller_id: object) -> bool:
        return seller_id in self._peek()

    def __len__(self) -> int:
        return len(self._peek())

    def __iter__(self) -> Iterator[str]:
        return iter(self._peek())


class NativeEngine:
    """:class:`~streams.engine.engine.Engine` on the compiled core."""

    def __init__(
        self,
        catalog: Catalog | None = None,
        now: int = 0,
        *,
        fixed_clock: bool = False,
        track_dirty: bool = False,
        track_touched: bool = False,
        future_horizon: int | None = None,
    ) -> None:
        if future_horizon is not None and future_horizon < 0:
            raise ConfigError(
                f"future_horizon must be >= 0 microseconds (or None), got {future_horizon}"
            )
        self.catalog = catalog or default_catalog()
        self.fixed_clock = fixed_clock
        self.track_dirty = track_dirty
        self.track_touched = track_touched
        self.future_horizon = future_horizon
        windows = self.catalog.windows
        self._windows = windows
        self._n_windows = len(windows)
        self._horizon = self.catalog.horizon_days
        self._windows_of_age = windows_by_age(windows)
        hours = self.catalog.response_hours
        self._response_us: int | None = None if hours is None else hours * 3_600_000_000
        self._plan = [
            (m, windows.index(m.window), _predicate(m.numerator), _predicate(m.denominator))
            for m in self.catalog.metrics
        ]
        self._core = _native.Core(now, list(windows), fixed_clock, track_dirty, track_touched,
                                  future_horizon, self._response_us)
        self.sellers = _Sellers(self)
        self._deferred: list[tuple[Event, ConflictingEvent]] = []

    # --- clock --------------------------------------------------------------------

    @property
    def now(self) -> int:
        return self._core.now  # type: ignore[no-any-return]

    @property
    def today(self) -> int:
        return self._core.today  # type: ignore[no-any-return]

    def advance(self, now: int) -> None:
        """Move the clock forward to ``now`` (us); earlier times are ignored."""
        if now <= self._core.now:
            return
        if self.fixed_clock:
            raise PopstreamError("this engine's clock is fixed (a replay); it cannot advance")
        self._core.advance(now)

    # --- events -------------------------------------------------------------------

    def apply_bytes(self, data: bytes) -> Outcome:
        """Decode and apply one JSON event; raises :class:`InvalidEvent`."""
        code: int = self._core.apply(data)
        if code < INVALID:
            return OUTCOMES[code]
        if code == UNSURE:
            return self.apply(decode_event(data))
        raise self._error(code, data)

    def apply(self, event: Event) -> Outcome:
        """Fold one validated event into the state (see :meth:`Engine.apply`)."""
        data = encode_event(event)
        code: int = self._core.apply(data)
        if code < INVALID:
            return OUTCOMES[code]
        raise self._error(code, data)

    def apply_lines(self, lines: list[bytes]) -> bytes:
        """Decode and apply each line: one outcome code per line (0..4 the index in
        :data:`OUTCOMES`; 5 invalid, 6 conflicting, 7 too far ahead: the state is
        unchanged by those, and :meth:`error` explains them)."""
        core = self._core
        codes = core.apply_lines(lines)
        if not codes or codes[-1] != UNSURE:
            return codes  # type: ignore[no-any-return]
        out = bytearray()
        while codes and codes[-1] == UNSURE:
            out += codes[:-1]
            out.append(self._slow_code(lines[len(out)]))
            codes = core.apply_lines(lines, len(out)) if len(out) < len(lines) else b""
        out += codes
        return bytes(out)

    def _slow_code(self, data: bytes) -> int:
        """A document the core left to decode_event (repeated keys, deep nesting)."""
        try:
            return OUTCOMES.index(self.apply(decode_event(data)))
        except ConflictingEvent:
            return CONFLICT
        except TooFarAhead:
            return TOO_FAR
        except InvalidEvent:
            return INVALID

    def error(self, code: int, data: bytes) -> PopstreamError:
        """The exception the Python engine raises for an event the core answered with
        error ``code`` (5..7), e.g. from :meth:`apply_lines`."""
        return self._error(code, data)

    def _error(self, code: int, data: bytes) -> PopstreamError:
        try:
            event = decode_event(data)
        except InvalidEvent as exc:
            if code == INVALID:
                return exc
            raise
        if code == INVALID:
            return NativeParityError(
                f"the native decoder rejected an event decode_event accepts: {data[:200]!r}")
        if code == CONFLICT:
            return _conflict(event)
        if code == TOO_FAR:
            return self._too_far(event)
        raise AssertionError(f"unknown outcome code {code}")

    def _too_far(self, event: Event) -> TooFarAhead:
        from streams.engine.events import to_us
        occurred_at = to_us(event.occurred_at)
        ahead = occurred_at - self.now
        horizon = self.future_horizon
        assert horizon is not None
        return TooFarAhead(
            f"occurred_at {format_us(occurred_at)} is {_span(ahead)} ahead of the "
            f"clock {format_us(self.now)}; at most {_span(horizon)} ahead are "
            "accepted",
            field="$.occurred_at",
        )

    def outcome(self, code: int, data: bytes) -> Outcome | PopstreamError:
        """An outcome code as the :class:`Outcome` or the (unraised) exception."""
        return OUTCOMES[code] if code < INVALID else self._error(code, data)

    # --- the two-phase message API (the Kafka pipeline) ---------------------------

    def decode_message(self, value: bytes) -> _native.DecodedBatch | None:
        """A Kafka message's events, decoded and validated: one event or a JSON
        array of events. ``None`` when anything in it is invalid (or it is empty):
        the caller takes its slow path (:func:`~streams.engine.events.split_batch`,
        :func:`decode_event` per element), which explains each bad element.

        The batch exposes ``kinds`` (bytes, one code per event, the index of its
        type in :data:`KIND_TAGS`), ``seller_ids`` (list of str), ``is_array``,
        ``raw(i)`` (an event's JSON) and ``len()``."""
        batch = self._core.decode_message(value)
        if batch is None or not len(batch):
            return None
        return batch

    def apply_decoded(self, batch: _native.DecodedBatch) -> bytes:
        """Apply a decoded batch: one outcome code per event (see
        :meth:`apply_lines`; :meth:`outcome` turns a code into an Outcome or the
        exception)."""
        return self._core.apply_decoded(batch)  # type: ignore[no-any-return]

    def apply_decoded_outcomes(self, batch: _native.DecodedBatch
                               ) -> list[Outcome | PopstreamError]:
        codes = self._core.apply_decoded(batch)
        return [OUTCOMES[c] if c < INVALID else self._error(c, batch.raw(i))
                for i, c in enumerate(codes)]

    # --- held events rejected when due --------------------------------------------

    @property
    def deferred_rejects(self) -> list[tuple[Event, ConflictingEvent]]:
        for raw in self._core.take_deferred():
            event = decode_event(raw)
            self._deferred.append((event, _conflict(event)))
        return self._deferred

    @deferred_rejects.setter
    def deferred_rejects(self, value: list[tuple[Event, ConflictingEvent]]) -> None:
        self._core.take_deferred()
        self._deferred = value

    # --- incremental persistence --------------------------------------------------

    @property
    def touched(self) -> dict[str, list[int]] | None:
        """Not kept as a dict (see :meth:`take_touched`); ``None`` without
        ``track_touched``, an empty dict otherwise (the flag callers test)."""
        return {} if self.track_touched else None

    def take_touched(self) -> dict[str, list[int]]:
        if not self.track_touched:
            return {}
        n = self._n_windows
        return {sid: _lanes(raw, n) for sid, raw in self._core.take_touched()}

    def _core_dirty_peek(self) -> dict[str, set[int | None]]:
        out: dict[str, set[int | None]] = {}
        for sid, meta, days in self._core.peek_dirty():
            chunks: set[int | None] = set(days)
            if meta:
                chunks.add(META)
            out[sid] = chunks
        return out

    @property
    def dirty(self) -> Mapping[str, set[int | None]]:
        """The chunks changed since the last :meth:`take_dirty` (a read-only view)."""
        return _DirtyView(self)

    def take_dirty(self) -> dict[str, set[int | None]]:
        """The chunks changed since the last call, by seller (see
        :meth:`Engine.take_dirty`)."""
        out: dict[str, set[int | None]] = {}
        for sid, meta, days in self._core.take_dirty():
            chunks: set[int | None] = set(days)
            if meta:
                chunks.add(META)
            out[sid] = chunks
        return out

    def take_freed(self) -> list[str]:
        return self._core.take_freed()  # type: ignore[no-any-return]

    def seller_chunks(
        self, seller_id: str, chunks: set[int | None]
    ) -> dict[int | None, bytes | None]:
        """Encoded snapshot chunks of one seller (see :meth:`Engine.seller_chunks`):
        the same msgpack, the same record format."""
        out: dict[int | None, bytes | None] = dict.fromkeys(
            sorted(d for d in chunks if d is not None))
        if None in chunks:
            out[None] = None
        core = self._core
        if not core.has_seller(seller_id):
            return out
        days = {d for d in chunks if d is not None}
        if days:
            grouped: dict[int, dict[bytes, bytes]] = {}
            for day, key, record in core.ghosts_out(seller_id):
                if day in days:
                    grouped.setdefault(day, {}).setdefault(key, record)
            for day, key, record in core.records(seller_id, False):
                if day in days:
                    grouped.setdefault(day, {})[key] = record
            for day, records in grouped.items():
                out[day] = _encode_chunk(records)
        if META in chunks:
            out[META] = _encode_meta(self._meta(seller_id))
        return out

    def _meta(self, seller_id: str) -> _Meta:
        has_orders, messages, future, replies = self._core.meta(seller_id)
        return _Meta(
            has_orders,
            {mid: (at, about, counts, anchor, digests)
             for mid, at, about, counts, anchor, digests, _ in messages},
            [encode_event(decode_event(raw)) for _, _, raw in future],
            [mid for mid, *_, asks in messages if asks],
            {q: (at, anchor) for q, at, anchor in replies},
        )

    def restore_seller_chunks(
        self, seller_id: str, chunks: dict[int | None, bytes]
    ) -> None:
        """Rebuild one seller from the chunks :meth:`seller_chunks` produced (either
        engine's)."""
        orders: dict[bytes, bytes] = {}
        ghost_days: set[int] = set()
        meta = _Meta(False, {}, [])
        try:
            for day, data in chunks.items():
                if day is None:
                    meta = _decode_meta(data)
                    continue
                records = _decode_chunk(data)
                if orders.keys().isdisjoint(records):
                    orders.update(records)
                    continue
                for order_id, record in records.items():
                    other = orders.get(order_id)
                    if other is None:
                        orders[order_id] = record
                        continue
                    if rec.record_day(record)[1] & HAS_ORDER:
                        orders[order_id], record = record, other
                    ghost_days.add(rec.record_day(record)[0])
        except msgspec.DecodeError as exc:
            raise SnapshotError(f"seller {seller_id!r}: corrupt chunk: {exc}") from None
        self.drop_seller(seller_id)
        self._restore_seller(
            seller_id, _SellerSnapshot(meta.has_orders, orders, meta.messages, meta.future,
                                       meta.asking, meta.replies)
        )
        if self._core.has_seller(seller_id):
            for day in ghost_days:
                self._core.mark(seller_id, day)

    # --- reading ------------------------------------------------------------------

    def seller_ids(self) -> Iterator[str]:
        """Sellers with at least one order in a window (see :meth:`Engine.seller_ids`)."""
        return iter(self._core.seller_ids(True))

    seller_metrics = Engine.seller_metrics
    seller_counts = Engine.seller_counts
    metric_plan = Engine.metric_plan
    cause_window = Engine.cause_window
    report = Engine.report

    @property
    def tracked_orders(self) -> int:
        return self._core.orders_held  # type: ignore[no-any-return]

    @property
    def orders_held(self) -> int:
        return self._core.orders_held  # type: ignore[no-any-return]

    @property
    def pending_orders(self) -> int:
        return self._core.pending_orders  # type: ignore[no-any-return]

    def memory_bytes(self) -> int:
        """Heap bytes the core holds (capacity-based; see native/src/core.rs)."""
        return self._core.memory_bytes()  # type: ignore[no-any-return]

    def memory_breakdown(self) -> dict[str, int]:
        return self._core.memory_breakdown()  # type: ignore[no-any-return]

    # --- snapshots ----------------------------------------------------------------

    def snapshot_seller(self, seller_id: str) -> bytes:
        """The seller's whole state as bytes (:meth:`Engine.snapshot_seller`'s format)."""
        if not self._core.has_seller(seller_id):
            raise KeyError(seller_id)
        return msgspec.msgpack.encode(self._seller_snapshot(seller_id))

    def restore_seller(self, seller_id: str, data: bytes) -> None:
        try:
            snap = msgspec.msgpack.decode(data, type=_SellerSnapshot)
        except msgspec.DecodeError as exc:
            raise SnapshotError(f"seller {seller_id!r}: corrupt snapshot: {exc}") from None
        self.drop_seller(seller_id)
        self._restore_seller(seller_id, snap)

    def drop_seller(self, seller_id: str) -> None:
        self._core.drop_seller(seller_id)

    def snapshot(self) -> bytes:
        return msgspec.msgpack.encode(
            _EngineSnapshot(
                SNAPSHOT_VERSION,
                self.now,
                {sid: self._seller_snapshot(sid) for sid in self._core.seller_ids(False)},
            )
        )

    @classmethod
    def restore(cls, data: bytes, catalog: Catalog | None = None) -> NativeEngine:
        try:
            snap = msgspec.msgpack.decode(data, type=_EngineSnapshot)
        except msgspec.DecodeError as exc:
            raise SnapshotError(f"corrupt engine snapshot: {exc}") from None
        if snap.version != SNAPSHOT_VERSION:
            raise SnapshotError(
                f"snapshot version {snap.version}, this engine reads {SNAPSHOT_VERSION}"
            )
        engine = cls(catalog, snap.now)
        for seller_id, seller_snap in snap.sellers.items():
            engine._restore_seller(seller_id, seller_snap)
        return engine

    def _seller_snapshot(self, seller_id: str) -> _SellerSnapshot:
        meta = self._meta(seller_id)
        return _SellerSnapshot(
            has_orders=meta.has_orders,
            orders={key: record for _, key, record in self._core.records(seller_id, False)},
            messages=meta.messages,
            future=meta.future,
            asking=meta.asking,
            replies=meta.replies,
        )

    def _restore_seller(self, seller_id: str, snap: _SellerSnapshot) -> None:
        migrate = rec.migrate
        try:
            self._core.restore_seller(
                seller_id,
                snap.has_orders,
                [(key, migrate(record)) for key, record in snap.orders.items()],
                [(mid, at, about, counts, anchor, digests)
                 for mid, (at, about, counts, anchor, digests) in snap.messages.items()],
                list(snap.asking),
                [(q, at, anchor) for q, (at, anchor) in snap.replies.items()],
                list(snap.future),
            )
        except Exception as exc:  # struct.error from migrate, ValueError from the core
            raise SnapshotError(f"seller {seller_id!r}: corrupt snapshot: {exc}") from None


def _predicate(name: str) -> int:
    from streams.engine.rules import PREDICATES
    return PREDICATES[name]


def _conflict(event: Event) -> ConflictingEvent:
    """Engine._on_order's ConflictingEvent, word for word."""
    return ConflictingEvent(
        f"order {event.order_id!r} of seller {event.seller_id!r} already exists; "
        f"event {event.event_id!r} would redefine it (event ids must be unique, "
        "and an order is created once)",
        field="$.order_id",
    )
