"""Fuzzing every pure entry point bytes go through: nothing but InvalidEvent escapes.

The boundaries are total functions (STYLE.md, 11): whatever the bytes, each line,
message or batch element has exactly one outcome, and the valid events around the
bad ones are applied as if the bad ones had never been there. Hostile input comes
from :mod:`tests.unit.fuzz_strategies`; ``decode_event`` is the oracle of which
events are valid (it is held to the JSON Schema by test_schema_parity.py).
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from streams.engine.engine import Engine
from streams.engine.events import (
    Event,
    decode_event,
    decode_events,
    event_type,
    parse_timestamp,
    split_batch,
)
from streams.errors import InvalidEvent
from streams.replay import Reject, replay
from streams.runtime.producer import LinePlan, max_value_bytes, plan_line
from tests.unit.fuzz_strategies import (
    bad_values,
    deep_nestings,
    invalid_utf8_fields,
    mixed_batches,
    nesting,
    valid_events,
)
from tests.unit.strategies import NOW_TEXT, logs

pytestmark = pytest.mark.unit

FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FEW = settings(max_examples=60, deadline=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
AS_OF = parse_timestamp(NOW_TEXT)

# Reasons no input may produce: the catch-alls are for bugs, not for inputs we know.
_VAGUE = ("undecodable:", "internal error:")


def _precise(exc: InvalidEvent) -> InvalidEvent:
    assert isinstance(exc.reason, str)
    assert exc.reason
    assert exc.field is None or exc.field.startswith("$")
    assert not exc.reason.startswith(_VAGUE), exc.reason
    assert str(exc)
    return exc


def _decode(data: bytes | str | memoryview) -> Event | InvalidEvent:
    """decode_event's outcome; any other exception fails the test."""
    try:
        return decode_event(data)
    except InvalidEvent as exc:
        error = exc
    return _precise(error)


def _split(data: bytes) -> list[bytes] | InvalidEvent | None:
    try:
        batch = split_batch(data)
    except InvalidEvent as exc:
        error = exc
    else:
        return None if batch is None else [bytes(e) for e in batch]
    return _precise(error)


# --- the decoder ---------------------------------------------------------------


@FUZZ
@given(bad_values() | valid_events())
def test_decode_event_raises_only_invalid_event(data: bytes) -> None:
    outcome = _decode(data)
    assert type(_decode(memoryview(data))) is type(outcome)
    # As text, undecodable bytes become lone surrogates: still only InvalidEvent.
    as_text = _decode(data.decode("utf-8", "surrogateescape"))
    if isinstance(outcome, InvalidEvent):
        assert isinstance(as_text, InvalidEvent)


@FUZZ
@given(invalid_utf8_fields())
def test_invalid_utf8_names_the_byte_and_the_field(case: tuple[bytes, str, int]) -> None:
    data, path, offset = case
    outcome = _decode(data)
    assert isinstance(outcome, InvalidEvent)
    assert outcome.reason.startswith(f"invalid UTF-8 at byte {offset}: 0x{data[offset]:02x}, ")
    assert outcome.field == path


def test_invalid_utf8_outside_decoded_strings() -> None:
    good = (b'{"event_id":"1","type":"order","seller_id":"s1","order_id":"o1",'
            b'"occurred_at":"2024-06-14T00:00:00Z","ship_by":"2024-06-16T00:00:00Z"')
    # In an unknown field or a key, the bytes are skipped, never decoded: valid.
    assert isinstance(_decode(good + b',"note":"\xff"}'), Event)
    assert isinstance(_decode(good + b',"n\xffte":1}'), Event)
    # An escape before the bad byte: the offset is still the raw one.
    data = good + b',"marketplace":"a\\n\\u00e9\xfeb"}'
    at = data.index(b"\xfe")
    outcome = _decode(data)
    assert isinstance(outcome, InvalidEvent)
    assert outcome.reason == f"invalid UTF-8 at byte {at}: 0xfe, invalid start byte"
    assert outcome.field == "$.marketplace"
    # A bad byte in an ignored field first, then in a decoded one: the decoded one.
    data = good + b',"note":"\xff","currency":"\xc3("}'
    at = data.index(b"\xc3(")
    outcome = _decode(data)
    assert isinstance(outcome, InvalidEvent)
    assert outcome.reason.startswith(f"invalid UTF-8 at byte {at}: 0xc3, ")
    assert outcome.field == "$.currency"
    # Outside any string: not JSON (msgspec's own message, with its offset).
    outcome = _decode(b'{"type":\xff}')
    assert isinstance(outcome, InvalidEvent)
    assert outcome.reason.startswith("not valid JSON")
    # A str holding a lone surrogate: it cannot reach the decoder as UTF-8.
    outcome = _decode(good.decode() + ',"currency":"\ud800"}')
    assert isinstance(outcome, InvalidEvent)
    assert outcome.reason.startswith(f"invalid UTF-8 at byte {len(good) + 13}: 0xed, ")
    assert outcome.field == "$.currency"


