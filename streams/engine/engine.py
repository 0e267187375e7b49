"""The incremental engine: events in, exact per-seller metrics out, no I/O.

Contract (issue #2): metrics as of the engine's clock ``now`` count only events with
``occurred_at <= now``; each event costs O(1) amortised work (plus O(log n) for the
few that schedule a timer or wait for the clock); applying an event twice, or a log
in another order, yields the same metrics. The same engine serves ``popstream
replay`` (fixed clock), the Kafka worker (wall clock, snapshots per seller) and the
tests (against the reference implementation in ``tests/reference.py``).

How it stays O(1):

* an order's state is a packed record (:mod:`streams.engine.orders`); an event
  updates its facts, :func:`~streams.engine.rules.evaluate` recomputes the order's
  predicate mask, and only the *difference* to the mask already counted is added to
  the seller's windows (:mod:`streams.engine.windows`);
* time-driven changes (an unshipped order turning late when ``ship_by`` passes, an
  event stamped after ``now``) wait in per-seller heaps, with one global heap of
  wake-up times, so advancing the clock touches only sellers with something due;
* day roll-over walks a global index of orders by purchase day: the orders of a
  day leaving a window leave its running sum, and leave the state altogether when
  they fall out of the longest window (see :mod:`streams.engine.windows` for why
  this beats per-seller daily buckets).

Bounded state (issue #9): a seller left holding nothing (no order record, pending
or not, no message, no held event) is freed where state leaves (day roll-over, an
expired order, a wake-up, a restore), never checked per event; and an engine with
a ``future_horizon`` rejects events stamped too far after its clock
(:class:`~streams.errors.TooFarAhead`) instead of holding them for years.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import heapq
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, NamedTuple

import msgspec

from streams.engine import orders as rec
from streams.engine.catalog import Catalog, Status, default_catalog
from streams.engine.events import (
    US_PER_DAY,
    Cancellation,
    Claim,
    Delivery,
    Event,
    Feedback,
    Message,
    Order,
    Refund,
    Return,
    Shipment,
    decode_event,
    encode_event,
    format_us,
    to_us,
)
from streams.engine.rules import (
    A_TO_Z_AT,
    ANY_CANCEL,
    APPLIED,
    ATOZ_GRANTED,
    ATOZ_OPEN,
    BUYER_MESSAGES,
    CHARGEBACK_AT,
    CHARGEBACK_GRANTED,
    CHARGEBACK_OPEN,
    DAY,
    DELIVER_BY,
    FB_NEGATIVE,
    FEEDBACK_AT,
    FIRST_REPLY,
    FIRST_SELLER_CANCEL,
    FIRST_SHIP,
    FLAGS,
    HAS_ORDER,
    INR_AT,
    INR_GRANTED,
    INR_OPEN,
    LAST_DELIVERY,
    NO_TIME,
    PREDICATES,
    REFUNDED_F,
    RESPONSE_DEADLINE,
    RESPONSE_REC,
    RETURNED_F,
    SHIP_BY,
    TRACKED_F,
    deadlines,
    evaluate,
)
from streams.engine.windows import LANES, DayIndex, lane, windows_by_age
from streams.errors import ConfigError, ConflictingEvent, PopstreamError, TooFarAhead

_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US: Final = dt.timedelta(microseconds=1)
_blake2b = hashlib.blake2b

SNAPSHOT_VERSION: Final = 1


class Outcome(enum.Enum):
    """What :meth:`Engine.apply` did with an event (for counters and tests)."""

    APPLIED = "applied"
    PENDING = "pending"  # applied to an order whose ``order`` event has not arrived
    DUPLICATE = "duplicate"  # this event_id was already applied to this order/message
    HELD = "held"  # occurred_at > now: waits for the clock
    EXPIRED = "expired"  # the order was purchased before the longest window

    # Members are singletons, so identity hashing is exact; Enum's own __hash__
    # is a Python-level hash(self._name_), and the worker counts by outcome per
    # event (an enum hash was 4 % of the bulk path's profile).
    __hash__ = object.__hash__


# Module-level aliases: the hot path avoids an Enum attribute lookup per event.
_APPLIED: Final = Outcome.APPLIED
_PENDING: Final = Outcome.PENDING
_DUPLICATE: Final = Outcome.DUPLICATE
_EXPIRED: Final = Outcome.EXPIRED
_DIGEST_SIZE: Final = rec.DIGEST_SIZE
_CLAIM_FIELDS: Final = {
    "a_to_z": (A_TO_Z_AT, ATOZ_OPEN, ATOZ_GRANTED),
    "chargeback": (CHARGEBACK_AT, CHARGEBACK_OPEN, CHARGEBACK_GRANTED),
    "item_not_received": (INR_AT, INR_OPEN, INR_GRANTED),
}


@dataclass(frozen=True, slots=True)
class MetricValue:
    numerator: int
    denominator: int
    value: float | None
    target: float
    breached: bool | None
    window_days: int
    status: Status = "insufficient_volume"

    def to_dict(self) -> dict[str, int | float | bool | str | None]:
        return {
            "numerator": self.numerator,
            "denominator": self.denominator,
            "value": self.value,
            "target": self.target,
            "breached": self.breached,
            "status": self.status,
            "window_days": self.window_days,
        }


class MessageState(NamedTuple):
    """The latest event of one buyer/seller message thread entry."""

    occurred_at: int
    order_id: str | None
    counts: bool  # buyer message, response needed, tied to an order
    anchor_day: int  # expiry anchor: the day the engine first saw it
    digests: bytes
    asks: bool = False  # buyer message, response needed (a question to answer)


class Seller:
    """All state of one seller. Self-contained, so it can be snapshotted alone."""

    __slots__ = ("future", "has_orders", "id", "messages", "orders", "replies", "sums",
                 "timers")

    def __init__(self, seller_id: str, n_windows: int) -> None:
        # The one copy of the id the day indexes point at (8 bytes an entry, not
        # a fresh ~56-byte string per order).
        self.id = seller_id
        self.sums: list[int] = [0] * n_windows  # lane vector per catalog window
        # Keyed by the UTF-8 order id: a bytes key is 16 bytes smaller than a str.
        self.orders: dict[bytes, bytes] = {}
        self.messages: dict[str, MessageState] = {}
        self.timers: list[tuple[int, bytes]] = []  # (ship_by, order key) heap
        self.future: list[tuple[int, int, Event]] = []  # (occurred_at, seq, event) heap
        self.has_orders = False
        # Question message id -> (earliest reply's occurred_at, expiry anchor day).
        self.replies: dict[str, tuple[int, int]] = {}


class _SellerSnapshot(msgspec.Struct, array_like=True):
    has_orders: bool
    orders: dict[bytes, bytes]
    messages: dict[str, tuple[int, str | None, bool, int, bytes]]
    future: list[bytes]
    # v1.1, trailing with defaults: v1 snapshots and chunks still decode.
    asking: list[str] = msgspec.field(default_factory=list)
    replies: dict[str, tuple[int, int]] = msgspec.field(default_factory=dict)


class _Meta(msgspec.Struct, array_like=True):
    has_orders: bool
    messages: dict[str, tuple[int, str | None, bool, int, bytes]]
    future: list[bytes]
    asking: list[str] = msgspec.field(default_factory=list)
    replies: dict[str, tuple[int, int]] = msgspec.field(default_factory=dict)


RESPONSE_KEY: Final = b"\xff"
"""Key prefix of buyer-message records in ``Seller.orders``: never the start of a
UTF-8 order id. They are not persisted: a restore rebuilds them from META."""


META: Final = None
"""The chunk id of a seller's non-order state (messages, held events, flags)."""
_encode_chunk = msgspec.msgpack.Encoder().encode
_decode_chunk = msgspec.msgpack.Decoder(dict[bytes, bytes]).decode
_encode_meta = msgspec.msgpack.Encoder().encode
_decode_meta = msgspec.msgpack.Decoder(_Meta).decode


