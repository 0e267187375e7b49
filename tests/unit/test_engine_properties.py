"""The engine equals the plain reference on random logs (issue #2's core property).

Shuffles, redeliveries, retractions (removed feedback, withdrawn claims, messages
marked no-response-needed), invalid lines, window and midnight boundaries, events
after ``now``, crashes with at-least-once replay, and clocks that move; bounded
state: sellers freed once they hold nothing, events beyond the future horizon.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.engine.engine import META, Engine, MetricValue
from streams.engine.events import US_PER_DAY, Event, decode_event, format_us, to_us
from streams.engine.orders import record_day
from streams.engine.rules import HAS_ORDER
from streams.errors import InvalidEvent, TooFarAhead
from tests.reference import reference_report
from tests.unit.strategies import NOW, logs

pytestmark = pytest.mark.unit

PROFILE = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
NOW_US = to_us(NOW)


def _valid(lines: list[bytes]) -> list[Event]:
    out = []
    for line in lines:
        with contextlib.suppress(InvalidEvent):
            out.append(decode_event(line))
    return out


def _feed(engine: Engine, lines: list[bytes]) -> int:
    """Apply lines as replay does; return how many were rejected."""
    rejected = 0
    for line in lines:
        try:
            engine.apply_bytes(line)
        except InvalidEvent:
            rejected += 1
    return rejected


def _as_dicts(report: dict[str, dict[str, MetricValue]]) -> dict[str, dict[str, object]]:
    return {s: {m: v.to_dict() for m, v in ms.items()} for s, ms in report.items()}


@PROFILE
@given(logs())
def test_engine_equals_reference(lines: list[bytes]) -> None:
    engine = Engine(now=NOW_US)
    rejected = _feed(engine, lines)
    assert rejected == len(lines) - len(_valid(lines))
    assert _as_dicts(engine.report()) == reference_report(_valid(lines), NOW_US)


@PROFILE
@given(logs(), st.randoms(use_true_random=False))
def test_engine_equals_reference_when_shuffled(lines: list[bytes], rnd: object) -> None:
    rnd.shuffle(lines)  # type: ignore[attr-defined]
    engine = Engine(now=NOW_US)
    _feed(engine, lines)
    assert _as_dicts(engine.report()) == reference_report(_valid(lines), NOW_US)


@PROFILE
@given(logs(unique_times=True), st.randoms(use_true_random=False))
def test_order_insensitive_without_ties(lines: list[bytes], rnd: object) -> None:
    """With distinct timestamps "latest wins" has no ties, so any order of the same
    events (redeliveries included) yields the same metrics."""
    first = Engine(now=NOW_US)
    _feed(first, lines)
    shuffled = list(lines)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    second = Engine(now=NOW_US)
    _feed(second, shuffled)
    assert _as_dicts(first.report()) == _as_dicts(second.report())


@PROFILE
@given(logs(), st.data())
def test_crash_and_at_least_once_replay(lines: list[bytes], data: st.DataObject) -> None:
    """Snapshot at k, lose everything after, restore, and replay from j <= k (the
    last committed offset): exactly the metrics of one clean pass."""
    k = data.draw(st.integers(0, len(lines)), label="snapshot at")
    j = data.draw(st.integers(0, k), label="replay from")
    engine = Engine(now=NOW_US)
    _feed(engine, lines[:k])
    snapshot = engine.snapshot()
    _feed(engine, lines[k : data.draw(st.integers(k, len(lines)), label="crash at")])
    restored = Engine.restore(snapshot)
    _feed(restored, lines[j:])
    assert _as_dicts(restored.report()) == reference_report(_valid(lines), NOW_US)


@PROFILE
@given(logs(), st.data())
def test_per_seller_snapshots_round_trip(lines: list[bytes], data: st.DataObject) -> None:
    engine = Engine(now=NOW_US)
    _feed(engine, lines)
    other = Engine(now=NOW_US)
    for seller_id in list(engine.sellers):
        other.restore_seller(seller_id, engine.snapshot_seller(seller_id))
    assert _as_dicts(other.report()) == _as_dicts(engine.report())
    assert other.pending_orders == engine.pending_orders


@PROFILE
@given(logs(), st.integers(0, 4 * 86_400_000_000), st.data())
def test_clock_moves_forward(lines: list[bytes], step: int, data: st.DataObject) -> None:
    """Apply at ``now``, then let the clock run: held events apply, deadlines pass,
    days roll; the result equals the reference as of the later time. A snapshot
    taken before the clock moved and restored after it agrees too."""
    later = NOW_US + step
    engine = Engine(now=NOW_US)
    _feed(engine, lines)
    snapshot = engine.snapshot()
    mid = data.draw(st.integers(NOW_US, later), label="intermediate")
    engine.advance(mid)
    engine.advance(later)
    expected = reference_report(_valid(lines), later)
    assert _as_dicts(engine.report()) == expected
    restored = Engine.restore(snapshot)
    restored.advance(later)
    assert _as_dicts(restored.report()) == expected


def test_reference_is_not_trivially_empty() -> None:
    """Guard against a generator that never produces countable orders."""
    line = (
        b'{"event_id":"a","type":"order","seller_id":"s1","order_id":"o1",'
        b'"occurred_at":"2024-06-15T00:00:00Z","ship_by":"2024-06-16T00:00:00Z"}'
    )
    report = reference_report(_valid([line]), NOW_US)
    assert report["s1"]["perfect_order_percentage"]["denominator"] == 1
    assert dt.datetime.fromtimestamp(NOW_US / 1e6, dt.UTC) == NOW


def _persist(engine: Engine, table: dict[tuple[str, int | None], bytes],
             cut: Callable[[str, int], int] | None = None) -> None:
    """What the worker does at each flush: write the dirty chunks, delete empty ones.

    ``cut(seller, n)``: a crash midway — only the first that many of the seller's
    ``n`` records are saved (a seller's records go to one changelog partition in
    the order given, so a crash leaves a prefix of them; sellers are cut apart)."""
    for seller_id, chunks in engine.take_dirty().items():
        records = list(engine.seller_chunks(seller_id, chunks).items())
        if cut is not None:
            records = records[:cut(seller_id, len(records))]
        for chunk, data in records:
            if data is None:
                table.pop((seller_id, chunk), None)
            else:
                table[(seller_id, chunk)] = data


def _recover(table: dict[tuple[str, int | None], bytes], now: int) -> Engine:
    engine = Engine(now=now, track_dirty=True)
    by_seller: dict[str, dict[int | None, bytes]] = {}
    for (seller_id, chunk), data in table.items():
        by_seller.setdefault(seller_id, {})[chunk] = data
    for seller_id, chunks in by_seller.items():
        seen: dict[bytes, int] = {}
        for chunk, data in chunks.items():
            if chunk is None:
                continue
            for key, record in msgspec.msgpack.decode(data, type=dict[bytes, bytes]).items():
                seen[key] = seen.get(key, 0) + 1
                if seen[key] > 1:  # only a moved record's ghost may be left behind
                    assert not record_day(record)[1] & HAS_ORDER or all(
                        not record_day(r)[1] & HAS_ORDER
                        for c, d in chunks.items() if c is not None and c != chunk
                        for k, r in msgspec.msgpack.decode(d, type=dict[bytes, bytes]).items()
                        if k == key), "an order persisted in two day chunks"
        engine.restore_seller_chunks(seller_id, chunks)
    engine.take_dirty()
    return engine


@settings(PROFILE, max_examples=1000)  # a crash midway needs a move and a cut in one flush
@given(logs(), st.data())
def test_incremental_chunks_persist_exactly(lines: list[bytes], data: st.DataObject) -> None:
    """Persisting only dirty chunks at random flush points, then recovering from
    the persisted chunks after a crash — between flushes, or during one, with any
    prefix of each seller's records saved — and replaying since the last whole
    flush, gives the reference metrics; so does a recovery after the clock moved
    days on."""
    engine = Engine(now=NOW_US, track_dirty=True)
    table: dict[tuple[str, int | None], bytes] = {}
    flushed_upto = 0
    for i, line in enumerate(lines, start=1):
        _feed(engine, [line])
        if data.draw(st.booleans(), label=f"flush after {i}"):
            _persist(engine, table)
            flushed_upto = i
    if data.draw(st.booleans(), label="crash during a flush"):
        # Nothing of this flush was acked: the replay starts where the last whole
        # flush ended, over whatever part of this one was saved.
        _persist(engine, table, cut=lambda seller, n: data.draw(
            st.integers(0, n), label=f"records of {seller} saved"))
    recovered = _recover(table, NOW_US)
    _feed(recovered, lines[flushed_upto:])
    expected = reference_report(_valid(lines), NOW_US)
    assert _as_dicts(recovered.report()) == expected
    # The clock moves on in steps: each deadline and held event of a restored
    # seller must fire on its own, not only the earliest.
    later = NOW_US
    for step in data.draw(st.lists(st.integers(0, 60 * 86_400_000_000), min_size=1,
                                   max_size=3), label="steps"):
        later += step
        recovered.advance(later)
        assert _as_dicts(recovered.report()) == reference_report(_valid(lines), later)
    _persist(recovered, table)
    assert _as_dicts(_recover(table, later).report()) == reference_report(
        _valid(lines), later
    )
    today = later // 86_400_000_000
    stale = [chunk for _, chunk in table if chunk is not None and today - chunk >= 90]
    assert stale == [], "days that left the longest window must be tombstoned"


def _holds_something(engine: Engine) -> bool:
    return all(s.orders or s.messages or s.future for s in engine.sellers.values())


@PROFILE
@given(logs(), st.data())
def test_every_seller_is_freed_once_the_clock_passes_the_longest_window(
    lines: list[bytes], data: st.DataObject
) -> None:
    """With the clock running far past the longest window (in random steps, held
    events applying on the way), every seller is freed, take_freed() names each
    exactly once, the report equals the reference all along, no seller holding
    nothing is ever kept, and the persisted chunks end up all tombstoned: a
    recovery from them has no seller at all."""
    engine = Engine(now=NOW_US, track_dirty=True)
    table: dict[tuple[str, int | None], bytes] = {}
    for i, line in enumerate(lines, start=1):
        _feed(engine, [line])
        if data.draw(st.booleans(), label=f"flush after {i}"):
            _persist(engine, table)
    assert _holds_something(engine)
    named = engine.take_freed()
    assert not set(named) & set(engine.sellers), "a freed seller is still held"
    # A held event applied late creates state anchored at that later day, and a
    # message outlives its anchor while its order (maybe a pending one) is alive:
    # ~180 days after the last event applied bound every lifetime. So: random
    # steps, then two of 400 days (the first applies whatever is still held).
    steps = data.draw(st.lists(st.sampled_from(
        [1, US_PER_DAY // 2, US_PER_DAY, 45 * US_PER_DAY, 90 * US_PER_DAY]), max_size=6),
        label="steps")
    now = NOW_US
    for step in [*steps, 400 * US_PER_DAY, 400 * US_PER_DAY]:
        now += step
        engine.advance(now)
        assert _holds_something(engine)
        freed = engine.take_freed()
        assert not set(freed) & set(engine.sellers)
        named += freed
        assert _as_dicts(engine.report()) == reference_report(_valid(lines), now)
        _persist(engine, table)
        assert _as_dicts(_recover(table, now).report()) == _as_dicts(engine.report())
    assert engine.sellers == {}
    assert sorted(named) == sorted({e.seller_id for e in _valid(lines)})
    assert engine.tracked_orders == engine.pending_orders == 0
    assert table == {}, "every chunk of a freed seller must be tombstoned"
    assert _recover(table, now).sellers == {}


def _ahead(line: bytes, us: int, event_id: str) -> bytes:
    """``line`` (a non-order event) stamped ``us`` after now, under a new id."""
    doc = orjson.loads(line)
    doc["occurred_at"] = format_us(NOW_US + us)
    doc["event_id"] = event_id
    return orjson.dumps(doc)


_HORIZONS = (0, 1, 3_600_000_000, 12 * 3_600_000_000 - 1, 3 * US_PER_DAY)
_AHEAD = (1, 3_600_000_000, 3 * US_PER_DAY, 3 * US_PER_DAY + 1, 5 * 365 * US_PER_DAY)


@PROFILE
@given(logs(), st.sampled_from(_HORIZONS), st.data())
def test_events_beyond_the_future_horizon_are_rejected(
    lines: list[bytes], horizon: int, data: st.DataObject
) -> None:
    """An event more than ``future_horizon`` after the clock is rejected and leaves
    the state as it was; the rest is exactly the reference without it, now and
    once the clock has moved on (held events applied)."""
    sources = [line for line in _valid_lines(lines) if b'"type":"order"' not in line]
    for n in range(data.draw(st.integers(0, 4), label="far events") if sources else 0):
        line = _ahead(data.draw(st.sampled_from(sources)),
                      data.draw(st.sampled_from(_AHEAD)), f"far{n}")
        lines.insert(data.draw(st.integers(0, len(lines))), line)
        if data.draw(st.booleans(), label="redelivered"):
            lines.insert(data.draw(st.integers(0, len(lines))), line)
    engine = Engine(now=NOW_US, future_horizon=horizon)
    kept: list[bytes] = []
    for line in lines:
        before = engine.snapshot()
        error: InvalidEvent | None = None
        try:
            engine.apply_bytes(line)
        except InvalidEvent as exc:
            error = exc
        if isinstance(error, TooFarAhead):
            assert error.field == "$.occurred_at"
            assert engine.snapshot() == before
            continue
        kept.append(line)
    beyond = [e for e in _valid(lines) if to_us(e.occurred_at) - NOW_US > horizon]
    assert len(_valid(lines)) - len(_valid(kept)) == len(beyond)
    assert _as_dicts(engine.report()) == reference_report(_valid(kept), NOW_US)
    later = NOW_US + data.draw(st.integers(0, 4 * US_PER_DAY), label="step")
    engine.advance(later)
    assert _as_dicts(engine.report()) == reference_report(_valid(kept), later)
    assert all(
        at - NOW_US <= horizon for s in engine.sellers.values() for at, _, _ in s.future
    )


def _valid_lines(lines: list[bytes]) -> list[bytes]:
    out = []
    for line in lines:
        with contextlib.suppress(InvalidEvent):
            decode_event(line)
            out.append(line)
    return out


def test_freed_seller_chunks_are_tombstones() -> None:
    """The contract _persist relies on: a freed seller's chunks read as None."""
    line = (
        b'{"event_id":"a","type":"order","seller_id":"s1","order_id":"o1",'
        b'"occurred_at":"2024-06-15T00:00:00Z","ship_by":"2024-06-16T00:00:00Z"}'
    )
    engine = Engine(now=NOW_US, track_dirty=True)
    engine.apply_bytes(line)
    engine.take_dirty()
    engine.advance(NOW_US + 90 * US_PER_DAY)
    day = NOW_US // US_PER_DAY
    assert engine.take_dirty() == {"s1": {day, META}}
    assert engine.seller_chunks("s1", {day, META}) == {day: None, META: None}
    assert engine.take_freed() == ["s1"]
