"""Engine state as changelog records, of any size.

The worker persists the engine's snapshot *chunks* (a seller's purchase day, or
its META: messages, held events, flags) to the state table's changelog, one record
per chunk, keyed ``seller \\x1f day`` or ``seller \\x1f m``. A compacted topic keeps
the latest record per key, and Faust's recovery reads it back.

A chunk can outgrow the topic's ``max.message.bytes`` with perfectly valid input
(one seller with ~60k orders on one UTC day at the 1 MB default), and a broker that
refuses a record used to kill the worker on every restart. So a chunk that does not
fit is written as *fragments* plus a small *manifest* under the chunk's own key:

* fragments go to ``key \\x1f S:I`` — slot ``S`` (0 or 1), index ``I``;
* the manifest (``MAGIC`` + msgpack ``[slot, count, length, sha256]``) is written
  **after** its fragments, in the same partition, so a reader that sees it sees
  them (a producer keeps the order of one partition's records);
* consecutive writes of one chunk alternate slots: a crash after some fragments of
  the new version leaves the old manifest pointing at the old, complete slot, and
  the events behind the new version were not acked, so they are replayed. This is
  what makes a split write as atomic as a single record.
* fragments no longer referenced get tombstones after the manifest that replaced
  them; a chunk that fits again, or is deleted, tombstones all of its fragments.

Chunks that fit — nearly all of them — are written exactly as before: the format
of existing changelogs is unchanged.
"""

from __future__ import annotations

import hashlib
import logging
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

import msgspec

log = logging.getLogger("popstream.changelog")

SEP: Final = b"\x1f"
_META_TAG: Final = b"m"
PARTITION: Final = struct.Struct(">H")
# 0xc1 is the one byte msgpack never uses, so no plain chunk (a msgpack map or
# array) can begin with it.
MAGIC: Final = b"\xc1PSF"
# Room left in a record for its key, the record and batch framing and headers.
RECORD_OVERHEAD: Final = 512
DEFAULT_RECORD_LIMIT: Final = 1_000_000  # the broker's default, until the topic's is read

ChunkId = int | None
Record = tuple[int, bytes, bytes | None]  # (partition, key, value or tombstone)


class _Manifest(msgspec.Struct, array_like=True):
    slot: int
    count: int
    length: int
    sha256: bytes


_encode_manifest = msgspec.msgpack.Encoder().encode
_decode_manifest = msgspec.msgpack.Decoder(_Manifest).decode


def chunk_key(seller_id: str, chunk: ChunkId) -> bytes:
    """Table key of a snapshot chunk: ``seller \\x1f day`` or ``seller \\x1f m``."""
    return seller_id.encode() + SEP + (_META_TAG if chunk is None else str(chunk).encode())


def parse_chunk_key(key: bytes) -> tuple[str, ChunkId]:
    seller, _, chunk = key.rpartition(SEP)
    return seller.decode(), None if chunk == _META_TAG else int(chunk)


def fragment_key(key: bytes, slot: int, index: int) -> bytes:
    return key + SEP + f"{slot}:{index}".encode()


def split_fragment_key(key: bytes) -> tuple[bytes, int, int] | None:
    """``(chunk key, slot, index)`` of a fragment key, ``None`` for a chunk key."""
    if key.count(SEP) != 2:
        return None
    main, _, tail = key.rpartition(SEP)
    slot, _, index = tail.partition(b":")
    return main, int(slot), int(index)


