"""The reference's issue #12 definitions, one boundary per test, on hand-built logs.

The reference is the oracle the engine is held to, so its new metrics are pinned
here by hand: every expected number is worked out in a comment from the issue's
text ("New predicates and metrics", "Precisely"). The metrics are stand-ins with a
Metric's attributes (catalog.py does not know the new predicates yet); the
reference dispatches on their names.

The clock is 2024-06-15T12:00:00Z unless a test says otherwise; D is its UTC day.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.engine.catalog import DEFAULT_CATALOG, Catalog, default_catalog
from streams.engine.events import (
    Claim,
    Delivery,
    Event,
    Message,
    Order,
    Return,
    decode_event,
    parse_timestamp,
    to_us,
)
from streams.errors import InvalidEvent
from tests.reference import reference_report
from tests.unit.builders import ev, order
from tests.unit.strategies import NOW as STRATEGY_NOW
from tests.unit.strategies import logs

pytestmark = pytest.mark.unit

NOW = "2024-06-15T12:00:00Z"


@dataclass(frozen=True)
class M:
    """A stand-in metric: the attributes the reference reads."""

    name: str
    window_days: int
    target: float
    healthy: str
    numerator: str = "order"
    denominator: str = "order"
    min_orders: int = 0
    min_count: int = 0
    warning: float | None = None
    lag_days: int = 0
    response_hours: int = 48


@dataclass(frozen=True)
class Cat:
    metrics: tuple[Any, ...]


OTDR_AMAZON = M("on_time_delivery_rate", 14, 0.90, "at_least", lag_days=7)
OTDR = M("on_time_delivery_rate", 30, 0.90, "at_least")  # Walmart's: no lag
LATE_30 = M("late_shipment_rate_30d", 30, 0.04, "below")
LATE_10 = M("late_shipment_rate", 10, 0.04, "below", "late_shipment", "order")
RETURNS = M("return_rate", 60, 0.06, "below")
INR = M("item_not_received_rate", 60, 0.02, "below")
NEGATIVE = M("negative_feedback_rate", 60, 0.02, "below")
TDR = M("transaction_defect_rate", 90, 0.02, "below")
CASES = M("cases_closed_without_resolution_rate", 90, 0.003, "below", min_count=3)
CANCELS = M("seller_cancel_rate", 30, 0.02, "below")
RESPONSE = M("seller_response_rate", 30, 0.95, "at_least")


def report(lines: list[bytes], *metrics: Any, now: str = NOW) -> dict[str, Any]:
    catalog = Cat(metrics) if metrics else default_catalog()
    return reference_report([decode_event(x) for x in lines], parse_timestamp(now), catalog)


def cell(lines: list[bytes], metric: Any, seller: str = "s1", now: str = NOW) -> tuple[int, int]:
    c = report(lines, metric, now=now)[seller][metric.name]
    return c["numerator"], c["denominator"]


def tracked_order(oid: str = "o1", day: str = "2024-06-10", deliver_by: str | None
                  = "2024-06-14T12:00:00Z", seller: str = "s1") -> list[bytes]:
    """An order bought on ``day`` at 10:00, shipped with a tracking id the next day."""
    extra = {"deliver_by": deliver_by} if deliver_by is not None else {}
    return [
        order(f"{day}T10:00:00Z", f"{day}T23:00:00Z", order=oid, seller=seller, **extra),
        ev("shipment", f"{day}T20:00:00Z", order=oid, seller=seller, tracking_id="1Z"),
    ]


# --- on_time_delivery_rate ----------------------------------------------------------


def test_delivered_exactly_at_deliver_by_is_on_time() -> None:
    # delivered 06-14T12:00 = deliver_by: on time, and delivered, so counted: 1/1.
    lines = [*tracked_order(), ev("delivery", "2024-06-14T12:00:00Z")]
    assert cell(lines, OTDR) == (1, 1)


def test_delivered_a_microsecond_late_is_late() -> None:
    # 06-14T12:00:00.000001 > deliver_by: delivered, not on time: 0/1.
    lines = [*tracked_order(), ev("delivery", "2024-06-14T12:00:00.000001Z")]
    assert cell(lines, OTDR) == (0, 1)


def test_undelivered_counts_only_once_now_is_strictly_after_deliver_by() -> None:
    # deliver_by = now exactly: not passed, not delivered: 0/0. A microsecond later
    # it has passed: 0/1 (counted, late).
    lines = tracked_order(deliver_by=NOW)
    assert cell(lines, OTDR) == (0, 0)
    assert cell(lines, OTDR, now="2024-06-15T12:00:00.000001Z") == (0, 1)


def test_the_latest_delivery_at_or_before_now_is_the_delivery_time() -> None:
    # Two packages: 06-13 (on time) and 06-14T12:00:00.000001 (late): the latest
    # decides, late: 0/1, whatever the processing order.
    early = ev("delivery", "2024-06-13T09:00:00Z")
    late = ev("delivery", "2024-06-14T12:00:00.000001Z")
    assert cell([*tracked_order(), late, early], OTDR) == (0, 1)
    assert cell([*tracked_order(), early, late], OTDR) == (0, 1)
    # A package stamped after now does not count yet: only the 06-13 one, 1/1.
    # (deliver_by moved to 06-16 so it has not passed.)
    lines = [*tracked_order(deliver_by="2024-06-16T00:00:00Z"), early,
             ev("delivery", "2024-06-15T12:00:00.000001Z")]
    assert cell(lines, OTDR) == (1, 1)


@pytest.mark.parametrize("tracking", [None, "", "absent"])
def test_untracked_shipment_keeps_the_order_out(tracking: str | None) -> None:
    # A shipment without a non-empty tracking_id, delivered on time: 0/0.
    fields = {} if tracking == "absent" else {"tracking_id": tracking}
    lines = [order("2024-06-10T10:00:00Z", "2024-06-10T23:00:00Z",
                   deliver_by="2024-06-14T12:00:00Z"),
             ev("shipment", "2024-06-10T20:00:00Z", **fields),
             ev("delivery", "2024-06-13T12:00:00Z")]
    assert cell(lines, OTDR) == (0, 0)


def test_delivery_without_shipment_keeps_the_order_out() -> None:
    # Delivered on time, deliver_by long passed, but never shipped: 0/0.
    lines = [order("2024-06-10T10:00:00Z", "2024-06-10T23:00:00Z",
                   deliver_by="2024-06-14T12:00:00Z"),
             ev("delivery", "2024-06-13T12:00:00Z")]
    assert cell(lines, OTDR) == (0, 0)


@pytest.mark.parametrize("side", ["buyer", "seller"])
def test_cancelled_at_or_before_now_keeps_the_order_out(side: str) -> None:
    # Cancelled exactly at now (either side): out, 0/0. Cancelled a microsecond
    # after now: not yet, so the on-time delivery counts: 1/1.
    base = [*tracked_order(), ev("delivery", "2024-06-14T11:00:00Z")]
    assert cell([*base, ev("cancellation", NOW, initiated_by=side)], OTDR) == (0, 0)
    after = ev("cancellation", "2024-06-15T12:00:00.000001Z", initiated_by=side)
    assert cell([*base, after], OTDR) == (1, 1)


@pytest.mark.parametrize("deliver_by", [None, "null"])
def test_no_deliver_by_keeps_the_order_out(deliver_by: str | None) -> None:
    # No promise to measure against: 0/0, delivered or not.
    lines = [order("2024-06-10T10:00:00Z", "2024-06-10T23:00:00Z",
                   **({"deliver_by": None} if deliver_by else {})),
             ev("shipment", "2024-06-10T20:00:00Z", tracking_id="1Z"),
             ev("delivery", "2024-06-13T12:00:00Z")]
    assert cell(lines, OTDR) == (0, 0)


def test_lagged_window_covers_purchase_days_today_minus_20_to_minus_7() -> None:
    # W=14, L=7, D=06-15: purchase days 05-26 (D-20) .. 06-08 (D-7). Orders bought
    # on D-21, D-20, D-7, D-6, each delivered on time: D-20 and D-7 count, 2/2.
    lines: list[bytes] = []
    for oid, day, by in [("a", "2024-05-25", "2024-05-28"), ("b", "2024-05-26", "2024-05-29"),
                         ("c", "2024-06-08", "2024-06-11"), ("d", "2024-06-09", "2024-06-12")]:
        lines += tracked_order(oid, day, f"{by}T00:00:00Z")
        lines.append(ev("delivery", f"{by}T00:00:00Z", order=oid))
    assert cell(lines, OTDR_AMAZON) == (2, 2)


def test_seller_reported_while_an_order_is_within_window_plus_lag() -> None:
    # Only OTDR (W=14, L=7): orders reach back 21 days. One bought on D-6 is in no
    # window yet but keeps the seller, 0/0; one bought on D-20 alone counts, 1/1;
    # one bought on D-21 alone is out of reach: the seller is absent.
    def only(day: str) -> dict[str, Any]:
        lines = [*tracked_order(day=day, deliver_by=f"{day}T23:59:59Z"),
                 ev("delivery", f"{day}T21:00:00Z")]
        return report(lines, OTDR_AMAZON)

    assert only("2024-06-09")["s1"]["on_time_delivery_rate"]["denominator"] == 0
    assert only("2024-05-26")["s1"]["on_time_delivery_rate"]["numerator"] == 1
    assert only("2024-05-25") == {}


# --- the simpler order metrics ----------------------------------------------------


def test_late_shipment_rate_30d_is_late_shipment_over_30_days() -> None:
    # Shipped 1 us after ship_by: late. Bought D-20: in 30 d (1/1), not in 10 d (0/0).
    lines = [order("2024-05-26T10:00:00Z", "2024-05-27T10:00:00Z"),
             ev("shipment", "2024-05-27T10:00:00.000001Z", tracking_id="1Z")]
    out = report(lines, LATE_30, LATE_10)["s1"]
    assert (out["late_shipment_rate_30d"]["numerator"],
            out["late_shipment_rate_30d"]["denominator"]) == (1, 1)
    assert out["late_shipment_rate"]["denominator"] == 0


def test_return_rate_counts_orders_with_a_return() -> None:
    # o1 returned twice, o2 refunded (not a return), o3 nothing: 1/3.
    lines = [order(order="o1"), order(order="o2"), order(order="o3"),
             ev("return", "2024-06-14T12:00:00Z", order="o1", reason="size"),
             ev("return", "2024-06-14T13:00:00Z", order="o1"),
             ev("refund", "2024-06-14T12:00:00Z", order="o2")]
    assert cell(lines, RETURNS) == (1, 3)


@pytest.mark.parametrize(("statuses", "counted"), [
    (["opened"], True), (["granted"], True), (["denied"], False),
    (["opened", "withdrawn"], False), (["withdrawn", "opened"], True),
])
def test_item_not_received_latest_status_wins(statuses: list[str], counted: bool) -> None:
    # Statuses one hour apart, the last one wins: opened/granted count (1/1), others 0/1.
    lines = [order()] + [
        ev("claim", f"2024-06-14T1{i}:00:00Z", claim_type="item_not_received", status=s)
        for i, s in enumerate(statuses)]
    assert cell(lines, INR) == (int(counted), 1)


def test_item_not_received_counts_only_its_own_claim_type() -> None:
    # An opened A-to-z claim is not an item-not-received one: 0/1.
    lines = [order(), ev("claim", "2024-06-14T10:00:00Z", claim_type="a_to_z")]
    assert cell(lines, INR) == (0, 1)


@pytest.mark.parametrize(("rating", "removed", "counted"), [
    (1, False, True), (2, False, True), (3, False, False), (2, True, False)])
def test_negative_feedback_as_in_odr(rating: int, removed: bool, counted: bool) -> None:
    # Rating <= 2 and not removed: 1/1; otherwise 0/1.
    lines = [order(), ev("feedback", "2024-06-14T10:00:00Z", rating=rating, removed=removed)]
    assert cell(lines, NEGATIVE) == (int(counted), 1)


@pytest.mark.parametrize("claim_type", ["a_to_z", "chargeback", "item_not_received"])
def test_a_granted_claim_of_any_type_counts(claim_type: str) -> None:
    # Granted (latest): a case closed without resolution and a transaction defect, 1/1.
    lines = [order(), ev("claim", "2024-06-14T10:00:00Z", claim_type=claim_type,
                         status="opened"),
             ev("claim", "2024-06-14T11:00:00Z", claim_type=claim_type, status="granted")]
    assert cell(lines, CASES) == (1, 1)
    assert cell(lines, TDR) == (1, 1)


def test_granted_then_withdrawn_is_not_granted() -> None:
    # The latest status is withdrawn: 0/1 for both. An opened claim is not granted.
    lines = [order(), order(order="o2"),
             ev("claim", "2024-06-14T10:00:00Z", claim_type="a_to_z", status="granted"),
             ev("claim", "2024-06-14T11:00:00Z", claim_type="a_to_z", status="withdrawn"),
             ev("claim", "2024-06-14T11:00:00Z", order="o2", claim_type="chargeback")]
    assert cell(lines, CASES) == (0, 2)
    assert cell(lines, TDR) == (0, 2)


def test_cases_closed_needs_three_cases_to_breach() -> None:
    # Target 0.003, min_count 3: 2 granted of 2 orders is breached but only a
    # warning (2 < 3 cases); 3 of 3 is a breach.
    def granted(n: int) -> dict[str, Any]:
        lines: list[bytes] = []
        for i in range(n):
            lines += [order(order=f"o{i}"), ev("claim", "2024-06-14T10:00:00Z", order=f"o{i}",
                                               claim_type="a_to_z", status="granted")]
        return report(lines, CASES)["s1"][CASES.name]

    two, three = granted(2), granted(3)
    assert (two["numerator"], two["breached"], two["status"]) == (2, True, "warning")
    assert (three["numerator"], three["breached"], three["status"]) == (3, True, "breach")


def test_seller_cancellations_before_or_after_shipping_count() -> None:
    # o1 cancelled by the seller before shipping, o2 after shipping, o3 by the buyer,
    # o4 nothing: seller_cancel_rate 2/4; transaction_defect_rate 2/4 too.
    lines = [order(order=f"o{i}") for i in range(1, 5)] + [
        ev("cancellation", "2024-06-14T11:00:00Z", order="o1", initiated_by="seller"),
        ev("shipment", "2024-06-14T12:00:00Z", order="o2", tracking_id="1Z"),
        ev("cancellation", "2024-06-14T13:00:00Z", order="o2", initiated_by="seller"),
        ev("cancellation", "2024-06-14T11:00:00Z", order="o3", initiated_by="buyer")]
    assert cell(lines, CANCELS) == (2, 4)
    assert cell(lines, TDR) == (2, 4)


def test_transaction_defect_counts_an_order_once() -> None:
    # Seller cancellation and a granted claim on the same order: 1/1, not 2/1.
    lines = [order(), ev("cancellation", "2024-06-14T11:00:00Z", initiated_by="seller"),
             ev("claim", "2024-06-14T12:00:00Z", claim_type="chargeback", status="granted")]
    assert cell(lines, TDR) == (1, 1)


def test_the_six_v1_metrics_ignore_the_new_events() -> None:
    # A shipped, delivered-late order with an item-not-received claim granted, a
    # return, and a buyer message answered by the seller. INR is not in ODR or POP,
    # a return is not a refund, a late delivery is not a late shipment, and a reply
    # does not clear POP's buyer message: POP 0/1 (buyer message only), ODR 0/1,
    # refund 0/1, late shipment 0/1, valid tracking 1/1.
    lines = [*tracked_order(),
             ev("delivery", "2024-06-14T20:00:00Z"),
             ev("claim", "2024-06-14T10:00:00Z", claim_type="item_not_received",
                status="granted"),
             ev("return", "2024-06-14T21:00:00Z"),
             ev("message", "2024-06-14T09:00:00Z", message_id="m1", sender="buyer"),
             ev("message", "2024-06-14T09:30:00Z", message_id="r1", sender="seller",
                in_reply_to="m1")]
    out = report(lines, *DEFAULT_CATALOG)["s1"]
    got = {name: (c["numerator"], c["denominator"]) for name, c in out.items()}
    assert got == {
        "perfect_order_percentage": (0, 1), "order_defect_rate": (0, 1),
        "pre_fulfillment_cancel_rate": (0, 1), "late_shipment_rate": (0, 1),
        "refund_rate": (0, 1), "valid_tracking_rate": (1, 1),
    }
    # Without the buyer message the order is perfect: 1/1.
    assert report(lines[:-2], *DEFAULT_CATALOG)["s1"]["perfect_order_percentage"][
        "numerator"] == 1


# --- seller_response_rate -----------------------------------------------------------


def ask(at: str, mid: str = "m1", seller: str = "s1", **fields: Any) -> bytes:
    return ev("message", at, order=None, seller=seller, message_id=mid, sender="buyer",
              **fields)


def reply(at: str, to: str | None = "m1", mid: str = "r1", seller: str = "s1",
          **fields: Any) -> bytes:
    return ev("message", at, order=None, seller=seller, message_id=mid, sender="seller",
              in_reply_to=to, **fields)


def test_answered_exactly_at_the_deadline_is_on_time() -> None:
    # Asked 06-12T12:00, deadline 06-14T12:00; answered then: 1/1.
    assert cell([ask("2024-06-12T12:00:00Z"), reply("2024-06-14T12:00:00Z")], RESPONSE) == (1, 1)


def test_answered_a_microsecond_after_the_deadline_is_late() -> None:
    # Answered 06-14T12:00:00.000001: counted, late: 0/1.
    lines = [ask("2024-06-12T12:00:00Z"), reply("2024-06-14T12:00:00.000001Z")]
    assert cell(lines, RESPONSE) == (0, 1)


def test_response_hours_come_from_the_metric() -> None:
    # Etsy-like 24 h: asked 06-12T12:00, answered 06-13T12:00:00.000001: late, 0/1;
    # with 48 h the same reply is on time, 1/1.
    lines = [ask("2024-06-12T12:00:00Z"), reply("2024-06-13T12:00:00.000001Z")]
    day = M("seller_response_rate", 30, 0.95, "at_least", response_hours=24)
    assert cell(lines, day) == (0, 1)
    assert cell(lines, RESPONSE) == (1, 1)


def test_unanswered_counts_once_now_is_strictly_past_the_deadline() -> None:
    # Asked 06-13T12:00: deadline = now exactly, not passed: 0/0. Asked a microsecond
    # earlier: passed, unanswered: 0/1.
    assert cell([ask("2024-06-13T12:00:00Z")], RESPONSE) == (0, 0)
    assert cell([ask("2024-06-13T11:59:59.999999Z")], RESPONSE) == (0, 1)


def test_answered_before_the_deadline_counts_at_once() -> None:
    # Asked 06-15T00:00 (deadline 06-17), answered 06-15T01:00 <= now: 1/1 today.
    lines = [ask("2024-06-15T00:00:00Z"), reply("2024-06-15T01:00:00Z")]
    assert cell(lines, RESPONSE) == (1, 1)


def test_a_reply_after_now_does_not_answer_yet() -> None:
    # Asked 06-14T12:00 (deadline 06-16), reply stamped now + 1 us: not yet, 0/0.
    lines = [ask("2024-06-14T12:00:00Z"), reply("2024-06-15T12:00:00.000001Z")]
    assert cell(lines, RESPONSE) == (0, 0)


def test_a_reply_stamped_before_the_question_is_on_time() -> None:
    # Clock skew: answered 06-10, asked 06-12: 1/1.
    lines = [reply("2024-06-10T00:00:00Z"), ask("2024-06-12T00:00:00Z")]
    assert cell(lines, RESPONSE) == (1, 1)


def test_the_earliest_reply_decides() -> None:
    # Asked 06-10T00:00, deadline 06-12T00:00. Replies 06-12T01:00 (late) and
    # 06-10T01:00 (on time), any processing order: on time, 1/1.
    late, early = reply("2024-06-12T01:00:00Z", mid="r2"), reply("2024-06-10T01:00:00Z")
    assert cell([ask("2024-06-10T00:00:00Z"), late, early], RESPONSE) == (1, 1)
    # Two late replies: 0/1.
    lines = [ask("2024-06-10T00:00:00Z"), late, reply("2024-06-13T00:00:00Z", mid="r3")]
    assert cell(lines, RESPONSE) == (0, 1)


def test_every_reply_event_answers_even_if_its_message_changes_later() -> None:
    # Reply r1 answers m1 at 06-10T01:00; a later event of r1 without in_reply_to
    # does not take that back: 1/1.
    lines = [ask("2024-06-10T00:00:00Z"), reply("2024-06-10T01:00:00Z"),
             reply("2024-06-10T02:00:00Z", to=None)]
    assert cell(lines, RESPONSE) == (1, 1)


def test_replies_to_unknown_ids_or_from_another_seller_answer_nothing() -> None:
    # s1's m1 asked 06-10, deadline passed. s1 answers "m9" (unknown); s2 answers
    # "m1" (its own namespace, where m1 does not exist): s1 0/1; s2 has no buyer
    # message and no order, so it is not reported.
    lines = [ask("2024-06-10T00:00:00Z"), reply("2024-06-10T01:00:00Z", to="m9"),
             reply("2024-06-10T01:00:00Z", seller="s2")]
    out = report(lines, RESPONSE)
    assert (out["s1"][RESPONSE.name]["numerator"],
            out["s1"][RESPONSE.name]["denominator"]) == (0, 1)
    assert "s2" not in out


def test_a_buyer_message_does_not_answer() -> None:
    # A buyer's m2 with in_reply_to m1 answers nothing; m2 itself needs a response:
    # both asked 06-10, both unanswered past the deadline: 0/2.
    lines = [ask("2024-06-10T00:00:00Z"), ask("2024-06-10T01:00:00Z", mid="m2",
                                              in_reply_to="m1")]
    assert cell(lines, RESPONSE) == (0, 2)


def test_response_needed_false_latest_wins() -> None:
    # m1 asked 06-10T00:00 then marked no-response-needed at 01:00: out of both,
    # and with nothing else the seller is not reported. The other way round (false,
    # then true later): counted, unanswered, 0/1.
    out = report([ask("2024-06-10T00:00:00Z"),
                  ask("2024-06-10T01:00:00Z", response_needed=False)], RESPONSE)
    assert out == {}
    lines = [ask("2024-06-10T00:00:00Z", response_needed=False),
             ask("2024-06-10T01:00:00Z")]
    assert cell(lines, RESPONSE) == (0, 1)


def test_the_latest_event_sets_the_deadline() -> None:
    # m1 sent 06-01T00:00 and again 06-10T00:00 (latest): deadline 06-12T00:00, so a
    # reply at 06-11T00:00 (9 days after the first) is on time: 1/1.
    lines = [ask("2024-06-01T00:00:00Z"), ask("2024-06-10T00:00:00Z"),
             reply("2024-06-11T00:00:00Z")]
    assert cell(lines, RESPONSE) == (1, 1)


def test_attributed_to_the_utc_day_of_the_buyer_message() -> None:
    # 30 days with D = 06-15: message days 05-17 .. 06-15. 2024-05-17T02:00+05:30 is
    # 05-16T20:30Z, out: 0/0 and the seller is not reported. 05-17T00:00Z is in,
    # unanswered and past its deadline: 0/1.
    assert report([ask("2024-05-17T02:00:00+05:30")], RESPONSE) == {}
    assert cell([ask("2024-05-17T00:00:00Z")], RESPONSE) == (0, 1)


def test_a_seller_with_only_messages_is_reported_with_response_rate() -> None:
    # s3: no order, a buyer message asked an hour ago (not yet due): reported, every
    # cell 0/0, insufficient volume. Without seller_response_rate in the catalog it
    # is not reported.
    lines = [ask("2024-06-15T11:00:00Z", seller="s3")]
    out = report(lines, RESPONSE, RETURNS)
    assert set(out) == {"s3"}
    assert {c["denominator"] for c in out["s3"].values()} == {0}
    assert {c["status"] for c in out["s3"].values()} == {"insufficient_volume"}
    assert report(lines, RETURNS) == {}


def test_response_rate_status_floors() -> None:
    # 3 messages, 2 answered on time, 1 late: 2/3 < 0.95, breached; with min_count 3
    # one bad message is a warning; with min_count 1 a breach; min_orders 4:
    # insufficient volume.
    lines = [ask("2024-06-10T00:00:00Z", mid="m1"), ask("2024-06-10T00:00:00Z", mid="m2"),
             ask("2024-06-10T00:00:00Z", mid="m3"),
             reply("2024-06-10T01:00:00Z", to="m1", mid="r1"),
             reply("2024-06-10T01:00:00Z", to="m2", mid="r2"),
             reply("2024-06-13T00:00:00Z", to="m3", mid="r3")]
    for floors, status in [({"min_count": 3}, "warning"), ({"min_count": 1}, "breach"),
                           ({"min_orders": 4}, "insufficient_volume")]:
        metric = M(RESPONSE.name, 30, 0.95, "at_least", **floors)
        c = report(lines, metric)["s1"][RESPONSE.name]
        assert (c["numerator"], c["denominator"], c["breached"], c["status"]) == (
            2, 3, True, status)


# --- properties over random v1.1 logs -------------------------------------------------

ALL_V11 = (OTDR_AMAZON, LATE_30, RETURNS, INR, NEGATIVE, TDR, CASES, CANCELS, RESPONSE)


def _events(lines: list[bytes]) -> list[Event]:
    out = []
    for line in lines:
        with contextlib.suppress(InvalidEvent):
            out.append(decode_event(line))
    return out


def _v1_only(events: list[Event]) -> list[Event]:
    """The log with everything v1.1 taken out: deliveries, returns, item-not-received
    claims, deliver_by and in_reply_to."""
    out: list[Event] = []
    for e in events:
        if isinstance(e, Delivery | Return) or (
                isinstance(e, Claim) and e.claim_type == "item_not_received"):
            continue
        if isinstance(e, Order):
            e = msgspec.structs.replace(e, deliver_by=None)
        elif isinstance(e, Message):
            e = msgspec.structs.replace(e, in_reply_to=None)
        out.append(e)
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(logs(v11=True), st.integers(-2 * 86_400_000_000, 2 * 86_400_000_000))
def test_v1_metrics_do_not_see_v11_events(lines: list[bytes], shift: int) -> None:
    """The six v1 metrics on a v1.1 log equal those on the log without its v1.1
    content, and every new metric counts a subset of its denominator."""
    events = _events(lines)
    now = to_us(STRATEGY_NOW) + shift
    v1 = Catalog(DEFAULT_CATALOG)  # the six v1 metrics
    assert reference_report(events, now, v1) == reference_report(_v1_only(events), now, v1)
    for cells in reference_report(events, now, Cat(ALL_V11)).values():
        for c in cells.values():
            assert 0 <= c["numerator"] <= c["denominator"]
