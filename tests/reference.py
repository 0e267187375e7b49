"""A plain, obviously-correct reference for the metrics contract (issues #2, #12).

No incremental state, no packing, no clever counting: keep every event, then
compute each rule for each order straight from its definition. Slow on purpose.
The property tests hold :class:`streams.engine.engine.Engine` equal to this.

Events are given in *processing order*; "latest" ties go to the one processed
later, and "first event with a given id wins" is decided by that order too.

Parameters come from the catalog's metrics (window, lag, response hours, target,
floors); the *definition* of a metric comes from its name for the metrics of issue
#12 (:data:`V11_DEFINITIONS`, :data:`RESPONSE_RATE`) and from its numerator and
denominator predicates for every other one (the six v1 metrics, custom ones). Only
attributes are read, so a stand-in with the same fields works as a metric.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any, Protocol

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

US_PER_HOUR = 3_600_000_000

V11_DEFINITIONS: dict[str, tuple[str, str]] = {
    "late_shipment_rate_30d": ("late_shipment", "order"),
    "on_time_delivery_rate": ("delivered_on_time", "delivery_due"),
    "return_rate": ("returned", "order"),
    "item_not_received_rate": ("item_not_received", "order"),
    "negative_feedback_rate": ("negative_feedback", "order"),
    "transaction_defect_rate": ("transaction_defect", "order"),
    "cases_closed_without_resolution_rate": ("claim_granted", "order"),
    "seller_cancel_rate": ("seller_cancellation", "order"),
}
"""Issue #12's order metrics by name: (numerator, denominator) of the per-order
predicates computed below."""

RESPONSE_RATE = "seller_response_rate"
"""Counted over buyer messages, not orders (see :func:`_responses`)."""


class MetricLike(Protocol):
    """What the reference reads of a metric (``lag_days`` and ``response_hours``
    through ``getattr``, defaulting to 0 and 48, until catalog.py has them)."""

    @property
    def name(self) -> str: ...

    @property
    def window_days(self) -> int: ...

    @property
    def numerator(self) -> str: ...

    @property
    def denominator(self) -> str: ...

    @property
    def target(self) -> float: ...

    @property
    def healthy(self) -> str: ...

    @property
    def min_orders(self) -> int: ...

    @property
    def min_count(self) -> int: ...

    @property
    def warning(self) -> float | None: ...


class CatalogLike(Protocol):
    @property
    def metrics(self) -> tuple[Any, ...]: ...


def lag_days(m: MetricLike) -> int:
    return int(getattr(m, "lag_days", 0))


def response_hours(m: MetricLike) -> int:
    return int(getattr(m, "response_hours", 48))


def in_window(m: MetricLike, today: int, day: int) -> bool:
    """A window of W days with lag L covers the days today-L-W+1 .. today-L."""
    age = today - day
    return lag_days(m) <= age < lag_days(m) + m.window_days


@dataclass
class _OrderEvents:
    order: Order | None = None
    events: list[tuple[int, Event]] = field(default_factory=list)  # (seq, event)


@dataclass(frozen=True)
class OrderFacts:
    """One order as of now: who, when, and every predicate from its definition.

    ``predicates`` is keyed by the reference's names (:data:`V11_DEFINITIONS`),
    plus ``on_time_delivery``, the catalog's spelling of ``delivered_on_time``."""

    seller_id: str
    order_id: str
    purchased_at: int  # us
    day: int  # UTC day of purchased_at
    predicates: dict[str, bool]
    delivered: bool  # some delivery at or before now


@dataclass(frozen=True)
class MessageFacts:
    """One buyer message needing a response, as of now (see :func:`_responses`)."""

    seller_id: str
    message_id: str
    sent_at: int  # us: occurred_at of its latest event, the deadline runs from it
    day: int  # UTC day of sent_at
    counted: bool  # response_due: answered, or its deadline passed
    on_time: bool  # answered by the deadline
    answered: bool  # some reply at or before now


