"""Explain a seller's numbers: the orders behind each metric, what it would take to
stay healthy or get back, and when the breach ends by itself (issue #13).

A seller told "your Order Defect Rate is 1.4 %" asks which orders, when they stop
counting, and what it takes to recover. The engine keeps every order of the window
with its facts, so all three have exact answers: this module computes them from the
seller's records, as of the engine's clock. Pure: no I/O; the worker's
``/api/sellers/{id}/explain``, the seller pages and ``popstream replay --explain``
all print what :func:`explain_seller` returns.

Exact arithmetic throughout: counts are integers and targets the decimals they are
written as (:attr:`Metric.exact_target`), so the answers hold at the boundaries
where a float comparison would be off by one order.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from streams.engine import orders as rec
from streams.engine.catalog import Metric
from streams.engine.events import US_PER_DAY
from streams.engine.rules import (
    DAY,
    FIRST_REPLY,
    FLAGS,
    HAS_ORDER,
    LAST_DELIVERY,
    NO_LATEST,
    NO_TIME,
    PREDICATES,
    PURCHASED_AT,
    RESPONSE_PREDICATES,
    RESPONSE_REC,
    evaluate,
)
from streams.errors import PopstreamError

if TYPE_CHECKING:
    from streams.engine.engine import Engine

MAX_LIMIT: Final = 10_000
_EPOCH_DATE: Final = dt.date(1970, 1, 1)
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

# Causes by the metric's numerator predicate: the ones listed, in this order, that
# hold for an order counting against the metric. An ``at_least`` Perfect Order
# metric lists the imperfections; a ``below`` metric of a composite predicate its
# parts; any other numerator names itself (see causes()).
_IMPERFECTIONS: Final = ("negative_feedback", "a_to_z_claim", "chargeback",
                         "seller_cancellation", "late_shipment", "refunded", "buyer_message")
_BELOW_CAUSES: Final[dict[str, tuple[str, ...]]] = {
    "defect": ("negative_feedback", "a_to_z_claim", "chargeback"),
    "transaction_defect": ("seller_cancellation", "claim_granted"),
}


class BadCursor(PopstreamError):
    """A ``cursor`` that is not one this module handed out."""


@dataclass(frozen=True, slots=True)
class Row:
    """One order (or, for a response metric, one buyer message) of a seller, frozen
    as it is at the engine's clock."""

    key: str  # order id, or message id
    at: int  # purchase instant (a message: the instant its deadline runs from), us
    day: int  # UTC day of ``at``
    mask: int  # predicates that hold (streams.engine.rules)
    message: bool  # a buyer message awaiting a response, not an order
    settled: bool  # delivered (an order) / answered (a message)


def rows_of(engine: Engine, seller_id: str) -> list[Row]:
    """Every order and buyer message of the seller that counts anywhere, sorted by
    instant then id (code-point order). Pending orders count nowhere: left out."""
    seller = engine.sellers.get(seller_id)
    if seller is None:
        return []
    now = engine.now
    out: list[Row] = []
    for key, record in seller.orders.items():
        fields, _ = rec.unpack(record)
        flags = fields[FLAGS]
        if flags & HAS_ORDER:
            out.append(Row(key.decode(), fields[PURCHASED_AT], fields[DAY],
                           evaluate(fields, now), False, fields[LAST_DELIVERY] != NO_LATEST))
        elif flags & RESPONSE_REC:
            out.append(Row(key[1:].decode(), fields[PURCHASED_AT], fields[DAY],
                           evaluate(fields, now), True, fields[FIRST_REPLY] != NO_TIME))
    out.sort(key=lambda r: (r.at, r.key))
    return out