@dataclass
class ChangelogWriter:
    """Turns dirty chunks into records no larger than ``limit`` bytes of value.

    Remembers which fragments each split chunk has in the changelog (learnt from
    the recovery, then from its own writes), so it can alternate slots and
    tombstone what is no longer referenced.
    """

    limit: int = DEFAULT_RECORD_LIMIT - RECORD_OVERHEAD
    # chunk key -> (slot of the live manifest, fragments present in the changelog)
    fragments: dict[bytes, tuple[int, set[tuple[int, int]]]] = field(default_factory=dict)
    split_writes: int = 0

    def set_record_limit(self, max_record_bytes: int) -> None:
        """The topic's (or the producer's) limit on one record, whichever is lower."""
        self.limit = max(4096, max_record_bytes - RECORD_OVERHEAD)

    def records(self, partition: int, seller_id: str, chunk: ChunkId,
                data: bytes | None) -> list[Record]:
        """The records that persist ``data`` (``None``: the chunk is gone)."""
        key = chunk_key(seller_id, chunk)
        prefix = b"" if chunk is not None else PARTITION.pack(partition)
        known = self.fragments.pop(key, None)
        stale = sorted(known[1]) if known else []
        if data is None or len(prefix) + len(data) + len(key) <= self.limit:
            out: list[Record] = [(partition, key, None if data is None else prefix + data)]
            out += [(partition, fragment_key(key, s, i), None) for s, i in stale]
            return out
        slot = 1 - known[0] if known else 0
        step = self.limit - len(key) - 16
        pieces = [data[i:i + step] for i in range(0, len(data), step)]
        out = [(partition, fragment_key(key, slot, i), piece) for i, piece in enumerate(pieces)]
        manifest = _Manifest(slot, len(pieces), len(data), hashlib.sha256(data).digest())
        out.append((partition, key, prefix + MAGIC + _encode_manifest(manifest)))
        live = {(slot, i) for i in range(len(pieces))}
        out += [(partition, fragment_key(key, s, i), None) for s, i in stale
                if (s, i) not in live]
        self.fragments[key] = (slot, live)
        self.split_writes += 1
        return out


class CorruptChunk(Exception):
    """A manifest whose fragments do not add up (length or SHA-256)."""


@dataclass(frozen=True, slots=True)
class RecoveredChunk:
    seller_id: str
    chunk: ChunkId
    partition: int | None  # META chunks carry their seller's partition
    data: bytes


def assemble(items: Iterable[tuple[bytes, bytes | None]],
             writer: ChangelogWriter | None = None) -> tuple[list[RecoveredChunk], list[str]]:
    """Chunks from table items (changelog keys and values), fragments joined.

    Returns the chunks and a list of problems (corrupt or incomplete split chunks,
    which are skipped and named). Teaches ``writer`` which fragments exist, so its
    next write of a chunk alternates slots and tombstones leftovers.
    """
    mains: dict[bytes, bytes] = {}
    pieces: dict[bytes, dict[tuple[int, int], bytes]] = {}
    for key, value in items:
        if value is None:
            continue
        frag = split_fragment_key(key)
        if frag is None:
            mains[key] = value
        else:
            main, slot, index = frag
            pieces.setdefault(main, {})[(slot, index)] = value
    chunks: list[RecoveredChunk] = []
    problems: list[str] = []
    for key, value in mains.items():
        seller_id, chunk = parse_chunk_key(key)
        partition: int | None = None
        if chunk is None:
            partition = PARTITION.unpack_from(value)[0]
            value = value[PARTITION.size:]
        present = pieces.pop(key, {})
        if value.startswith(MAGIC):
            manifest = _decode_manifest(value[len(MAGIC):])
            try:
                data = b"".join(present[(manifest.slot, i)] for i in range(manifest.count))
            except KeyError:
                problems.append(f"{key!r}: fragments missing from slot {manifest.slot}")
                continue
            if len(data) != manifest.length or hashlib.sha256(data).digest() != manifest.sha256:
                problems.append(f"{key!r}: fragments do not match their manifest")
                continue
            value = data
            if writer is not None:
                writer.fragments[key] = (manifest.slot, set(present))
        elif present and writer is not None:
            writer.fragments[key] = (0, set(present))  # leftovers: tombstoned next write
        chunks.append(RecoveredChunk(seller_id, chunk, partition, value))
    if writer is not None:
        for key, present in pieces.items():  # fragments of chunks that are gone
            writer.fragments[key] = (0, set(present))
    return chunks, problems
