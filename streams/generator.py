"""Synthetic but realistic seller event logs, deterministic by seed.

Used by ``popstream generate`` (sample logs, benchmark inputs), the simulator and
the tests. Each seller has its own propensities; most are healthy, a configurable
share "drifts": its defect, late-shipment and cancellation rates grow over the
period, so some sellers cross their targets the way real ones slide toward
suspension. All seven event types appear, including retractions (removed
feedback, withdrawn claims, messages marked no-response-needed).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from streams.engine.events import US_PER_DAY, format_us

_US_PER_HOUR = 3_600_000_000


@dataclass(frozen=True, slots=True)
class Profile:
    """Per-order probabilities of one seller (at the end of the period)."""

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


HEALTHY = Profile(0.01, 0.004, 0.01, 0.004, 0.2, 0.02, 0.001, 0.0005, 0.01, 0.01)
DRIFTING = Profile(0.09, 0.04, 0.01, 0.03, 0.25, 0.12, 0.01, 0.005, 0.06, 0.08)


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


def profile_fields(p: Profile) -> tuple[float, ...]:
    return (
        p.late,
        p.seller_cancel,
        p.buyer_cancel,
        p.refund,
        p.feedback,
        p.negative_feedback,
        p.a_to_z,
        p.chargeback,
        p.buyer_message,
        p.no_tracking,
    )


def order_events(
    rnd: random.Random, seller_id: str, order_no: int, purchase_us: int, profile: Profile
) -> list[tuple[int, dict[str, Any]]]:
    """All events of one order's life as ``(occurred_at_us, event)``, unsorted,
    each with a unique ``event_id``."""
    order_id = f"{seller_id}-O{order_no:08d}"
    eid = f"{order_id}-"
    ship_by = purchase_us + rnd.choice((1, 2, 2, 3)) * US_PER_DAY
    events: list[tuple[int, dict[str, Any]]] = [
        (
            purchase_us,
            {
                "event_id": eid + "o",
                "type": "order",
                "seller_id": seller_id,
                "order_id": order_id,
                "occurred_at": format_us(purchase_us),
                "ship_by": format_us(ship_by),
                "marketplace": "US",
                "amount": round(rnd.uniform(5, 300), 2),
                "currency": "USD",
            },
        )
    ]

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
            purchase_us + rnd.randrange(_US_PER_HOUR * 30),
            "c",
            initiated_by="seller",
        )
        return events
    if r < profile.seller_cancel + profile.buyer_cancel:
        add(
            "cancellation", purchase_us + rnd.randrange(_US_PER_HOUR * 6), "c", initiated_by="buyer"
        )
        return events
    if rnd.random() < profile.late:
        shipped = ship_by + rnd.randrange(1, US_PER_DAY * 2)
    else:
        shipped = purchase_us + rnd.randrange(max(1, ship_by - purchase_us))
    tracking = None if rnd.random() < profile.no_tracking else f"1Z{rnd.randrange(10**12):012d}"
    add("shipment", shipped, "s", tracking_id=tracking)
    delivered = shipped + rnd.randrange(US_PER_DAY, 5 * US_PER_DAY)
    if rnd.random() < profile.buyer_message:
        at = shipped + rnd.randrange(3 * US_PER_DAY)
        mid = f"{order_id}-M"
        events.append(
            (
                at,
                {
                    "event_id": eid + "m1",
                    "type": "message",
                    "seller_id": seller_id,
                    "order_id": order_id,
                    "message_id": mid,
                    "sender": "buyer",
                    "occurred_at": format_us(at),
                },
            )
        )
        if rnd.random() < 0.3:  # the seller marks it "No Response Needed"
            later = at + rnd.randrange(1, _US_PER_HOUR * 4)
            events.append(
                (
                    later,
                    {
                        "event_id": eid + "m2",
                        "type": "message",
                        "seller_id": seller_id,
                        "order_id": order_id,
                        "message_id": mid,
                        "sender": "buyer",
                        "response_needed": False,
                        "occurred_at": format_us(later),
                    },
                )
            )
    if rnd.random() < profile.feedback:
        negative = rnd.random() < profile.negative_feedback
        at = delivered + rnd.randrange(US_PER_DAY * 7)
        add("feedback", at, "f1", rating=rnd.choice((1, 2)) if negative else rnd.choice((4, 5, 5)))
        if negative and rnd.random() < 0.2:
            add("feedback", at + rnd.randrange(1, US_PER_DAY * 3), "f2", rating=1, removed=True)
    for claim_type, p in (("a_to_z", profile.a_to_z), ("chargeback", profile.chargeback)):
        if rnd.random() < p:
            at = delivered + rnd.randrange(US_PER_DAY * 10)
            add("claim", at, claim_type[0] + "1", claim_type=claim_type, status="opened")
            if rnd.random() < 0.3:
                add(
                    "claim",
                    at + rnd.randrange(1, US_PER_DAY * 5),
                    claim_type[0] + "2",
                    claim_type=claim_type,
                    status=rnd.choice(("withdrawn", "denied", "granted")),
                )
    if rnd.random() < profile.refund:
        add(
            "refund",
            delivered + rnd.randrange(US_PER_DAY * 5),
            "r",
            amount=10.0,
            reason="item not as described",
        )
    return events


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
