"""What makes an order imperfect: the per-order rules, in one screen.

An order's state is a handful of facts (a list of ints) that events fold into
(see :mod:`streams.engine.orders`). :func:`evaluate` turns those facts, as of time
``now``, into a bit mask of *predicates*: "is this order late?", "does it carry a
defect?", ... The seller windows count orders per predicate, and every metric in the
catalog is one predicate over another (see :mod:`streams.engine.catalog`).

Sources: the Perfect Order Percentage post (seed 000) for what makes an order
imperfect and its exceptions; the seller-performance article (seed 004) for
pre-fulfillment cancellation and late shipment. Issue #2 pins the details.
"""

from __future__ import annotations

from typing import Final

# --- facts: the few things the rules need, kept per order ----------------------

NO_TIME: Final = (1 << 63) - 1
"""Sentinel for "never" in first-X times (greater than any real instant)."""
NO_LATEST: Final = -(1 << 63)
"""Sentinel for "no event yet" in latest-X times (less than any real instant)."""

# An order's facts are a list of ints (packed by streams.engine.orders); indexes:
SHIP_BY: Final = 0  # us; meaningful only with HAS_ORDER
FIRST_SHIP: Final = 1  # us of the earliest shipment, or NO_TIME
DAY: Final = 2  # purchase day (or, while pending, the expiry anchor day)
FLAGS: Final = 3  # fact flags below
APPLIED: Final = 4  # predicate mask currently counted in the windows
FIRST_SELLER_CANCEL: Final = 5  # us of the earliest seller cancellation, or NO_TIME
FEEDBACK_AT: Final = 6  # occurred_at of the feedback in force, or NO_LATEST
A_TO_Z_AT: Final = 7  # occurred_at of the A-to-z status in force, or NO_LATEST
CHARGEBACK_AT: Final = 8  # occurred_at of the chargeback status in force, or NO_LATEST
BUYER_MESSAGES: Final = 9  # messages currently counting against this order
DELIVER_BY: Final = 10  # us of the promised latest delivery, or NO_TIME (none promised)
LAST_DELIVERY: Final = 11  # us of the latest delivery applied, or NO_LATEST
INR_AT: Final = 12  # occurred_at of the item-not-received status in force, or NO_LATEST
PURCHASED_AT: Final = 13  # us of the purchase (with HAS_ORDER); else DAY's midnight,
# or, for a buyer-message record, its sending instant. DAY is always its UTC day.

# A buyer message awaiting a seller's response is a record of its own (flag
# RESPONSE_REC, never HAS_ORDER), counted by the day of the message: its fields
# reuse SHIP_BY for the response deadline and FIRST_SHIP for the earliest reply.
RESPONSE_DEADLINE: Final = SHIP_BY
FIRST_REPLY: Final = FIRST_SHIP
SENT_AT: Final = PURCHASED_AT

# Fact flags (bits of fields[FLAGS]).
HAS_ORDER: Final = 1 << 0  # the ``order`` event arrived; until then the order is pending
ANY_CANCEL: Final = 1 << 1  # any cancellation, buyer or seller
REFUNDED_F: Final = 1 << 2  # any refund
TRACKED_F: Final = 1 << 3  # some shipment carried a non-empty tracking_id
FB_NEGATIVE: Final = 1 << 4  # latest feedback: rating <= 2 and not removed
ATOZ_OPEN: Final = 1 << 5  # latest A-to-z status is opened or granted
CHARGEBACK_OPEN: Final = 1 << 6  # latest chargeback status is opened or granted
EXTENDED: Final = 1 << 7  # storage only: the record carries the extended fields
RETURNED_F: Final = 1 << 8  # some return
INR_OPEN: Final = 1 << 9  # latest item-not-received status is opened or granted
ATOZ_GRANTED: Final = 1 << 10  # latest A-to-z status is granted
CHARGEBACK_GRANTED: Final = 1 << 11  # latest chargeback status is granted
INR_GRANTED: Final = 1 << 12  # latest item-not-received status is granted
RESPONSE_REC: Final = 1 << 13  # the record is a buyer message awaiting a response
EXTENDED_V11: Final = 1 << 14  # storage only: the record carries the v1.1 fields too
# (after the extended ones with EXTENDED, else right after the short ones)
FORMAT_V2: Final = 1 << 15  # storage only: the v1.1 record format (see orders.migrate)

ANY_GRANTED: Final = ATOZ_GRANTED | CHARGEBACK_GRANTED | INR_GRANTED