@dataclass(frozen=True)
class _Facts:
    today: int
    orders: dict[str, list[OrderFacts]]  # per seller: orders within the horizon
    responses: dict[str, dict[str, list[MessageFacts]]]  # metric name -> seller -> msgs
    sellers: set[str]  # the sellers the report shows


def _facts(events: list[Event], now: int, metrics: tuple[MetricLike, ...]) -> _Facts:
    """Every order's and buyer message's facts as of ``now``, straight from the
    definitions; shared by :func:`reference_report` and :func:`reference_explain`."""
    today = now // US_PER_DAY
    horizon = max(m.window_days + lag_days(m) for m in metrics)

    # 1. Keep events that occurred at or before now; drop redeliveries. The engine
    #    scopes event_id to the order (or message) an event concerns.
    seen: set[tuple[str, str, str, str]] = set()
    kept: list[tuple[int, Event]] = []
    for seq, ev in enumerate(events):
        if to_us(ev.occurred_at) > now:
            continue
        if isinstance(ev, Message):
            key = (ev.seller_id, "message", ev.message_id, ev.event_id)
        else:
            key = (ev.seller_id, "order", ev.order_id, ev.event_id)
        if key in seen:
            continue
        seen.add(key)
        kept.append((seq, ev))

    # 2. Group by order; the first order event processed defines the order.
    orders: dict[tuple[str, str], _OrderEvents] = defaultdict(_OrderEvents)
    messages: dict[tuple[str, str], list[tuple[int, Message]]] = defaultdict(list)
    for seq, ev in kept:
        if isinstance(ev, Message):
            messages[(ev.seller_id, ev.message_id)].append((seq, ev))
            continue
        entry = orders[(ev.seller_id, ev.order_id)]
        if isinstance(ev, Order):
            if entry.order is None:
                entry.order = ev
            continue
        entry.events.append((seq, ev))

    # 3. A message counts for its order when its latest event (latest occurred_at,
    #    ties to the later processed) is a buyer's, needs a response, names an order.
    buyer_messages: dict[tuple[str, str], int] = defaultdict(int)
    for (seller, _mid), thread in messages.items():
        _, last = max(thread, key=lambda p: (to_us(p[1].occurred_at), p[0]))
        if last.sender == "buyer" and last.response_needed and last.order_id:
            buyer_messages[(seller, last.order_id)] += 1

    # 4. Per order, each predicate from its definition.
    per_order: dict[str, list[OrderFacts]] = defaultdict(list)
    for (seller, order_id), entry in orders.items():
        if entry.order is None:
            continue  # pending: never counts
        purchased_at = to_us(entry.order.occurred_at)
        purchase_day = purchased_at // US_PER_DAY
        if today - purchase_day >= horizon:
            continue
        ship_by = to_us(entry.order.ship_by)
        evs = entry.events

        def latest(
            kind: type, pred: object = None, _evs: list[tuple[int, Event]] = evs
        ) -> Event | None:
            cands = [(to_us(e.occurred_at), s, e) for s, e in _evs
                     if isinstance(e, kind) and (pred is None or pred(e))]  # type: ignore[operator]
            return max(cands, key=lambda c: (c[0], c[1]))[2] if cands else None

        fb = latest(Feedback)
        negative = isinstance(fb, Feedback) and fb.rating <= 2 and not fb.removed
        claims = {kind: latest(Claim, lambda e, k=kind: e.claim_type == k)
                  for kind in ("a_to_z", "chargeback", "item_not_received")}
        a_to_z = _status_in(claims["a_to_z"], "opened", "granted")
        chargeback = _status_in(claims["chargeback"], "opened", "granted")
        item_not_received = _status_in(claims["item_not_received"], "opened", "granted")
        claim_granted = any(_status_in(claim, "granted") for claim in claims.values())
        ships = [to_us(e.occurred_at) for _, e in evs if isinstance(e, Shipment)]
        first_ship = min(ships) if ships else None
        cancels = [e for _, e in evs if isinstance(e, Cancellation)]
        seller_cancels = [to_us(e.occurred_at) for e in cancels if e.initiated_by == "seller"]
        seller_cancel = bool(seller_cancels)
        pfc = seller_cancel and (first_ship is None or min(seller_cancels) < first_ship)
        if first_ship is not None:
            late = first_ship > ship_by
        else:
            late = ship_by < now and not cancels
        refunded = any(isinstance(e, Refund) for _, e in evs)
        buyer_message = buyer_messages.get((seller, order_id), 0) > 0
        shipped = first_ship is not None
        tracked = shipped and any(
            isinstance(e, Shipment) and e.tracking_id for _, e in evs
        )
        defect = negative or a_to_z or chargeback
        imperfect = defect or seller_cancel or late or refunded or buyer_message
        # On-time delivery (v1.1): tracked, never cancelled, and delivered (the
        # latest delivery is the delivery time) or its deliver_by passed.
        deliver_by = (to_us(entry.order.deliver_by)
                      if entry.order.deliver_by is not None else None)
        deliveries = [to_us(e.occurred_at) for _, e in evs if isinstance(e, Delivery)]
        delivered_at = max(deliveries) if deliveries else None
        delivery_due = (
            deliver_by is not None and tracked and not cancels
            and (delivered_at is not None or now > deliver_by)
        )
        delivered_on_time = (delivery_due and delivered_at is not None
                             and deliver_by is not None and delivered_at <= deliver_by)
        per_order[seller].append(
            OrderFacts(
                seller_id=seller,
                order_id=order_id,
                purchased_at=purchased_at,
                day=purchase_day,
                delivered=delivered_at is not None,
                predicates={
                    "order": True,
                    "perfect": not imperfect,
                    "negative_feedback": negative,
                    "a_to_z_claim": a_to_z,
                    "chargeback": chargeback,
                    "seller_cancellation": seller_cancel,
                    "pre_fulfillment_cancellation": pfc,
                    "late_shipment": late,
                    "refunded": refunded,
                    "buyer_message": buyer_message,
                    "defect": defect,
                    "shipped": shipped,
                    "valid_tracking": tracked,
                    # v1.1
                    "delivery_due": delivery_due,
                    "delivered_on_time": delivered_on_time,
                    "on_time_delivery": delivered_on_time,  # the catalog's name
                    "returned": any(isinstance(e, Return) for _, e in evs),
                    "item_not_received": item_not_received,
                    "claim_granted": claim_granted,
                    "transaction_defect": seller_cancel or claim_granted,
                },
            )
        )

    # 5. Buyer messages for the response rate, per seller.
    responses = {m.name: _responses(kept, now, response_hours(m))
                 for m in metrics if m.name == RESPONSE_RATE}
    sellers = set(per_order)
    for m in metrics:
        if m.name == RESPONSE_RATE:
            sellers |= {seller for seller, needing in responses[m.name].items()
                        if any(today - msg.day < horizon for msg in needing)}
    return _Facts(today=today, orders=per_order, responses=responses, sellers=sellers)


