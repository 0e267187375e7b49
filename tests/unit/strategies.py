"""Hypothesis strategies for small, collision-heavy event logs.

Few sellers, few orders and messages, timestamps drawn near every edge the rules
care about (window boundaries, UTC midnight, ``ship_by`` exactly, ``now`` exactly,
just after ``now``), so that a few dozen events exercise most rules at once.

``v11=True`` adds contract v1.1 (issue #12): deliveries, returns,
``item_not_received`` claims, orders with ``deliver_by``, and seller replies whose
``in_reply_to`` names a buyer message (or nothing); deliveries and replies are
often moved onto their deadline (``deliver_by``, the question plus 24 or 48 hours)
or a microsecond either side. Off by default, so v1 callers draw what they did.
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
REPLIES = ("r1", "r2")
NOWHERE = "m9"  # an in_reply_to that names no message

_US = dt.timedelta(microseconds=1)
_EDGES = (-_US, dt.timedelta(0), dt.timedelta(0), _US)
_DELIVER_BY_DELAYS = (dt.timedelta(0), _US, dt.timedelta(days=1), dt.timedelta(days=2),
                      dt.timedelta(days=3), dt.timedelta(days=7))
_RESPONSE_HOURS = (24, 48)

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
    v11: bool = False,
) -> dict[str, Any]:
    """One event as a JSON-ready dict (``event_id`` filled in later).

    Times come from a small per-log ``pool`` most of the time, so that "latest
    wins" ties (same order, same instant) are common.
    """
    kinds = ["order", "order", "cancellation", "shipment", "shipment", "refund",
             "feedback", "feedback", "claim", "claim", "message", "message"]
    if v11:
        kinds += ["delivery", "delivery", "return", "message"]
    kind = draw(st.sampled_from(kinds))
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
        if v11:
            promise = draw(st.sampled_from(["absent", "null", "pool", "after", "after"]))
            if promise == "null":
                doc["deliver_by"] = None
            elif promise == "pool":
                doc["deliver_by"] = _fmt(draw(st.sampled_from(pool)), "Z")
            elif promise == "after":
                delay = draw(st.sampled_from(_DELIVER_BY_DELAYS))
                doc["deliver_by"] = _fmt(at + delay, draw(st.sampled_from(_OFFSETS)))
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
        claim_types = ["a_to_z", "chargeback"] + (["item_not_received"] if v11 else [])
        doc["claim_type"] = draw(st.sampled_from(claim_types))
        status = draw(st.sampled_from(["opened", "granted", "denied", "withdrawn", None]))
        if status is not None:
            doc["status"] = status
    elif kind == "delivery":
        pass
    elif kind == "return":
        reason = draw(st.sampled_from(["damaged", None, "absent"]))
        if reason != "absent":
            doc["reason"] = reason
    else:
        doc["message_id"] = draw(st.sampled_from(MESSAGES))
        doc["sender"] = draw(st.sampled_from(["buyer", "buyer", "seller"]))
        if draw(st.booleans()):
            doc["response_needed"] = draw(st.booleans())
        if draw(st.integers(0, 4)):
            doc["order_id"] = draw(st.sampled_from(orders))
        if v11 and doc["sender"] == "seller":
            doc["message_id"] = draw(st.sampled_from(MESSAGES + REPLIES))
            target = draw(st.sampled_from([*MESSAGES, *MESSAGES, NOWHERE, None, "absent"]))
            if target != "absent":
                doc["in_reply_to"] = target
        elif v11 and not draw(st.integers(0, 9)):
            doc["in_reply_to"] = draw(st.sampled_from(MESSAGES))  # means nothing on a buyer's
    return doc


def _parse(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


@st.composite
def _near_deadlines(draw: st.DrawFn, docs: list[dict[str, Any]]) -> None:
    """Move some deliveries onto their order's ``deliver_by`` and some replies onto
    their question's deadline (24 or 48 hours), or a microsecond either side."""
    promised: dict[tuple[str, str], str | None] = {}
    for d in docs:  # the first order event of an order is the one logs() keeps
        if d["type"] == "order":
            promised.setdefault((d["seller_id"], d["order_id"]), d.get("deliver_by"))
    asked: dict[tuple[str, str], list[str]] = {}
    for d in docs:
        if d["type"] == "message" and d["sender"] == "buyer":
            asked.setdefault((d["seller_id"], d["message_id"]), []).append(d["occurred_at"])
    for d in docs:
        if d["type"] == "delivery" and draw(st.booleans()):
            due = promised.get((d["seller_id"], d["order_id"]))
            if due is not None:
                d["occurred_at"] = _fmt(_parse(due) + draw(st.sampled_from(_EDGES)), "Z")
        elif d["type"] == "message" and d.get("in_reply_to") and draw(st.booleans()):
            times = asked.get((d["seller_id"], d["in_reply_to"]))
            if d["sender"] == "seller" and times:
                hours = dt.timedelta(hours=draw(st.sampled_from(_RESPONSE_HOURS)))
                at = _parse(draw(st.sampled_from(times))) + hours + draw(st.sampled_from(_EDGES))
                d["occurred_at"] = _fmt(at, draw(st.sampled_from(_OFFSETS)))


