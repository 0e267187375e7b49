"""One hand-written test per rule of the contract (issue #2), plus the edges.

Each test builds a tiny log, replays it through the engine and checks the exact
numerator and denominator of the metric the rule feeds.
"""

from __future__ import annotations

from typing import Any

import pytest

from streams.engine.engine import Engine, Outcome
from streams.engine.events import parse_timestamp
from streams.errors import ConflictingEvent
from tests.unit.builders import ev, order

pytestmark = pytest.mark.unit

NOW = "2024-06-15T12:00:00Z"


def run(*lines: bytes, now: str = NOW) -> Engine:
    engine = Engine(now=parse_timestamp(now))
    for line in lines:
        engine.apply_bytes(line)
    return engine


def counts(engine: Engine, metric: str, seller: str = "s1") -> tuple[int, int]:
    mv = engine.seller_metrics(seller)[metric]
    return mv.numerator, mv.denominator


# --- negative feedback -----------------------------------------------------------

@pytest.mark.parametrize(("rating", "negative"), [(1, True), (2, True), (3, False), (5, False)])
def test_negative_feedback_is_rating_two_or_less(rating: int, negative: bool) -> None:
    e = run(order(), ev("feedback", "2024-06-14T12:00:00Z", rating=rating))
    assert counts(e, "order_defect_rate") == (int(negative), 1)


def test_removed_negative_feedback_does_not_count() -> None:
    e = run(order(), ev("feedback", "2024-06-14T12:00:00Z", rating=1, removed=True))
    assert counts(e, "order_defect_rate") == (0, 1)


def test_latest_feedback_wins_both_ways() -> None:
    neg = ev("feedback", "2024-06-14T12:00:00Z", rating=1)
    removal = ev("feedback", "2024-06-14T13:00:00Z", rating=1, removed=True)
    assert counts(run(order(), neg, removal), "order_defect_rate") == (0, 1)
    assert counts(run(order(), removal, neg), "order_defect_rate") == (0, 1)
    e = run(order(), neg)
    assert counts(e, "order_defect_rate") == (1, 1)
    e.apply_bytes(removal)  # a later change of state moves the metric back
    assert counts(e, "order_defect_rate") == (0, 1)


def test_feedback_tie_goes_to_the_later_processed() -> None:
    a = ev("feedback", "2024-06-14T12:00:00Z", rating=1)
    b = ev("feedback", "2024-06-14T12:00:00Z", rating=5)
    assert counts(run(order(), a, b), "order_defect_rate") == (0, 1)
    assert counts(run(order(), b, a), "order_defect_rate") == (1, 1)


# --- claims ----------------------------------------------------------------------

@pytest.mark.parametrize(
    ("status", "counted"),
    [("opened", True), ("granted", True), ("denied", False), ("withdrawn", False), (None, True)],
)
@pytest.mark.parametrize("claim_type", ["a_to_z", "chargeback"])
def test_claim_counts_while_opened_or_granted(claim_type: str, status: str | None,
                                              counted: bool) -> None:
    fields = {"claim_type": claim_type} | ({"status": status} if status else {})
    e = run(order(), ev("claim", "2024-06-14T12:00:00Z", **fields))
    assert counts(e, "order_defect_rate") == (int(counted), 1)
    pred = "a_to_z_claim" if claim_type == "a_to_z" else "chargeback"
    assert e.seller_counts("s1", 90)[pred] == int(counted)


def test_claim_types_are_tracked_separately() -> None:
    e = run(
        order(),
        ev("claim", "2024-06-14T12:00:00Z", claim_type="a_to_z"),
        ev("claim", "2024-06-14T13:00:00Z", claim_type="chargeback", status="withdrawn"),
    )
    assert counts(e, "order_defect_rate") == (1, 1)
    e.apply_bytes(ev("claim", "2024-06-14T14:00:00Z", claim_type="a_to_z", status="withdrawn"))
    assert counts(e, "order_defect_rate") == (0, 1)


def test_older_claim_status_does_not_override_newer() -> None:
    e = run(
        order(),
        ev("claim", "2024-06-14T14:00:00Z", claim_type="a_to_z", status="withdrawn"),
        ev("claim", "2024-06-14T12:00:00Z", claim_type="a_to_z", status="opened"),
    )
    assert counts(e, "order_defect_rate") == (0, 1)


# --- cancellations ---------------------------------------------------------------