# --- predicates: what the windows count ---------------------------------------

# Bits ordered by frequency: the common predicates in the low bits keep the lane
# vectors (streams.engine.windows) of typical sellers short.
ORDER: Final = 1 << 0
PERFECT: Final = 1 << 1
SHIPPED: Final = 1 << 2
VALID_TRACKING: Final = 1 << 3
LATE_SHIPMENT: Final = 1 << 4
DEFECT: Final = 1 << 5
NEGATIVE_FEEDBACK: Final = 1 << 6
REFUNDED: Final = 1 << 7
BUYER_MESSAGE: Final = 1 << 8
SELLER_CANCELLATION: Final = 1 << 9
PRE_FULFILLMENT_CANCELLATION: Final = 1 << 10
A_TO_Z_CLAIM: Final = 1 << 11
CHARGEBACK: Final = 1 << 12
# v1.1 (issue #12)
DELIVERY_DUE: Final = 1 << 13
ON_TIME_DELIVERY: Final = 1 << 14
RETURNED: Final = 1 << 15
ITEM_NOT_RECEIVED: Final = 1 << 16
CLAIM_GRANTED: Final = 1 << 17
TRANSACTION_DEFECT: Final = 1 << 18
# Buyer-message records (RESPONSE_REC), never with ORDER:
RESPONSE_EXPECTED: Final = 1 << 19  # a buyer message needing a response (tracks the seller)
RESPONSE_DUE: Final = 1 << 20  # answered, or its deadline passed
RESPONDED_ON_TIME: Final = 1 << 21  # answered by the deadline

PREDICATES: Final[dict[str, int]] = {
    "order": ORDER,
    "perfect": PERFECT,
    "negative_feedback": NEGATIVE_FEEDBACK,
    "a_to_z_claim": A_TO_Z_CLAIM,
    "chargeback": CHARGEBACK,
    "seller_cancellation": SELLER_CANCELLATION,
    "pre_fulfillment_cancellation": PRE_FULFILLMENT_CANCELLATION,
    "late_shipment": LATE_SHIPMENT,
    "refunded": REFUNDED,
    "buyer_message": BUYER_MESSAGE,
    "defect": DEFECT,
    "shipped": SHIPPED,
    "valid_tracking": VALID_TRACKING,
    "delivery_due": DELIVERY_DUE,
    "on_time_delivery": ON_TIME_DELIVERY,
    "returned": RETURNED,
    "item_not_received": ITEM_NOT_RECEIVED,
    "claim_granted": CLAIM_GRANTED,
    "transaction_defect": TRANSACTION_DEFECT,
    "response_expected": RESPONSE_EXPECTED,
    "response_due": RESPONSE_DUE,
    "responded_on_time": RESPONDED_ON_TIME,
}
"""Predicate names as the catalog and the exporter spell them, to their bits."""

RESPONSE_PREDICATES: Final = frozenset({"response_expected", "response_due",
                                        "responded_on_time"})
"""Predicates of buyer-message records: they count messages, not orders."""

NUMERATORS_OF: Final[dict[str, frozenset[str]]] = {
    "order": frozenset(PREDICATES) - RESPONSE_PREDICATES,
    "shipped": frozenset({"shipped", "valid_tracking"}),
    "delivery_due": frozenset({"delivery_due", "on_time_delivery"}),
    "response_due": frozenset({"response_due", "responded_on_time"}),
}
"""Valid denominators, each with the predicates that imply it (and so may be its
numerator: a rate's numerator must count a subset of its denominator)."""

DEFECT_CAUSES: Final = NEGATIVE_FEEDBACK | A_TO_Z_CLAIM | CHARGEBACK
"""Amazon's Order Defect Rate: negative feedback, A-to-z claims, chargebacks."""

IMPERFECT_CAUSES: Final = (
    DEFECT_CAUSES | SELLER_CANCELLATION | LATE_SHIPMENT | REFUNDED | BUYER_MESSAGE
)
"""The seven ways an order stops being perfect (seed 000)."""

CAUSE_NAMES: Final[tuple[str, ...]] = (
    "negative_feedback",
    "a_to_z_claim",
    "chargeback",
    "seller_cancellation",
    "late_shipment",
    "refunded",
    "buyer_message",
)