@st.composite
def _stories(draw: st.DrawFn, pool: list[dt.datetime], orders: list[str]) -> list[dict[str, Any]]:
    """Whole v1.1 stories, so the rare rates get numerators too: an order with a
    promise, a tracked shipment and a delivery around the promise (maybe a
    cancellation, maybe a second package); a buyer question and a reply around its
    48-hour deadline (maybe none, maybe to another seller's question)."""
    out: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(0, 3))):
        seller, order = draw(st.sampled_from(SELLERS)), draw(st.sampled_from(orders))
        bought = draw(st.sampled_from(pool))
        promise = bought + draw(st.sampled_from(_DELIVER_BY_DELAYS))
        base = {"seller_id": seller, "order_id": order}
        out.append({**base, "type": "order", "occurred_at": _fmt(bought, "Z"),
                    "ship_by": _fmt(bought + dt.timedelta(days=1), "Z"),
                    "deliver_by": _fmt(promise, draw(st.sampled_from(_OFFSETS)))})
        out.append({**base, "type": "shipment", "occurred_at": _fmt(bought, "Z"),
                    "tracking_id": draw(st.sampled_from(["1Z", "1Z", ""]))})
        for _ in range(draw(st.integers(0, 2))):
            edge = draw(st.sampled_from((*_EDGES, dt.timedelta(days=-1), dt.timedelta(days=2))))
            out.append({**base, "type": "delivery", "occurred_at": _fmt(promise + edge, "Z")})
        if draw(st.integers(0, 4)) == 0:
            out.append({**base, "type": "cancellation", "occurred_at": _fmt(bought, "Z"),
                        "initiated_by": draw(st.sampled_from(["seller", "buyer"]))})
    for n in range(draw(st.integers(0, 3))):
        seller = draw(st.sampled_from(SELLERS))
        question = draw(st.sampled_from(MESSAGES))
        asked = draw(st.sampled_from(pool))
        out.append({"type": "message", "seller_id": seller, "message_id": question,
                    "sender": "buyer", "occurred_at": _fmt(asked, "Z"),
                    "response_needed": draw(st.sampled_from([True, True, True, False]))})
        if draw(st.integers(0, 3)):
            edge = draw(st.sampled_from((*_EDGES, -dt.timedelta(hours=47))))
            out.append({"type": "message", "seller_id": draw(st.sampled_from(
                            [seller, seller, seller, "s2" if seller == "s1" else "s1"])),
                        "message_id": f"q{n}", "sender": "seller", "in_reply_to": question,
                        "occurred_at": _fmt(asked + dt.timedelta(hours=48) + edge, "Z")})
    return out


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
def logs(
    draw: st.DrawFn, unique_times: bool = False, max_size: int = 40, v11: bool = False
) -> list[bytes]:
    """A JSON Lines log in processing order: distinct events, redeliveries of some
    of them (same ``event_id``) anywhere later, and a few invalid lines.

    Each order gets at most one ``order`` event (redelivered maybe): a *second*,
    different one is a producer error with its own test (test_rules.py).
    ``v11``: with contract v1.1 events too (see the module docstring); with
    ``unique_times`` nothing is moved onto a deadline (that would make ties).
    """
    pool = draw(st.lists(timestamps(), min_size=1, max_size=6))
    orders = draw(st.lists(st.sampled_from(ORDERS), min_size=1, max_size=5, unique=True))
    size = draw(st.integers(1, max_size))
    docs = [draw(event_dicts(pool, orders, unique_times, v11)) for _ in range(size)]
    if v11 and not unique_times:
        draw(_near_deadlines(docs))
        for story_doc in draw(_stories(pool, orders)):
            docs.insert(draw(st.integers(0, len(docs))), story_doc)
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
