"""The published JSON Schemas and the msgspec decoder accept and reject alike."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from streams.engine.events import EVENT_TYPES, decode_event
from streams.errors import InvalidEvent
from streams.schemas import load_schemas, validate_with_schema

pytestmark = pytest.mark.unit


def decoder_accepts(doc: Any) -> bool:
    try:
        decode_event(json.dumps(doc).encode())
    except InvalidEvent:
        return False
    return True


def schema_accepts(doc: Any) -> bool:
    return not validate_with_schema(doc)


def test_every_schema_is_valid_draft_2020_12_and_per_type() -> None:
    schemas = load_schemas()
    for doc in schemas.values():
        Draft202012Validator.check_schema(doc)
    assert {f"{t}.schema.json" for t in EVENT_TYPES} < set(schemas)


@pytest.mark.parametrize("kind", EVENT_TYPES)
def test_examples_are_valid_for_both(kind: str) -> None:
    schema = load_schemas()[f"{kind}.schema.json"]
    for example in schema["examples"]:
        assert validate_with_schema(example, f"{kind}.schema.json") == []
        assert schema_accepts(example)
        assert decoder_accepts(example)


ORDER = {"event_id": "e", "type": "order", "seller_id": "S1", "order_id": "o",
         "occurred_at": "2024-06-14T10:00:00Z", "ship_by": "2024-06-16T10:00:00Z"}
FEEDBACK = {"event_id": "e", "type": "feedback", "seller_id": "S1", "order_id": "o",
            "occurred_at": "2024-06-14T10:00:00Z", "rating": 4}
MESSAGE = {"event_id": "e", "type": "message", "seller_id": "S1", "message_id": "m",
           "occurred_at": "2024-06-14T10:00:00Z", "sender": "buyer"}


def with_(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    doc = dict(base)
    for key, value in changes.items():
        if value is _DROP:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


_DROP = object()

TABLE: list[tuple[str, Any, bool]] = [
    ("plain order", ORDER, True),
    ("naive timestamp", with_(ORDER, occurred_at="2024-06-14T10:00:00"), False),
    ("offset with colon", with_(ORDER, occurred_at="2024-06-14T10:00:00+05:30"), True),
    ("offset without colon", with_(ORDER, occurred_at="2024-06-14T10:00:00+0530"), True),
    ("offset hours only", with_(ORDER, occurred_at="2024-06-14T10:00:00+05"), False),
    ("lowercase t and z", with_(ORDER, occurred_at="2024-06-14t10:00:00z"), True),
    ("space separator", with_(ORDER, occurred_at="2024-06-14 10:00:00Z"), True),
    ("fraction", with_(ORDER, occurred_at="2024-06-14T10:00:00.123456789Z"), True),
    ("empty fraction", with_(ORDER, occurred_at="2024-06-14T10:00:00.Z"), False),
    ("no seconds", with_(ORDER, occurred_at="2024-06-14T10:00Z"), False),
    ("hour 24", with_(ORDER, occurred_at="2024-06-14T24:00:00Z"), False),
    ("leap second", with_(ORDER, occurred_at="2024-06-30T23:59:60Z"), False),
    ("feb 29 leap year", with_(ORDER, occurred_at="2024-02-29T10:00:00Z"), True),
    ("feb 29 common year", with_(ORDER, occurred_at="2023-02-29T10:00:00Z"), False),
    ("feb 29 2000", with_(ORDER, occurred_at="2000-02-29T10:00:00Z"), True),
    ("feb 29 1900", with_(ORDER, occurred_at="1900-02-29T10:00:00Z"), False),
    ("april 31", with_(ORDER, occurred_at="2024-04-31T10:00:00Z"), False),
    ("year 999", with_(ORDER, occurred_at="0999-06-14T10:00:00Z"), False),
    ("year 9999", with_(ORDER, occurred_at="9999-06-14T10:00:00Z"), False),
    ("year 9998", with_(ORDER, occurred_at="9998-06-14T10:00:00Z"), True),
    ("timestamp trailing newline", with_(ORDER, occurred_at="2024-06-14T10:00:00Z\n"), False),
    ("ship_by naive", with_(ORDER, ship_by="2024-06-16T10:00:00"), False),
    ("ship_by missing", with_(ORDER, ship_by=_DROP), False),
    ("order_id missing", with_(ORDER, order_id=_DROP), False),
    ("order_id empty", with_(ORDER, order_id=""), False),
    ("event_id empty", with_(ORDER, event_id=""), False),
    ("event_id 128", with_(ORDER, event_id="x" * 128), True),
    ("event_id 129", with_(ORDER, event_id="x" * 129), False),
    ("seller_id 64", with_(ORDER, seller_id="s" * 64), True),
    ("seller_id 65", with_(ORDER, seller_id="s" * 65), False),
    ("seller_id punctuation", with_(ORDER, seller_id="a.b_c:d-e"), True),
    ("seller_id space", with_(ORDER, seller_id="a b"), False),
    ("seller_id trailing newline", with_(ORDER, seller_id="abc\n"), False),
    ("seller_id non-ascii", with_(ORDER, seller_id="sellér"), False),
    ("amount negative", with_(ORDER, amount=-1), False),
    ("amount zero", with_(ORDER, amount=0), True),
    ("amount null", with_(ORDER, amount=None), True),
    ("amount string", with_(ORDER, amount="1"), False),
    ("unknown extra field", with_(ORDER, colour="blue"), True),
    ("unknown type", with_(ORDER, type="teleport"), False),
    ("type missing", with_(ORDER, type=_DROP), False),
    ("rating 0", with_(FEEDBACK, rating=0), False),
    ("rating 6", with_(FEEDBACK, rating=6), False),
    ("rating 2.5", with_(FEEDBACK, rating=2.5), False),
    ("rating 2.0", with_(FEEDBACK, rating=2.0), True),
    ("rating true", with_(FEEDBACK, rating=True), False),
    ("rating string", with_(FEEDBACK, rating="2"), False),
    ("removed not bool", with_(FEEDBACK, removed=1), False),
    ("removed null", with_(FEEDBACK, removed=None), False),
    ("shipment tracking null", {**with_(FEEDBACK, type="shipment", rating=_DROP),
                                "tracking_id": None}, True),
    ("shipment tracking number", {**with_(FEEDBACK, type="shipment", rating=_DROP),
                                  "tracking_id": 5}, False),
    ("claim default status", {**with_(FEEDBACK, type="claim", rating=_DROP),
                              "claim_type": "a_to_z"}, True),
    ("claim unknown status", {**with_(FEEDBACK, type="claim", rating=_DROP),
                              "claim_type": "a_to_z", "status": "closed"}, False),
    ("claim missing type", with_(FEEDBACK, type="claim", rating=_DROP), False),
    ("cancellation by marketplace", {**with_(FEEDBACK, type="cancellation", rating=_DROP),
                                     "initiated_by": "amazon"}, False),
    ("message without order", MESSAGE, True),
    ("message order null", with_(MESSAGE, order_id=None), True),
    ("message order empty", with_(MESSAGE, order_id=""), False),
    ("message without message_id", with_(MESSAGE, message_id=_DROP), False),
    ("message sender system", with_(MESSAGE, sender="system"), False),
    ("not an object", ["x"], False),
    ("a string", "x", False),
]


@pytest.mark.parametrize(("case", "doc", "valid"), TABLE, ids=[c for c, _, _ in TABLE])
def test_tricky_documents(case: str, doc: Any, valid: bool) -> None:
    assert schema_accepts(doc) is valid, f"schema on {case}"
    assert decoder_accepts(doc) is valid, f"decoder on {case}"


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10) | st.floats(-10, 10, allow_nan=False)
    | st.text(max_size=6),
    lambda children: st.lists(children, max_size=2) | st.dictionaries(st.text(max_size=3),
                                                                         children, max_size=2),
    max_leaves=4,
)
_timestamps = st.from_regex(
    r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{0,3})?"
    r"([Zz]|[+-][0-9]{2}:?[0-9]{2}|[+-][0-9]{2})?\Z"
)
_BASES = [ORDER, FEEDBACK, MESSAGE] + [
    load_schemas()[f"{t}.schema.json"]["examples"][0] for t in EVENT_TYPES
]


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    doc = dict(draw(st.sampled_from(_BASES)))
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from([*sorted(doc), "extra", "rating", "status", "tracking_id"]))
        action = draw(st.sampled_from(["drop", "json", "timestamp", "id", "number"]))
        if action == "drop":
            doc.pop(key, None)
        elif action == "json":
            doc[key] = draw(_json_values)
        elif action == "timestamp":
            doc[key] = draw(_timestamps)
        elif action == "id":
            doc[key] = draw(st.text(alphabet="ab:._- \n\u00e9", min_size=0, max_size=70))
        else:
            doc[key] = draw(st.sampled_from([0, 1, 2, 5, 6, -1, 2.0, 2.5, 1e3, True, None]))
    return doc


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_schema_and_decoder_agree_on_mutations(doc: Any) -> None:
    assert schema_accepts(doc) == decoder_accepts(doc), doc
