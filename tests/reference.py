"""A plain, obviously-correct reference for the metrics contract (issue #2).

No incremental state, no packing, no clever counting: keep every event, then
compute each rule for each order straight from its definition. Slow on purpose.
The property tests hold :class:`streams.engine.engine.Engine` equal to this.

Events are given in *processing order*; "latest" ties go to the one processed
later, and "first event with a given id wins" is decided by that order too.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from streams.engine.catalog import Catalog, Metric, default_catalog
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
    to_us,
)


@dataclass
class _OrderEvents:
    order: Order | None = None
    events: list[tuple[int, Event]] = field(default_factory=list)  # (seq, event)


def reference_report(
    events: list[Event], now: int, catalog: Catalog | None = None
) -> dict[str, dict[str, dict[str, object]]]:
    """``{seller: {metric: {numerator, denominator, value, target, breached,
    window_days}}}`` exactly as ``popstream replay --format json`` prints it.

    A seller is reported while at least one of its orders is in a window (the
    longest): one whose orders all expired is absent, like one with none."""
    catalog = catalog or default_catalog()
    today = now // US_PER_DAY
    horizon = catalog.horizon_days

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
    per_order: dict[str, list[tuple[int, dict[str, bool]]]] = defaultdict(list)
    for (seller, order_id), entry in orders.items():
        if entry.order is None:
            continue  # pending: never counts
        purchase_day = to_us(entry.order.occurred_at) // US_PER_DAY
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
        atoz = latest(Claim, lambda e: e.claim_type == "a_to_z")
        cb = latest(Claim, lambda e: e.claim_type == "chargeback")
        a_to_z = isinstance(atoz, Claim) and atoz.status in ("opened", "granted")
        chargeback = isinstance(cb, Claim) and cb.status in ("opened", "granted")
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
        per_order[seller].append(
            (
                purchase_day,
                {
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
                },
            )
        )

    # 5. Windows: orders purchased on the N UTC days ending with today.
    report: dict[str, dict[str, dict[str, object]]] = {}
    for seller in sorted(per_order):
        metrics: dict[str, dict[str, object]] = {}
        for m in catalog.metrics:
            in_window = [p for d, p in per_order[seller] if today - d < m.window_days]
            num = sum(1 for p in in_window if p[m.numerator])
            den = sum(1 for p in in_window if p[m.denominator])
            value = num / den if den else None
            breached, status = _judge(m, num, den)
            metrics[m.name] = {
                "numerator": num,
                "denominator": den,
                "value": value,
                "target": m.target,
                "breached": breached,
                "status": status,
                "window_days": m.window_days,
            }
        report[seller] = metrics
    return report



def _judge(m: Metric, num: int, den: int) -> tuple[bool | None, str]:
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