_NESTING = re.compile(r"nesting deeper than (\d+) levels, found (\d+)")


@pytest.mark.parametrize(("prefix", "depth", "suffix", "found"), [
    (b"", 20_000, b"", 20_000),
    (b'{"x":', 10_000, b"}", 10_001),
    (b'{"type":"order","x":', 12_345, b"}", 12_346),
    (b"[1,", 15_000, b"]", 15_001),
])
def test_nesting_too_deep_is_measured(prefix: bytes, depth: int, suffix: bytes,
                                      found: int) -> None:
    for opener in (b"[", b"{"):
        data = prefix + nesting(depth, opener) + suffix
        outcome = _split(data) if data[:1] == b"[" else _decode(data)
        assert isinstance(outcome, InvalidEvent)
        m = _NESTING.fullmatch(outcome.reason)
        assert m is not None, outcome.reason
        limit, measured = int(m[1]), int(m[2])
        assert measured == found
        assert 900 <= limit < found
        assert decode_events(data) is None


def test_nesting_the_decoder_takes_is_not_an_error() -> None:
    """Just under the limit, deep JSON in an unknown field is only skipped."""
    outcome = _decode(b'{"x":' + nesting(20_000, b"[") + b"}")
    assert isinstance(outcome, InvalidEvent)
    limit = int(_NESTING.fullmatch(outcome.reason)[1])  # type: ignore[index]
    good = (b'{"event_id":"1","type":"order","seller_id":"s1","order_id":"o1",'
            b'"occurred_at":"2024-06-14T00:00:00Z","ship_by":"2024-06-16T00:00:00Z","x":')
    assert isinstance(_decode(good + nesting(min(limit, 5000) - 1, b"[") + b"}"), Event)


@FUZZ
@given(bad_values() | valid_events() | mixed_batches().map(lambda b: b[0]))
def test_both_array_routes_accept_the_same_events(data: bytes) -> None:
    """decode_events (one C call) is None unless split_batch + decode_event per
    element accepts every element, and then it returns the same events."""
    fast = decode_events(data)
    parts = _split(data)
    if not isinstance(parts, list):
        assert fast is None
        return
    slow = [_decode(p) for p in parts]
    if all(isinstance(e, Event) for e in slow):
        assert fast == slow
    else:
        assert fast is None


@FEW
@given(deep_nestings())
def test_deep_nesting_everywhere(data: bytes) -> None:
    _decode(data)
    _split(data)
    decode_events(data)


@FUZZ
@given(st.text() | st.binary().map(lambda b: b.decode("utf-8", "surrogateescape"))
       | st.sampled_from(["2024-06-15T00:00:00Z", "9999-12-31T23:59:59Z", "\ud800",
                          "2024-06-15T00:00:00", "", "1e400", "[" * 20_000, "\x00"]))
def test_parse_timestamp_raises_only_invalid_event(text: str) -> None:
    try:
        assert isinstance(parse_timestamp(text), int)
    except InvalidEvent as exc:
        error = exc
    else:
        return
    assert error.reason.startswith(("expected an RFC 3339 timestamp", "expected a year in"))
    assert not error.reason.startswith(_VAGUE)


# --- replay ----------------------------------------------------------------------


def _units(line: bytes) -> list[bytes]:
    """What replay gives one outcome each: the line, or each element of its array."""
    parts = _split(line.rstrip(b"\r\n"))
    return parts if isinstance(parts, list) else [line.rstrip(b"\r\n")]


@st.composite
def mixed_logs(draw: st.DrawFn) -> list[bytes]:
    """A valid log with bad lines and mixed batches inserted anywhere."""
    lines = draw(logs(max_size=20))
    for _ in range(draw(st.integers(1, 6))):
        bad = draw(bad_values() | mixed_batches().map(lambda b: b[0]))
        lines.insert(draw(st.integers(0, len(lines))), bad)
    return lines


