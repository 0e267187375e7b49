"""Synthetic but realistic seller event logs, deterministic by seed.

Used by ``popstream generate`` (sample logs, benchmark inputs), the simulator and
the tests. Each seller has its own propensities; most are healthy, a configurable
share "drifts": its defect, late-shipment, late-delivery, return, cancellation and
response rates worsen over the period, so some sellers cross their targets the way
real ones slide toward suspension. All nine event types of contract v1.1 appear,
so every metric of every profile (amazon, walmart, ebay) has orders to count:
promised delivery dates and carrier deliveries (some late, some in two packages,
some never), returns, item-not-received claims, buyer messages and the seller's
replies to them (mostly within 48 h, some late, some never), and retractions
(removed feedback, withdrawn claims, messages marked no-response-needed).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Any

from streams.engine.events import US_PER_DAY, format_us

NO_PROMISE = 0.03
"""Orders without a ``deliver_by`` (marketplaces without a promise, v1 producers)."""
SECOND_PACKAGE = 0.03
"""Delivered orders whose last package arrives in a second delivery, later."""
UNDELIVERED_INR = 0.5
"""Chance that an order the carrier never delivers gets an item-not-received claim."""
RETURN_REASONS = ("no longer needed", "item defective", "not as described",
                  "wrong item sent", "arrived too late", None)


@dataclass(frozen=True, slots=True)
class Profile:
    """Per-order probabilities of one seller (at the end of the period).

    ``reply`` is the chance a buyer message needing a response gets a seller reply
    at all, ``late_reply`` the chance such a reply comes after 48 h; the others are
    per order (``negative_feedback`` per feedback, ``late_delivery`` per delivered
    order with a promise, ``undelivered`` per shipped order).
    """

    late: float
    seller_cancel: float
    buyer_cancel: float
    refund: float
    feedback: float
    negative_feedback: float
    a_to_z: float
    chargeback: float
    buyer_message: float
    no_tracking: float
    # contract v1.1 (issue #12)
    late_delivery: float = 0.0
    undelivered: float = 0.0
    returned: float = 0.0
    item_not_received: float = 0.0
    reply: float = 1.0
    late_reply: float = 0.0


# Healthy sellers clear every profile's targets (on-time delivery ~96 % against
# 90 %, returns 3 % against Walmart's 6 %, replies ~97 % on time against 95 %);
# drifting ones end well past them.
HEALTHY = Profile(0.01, 0.004, 0.01, 0.004, 0.2, 0.02, 0.001, 0.0005, 0.01, 0.01,
                  late_delivery=0.025, undelivered=0.005, returned=0.03,
                  item_not_received=0.002, reply=0.99, late_reply=0.02)
DRIFTING = Profile(0.09, 0.04, 0.01, 0.03, 0.25, 0.12, 0.01, 0.005, 0.06, 0.08,
                   late_delivery=0.2, undelivered=0.04, returned=0.09,
                   item_not_received=0.02, reply=0.75, late_reply=0.25)


@dataclass(frozen=True, slots=True)
class LogSpec:
    sellers: int = 100
    orders_per_seller_per_day: float = 2.0
    days: int = 95
    end_us: int = 0  # last purchase instant; 0 = caller must set
    drifting_share: float = 0.1
    seed: int = 1


def seller_ids(count: int) -> list[str]:
    return [f"S{i:06d}" for i in range(count)]


def mix_profiles(base: Profile, drift: Profile, weight: float) -> Profile:
    return Profile(
        *(
            b + (d - b) * weight
            for b, d in zip(profile_fields(base), profile_fields(drift), strict=True)
        )
    )


_PROFILE_FIELDS = tuple(f.name for f in fields(Profile))


def profile_fields(p: Profile) -> tuple[float, ...]:
    return tuple(getattr(p, name) for name in _PROFILE_FIELDS)


Add = Callable[..., None]


def order_events(
    rnd: random.Random, seller_id: str, order_no: int, purchase_us: int, profile: Profile,
    *, order_id: str | None = None, day: int = US_PER_DAY,
) -> list[tuple[int, dict[str, Any]]]:
    """All events of one order's life as ``(occurred_at_us, event)``, unsorted,
    each with a unique ``event_id``; the ``order`` event first.

    ``day`` is how long a day of the order's life lasts: the simulator's live phase
    runs a life in minutes (the 48 h a buyer message has for its reply stays real
    time, so its late replies are late only in a log of real days).
    """
    if day < 1440:
        raise ValueError(f"day must be at least 1440 us, got {day}")
    hour = day // 24
    order_id = order_id or f"{seller_id}-O{order_no:08d}"
    eid = f"{order_id}-"
    ship_by = purchase_us + rnd.choice((1, 2, 2, 3)) * day
    # The promise: 2-5 days after ship_by, as marketplaces quote; a few orders none.
    deliver_by = (None if rnd.random() < NO_PROMISE
                  else ship_by + rnd.randrange(2, 6) * day)
    order: dict[str, Any] = {
        "event_id": eid + "o",
        "type": "order",
        "seller_id": seller_id,
        "order_id": order_id,
        "occurred_at": format_us(purchase_us),
        "ship_by": format_us(ship_by),
        "marketplace": "US",
        "amount": round(rnd.uniform(5, 300), 2),
        "currency": "USD",
    }
    if deliver_by is not None:
        order["deliver_by"] = format_us(deliver_by)
    events: list[tuple[int, dict[str, Any]]] = [(purchase_us, order)]

    def add(kind: str, at: int, suffix: str, **fields: Any) -> None:
        events.append(
            (
                at,
                {
                    "event_id": eid + suffix,
                    "type": kind,
                    "seller_id": seller_id,
                    "order_id": order_id,
                    "occurred_at": format_us(at),
                    **fields,
                },
            )
        )

    r = rnd.random()
    if r < profile.seller_cancel:
        add(
            "cancellation",
            purchase_us + rnd.randrange(hour * 30),
            "c",
            initiated_by="seller",
        )
        return events
    if r < profile.seller_cancel + profile.buyer_cancel:
        add(
            "cancellation", purchase_us + rnd.randrange(hour * 6), "c", initiated_by="buyer"
        )
        return events
    if rnd.random() < profile.late:
        shipped = ship_by + rnd.randrange(1, day * 2)
    else:
        shipped = purchase_us + rnd.randrange(max(1, ship_by - purchase_us))
    tracking = None if rnd.random() < profile.no_tracking else f"1Z{rnd.randrange(10**12):012d}"
    add("shipment", shipped, "s", tracking_id=tracking)
    delivered = _deliveries(rnd, add, shipped, deliver_by, profile, day)
    _conversation(rnd, add, order_id, shipped, profile, day)
    if rnd.random() < profile.feedback:
        negative = rnd.random() < profile.negative_feedback
        at = delivered + rnd.randrange(day * 7)
        add("feedback", at, "f1", rating=rnd.choice((1, 2)) if negative else rnd.choice((4, 5, 5)))
        if negative and rnd.random() < 0.2:
            add("feedback", at + rnd.randrange(1, day * 3), "f2", rating=1, removed=True)
    for claim_type, p in (("a_to_z", profile.a_to_z), ("chargeback", profile.chargeback)):
        if rnd.random() < p:
            at = delivered + rnd.randrange(day * 10)
            add("claim", at, claim_type[0] + "1", claim_type=claim_type, status="opened")
            if rnd.random() < 0.3:
                add(
                    "claim",
                    at + rnd.randrange(1, day * 5),
                    claim_type[0] + "2",
                    claim_type=claim_type,
                    status=rnd.choice(("withdrawn", "denied", "granted")),
                )
    if rnd.random() < profile.refund:
        add(
            "refund",
            delivered + rnd.randrange(day * 5),
            "r",
            amount=10.0,
            reason="item not as described",
        )
    if rnd.random() < profile.returned:
        add("return", delivered + rnd.randrange(day, day * 14), "t",
            reason=rnd.choice(RETURN_REASONS))
    return events


def _deliveries(rnd: random.Random, add: Add, shipped: int, deliver_by: int | None,
                profile: Profile, day: int) -> int:
    """The carrier's deliveries of a shipped order; the instant the buyer has it
    (or would have had it: the anchor of later feedback, claims and refunds).

    Delivered on time unless the profile says late or the shipment left too late to
    make the promise; a few orders come in two packages (the second, later one
    decides), a few never arrive and may get an item-not-received claim."""
    hour = day // 24
    if deliver_by is None:
        delivered = shipped + rnd.randrange(day, 5 * day)
    else:
        room = deliver_by - shipped
        if rnd.random() < profile.late_delivery or room < 12 * hour:
            delivered = max(deliver_by, shipped) + rnd.randrange(1, 4 * day)
        else:  # at or before the promise (exactly at it is on time)
            delivered = shipped + rnd.randrange(12 * hour, room + 1)
    if rnd.random() < profile.undelivered:
        if rnd.random() < UNDELIVERED_INR:
            _inr_claim(rnd, add, max(delivered, deliver_by or 0), day)
        return delivered
    add("delivery", delivered, "d1")
    if rnd.random() < SECOND_PACKAGE:
        delivered += rnd.randrange(hour, 3 * day)
        add("delivery", delivered, "d2")
    if rnd.random() < profile.item_not_received:  # "delivered", yet not received
        _inr_claim(rnd, add, delivered, day)
    return delivered


def _inr_claim(rnd: random.Random, add: Add, after: int, day: int) -> None:
    """An item-not-received claim a few days after ``after``; most are resolved
    later (granted to the buyer, withdrawn, or denied), the rest stay open."""
    hour = day // 24
    at = after + rnd.randrange(day, 7 * day)
    add("claim", at, "i1", claim_type="item_not_received", status="opened")
    if rnd.random() < 0.6:
        add("claim", at + rnd.randrange(hour, 7 * day), "i2",
            claim_type="item_not_received",
            status=rnd.choices(("granted", "withdrawn", "denied"), (45, 35, 20))[0])


def _conversation(rnd: random.Random, add: Add, order_id: str, shipped: int,
                  profile: Profile, day: int) -> None:
    """A buyer message about the order (some marked "No Response Needed" by the
    seller) and the seller's reply naming it in ``in_reply_to``: most within 48 h,
    some later, some never."""
    hour = day // 24
    if rnd.random() >= profile.buyer_message:
        return
    at = shipped + rnd.randrange(3 * day)
    mid = f"{order_id}-M"
    add("message", at, "m1", message_id=mid, sender="buyer")
    if rnd.random() < 0.3:  # the seller marks it "No Response Needed"
        add("message", at + rnd.randrange(1, hour * 4), "m2", message_id=mid,
            sender="buyer", response_needed=False)
        return
    if rnd.random() >= profile.reply:
        return
    if rnd.random() < profile.late_reply:
        delay = rnd.randrange(48 * hour + 1, 6 * day)
    else:
        delay = rnd.randrange(day // 1440, 40 * hour)
    add("message", at + delay, "m3", message_id=f"{order_id}-R", sender="seller",
        in_reply_to=mid)


def generate(spec: LogSpec) -> Iterator[dict[str, Any]]:
    """Events of ``spec`` in occurrence order (what a live stream looks like).

    Orders are purchased uniformly over ``spec.days`` days ending at
    ``spec.end_us``; follow-up events may lie after it (they are "held" until the
    clock reaches them, or ignored by a replay as of ``end_us``).
    """
    if spec.end_us <= 0:
        raise ValueError("LogSpec.end_us must be set")
    rnd = random.Random(spec.seed)
    start = spec.end_us - spec.days * US_PER_DAY
    sellers = seller_ids(spec.sellers)
    drifting = set(rnd.sample(sellers, round(spec.sellers * spec.drifting_share)))
    total = int(spec.sellers * spec.orders_per_seller_per_day * spec.days)
    events: list[tuple[int, int, dict[str, Any]]] = []
    counters = dict.fromkeys(sellers, 0)
    span = spec.end_us - start
    for n in range(total):
        seller = sellers[rnd.randrange(len(sellers))]
        at = start + rnd.randrange(span)
        weight = (at - start) / span if seller in drifting else 0.0
        profile = mix_profiles(HEALTHY, DRIFTING, weight)
        counters[seller] += 1
        for ev_at, ev in order_events(rnd, seller, counters[seller], at, profile):
            events.append((ev_at, n, ev))
    events.sort(key=lambda t: (t[0], t[1]))
    for _, _, ev in events:
        yield ev
