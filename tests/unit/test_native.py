"""The compiled engine equals the Python engine (issue #14).

:class:`~streams.engine.native.NativeEngine` runs the same semantics over compact
records in Rust (``native/``); the Python :class:`~streams.engine.engine.Engine` is
the reference. Checked here: event by event on random logs with clocks that move
(every outcome and error message, then the whole state: sums, packed records
byte for byte, messages, replies, held events, counters, dirty chunks, touched
sums, freed sellers, deferred rejects), under every catalog profile; changelog
chunks and snapshots written by either engine restore in the other (and a v1
state too); the dedup digest is hashlib's BLAKE2b; the core's decoder accepts
exactly what ``decode_event`` accepts; the batch APIs equal event-by-event apply.

The engine suites (test_engine_properties.py and the rest) run against
NativeEngine too once the engine is selectable (see streams/engine/native.py).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.engine.catalog import PROFILES, Catalog, profile_catalog
from streams.engine.engine import (
    META,
    Outcome,
    PythonEngine,
    _decode_chunk,
    _decode_meta,
)
from streams.engine.events import (
    US_PER_DAY,
    decode_event,
    decode_events,
    encode_event,
    to_us,
)
from streams.errors import InvalidEvent, PopstreamError
from tests.reference import reference_report
from tests.unit.strategies import NOW, logs
from tests.unit.test_engine_properties import _as_dicts

if os.environ.get("POPSTREAM_NO_NATIVE", "") not in ("", "0"):  # built without it, on purpose
    pytest.skip("POPSTREAM_NO_NATIVE: the native core is not built", allow_module_level=True)
from streams import _native  # type: ignore[attr-defined]
from streams.engine.native import KIND_TAGS, OUTCOMES, NativeEngine

# The reference: the pure-Python engine, whichever engine this run selected.
Engine = PythonEngine

pytestmark = pytest.mark.unit

NOW_US = to_us(NOW)
PROFILE = settings(max_examples=200, deadline=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
CATALOGS = {name: profile_catalog(name) for name in PROFILES}
STEPS = [1, 3_600_000_000, US_PER_DAY // 2, US_PER_DAY, 3 * US_PER_DAY, 7 * US_PER_DAY,
         40 * US_PER_DAY, 95 * US_PER_DAY]
V1_STATE = msgspec.msgpack.decode(
    (Path(__file__).parent.parent / "data" / "v1_state.msgpack").read_bytes())

AnyEngine = Engine | NativeEngine


def _outcome(engine: AnyEngine, line: bytes) -> object:
    try:
        return engine.apply_bytes(line)
    except PopstreamError as exc:
        return (type(exc).__name__, str(exc), getattr(exc, "field", None))


def _state(engine: AnyEngine, seqs: bool = True) -> dict[str, Any]:
    """Everything an engine holds, in plain values (records as packed bytes)."""
    sellers = {}
    for sid, s in engine.sellers.items():
        sellers[sid] = {
            "sums": list(s.sums),
            "orders": dict(s.orders),
            "messages": {k: tuple(v) for k, v in s.messages.items()},
            "replies": dict(s.replies),
            "future": [((at, seq) if seqs else at, encode_event(e))
                       for at, seq, e in sorted(s.future, key=lambda x: x[:2])],
            "has_orders": s.has_orders,
        }
    return {"sellers": sellers, "held": engine.tracked_orders,
            "pending": engine.pending_orders, "now": engine.now, "today": engine.today,
            "ids": sorted(engine.seller_ids())}


def _drained(engine: AnyEngine) -> dict[str, Any]:
    rejects = sorted((encode_event(e), str(x)) for e, x in engine.deferred_rejects)
    engine.deferred_rejects.clear()
    return {"dirty": engine.take_dirty(), "freed": set(engine.take_freed()),
            "touched": engine.take_touched(), "rejects": rejects}


def _same(py: Engine, nat: NativeEngine) -> None:
    assert _state(nat) == _state(py)


def _persist(engine: AnyEngine, table: dict[tuple[str, int | None], bytes]) -> None:
    for seller_id, chunks in engine.take_dirty().items():
        for chunk, data in engine.seller_chunks(seller_id, chunks).items():
            if data is None:
                table.pop((seller_id, chunk), None)
            else:
                table[(seller_id, chunk)] = data


def _recover(cls: type[AnyEngine], table: dict[tuple[str, int | None], bytes], now: int,
             catalog: Catalog | None = None) -> AnyEngine:
    engine = cls(catalog, now=now, track_dirty=True)
    by_seller: dict[str, dict[int | None, bytes]] = {}
    for (seller_id, chunk), data in table.items():
        by_seller.setdefault(seller_id, {})[chunk] = data
    for seller_id, chunks in by_seller.items():
        engine.restore_seller_chunks(seller_id, chunks)
    return engine


# --- digests -----------------------------------------------------------------------

@given(st.text(max_size=200))
def test_the_dedup_digest_is_blake2b_48(event_id: str) -> None:
    data = event_id.encode()
    assert _native.event_digest(data) == hashlib.blake2b(data, digest_size=6).digest()


# --- step by step against the Python engine ------------------------------------------

@PROFILE
@given(lines=logs(v11=True), profile=st.sampled_from(sorted(CATALOGS)), data=st.data())
def test_native_equals_python_event_by_event(lines: list[bytes], profile: str,
                                             data: st.DataObject) -> None:
    catalog = CATALOGS[profile]
    fixed = data.draw(st.booleans(), label="fixed clock")
    kw: dict[str, Any] = {
        "now": NOW_US, "fixed_clock": fixed, "track_dirty": True, "track_touched": True,
        "future_horizon": data.draw(st.sampled_from([None, 0, US_PER_DAY, 5 * US_PER_DAY]),
                                    label="future horizon"),
    }
    py, nat = Engine(catalog, **kw), NativeEngine(catalog, **kw)
    now = NOW_US
    for i, line in enumerate(lines):
        assert _outcome(nat, line) == _outcome(py, line), line
        if not fixed and data.draw(st.integers(0, 7), label=f"advance after {i}") == 0:
            now += data.draw(st.sampled_from(STEPS), label="step")
            py.advance(now)
            nat.advance(now)
            _same(py, nat)
        if data.draw(st.integers(0, 3), label=f"drain after {i}") == 0:
            assert _drained(nat) == _drained(py)
    _same(py, nat)
    assert _drained(nat) == _drained(py)
    if not fixed:
        for step in (US_PER_DAY, 30 * US_PER_DAY, 91 * US_PER_DAY):
            now += step
            py.advance(now)
            nat.advance(now)
            _same(py, nat)
            assert _drained(nat) == _drained(py)
        assert len(nat.sellers) == 0
    assert _as_dicts(nat.report()) == _as_dicts(py.report())


def test_errors_carry_the_python_messages() -> None:
    order = (b'{"type":"order","event_id":"e1","seller_id":"s1","order_id":"o1",'
             b'"occurred_at":"2024-06-10T10:00:00Z","ship_by":"2024-06-12T10:00:00Z"}')
    other = order.replace(b'"e1"', b'"e2"').replace(b"06-12T", b"06-13T")
    ahead = order.replace(b'"e1"', b'"e3"').replace(b"2024-06-10", b"2024-07-10")
    for line in (order, other, ahead, b"{", b'{"type":"nope"}', b"\xff"):
        py = Engine(now=NOW_US, future_horizon=US_PER_DAY)
        nat = NativeEngine(now=NOW_US, future_horizon=US_PER_DAY)
        assert _outcome(nat, order) == _outcome(py, order)
        assert _outcome(nat, line) == _outcome(py, line)
    with pytest.raises(PopstreamError, match="fixed"):
        NativeEngine(now=NOW_US, fixed_clock=True).advance(NOW_US + 1)


def test_documents_left_to_decode_event_apply_the_same() -> None:
    """A repeated key or deep nesting: the core does not decide; decode_event does."""
    base = (b'{"type":"order","event_id":"e1","seller_id":"s1","order_id":"o1",'
            b'"occurred_at":"2024-06-10T10:00:00Z","ship_by":"2024-06-12T10:00:00Z"')
    docs = [base + b',"order_id":"o2"}', base + b',"order_id":5}',
            base + b',"x":' + b"[" * 1500 + b"]" * 1500 + b"}",
            base + b',"x":' + b"[" * 20000 + b"]" * 20000 + b"}", base + b"}"]
    for doc in docs:
        py, nat = Engine(now=NOW_US), NativeEngine(now=NOW_US)
        assert _outcome(nat, doc) == _outcome(py, doc)
        _same(py, nat)
        batch = NativeEngine(now=NOW_US)
        codes = batch.apply_lines([doc, doc])
        assert [batch.outcome(c, doc) if c < 5 else c for c in codes][1] in (
            Outcome.DUPLICATE, 5)
        assert _state(batch) == _state(nat)


# --- persistence across engines ------------------------------------------------------

@PROFILE
@given(lines=logs(v11=True), profile=st.sampled_from(sorted(CATALOGS)), data=st.data())
def test_changelog_chunks_move_between_engines(lines: list[bytes], profile: str,
                                               data: st.DataObject) -> None:
    catalog = CATALOGS[profile]
    py = Engine(catalog, now=NOW_US, track_dirty=True)
    nat = NativeEngine(catalog, now=NOW_US, track_dirty=True)
    tables: dict[str, dict[tuple[str, int | None], bytes]] = {"py": {}, "nat": {}}
    now = NOW_US
    for i, line in enumerate(lines):
        _outcome(py, line)
        _outcome(nat, line)
        if data.draw(st.integers(0, 4), label=f"flush after {i}") == 0:
            _persist(py, tables["py"])
            _persist(nat, tables["nat"])
        if data.draw(st.integers(0, 9), label=f"advance after {i}") == 0:
            now += data.draw(st.sampled_from(STEPS), label="step")
            py.advance(now)
            nat.advance(now)
    _persist(py, tables["py"])
    _persist(nat, tables["nat"])
    # The same chunks: records byte for byte, META field for field.
    assert tables["py"].keys() == tables["nat"].keys()
    for key, data_py in tables["py"].items():
        data_nat = tables["nat"][key]
        if key[1] is META:
            assert _decode_meta(data_nat) == _decode_meta(data_py)
        else:
            assert _decode_chunk(data_nat) == _decode_chunk(data_py)
    # Either engine restores either's chunks, to the same state as the writer's own.
    for source in ("py", "nat"):
        restored = {cls: _recover(cls, tables[source], now, catalog)
                    for cls in (Engine, NativeEngine)}
        assert _state(restored[NativeEngine], False) == _state(restored[Engine], False)
        assert _as_dicts(restored[NativeEngine].report()) == _as_dicts(py.report())
        later = now + data.draw(st.sampled_from(STEPS), label="later")
        for engine in restored.values():
            engine.advance(later)
        assert _state(restored[NativeEngine], False) == _state(restored[Engine], False)


@PROFILE
@given(lines=logs(v11=True), profile=st.sampled_from(sorted(CATALOGS)),
       step=st.sampled_from(STEPS))
def test_snapshots_move_between_engines(lines: list[bytes], profile: str, step: int) -> None:
    catalog = CATALOGS[profile]
    py, nat = Engine(catalog, now=NOW_US), NativeEngine(catalog, now=NOW_US)
    for line in lines:
        _outcome(py, line)
        _outcome(nat, line)
    snaps = {"py": py.snapshot(), "nat": nat.snapshot()}
    assert (msgspec.msgpack.decode(snaps["nat"]) == msgspec.msgpack.decode(snaps["py"]))
    for snap in snaps.values():
        a, b = Engine.restore(snap, catalog), NativeEngine.restore(snap, catalog)
        assert _state(b, False) == _state(a, False)
        a.advance(NOW_US + step)
        b.advance(NOW_US + step)
        assert _state(b, False) == _state(a, False)
    for sid in py.sellers:
        one = {"py": py.snapshot_seller(sid), "nat": nat.snapshot_seller(sid)}
        for data in one.values():
            a, b = Engine(catalog, now=NOW_US), NativeEngine(catalog, now=NOW_US)
            a.restore_seller(sid, data)
            b.restore_seller(sid, data)
            assert _state(b, False) == _state(a, False)


@pytest.mark.parametrize("source", ["snapshot", "chunks"])
def test_v1_state_restores_as_in_the_python_engine(source: str) -> None:
    now = V1_STATE["now"]

    def load(cls: type[AnyEngine]) -> AnyEngine:
        if source == "snapshot":
            return cls.restore(V1_STATE["snapshot"])
        engine = cls(now=now, track_dirty=True)
        for seller_id, chunks in V1_STATE["chunks"].items():
            engine.restore_seller_chunks(
                seller_id, {(None if d == -1 else d): v for d, v in chunks.items()})
        return engine

    py, nat = load(Engine), load(NativeEngine)
    assert nat.sellers
    _same(py, nat)
    events = [decode_event(doc) for doc in V1_STATE["docs"]]
    assert _as_dicts(nat.report()) == reference_report(events, now)
    for later in (now + 3 * US_PER_DAY + 1, now + 60 * US_PER_DAY):
        py.advance(later)
        nat.advance(later)
        _same(py, nat)


# --- decoding parity ---------------------------------------------------------------

_CORE = _native.Core(NOW_US, [(90, 0)], True, False, False, None, None)


def _py_valid(data: bytes) -> bool:
    try:
        decode_event(data)
    except InvalidEvent:
        return False
    return True


def _check_parity(data: bytes) -> None:
    verdict = _CORE.is_valid(data)
    if verdict is not None:  # None: left to decode_event (repeated keys, nesting)
        assert verdict == _py_valid(data), data


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=300))
def test_decoder_parity_on_arbitrary_bytes(data: bytes) -> None:
    _check_parity(data)


_MUTATIONS = st.lists(st.tuples(st.sampled_from(["del", "ins", "set", "cut", "dup", "swap"]),
                                st.integers(0, 10_000), st.binary(min_size=1, max_size=12)),
                      min_size=1, max_size=4)


@settings(max_examples=1500, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(lines=logs(v11=True, max_size=8), mutations=_MUTATIONS)
def test_decoder_parity_on_mutated_events(lines: list[bytes],
                                          mutations: list[tuple[str, int, bytes]]) -> None:
    for line in lines:
        _check_parity(line)
        doc = bytearray(line)
        for op, pos, chunk in mutations:
            i = pos % (len(doc) + 1)
            if op == "del" and doc:
                del doc[i % len(doc)]
            elif op == "ins":
                doc[i:i] = chunk
            elif op == "set" and doc:
                doc[i % len(doc)] = chunk[0]
            elif op == "cut":
                del doc[i:]
            elif op == "dup":  # repeat a field, or insert a key with a JSON value
                doc[i:i] = b'"' + chunk.hex().encode() + b'":' + (b"1," if pos % 2 else b'"x",')
            elif op == "swap":
                for a, b in ((b'"order"', b'"claim"'), (b'"buyer"', b'"seller"'),
                             (b"Z\"", b"+05:30\""), (b"true", b"1"), (b'"a_to_z"', b'"x"')):
                    if a in doc:
                        doc = bytearray(bytes(doc).replace(a, b, 1))
                        break
            _check_parity(bytes(doc))


# --- batch APIs ----------------------------------------------------------------------

@PROFILE
@given(lines=logs(v11=True), profile=st.sampled_from(sorted(CATALOGS)))
def test_apply_lines_equals_apply_bytes(lines: list[bytes], profile: str) -> None:
    catalog = CATALOGS[profile]
    one = NativeEngine(catalog, now=NOW_US, track_dirty=True, future_horizon=US_PER_DAY)
    batch = NativeEngine(catalog, now=NOW_US, track_dirty=True, future_horizon=US_PER_DAY)
    expected = [_outcome(one, line) for line in lines]
    codes = batch.apply_lines(lines)
    assert len(codes) == len(lines)
    got = []
    for code, line in zip(codes, lines, strict=True):
        result = batch.outcome(code, line)
        got.append(result if isinstance(result, Outcome) else
                   (type(result).__name__, str(result), getattr(result, "field", None)))
    assert got == expected
    assert _state(batch) == _state(one)
    assert batch.take_dirty() == one.take_dirty()


@PROFILE
@given(lines=logs(v11=True), sizes=st.lists(st.integers(1, 6), min_size=1, max_size=12),
       data=st.data())
def test_decoded_messages_equal_event_by_event(lines: list[bytes], sizes: list[int],
                                               data: st.DataObject) -> None:
    one = NativeEngine(now=NOW_US)
    two = NativeEngine(now=NOW_US)
    pos = 0
    for size in sizes:
        group = lines[pos:pos + size]
        pos += size
        if not group:
            break
        single = len(group) == 1 and data.draw(st.booleans(), label="single")
        value = group[0] if single else b"[" + b",".join(group) + b"]"
        batch = two.decode_message(value)
        if single:
            assert (batch is not None) == (_CORE.is_valid(value) is True)
        else:
            # None for an empty array too: nothing to apply, the slow path is free
            assert (batch is not None) == bool(decode_events(value))
        if batch is None:
            for line in group:
                _outcome(one, line)
                _outcome(two, line)
            continue
        events = [decode_event(line) for line in group]
        assert len(batch) == len(events)
        assert [KIND_TAGS[k] for k in batch.kinds] == [type(e).__name__.lower()
                                                       for e in events]
        assert batch.seller_ids == [e.seller_id for e in events]
        expected = [_outcome(one, line) for line in group]
        got = [r if isinstance(r, Outcome)
               else (type(r).__name__, str(r), getattr(r, "field", None))
               for r in two.apply_decoded_outcomes(batch)]
        assert got == expected
    assert _state(two) == _state(one)


def test_outcome_codes_name_the_outcomes() -> None:
    assert [o.value for o in OUTCOMES] == list(_native.OUTCOMES[:5])
    assert KIND_TAGS[0] == "order"
    assert len(KIND_TAGS) == 9


def test_held_events_that_conflict_when_due_are_deferred_rejects() -> None:
    """A held second order event for an existing order: rejected when the clock
    reaches it, with the Python engine's event and message."""
    order = (b'{"type":"order","event_id":"e1","seller_id":"s1","order_id":"o1",'
             b'"occurred_at":"2024-06-15T10:00:00Z","ship_by":"2024-06-17T10:00:00Z"}')
    again = (b'{"type":"order","event_id":"e2","seller_id":"s1","order_id":"o1",'
             b'"occurred_at":"2024-06-16T10:00:00Z","ship_by":"2024-06-17T10:00:00Z"}')
    ship = (b'{"type":"shipment","event_id":"e3","seller_id":"s1","order_id":"o1",'
            b'"occurred_at":"2024-06-18T10:00:00Z","tracking_id":"t"}')
    engines = [cls(now=NOW_US, track_dirty=True) for cls in (Engine, NativeEngine)]
    for engine in engines:
        assert [engine.apply_bytes(x) for x in (order, again, ship)] == [
            Outcome.APPLIED, Outcome.HELD, Outcome.HELD]
    py, nat = engines
    _same(py, nat)
    assert _drained(nat) == _drained(py)
    for later in (NOW_US + US_PER_DAY, NOW_US + 4 * US_PER_DAY):
        py.advance(later)
        nat.advance(later)
        _same(py, nat)
        drained = _drained(py)
        assert _drained(nat) == drained
    assert [e.event_id for e, _ in py.deferred_rejects] == []
    assert nat.deferred_rejects == []


def test_deferred_rejects_keep_the_event_and_the_message() -> None:
    order = (b'{"type":"order","event_id":"e1","seller_id":"s1","order_id":"o1",'
             b'"occurred_at":"2024-06-15T10:00:00Z","ship_by":"2024-06-17T10:00:00Z"}')
    again = (b'{"type":"order","event_id":"e2","seller_id":"s1","order_id":"o1",'
             b'"occurred_at":"2024-06-16T10:00:00Z","ship_by":"2024-06-17T10:00:00Z"}')
    got = []
    for cls in (Engine, NativeEngine):
        engine = cls(now=NOW_US)
        engine.apply_bytes(order)
        engine.apply_bytes(again)
        engine.advance(NOW_US + 2 * US_PER_DAY)
        got.append([(e, str(x), x.field) for e, x in engine.deferred_rejects])
        engine.deferred_rejects.clear()
        assert engine.deferred_rejects == []
    assert got[0] == got[1]
    assert len(got[0]) == 1
