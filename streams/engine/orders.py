"""Per-order state, packed: the facts the rules need plus the ids already applied.

Why packed: a worker holds every order of the last 90 days of all its sellers, so
an order's state must stay well under 100 bytes. A Python object with a dozen
attributes and boxed 64-bit timestamps costs ~400; one immutable ``bytes`` costs
33 bytes of object header plus the payload, and unpacking/repacking it with a
precompiled :class:`struct.Struct` takes ~0.3 us.

Two layouts, chosen per order by the ``EXTENDED`` flag, because most orders never
see a cancellation, feedback, claim or buyer message:

* short (24 bytes): ``ship_by q, first_ship q, day i, flags H, applied H``
* extended (60 bytes): short, then ``first_seller_cancel q, feedback_at q,
  a_to_z_at q, chargeback_at q, buyer_messages I``

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
    EXTENDED,
    FEEDBACK_AT,
    FIRST_SELLER_CANCEL,
    FIRST_SHIP,
    FLAGS,
    NO_LATEST,
    NO_TIME,
    SHIP_BY,
)

SHORT: Final = struct.Struct("<qqiHH")
FULL: Final = struct.Struct("<qqiHHqqqqI")
EXTRA: Final = struct.Struct("<qqqqI")
DIGEST_SIZE: Final = 6

EXTRA_DEFAULTS: Final = [NO_TIME, NO_LATEST, NO_LATEST, NO_LATEST, 0]
_SHORT_SIZE: Final = SHORT.size
_pack_short: Final = SHORT.pack
_pack_full: Final = FULL.pack
_FULL_SIZE: Final = FULL.size

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
    return [0, NO_TIME, anchor_day, 0, 0, NO_TIME, NO_LATEST, NO_LATEST, NO_LATEST, 0]


def unpack(record: bytes) -> tuple[list[int], bytes]:
    """``(fields, digests)`` of a packed record."""
    fields = list(SHORT.unpack_from(record))
    if fields[FLAGS] & EXTENDED:
        fields.extend(EXTRA.unpack_from(record, _SHORT_SIZE))
        return fields, record[_FULL_SIZE:]
    fields.extend(EXTRA_DEFAULTS)
    return fields, record[_SHORT_SIZE:]


def pack(fields: list[int], digests: bytes) -> bytes:
    ship_by, first_ship, day, flags, applied, cancel, feedback, a_to_z, chargeback, msgs = fields
    if (
        cancel == NO_TIME
        and feedback == NO_LATEST
        and a_to_z == NO_LATEST
        and chargeback == NO_LATEST
        and not msgs
    ):
        return _pack_short(ship_by, first_ship, day, flags & ~EXTENDED, applied) + digests
    return _pack_full(
        ship_by, first_ship, day, flags | EXTENDED, applied, cancel, feedback, a_to_z,
        chargeback, msgs,
    ) + digests


def record_day(record: bytes) -> tuple[int, int]:
    """``(day, flags)`` without unpacking the rest (expiry sweeps)."""
    _, _, day, flags, _ = SHORT.unpack_from(record)
    return day, flags


def has_digest(digests: bytes, digest: bytes) -> bool:
    """Whether ``digest`` is one of the aligned 6-byte entries of ``digests``."""
    pos = digests.find(digest)
    while pos != -1:
        if pos % DIGEST_SIZE == 0:
            return True
        pos = digests.find(digest, pos + 1)
    return False


_ORDER_OF_FIELDS = (SHIP_BY, FIRST_SHIP, DAY, FLAGS, APPLIED, FIRST_SELLER_CANCEL,
                    FEEDBACK_AT, A_TO_Z_AT, CHARGEBACK_AT, BUYER_MESSAGES)
assert tuple(range(10)) == _ORDER_OF_FIELDS, "struct layouts follow the rules' field order"
