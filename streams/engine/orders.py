"""Per-order state, packed: the facts the rules need plus the ids already applied.

Why packed: a worker holds every order of the last 90 days of all its sellers, so
an order's state must stay well under 100 bytes. A Python object with a dozen
attributes and boxed 64-bit timestamps costs ~400; one immutable ``bytes`` costs
33 bytes of object header plus the payload, and unpacking/repacking it with a
precompiled :class:`struct.Struct` takes ~0.3 us.

Two layouts, chosen per order by the ``EXTENDED`` flag, because most orders never
see a cancellation, feedback, claim or buyer message:

* short (26 bytes): ``ship_by q, first_ship q, day i, flags H, applied I``
* extended (62 bytes): short, then ``first_seller_cancel q, feedback_at q,
  a_to_z_at q, chargeback_at q, buyer_messages I``
* v1.1 (86 bytes, flag ``EXTENDED_V11``): extended, then ``deliver_by q,
  last_delivery q, inr_at q`` -- an order with a delivery promise, a delivery or
  an item-not-received claim (records written before v1.1 keep their layout)

followed by the 6-byte BLAKE2b digest of every ``event_id`` applied. Fields:

* ``ship_by``: purchase promise, us (0 while pending);
* ``first_ship`` / ``first_seller_cancel``: earliest such event, us, or ``NO_TIME``;
* ``feedback_at`` / ``a_to_z_at`` / ``chargeback_at``: ``occurred_at`` of the event
  in force ("latest wins"), or ``NO_LATEST``;
* ``day``: purchase day (UTC days since epoch); while pending, the day the record
  was created, which anchors its expiry;
* ``flags``: fact flags from :mod:`streams.engine.rules`; ``applied``: predicate
  mask currently counted in the seller's windows; ``buyer_messages``: messages
  currently counting against the order.

Dedup by digest, not by the id itself: 6 bytes instead of ~85 for a UUID string.
Digests are compared within one order (that is where an at-least-once redelivery
lands), so a false match needs two of one order's few ids to collide in 48 bits:
about 4e-15 per pair.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Final

from streams.engine.rules import (
    A_TO_Z_AT,
    APPLIED,
    BUYER_MESSAGES,
    CHARGEBACK_AT,
    DAY,
    DELIVER_BY,
    EXTENDED,
    EXTENDED_V11,
    FEEDBACK_AT,
    FIRST_SELLER_CANCEL,
    FIRST_SHIP,
    FLAGS,
    FORMAT_V2,
    INR_AT,
    LAST_DELIVERY,
    NO_LATEST,
    NO_TIME,
    SHIP_BY,
)

# Since v1.1 (issue #12) ``applied`` is 32 bits (22 predicates) and every record
# carries FORMAT_V2; a record without it is in the v1 layout (``applied`` 16
# bits, no v1.1 fields) and is converted once, when restored (:func:`migrate`).
SHORT: Final = struct.Struct("<qqiHI")
FULL: Final = struct.Struct("<qqiHIqqqqI")
EXTRA: Final = struct.Struct("<qqqqI")
# v1.1 facts: deliver_by, last_delivery, inr_at, after the extended fields.
FULL_V11: Final = struct.Struct("<qqiHIqqqqIqqq")
EXTRA_V11: Final = struct.Struct("<qqq")
PREFIX: Final = struct.Struct("<qqiH")  # what both formats share: day and flags
V1_SHORT: Final = struct.Struct("<qqiHH")
V1_FULL: Final = struct.Struct("<qqiHHqqqqI")
DIGEST_SIZE: Final = 6

EXTRA_DEFAULTS: Final = [NO_TIME, NO_LATEST, NO_LATEST, NO_LATEST, 0]
V11_DEFAULTS: Final = [NO_TIME, NO_LATEST, NO_LATEST]
_SHORT_SIZE: Final = SHORT.size
_pack_short: Final = SHORT.pack
_pack_full: Final = FULL.pack
_pack_v11: Final = FULL_V11.pack
_FULL_SIZE: Final = FULL.size
_V11_SIZE: Final = FULL_V11.size

__all__ = [
    "APPLIED",
    "A_TO_Z_AT",
    "BUYER_MESSAGES",
    "CHARGEBACK_AT",
    "DAY",
    "FEEDBACK_AT",
    "FIRST_SELLER_CANCEL",
    "FIRST_SHIP",
    "FLAGS",
    "SHIP_BY",
    "event_digest",
    "has_digest",
    "new_fields",
    "pack",
    "record_day",
    "unpack",
]

_blake2b = hashlib.blake2b


def event_digest(event_id: str) -> bytes:
    """Stable (unlike ``hash()``) 48-bit digest of an event id, for dedup."""
    return _blake2b(event_id.encode(), digest_size=DIGEST_SIZE).digest()


def new_fields(anchor_day: int) -> list[int]:
    """Fields of an order nothing is known about yet (see rules for the order)."""
    return [0, NO_TIME, anchor_day, 0, 0, NO_TIME, NO_LATEST, NO_LATEST, NO_LATEST, 0,
            NO_TIME, NO_LATEST, NO_LATEST]


def unpack(record: bytes) -> tuple[list[int], bytes]:
    """``(fields, digests)`` of a packed record."""
    fields = list(SHORT.unpack_from(record))
    flags = fields[FLAGS]
    if flags & EXTENDED_V11:
        fields.extend(EXTRA.unpack_from(record, _SHORT_SIZE))
        fields.extend(EXTRA_V11.unpack_from(record, _FULL_SIZE))
        return fields, record[_V11_SIZE:]
    if flags & EXTENDED:
        fields.extend(EXTRA.unpack_from(record, _SHORT_SIZE))
        fields.extend(V11_DEFAULTS)
        return fields, record[_FULL_SIZE:]
    fields.extend(EXTRA_DEFAULTS)
    fields.extend(V11_DEFAULTS)
    return fields, record[_SHORT_SIZE:]


def pack(fields: list[int], digests: bytes) -> bytes:
    (ship_by, first_ship, day, flags, applied, cancel, feedback, a_to_z, chargeback, msgs,
     deliver_by, delivered, inr_at) = fields
    flags = (flags & ~(EXTENDED | EXTENDED_V11)) | FORMAT_V2
    if deliver_by != NO_TIME or delivered != NO_LATEST or inr_at != NO_LATEST:
        return _pack_v11(
            ship_by, first_ship, day, flags | EXTENDED | EXTENDED_V11, applied, cancel,
            feedback, a_to_z, chargeback, msgs, deliver_by, delivered, inr_at,
        ) + digests
    if (
        cancel == NO_TIME
        and feedback == NO_LATEST
        and a_to_z == NO_LATEST
        and chargeback == NO_LATEST
        and not msgs
    ):
        return _pack_short(ship_by, first_ship, day, flags, applied) + digests
    return _pack_full(
        ship_by, first_ship, day, flags | EXTENDED, applied, cancel, feedback, a_to_z,
        chargeback, msgs,
    ) + digests


def record_day(record: bytes) -> tuple[int, int]:
    """``(day, flags)`` without unpacking the rest (expiry sweeps); either format."""
    _, _, day, flags = PREFIX.unpack_from(record)
    return day, flags


def migrate(record: bytes) -> bytes:
    """A record in the current format (one written before v1.1 is converted)."""
    if PREFIX.unpack_from(record)[3] & FORMAT_V2:
        return record
    fields = list(V1_SHORT.unpack_from(record))
    if fields[FLAGS] & EXTENDED:
        fields = list(V1_FULL.unpack_from(record))
        digests = record[V1_FULL.size:]
    else:
        fields.extend(EXTRA_DEFAULTS)
        digests = record[V1_SHORT.size:]
    fields.extend(V11_DEFAULTS)
    return pack(fields, digests)


def has_digest(digests: bytes, digest: bytes) -> bool:
    """Whether ``digest`` is one of the aligned 6-byte entries of ``digests``."""
    pos = digests.find(digest)
    while pos != -1:
        if pos % DIGEST_SIZE == 0:
            return True
        pos = digests.find(digest, pos + 1)
    return False


_ORDER_OF_FIELDS = (SHIP_BY, FIRST_SHIP, DAY, FLAGS, APPLIED, FIRST_SELLER_CANCEL,
                    FEEDBACK_AT, A_TO_Z_AT, CHARGEBACK_AT, BUYER_MESSAGES, DELIVER_BY,
                    LAST_DELIVERY, INR_AT)
assert tuple(range(13)) == _ORDER_OF_FIELDS, "struct layouts follow the rules' field order"
