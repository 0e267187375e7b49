"""The reference's explain document (issue #13), one rule per test, on hand-built logs.

Every expected number is worked out in a comment from /work/spec13.md's contract:
headroom and orders_to_recover from their formulas with the exact target,
recovers_on from the frozen orders day by day, causes by numerator predicate.

The clock is 2024-06-15T12:00:00Z unless a test says otherwise; D is its UTC day,
and ``D-9`` is 2024-06-06.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from streams.engine.catalog import Catalog, Metric, default_catalog, profile_catalog
from streams.engine.events import decode_event, parse_timestamp
from tests.reference import date_text, reference_explain, reference_report, utc_text
from tests.unit.builders import ev, order

pytestmark = pytest.mark.unit

NOW = "2024-06-15T12:00:00Z"
D = dt.date(2024, 6, 15)


def day(offset: int) -> str:
    """``YYYY-MM-DD`` of D + offset."""
    return (D + dt.timedelta(days=offset)).isoformat()


def bought(oid: str, offset: int, at: str = "10:00:00", seller: str = "s1",
           **extra: Any) -> list[bytes]:
    """An order bought on D+offset at ``at``, ship_by 23:00 that day, shipped with a
    tracking id at 20:00 (before ship_by): perfect, tracked, not late."""
    d = day(offset)
    return [order(f"{d}T{at}Z", f"{d}T23:00:00Z", order=oid, seller=seller, **extra),
            ev("shipment", f"{d}T20:00:00Z", order=oid, seller=seller, tracking_id="1Z")]


def refunded(oid: str, offset: int, at: str = "10:00:00") -> list[bytes]:
    return [*bought(oid, offset, at), ev("refund", f"{day(offset)}T21:00:00Z", order=oid)]


def many(prefix: str, count: int, offset: int, kind: Any = bought) -> list[bytes]:
    lines: list[bytes] = []
    for i in range(count):
        lines += kind(f"{prefix}{i:03d}", offset)
    return lines


def rate(name: str, numerator: str, denominator: str, target: float, healthy: str,
         window: int = 60, **kw: Any) -> Metric:
    """A catalog metric without floors unless given."""
    kw.setdefault("min_orders", 0)
    kw.setdefault("min_count", 0)
    return Metric(name, window, numerator, denominator, target, healthy,  # type: ignore[arg-type]
                  **kw)


def refund_rate(target: float, window: int = 60, **kw: Any) -> Metric:
    return rate("refund_rate", "refunded", "order", target, "below", window, **kw)


def explain(lines: list[bytes], *metrics: Metric, catalog: Catalog | None = None,
            now: str = NOW, seller: str = "s1", metric: str | None = None
            ) -> dict[str, Any] | None:
    cat = catalog or (Catalog(metrics) if metrics else default_catalog())
    return reference_explain([decode_event(x) for x in lines], parse_timestamp(now),
                             seller, cat, metric)


def doc(lines: list[bytes], m: Metric, now: str = NOW) -> dict[str, Any]:
    full = explain(lines, m, now=now)
    assert full is not None
    out: dict[str, Any] = full["metrics"][m.name]
    return out


def numbers(d: dict[str, Any]) -> tuple[Any, ...]:
    return (d["numerator"], d["denominator"], d["breached"], d["headroom"],
            d["orders_to_recover"], d["recovers_on"])


# --- formatting -------------------------------------------------------------------


def test_timestamps_carry_microseconds_only_when_not_zero() -> None:
    us = parse_timestamp("2024-06-15T12:00:00Z")
    assert utc_text(us) == "2024-06-15T12:00:00Z"
    assert utc_text(us + 1) == "2024-06-15T12:00:00.000001Z"
    assert utc_text(us + 250_000) == "2024-06-15T12:00:00.250000Z"
    assert utc_text(0) == "1970-01-01T00:00:00Z"
    assert utc_text(-1) == "1969-12-31T23:59:59.999999Z"
    assert date_text(0) == "1970-01-01"
    assert date_text(us // 86_400_000_000) == "2024-06-15"


def test_as_of_and_purchased_at_in_utc_with_z() -> None:
    # Bought at 10:00+02:00 = 08:00:00.000007Z; the clock has microseconds too.
    lines = [order("2024-06-14T10:00:00.000007+02:00", "2024-06-14T23:00:00Z"),
             ev("refund", "2024-06-14T21:00:00Z")]
    full = explain(lines, refund_rate(0.5), now="2024-06-15T12:00:00.000001Z")
    assert full is not None
    assert full["as_of"] == "2024-06-15T12:00:00.000001Z"
    assert full["seller_id"] == "s1"
    [entry] = full["metrics"]["refund_rate"]["orders"]
    assert entry == {"order_id": "o1", "purchased_at": "2024-06-14T08:00:00.000007Z",
                     "causes": ["refunded"], "leaves_window_on": "2024-08-13"}
    full = explain(lines, refund_rate(0.5))
    assert full is not None
    assert full["as_of"] == "2024-06-15T12:00:00Z"


# --- headroom ---------------------------------------------------------------------


def test_headroom_below_at_the_exact_boundary() -> None:
    m = refund_rate(0.01)
    # d=100, n=0: (0+1)/100 = 0.01 is not < 0.01, so k=0 is the largest: 0.
    assert numbers(doc(many("g", 100, -1), m)) == (0, 100, False, 0, None, None)
    # d=200, n=0: 1/200 < 0.01, 2/200 is not: 1.
    assert numbers(doc(many("g", 200, -1), m)) == (0, 200, False, 1, None, None)
    # d=200, n=1: 1/200 < 0.01 (not breached), 2/200 is not: 0.
    lines = [*many("g", 199, -1), *refunded("r", -1)]
    assert numbers(doc(lines, m)) == (1, 200, False, 0, None, None)
    # d=250, n=0: 2/250 < 0.01, 3/250 is not: 2.
    assert doc(many("g", 250, -1), m)["headroom"] == 2


def test_headroom_at_least_at_the_exact_boundary() -> None:
    m = rate("valid_tracking_rate", "valid_tracking", "shipped", 0.95, "at_least", 30)

    def untracked(oid: str, offset: int) -> list[bytes]:
        d = day(offset)
        return [order(f"{d}T10:00:00Z", f"{d}T23:00:00Z", order=oid),
                ev("shipment", f"{d}T20:00:00Z", order=oid)]

    # n=20, d=20: (20-1)/20 = 0.95 >= 0.95, (20-2)/20 is not: 1.
    assert numbers(doc(many("t", 20, -2), m)) == (20, 20, False, 1, None, None)
    # n=19, d=20: 19/20 = 0.95 exactly, not breached; 18/20 is below: 0.
    lines = [*many("t", 19, -2), *untracked("u", -2)]
    assert numbers(doc(lines, m)) == (19, 20, False, 0, None, None)
    # n=40, d=40: 38/40 = 0.95 is the last: 2.
    assert doc(many("t", 40, -2), m)["headroom"] == 2


def test_headroom_is_null_without_orders_in_the_window() -> None:
    # Only orders bought today, unshipped: none shipped, so valid tracking is 0/0;
    # every derived number is null and the 30 days are all zero.
    m = rate("valid_tracking_rate", "valid_tracking", "shipped", 0.95, "at_least", 30)
    d = doc([order(f"{day(0)}T10:00:00Z", f"{day(0)}T23:00:00Z")], m)
    assert d["value"] is None
    assert d["status"] == "insufficient_volume"
    assert numbers(d) == (0, 0, None, None, None, None)
    assert d["orders"] == []
    assert len(d["days"]) == 30
    assert all(x["denominator"] == 0 and x["bad"] == 0 for x in d["days"])


# --- orders_to_recover --------------------------------------------------------------


def test_orders_to_recover_below() -> None:
    m = refund_rate(0.01)
    # n=1, d=100: 1/100 = 0.01 is breached (below at its target); 1/101 < 0.01: 1.
    d = doc([*many("g", 99, -1), *refunded("r", -1)], m)
    assert (d["breached"], d["headroom"], d["orders_to_recover"]) == (True, None, 1)
    # n=2, d=100: 2/(100+m) < 1/100 iff m > 100: 101.
    d = doc([*many("g", 98, -1), *refunded("r1", -1), *refunded("r2", -1)], m)
    assert (d["breached"], d["orders_to_recover"]) == (True, 101)


def test_orders_to_recover_at_least() -> None:
    m = rate("valid_tracking_rate", "valid_tracking", "shipped", 0.95, "at_least", 30)

    def untracked(oid: str, offset: int) -> list[bytes]:
        d = day(offset)
        return [order(f"{d}T10:00:00Z", f"{d}T23:00:00Z", order=oid),
                ev("shipment", f"{d}T20:00:00Z", order=oid, tracking_id="")]

    # n=18, d=20: (18+m)/(20+m) >= 19/20 iff 20(18+m) >= 19(20+m) iff m >= 20: 20.
    d = doc([*many("t", 18, -2), *untracked("u1", -2), *untracked("u2", -2)], m)
    assert numbers(d)[:5] == (18, 20, True, None, 20)
    # n=0, d=1: m/(1+m) >= 0.95 iff m >= 19: 19.
    assert doc(untracked("u", -2), m)["orders_to_recover"] == 19


def test_orders_to_recover_is_null_when_no_arrival_can_recover() -> None:
    # A below target of 0: 1/(1+m) is never < 0. An at_least target of 1: (0+m)/(1+m)
    # never reaches 1. Both breached, so recovers_on is still given: the bad order
    # leaves the 60-day window on D-1+60 = 2024-08-13.
    zero = refund_rate(0.0)
    d = doc(refunded("r", -1), zero)
    assert (d["breached"], d["orders_to_recover"], d["recovers_on"]) == (True, None, "2024-08-13")
    one = rate("perfect_order_percentage", "perfect", "order", 1.0, "at_least")
    d = doc(refunded("r", -1), one)
    assert (d["breached"], d["orders_to_recover"], d["recovers_on"]) == (True, None, "2024-08-13")


def test_floors_do_not_enter_the_numbers_but_status_is_the_reports() -> None:
    # eBay's cases metric: 0.003, min_orders 30, min_count 3. 1 granted claim in 10
    # orders: breached (1/10 >= 0.003) though the status is insufficient_volume;
    # 1/(10+m) < 3/1000 iff 10+m > 333.3: m = 324.
    m = profile_catalog("ebay").by_name("cases_closed_without_resolution_rate")
    lines = [*many("g", 9, -5),
             *bought("c", -5), ev("claim", f"{day(-4)}T10:00:00Z", order="c",
                                  claim_type="a_to_z", status="granted")]
    d = doc(lines, m)
    assert (d["breached"], d["status"], d["orders_to_recover"]) == (
        True, "insufficient_volume", 324)
    assert d["value"] == 0.1
    assert d["target"] == 0.003
    assert (d["window_days"], d["lag_days"]) == (90, 0)
    cell = reference_report([decode_event(x) for x in lines], parse_timestamp(NOW),
                            Catalog((m,)))["s1"][m.name]
    assert {k: d[k] for k in cell} == cell


# --- recovers_on ----------------------------------------------------------------------


def relapse_log() -> list[bytes]:
    """10-day refund rate, target 0.25. Bad on D-9 and D-5, 3 good on D-8, 1 good on
    D-1."""
    return [*refunded("bad1", -9), *many("g", 3, -8), *refunded("bad2", -5),
            *bought("late_good", -1)]


def test_recovers_on_skips_a_day_of_health_that_relapses() -> None:
    # Window of day t: t-9 .. t. D: n=2, d=6, 1/3 >= 1/4, breached.
    # D+1 (06-16): bad1 gone, n=1, d=5: 0.2, healthy;
    # D+2 (06-17): the 3 good of D-8 gone, n=1, d=2: breached again, to D+4;
    # D+5 (06-20): bad2 gone, n=0, d=1: healthy, and so on until empty.
    # orders_to_recover: 2/(6+m) < 1/4 iff m > 2: 3.
    d = doc(relapse_log(), refund_rate(0.25, window=10))
    assert numbers(d) == (2, 6, True, None, 3, "2024-06-20")


def test_recovers_the_next_day_when_every_order_leaves() -> None:
    # Everything bought on D-9, the oldest day of a 10-day window: tomorrow's window
    # is empty, which is not breached.
    d = doc([*refunded("r", -9), *bought("g", -9)], refund_rate(0.25, window=10))
    assert (d["breached"], d["recovers_on"]) == (True, "2024-06-16")


def test_recovers_on_is_null_unless_breached() -> None:
    # A refund on D-5 among 5 orders: 1/5 < 0.25, not breached, so no recovery
    # date (though on D+2 the 4 good orders of D-8 leave and 1/1 is breached).
    lines = [*refunded("r", -5), *many("g", 4, -8)]
    d = doc(lines, refund_rate(0.25, window=10))
    assert (d["breached"], d["headroom"], d["recovers_on"]) == (False, 0, None)


def otd(oid: str, offset: int, how: str) -> list[bytes]:
    """A tracked order bought on D+offset at 10:00, deliver_by 22:00 that day;
    ``how``: delivered ``on_time`` (21:00), ``late`` (23:00), or ``never``."""
    d = day(offset)
    lines = [order(f"{d}T10:00:00Z", f"{d}T12:00:00Z", order=oid,
                   deliver_by=f"{d}T22:00:00Z"),
             ev("shipment", f"{d}T11:00:00Z", order=oid, tracking_id="1Z")]
    if how != "never":
        at = "21:00:00" if how == "on_time" else "23:00:00"
        lines.append(ev("delivery", f"{d}T{at}Z", order=oid))
    return lines


OTDR_AMAZON = default_catalog().by_name("on_time_delivery_rate")  # W=14, L=7, 0.90


def test_recovers_on_counts_orders_of_the_lag_zone_entering_later_windows() -> None:
    # Window of day t: t-20 .. t-7. Today (06-15): only the late order of D-10:
    # 0/1, breached. 9 on-time orders of D-3 (lag zone) enter on D+4, when the window
    # is D-16 .. D-3: 9/10 = 0.9, not breached; the late one leaves on D+11
    # (D-10+21); the 9 leave on D+18. Recovery: D+4 = 06-19, not D+11.
    assert OTDR_AMAZON.lag_days == 7
    lines = [*otd("late", -10, "late"), *many("ok", 9, -3, lambda o, x: otd(o, x, "on_time"))]
    d = doc(lines, OTDR_AMAZON)
    assert numbers(d) == (0, 1, True, None, 9, "2024-06-19")  # m/(1+m) >= 0.9: m=9
    assert d["orders"] == [{"order_id": "late", "purchased_at": "2024-06-05T10:00:00Z",
                            "causes": ["late_delivery"], "leaves_window_on": "2024-06-26"}]
    assert [x["date"] for x in d["days"]][::13] == ["2024-05-26", "2024-06-08"]
    assert d["days"][10] == {"date": "2024-06-05", "denominator": 1, "bad": 1}


def test_recovers_on_with_a_lag_zone_order_that_relapses_later() -> None:
    # As above plus a late order of D-1 (lag zone): it enters on D+6, giving
    # 9/11 < 0.9 until the first late leaves on D+11 (9/10, healthy); the 9 good
    # leave on D+18, leaving 0/1 on D+18 and D+19; it leaves on D+20 (D-1+21): empty.
    # Recovery: D+20 = 07-05.
    lines = [*otd("late", -10, "late"), *many("ok", 9, -3, lambda o, x: otd(o, x, "on_time")),
             *otd("late2", -1, "late")]
    d = doc(lines, OTDR_AMAZON)
    assert numbers(d) == (0, 1, True, None, 9, "2024-07-05")
    # The lag-zone order is not in today's window: not listed, not in days.
    assert [o["order_id"] for o in d["orders"]] == ["late"]
    assert sum(x["denominator"] for x in d["days"]) == 1


# --- causes -------------------------------------------------------------------------


def test_perfect_order_causes_in_the_fixed_order() -> None:
    # "all7": every imperfection, its events given in reverse of the fixed order;
    # shipped at 23:30 after ship_by 23:00 (late), then cancelled by the seller.
    # "some": an A-to-z claim, a seller cancellation before shipping (not late: an
    # unshipped cancelled order never is), a buyer message about it.
    # "fine": perfect, not listed. POP over 3 orders: 1/3, breached.
    d6 = day(-6)
    lines = [
        order(f"{d6}T10:00:00Z", f"{d6}T23:00:00Z", order="all7"),
        ev("message", f"{d6}T11:00:00Z", order="all7", message_id="m1", sender="buyer"),
        ev("refund", f"{d6}T12:00:00Z", order="all7"),
        ev("shipment", f"{d6}T23:30:00Z", order="all7", tracking_id="1Z"),
        ev("cancellation", f"{day(-5)}T10:00:00Z", order="all7", initiated_by="seller"),
        ev("claim", f"{day(-5)}T11:00:00Z", order="all7", claim_type="chargeback"),
        ev("claim", f"{day(-5)}T12:00:00Z", order="all7", claim_type="a_to_z"),
        ev("feedback", f"{day(-5)}T13:00:00Z", order="all7", rating=1),
        order(f"{d6}T09:00:00Z", f"{d6}T23:00:00Z", order="some"),
        ev("message", f"{d6}T09:30:00Z", order="some", message_id="m2", sender="buyer"),
        ev("cancellation", f"{d6}T10:00:00Z", order="some", initiated_by="seller"),
        ev("claim", f"{d6}T11:00:00Z", order="some", claim_type="a_to_z"),
        *bought("fine", -6),
    ]
    m = default_catalog().by_name("perfect_order_percentage")
    d = doc(lines, m)
    assert numbers(d)[:3] == (1, 3, True)
    assert [(o["order_id"], o["causes"]) for o in d["orders"]] == [
        ("some", ["a_to_z_claim", "seller_cancellation", "buyer_message"]),
        ("all7", ["negative_feedback", "a_to_z_claim", "chargeback", "seller_cancellation",
                  "late_shipment", "refunded", "buyer_message"]),
    ]


def test_order_defect_rate_lists_only_defects() -> None:
    # Negative feedback + chargeback + refund: ODR's causes are the two defects, not
    # the refund. A 3-star feedback with a refund is no defect: not listed.
    lines = [*bought("d", -3), ev("refund", f"{day(-2)}T09:00:00Z", order="d"),
             ev("claim", f"{day(-2)}T10:00:00Z", order="d", claim_type="chargeback"),
             ev("feedback", f"{day(-2)}T11:00:00Z", order="d", rating=2),
             *bought("ok", -3), ev("feedback", f"{day(-2)}T11:00:00Z", order="ok", rating=3),
             ev("refund", f"{day(-2)}T09:00:00Z", order="ok")]
    m = default_catalog().by_name("order_defect_rate")
    d = doc(lines, m)
    assert [(o["order_id"], o["causes"]) for o in d["orders"]] == [
        ("d", ["negative_feedback", "chargeback"])]
    assert (d["numerator"], d["denominator"]) == (1, 2)


def test_transaction_defect_causes() -> None:
    # eBay TDR: "both" cancelled by the seller and with a granted INR claim; "claim"
    # a granted A-to-z claim only; "buyer" cancelled by the buyer (no defect);
    # "opened" an INR claim still open (not granted: no defect).
    lines = [*bought("both", -3, "08:00:00"),
             ev("cancellation", f"{day(-2)}T10:00:00Z", order="both", initiated_by="seller"),
             ev("claim", f"{day(-2)}T11:00:00Z", order="both", claim_type="item_not_received",
                status="granted"),
             *bought("claim", -3, "09:00:00"),
             ev("claim", f"{day(-2)}T11:00:00Z", order="claim", claim_type="a_to_z",
                status="granted"),
             *bought("buyer", -3),
             ev("cancellation", f"{day(-2)}T10:00:00Z", order="buyer", initiated_by="buyer"),
             *bought("opened", -3),
             ev("claim", f"{day(-2)}T11:00:00Z", order="opened", claim_type="item_not_received")]
    m = profile_catalog("ebay").by_name("transaction_defect_rate")
    d = doc(lines, m)
    assert [(o["order_id"], o["causes"]) for o in d["orders"]] == [
        ("both", ["seller_cancellation", "claim_granted"]), ("claim", ["claim_granted"])]


def test_missing_tracking() -> None:
    # Shipped without tracking: missing_tracking. Never shipped: not in the
    # denominator, not listed. Tracked: fine.
    d3 = day(-3)
    lines = [order(f"{d3}T10:00:00Z", f"{d3}T23:00:00Z", order="bare"),
             ev("shipment", f"{d3}T20:00:00Z", order="bare"),
             order(f"{d3}T10:00:00Z", f"{d3}T23:00:00Z", order="unshipped"),
             *bought("tracked", -3)]
    m = default_catalog().by_name("valid_tracking_rate")
    d = doc(lines, m)
    assert (d["numerator"], d["denominator"]) == (1, 2)
    assert [(o["order_id"], o["causes"]) for o in d["orders"]] == [("bare", ["missing_tracking"])]


def test_late_delivery_versus_not_delivered() -> None:
    # Walmart's OTDR (30 days, no lag): "late" delivered after deliver_by; "never"
    # not delivered and deliver_by passed; "pending" bought today with deliver_by
    # 22:00 still ahead: not due, not listed; "ok" on time.
    lines = [*otd("late", -4, "late"), *otd("never", -4, "never"), *otd("ok", -4, "on_time"),
             *otd("pending", 0, "never")]
    m = profile_catalog("walmart").by_name("on_time_delivery_rate")
    d = doc(lines, m)
    assert (d["numerator"], d["denominator"]) == (1, 3)
    assert [(o["order_id"], o["causes"]) for o in d["orders"]] == [
        ("late", ["late_delivery"]), ("never", ["not_delivered"])]


def buyer(mid: str, at: str, **kw: Any) -> bytes:
    return ev("message", at, order=None, message_id=mid, sender="buyer", **kw)


def reply(mid: str, at: str, to: str) -> bytes:
    return ev("message", at, order=None, message_id=mid, sender="seller",
              response_needed=False, in_reply_to=to)


def test_late_response_versus_no_response() -> None:
    # Walmart's response rate, 48 h, 30 days. m1 asked 06-10T10:00:00.000250, answered
    # 06-13 (> 48 h): late_response. m2 asked 06-07, asked again 06-11T09:00 (its
    # latest event, the one its deadline runs from), never answered, 06-13T09:00
    # passed: no_response. m3 asked 06-14T20:00, not due yet: not counted. m4
    # answered in an hour: on time. 1/3, breached; leaves on day + 30.
    lines = [buyer("m1", "2024-06-10T10:00:00.000250Z"),
             reply("r1", "2024-06-13T10:00:00Z", "m1"),
             buyer("m2", "2024-06-07T10:00:00Z"), buyer("m2", "2024-06-11T09:00:00Z"),
             buyer("m3", "2024-06-14T20:00:00Z"),
             buyer("m4", "2024-06-12T08:00:00Z"), reply("r4", "2024-06-12T09:00:00Z", "m4")]
    full = explain(lines, catalog=profile_catalog("walmart"), metric="seller_response_rate")
    assert full is not None
    assert list(full["metrics"]) == ["seller_response_rate"]
    d = full["metrics"]["seller_response_rate"]
    assert numbers(d)[:3] == (1, 3, True)
    assert d["orders"] == [
        {"message_id": "m1", "sent_at": "2024-06-10T10:00:00.000250Z",
         "causes": ["late_response"], "leaves_window_on": "2024-07-10"},
        {"message_id": "m2", "sent_at": "2024-06-11T09:00:00Z",
         "causes": ["no_response"], "leaves_window_on": "2024-07-11"},
    ]
    # Message days: 06-10 (m1), 06-11 (m2), 06-12 (m4); m3 (06-14) is not counted.
    nonzero = [x for x in d["days"] if x["denominator"]]
    assert nonzero == [{"date": "2024-06-10", "denominator": 1, "bad": 1},
                       {"date": "2024-06-11", "denominator": 1, "bad": 1},
                       {"date": "2024-06-12", "denominator": 1, "bad": 0}]
    # (1+m)/(3+m) >= 0.95 iff m >= 37; recovery when m2 leaves on 07-11 (m4 leaves
    # on 07-12, but then only healthy days are left).
    assert (d["orders_to_recover"], d["recovers_on"]) == (37, "2024-07-11")


@pytest.mark.parametrize(("profile", "name", "cause"), [
    ("walmart", "return_rate", "returned"),
    ("amazon", "late_shipment_rate", "late_shipment"),
    ("amazon", "pre_fulfillment_cancel_rate", "pre_fulfillment_cancellation"),
    ("amazon", "refund_rate", "refunded"),
    ("walmart", "seller_cancel_rate", "seller_cancellation"),
    ("walmart", "negative_feedback_rate", "negative_feedback"),
    ("walmart", "item_not_received_rate", "item_not_received"),
    ("ebay", "cases_closed_without_resolution_rate", "claim_granted"),
])
def test_other_below_metrics_name_their_numerator(profile: str, name: str, cause: str) -> None:
    # "bad" is bought on D-2, never shipped (late: ship_by passed), cancelled by the
    # seller, refunded, returned, with a granted INR claim and 1-star feedback: every
    # single-predicate below metric counts it, with its numerator as the one cause.
    # "good" is perfect.
    d2 = day(-2)
    lines = [order(f"{d2}T10:00:00Z", f"{d2}T11:00:00Z", order="bad"),
             ev("refund", f"{d2}T12:00:00Z", order="bad"),
             ev("return", f"{d2}T12:00:00Z", order="bad"),
             ev("feedback", f"{d2}T12:00:00Z", order="bad", rating=1),
             ev("claim", f"{d2}T12:00:00Z", order="bad", claim_type="item_not_received",
                status="granted"),
             *bought("good", -2)]
    if name != "late_shipment_rate":
        lines.append(ev("cancellation", f"{d2}T12:00:00Z", order="bad", initiated_by="seller"))
    m = profile_catalog(profile).by_name(name)
    d = doc(lines, m)
    assert (d["numerator"], d["denominator"]) == (1, 2)
    assert d["orders"] == [{"order_id": "bad", "purchased_at": f"{d2}T10:00:00Z",
                            "causes": [cause],
                            "leaves_window_on": day(-2 + m.window_days)}]


def test_other_at_least_metrics_name_not_their_numerator() -> None:
    # A custom at_least metric over "shipped" orders: the unshipped one is "not_shipped".
    m = rate("shipped_share", "shipped", "order", 0.5, "at_least", 30)
    d2 = day(-2)
    lines = [order(f"{d2}T10:00:00Z", f"{d2}T11:00:00Z", order="u"), *bought("s", -2)]
    d = doc(lines, m)
    assert (d["numerator"], d["denominator"], d["breached"], d["headroom"]) == (1, 2, False, 0)
    assert [(o["order_id"], o["causes"]) for o in d["orders"]] == [("u", ["not_shipped"])]


# --- sorting, leaves_window_on, days --------------------------------------------------


def test_orders_sorted_by_purchase_instant_then_id_by_code_point() -> None:
    # Four bought at the same instant (one given with an offset), one a microsecond
    # earlier with the last id. Code points: "A1" < "B" < "a" < "b".
    d3 = day(-3)
    lines: list[bytes] = []
    for oid in ("b", "a", "B"):
        lines += [order(f"{d3}T10:00:00Z", f"{d3}T23:00:00Z", order=oid),
                  ev("refund", f"{d3}T12:00:00Z", order=oid)]
    lines += [order(f"{d3}T12:00:00+02:00", f"{d3}T23:00:00Z", order="A1"),
              ev("refund", f"{d3}T12:00:00Z", order="A1"),
              order(f"{d3}T09:59:59.999999Z", f"{d3}T23:00:00Z", order="z"),
              ev("refund", f"{d3}T12:00:00Z", order="z")]
    d = doc(lines, refund_rate(0.5))
    assert [o["order_id"] for o in d["orders"]] == ["z", "A1", "B", "a", "b"]
    assert d["orders"][0]["purchased_at"] == f"{d3}T09:59:59.999999Z"


def test_leaves_window_on_is_purchase_day_plus_lag_plus_window() -> None:
    # Bought at 23:59:59.999999 on D-3 (06-12): a 60-day window, no lag: 08-11.
    # With lag 7 and 14 days (OTDR) an order of D-10 leaves on D+11: shown above.
    d3 = day(-3)
    lines = [order(f"{d3}T23:59:59.999999Z", f"{d3}T23:59:59.999999Z"),
             ev("refund", f"{d3}T23:59:59.999999Z")]
    [entry] = doc(lines, refund_rate(0.5))["orders"]
    assert entry["leaves_window_on"] == "2024-08-11"
    # The same with a lag of 2 on a 10-day window (D-11 .. D-2): 06-12 + 12 = 06-24.
    [entry] = doc(lines, refund_rate(0.5, window=10, lag_days=2))["orders"]
    assert entry["leaves_window_on"] == "2024-06-24"
    # With a lag of 5 (D-14 .. D-5) it is in the lag zone: not listed yet.
    assert doc(lines, refund_rate(0.5, window=10, lag_days=5))["orders"] == []


def test_days_cover_the_whole_window_zeros_included() -> None:
    # The relapse log on a 10-day window: 06-06 .. 06-15, oldest first.
    d = doc(relapse_log(), refund_rate(0.25, window=10))
    counts = {"2024-06-06": (1, 1), "2024-06-07": (3, 0), "2024-06-10": (1, 1),
              "2024-06-14": (1, 0)}
    assert d["days"] == [
        {"date": day(k), "denominator": counts.get(day(k), (0, 0))[0],
         "bad": counts.get(day(k), (0, 0))[1]}
        for k in range(-9, 1)]
    assert sum(x["denominator"] for x in d["days"]) == d["denominator"] == 6
    assert sum(x["bad"] for x in d["days"]) == len(d["orders"]) == 2
    assert [(o["order_id"], o["leaves_window_on"]) for o in d["orders"]] == [
        ("bad1", "2024-06-16"), ("bad2", "2024-06-20")]


def test_days_with_a_lag_end_lag_days_before_today() -> None:
    # Lag 3, 5 days: D-7 .. D-3 (06-08 .. 06-12). Orders of D-8 and D-2 are outside.
    lines = [*refunded("r1", -8), *refunded("r2", -7), *bought("g", -3), *refunded("r3", -2)]
    d = doc(lines, refund_rate(0.9, window=5, lag_days=3))
    assert [x["date"] for x in d["days"]] == [day(k) for k in range(-7, -2)]
    assert [(x["denominator"], x["bad"]) for x in d["days"]] == [
        (1, 1), (0, 0), (0, 0), (0, 0), (1, 0)]
    assert [o["order_id"] for o in d["orders"]] == ["r2"]
    # 1/2 < 0.9: k with (1+k)/2 < 0.9: k=0 only.
    assert (d["numerator"], d["denominator"], d["headroom"]) == (1, 2, 0)


# --- the document ---------------------------------------------------------------------


def test_every_metric_in_catalog_order_with_the_exact_keys() -> None:
    lines = [*refunded("r", -2), *bought("g", -2)]
    full = explain(lines)
    assert full is not None
    assert list(full) == ["as_of", "seller_id", "metrics"]
    assert list(full["metrics"]) == [m.name for m in default_catalog().metrics]
    keys = {"numerator", "denominator", "value", "target", "breached", "status",
            "window_days", "lag_days", "headroom", "orders_to_recover", "recovers_on",
            "days", "orders", "next_cursor"}
    cells = reference_report([decode_event(x) for x in lines], parse_timestamp(NOW))["s1"]
    for m in default_catalog().metrics:
        d = full["metrics"][m.name]
        assert set(d) == keys
        assert d["next_cursor"] is None
        assert len(d["days"]) == m.window_days
        assert d["lag_days"] == m.lag_days
        assert {k: d[k] for k in cells[m.name]} == cells[m.name]
        assert sum(x["denominator"] for x in d["days"]) == d["denominator"]
        assert sum(x["bad"] for x in d["days"]) == len(d["orders"])
    # Refund rate 1/2: breached; the refunded order is its one entry.
    assert full["metrics"]["refund_rate"]["breached"] is True
    assert [o["order_id"] for o in full["metrics"]["refund_rate"]["orders"]] == ["r"]


def test_metric_keeps_just_that_one() -> None:
    lines = [*refunded("r", -2), *bought("g", -2)]
    full = explain(lines, metric="order_defect_rate")
    assert full is not None
    assert list(full["metrics"]) == ["order_defect_rate"]
    assert full["metrics"]["order_defect_rate"]["orders"] == []
    with pytest.raises(KeyError):
        explain(lines, metric="no_such_metric")


def test_none_for_a_seller_not_in_the_report() -> None:
    lines = [*refunded("r", -2), *bought("x", -2, seller="s2")]
    assert explain(lines, seller="s3") is None
    assert explain(lines, seller="s2") is not None
    # Orders all older than the horizon (90 days, amazon): not reported, None.
    assert explain(bought("old", -90)) is None
    assert explain(bought("old", -89)) is not None