def _definition(m: MetricLike) -> tuple[str, str]:
    """(numerator, denominator) predicates the reference counts for an order metric:
    by name for issue #12's metrics, else the catalog's."""
    return V11_DEFINITIONS.get(m.name, (m.numerator, m.denominator))


def reference_report(
    events: list[Event], now: int, catalog: Catalog | CatalogLike | None = None
) -> dict[str, dict[str, dict[str, object]]]:
    """``{seller: {metric: {numerator, denominator, value, target, breached,
    status, window_days}}}`` exactly as ``popstream replay --format json`` prints it.

    A seller is reported while at least one of its orders is in reach of a window
    (purchased less than max(window_days + lag_days) days ago): one whose orders all
    expired is absent, like one with none. With ``seller_response_rate`` in the
    catalog, also while it has a buyer message needing a response as recent (sent
    less than that many days ago), even with no order at all."""
    catalog = catalog or default_catalog()
    metrics: tuple[MetricLike, ...] = tuple(catalog.metrics)
    facts = _facts(events, now, metrics)
    today = facts.today

    # 6. Windows: orders purchased (messages sent) on the W UTC days ending L days
    #    before today.
    report: dict[str, dict[str, dict[str, object]]] = {}
    for seller in sorted(facts.sellers):
        cells: dict[str, dict[str, object]] = {}
        for m in metrics:
            if m.name == RESPONSE_RATE:
                counted = [msg.on_time for msg in facts.responses[m.name].get(seller, [])
                           if msg.counted and in_window(m, today, msg.day)]
                num, den = sum(counted), len(counted)
            else:
                numerator, denominator = _definition(m)
                orders_in = [o.predicates for o in facts.orders.get(seller, [])
                             if in_window(m, today, o.day)]
                num = sum(1 for p in orders_in if p[numerator])
                den = sum(1 for p in orders_in if p[denominator])
            value = num / den if den else None
            breached, status = _judge(m, num, den)
            cells[m.name] = {
                "numerator": num,
                "denominator": den,
                "value": value,
                "target": m.target,
                "breached": breached,
                "status": status,
                "window_days": m.window_days,
            }
        report[seller] = cells
    return report