def test_seller_cancellation_is_imperfect_and_pre_fulfillment() -> None:
    e = run(order(), ev("cancellation", "2024-06-14T11:00:00Z", initiated_by="seller"))
    assert counts(e, "pre_fulfillment_cancel_rate") == (1, 1)
    assert counts(e, "perfect_order_percentage") == (0, 1)
    assert counts(e, "late_shipment_rate") == (0, 1)  # cancelled: never late


def test_buyer_cancellation_never_counts() -> None:
    # Covers the pending order the buyer cancels, even past ship_by.
    e = run(order(ship_by="2024-06-15T00:00:00Z"),
            ev("cancellation", "2024-06-14T11:00:00Z", initiated_by="buyer"))
    assert counts(e, "pre_fulfillment_cancel_rate") == (0, 1)
    assert counts(e, "perfect_order_percentage") == (1, 1)
    assert counts(e, "late_shipment_rate") == (0, 1)


@pytest.mark.parametrize(
    ("cancel_at", "pre_fulfillment"),
    [("2024-06-14T11:00:00Z", True), ("2024-06-14T12:00:00Z", False),
     ("2024-06-14T13:00:00Z", False)],
)
def test_pre_fulfillment_means_strictly_before_first_shipment(cancel_at: str,
                                                              pre_fulfillment: bool) -> None:
    e = run(order(), ev("shipment", "2024-06-14T12:00:00Z", tracking_id="T"),
            ev("cancellation", cancel_at, initiated_by="seller"))
    assert counts(e, "pre_fulfillment_cancel_rate") == (int(pre_fulfillment), 1)
    assert counts(e, "perfect_order_percentage") == (0, 1)  # any seller cancellation


def test_pre_fulfillment_uses_the_first_shipment() -> None:
    e = run(order(), ev("shipment", "2024-06-14T15:00:00Z", tracking_id="T"),
            ev("cancellation", "2024-06-14T13:00:00Z", initiated_by="seller"),
            ev("shipment", "2024-06-14T12:00:00Z", tracking_id="T"))
    assert counts(e, "pre_fulfillment_cancel_rate") == (0, 1)


# --- late shipment ---------------------------------------------------------------

@pytest.mark.parametrize(
    ("shipped", "late"),
    [("2024-06-16T09:59:59Z", False), ("2024-06-16T10:00:00Z", False),
     ("2024-06-16T10:00:00.000001Z", True)],
)
def test_late_when_first_shipment_after_ship_by(shipped: str, late: bool) -> None:
    e = run(order(), ev("shipment", shipped, tracking_id="T"), now="2024-06-17T00:00:00Z")
    assert counts(e, "late_shipment_rate") == (int(late), 1)


def test_unshipped_order_turns_late_once_ship_by_passes_by_itself() -> None:
    e = run(order(ship_by="2024-06-15T12:00:00Z"))  # now == ship_by: on time so far
    assert counts(e, "late_shipment_rate") == (0, 1)
    e.advance(parse_timestamp("2024-06-15T12:00:00.000001Z"))  # no new event
    assert counts(e, "late_shipment_rate") == (1, 1)
    e.apply_bytes(ev("cancellation", "2024-06-15T12:30:00Z", initiated_by="buyer"))
    assert counts(e, "late_shipment_rate") == (1, 1)  # cancelled after now: held
    e.advance(parse_timestamp("2024-06-15T13:00:00Z"))
    assert counts(e, "late_shipment_rate") == (0, 1)  # any cancellation: not late


def test_late_confirmation_moves_the_metric() -> None:
    e = run(order(ship_by="2024-06-15T00:00:00Z"))
    assert counts(e, "late_shipment_rate") == (1, 1)
    e.apply_bytes(ev("shipment", "2024-06-14T23:00:00Z", tracking_id="T"))
    assert counts(e, "late_shipment_rate") == (0, 1)


# --- refunds, messages -----------------------------------------------------------

def test_any_refund_counts() -> None:
    e = run(order(), ev("refund", "2024-06-14T12:00:00Z"), ev("refund", "2024-06-14T13:00:00Z"))
    assert counts(e, "refund_rate") == (1, 1)
    assert counts(e, "perfect_order_percentage") == (0, 1)
    assert counts(e, "order_defect_rate") == (0, 1)  # Amazon's ODR ignores refunds


def msg(at: str, mid: str = "m1", order_id: str | None = "o1", **kw: Any) -> bytes:
    return ev("message", at, order=order_id, message_id=mid, **kw)