@FEW
@given(mixed_logs())
def test_replay_gives_one_outcome_per_unit_and_applies_all_valid_events(
    lines: list[bytes],
) -> None:
    rejects: list[Reject] = []
    result = replay(lines, AS_OF, on_reject=rejects.append)

    units = [(str(n) if not isinstance(_split(line.rstrip(b"\r\n")), list)
              else f"{n}[{i}]", unit)
             for n, line in enumerate(lines, start=1)
             for i, unit in enumerate(_units(line))]
    assert sum(result.outcomes.values()) + result.rejected == len(units)
    assert len({r.where for r in rejects}) == len(rejects) == result.rejected
    valid = [unit for _, unit in units if isinstance(_decode(unit), Event)]
    invalid = {where for where, unit in units if not isinstance(_decode(unit), Event)}
    assert invalid <= {r.where for r in rejects}
    for r in rejects:
        assert not r.reason.startswith(_VAGUE), r
        assert orjson.loads(r.to_json())["line"] == r.where
        assert str(r).startswith(f"line {r.where}: ")

    # The same valid events alone, one per line, in the same order: same state.
    alone = replay(valid, AS_OF)
    assert alone.report() == result.report()
    assert alone.outcomes == result.outcomes
    assert alone.rejected + len(invalid) == result.rejected
    assert alone.engine.tracked_orders == result.engine.tracked_orders


def test_replay_turns_an_engine_bug_into_a_reject(monkeypatch: pytest.MonkeyPatch) -> None:
    good = (b'{"event_id":"%d","type":"order","seller_id":"s1","order_id":"o%d",'
            b'"occurred_at":"2024-06-14T00:00:00Z","ship_by":"2024-06-16T00:00:00Z"}')
    apply_bytes = Engine.apply_bytes  # what replay calls, on either engine

    def flaky(self: Engine, data: bytes) -> Any:
        if b'"event_id":"2"' in data:
            raise ZeroDivisionError("boom")
        return apply_bytes(self, data)

    monkeypatch.setattr(Engine, "apply_bytes", flaky)
    rejects: list[Reject] = []
    lines = [good % (1, 1), good % (2, 2), b"[" + good % (2, 2) + b"," + good % (3, 3) + b"]"]
    result = replay(lines, AS_OF, on_reject=rejects.append)
    assert [(r.where, r.reason) for r in rejects] == [
        ("2", "internal error: ZeroDivisionError: boom"),
        ("3[0]", "internal error: ZeroDivisionError: boom"),
    ]
    assert sum(result.outcomes.values()) == 2
    assert result.engine.tracked_orders == 2


def test_reject_to_json_survives_a_lone_surrogate() -> None:
    r = Reject("1", "bad \ud800 reason", "$.x\udcff", b"\xff")
    doc = orjson.loads(r.to_json())
    assert doc["reason"] == "bad ? reason"
    assert doc["raw"] == "\ufffd"


# --- popstream produce: the per-line plan --------------------------------------


def _events_of(value: bytes) -> list[Event]:
    if value[:1] == b"[":
        events = decode_events(value)
        assert events is not None, value
        return events
    event = decode_event(value)
    return [event]


def _check_plan(line: bytes, number: int, max_bytes: int, plan: LinePlan) -> None:
    text = line.strip(b" \t\r\n")
    wheres = [where for where, _ in plan.rejects]
    assert len(set(wheres)) == len(wheres)
    for _, error in plan.rejects:
        assert isinstance(error, InvalidEvent)
        assert not error.reason.startswith(_VAGUE), error
    sent: list[Event] = []
    for send in plan.sends:
        assert len(send.value) <= max_value_bytes(send.seller_id, max_bytes)
        events = _events_of(send.value)
        assert len(events) == send.events
        # The worker's rule: key = each event's seller, topic = each event's type.
        assert {e.seller_id for e in events} == {send.seller_id}
        assert {event_type(e) for e in events} == {send.event_type}
        sent.extend(events)
    if not text:
        assert plan == LinePlan()
        return
    parts = _split(text)
    if not isinstance(parts, list):
        expected = _decode(text)
        if isinstance(expected, Event) and len(text) <= max_value_bytes(expected.seller_id,
                                                                          max_bytes):
            assert plan.rejects == ()
            assert [s.value for s in plan.sends] == [text]
        else:
            assert plan.sends == ()
            assert wheres == [str(number)]
        return
    assert sum(s.events for s in plan.sends) + len(plan.rejects) == len(parts)
    decoded = [_decode(p) for p in parts]
    kept = [e for i, e in enumerate(decoded)
            if isinstance(e, Event) and f"{number}[{i}]" not in wheres]
    assert sent == kept
    for i, e in enumerate(decoded):
        if not isinstance(e, Event):
            assert f"{number}[{i}]" in wheres
    for where, error in plan.rejects:
        index = int(where.partition("[")[2].rstrip("]"))
        if isinstance(decoded[index], Event):
            assert error.reason.startswith("oversized: ")
    good = [e for e in decoded if isinstance(e, Event)]
    if good and len({(e.seller_id, event_type(e)) for e in good}) == 1 and len(text) <= 1000:
        assert len(plan.sends) == 1  # one seller, one type: one message