def _status_in(claim: Event | None, *statuses: str) -> bool:
    return isinstance(claim, Claim) and claim.status in statuses


def _responses(
    kept: Iterable[tuple[int, Event]], now: int, hours: int
) -> dict[str, list[MessageFacts]]:
    """Per seller, the facts of each buyer message that needs a response, straight
    from issue #12's definition.

    A buyer message is a (seller_id, message_id) whose latest event (ties to the
    later processed) is the buyer's with ``response_needed``; its day is the UTC day
    of that event and its deadline that event's ``occurred_at`` plus ``hours``.
    Every seller message event of the same seller whose ``in_reply_to`` is the
    message_id is a reply; the earliest decides (one stamped before the question
    is on time). It counts once answered (every kept event is at or before now) or
    once now is strictly past the deadline; on time when answered by the deadline.
    """
    threads: dict[tuple[str, str], list[tuple[int, Message]]] = defaultdict(list)
    replies: dict[tuple[str, str], list[int]] = defaultdict(list)
    for seq, ev in kept:
        if not isinstance(ev, Message):
            continue
        threads[(ev.seller_id, ev.message_id)].append((seq, ev))
        if ev.sender == "seller" and ev.in_reply_to is not None:
            replies[(ev.seller_id, ev.in_reply_to)].append(to_us(ev.occurred_at))
    out: dict[str, list[MessageFacts]] = defaultdict(list)
    for (seller, message_id), thread in threads.items():
        _, last = max(thread, key=lambda p: (to_us(p[1].occurred_at), p[0]))
        if last.sender != "buyer" or not last.response_needed:
            continue
        asked = to_us(last.occurred_at)
        deadline = asked + hours * US_PER_HOUR
        answers = replies.get((seller, message_id))
        first = min(answers) if answers else None
        counted = first is not None or now > deadline
        on_time = first is not None and first <= deadline
        out[seller].append(MessageFacts(
            seller_id=seller, message_id=message_id, sent_at=asked,
            day=asked // US_PER_DAY, counted=counted, on_time=on_time,
            answered=first is not None))
    return out


def _judge(m: MetricLike, num: int, den: int) -> tuple[bool | None, str]:
    """Breached and status, the slow and obvious way: Fractions of the decimals as
    written (issue #10's contract), written apart from the catalog's integer form."""
    from decimal import Decimal
    from fractions import Fraction

    if den == 0:
        return None, "insufficient_volume"
    value = Fraction(num, den)
    target = Fraction(Decimal(repr(m.target)))
    if m.warning is not None:
        warning = Fraction(Decimal(repr(m.warning)))
    elif m.healthy == "below":
        warning = target * 4 / 5
    else:
        warning = target + (1 - target) / 5
    if m.healthy == "below":
        breached, bad, warned = value >= target, num, value >= warning
    else:
        breached, bad, warned = value < target, den - num, value < warning
    if den < m.min_orders:
        return breached, "insufficient_volume"
    if breached and bad >= m.min_count:
        return breached, "breach"
    return breached, "warning" if warned else "healthy"


