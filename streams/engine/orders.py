"""Per-order state, packed: the facts the rules need plus the ids already applied.

Why packed: a seller can hold hundreds of thousands of orders in its 90-day window
and a worker many sellers, so an order's state must stay near 100 bytes. A Python
object with a dozen attributes and boxed 64-bit timestamps costs ~400; one
immutable ``bytes`` of 60 fixed bytes plus 6 bytes per applied event costs ~33+60+6n.
Unpacking and repacking with a precompiled :class:`struct.Struct` takes ~0.3 us.

Layout (little endian):

====  ======  ==============================================================
q     ship_by            purchase promise, us (0 while pending)
q     first_ship         earliest shipment, us, or ``NO_TIME``
q     first_seller_cancel earliest seller cancellation, us, or ``NO_TIME``
q     feedback_at        occurred_at of the feedback in force, or ``NO_LATEST``
q     a_to_z_at          occurred_at of the A-to-z status in force, or ``NO_LATEST``
q     chargeback_at      occurred_at of the chargeback status in force, or ``NO_LATEST``
i     day                purchase day (UTC days since epoch); while pending, the
                         day the record was created (its expiry anchor)
H     flags              fact flags from :mod:`streams.engine.rules`
H     applied            predicate mask currently counted in the seller's windows
I     buyer_messages     messages currently counting against this order
6s*   event ids          6-byte BLAKE2b digests of every event_id applied
====  ======  ==============================================================

Dedup by digest, not by the id itself: 6 bytes instead of ~85 for a UUID string.
Digests are compared only within one order (that is where an at-least-once
redelivery lands), so a false match needs two of one order's few ids to collide in
48 bits: about 1e-14 per pair.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Final

from streams.engine.rules import NO_LATEST, NO_TIME, OrderFacts

HEADER: Final = struct.Struct("<qqqqqqiHHI")
HEADER_SIZE: Final = HEADER.size
DIGEST_SIZE: Final = 6

# Field positions in the unpacked header list.
SHIP_BY, FIRST_SHIP, FIRST_SELLER_CANCEL, FEEDBACK_AT, A_TO_Z_AT, CHARGEBACK_AT = range(6)
DAY, FLAGS, APPLIED, BUYER_MESSAGES = range(6, 10)

_blake2b = hashlib.blake2b


def event_digest(event_id: str) -> bytes:
    """Stable (unlike ``hash()``) 48-bit digest of an event id, for dedup."""
    return _blake2b(event_id.encode(), digest_size=DIGEST_SIZE).digest()


def new_fields(anchor_day: int) -> list[int]:
    """Header fields of an order nothing is known about yet."""
    return [0, NO_TIME, NO_TIME, NO_LATEST, NO_LATEST, NO_LATEST, anchor_day, 0, 0, 0]


def unpack(record: bytes) -> list[int]:
    return list(HEADER.unpack_from(record))


def pack(fields: list[int], digests: bytes) -> bytes:
    return HEADER.pack(*fields) + digests


def digests_of(record: bytes) -> bytes:
    return record[HEADER_SIZE:]


def has_digest(digests: bytes, digest: bytes) -> bool:
    """Whether ``digest`` is one of the aligned 6-byte entries of ``digests``."""
    pos = digests.find(digest)
    while pos != -1:
        if pos % DIGEST_SIZE == 0:
            return True
        pos = digests.find(digest, pos + 1)
    return False


def facts(fields: list[int]) -> OrderFacts:
    return OrderFacts(
        ship_by=fields[SHIP_BY],
        first_ship=fields[FIRST_SHIP],
        first_seller_cancel=fields[FIRST_SELLER_CANCEL],
        flags=fields[FLAGS],
        buyer_messages=fields[BUYER_MESSAGES],
    )