@pytest.mark.parametrize(
    ("fields", "order_id", "counted"),
    [({"sender": "buyer"}, "o1", True),
     ({"sender": "buyer", "response_needed": False}, "o1", False),
     ({"sender": "seller"}, "o1", False),
     ({"sender": "buyer"}, None, False)],
)
def test_buyer_message_rule(fields: dict[str, Any], order_id: str | None, counted: bool) -> None:
    e = run(order(), msg("2024-06-14T12:00:00Z", order_id=order_id, **fields))
    assert counts(e, "perfect_order_percentage") == (int(not counted), 1)


def test_message_marked_no_response_needed_later_stops_counting() -> None:
    e = run(order(), msg("2024-06-14T12:00:00Z", sender="buyer"))
    assert counts(e, "perfect_order_percentage") == (0, 1)
    e.apply_bytes(msg("2024-06-14T13:00:00Z", sender="buyer", response_needed=False))
    assert counts(e, "perfect_order_percentage") == (1, 1)
    e.apply_bytes(msg("2024-06-14T12:30:00Z", sender="buyer"))  # older: no effect
    assert counts(e, "perfect_order_percentage") == (1, 1)


def test_two_messages_on_one_order_count_once_until_both_clear() -> None:
    e = run(order(), msg("2024-06-14T12:00:00Z", "m1", sender="buyer"),
            msg("2024-06-14T12:00:00Z", "m2", sender="buyer"))
    e.apply_bytes(msg("2024-06-14T13:00:00Z", "m1", sender="buyer", response_needed=False))
    assert counts(e, "perfect_order_percentage") == (0, 1)
    e.apply_bytes(msg("2024-06-14T13:00:00Z", "m2", sender="buyer", response_needed=False))
    assert counts(e, "perfect_order_percentage") == (1, 1)


# --- tracking, windows, zero denominators ----------------------------------------

@pytest.mark.parametrize(("tracking", "valid"), [("1Z9", True), ("", False), (None, False)])
def test_valid_tracking_rate_over_shipped_orders(tracking: str | None, valid: bool) -> None:
    e = run(order(), ev("shipment", "2024-06-14T12:00:00Z", tracking_id=tracking),
            order(order="o2"))
    assert counts(e, "valid_tracking_rate") == (int(valid), 1)


def test_tracking_on_any_shipment_counts() -> None:
    e = run(order(), ev("shipment", "2024-06-14T12:00:00Z", tracking_id=""),
            ev("shipment", "2024-06-14T14:00:00Z", tracking_id="1Z9"))
    assert counts(e, "valid_tracking_rate") == (1, 1)


@pytest.mark.parametrize(
    ("metric", "days"),
    [("perfect_order_percentage", 90), ("order_defect_rate", 60),
     ("pre_fulfillment_cancel_rate", 7), ("late_shipment_rate", 10), ("refund_rate", 60),
     ("valid_tracking_rate", 30)],
)
def test_window_covers_n_utc_days_ending_today(metric: str, days: int) -> None:
    import datetime as dt

    today = dt.date(2024, 6, 15)
    first = today - dt.timedelta(days=days - 1)
    before = first - dt.timedelta(days=1)
    lines = [
        order(at=f"{first}T00:00:00Z", order="in"),
        ev("shipment", f"{first}T01:00:00Z", order="in", tracking_id="T"),
        order(at=f"{before}T23:59:59.999999Z", order="out"),
        ev("shipment", f"{before}T23:59:59.999999Z", order="out", tracking_id="T"),
    ]
    e = run(*lines, now="2024-06-15T00:00:00Z")
    assert counts(e, metric)[1] == 1
    e.advance(parse_timestamp("2024-06-16T00:00:00Z"))  # the day rolls: "in" leaves
    assert counts(e, metric)[1] == 0


def test_zero_denominator_gives_null_value_and_breach() -> None:
    e = run(order(at="2024-05-01T00:00:00Z"))  # only in the 90- and 60-day windows
    pfc = e.seller_metrics("s1")["pre_fulfillment_cancel_rate"]
    assert (pfc.value, pfc.breached, pfc.denominator) == (None, None, 0)
    assert e.seller_metrics("s1")["valid_tracking_rate"].value is None  # nothing shipped


def test_breach_direction_per_metric() -> None:
    e = run(order(), ev("shipment", "2024-06-14T12:00:00Z", tracking_id="T"))
    ms = e.seller_metrics("s1")
    assert (ms["perfect_order_percentage"].value, ms["perfect_order_percentage"].breached) == (
        1.0, False)
    assert (ms["refund_rate"].value, ms["refund_rate"].breached) == (0.0, False)
    e.apply_bytes(ev("refund", "2024-06-14T13:00:00Z"))
    ms = e.seller_metrics("s1")
    assert ms["refund_rate"].breached is True
    assert ms["perfect_order_percentage"].breached is True


