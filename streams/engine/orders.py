"""Per-order state, packed: the facts the rules need plus the ids already applied.

Why packed: a worker holds every order of the last 90 days of all its sellers, so
an order's state must stay well under 100 bytes. A Python object with a dozen
attributes and boxed 64-bit timestamps costs ~400; one immutable ``bytes`` costs
33 bytes of object header plus the payload, and unpacking/repacking it with a
precompiled :class:`struct.Struct` takes ~0.3 us.

Two layouts, chosen per order by the ``EXTENDED`` flag, because most orders never
see a cancellation, feedback, claim or buyer message:

* short (30 bytes): ``ship_by q, first_ship q, at_low I, flags H, applied I,
  at_high i``
* extended (66 bytes): short, then ``first_seller_cancel q, feedback_at q,
  a_to_z_at q, chargeback_at q, buyer_messages I``
* short v1.1 (54 bytes, flag ``EXTENDED_V11`` alone): short, then ``deliver_by q,
  last_delivery q, inr_at q`` -- an order with a delivery promise, a delivery or
  an item-not-received claim, and none of the extended facts: most v1.1 orders
  (issue #14: 75 % of the benchmark log's records, 36 bytes each saved)
* v1.1 (90 bytes, flags ``EXTENDED | EXTENDED_V11``): extended, then the three
  v1.1 fields

followed by the 6-byte BLAKE2b digest of every ``event_id`` applied. Fields:

* ``ship_by``: purchase promise, us (0 while pending);
* ``first_ship`` / ``first_seller_cancel``: earliest such event, us, or ``NO_TIME``;
* ``feedback_at`` / ``a_to_z_at`` / ``chargeback_at``: ``occurred_at`` of the event
  in force ("latest wins"), or ``NO_LATEST``;
* ``at``: the purchase instant, us (issue #13: explain lists an order's
  ``purchased_at`` and sorts by it); while pending, midnight of the day the record
  was created, which anchors its expiry; a buyer-message record's sending instant.
  Unpacked, it gives two fields: ``PURCHASED_AT`` and its UTC ``DAY``. Split in
  two halves so that ``flags`` sits at offset 20 as in the v1 layout, where
  :func:`migrate` tells the formats apart;
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
    PURCHASED_AT,
    SHIP_BY,
)

US_PER_DAY: Final = 86_400_000_000

# Since v1.1 (issues #12, #13) ``applied`` is 32 bits (22 predicates), the day is
# the purchase instant, and every record carries FORMAT_V2; a record without it is
# in the v1 layout (``day i``, ``applied`` 16 bits, no v1.1 fields) and is
# converted once, when restored (:func:`migrate`).
SHORT: Final = struct.Struct("<qqIHIi")
FULL: Final = struct.Struct("<qqIHIiqqqqI")
EXTRA: Final = struct.Struct("<qqqqI")
# v1.1 facts: deliver_by, last_delivery, inr_at, after the extended fields.
FULL_V11: Final = struct.Struct("<qqIHIiqqqqIqqq")
EXTRA_V11: Final = struct.Struct("<qqq")
SHORT_V11: Final = struct.Struct("<qqIHIiqqq")
HEAD: Final = struct.Struct("<16xIHIi")  # at_low, flags, applied, at_high
V1_PREFIX: Final = struct.Struct("<16xiH")  # day and flags; flags at 20 in both formats
_LOW: Final = 0xFFFFFFFF
V1_SHORT: Final = struct.Struct("<qqiHH")
V1_FULL: Final = struct.Struct("<qqiHHqqqqI")
DIGEST_SIZE: Final = 6

EXTRA_DEFAULTS: Final = [NO_TIME, NO_LATEST, NO_LATEST, NO_LATEST, 0]
V11_DEFAULTS: Final = [NO_TIME, NO_LATEST, NO_LATEST]
_SHORT_SIZE: Final = SHORT.size
_pack_short: Final = SHORT.pack
_pack_full: Final = FULL.pack
_pack_v11: Final = FULL_V11.pack
_pack_short_v11: Final = SHORT_V11.pack
_SHORT_V11_SIZE: Final = SHORT_V11.size
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
            NO_TIME, NO_LATEST, NO_LATEST, anchor_day * US_PER_DAY]


def set_instant(fields: list[int], at: int) -> None:
    """Set ``PURCHASED_AT`` (or a message's ``SENT_AT``) and the ``DAY`` it falls on."""
    fields[PURCHASED_AT] = at
    fields[DAY] = at // US_PER_DAY


def unpack(record: bytes) -> tuple[list[int], bytes]:
    """``(fields, digests)`` of a packed record."""
    ship_by, first_ship, low, flags, applied, high = SHORT.unpack_from(record)
    at = high << 32 | low
    fields = [ship_by, first_ship, at // US_PER_DAY, flags, applied]
    if flags & EXTENDED_V11:
        if not flags & EXTENDED:
            fields.extend(EXTRA_DEFAULTS)
            fields.extend(EXTRA_V11.unpack_from(record, _SHORT_SIZE))
            fields.append(at)
            return fields, record[_SHORT_V11_SIZE:]
        fields.extend(EXTRA.unpack_from(record, _SHORT_SIZE))
        fields.extend(EXTRA_V11.unpack_from(record, _FULL_SIZE))
        fields.append(at)
        return fields, record[_V11_SIZE:]
    if flags & EXTENDED:
        fields.extend(EXTRA.unpack_from(record, _SHORT_SIZE))
        fields.extend(V11_DEFAULTS)
        fields.append(at)
        return fields, record[_FULL_SIZE:]
    fields.extend(EXTRA_DEFAULTS)
    fields.extend(V11_DEFAULTS)
    fields.append(at)
    return fields, record[_SHORT_SIZE:]


def pack(fields: list[int], digests: bytes) -> bytes:
    """The record of ``fields`` (``DAY`` is not stored: it is ``PURCHASED_AT``'s)."""
    (ship_by, first_ship, _day, flags, applied, cancel, feedback, a_to_z, chargeback,
     msgs, deliver_by, delivered, inr_at, at) = fields
    low, high = at & _LOW, at >> 32
    flags = (flags & ~(EXTENDED | EXTENDED_V11)) | FORMAT_V2
    short = (
        cancel == NO_TIME
        and feedback == NO_LATEST
        and a_to_z == NO_LATEST
        and chargeback == NO_LATEST
        and not msgs
    )
    if deliver_by != NO_TIME or delivered != NO_LATEST or inr_at != NO_LATEST:
        if short:
            return _pack_short_v11(
                ship_by, first_ship, low, flags | EXTENDED_V11, applied, high, deliver_by,
                delivered, inr_at,
            ) + digests
        return _pack_v11(
            ship_by, first_ship, low, flags | EXTENDED | EXTENDED_V11, applied, high, cancel,
            feedback, a_to_z, chargeback, msgs, deliver_by, delivered, inr_at,
        ) + digests
    if short:
        return _pack_short(ship_by, first_ship, low, flags, applied, high) + digests
    return _pack_full(
        ship_by, first_ship, low, flags | EXTENDED, applied, high, cancel, feedback, a_to_z,
        chargeback, msgs,
    ) + digests


def record_day(record: bytes) -> tuple[int, int]:
    """``(day, flags)`` without unpacking the rest (expiry sweeps)."""
    low, flags, _, high = HEAD.unpack_from(record)
    return (high << 32 | low) // US_PER_DAY, flags


def day_applied(record: bytes) -> tuple[int, int]:
    """``(day, applied)`` without unpacking the rest (window rolls)."""
    low, _, applied, high = HEAD.unpack_from(record)
    return (high << 32 | low) // US_PER_DAY, applied


def migrate(record: bytes) -> bytes:
    """A record in the current format. One written before v1.1 is converted; its
    purchase instant was not kept, so it becomes midnight of its purchase day."""
    if V1_PREFIX.unpack_from(record)[1] & FORMAT_V2:
        return record
    fields = list(V1_SHORT.unpack_from(record))
    if fields[FLAGS] & EXTENDED:
        fields = list(V1_FULL.unpack_from(record))
        digests = record[V1_FULL.size:]
    else:
        fields.extend(EXTRA_DEFAULTS)
        digests = record[V1_SHORT.size:]
    fields.extend(V11_DEFAULTS)
    fields.append(fields[DAY] * US_PER_DAY)
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
                    LAST_DELIVERY, INR_AT, PURCHASED_AT)
assert tuple(range(14)) == _ORDER_OF_FIELDS, "struct layouts follow the rules' field order"