class _EngineSnapshot(msgspec.Struct, array_like=True):
    version: int
    now: int
    sellers: dict[str, _SellerSnapshot]


class SnapshotError(PopstreamError):
    """A snapshot that cannot be restored (corrupt, or from another version)."""


def _span(us: int) -> str:
    """A duration for a message: ``3 days``, ``1834 days 8 h``, ``3 days 1 us``."""
    days, rest = divmod(us, US_PER_DAY)
    hours, rest = divmod(rest, 3_600_000_000)
    minutes, rest = divmod(rest, 60_000_000)
    seconds, micros = divmod(rest, 1_000_000)
    parts = [f"{days} day{'s' if days != 1 else ''}"] if days else []
    parts += [f"{n} {unit}" for n, unit in
              ((hours, "h"), (minutes, "min"), (seconds, "s"), (micros, "us")) if n]
    return " ".join(parts) or "0 us"


class PythonEngine:
    """Exact, incremental seller metrics under a clock that only moves forward.

    The pure-Python engine: the reference the native core (:mod:`streams.engine.native`,
    Rust) is held to, and the fallback where that core is not built. :data:`Engine`
    is whichever of the two runs (see :func:`engine_class`)."""

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
        """``fixed_clock``: the clock will never move (a replay as of ``now``), so
        events after ``now`` are counted as :attr:`Outcome.HELD` but not kept.
        ``track_dirty``: record which snapshot chunks changed (see
        :meth:`take_dirty`) and which sellers were freed (see :meth:`take_freed`),
        for a caller that persists state incrementally.
        ``future_horizon``: on a clock that is not fixed, an event stamped more
        than this many microseconds after ``now`` raises
        :class:`~streams.errors.TooFarAhead` instead of being held; ``None``
        holds any. Held events restored from a snapshot are not checked again:
        they were accepted once."""
        if future_horizon is not None and future_horizon < 0:
            raise ConfigError(
                f"future_horizon must be >= 0 microseconds (or None), got {future_horizon}"
            )
        self.catalog = catalog or default_catalog()
        self.fixed_clock = fixed_clock
        self.track_dirty = track_dirty
        # Sellers whose sums moved since the last take_touched(), each with its sums
        # as they were before the first move: what an exporter needs to update
        # fleet aggregates by the difference, in proportion to what changed.
        self.touched: dict[str, list[int]] | None = {} if track_touched else None
        self.future_horizon = future_horizon
        # seller -> chunks changed since the last take_dirty(): purchase days, and
        # META for the seller's messages, held events and flags.
        self.dirty: dict[str, set[int | None]] = {}
        # Sellers freed since the last take_freed() and not re-created since (an
        # ordered set). Kept only with track_dirty, whose caller drains it: an
        # engine nobody drains (a replay) must not grow it.
        self._freed: dict[str, None] = {}
        # Ghosts (see _leave_ghost), seller -> day -> order -> record: left since the
        # last take_dirty(), and those the flush being written carries.
        self._ghosts: dict[str, dict[int, dict[bytes, bytes]]] = {}
        self._ghosts_out: dict[str, dict[int, dict[bytes, bytes]]] = {}
        windows = self.catalog.windows
        self._windows = windows
        self._n_windows = len(windows)
        self._horizon = self.catalog.horizon_days
        self._windows_of_age = windows_by_age(windows)
        hours = self.catalog.response_hours
        # Buyer-message records only for a catalog with a response metric.
        self._response_us: int | None = None if hours is None else hours * 3_600_000_000
        self._plan = [
            (m, windows.index(m.window), PREDICATES[m.numerator],
             PREDICATES[m.denominator])
            for m in self.catalog.metrics
        ]
        self.now = now
        self.today = now // US_PER_DAY
        self.sellers: dict[str, Seller] = {}
        # A dict never shrinks its table as keys leave: rebuilt once freeing left
        # it under a quarter of this high-water mark (see _roll).
        self._peak_sellers = 0
        self._orders_by_day = DayIndex()
        self._messages_by_day = DayIndex()
        self._replies_by_day = DayIndex()
        self._wakeups: list[tuple[int, str]] = []
        self._seq = 0
        self.pending_orders = 0
        # Order records held, kept as they come and go: a gauge read every tick
        # and /health must not walk a million sellers.
        self.orders_held = 0
        # Held events rejected when the clock made them due; callers drain this
        # (replay reports them, the worker dead-letters them).
        self.deferred_rejects: list[tuple[Event, ConflictingEvent]] = []
        self._dispatch = {
            Order: self._on_order,
            Cancellation: self._on_cancellation,
            Shipment: self._on_shipment,
            Refund: self._on_refund,
            Feedback: self._on_feedback,
            Claim: self._on_claim,
            Delivery: self._on_delivery,
            Return: self._on_return,
        }

    # --- clock ------------------------------------------------------------------

    def advance(self, now: int) -> None:
        """Move the clock forward to ``now`` (us); earlier times are ignored.

        Rolls the windows at UTC midnight, applies held events that became due and
        turns unshipped orders late whose ``ship_by`` passed.
        """
        if now <= self.now:
            return
        if self.fixed_clock:
            raise PopstreamError("this engine's clock is fixed (a replay); it cannot advance")
        old_today = self.today
        self.now = now
        self.today = now // US_PER_DAY
        if self.today != old_today:
            self._roll(old_today, self.today)
        wakeups = self._wakeups
        while wakeups and wakeups[0][0] <= now:
            _, seller_id = heapq.heappop(wakeups)
            seller = self.sellers.get(seller_id)
            if seller is not None:
                self._wake(seller)

    def _wake(self, seller: Seller) -> None:
        now = self.now
        future = seller.future
        while future and future[0][0] <= now:
            event = heapq.heappop(future)[2]
            self._mark(seller.id, META)
            try:
                self.apply(event)
            except ConflictingEvent as exc:
                self.deferred_rejects.append((event, exc))
        timers = seller.timers
        while timers and timers[0][0] < now:
            _, order_id = heapq.heappop(timers)
            record = seller.orders.get(order_id)
            if record is not None:
                fields, digests = rec.unpack(record)
                self._commit(seller, order_id, fields, digests)
        # The next deadline and held event each get a wakeup: a restored seller has
        # one wakeup for its earliest only, and without these its later deadlines
        # passed unnoticed (an unshipped order never turned late) until some other
        # event for the seller woke it. A duplicate wakeup costs one empty _wake.
        if timers:
            heapq.heappush(self._wakeups, (timers[0][0] + 1, seller.id))
        if future:
            heapq.heappush(self._wakeups, (future[0][0], seller.id))
        # A held event may have expired on arrival and been all the seller had.
        self._free_if_empty(seller)

    def _roll(self, old_day: int, new_day: int) -> None:
        """Days moved from ``old_day`` to ``new_day``: orders of the days leaving
        each window leave its sum; state older than the longest window is dropped."""
        sellers = self.sellers
        index = self._orders_by_day
        emptied: set[str] = set()  # sellers that lost state: maybe nothing is left
        for i, (width, lag) in enumerate(self._windows):
            # Days whose age reached lag + width leave (if they were in: a jump of
            # many days can carry a day past a lagged window it never entered);
            # with a lag, days whose age reached lag enter (if not past it already).
            moves = [(day, -1) for day in index.days_in(old_day - lag - width + 1,
                                                         new_day - lag - width)
                     if old_day - day >= lag]
            if lag:
                moves += [(day, 1) for day in index.days_in(old_day - lag + 1, new_day - lag)
                          if new_day - day < lag + width]
            for day, sign in moves:
                for seller_id, order_id in index.entries(day):
                    seller = sellers.get(seller_id)
                    record = seller.orders.get(order_id) if seller else None
                    if seller is None or record is None:
                        continue
                    rday, applied = rec.day_applied(record)
                    if rday == day and applied:
                        touched = self.touched
                        if touched is not None and seller_id not in touched:
                            touched[seller_id] = list(seller.sums)
                        seller.sums[i] += sign * LANES[applied]
        horizon = self._horizon
        for day in index.days_in(old_day - horizon + 1, new_day - horizon):
            for seller_id, order_id in index.entries(day):
                seller = sellers.get(seller_id)
                record = seller.orders.get(order_id) if seller else None
                if seller is None or record is None:
                    continue
                rday, flags = rec.record_day(record)
                if rday == day:
                    del seller.orders[order_id]
                    self.orders_held -= 1
                    self._mark(seller_id, day)
                    emptied.add(seller_id)
                    if not flags & (HAS_ORDER | RESPONSE_REC):
                        self.pending_orders -= 1
            index.drop(day)
        messages = self._messages_by_day
        for day in messages.days_in(old_day - horizon + 1, new_day - horizon):
            for seller_id, message_id in messages.entries(day):
                seller = sellers.get(seller_id)
                msg = seller.messages.get(message_id) if seller else None
                if seller is None or msg is None or msg.anchor_day != day:
                    continue
                if msg.counts and msg.order_id and msg.order_id.encode() in seller.orders:
                    # Its order is still in the window: keep the message alive.
                    seller.messages[message_id] = msg._replace(anchor_day=new_day)
                    messages.add(new_day, seller_id, message_id)
                else:
                    del seller.messages[message_id]
                    emptied.add(seller_id)
                self._mark(seller_id, META)
            messages.drop(day)
        replies = self._replies_by_day
        for day in replies.days_in(old_day - horizon + 1, new_day - horizon):
            for seller_id, question in replies.entries(day):
                seller = sellers.get(seller_id)
                reply = seller.replies.get(question) if seller else None
                if seller is None or reply is None or reply[1] != day:
                    continue
                if question in seller.messages:
                    # The question is still held (it may arrive or count later).
                    seller.replies[question] = (reply[0], new_day)
                    replies.add(new_day, seller_id, question)
                else:
                    del seller.replies[question]
                    emptied.add(seller_id)
                self._mark(seller_id, META)
            replies.drop(day)
        for seller_id in emptied:
            seller = sellers.get(seller_id)
            if seller is not None:
                self._free_if_empty(seller)
        if len(sellers) * 4 < self._peak_sellers:
            self.sellers = dict(sellers)
            self._peak_sellers = len(sellers)

    # --- events -----------------------------------------------------------------

    def apply_bytes(self, data: bytes) -> Outcome:
        """Decode and apply one JSON event; raises :class:`InvalidEvent`."""
        return self.apply(decode_event(data))

    def apply(self, event: Event) -> Outcome:
        """Fold one validated event into the state.

        Raises :class:`~streams.errors.ConflictingEvent` for a second ``order`` event
        (under a new ``event_id``) for an existing order, and
        :class:`~streams.errors.TooFarAhead` for an event beyond the
        ``future_horizon``; the state is unchanged then.
        """
        occurred_at = (event.occurred_at - _EPOCH) // _US
        if occurred_at > self.now:
            return self._hold(event, occurred_at)
        seller_id = event.seller_id
        seller = self.sellers.get(seller_id)
        if seller is None:
            seller = self._new_seller(seller_id)
        else:
            seller_id = seller.id
        kind = type(event)
        if kind is Message:
            return self._on_message(seller_id, seller, event, occurred_at)  # type: ignore[arg-type]
        order_id = event.order_id.encode()  # type: ignore[union-attr]
        record = seller.orders.get(order_id)
        # An order event's redelivery is recognised by content (see _on_order), so
        # its id is not stored: 6 bytes saved on every order.
        digest = (
            b"" if kind is Order
            else _blake2b(event.event_id.encode(), digest_size=_DIGEST_SIZE).digest()
        )
        if record is None:
            fields = rec.new_fields(self.today)
            digests = b""
        else:
            fields, digests = rec.unpack(record)
            if digest and rec.has_digest(digests, digest):
                return Outcome.DUPLICATE
        old_flags, old_day = fields[FLAGS], fields[DAY]
        outcome: Outcome = self._dispatch[kind](  # type: ignore[operator]
            seller, event, fields, occurred_at
        )
        if outcome is _DUPLICATE:
            return outcome
        if outcome is _EXPIRED:
            if record is not None:
                del seller.orders[order_id]
                self.orders_held -= 1
                self.pending_orders -= 1  # only a pending record can meet its order
                self._mark(seller_id, old_day)
            self._mark(seller_id, META)  # has_orders
            self._free_if_empty(seller)
            return outcome
        if record is None:
            self._orders_by_day.add(fields[DAY], seller_id, order_id)
            self.orders_held += 1
            if not fields[FLAGS] & HAS_ORDER:
                self.pending_orders += 1
        else:
            if fields[DAY] != old_day:
                # A pending record stays listed under its anchor day too; readers
                # skip entries whose day no longer matches the record.
                self._orders_by_day.add(fields[DAY], seller_id, order_id)
                if self.track_dirty:
                    self._leave_ghost(seller_id, old_day, order_id, record)
            if (fields[FLAGS] ^ old_flags) & HAS_ORDER:
                self.pending_orders -= 1
        self._commit(seller, order_id, fields, digests + digest)
        if not fields[FLAGS] & HAS_ORDER:
            return _PENDING
        return outcome

    def _hold(self, event: Event, occurred_at: int) -> Outcome:
        """An event after ``now``: kept until the clock reaches it (not kept at all
        on a fixed clock, which never will)."""
        if self.fixed_clock:
            return Outcome.HELD
        ahead = occurred_at - self.now
        horizon = self.future_horizon
        if horizon is not None and ahead > horizon:
            raise TooFarAhead(
                f"occurred_at {format_us(occurred_at)} is {_span(ahead)} ahead of the "
                f"clock {format_us(self.now)}; at most {_span(horizon)} ahead are "
                "accepted",
                field="$.occurred_at",
            )
        seller = self.sellers.get(event.seller_id)
        if seller is None:
            seller = self._new_seller(event.seller_id)
        seller_id = seller.id
        self._seq += 1
        heapq.heappush(seller.future, (occurred_at, self._seq, event))
        self._mark(seller_id, META)
        heapq.heappush(self._wakeups, (occurred_at, seller_id))
        return Outcome.HELD

    def _new_seller(self, seller_id: str) -> Seller:
        sellers = self.sellers
        if self.touched is not None:
            self.touched.setdefault(seller_id, [0] * self._n_windows)
        seller = sellers[seller_id] = Seller(seller_id, self._n_windows)
        if len(sellers) > self._peak_sellers:
            self._peak_sellers = len(sellers)
        if self._freed:
            self._freed.pop(seller_id, None)  # back before the caller forgot it
        return seller

    def _free_if_empty(self, seller: Seller) -> None:
        """Forget a seller that holds nothing: no order record (pending or not), no
        message, no held event. Its sums are zero then (every order left every
        window before it left the state), its timers stale, its entries in the day
        indexes skipped until their day drops. Its META chunk becomes a tombstone
        (its day chunks became ones as their orders left)."""
        if seller.orders or seller.messages or seller.future or seller.replies:
            return
        seller_id = seller.id
        if self.sellers.get(seller_id) is not seller:
            return  # freed already (by an apply inside _wake)
        if self.touched is not None:
            self.touched.setdefault(seller_id, list(seller.sums))
        del self.sellers[seller_id]
        if self.track_dirty:
            self._mark(seller_id, META)
            self._freed[seller_id] = None

    def _commit(
        self, seller: Seller, order_id: bytes, fields: list[int], digests: bytes
    ) -> None:
        """Re-evaluate one order and move the seller's sums by the difference."""
        mask = evaluate(fields, self.now)
        applied = fields[APPLIED]
        if mask != applied:
            delta = LANES[mask] - LANES[applied]
            sums = seller.sums
            touched = self.touched
            if touched is not None and seller.id not in touched:
                touched[seller.id] = list(sums)
            for i in self._windows_of_age[self.today - fields[DAY]]:
                sums[i] += delta
            fields[APPLIED] = mask
        seller.orders[order_id] = rec.pack(fields, digests)
        if self.track_dirty:
            self._mark(seller.id, fields[DAY])

    def _on_order(self, seller: Seller, ev: Order, f: list[int], at: int) -> Outcome:
        deliver_by = NO_TIME if ev.deliver_by is None else (ev.deliver_by - _EPOCH) // _US
        if f[FLAGS] & HAS_ORDER:
            if (f[DAY] == at // US_PER_DAY and f[SHIP_BY] == (ev.ship_by - _EPOCH) // _US
                    and f[DELIVER_BY] == deliver_by):
                return Outcome.DUPLICATE  # a redelivery: same purchase day and promises
            raise ConflictingEvent(
                f"order {ev.order_id!r} of seller {ev.seller_id!r} already exists; "
                f"event {ev.event_id!r} would redefine it (event ids must be unique, "
                "and an order is created once)",
                field="$.order_id",
            )
        if not seller.has_orders:
            seller.has_orders = True
            self._mark(seller.id, META)
        purchase_day = at // US_PER_DAY
        if self.today - purchase_day >= self._horizon:
            return Outcome.EXPIRED
        rec.set_instant(f, at)
        f[SHIP_BY] = (ev.ship_by - _EPOCH) // _US
        f[DELIVER_BY] = deliver_by
        f[FLAGS] |= HAS_ORDER
        self._set_timers(seller, ev.order_id.encode(), f)
        return _APPLIED

    def _set_timers(self, seller: Seller, key: bytes, f: list[int]) -> None:
        """A timer for each deadline still ahead after which the record's predicates
        change by themselves (stale timers are harmless: a re-evaluation)."""
        now = self.now
        for deadline in deadlines(f):
            if deadline >= now:
                heapq.heappush(seller.timers, (deadline, key))
                heapq.heappush(self._wakeups, (deadline + 1, seller.id))

    def _on_cancellation(
        self, seller: Seller, ev: Cancellation, f: list[int], at: int
    ) -> Outcome:
        f[FLAGS] |= ANY_CANCEL
        if ev.initiated_by == "seller" and at < f[FIRST_SELLER_CANCEL]:
            f[FIRST_SELLER_CANCEL] = at
        return _APPLIED

    def _on_shipment(self, seller: Seller, ev: Shipment, f: list[int], at: int) -> Outcome:
        if at < f[FIRST_SHIP]:
            f[FIRST_SHIP] = at
        if ev.tracking_id and not f[FLAGS] & TRACKED_F:
            f[FLAGS] |= TRACKED_F
            self._set_timers(seller, ev.order_id.encode(), f)  # a delivery comes due
        return _APPLIED

    def _on_refund(self, seller: Seller, ev: Refund, f: list[int], at: int) -> Outcome:
        f[FLAGS] |= REFUNDED_F
        return _APPLIED

    def _on_feedback(self, seller: Seller, ev: Feedback, f: list[int], at: int) -> Outcome:
        if at >= f[FEEDBACK_AT]:  # latest wins; on a tie, the later processed
            f[FEEDBACK_AT] = at
            if ev.rating <= 2 and not ev.removed:
                f[FLAGS] |= FB_NEGATIVE
            else:
                f[FLAGS] &= ~FB_NEGATIVE
        return _APPLIED

    def _on_claim(self, seller: Seller, ev: Claim, f: list[int], at: int) -> Outcome:
        at_field, flag, granted = _CLAIM_FIELDS[ev.claim_type]
        if at >= f[at_field]:  # latest wins; on a tie, the later processed
            f[at_field] = at
            if ev.status in ("opened", "granted"):
                f[FLAGS] |= flag
            else:
                f[FLAGS] &= ~flag
            if ev.status == "granted":
                f[FLAGS] |= granted
            else:
                f[FLAGS] &= ~granted
        return _APPLIED

    def _on_delivery(self, seller: Seller, ev: Delivery, f: list[int], at: int) -> Outcome:
        if at > f[LAST_DELIVERY]:  # the latest delivery (the last package) counts
            f[LAST_DELIVERY] = at
        return _APPLIED

    def _on_return(self, seller: Seller, ev: Return, f: list[int], at: int) -> Outcome:
        f[FLAGS] |= RETURNED_F
        return _APPLIED

    def _on_message(self, seller_id: str, seller: Seller, ev: Message, at: int) -> Outcome:
        message_id = ev.message_id
        old = seller.messages.get(message_id)
        digest = _blake2b(ev.event_id.encode(), digest_size=rec.DIGEST_SIZE).digest()
        if old is not None and rec.has_digest(old.digests, digest):
            return Outcome.DUPLICATE
        asks = ev.sender == "buyer" and ev.response_needed
        counts = asks and ev.order_id is not None
        self._mark(seller_id, META)
        if ev.sender == "seller" and ev.in_reply_to is not None:
            self._reply(seller, ev.in_reply_to, at)  # every reply event: earliest wins
        if old is None:
            seller.messages[message_id] = MessageState(
                at, ev.order_id, counts, self.today, digest, asks
            )
            self._messages_by_day.add(self.today, seller_id, message_id)
        elif at >= old.occurred_at:
            anchor = old.anchor_day
            if asks and anchor < self.today:
                # Outlive the question's record, whose day may now be later.
                anchor = self.today
                self._messages_by_day.add(anchor, seller_id, message_id)
            seller.messages[message_id] = MessageState(
                at, ev.order_id, counts, anchor, old.digests + digest, asks
            )
        else:  # an older state of this message: nothing changes but the dedup set
            seller.messages[message_id] = old._replace(digests=old.digests + digest)
            return _APPLIED
        if self._response_us is not None and (asks or (old is not None and old.asks)):
            self._sync_response(seller, message_id)
        deltas: dict[str, int] = {}
        if old is not None and old.counts and old.order_id is not None:
            deltas[old.order_id] = -1
        if counts and ev.order_id is not None:
            deltas[ev.order_id] = deltas.get(ev.order_id, 0) + 1
        for order_id, delta in deltas.items():
            if delta:
                self._count_message(seller, order_id.encode(), delta, digest)
        return _APPLIED

    def _reply(self, seller: Seller, question: str, at: int) -> None:
        """A seller's reply to ``question`` at ``at``: the earliest one decides."""
        known = seller.replies.get(question)
        if known is not None and known[0] <= at:
            return
        anchor = self.today if known is None else max(known[1], self.today)
        seller.replies[question] = (at, anchor)
        if known is None or known[1] != anchor:
            self._replies_by_day.add(anchor, seller.id, question)
        if self._response_us is not None and question in seller.messages:
            self._sync_response(seller, question)

    def _sync_response(self, seller: Seller, question: str) -> None:
        """Bring the record of a buyer message (the response metric's unit) in line
        with the message's latest state and the earliest reply: created, moved to
        the day of the message's latest event, updated, or removed."""
        key = RESPONSE_KEY + question.encode()
        record = seller.orders.get(key)
        msg = seller.messages.get(question)
        day = msg.occurred_at // US_PER_DAY if msg is not None else 0
        if msg is None or not msg.asks or self.today - day >= self._horizon:
            if record is not None:
                self._drop_record(seller, key, record)
            return
        assert self._response_us is not None
        fields = rec.new_fields(day)
        rec.set_instant(fields, msg.occurred_at)
        fields[FLAGS] = RESPONSE_REC
        fields[RESPONSE_DEADLINE] = msg.occurred_at + self._response_us
        reply = seller.replies.get(question)
        if reply is not None:
            fields[FIRST_REPLY] = reply[0]
        if record is not None:
            old_day, applied = rec.day_applied(record)
            if old_day == day:
                fields[APPLIED] = applied
            else:
                self._drop_record(seller, key, record)
                record = None
        if record is None:
            self._orders_by_day.add(day, seller.id, key)
            self.orders_held += 1
        self._commit(seller, key, fields, b"")
        self._set_timers(seller, key, fields)

    def _drop_record(self, seller: Seller, key: bytes, record: bytes) -> None:
        """Take a record out of the windows it counts in, and out of the state."""
        day, applied = rec.day_applied(record)
        if applied:
            touched = self.touched
            if touched is not None and seller.id not in touched:
                touched[seller.id] = list(seller.sums)
            delta = LANES[applied]
            sums = seller.sums
            for i in self._windows_of_age[self.today - day]:
                sums[i] -= delta
        del seller.orders[key]
        self.orders_held -= 1

    def _count_message(self, seller: Seller, order_id: bytes, delta: int,
                       digest: bytes) -> None:
        """Move an order's buyer-message count, once per message event: the event's
        digest goes into the order's record with the count. The message's own state
        (its dedup digests) lives in the META chunk, the count in a day chunk, and a
        crash can save one without the other: with the digest beside the count, a
        replay of the event neither loses nor doubles it."""
        record = seller.orders.get(order_id)
        if record is None:
            if delta < 0:  # the order expired: it counts nowhere any more
                return
            fields, digests = rec.new_fields(self.today), b""
            self._orders_by_day.add(self.today, seller.id, order_id)
            self.orders_held += 1
            self.pending_orders += 1
        else:
            fields, digests = rec.unpack(record)
            if rec.has_digest(digests, digest):
                return  # saved with the count before a crash; the event is replayed
        # Never below zero: a count can only be stale for an order that expired and
        # came back as a pending record, which never counts again.
        fields[BUYER_MESSAGES] = max(0, fields[BUYER_MESSAGES] + delta)
        self._commit(seller, order_id, fields, digests + digest)

    def _mark(self, seller_id: str, chunk: int | None) -> None:
        if self.track_dirty:
            chunks = self.dirty.get(seller_id)
            if chunks is None:
                self.dirty[seller_id] = {chunk}
            else:
                chunks.add(chunk)

    # --- incremental persistence ------------------------------------------------

    def take_touched(self) -> dict[str, list[int]]:
        """Sellers whose sums moved since the last call, with their sums before
        (zeros for a seller that is new); a seller no longer in :attr:`sellers`
        left. Needs ``track_touched``."""
        touched = self.touched or {}
        if self.touched is not None:
            self.touched = {}
        return touched

    def _leave_ghost(self, seller_id: str, day: int, order_id: bytes, record: bytes) -> None:
        """A pending record moved from its anchor day's chunk to its purchase day's.

        The two chunks are two changelog records, and a crash can save any prefix
        of a flush: rewriting the old chunk without the record before the new one
        is saved would lose the order with every event already acked. So the old
        chunk keeps a copy (a *ghost*) through the flush that first saves the new
        chunk, and loses it in the next one (:meth:`take_dirty`); a restore that
        meets both keeps the moved record (see :meth:`restore_seller_chunks`)."""
        self._ghosts.setdefault(seller_id, {}).setdefault(day, {}).setdefault(
            order_id, record)

    def take_dirty(self) -> dict[str, set[int | None]]:
        """The chunks changed since the last call, by seller (and forget them).

        Call it once per flush, and only once the previous flush is saved: the
        ghosts that flush wrote (see :meth:`_leave_ghost`) are dropped now, their
        chunks rewritten; this flush's chunks carry the ghosts of moves since."""
        dirty, self.dirty = self.dirty, {}
        for seller_id, days in self._ghosts_out.items():
            chunks = dirty.get(seller_id)
            if chunks is None:
                dirty[seller_id] = set(days)
            else:
                chunks.update(days)
        self._ghosts_out, self._ghosts = self._ghosts, {}
        return dirty

    def take_freed(self) -> list[str]:
        """Sellers freed since the last call (and forget them), each once, in the
        order freed; a seller re-created since (a new event) is not named.

        A freed seller held nothing: the caller may forget what it keeps per
        seller (the worker's seller -> partition map, its scrape cache). Recorded
        only with ``track_dirty``. Persist :meth:`take_dirty`'s chunks first: the
        freed seller's META chunk is dirty, and :meth:`seller_chunks` returns its
        tombstone, which a caller that already forgot the seller cannot route.
        """
        freed = list(self._freed)
        self._freed.clear()
        return freed

    def seller_chunks(
        self, seller_id: str, chunks: set[int | None]
    ) -> dict[int | None, bytes | None]:
        """Encoded snapshot chunks of one seller: a purchase day's order records, or
        ``META`` (messages, held events, flags). ``None`` for a chunk now empty (a
        tombstone for a compacted changelog). One pass over the seller's orders."""
        seller = self.sellers.get(seller_id)
        # Days in order, META last: a crash saves a prefix of a partition's records,
        # and META (a message's dedup digests, held events) must never be saved
        # ahead of the day chunks holding those events' effects.
        out: dict[int | None, bytes | None] = dict.fromkeys(
            sorted(d for d in chunks if d is not None))
        if None in chunks:
            out[None] = None
        if seller is None:
            return out
        days = {d for d in chunks if d is not None}
        if days:
            grouped: dict[int, dict[bytes, bytes]] = {}
            for day, ghosts in self._ghosts_out.get(seller_id, {}).items():
                if day in days:
                    grouped[day] = dict(ghosts)
            for key, record in seller.orders.items():
                if key[:1] == RESPONSE_KEY:
                    continue  # rebuilt from META by a restore
                day = rec.record_day(record)[0]
                if day in days:
                    grouped.setdefault(day, {})[key] = record
            for day, records in grouped.items():
                out[day] = _encode_chunk(records)
        if META in chunks:
            out[META] = _encode_meta(
                _Meta(
                    seller.has_orders,
                    {k: tuple(v)[:5] for k, v in seller.messages.items()},  # type: ignore[misc]
                    [encode_event(e) for _, _, e in sorted(seller.future)],
                    [k for k, v in seller.messages.items() if v.asks],
                    dict(seller.replies),
                )
            )
        return out

    def restore_seller_chunks(
        self, seller_id: str, chunks: dict[int | None, bytes]
    ) -> None:
        """Rebuild one seller from the chunks :meth:`seller_chunks` produced."""
        orders: dict[bytes, bytes] = {}
        ghost_days: set[int] = set()
        meta = _Meta(False, {}, [])
        try:
            for day, data in chunks.items():
                if day is None:
                    meta = _decode_meta(data)
                    continue
                records = _decode_chunk(data)
                if orders.keys().isdisjoint(records):  # the rule: at C speed
                    orders.update(records)
                    continue
                for order_id, record in records.items():
                    other = orders.get(order_id)
                    if other is None:
                        orders[order_id] = record
                        continue
                    # An order in two day chunks: the pending record's ghost (see
                    # _leave_ghost) and the record it became once its order arrived.
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
        if seller_id in self.sellers:
            for day in ghost_days:
                self._mark(seller_id, day)  # rewritten without the ghost

    # --- reading ----------------------------------------------------------------

    def seller_ids(self) -> Iterator[str]:
        """Sellers with at least one order in a window: purchased at or before
        ``now``, within the longest window.

        Not every seller held: one with only pending orders, messages or held
        events is kept but not reported; nor one whose orders all left the
        longest window, kept or freed already (what else a seller still holds
        depends on the order events arrived in, which the report must not)."""
        return (sid for sid, s in self.sellers.items() if s.sums[-1])

    def seller_metrics(self, seller_id: str) -> dict[str, MetricValue]:
        sums = self.sellers[seller_id].sums
        out: dict[str, MetricValue] = {}
        for metric, wi, num_bit, den_bit in self._plan:
            vector = sums[wi]
            num = lane(vector, num_bit)
            den = lane(vector, den_bit)
            out[metric.name] = MetricValue(
                num, den, num / den if den else None, metric.target,
                metric.breached(num, den), metric.window_days, metric.status(num, den),
            )
        return out

    def seller_counts(self, seller_id: str, window_days: int, lag_days: int = 0
                      ) -> dict[str, int]:
        """Orders per predicate over one of the catalog's windows (defect causes)."""
        vector = self.sellers[seller_id].sums[self._windows.index((window_days, lag_days))]
        return {name: lane(vector, bit) for name, bit in PREDICATES.items()}

    def metric_plan(self) -> list[tuple[str, int, int, int]]:
        """``(metric, window index, numerator bit, denominator bit)`` per metric:
        what a reader needs to pull counts out of :attr:`Seller.sums` directly."""
        return [(m.name, wi, num, den) for m, wi, num, den in self._plan]

    def cause_window(self) -> int:
        """Index of the window over which defect causes are reported: the Perfect
        Order Percentage's if the catalog has it, else the longest."""
        for m, wi, _, _ in self._plan:
            if m.name == "perfect_order_percentage":
                return wi
        return self._n_windows - 1

    def report(self) -> dict[str, dict[str, MetricValue]]:
        return {sid: self.seller_metrics(sid) for sid in sorted(self.seller_ids())}

    @property
    def tracked_orders(self) -> int:
        """Order records held, pending ones included (kept as they come and go)."""
        return self.orders_held

    # --- snapshots --------------------------------------------------------------

    def snapshot_seller(self, seller_id: str) -> bytes:
        """The seller's whole state as bytes (what the Kafka worker persists)."""
        return msgspec.msgpack.encode(self._seller_snapshot(self.sellers[seller_id]))

    def restore_seller(self, seller_id: str, data: bytes) -> None:
        """Replace one seller's state with a snapshot taken by :meth:`snapshot_seller`."""
        try:
            snap = msgspec.msgpack.decode(data, type=_SellerSnapshot)
        except msgspec.DecodeError as exc:
            raise SnapshotError(f"seller {seller_id!r}: corrupt snapshot: {exc}") from None
        self.drop_seller(seller_id)
        self._restore_seller(seller_id, snap)

    def drop_seller(self, seller_id: str) -> None:
        """Forget a seller (its partition moved to another worker). Its entries in
        the day indexes go stale and are skipped, then dropped with their day."""
        seller = self.sellers.pop(seller_id, None)
        if seller is not None:
            if self.touched is not None:
                self.touched.setdefault(seller_id, list(seller.sums))
            self.orders_held -= len(seller.orders)
            self.pending_orders -= sum(
                1 for r in seller.orders.values()
                if not rec.record_day(r)[1] & (HAS_ORDER | RESPONSE_REC)
            )

    def snapshot(self) -> bytes:
        return msgspec.msgpack.encode(
            _EngineSnapshot(
                SNAPSHOT_VERSION,
                self.now,
                {sid: self._seller_snapshot(s) for sid, s in self.sellers.items()},
            )
        )

    @classmethod
    def restore(cls, data: bytes, catalog: Catalog | None = None) -> PythonEngine:
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

    def _seller_snapshot(self, seller: Seller) -> _SellerSnapshot:
        return _SellerSnapshot(
            has_orders=seller.has_orders,
            orders={k: v for k, v in seller.orders.items() if k[:1] != RESPONSE_KEY},
            messages={k: tuple(v)[:5] for k, v in seller.messages.items()},  # type: ignore[misc]
            future=[encode_event(e) for _, _, e in sorted(seller.future)],
            asking=[k for k, v in seller.messages.items() if v.asks],
            replies=dict(seller.replies),
        )

    def _restore_seller(self, seller_id: str, snap: _SellerSnapshot) -> None:
        seller = self._new_seller(seller_id)
        seller.has_orders = snap.has_orders
        today, horizon = self.today, self._horizon
        windows_of_age = self._windows_of_age
        migrate = rec.migrate
        for order_id, record in snap.orders.items():
            record = migrate(record)
            day, flags = rec.record_day(record)
            applied = rec.day_applied(record)[1]
            if today - day >= horizon:
                self._mark(seller_id, day)  # left the longest window while away
                continue
            seller.orders[order_id] = record
            self.orders_held += 1
            self._orders_by_day.add(day, seller_id, order_id)
            if not flags & HAS_ORDER:
                self.pending_orders += 1
                continue
            if applied:
                delta = LANES[applied]
                for i in windows_of_age[today - day]:
                    seller.sums[i] += delta
            fields, _ = rec.unpack(record)
            for deadline in deadlines(fields):
                seller.timers.append((deadline, order_id))
        heapq.heapify(seller.timers)
        asking = set(snap.asking)
        for message_id, (at, about, counts, anchor, digests) in snap.messages.items():
            if today - anchor >= horizon and not (
                counts and about and about.encode() in seller.orders
            ):
                continue
            anchor = max(anchor, today - horizon + 1)
            seller.messages[message_id] = MessageState(
                at, about, counts, anchor, digests, message_id in asking)
            self._messages_by_day.add(anchor, seller_id, message_id)
        for question, (at, anchor) in snap.replies.items():
            if today - anchor >= horizon and question not in seller.messages:
                continue
            anchor = max(anchor, today - horizon + 1)
            seller.replies[question] = (at, anchor)
            self._replies_by_day.add(anchor, seller_id, question)
        if self._response_us is not None:
            for question in asking & seller.messages.keys():
                self._sync_response(seller, question)
        for raw in snap.future:
            event = decode_event(raw)
            self._seq += 1
            seller.future.append((to_us(event.occurred_at), self._seq, event))
        heapq.heapify(seller.future)
        # Catch up with the clock: apply what became due, fire passed deadlines;
        # free the seller if nothing is left.
        self._wake(seller)  # also sets the wakeups of what is left