_lines = (bad_values() | valid_events() | mixed_batches().map(lambda b: b[0])
          | mixed_batches(uniform=True).map(lambda b: b[0])
          | st.sampled_from([b"", b"  \r", b"[]", b"[ ]", b"\n"]))


@FUZZ
@given(_lines, st.integers(1, 10**6), st.sampled_from([1024, 2048, 1_048_576]))
def test_produce_plan_is_total_and_routes_by_seller_and_type(
    line: bytes, number: int, max_bytes: int
) -> None:
    plan = plan_line(line, number, max_bytes)
    _check_plan(line, number, max_bytes, plan)


@FEW
@given(mixed_batches(uniform=True))
def test_produce_sends_a_uniform_batch_as_one_message(case: tuple[bytes, list[int]]) -> None:
    data, valid = case
    plan = plan_line(data, 1)
    assume(valid)
    assert len(plan.sends) == 1
    assert plan.sends[0].events == len(valid)
    assert [where for where, _ in plan.rejects] == [
        f"1[{i}]" for i in range(len(_split(data) or [])) if i not in valid]  # type: ignore[arg-type]
    if len(valid) == len(_split(data) or []):  # type: ignore[arg-type]
        assert plan.sends[0].value == data.strip()


def test_produce_plan_survives_a_decoder_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    import streams.runtime.producer as producer

    def broken(data: Any) -> Any:
        raise KeyError("bug")

    monkeypatch.setattr(producer, "split_batch", broken)
    plan = plan_line(b"{}", 4)
    assert plan.sends == ()
    assert [(w, e.reason) for w, e in plan.rejects] == [("4", "internal error: KeyError: 'bug'")]


def test_produce_splits_mixed_batches_and_oversized_ones() -> None:
    a = orjson.dumps({"event_id": "1", "type": "refund", "seller_id": "s1", "order_id": "o1",
                      "occurred_at": "2024-06-14T00:00:00Z", "reason": "x" * 400})
    b = a.replace(b'"s1"', b'"s2"')
    c = a.replace(b'"refund"', b'"shipment"').replace(b'"reason"', b'"tracking_id"')
    mixed = plan_line(b"[" + a + b"," + b + b"," + c + b", 7]", 9)
    assert [(s.seller_id, s.event_type, s.events) for s in mixed.sends] == [
        ("s1", "refund", 1), ("s2", "refund", 1), ("s1", "shipment", 1)]
    assert [s.value for s in mixed.sends] == [a, b, c]
    assert [w for w, _ in mixed.rejects] == ["9[3]"]
    # Too big as one message of 1 KiB: sent event by event.
    big = plan_line(b"[" + a + b"," + a.replace(b'"1"', b'"2"') + b"]", 1, max_message_bytes=1024)
    assert [s.events for s in big.sends] == [1, 1]
    line = a.replace(b"x" * 400, b"x" * 2000)
    huge = plan_line(line, 5, max_message_bytes=1024)
    assert huge.sends == ()
    assert [(w, e.reason) for w, e in huge.rejects] == [("5", (
        f"oversized: {len(line)} bytes > {1024 - 128 - 2} "
        "(POPSTREAM_MAX_MESSAGE_BYTES 1024 less the key and record overhead)"))]


def test_msgspec_raw_elements_are_bytes_like() -> None:
    """plan_line and replay rely on bytes(Raw) being the element's exact text."""
    (raw,) = msgspec.json.decode(b'[ {"a": 1} ]', type=list[msgspec.Raw])
    assert bytes(raw) == b'{"a": 1}'
