"""Hypothesis strategies for small, collision-heavy event logs.

Few sellers, few orders and messages, timestamps drawn near every edge the rules
care about (window boundaries, UTC midnight, ``ship_by`` exactly, ``now`` exactly,
just after ``now``), so that a few dozen events exercise most rules at once.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
from hypothesis import strategies as st

NOW = dt.datetime(2024, 6, 15, 12, 0, 0, tzinfo=dt.UTC)
NOW_TEXT = "2024-06-15T12:00:00Z"

SELLERS = ("s1", "s2")
ORDERS = ("o1", "o2", "o3", "o4", "o5")
MESSAGES = ("m1", "m2", "m3")

_DAY_OFFSETS = (0, 0, 0, -1, -2, -6, -7, -9, -10, -29, -30, -59, -60, -89, -90, -91)
_TIMES = (
    dt.time(0, 0),
    dt.time(11, 59, 59, 999999),
    dt.time(12, 0),
    dt.time(12, 0, 0, 1),
    dt.time(23, 59, 59, 999999),
)
_OFFSETS = ("Z", "+00:00", "+05:30", "-08:00")


def _fmt(ts: dt.datetime, offset: str) -> str:
    if offset == "Z":
        return ts.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    sign = 1 if offset[0] == "+" else -1
    hours, minutes = int(offset[1:3]), int(offset[4:6])
    tz = dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes))
    return ts.astimezone(tz).isoformat()


@st.composite
def timestamps(draw: st.DrawFn) -> dt.datetime:
    day = NOW.date() + dt.timedelta(days=draw(st.sampled_from(_DAY_OFFSETS)))
    return dt.datetime.combine(day, draw(st.sampled_from(_TIMES)), tzinfo=dt.UTC)


@st.composite
def event_dicts(
    draw: st.DrawFn,
    pool: list[dt.datetime],
    orders: list[str],
    unique_times: bool = False,
) -> dict[str, Any]:
    """One event as a JSON-ready dict (``event_id`` filled in later).

    Times come from a small per-log ``pool`` most of the time, so that "latest
    wins" ties (same order, same instant) are common.
    """
    kind = draw(
        st.sampled_from(
            ["order", "order", "cancellation", "shipment", "shipment", "refund",
             "feedback", "feedback", "claim", "claim", "message", "message"]
        )
    )
    at = draw(st.sampled_from(pool)) if draw(st.integers(0, 3)) else draw(timestamps())
    if unique_times:
        at += dt.timedelta(microseconds=draw(st.integers(1, 10**9)))
    doc: dict[str, Any] = {
        "type": kind,
        "seller_id": draw(st.sampled_from(SELLERS)),
        "occurred_at": _fmt(at, draw(st.sampled_from(_OFFSETS))),
    }
    if kind != "message":
        doc["order_id"] = draw(st.sampled_from(orders))
    if kind == "order":
        ship_by = at + draw(
            st.sampled_from([dt.timedelta(0), dt.timedelta(hours=12), dt.timedelta(days=1),
                             dt.timedelta(days=2), dt.timedelta(microseconds=1)])
        )
        doc["ship_by"] = _fmt(ship_by, "Z")
        if draw(st.booleans()):
            doc["amount"] = 12.5
            doc["currency"] = "USD"
    elif kind == "cancellation":
        doc["initiated_by"] = draw(st.sampled_from(["seller", "buyer"]))
    elif kind == "shipment":
        tracking = draw(st.sampled_from([None, "", "1Z999", "absent"]))
        if tracking != "absent":
            doc["tracking_id"] = tracking
    elif kind == "refund":
        doc["reason"] = "damaged"
    elif kind == "feedback":
        doc["rating"] = draw(st.integers(1, 5))
        if draw(st.booleans()):
            doc["removed"] = draw(st.booleans())
    elif kind == "claim":
        doc["claim_type"] = draw(st.sampled_from(["a_to_z", "chargeback"]))
        status = draw(st.sampled_from(["opened", "granted", "denied", "withdrawn", None]))
        if status is not None:
            doc["status"] = status
    else:
        doc["message_id"] = draw(st.sampled_from(MESSAGES))
        doc["sender"] = draw(st.sampled_from(["buyer", "buyer", "seller"]))
        if draw(st.booleans()):
            doc["response_needed"] = draw(st.booleans())
        if draw(st.integers(0, 4)):
            doc["order_id"] = draw(st.sampled_from(orders))
    return doc


INVALID_LINES = (
    b"{not json",
    b"",
    b'"just a string"',
    b'{"event_id":"x","type":"order","seller_id":"s1","order_id":"o1",'
    b'"occurred_at":"2024-06-01T00:00:00","ship_by":"2024-06-02T00:00:00Z"}',
    b'{"event_id":"x","type":"teleport","seller_id":"s1","occurred_at":"2024-06-01T00:00:00Z"}',
    b'{"event_id":"x","type":"feedback","seller_id":"s1","order_id":"o1",'
    b'"occurred_at":"2024-06-01T00:00:00Z","rating":7}',
    b'{"event_id":"","type":"refund","seller_id":"s1","order_id":"o1",'
    b'"occurred_at":"2024-06-01T00:00:00Z"}',
    b'{"event_id":"x","type":"shipment","seller_id":"bad seller","order_id":"o1",'
    b'"occurred_at":"2024-06-01T00:00:00Z"}',
)


@st.composite
def logs(draw: st.DrawFn, unique_times: bool = False, max_size: int = 40) -> list[bytes]:
    """A JSON Lines log in processing order: distinct events, redeliveries of some
    of them (same ``event_id``) anywhere later, and a few invalid lines.

    Each order gets at most one ``order`` event (redelivered maybe): a *second*,
    different one is a producer error with its own test (test_rules.py).
    """
    pool = draw(st.lists(timestamps(), min_size=1, max_size=6))
    orders = draw(st.lists(st.sampled_from(ORDERS), min_size=1, max_size=5, unique=True))
    size = draw(st.integers(1, max_size))
    docs = [draw(event_dicts(pool, orders, unique_times)) for _ in range(size)]
    events: list[dict[str, Any]] = []
    ordered: set[tuple[str, str]] = set()
    for i, doc in enumerate(docs):
        if doc["type"] == "order":
            key = (doc["seller_id"], doc["order_id"])
            if key in ordered:
                continue
            ordered.add(key)
        doc["event_id"] = f"e{i}"
        events.append(doc)
    lines = [orjson.dumps(d) for d in events]
    # Redeliveries: copies of earlier events inserted after their original.
    for _ in range(draw(st.integers(0, 8))):
        src = draw(st.integers(0, len(lines) - 1))
        dst = draw(st.integers(src + 1, len(lines)))
        lines.insert(dst, lines[src])
    for _ in range(draw(st.integers(0, 3))):
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(INVALID_LINES)))
    return lines