# --- which engine runs ----------------------------------------------------------

ENGINE_CHOICES: Final = ("auto", "native", "python")


def engine_class(choice: str | None = None) -> type[PythonEngine]:
    """The engine class for ``choice`` (default: ``POPSTREAM_ENGINE``, else ``auto``).

    ``native``: the Rust core, an error if it is not built; ``python``: the pure-Python
    engine; ``auto``: native when built (``make`` builds it; ``POPSTREAM_NO_NATIVE=1``
    at install time does not), else Python. Both give the same results and read and
    write the same snapshots and changelog chunks."""
    choice = os.environ.get("POPSTREAM_ENGINE", "auto") if choice is None else choice
    if choice not in ENGINE_CHOICES:
        raise ConfigError(
            f"POPSTREAM_ENGINE must be one of {', '.join(ENGINE_CHOICES)}, got {choice!r}")
    if choice == "python":
        return PythonEngine
    try:
        from streams.engine.native import NativeEngine
    except ImportError as exc:
        if choice == "native":
            raise ConfigError(
                f"the native engine core is not built ({exc}); run make, or choose "
                "POPSTREAM_ENGINE=python") from None
        if os.environ.get("POPSTREAM_NO_NATIVE", "") in ("", "0"):
            # Not asked for: a venv installed before the core existed, or a failed
            # build. Same results, ~9x slower: say so once, where it is decided.
            logging.getLogger("popstream.engine").warning(
                "the native engine core is not built (%s): running the pure-Python "
                "engine, ~9x slower; run make (or set POPSTREAM_NO_NATIVE=1 to mean it)",
                exc)
        return PythonEngine
    return NativeEngine  # type: ignore[return-value]  # the same interface


# Bound to the Python engine first: streams.engine.native, imported by
# engine_class() while this module is still loading, borrows its readers from it.
Engine = PythonEngine
if not TYPE_CHECKING:
    Engine = engine_class()
"""The engine this process runs (see :func:`engine_class`)."""