def evaluate(f: list[int], now: int) -> int:
    """The predicates that hold for one order (its facts ``f``) as of ``now``.

    A pending order (no ``order`` event yet) satisfies nothing: it is not counted
    anywhere until its purchase is known.
    """
    flags = f[FLAGS]
    if not flags & HAS_ORDER:
        if flags & RESPONSE_REC:
            return _evaluate_response(f, now)
        return 0
    mask = ORDER
    if flags & FB_NEGATIVE:
        mask |= NEGATIVE_FEEDBACK
    if flags & ATOZ_OPEN:
        mask |= A_TO_Z_CLAIM
    if flags & CHARGEBACK_OPEN:
        mask |= CHARGEBACK
    first_ship = f[FIRST_SHIP]
    # Buyer-initiated cancellations never count (this covers pending orders the
    # buyer cancels); only the seller's do.
    if f[FIRST_SELLER_CANCEL] != NO_TIME:
        mask |= SELLER_CANCELLATION
        if f[FIRST_SELLER_CANCEL] < first_ship:  # NO_TIME when unshipped
            mask |= PRE_FULFILLMENT_CANCELLATION
    if first_ship != NO_TIME:
        mask |= SHIPPED
        if flags & TRACKED_F:
            mask |= VALID_TRACKING
        if first_ship > f[SHIP_BY]:  # exactly at ship_by is on time
            mask |= LATE_SHIPMENT
    elif f[SHIP_BY] < now and not flags & ANY_CANCEL:
        mask |= LATE_SHIPMENT  # never confirmed and the deadline has passed
    if flags & REFUNDED_F:
        mask |= REFUNDED
    if f[BUYER_MESSAGES]:
        mask |= BUYER_MESSAGE
    if mask & DEFECT_CAUSES:
        mask |= DEFECT
    if not mask & IMPERFECT_CAUSES:
        mask |= PERFECT
    # v1.1: none of these touch the six v1 metrics (an item-not-received claim is
    # no defect, a return no refund).
    if flags & RETURNED_F:
        mask |= RETURNED
    if flags & INR_OPEN:
        mask |= ITEM_NOT_RECEIVED
    if flags & ANY_GRANTED:
        mask |= CLAIM_GRANTED | TRANSACTION_DEFECT
    elif mask & SELLER_CANCELLATION:
        mask |= TRANSACTION_DEFECT
    deliver_by = f[DELIVER_BY]
    # On-time delivery counts a promised order shipped with tracking and never
    # cancelled, once delivered (the latest delivery decides: a later package can
    # still make it late) or once the promise passed (strictly) undelivered.
    if deliver_by != NO_TIME and flags & TRACKED_F and not flags & ANY_CANCEL:
        delivered = f[LAST_DELIVERY]
        if delivered != NO_LATEST:
            mask |= DELIVERY_DUE
            if delivered <= deliver_by:  # exactly at the promise is on time
                mask |= ON_TIME_DELIVERY
        elif deliver_by < now:
            mask |= DELIVERY_DUE
    return mask


def _evaluate_response(f: list[int], now: int) -> int:
    """A buyer message needing a response: due once answered or once its deadline
    passed (strictly); on time when the earliest reply is at or before the deadline
    (a reply stamped before the question included)."""
    mask = RESPONSE_EXPECTED
    reply = f[FIRST_REPLY]
    if reply != NO_TIME:
        mask |= RESPONSE_DUE
        if reply <= f[RESPONSE_DEADLINE]:
            mask |= RESPONDED_ON_TIME
    elif f[RESPONSE_DEADLINE] < now:
        mask |= RESPONSE_DUE
    return mask


def late_deadline(f: list[int]) -> int | None:
    """The instant after which :func:`evaluate` would turn this order late by
    itself, with no new event; ``None`` when time alone cannot change it."""
    flags = f[FLAGS]
    if flags & HAS_ORDER and f[FIRST_SHIP] == NO_TIME and not flags & ANY_CANCEL:
        return f[SHIP_BY]
    return None


def deadlines(f: list[int]) -> list[int]:
    """Every instant after which :func:`evaluate` would change by itself (an
    unshipped order turning late, an undelivered one coming due, an unanswered
    message coming due): the engine sets a timer for each."""
    flags = f[FLAGS]
    if flags & RESPONSE_REC:
        return [f[RESPONSE_DEADLINE]] if f[FIRST_REPLY] == NO_TIME else []
    if not flags & HAS_ORDER or flags & ANY_CANCEL:
        return []
    out = [f[SHIP_BY]] if f[FIRST_SHIP] == NO_TIME else []
    if f[DELIVER_BY] != NO_TIME and flags & TRACKED_F and f[LAST_DELIVERY] == NO_LATEST:
        out.append(f[DELIVER_BY])
    return out
