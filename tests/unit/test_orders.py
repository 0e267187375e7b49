"""Packed order records: every layout round-trips, and each order takes the
smallest layout that holds its facts (issue #14: state bytes per order)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.engine import orders as rec
from streams.engine.rules import (
    BUYER_MESSAGES,
    DELIVER_BY,
    EXTENDED,
    EXTENDED_V11,
    FEEDBACK_AT,
    FIRST_SELLER_CANCEL,
    FLAGS,
    FORMAT_V2,
    INR_AT,
    LAST_DELIVERY,
    NO_LATEST,
    NO_TIME,
)

pytestmark = pytest.mark.unit

_i64 = st.integers(-(1 << 63), (1 << 63) - 1)
_instant = st.integers(0, 253_000_000_000_000_000)  # up to year 9998, in us
_optional_first = st.one_of(st.just(NO_TIME), _instant)
_optional_latest = st.one_of(st.just(NO_LATEST), _instant)


@st.composite
def _fields(draw: st.DrawFn) -> list[int]:
    at = draw(_instant)
    return [
        draw(_i64), draw(_optional_first), at // rec.US_PER_DAY,
        # storage flags are the packer's to set; the others are facts
        draw(st.integers(0, 0xFFFF)) & ~(EXTENDED | EXTENDED_V11 | FORMAT_V2),
        draw(st.integers(0, (1 << 32) - 1)), draw(_optional_first),
        draw(_optional_latest), draw(_optional_latest), draw(_optional_latest),
        draw(st.integers(0, (1 << 32) - 1)), draw(_optional_first),
        draw(_optional_latest), draw(_optional_latest), at,
    ]


def _layout(fields: list[int]) -> int:
    extended = (fields[FIRST_SELLER_CANCEL] != NO_TIME or fields[FEEDBACK_AT] != NO_LATEST
                or fields[7] != NO_LATEST or fields[8] != NO_LATEST
                or fields[BUYER_MESSAGES] != 0)
    v11 = (fields[DELIVER_BY] != NO_TIME or fields[LAST_DELIVERY] != NO_LATEST
           or fields[INR_AT] != NO_LATEST)
    if v11:
        return rec.FULL_V11.size if extended else rec.SHORT_V11.size
    return rec.FULL.size if extended else rec.SHORT.size


@given(_fields(), st.lists(st.binary(min_size=6, max_size=6), max_size=4))
def test_every_layout_round_trips_in_its_smallest_size(fields: list[int],
                                                        digests: list[bytes]) -> None:
    joined = b"".join(digests)
    record = rec.pack(fields, joined)
    assert len(record) == _layout(fields) + len(joined)
    back, back_digests = rec.unpack(record)
    stored = back[FLAGS] & (EXTENDED | EXTENDED_V11 | FORMAT_V2)
    assert stored & FORMAT_V2
    back[FLAGS] &= ~(EXTENDED | EXTENDED_V11 | FORMAT_V2)
    assert back == fields
    assert back_digests == joined
    assert rec.record_day(record) == (fields[2], fields[FLAGS] | stored)
    assert rec.migrate(record) == record  # a v2 record is never converted again


def test_a_delivered_order_without_extended_facts_takes_54_bytes() -> None:
    """The common v1.1 order (promise, shipment, delivery) no longer carries the
    36 bytes of cancellation, feedback, claim and message fields."""
    fields = rec.new_fields(19_800)
    fields[DELIVER_BY] = 19_803 * rec.US_PER_DAY
    fields[LAST_DELIVERY] = 19_802 * rec.US_PER_DAY
    record = rec.pack(fields, b"")
    assert len(record) == 54
    assert rec.unpack(record)[0][FLAGS] & (EXTENDED | EXTENDED_V11) == EXTENDED_V11
    fields[FEEDBACK_AT] = 19_804 * rec.US_PER_DAY
    assert len(rec.pack(fields, b"")) == 90