# --- issue #13: the orders behind a metric ------------------------------------------

IMPERFECTIONS: tuple[str, ...] = (
    "negative_feedback", "a_to_z_claim", "chargeback", "seller_cancellation",
    "late_shipment", "refunded", "buyer_message",
)
DEFECTS: tuple[str, ...] = ("negative_feedback", "a_to_z_claim", "chargeback")
TRANSACTION_DEFECTS: tuple[str, ...] = ("seller_cancellation", "claim_granted")

_CATALOG_SPELLING = {"delivered_on_time": "on_time_delivery"}


@dataclass(frozen=True)
class _Item:
    """An order (or a buyer message) as one metric sees it."""

    ident: str
    instant: int  # purchase instant (sent_at for a message), us
    day: int
    in_num: bool
    in_den: bool
    causes: list[str]  # why it counts against the metric (meaningful when it does)


def utc_text(us: int) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ``, with ``.ffffff`` before the Z only when the
    microseconds are not 0."""
    day, rest = divmod(us, US_PER_DAY)
    seconds, micros = divmod(rest, 1_000_000)
    hours, rest_s = divmod(seconds, 3600)
    minutes, secs = divmod(rest_s, 60)
    text = f"{date_text(day)}T{hours:02d}:{minutes:02d}:{secs:02d}"
    return text + (f".{micros:06d}Z" if micros else "Z")


def date_text(day: int) -> str:
    """``YYYY-MM-DD`` of a UTC day number (days since 1970-01-01)."""
    from datetime import date, timedelta

    d = date(1970, 1, 1) + timedelta(days=day)
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d}"


def _order_causes(pred: str, healthy: str, o: OrderFacts) -> list[str]:
    """Issue #13's causes, chosen by the numerator predicate (catalog spelling)."""
    p = o.predicates
    if healthy == "at_least" and pred == "perfect":
        return [c for c in IMPERFECTIONS if p[c]]
    if healthy == "below" and pred == "defect":
        return [c for c in DEFECTS if p[c]]
    if healthy == "below" and pred == "transaction_defect":
        return [c for c in TRANSACTION_DEFECTS if p[c]]
    if healthy == "at_least" and pred == "valid_tracking":
        return ["missing_tracking"]
    if healthy == "at_least" and pred == "on_time_delivery":
        return ["late_delivery"] if o.delivered else ["not_delivered"]
    return [pred] if healthy == "below" else ["not_" + pred]


def _items(m: MetricLike, facts: _Facts, seller: str) -> list[_Item]:
    """Every order (message) of the seller the reference holds, with what ``m``
    counts of it."""
    if m.name == RESPONSE_RATE:
        pred = "responded_on_time"
        out = []
        for msg in facts.responses[m.name].get(seller, []):
            if m.healthy == "at_least" and pred == "responded_on_time":
                causes = ["late_response"] if msg.answered else ["no_response"]
            else:
                causes = [pred] if m.healthy == "below" else ["not_" + pred]
            out.append(_Item(msg.message_id, msg.sent_at, msg.day,
                             msg.counted and msg.on_time, msg.counted, causes))
        return out
    numerator, denominator = _definition(m)
    pred = _CATALOG_SPELLING.get(numerator, numerator)
    return [_Item(o.order_id, o.purchased_at, o.day, o.predicates[numerator],
                  o.predicates[denominator], _order_causes(pred, m.healthy, o))
            for o in facts.orders.get(seller, [])]


def _against(m: MetricLike, item: _Item) -> bool:
    """Counts against ``m``: a ``below`` metric's numerator, an ``at_least``
    metric's denominator outside its numerator."""
    return item.in_num if m.healthy == "below" else item.in_den and not item.in_num