def rfc3339(us: int) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ``, with ``.ffffff`` before the ``Z`` when the
    microseconds are not 0."""
    t = _EPOCH + dt.timedelta(microseconds=us)
    frac = f".{t.microsecond:06d}" if t.microsecond else ""
    return (f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:"
            f"{t.second:02d}{frac}Z")


def iso_date(day: int) -> str:
    """The UTC date of a day number (days since 1970-01-01)."""
    return (_EPOCH_DATE + dt.timedelta(days=day)).isoformat()


def causes(metric: Metric, row: Row) -> list[str]:
    """Why a row counts against ``metric`` (see issue #13 and docs/explain.md)."""
    numerator = metric.numerator
    if metric.healthy == "below":
        if numerator in _BELOW_CAUSES:
            return [name for name in _BELOW_CAUSES[numerator] if row.mask & PREDICATES[name]]
        return [numerator]
    if numerator == "perfect":
        return [name for name in _IMPERFECTIONS if row.mask & PREDICATES[name]]
    if numerator == "valid_tracking":
        return ["missing_tracking"]
    if numerator == "on_time_delivery":
        return ["late_delivery" if row.settled else "not_delivered"]
    if numerator == "responded_on_time":
        return ["late_response" if row.settled else "no_response"]
    return ["not_" + numerator]


def headroom(metric: Metric, n: int, d: int) -> int | None:
    """How many more orders could turn bad today without a breach (None when
    breached or without orders): ``below``, the largest k >= 0 with (n+k)/d <
    target; ``at_least``, the largest k >= 0 with (n-k)/d >= target."""
    if d <= 0 or metric.breached(n, d):
        return None
    target = metric.exact_target
    p, q = target.numerator, target.denominator
    if metric.healthy == "below":
        return (p * d - 1) // q - n  # (n+k)q < pd  <=>  n+k <= (pd-1)//q
    return n - (-(-p * d // q))  # (n-k)q >= pd  <=>  n-k >= ceil(pd/q)


def orders_to_recover(metric: Metric, n: int, d: int) -> int | None:
    """The fewest good orders whose arrival ends a breach (None unless breached, or
    when none can): ``below``, the smallest m >= 1 with n/(d+m) < target;
    ``at_least``, the smallest m >= 1 with (n+m)/(d+m) >= target."""
    if not metric.breached(n, d):
        return None
    target = metric.exact_target
    p, q = target.numerator, target.denominator
    if metric.healthy == "below":
        if p == 0:
            return None  # nothing is below a target of 0
        return max(1, (n * q - p * d) // p + 1)  # pm > nq - pd
    if p == q:
        return None  # a breached target of 100 % stays breached
    need = p * d - n * q  # m (q - p) >= pd - nq
    return max(1, -(-need // (q - p)))


def recovers_on(metric: Metric, today: int, counts: dict[int, tuple[int, int]]) -> int | None:
    """The first day after ``today`` from which ``metric`` is never breached again,
    with every order frozen (``counts``: day -> (numerator, denominator), all the
    seller holds) and only the window moving; None unless breached today. Orders in
    a lagged window's last ``lag`` days enter later windows as they would."""
    window, lag = metric.window
    if not _breached_on(metric, today, counts, window, lag):
        return None
    last_bad = today
    # After today + lag + window every day the seller holds has left the window.
    for t in range(today + 1, today + lag + window + 1):
        if _breached_on(metric, t, counts, window, lag):
            last_bad = t
    return last_bad + 1


def _breached_on(metric: Metric, t: int, counts: dict[int, tuple[int, int]],
                 window: int, lag: int) -> bool:
    n = d = 0
    for day in range(t - lag - window + 1, t - lag + 1):
        got = counts.get(day)
        if got is not None:
            n += got[0]
            d += got[1]
    return bool(metric.breached(n, d))


def encode_cursor(row: Row) -> str:
    raw = f"{row.at}:{row.key}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, key = raw.split(":", 1)
        return int(at), key
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadCursor(f"cursor {cursor[:80]!r} is not one this API handed out") from None


def explain_metric(metric: Metric, today: int, rows: list[Row], *, limit: int | None = None,
                   after: tuple[int, str] | None = None) -> dict[str, Any]:
    """The explain document of one metric over the seller's rows (see module doc)."""
    window, lag = metric.window
    first, last = today - lag - window + 1, today - lag
    messages = metric.denominator in RESPONSE_PREDICATES
    num_bit, den_bit = PREDICATES[metric.numerator], PREDICATES[metric.denominator]
    below = metric.healthy == "below"
    n = d = 0
    counts: dict[int, tuple[int, int]] = {}
    per_day_bad: dict[int, int] = {}
    against: list[Row] = []
    for row in rows:
        if row.message is not messages or not row.mask & den_bit:
            continue
        good = bool(row.mask & num_bit)
        got = counts.get(row.day, (0, 0))
        counts[row.day] = (got[0] + good, got[1] + 1)
        if not first <= row.day <= last:
            continue
        d += 1
        n += good
        if good == below:  # below: the numerator's rows; at_least: the others
            against.append(row)
            per_day_bad[row.day] = per_day_bad.get(row.day, 0) + 1
    breached = metric.breached(n, d)
    days = [{"date": iso_date(day), "denominator": counts.get(day, (0, 0))[1],
             "bad": per_day_bad.get(day, 0)} for day in range(first, last + 1)]
    listed = against
    if after is not None:
        listed = [r for r in against if (r.at, r.key) > after]
    next_cursor = None
    if limit is not None and len(listed) > limit:
        listed = listed[:limit]
        next_cursor = encode_cursor(listed[-1])
    recovery = recovers_on(metric, today, counts) if breached else None
    return {
        "numerator": n,
        "denominator": d,
        "value": n / d if d else None,
        "target": metric.target,
        "breached": breached,
        "status": metric.status(n, d),
        "window_days": window,
        "lag_days": lag,
        "headroom": headroom(metric, n, d),
        "orders_to_recover": orders_to_recover(metric, n, d),
        "recovers_on": None if recovery is None else iso_date(recovery),
        "days": days,
        "orders": [_entry(metric, row, lag + window) for row in listed],
        "next_cursor": next_cursor,
    }


def _entry(metric: Metric, row: Row, leaves_after: int) -> dict[str, Any]:
    if row.message:
        return {"message_id": row.key, "sent_at": rfc3339(row.at),
                "causes": causes(metric, row), "leaves_window_on": iso_date(row.day + leaves_after)}
    return {"order_id": row.key, "purchased_at": rfc3339(row.at),
            "causes": causes(metric, row), "leaves_window_on": iso_date(row.day + leaves_after)}


def explain_seller(engine: Engine, seller_id: str, *, metric: str | None = None,
                   limit: int | None = None, cursor: str | None = None
                   ) -> dict[str, Any] | None:
    """The explain document of one seller as of the engine's clock, or None for a
    seller with no order (or message) in any window: what the report leaves out.

    ``metric`` keeps one metric (a name of the catalog: the caller checks);
    ``limit``/``cursor`` page each metric's ``orders``; every number is over all."""
    seller = engine.sellers.get(seller_id)
    if seller is None or not seller.sums[-1]:
        return None
    if limit is not None and not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be 1..{MAX_LIMIT}, got {limit}")
    after = None if cursor is None else decode_cursor(cursor)
    rows = rows_of(engine, seller_id)
    today = engine.now // US_PER_DAY
    metrics = [m for m in engine.catalog.metrics if metric is None or m.name == metric]
    return {
        "as_of": rfc3339(engine.now),
        "seller_id": seller_id,
        "metrics": {m.name: explain_metric(m, today, rows, limit=limit, after=after)
                    for m in metrics},
    }
