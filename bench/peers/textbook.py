"""The six metrics the textbook way: one event at a time, state in a key-value store.

This is what a Faust or Quix Streams user writes from the contract without
popstream's engine: each order's facts as a JSON document under ``o/<order_id>``,
each message under ``m/<message_id>``, the seller's running counts under ``c``,
every one read and written back per event. The *rules* are popstream's own
(:func:`streams.engine.rules.evaluate`, the catalog), so every contender computes
the same numbers and the benchmark compares engines, not definitions; the
harness checks each contender's final counts against the engine's replay.

The clock is fixed (``now``), as in every benchmark run, so nothing expires while
the log is read and no timers are needed. Contract v1.1 events (deliveries,
returns, item-not-received claims, ``deliver_by``) fold into the order's facts as
the engine folds them, so an item-not-received claim is never taken for a
chargeback, and windows lag as the catalog says (Amazon's on-time delivery). Buyer
messages are not tracked for a response rate: the peer computes catalogs of order
metrics (amazon, the default, and ebay), not walmart's seller_response_rate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streams.engine.catalog import Catalog, default_catalog
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
    to_us,
)
from streams.engine.orders import new_fields
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
    RETURNED_F,
    SHIP_BY,
    TRACKED_F,
    evaluate,
)

Get = Callable[[str], Any]
Set = Callable[[str, Any], None]

_CLAIM_FIELDS = {  # claim type -> (latest-status time, open flag, granted flag)
    "a_to_z": (A_TO_Z_AT, ATOZ_OPEN, ATOZ_GRANTED),
    "chargeback": (CHARGEBACK_AT, CHARGEBACK_OPEN, CHARGEBACK_GRANTED),
    "item_not_received": (INR_AT, INR_OPEN, INR_GRANTED),
}


class Textbook:
    """Folds one event into a seller's store (``get``/``set`` scoped to the seller)."""

    def __init__(self, now: int, catalog: Catalog | None = None) -> None:
        catalog = catalog or default_catalog()
        self.now = now
        self.today = now // US_PER_DAY
        self.horizon = catalog.horizon_days
        self.metrics = [
            (m.name, m.lag_days, m.lag_days + m.window_days, PREDICATES[m.numerator],
             PREDICATES[m.denominator])
            for m in catalog.metrics
        ]

    def apply(self, event: Event, get: Get, put: Set) -> str:
        """Apply one validated event; the outcome's name (``applied``, ``duplicate``,
        ``held``, ``expired``, ``conflict``)."""
        at = to_us(event.occurred_at)
        if at > self.now:
            return "held"
        if isinstance(event, Message):
            return self._message(event, at, get, put)
        key = "o/" + event.order_id
        doc = get(key)
        if doc is None:
            doc = {"f": new_fields(self.today), "ids": []}
        f: list[int] = doc["f"]
        old_mask, old_day = f[APPLIED], f[DAY]
        if isinstance(event, Order):
            day = at // US_PER_DAY
            ship_by = to_us(event.ship_by)
            deliver_by = NO_TIME if event.deliver_by is None else to_us(event.deliver_by)
            if f[FLAGS] & HAS_ORDER:
                same = (f[DAY] == day and f[SHIP_BY] == ship_by
                        and f[DELIVER_BY] == deliver_by)
                return "duplicate" if same else "conflict"
            if self.today - day >= self.horizon:
                return "expired"  # never counted: a pending record stays pending
            f[DAY], f[SHIP_BY], f[DELIVER_BY] = day, ship_by, deliver_by
            f[FLAGS] |= HAS_ORDER
        else:
            if event.event_id in doc["ids"]:
                return "duplicate"
            doc["ids"].append(event.event_id)
            self._fold(event, f, at)
        self._commit(f, old_mask, old_day, get, put)
        put(key, doc)
        return "applied"

    @staticmethod
    def _fold(event: Event, f: list[int], at: int) -> None:
        if isinstance(event, Cancellation):
            f[FLAGS] |= ANY_CANCEL
            if event.initiated_by == "seller" and at < f[FIRST_SELLER_CANCEL]:
                f[FIRST_SELLER_CANCEL] = at
        elif isinstance(event, Shipment):
            f[FIRST_SHIP] = min(f[FIRST_SHIP], at)
            if event.tracking_id:
                f[FLAGS] |= TRACKED_F
        elif isinstance(event, Refund):
            f[FLAGS] |= REFUNDED_F
        elif isinstance(event, Feedback):
            if at >= f[FEEDBACK_AT]:
                f[FEEDBACK_AT] = at
                negative = event.rating <= 2 and not event.removed
                f[FLAGS] = f[FLAGS] | FB_NEGATIVE if negative else f[FLAGS] & ~FB_NEGATIVE
        elif isinstance(event, Claim):
            at_field, flag, granted = _CLAIM_FIELDS[event.claim_type]
            if at >= f[at_field]:
                f[at_field] = at
                is_open = event.status in ("opened", "granted")
                f[FLAGS] = f[FLAGS] | flag if is_open else f[FLAGS] & ~flag
                is_granted = event.status == "granted"
                f[FLAGS] = f[FLAGS] | granted if is_granted else f[FLAGS] & ~granted
        elif isinstance(event, Delivery):
            f[LAST_DELIVERY] = max(f[LAST_DELIVERY], at)
        elif isinstance(event, Return):
            f[FLAGS] |= RETURNED_F

    def _message(self, ev: Message, at: int, get: Get, put: Set) -> str:
        key = "m/" + ev.message_id
        old = get(key)
        if old is not None and ev.event_id in old["ids"]:
            return "duplicate"
        counts = ev.sender == "buyer" and ev.response_needed and ev.order_id is not None
        ids = [] if old is None else old["ids"]
        ids.append(ev.event_id)
        if old is not None and at < old["at"]:
            put(key, {**old, "ids": ids})  # an older state: only the dedup set grows
            return "applied"
        put(key, {"at": at, "order": ev.order_id, "counts": counts, "ids": ids})
        if old is not None and old["counts"]:
            self._count_message(old["order"], -1, get, put)
        if counts:
            self._count_message(ev.order_id, +1, get, put)  # type: ignore[arg-type]
        return "applied"

    def _count_message(self, order_id: str, delta: int, get: Get, put: Set) -> None:
        key = "o/" + order_id
        doc = get(key)
        if doc is None:
            doc = {"f": new_fields(self.today), "ids": []}
        f = doc["f"]
        old_mask, old_day = f[APPLIED], f[DAY]
        f[BUYER_MESSAGES] = max(0, f[BUYER_MESSAGES] + delta)
        self._commit(f, old_mask, old_day, get, put)
        put(key, doc)

    def _commit(self, f: list[int], old_mask: int, old_day: int, get: Get, put: Set) -> None:
        """Re-evaluate the order; move the seller's counts by the difference."""
        mask = evaluate(f, self.now)
        f[APPLIED] = mask
        if mask == old_mask and f[DAY] == old_day:
            return
        counts = get("c") or {}
        old_age, age = self.today - old_day, self.today - f[DAY]
        for name, lag, end, num, den in self.metrics:  # purchase ages lag .. end - 1
            pair = counts.setdefault(name, [0, 0])
            was, now_in = lag <= old_age < end, lag <= age < end
            pair[0] += (now_in and bool(mask & num)) - (was and bool(old_mask & num))
            pair[1] += (now_in and bool(mask & den)) - (was and bool(old_mask & den))
        put("c", counts)


def counts_of(report: dict[str, Any]) -> dict[str, dict[str, list[int]]]:
    """``{seller: {metric: [numerator, denominator]}}`` from an engine report, the
    form every contender's result takes."""
    return {
        sid: {name: [mv.numerator, mv.denominator] for name, mv in metrics.items()}
        for sid, metrics in report.items()
    }