def _breached(m: MetricLike, n: int, d: int, target: Fraction) -> bool:
    """The exact comparison; no orders is not breached."""
    if d == 0:
        return False
    return Fraction(n, d) >= target if m.healthy == "below" else Fraction(n, d) < target


def _count(m: MetricLike, items: list[_Item], today: int) -> tuple[int, int]:
    inside = [i for i in items if in_window(m, today, i.day)]
    return sum(i.in_num for i in inside), sum(i.in_den for i in inside)


def reference_explain(
    events: list[Event],
    now: int,
    seller_id: str,
    catalog: Catalog | CatalogLike | None = None,
    metric: str | None = None,
) -> dict[str, object] | None:
    """Issue #13's explain document for one seller, without paging (every order;
    ``next_cursor`` always None), by brute force: headroom and orders_to_recover
    by trying k and m one by one, recovers_on by recomputing the metric day after
    day over the orders frozen as they are at ``now``.

    None when the seller is not in :func:`reference_report`; ``KeyError`` for a
    ``metric`` the catalog does not have."""
    catalog = catalog or default_catalog()
    metrics: tuple[MetricLike, ...] = tuple(catalog.metrics)
    chosen = [m for m in metrics if metric is None or m.name == metric]
    if not chosen:
        raise KeyError(metric)
    report = reference_report(events, now, catalog)
    if seller_id not in report:
        return None
    facts = _facts(events, now, metrics)
    today = facts.today
    docs: dict[str, object] = {}
    for m in chosen:
        cell = report[seller_id][m.name]
        lag, width = lag_days(m), m.window_days
        target = Fraction(Decimal(repr(m.target)))
        items = _items(m, facts, seller_id)
        n, d = _count(m, items, today)
        assert (n, d) == (cell["numerator"], cell["denominator"]), (m.name, n, d, cell)
        breached = cell["breached"]
        assert breached == (_breached(m, n, d, target) if d else None)

        headroom: int | None = None
        if d and not breached:
            k = 0
            if m.healthy == "below":
                while Fraction(n + k + 1, d) < target:
                    k += 1
            else:
                while Fraction(n - k - 1, d) >= target:
                    k += 1
            headroom = k

        to_recover: int | None = None
        recovers_on: str | None = None
        if breached:
            reachable = target > 0 if m.healthy == "below" else target < 1
            if reachable:
                more = 1
                if m.healthy == "below":
                    while not Fraction(n, d + more) < target:
                        more += 1
                else:
                    while not Fraction(n + more, d + more) >= target:
                        more += 1
                to_recover = more
            # Day by day until the window holds only days after today (empty).
            last_breached = today
            for t in range(today + 1, today + lag + width + 1):
                if _breached(m, *_count(m, items, t), target):
                    last_breached = t
            recovers_on = date_text(last_breached + 1)

        window = range(today - lag - width + 1, today - lag + 1)
        days = [{"date": date_text(day),
                 "denominator": sum(1 for i in items if i.day == day and i.in_den),
                 "bad": sum(1 for i in items if i.day == day and _against(m, i))}
                for day in window]
        bad = sorted((i for i in items if i.day in window and _against(m, i)),
                     key=lambda i: (i.instant, i.ident))
        id_key, at_key = (("message_id", "sent_at") if m.name == RESPONSE_RATE
                          else ("order_id", "purchased_at"))
        orders = [{id_key: i.ident, at_key: utc_text(i.instant), "causes": i.causes,
                   "leaves_window_on": date_text(i.day + lag + width)} for i in bad]
        docs[m.name] = {
            "numerator": n,
            "denominator": d,
            "value": cell["value"],
            "target": m.target,
            "breached": breached,
            "status": cell["status"],
            "window_days": width,
            "lag_days": lag,
            "headroom": headroom,
            "orders_to_recover": to_recover,
            "recovers_on": recovers_on,
            "days": days,
            "orders": orders,
            "next_cursor": None,
        }
    return {"as_of": utc_text(now), "seller_id": seller_id, "metrics": docs}
