"""Changelog records of any size: split chunks, slots, tombstones, crashes midway."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.runtime.changelog import (
    MAGIC,
    ChangelogWriter,
    Record,
    assemble,
    chunk_key,
    parse_chunk_key,
    split_fragment_key,
)

pytestmark = pytest.mark.unit


def compact(log: list[Record]) -> dict[bytes, bytes]:
    """What a compacted topic (and Faust's table) holds after ``log``."""
    table: dict[bytes, bytes] = {}
    for _, key, value in log:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    return table


def recovered(table: dict[bytes, bytes]) -> dict[tuple[str, int | None], bytes]:
    chunks, problems = assemble(table.items())
    assert problems == []
    return {(c.seller_id, c.chunk): c.data for c in chunks}


def test_a_chunk_that_fits_is_one_record_as_before() -> None:
    w = ChangelogWriter(limit=10_000)
    assert w.records(3, "s1", 19_000, b"\x81\xa1k\xa1v") == [
        (3, chunk_key("s1", 19_000), b"\x81\xa1k\xa1v")]
    meta = w.records(3, "s1", None, b"\x93abc")
    assert meta == [(3, b"s1\x1fm", b"\x00\x03\x93abc")]  # the partition travels in META


def test_a_large_chunk_is_split_and_every_record_fits() -> None:
    w = ChangelogWriter(limit=5_000)
    data = bytes(range(256)) * 200  # 51,200 bytes
    records = w.records(1, "big-seller", 20_000, data)
    assert all(len(k) + len(v or b"") <= 5_000 for _, k, v in records)
    assert len(records) > 10
    main = records[-1]
    assert main[1] == chunk_key("big-seller", 20_000)
    assert main[2] is not None
    assert main[2].startswith(MAGIC)
    assert recovered(compact(records)) == {("big-seller", 20_000): data}


def test_meta_chunks_split_keep_their_partition() -> None:
    w = ChangelogWriter(limit=4_096)
    data = b"\x93" + b"m" * 20_000
    chunks, problems = assemble(compact(w.records(7, "s", None, data)).items())
    assert problems == []
    assert [(c.seller_id, c.chunk, c.partition, c.data) for c in chunks] == [
        ("s", None, 7, data)]


def test_slots_alternate_and_a_crash_before_the_manifest_keeps_the_old_version() -> None:
    w = ChangelogWriter(limit=4_096)
    v1, v2 = b"\x80" + b"1" * 30_000, b"\x80" + b"2" * 40_000
    log = w.records(0, "s", 5, v1)
    second = w.records(0, "s", 5, v2)
    assert {split_fragment_key(k)[1] for _, k, _ in log[:-1]} == {0}  # type: ignore[index]
    new_slot = {split_fragment_key(k)[1] for _, k, v in second  # type: ignore[index]
                if v is not None and split_fragment_key(k)}
    assert new_slot == {1}
    manifest_at = next(i for i, (_, k, _) in enumerate(second) if k == chunk_key("s", 5))
    for cut in range(manifest_at + 1):  # a crash after `cut` records of the second write
        assert recovered(compact(log + second[:cut])) == {("s", 5): v1}
    for cut in range(manifest_at + 1, len(second) + 1):
        assert recovered(compact(log + second[:cut])) == {("s", 5): v2}
    # The old slot's fragments were tombstoned after the new manifest.
    assert all(split_fragment_key(k)[1] == 1  # type: ignore[index]
               for k in compact(log + second) if split_fragment_key(k))


def test_a_chunk_that_fits_again_or_goes_tombstones_its_fragments() -> None:
    w = ChangelogWriter(limit=4_096)
    log = w.records(0, "s", 5, b"\x80" + b"x" * 20_000)
    log += w.records(0, "s", 5, b"\x80small")
    assert compact(log) == {chunk_key("s", 5): b"\x80small"}
    log += w.records(0, "s", 5, b"\x80" + b"y" * 20_000)
    log += w.records(0, "s", 5, None)
    assert compact(log) == {}


def test_the_writer_learns_fragments_from_a_recovery() -> None:
    first = ChangelogWriter(limit=4_096)
    log = first.records(0, "s", 5, b"\x80" + b"x" * 20_000)
    fresh = ChangelogWriter(limit=4_096)  # a restarted worker
    assemble(compact(log).items(), fresh)
    log += fresh.records(0, "s", 5, None)
    assert compact(log) == {}


def test_a_manifest_whose_fragments_do_not_add_up_is_named_not_trusted() -> None:
    w = ChangelogWriter(limit=4_096)
    table = compact(w.records(0, "s", 5, b"\x80" + b"x" * 20_000))
    some_fragment = next(k for k in table if split_fragment_key(k))
    table[some_fragment] = b"tampered"
    chunks, problems = assemble(table.items())
    assert chunks == []
    assert len(problems) == 1
    assert "manifest" in problems[0]
    del table[some_fragment]
    chunks, problems = assemble(table.items())
    assert chunks == []
    assert "missing" in problems[0]


@settings(max_examples=60, deadline=None)
@given(
    writes=st.lists(
        st.tuples(st.sampled_from(["a", "b.c"]), st.sampled_from([None, 1, 2]),
                  st.one_of(st.none(), st.integers(0, 30_000))),
        min_size=1, max_size=12),
    limit=st.integers(4_096, 12_000),
)
def test_any_sequence_of_writes_recovers_the_last_version_of_every_chunk(
        writes: list[tuple[str, int | None, int | None]], limit: int) -> None:
    w = ChangelogWriter(limit=limit)
    log: list[Record] = []
    expected: dict[tuple[str, int | None], bytes] = {}
    for n, (seller, chunk, size) in enumerate(writes):
        data = None if size is None else b"\x80" + hashlib.sha256(bytes([n])).digest() * (
            size // 32)
        log += w.records(2, seller, chunk, data)
        if data is None:
            expected.pop((seller, chunk), None)
        else:
            expected[(seller, chunk)] = data
        assert all(len(k) + len(v or b"") <= limit for _, k, v in log)
    assert recovered(compact(log)) == expected
    # Nothing left behind: every key in the compacted log belongs to a live chunk.
    live = {chunk_key(s, c) for s, c in expected}
    assert {split_fragment_key(k)[0] if split_fragment_key(k) else k  # type: ignore[index]
            for k in compact(log)} == live


def test_chunk_keys_round_trip() -> None:
    for seller, chunk in [("s:1", 19_888), ("a.b-c", None)]:
        assert parse_chunk_key(chunk_key(seller, chunk)) == (seller, chunk)
