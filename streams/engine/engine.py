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
* day roll-over is lazy per seller: the first read or write on a new UTC day moves
  that seller's windows and drops the orders that left the longest window.
"""

from __future__ import annotations

import enum
import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final, NamedTuple

import msgspec

from streams.engine import orders as rec
from streams.engine.catalog import Catalog, default_catalog
from streams.engine.events import (
    US_PER_DAY,
    Cancellation,
    Claim,
    Event,
    Feedback,
    Message,
    Order,
    Refund,
    Shipment,
    decode_event,
    encode_event,
    to_us,
)
from streams.engine.rules import (
    ANY_CANCEL,
    ATOZ_OPEN,
    CHARGEBACK_OPEN,
    FB_NEGATIVE,
    HAS_ORDER,
    PREDICATES,
    REFUNDED_F,
    TRACKED_F,
    evaluate,
    late_deadline,
)
from streams.engine.windows import LANES, SellerWindows, days_leaving, lane
from streams.errors import ConflictingEvent, PopstreamError

SNAPSHOT_VERSION: Final = 1


class Outcome(enum.Enum):
    """What :meth:`Engine.apply` did with an event (for counters and tests)."""

    APPLIED = "applied"
    PENDING = "pending"  # applied to an order whose ``order`` event has not arrived
    DUPLICATE = "duplicate"  # this event_id was already applied to this order/message
    HELD = "held"  # occurred_at > now: waits for the clock
    EXPIRED = "expired"  # the order was purchased before the longest window


@dataclass(frozen=True, slots=True)
class MetricValue:
    numerator: int
    denominator: int
    value: float | None
    target: float
    breached: bool | None
    window_days: int

    def to_dict(self) -> dict[str, int | float | bool | None]:
        return {
            "numerator": self.numerator,
            "denominator": self.denominator,
            "value": self.value,
            "target": self.target,
            "breached": self.breached,
            "window_days": self.window_days,
        }


class MessageState(NamedTuple):
    """The latest event of one buyer/seller message thread entry."""

    occurred_at: int
    order_id: str | None
    counts: bool  # buyer message, response needed, tied to an order
    anchor_day: int  # expiry anchor: the day the engine first saw it
    digests: bytes


class Seller:
    """All state of one seller. Self-contained, so it can be snapshotted alone."""

    __slots__ = (
        "windows", "orders", "messages", "by_day", "messages_by_day",
        "timers", "future", "has_orders",
    )

    def __init__(self, windows: tuple[int, ...], day: int) -> None:
        self.windows = SellerWindows(windows, day)
        self.orders: dict[str, bytes] = {}
        self.messages: dict[str, MessageState] = {}
        # Record ids by record day (purchase day, or anchor day while pending):
        # how expiry finds what to drop without scanning.
        self.by_day: dict[int, list[str]] = {}
        self.messages_by_day: dict[int, list[str]] = {}
        self.timers: list[tuple[int, str]] = []  # (ship_by, order_id) heap
        self.future: list[tuple[int, int, Event]] = []  # (occurred_at, seq, event) heap
        self.has_orders = False


class _SellerSnapshot(msgspec.Struct, array_like=True):
    day: int
    has_orders: bool
    orders: dict[str, bytes]
    messages: dict[str, tuple[int, str | None, bool, int, bytes]]
    future: list[bytes]


class _EngineSnapshot(msgspec.Struct, array_like=True):
    version: int
    now: int
    sellers: dict[str, _SellerSnapshot]


class SnapshotError(PopstreamError):
    """A snapshot that cannot be restored (corrupt, or from another version)."""


class Engine:
    """Exact, incremental seller metrics under a clock that only moves forward."""

    def __init__(self, catalog: Catalog | None = None, now: int = 0) -> None:
        self.catalog = catalog or default_catalog()
        windows = self.catalog.windows
        self._windows = windows
        self._horizon = self.catalog.horizon_days
        self._plan = [
            (
                m,
                windows.index(m.window_days),
                PREDICATES[m.numerator],
                PREDICATES[m.denominator],
            )
            for m in self.catalog.metrics
        ]
        self.now = now
        self.today = now // US_PER_DAY
        self.sellers: dict[str, Seller] = {}
        self._wakeups: list[tuple[int, str]] = []
        self._seq = 0
        self.pending_orders = 0
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
        }

    # --- clock ------------------------------------------------------------------

    def advance(self, now: int) -> None:
        """Move the clock forward to ``now`` (us); earlier times are ignored.

        Applies held events that became due and turns unshipped orders late whose
        ``ship_by`` passed. Day roll-over happens lazily per seller.
        """
        if now <= self.now:
            return
        self.now = now
        self.today = now // US_PER_DAY
        wakeups = self._wakeups
        while wakeups and wakeups[0][0] <= now:
            _, seller_id = heapq.heappop(wakeups)
            seller = self.sellers.get(seller_id)
            if seller is not None:
                self._wake(seller_id, seller)

    def _wake(self, seller_id: str, seller: Seller) -> None:
        self._roll(seller)
        now = self.now
        future = seller.future
        while future and future[0][0] <= now:
            event = heapq.heappop(future)[2]
            try:
                self.apply(event)
            except ConflictingEvent as exc:
                self.deferred_rejects.append((event, exc))
        timers = seller.timers
        while timers and timers[0][0] < now:
            _, order_id = heapq.heappop(timers)
            record = seller.orders.get(order_id)
            if record is not None:
                self._commit(seller, order_id, rec.unpack(record), rec.digests_of(record))

    def _schedule(self, seller_id: str, when: int) -> None:
        heapq.heappush(self._wakeups, (when, seller_id))

    # --- events -----------------------------------------------------------------

    def apply_bytes(self, data: bytes) -> Outcome:
        """Decode and apply one JSON event; raises :class:`InvalidEvent`."""
        return self.apply(decode_event(data))

    def apply(self, event: Event) -> Outcome:
        """Fold one validated event into the state.

        Raises :class:`~streams.errors.ConflictingEvent` for a second ``order`` event
        (under a new ``event_id``) for an existing order; the state is unchanged then.
        """
        occurred_at = to_us(event.occurred_at)
        seller_id = event.seller_id
        seller = self.sellers.get(seller_id)
        if seller is None:
            seller = self.sellers[seller_id] = Seller(self._windows, self.today)
        elif seller.windows.day < self.today:
            self._roll(seller)
        if occurred_at > self.now:
            self._seq += 1
            heapq.heappush(seller.future, (occurred_at, self._seq, event))
            self._schedule(seller_id, occurred_at)
            return Outcome.HELD
        if type(event) is Message:
            return self._on_message(seller, event, occurred_at)
        assert not isinstance(event, Message)
        order_id = event.order_id
        record = seller.orders.get(order_id)
        digest = rec.event_digest(event.event_id)
        if record is None:
            fields = rec.new_fields(self.today)
            digests = b""
        else:
            digests = rec.digests_of(record)
            if rec.has_digest(digests, digest):
                return Outcome.DUPLICATE
            fields = rec.unpack(record)
        old_flags, old_day = fields[rec.FLAGS], fields[rec.DAY]
        outcome = self._dispatch[type(event)](seller, event, fields, occurred_at)  # type: ignore[operator]
        if outcome is Outcome.EXPIRED:
            if record is not None:
                del seller.orders[order_id]
                self.pending_orders -= 1  # only a pending record can meet its order
            return outcome
        if record is None:
            seller.by_day.setdefault(fields[rec.DAY], []).append(order_id)
            if not fields[rec.FLAGS] & HAS_ORDER:
                self.pending_orders += 1
        else:
            if fields[rec.DAY] != old_day:
                # A pending record stays listed under its anchor day too; expiry
                # skips entries whose day no longer matches the record.
                seller.by_day.setdefault(fields[rec.DAY], []).append(order_id)
            if (fields[rec.FLAGS] ^ old_flags) & HAS_ORDER:
                self.pending_orders -= 1
        self._commit(seller, order_id, fields, digests + digest)
        if outcome is Outcome.APPLIED and not fields[rec.FLAGS] & HAS_ORDER:
            return Outcome.PENDING
        return outcome

    def _commit(self, seller: Seller, order_id: str, fields: list[int], digests: bytes) -> None:
        """Re-evaluate one order and move the seller's counts by the difference."""
        mask = evaluate(rec.facts(fields), self.now)
        applied = fields[rec.APPLIED]
        if mask != applied:
            seller.windows.add(fields[rec.DAY], LANES[mask] - LANES[applied])
            fields[rec.APPLIED] = mask
        seller.orders[order_id] = rec.pack(fields, digests)

    def _on_order(self, seller: Seller, ev: Order, f: list[int], at: int) -> Outcome:
        if f[rec.FLAGS] & HAS_ORDER:
            raise ConflictingEvent(
                f"order {ev.order_id!r} of seller {ev.seller_id!r} already exists; "
                f"event {ev.event_id!r} would redefine it (event ids must be unique, "
                "and an order is created once)",
                field="$.order_id",
            )
        seller.has_orders = True
        purchase_day = at // US_PER_DAY
        if not seller.windows.in_horizon(purchase_day):
            return Outcome.EXPIRED
        f[rec.DAY] = purchase_day
        f[rec.SHIP_BY] = to_us(ev.ship_by)
        f[rec.FLAGS] |= HAS_ORDER
        deadline = late_deadline(rec.facts(f))
        if deadline is not None and deadline >= self.now:
            heapq.heappush(seller.timers, (deadline, ev.order_id))
            self._schedule(ev.seller_id, deadline + 1)
        return Outcome.APPLIED

    def _on_cancellation(
        self, seller: Seller, ev: Cancellation, f: list[int], at: int
    ) -> Outcome:
        f[rec.FLAGS] |= ANY_CANCEL
        if ev.initiated_by == "seller" and at < f[rec.FIRST_SELLER_CANCEL]:
            f[rec.FIRST_SELLER_CANCEL] = at
        return Outcome.APPLIED

    def _on_shipment(self, seller: Seller, ev: Shipment, f: list[int], at: int) -> Outcome:
        if at < f[rec.FIRST_SHIP]:
            f[rec.FIRST_SHIP] = at
        if ev.tracking_id:
            f[rec.FLAGS] |= TRACKED_F
        return Outcome.APPLIED

    def _on_refund(self, seller: Seller, ev: Refund, f: list[int], at: int) -> Outcome:
        f[rec.FLAGS] |= REFUNDED_F
        return Outcome.APPLIED

    def _on_feedback(self, seller: Seller, ev: Feedback, f: list[int], at: int) -> Outcome:
        if at >= f[rec.FEEDBACK_AT]:  # latest wins; on a tie, the later processed
            f[rec.FEEDBACK_AT] = at
            if ev.rating <= 2 and not ev.removed:
                f[rec.FLAGS] |= FB_NEGATIVE
            else:
                f[rec.FLAGS] &= ~FB_NEGATIVE
        return Outcome.APPLIED

    def _on_claim(self, seller: Seller, ev: Claim, f: list[int], at: int) -> Outcome:
        at_field, flag = (
            (rec.A_TO_Z_AT, ATOZ_OPEN)
            if ev.claim_type == "a_to_z"
            else (rec.CHARGEBACK_AT, CHARGEBACK_OPEN)
        )
        if at >= f[at_field]:
            f[at_field] = at
            if ev.status in ("opened", "granted"):
                f[rec.FLAGS] |= flag
            else:
                f[rec.FLAGS] &= ~flag
        return Outcome.APPLIED

    def _on_message(self, seller: Seller, ev: Message, at: int) -> Outcome:
        message_id = ev.message_id
        old = seller.messages.get(message_id)
        digest = rec.event_digest(ev.event_id)
        if old is not None and rec.has_digest(old.digests, digest):
            return Outcome.DUPLICATE
        counts = ev.sender == "buyer" and ev.response_needed and ev.order_id is not None
        if old is None:
            seller.messages[message_id] = MessageState(
                at, ev.order_id, counts, self.today, digest
            )
            seller.messages_by_day.setdefault(self.today, []).append(message_id)
        elif at >= old.occurred_at:
            seller.messages[message_id] = MessageState(
                at, ev.order_id, counts, old.anchor_day, old.digests + digest
            )
        else:  # an older state of this message: nothing changes but the dedup set
            seller.messages[message_id] = old._replace(digests=old.digests + digest)
            return Outcome.APPLIED
        if old is not None and old.counts and old.order_id is not None:
            self._count_message(seller, old.order_id, -1)
        if counts and ev.order_id is not None:
            self._count_message(seller, ev.order_id, +1)
        return Outcome.APPLIED

    def _count_message(self, seller: Seller, order_id: str, delta: int) -> None:
        record = seller.orders.get(order_id)
        if record is None:
            if delta < 0:  # the order expired: it counts nowhere any more
                return
            fields, digests = rec.new_fields(self.today), b""
            seller.by_day.setdefault(self.today, []).append(order_id)
            self.pending_orders += 1
        else:
            fields, digests = rec.unpack(record), rec.digests_of(record)
        # Never below zero: a count can only be stale for an order that expired and
        # came back as a pending record, which never counts again.
        fields[rec.BUYER_MESSAGES] = max(0, fields[rec.BUYER_MESSAGES] + delta)
        self._commit(seller, order_id, fields, digests)

    # --- day roll-over and expiry ----------------------------------------------

    def _roll(self, seller: Seller) -> None:
        old_day = seller.windows.day
        today = self.today
        if old_day >= today:
            return
        seller.windows.roll(today)
        horizon = self._horizon
        orders = seller.orders
        for day in days_leaving(seller.by_day, old_day, today, horizon):
            for order_id in seller.by_day.pop(day):
                record = orders.get(order_id)
                if record is not None and rec.HEADER.unpack_from(record)[rec.DAY] == day:
                    if not rec.HEADER.unpack_from(record)[rec.FLAGS] & HAS_ORDER:
                        self.pending_orders -= 1
                    del orders[order_id]
        for day in days_leaving(seller.messages_by_day, old_day, today, horizon):
            for message_id in seller.messages_by_day.pop(day):
                msg = seller.messages.get(message_id)
                if msg is None or msg.anchor_day != day:
                    continue
                if msg.counts and msg.order_id in orders:
                    # Its order is still in the window: keep the message alive.
                    seller.messages[message_id] = msg._replace(anchor_day=today)
                    seller.messages_by_day.setdefault(today, []).append(message_id)
                else:
                    del seller.messages[message_id]

    # --- reading ----------------------------------------------------------------

    def seller_ids(self) -> Iterator[str]:
        """Sellers with at least one order purchased at or before ``now``."""
        return (sid for sid, s in self.sellers.items() if s.has_orders)

    def seller_metrics(self, seller_id: str) -> dict[str, MetricValue]:
        seller = self.sellers[seller_id]
        self._roll(seller)
        sums = seller.windows.sums
        out: dict[str, MetricValue] = {}
        for metric, wi, num_bit, den_bit in self._plan:
            vector = sums[wi]
            num = lane(vector, num_bit)
            den = lane(vector, den_bit)
            if den:
                value: float | None = num / den
                breached: bool | None = metric.is_breached(num / den)
            else:
                value = breached = None
            out[metric.name] = MetricValue(
                num, den, value, metric.target, breached, metric.window_days
            )
        return out

    def seller_counts(self, seller_id: str, window_days: int) -> dict[str, int]:
        """Orders per predicate over one of the catalog's windows (defect causes)."""
        seller = self.sellers[seller_id]
        self._roll(seller)
        vector = seller.windows.sums[self._windows.index(window_days)]
        return {name: lane(vector, bit) for name, bit in PREDICATES.items()}

    def report(self) -> dict[str, dict[str, MetricValue]]:
        return {sid: self.seller_metrics(sid) for sid in sorted(self.seller_ids())}

    @property
    def tracked_orders(self) -> int:
        return sum(len(s.orders) for s in self.sellers.values())

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
        """Forget a seller (its partition moved to another worker)."""
        seller = self.sellers.pop(seller_id, None)
        if seller is not None:
            self.pending_orders -= sum(
                1
                for r in seller.orders.values()
                if not rec.HEADER.unpack_from(r)[rec.FLAGS] & HAS_ORDER
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
    def restore(cls, data: bytes, catalog: Catalog | None = None) -> Engine:
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
            day=seller.windows.day,
            has_orders=seller.has_orders,
            orders=dict(seller.orders),
            messages={k: tuple(v) for k, v in seller.messages.items()},  # type: ignore[misc]
            future=[encode_event(e) for _, _, e in sorted(seller.future)],
        )

    def _restore_seller(self, seller_id: str, snap: _SellerSnapshot) -> None:
        seller = self.sellers[seller_id] = Seller(self._windows, snap.day)
        seller.has_orders = snap.has_orders
        for order_id, record in snap.orders.items():
            fields = rec.unpack(record)
            seller.orders[order_id] = record
            seller.by_day.setdefault(fields[rec.DAY], []).append(order_id)
            if fields[rec.FLAGS] & HAS_ORDER:
                seller.windows.add(fields[rec.DAY], LANES[fields[rec.APPLIED]])
                deadline = late_deadline(rec.facts(fields))
                if deadline is not None:
                    seller.timers.append((deadline, order_id))
            else:
                self.pending_orders += 1
        heapq.heapify(seller.timers)
        for message_id, (at, order_id, counts, anchor, digests) in snap.messages.items():
            seller.messages[message_id] = MessageState(at, order_id, counts, anchor, digests)
            seller.messages_by_day.setdefault(anchor, []).append(message_id)
        for raw in snap.future:
            event = decode_event(raw)
            self._seq += 1
            seller.future.append((to_us(event.occurred_at), self._seq, event))
        heapq.heapify(seller.future)
        # Catch up with the clock: roll days, apply what became due, fire timers.
        self._wake(seller_id, seller)
        if seller.timers:
            self._schedule(seller_id, seller.timers[0][0] + 1)
        if seller.future:
            self._schedule(seller_id, seller.future[0][0])