# --- time, pending orders, duplicates, conflicts ----------------------------------

def test_events_after_now_wait_for_the_clock() -> None:
    e = run(order(), ev("refund", "2024-06-15T12:00:00.000001Z"))
    assert counts(e, "refund_rate") == (0, 1)
    e.advance(parse_timestamp("2024-06-15T12:00:01Z"))
    assert counts(e, "refund_rate") == (1, 1)


def test_events_before_their_order_are_kept_until_it_arrives() -> None:
    e = Engine(now=parse_timestamp(NOW))
    assert e.apply_bytes(ev("refund", "2024-06-14T12:00:00Z")) is Outcome.PENDING
    assert e.pending_orders == 1
    assert list(e.seller_ids()) == []  # no order yet: the seller is not reported
    assert e.apply_bytes(order()) is Outcome.APPLIED
    assert e.pending_orders == 0
    assert counts(e, "refund_rate") == (1, 1)


def test_redelivered_event_is_ignored() -> None:
    neg = ev("feedback", "2024-06-14T12:00:00Z", rating=1, event_id="f1")
    pos = ev("feedback", "2024-06-14T12:00:00Z", rating=5, event_id="f2")
    e = run(order(event_id="o"), neg, pos)
    assert e.apply_bytes(neg) is Outcome.DUPLICATE  # would win the tie if applied again
    assert e.apply_bytes(order(event_id="o")) is Outcome.DUPLICATE
    assert counts(e, "order_defect_rate") == (0, 1)


def test_first_event_with_an_id_wins() -> None:
    first = ev("feedback", "2024-06-14T12:00:00Z", rating=1, event_id="same")
    second = ev("feedback", "2024-06-14T13:00:00Z", rating=5, event_id="same")
    e = run(order(), first, second)
    assert counts(e, "order_defect_rate") == (1, 1)


def test_second_order_event_for_an_order_is_rejected_and_changes_nothing() -> None:
    e = run(order(event_id="a", ship_by="2024-06-16T10:00:00Z"))
    before = e.snapshot()
    with pytest.raises(ConflictingEvent, match="already exists") as info:
        e.apply_bytes(order(event_id="b", ship_by="2024-06-14T11:00:00Z"))
    assert info.value.field == "$.order_id"
    assert e.snapshot() == before
    assert counts(e, "late_shipment_rate") == (0, 1)


def test_orders_before_the_longest_window_are_expired_and_leave_nothing() -> None:
    """An order purchased before the longest window never counts, and a seller with
    nothing else is not kept (issue #9: bounded state)."""
    e = Engine(now=parse_timestamp(NOW))
    assert e.apply_bytes(order(at="2024-01-01T00:00:00Z")) is Outcome.EXPIRED
    assert list(e.seller_ids()) == []
    assert "s1" not in e.sellers
    assert e.tracked_orders == 0


def test_state_of_old_orders_is_dropped_when_days_roll() -> None:
    e = run(order(at="2024-06-14T10:00:00Z"), ev("refund", "2024-06-14T12:00:00Z"),
            msg("2024-06-14T12:00:00Z", sender="buyer"))
    assert e.tracked_orders == 1
    assert counts(e, "refund_rate") == (1, 1)
    e.advance(parse_timestamp("2024-09-20T00:00:00Z"))
    assert e.tracked_orders == 0
    assert "s1" not in e.sellers  # orders and messages gone: the seller is freed


def test_message_outlives_its_anchor_while_its_order_counts() -> None:
    # Seen on 06-15 for an order purchased later (clock skew): the message must
    # keep counting as long as the order is in the window.
    e = Engine(now=parse_timestamp("2024-06-15T12:00:00Z"))
    e.apply_bytes(msg("2024-06-15T11:00:00Z", order_id="late", sender="buyer"))
    e.advance(parse_timestamp("2024-06-20T12:00:00Z"))
    e.apply_bytes(order(at="2024-06-20T00:00:00Z", order="late"))
    e.advance(parse_timestamp("2024-09-14T12:00:00Z"))  # message anchor day expired
    assert counts(e, "perfect_order_percentage") == (0, 1)


def test_numerator_and_denominator_per_seller_are_independent() -> None:
    e = run(order(seller="a"), order(seller="b"), ev("refund", "2024-06-14T12:00:00Z",
                                                      seller="a"))
    assert counts(e, "refund_rate", "a") == (1, 1)
    assert counts(e, "refund_rate", "b") == (0, 1)
