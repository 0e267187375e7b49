"""The published JSON Schemas and the msgspec decoder accept and reject alike.

``schema_valid`` is plain jsonschema (draft 2020-12) over ``event.schema.json`` with
every ``$ref`` resolved offline through a ``referencing.Registry``; ``decoder_accepts``
is :func:`streams.engine.events.decode_event` on the JSON text. Every tabled case
states its verdict explicitly, and the property tests look for any document on which
the two differ.
"""

from __future__ import annotations

import json
import sys
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from streams.engine.events import EVENT_TYPES, Feedback, decode_event, decode_events, event_type
from streams.errors import InvalidEvent
from streams.schemas import BASE_URI, load_schemas, schema_dir, validate_with_schema

pytestmark = pytest.mark.unit

SCHEMA_FILES = {"envelope.schema.json", "event.schema.json"} | {
    f"{t}.schema.json" for t in EVENT_TYPES
}


@cache
def _validator(name: str) -> Draft202012Validator:
    schemas = load_schemas()
    registry: Registry[Any] = Registry().with_resources(
        (doc["$id"], Resource.from_contents(doc)) for doc in schemas.values()
    )
    return Draft202012Validator(schemas[name], registry=registry)


def schema_valid(doc: Any, name: str = "event.schema.json") -> bool:
    return bool(_validator(name).is_valid(doc))


def decoder_accepts_text(text: str | bytes) -> bool:
    try:
        decode_event(text.encode() if isinstance(text, str) else text)
    except InvalidEvent:
        return False
    return True


def decoder_accepts(doc: Any) -> bool:
    escaped = decoder_accepts_text(json.dumps(doc))
    raw_utf8 = decoder_accepts_text(json.dumps(doc, ensure_ascii=False))
    assert escaped == raw_utf8, "\\u escapes and raw UTF-8 decode differently"
    return escaped


def assert_agree(doc: Any) -> bool:
    """Schema and decoder verdicts on ``doc`` (asserted equal); returns the verdict."""
    verdict = schema_valid(doc)
    assert decoder_accepts(doc) == verdict, f"schema says {verdict} on {doc!r}"
    # The helper dispatches on type for better messages; it must keep the verdict.
    assert (validate_with_schema(doc) == []) == verdict, validate_with_schema(doc)
    return verdict


# --- (a) the schemas themselves --------------------------------------------------


def test_every_schema_is_valid_draft_2020_12() -> None:
    schemas = load_schemas()
    assert set(schemas) == SCHEMA_FILES
    for name, doc in schemas.items():
        Draft202012Validator.check_schema(doc)
        assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert doc["$id"] == BASE_URI + name


def test_schema_dir_can_be_overridden(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    real = schema_dir()
    assert (real / "event.schema.json").is_file()
    monkeypatch.setenv("POPSTREAM_SCHEMA_DIR", str(real))
    assert str(schema_dir()) == str(real)
    monkeypatch.setenv("POPSTREAM_SCHEMA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="POPSTREAM_SCHEMA_DIR"):
        schema_dir()


def test_per_type_schemas_build_on_the_envelope() -> None:
    schemas = load_schemas()
    envelope_types = schemas["envelope.schema.json"]["properties"]["type"]["enum"]
    assert tuple(envelope_types) == EVENT_TYPES
    assert schemas["event.schema.json"]["oneOf"] == [
        {"$ref": f"{t}.schema.json"} for t in EVENT_TYPES
    ]
    for kind in EVENT_TYPES:
        schema = schemas[f"{kind}.schema.json"]
        assert {"$ref": "envelope.schema.json"} in schema["allOf"]
        assert schema["properties"]["type"] == {"const": kind}


# --- (b) examples ----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SCHEMA_FILES))
def test_examples_validate_and_decode(name: str) -> None:
    examples = load_schemas()[name]["examples"]
    assert examples
    for example in examples:
        assert schema_valid(example, name)
        assert validate_with_schema(example, name) == []
        assert assert_agree(example)
        decoded = decode_event(json.dumps(example).encode())
        assert event_type(decoded) == example["type"]
        if name.removesuffix(".schema.json") in EVENT_TYPES:
            assert example["type"] == name.removesuffix(".schema.json")


# --- (c) tricky documents, verdicts stated ----------------------------------------

ORDER = {"event_id": "e", "type": "order", "seller_id": "S1", "order_id": "o",
         "occurred_at": "2024-06-14T10:00:00Z", "ship_by": "2024-06-16T10:00:00Z"}
CANCELLATION = {"event_id": "e", "type": "cancellation", "seller_id": "S1", "order_id": "o",
                "occurred_at": "2024-06-14T10:00:00Z", "initiated_by": "seller"}
SHIPMENT = {"event_id": "e", "type": "shipment", "seller_id": "S1", "order_id": "o",
            "occurred_at": "2024-06-14T10:00:00Z"}
REFUND = {"event_id": "e", "type": "refund", "seller_id": "S1", "order_id": "o",
          "occurred_at": "2024-06-14T10:00:00Z"}
FEEDBACK = {"event_id": "e", "type": "feedback", "seller_id": "S1", "order_id": "o",
            "occurred_at": "2024-06-14T10:00:00Z", "rating": 4}
CLAIM = {"event_id": "e", "type": "claim", "seller_id": "S1", "order_id": "o",
         "occurred_at": "2024-06-14T10:00:00Z", "claim_type": "a_to_z"}
MESSAGE = {"event_id": "e", "type": "message", "seller_id": "S1", "message_id": "m",
           "occurred_at": "2024-06-14T10:00:00Z", "sender": "buyer"}
DELIVERY = {"event_id": "e", "type": "delivery", "seller_id": "S1", "order_id": "o",
            "occurred_at": "2024-06-17T10:00:00Z"}
RETURN = {"event_id": "e", "type": "return", "seller_id": "S1", "order_id": "o",
          "occurred_at": "2024-06-20T10:00:00Z"}
# v1.1: the optional fields filled in, so mutations reach them too.
ORDER_V11 = {**ORDER, "deliver_by": "2024-06-20T23:59:59Z"}
REPLY = {**MESSAGE, "message_id": "r", "sender": "seller", "in_reply_to": "m"}
BASES = [ORDER, CANCELLATION, SHIPMENT, REFUND, FEEDBACK, CLAIM, MESSAGE, DELIVERY, RETURN,
         ORDER_V11, REPLY]

_DROP = object()


def with_(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    doc = dict(base)
    for key, value in changes.items():
        if value is _DROP:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


def at(ts: Any) -> dict[str, Any]:
    return with_(ORDER, occurred_at=ts)


MAX_DOUBLE = sys.float_info.max
FIRST_OUT_OF_RANGE = int(MAX_DOUBLE) + 2**970  # 2^1024 - 2^970: rounds to infinity

TABLE: list[tuple[str, Any, bool]] = [
    ("plain order", ORDER, True),
    # timestamps
    ("naive timestamp", at("2024-06-14T10:00:00"), False),
    ("offset with colon", at("2024-06-14T10:00:00+05:30"), True),
    ("offset without colon", at("2024-06-14T10:00:00+0530"), True),
    ("offset hours only", at("2024-06-14T10:00:00+05"), False),
    ("offset -00:00", at("2024-06-14T10:00:00-00:00"), True),
    ("offset +23:59", at("2024-06-14T10:00:00+23:59"), True),
    ("offset +24:00", at("2024-06-14T10:00:00+24:00"), False),
    ("offset minute 60", at("2024-06-14T10:00:00+01:60"), False),
    ("Z and offset", at("2024-06-14T10:00:00Z+01:00"), False),
    ("zone name", at("2024-06-14T10:00:00UTC"), False),
    ("lowercase t and z", at("2024-06-14t10:00:00z"), True),
    ("space separator", at("2024-06-14 10:00:00Z"), True),
    ("underscore separator", at("2024-06-14_10:00:00Z"), False),
    ("basic format", at("20240614T100000Z"), False),
    ("fraction 9 digits", at("2024-06-14T10:00:00.123456789Z"), True),
    ("fraction 30 digits", at("2024-06-14T10:00:00." + "1" * 30 + "Z"), True),
    ("empty fraction", at("2024-06-14T10:00:00.Z"), False),
    ("comma fraction", at("2024-06-14T10:00:00,5Z"), False),
    ("no seconds", at("2024-06-14T10:00Z"), False),
    ("one-digit month", at("2024-6-14T10:00:00Z"), False),
    ("hour 24", at("2024-06-14T24:00:00Z"), False),
    ("leap second", at("2024-06-30T23:59:60Z"), False),
    ("feb 29 leap year", at("2024-02-29T10:00:00Z"), True),
    ("feb 29 common year", at("2023-02-29T10:00:00Z"), False),
    ("feb 29 2000", at("2000-02-29T10:00:00Z"), True),
    ("feb 29 1900", at("1900-02-29T10:00:00Z"), False),
    ("feb 29 2100", at("2100-02-29T10:00:00Z"), False),
    ("feb 30", at("2024-02-30T10:00:00Z"), False),
    ("april 31", at("2024-04-31T10:00:00Z"), False),
    ("month 13", at("2024-13-01T10:00:00Z"), False),
    ("day 00", at("2024-06-00T10:00:00Z"), False),
    ("year 0999", at("0999-06-14T10:00:00Z"), False),
    ("year 1000", at("1000-01-01T00:00:00Z"), True),
    ("year 1000 east of UTC", at("1000-01-01T00:00:00+01:00"), True),
    ("year 9998", at("9998-06-14T10:00:00Z"), True),
    ("year 9999", at("9999-06-14T10:00:00Z"), False),
    ("last microsecond of 9998", at("9998-12-31T23:59:59.999999Z"), True),
    ("rounds down within 9998", at("9998-12-31T23:59:59.99999949999Z"), True),
    ("rounds up into 9999", at("9998-12-31T23:59:59.9999995Z"), False),
    ("rounds up into 9999, offset", at("9998-12-31 23:59:59.9999999-05:00"), False),
    ("rounds up, not at year end", at("2024-12-31T23:59:59.9999999Z"), True),
    ("full-width digits", at("２０２４-06-14T10:00:00Z"), False),
    ("timestamp trailing newline", at("2024-06-14T10:00:00Z\n"), False),
    ("timestamp leading space", at(" 2024-06-14T10:00:00Z"), False),
    ("timestamp number", at(1718359200), False),
    ("ship_by naive", with_(ORDER, ship_by="2024-06-16T10:00:00"), False),
    ("ship_by year 9999", with_(ORDER, ship_by="9999-01-01T00:00:00Z"), False),
    ("ship_by null", with_(ORDER, ship_by=None), False),
    ("ship_by missing", with_(ORDER, ship_by=_DROP), False),
    # identifiers
    ("order_id missing", with_(ORDER, order_id=_DROP), False),
    ("order_id empty", with_(ORDER, order_id=""), False),
    ("order_id null on order", with_(ORDER, order_id=None), False),
    ("order_id missing on feedback", with_(FEEDBACK, order_id=_DROP), False),
    ("order_id missing on shipment", with_(SHIPMENT, order_id=_DROP), False),
    ("order_id 129", with_(REFUND, order_id="o" * 129), False),
    ("event_id empty", with_(ORDER, event_id=""), False),
    ("event_id missing", with_(ORDER, event_id=_DROP), False),
    ("event_id number", with_(ORDER, event_id=7), False),
    ("event_id 128", with_(ORDER, event_id="x" * 128), True),
    ("event_id 129", with_(ORDER, event_id="x" * 129), False),
    ("event_id 128 astral code points", with_(ORDER, event_id="\U0001f600" * 128), True),
    ("event_id 129 astral code points", with_(ORDER, event_id="\U0001f600" * 129), False),
    ("seller_id 64", with_(ORDER, seller_id="s" * 64), True),
    ("seller_id 65", with_(ORDER, seller_id="s" * 65), False),
    ("seller_id empty", with_(ORDER, seller_id=""), False),
    ("seller_id punctuation", with_(ORDER, seller_id="a.b_c:d-e"), True),
    ("seller_id space", with_(ORDER, seller_id="a b"), False),
    ("seller_id trailing newline", with_(ORDER, seller_id="abc\n"), False),
    ("seller_id leading newline", with_(ORDER, seller_id="\nabc"), False),
    ("seller_id non-ascii", with_(ORDER, seller_id="sellér"), False),
    ("seller_id kelvin sign", with_(ORDER, seller_id="\u212a"), False),
    ("seller_id arabic digit", with_(ORDER, seller_id="s\u0661"), False),
    # order fields
    ("amount negative", with_(ORDER, amount=-1), False),
    ("amount zero", with_(ORDER, amount=0), True),
    ("amount negative zero", with_(ORDER, amount=-0.0), True),
    ("amount null", with_(ORDER, amount=None), True),
    ("amount string", with_(ORDER, amount="1"), False),
    ("amount true", with_(ORDER, amount=True), False),
    ("amount largest double", with_(ORDER, amount=MAX_DOUBLE), True),
    ("amount integer rounding to largest double", with_(ORDER, amount=FIRST_OUT_OF_RANGE - 1),
     True),
    ("amount integer rounding to infinity", with_(ORDER, amount=FIRST_OUT_OF_RANGE), False),
    ("amount 10**400", with_(ORDER, amount=10**400), False),
    ("marketplace and currency null", with_(ORDER, marketplace=None, currency=None), True),
    ("currency number", with_(ORDER, currency=978), False),
    ("unknown extra field", with_(ORDER, colour="blue", nested={"a": [1, None]}), True),
    ("extra field named like another type's", with_(ORDER, rating=99, sender="x"), True),
    # type
    ("unknown type", with_(ORDER, type="teleport"), False),
    ("type missing", with_(ORDER, type=_DROP), False),
    ("type null", with_(ORDER, type=None), False),
    ("type in a list", with_(ORDER, type=["order"]), False),
    ("type Order", with_(ORDER, type="Order"), False),
    ("order fields under another type", with_(ORDER, type="shipment"), True),
    ("feedback fields under type order", with_(FEEDBACK, type="order"), False),
    # cancellation, shipment, refund
    ("cancellation by marketplace", with_(CANCELLATION, initiated_by="amazon"), False),
    ("cancellation initiator null", with_(CANCELLATION, initiated_by=None), False),
    ("cancellation initiator missing", with_(CANCELLATION, initiated_by=_DROP), False),
    ("cancellation by buyer", with_(CANCELLATION, initiated_by="buyer"), True),
    ("shipment without tracking", SHIPMENT, True),
    ("shipment tracking null", with_(SHIPMENT, tracking_id=None), True),
    ("shipment tracking empty", with_(SHIPMENT, tracking_id=""), True),
    ("shipment tracking number", with_(SHIPMENT, tracking_id=5), False),
    ("refund bare", REFUND, True),
    ("refund amount and reason null", with_(REFUND, amount=None, reason=None), True),
    ("refund amount -0.01", with_(REFUND, amount=-0.01), False),
    ("refund reason number", with_(REFUND, reason=1), False),
    # feedback
    ("rating 0", with_(FEEDBACK, rating=0), False),
    ("rating 1", with_(FEEDBACK, rating=1), True),
    ("rating 5", with_(FEEDBACK, rating=5), True),
    ("rating 6", with_(FEEDBACK, rating=6), False),
    ("rating 2.5", with_(FEEDBACK, rating=2.5), False),
    ("rating 2.0", with_(FEEDBACK, rating=2.0), True),
    ("rating 5.0", with_(FEEDBACK, rating=5.0), True),
    ("rating 3 + 1 ulp", with_(FEEDBACK, rating=3.0000000000000004), False),
    ("rating true", with_(FEEDBACK, rating=True), False),
    ("rating false", with_(FEEDBACK, rating=False), False),
    ("rating string", with_(FEEDBACK, rating="2"), False),
    ("rating null", with_(FEEDBACK, rating=None), False),
    ("rating missing", with_(FEEDBACK, rating=_DROP), False),
    ("rating 10**400", with_(FEEDBACK, rating=10**400), False),
    ("removed true", with_(FEEDBACK, removed=True), True),
    ("removed not bool", with_(FEEDBACK, removed=1), False),
    ("removed string", with_(FEEDBACK, removed="false"), False),
    ("removed null", with_(FEEDBACK, removed=None), False),
    # claim
    ("claim default status", CLAIM, True),
    ("claim chargeback withdrawn", with_(CLAIM, claim_type="chargeback", status="withdrawn"),
     True),
    ("claim unknown status", with_(CLAIM, status="closed"), False),
    ("claim status null", with_(CLAIM, status=None), False),
    ("claim missing type", with_(CLAIM, claim_type=_DROP), False),
    ("claim type null", with_(CLAIM, claim_type=None), False),
    # message
    ("message without order", MESSAGE, True),
    ("message with order", with_(MESSAGE, order_id="o"), True),
    ("message order null", with_(MESSAGE, order_id=None), True),
    ("message order empty", with_(MESSAGE, order_id=""), False),
    ("message order number", with_(MESSAGE, order_id=1), False),
    ("message without message_id", with_(MESSAGE, message_id=_DROP), False),
    ("message message_id empty", with_(MESSAGE, message_id=""), False),
    ("message message_id null", with_(MESSAGE, message_id=None), False),
    ("message sender system", with_(MESSAGE, sender="system"), False),
    ("message sender missing", with_(MESSAGE, sender=_DROP), False),
    ("message response_needed false", with_(MESSAGE, response_needed=False), True),
    ("message response_needed null", with_(MESSAGE, response_needed=None), False),
    ("message response_needed 0", with_(MESSAGE, response_needed=0), False),
    # v1.1: order.deliver_by
    ("deliver_by", ORDER_V11, True),
    ("deliver_by null", with_(ORDER, deliver_by=None), True),
    ("deliver_by offset without colon", with_(ORDER, deliver_by="2024-06-20T10:00:00+0200"),
     True),
    ("deliver_by naive", with_(ORDER, deliver_by="2024-06-20T10:00:00"), False),
    ("deliver_by year 9999", with_(ORDER, deliver_by="9999-01-01T00:00:00Z"), False),
    ("deliver_by rounds up into 9999", with_(ORDER, deliver_by="9998-12-31T23:59:59.9999995Z"),
     False),
    ("deliver_by feb 29 common year", with_(ORDER, deliver_by="2023-02-29T10:00:00Z"), False),
    ("deliver_by number", with_(ORDER, deliver_by=1718359200), False),
    ("deliver_by true", with_(ORDER, deliver_by=True), False),
    ("deliver_by empty", with_(ORDER, deliver_by=""), False),
    ("deliver_by object", with_(ORDER, deliver_by={"at": "2024-06-20T10:00:00Z"}), False),
    ("deliver_by before ship_by", with_(ORDER, deliver_by="2024-06-01T00:00:00Z"), True),
    ("deliver_by on another type is ignored", with_(SHIPMENT, deliver_by=5), True),
    # v1.1: delivery
    ("delivery", DELIVERY, True),
    ("delivery order_id missing", with_(DELIVERY, order_id=_DROP), False),
    ("delivery order_id null", with_(DELIVERY, order_id=None), False),
    ("delivery order_id empty", with_(DELIVERY, order_id=""), False),
    ("delivery occurred_at naive", with_(DELIVERY, occurred_at="2024-06-17T10:00:00"), False),
    ("delivery with extra fields", with_(DELIVERY, carrier="UPS", tracking_id=5), True),
    ("type Delivery", with_(DELIVERY, type="Delivery"), False),
    ("type deliveries", with_(DELIVERY, type="deliveries"), False),
    # v1.1: return
    ("return bare", RETURN, True),
    ("return reason", with_(RETURN, reason="no longer needed"), True),
    ("return reason null", with_(RETURN, reason=None), True),
    ("return reason empty", with_(RETURN, reason=""), True),
    ("return reason number", with_(RETURN, reason=1), False),
    ("return reason false", with_(RETURN, reason=False), False),
    ("return reason list", with_(RETURN, reason=["damaged"]), False),
    ("return order_id missing", with_(RETURN, order_id=_DROP), False),
    ("return order_id number", with_(RETURN, order_id=1), False),
    ("return amount is ignored", with_(RETURN, amount="x"), True),
    # v1.1: item_not_received claims
    ("claim item_not_received", with_(CLAIM, claim_type="item_not_received"), True),
    ("claim item_not_received granted",
     with_(CLAIM, claim_type="item_not_received", status="granted"), True),
    ("claim item_not_received withdrawn",
     with_(CLAIM, claim_type="item_not_received", status="withdrawn"), True),
    ("claim item_not_received closed",
     with_(CLAIM, claim_type="item_not_received", status="closed"), False),
    ("claim Item_Not_Received", with_(CLAIM, claim_type="Item_Not_Received"), False),
    ("claim inr", with_(CLAIM, claim_type="inr"), False),
    # v1.1: message.in_reply_to
    ("reply", REPLY, True),
    ("reply in_reply_to null", with_(REPLY, in_reply_to=None), True),
    ("reply in_reply_to 128", with_(REPLY, in_reply_to="m" * 128), True),
    ("reply in_reply_to 129", with_(REPLY, in_reply_to="m" * 129), False),
    ("reply in_reply_to empty", with_(REPLY, in_reply_to=""), False),
    ("reply in_reply_to number", with_(REPLY, in_reply_to=1), False),
    ("reply in_reply_to list", with_(REPLY, in_reply_to=["m"]), False),
    ("reply in_reply_to true", with_(REPLY, in_reply_to=True), False),
    ("reply to an unknown id", with_(REPLY, in_reply_to="nowhere"), True),
    ("buyer message with in_reply_to", with_(MESSAGE, in_reply_to="m0"), True),
    ("buyer message in_reply_to number", with_(MESSAGE, in_reply_to=0), False),
    ("in_reply_to on another type is ignored", with_(RETURN, in_reply_to=0), True),
    # not an event object at all
    ("not an object", ["x"], False),
    ("array of an event", [ORDER], False),
    ("a string", "x", False),
    ("null", None, False),
    ("a number", 1, False),
    ("empty object", {}, False),
]


def test_table_is_unique() -> None:
    assert len({case for case, _, _ in TABLE}) == len(TABLE)


@pytest.mark.parametrize(("case", "doc", "valid"), TABLE, ids=[c for c, _, _ in TABLE])
def test_tricky_documents(case: str, doc: Any, valid: bool) -> None:
    assert schema_valid(doc) is valid, f"schema on {case}"
    assert decoder_accepts(doc) is valid, f"decoder on {case}"
    assert (validate_with_schema(doc) == []) is valid, f"helper on {case}"


# Number literals the Python object table cannot spell: the schema sees json.loads(text).
_ORDER_TEXT = json.dumps(ORDER)[:-1]
_FEEDBACK_TEXT = json.dumps(with_(FEEDBACK, rating=_DROP))[:-1]
LITERALS: list[tuple[str, str, bool]] = [
    ("amount 1e308", f'{_ORDER_TEXT}, "amount": 1e308}}', True),
    ("amount 1.7976931348623158e308", f'{_ORDER_TEXT}, "amount": 1.7976931348623158e308}}', True),
    ("amount 1.7976931348623159e308", f'{_ORDER_TEXT}, "amount": 1.7976931348623159e308}}', False),
    ("amount 1e309", f'{_ORDER_TEXT}, "amount": 1e309}}', False),
    ("amount -1e-400", f'{_ORDER_TEXT}, "amount": -1e-400}}', True),
    ("amount 0e0", f'{_ORDER_TEXT}, "amount": 0E0}}', True),
    ("rating 4.0e0", f'{_FEEDBACK_TEXT}, "rating": 4.0e0}}', True),
    ("rating 5.0000000000000001", f'{_FEEDBACK_TEXT}, "rating": 5.0000000000000001}}', True),
    ("rating 0.99999999999999999", f'{_FEEDBACK_TEXT}, "rating": 0.99999999999999999}}', True),
    ("rating 5e-324", f'{_FEEDBACK_TEXT}, "rating": 5e-324}}', False),
    ("rating 1e309", f'{_FEEDBACK_TEXT}, "rating": 1e309}}', False),
]


@pytest.mark.parametrize(("case", "text", "valid"), LITERALS, ids=[c for c, _, _ in LITERALS])
def test_number_literals(case: str, text: str, valid: bool) -> None:
    assert schema_valid(json.loads(text)) is valid, f"schema on {case}"
    assert decoder_accepts_text(text) is valid, f"decoder on {case}"


def test_outside_the_json_data_model() -> None:
    """Texts a schema validator never sees as such; README tells producers to avoid them.

    JSON Schema validates the parsed value, where an object has one value per key;
    the decoder validates every occurrence of a duplicated key and keeps the last.
    Unpaired surrogate escapes and NaN are not valid JSON for the decoder.
    """
    feedback = json.dumps(FEEDBACK)[:-1]
    last_wins = decode_event(f'{feedback}, "rating": 5}}'.encode())
    assert isinstance(last_wins, Feedback)
    assert last_wins.rating == 5
    assert not decoder_accepts_text(f'{feedback}, "rating": 9, "rating": 3}}')
    assert schema_valid(json.loads(f'{feedback}, "rating": 9, "rating": 3}}'))
    assert not decoder_accepts_text(json.dumps(with_(ORDER, note="\ud800")))
    assert not decoder_accepts_text(json.dumps(ORDER)[:-1] + ', "amount": NaN}')


# --- (d) properties --------------------------------------------------------------


def _two_digits(low: int, high: int, edges: list[int]) -> st.SearchStrategy[str]:
    return (st.sampled_from(edges) | st.integers(low, high)).map(lambda n: f"{n:02d}")


_years = (
    st.sampled_from([999, 1000, 1900, 2000, 2023, 2024, 2100, 2400, 9998, 9999])
    | st.integers(0, 9999)
).map(lambda n: f"{n:04d}")
_fractions = st.sampled_from(["", "", ".", ".5", ".999999", ".9999995", ".99999949"]) | (
    st.text(alphabet="0123456789", min_size=1, max_size=12).map(lambda s: "." + s)
) | st.text(alphabet="0123456789", max_size=4).map(lambda s: ".999999" + s)
_offsets = st.sampled_from(["Z", "z", "+00:00", "-05:00", "+0130"]) | st.sampled_from(
    ["", "+05", "+5:00", "Z\n", " Z", "UTC", "Z+01:00"]
) | st.tuples(
    st.sampled_from("+-"), _two_digits(0, 25, [0, 23, 24]),
    st.sampled_from([":", ""]), _two_digits(0, 61, [0, 59, 60]),
).map("".join)
_grammar_timestamps = st.tuples(
    _years, st.just("-"), _two_digits(0, 13, [0, 1, 2, 4, 12, 13]), st.just("-"),
    _two_digits(0, 32, [0, 28, 29, 30, 31, 32]), st.sampled_from(["T", "T", "t", " ", "_"]),
    _two_digits(0, 25, [0, 23, 24]), st.just(":"), _two_digits(0, 61, [0, 59, 60]),
    st.just(":"), _two_digits(0, 61, [0, 59, 60]), _fractions, _offsets,
).map("".join)
# The edges of the year range, where rounding the fraction can cross into 9999.
_range_edges = st.tuples(
    st.sampled_from(["9998-12-31", "1000-01-01", "9997-12-31"]),
    st.sampled_from(["T", "t", " "]),
    st.sampled_from(["23:59:59", "00:00:00"]),
    _fractions, _offsets,
).map("".join)
_noisy = st.from_regex(
    r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt _][0-9]{2}:[0-9]{2}(:[0-9]{2})?(\.[0-9]{0,3})?"
    r"([Zz]|[+-][0-9]{2}:?[0-9]{2}|[+-][0-9]{2})?\n?\Z"
)


@st.composite
def _edited(draw: st.DrawFn, base: st.SearchStrategy[str]) -> str:
    """One character replaced or deleted: near misses of the grammar."""
    text = draw(base)
    i = draw(st.integers(0, len(text) - 1))
    return text[:i] + draw(st.sampled_from(["", "0", "9", "-", ":", "T", "Z", " ", "\n"])) + \
        text[i + 1:]


timestamps = _grammar_timestamps | _range_edges | _noisy | _edited(_grammar_timestamps)

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10) | st.floats(-10, 10, allow_nan=False)
    | st.text(max_size=6),
    lambda children: st.lists(children, max_size=2)
    | st.dictionaries(st.text(max_size=3), children, max_size=2),
    max_leaves=4,
)
_ids = st.text(alphabet="abAZ09:._- \n\té\U0001f600/", min_size=0, max_size=70) | st.sampled_from(
    ["", "s" * 64, "s" * 65, "x" * 128, "x" * 129, "\U0001f600" * 128, "\U0001f600" * 129, "ok\n"]
)
_numbers = st.sampled_from([
    0, 1, 2, 5, 6, -1, 0.5, 2.0, 5.0, 2.5, 1e3, -0.0, 3.0000000000000004, True, False,
    MAX_DOUBLE, FIRST_OUT_OF_RANGE - 1, FIRST_OUT_OF_RANGE, 10**400, -(10**400),
])
_enums = st.sampled_from(
    ["seller", "buyer", "a_to_z", "chargeback", "item_not_received", "opened", "granted",
     "denied", "withdrawn", "closed", "Seller", "", *EVENT_TYPES]
)
_values = st.none() | _json_values | timestamps | _ids | _numbers | _enums

_SCHEMAS = load_schemas()
_EXAMPLES = [_SCHEMAS[f"{t}.schema.json"]["examples"][0] for t in EVENT_TYPES]
# Each type's own fields (envelope and type schema), and every field of any type.
_OWN: dict[str, list[str]] = {
    t: sorted(set(_SCHEMAS["envelope.schema.json"]["properties"])
              | set(_SCHEMAS[f"{t}.schema.json"]["properties"]))
    for t in EVENT_TYPES
}
_ANY = sorted({key for keys in _OWN.values() for key in keys} | {"extra"})


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    """A valid event with one to three fields dropped, replaced, or added."""
    doc: dict[str, Any] = dict(draw(st.sampled_from(BASES + _EXAMPLES)))
    own = _OWN[doc["type"]]
    for _ in range(draw(st.sampled_from([1, 1, 2, 3]))):
        key = draw(st.sampled_from(own) | st.sampled_from(_ANY))
        if draw(st.integers(0, 5)) == 0:
            doc.pop(key, None)
        else:
            doc[key] = draw(_values)
    return doc


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_schema_and_decoder_agree_on_mutations(doc: Any) -> None:
    event(f"valid: {assert_agree(doc)}")


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(timestamps, st.sampled_from(["occurred_at", "ship_by", "deliver_by"]))
def test_schema_and_decoder_agree_on_timestamps(ts: str, field: str) -> None:
    event(f"valid: {assert_agree(with_(ORDER, **{field: ts}))}")


@settings(max_examples=500, deadline=None)
@given(_ids, st.sampled_from(["seller_id", "event_id", "order_id", "message_id",
                               "in_reply_to"]))
def test_schema_and_decoder_agree_on_identifiers(value: str, field: str) -> None:
    base = REPLY if field in ("message_id", "in_reply_to") else FEEDBACK
    event(f"valid: {assert_agree(with_(base, **{field: value}))}")


_any_numbers = (
    _numbers | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(2**1023, 2**1025) | st.integers(0, 12).map(lambda n: n / 2)
)


@settings(max_examples=500, deadline=None)
@given(_any_numbers, st.sampled_from([(ORDER, "amount"), (REFUND, "amount"), (FEEDBACK, "rating")]))
def test_schema_and_decoder_agree_on_numbers(value: Any, where: tuple[dict[str, Any], str]) -> None:
    base, field = where
    event(f"valid: {assert_agree(with_(base, **{field: value}))}")


# --- (e) v1.1: where and why a new field fails -------------------------------------

REASONS: list[tuple[str, Any, str | None, str]] = [
    ("deliver_by naive", with_(ORDER, deliver_by="2024-06-20T10:00:00"), "$.deliver_by",
     "Expected `datetime` with a timezone component"),
    ("deliver_by year 9999", with_(ORDER, deliver_by="9999-01-01T00:00:00Z"), "$.deliver_by",
     "expected a year in 1000..9998, got 9999"),
    ("deliver_by number", with_(ORDER, deliver_by=5), "$.deliver_by",
     "Expected `datetime | null`, got `int`"),
    ("in_reply_to number", with_(REPLY, in_reply_to=5), "$.in_reply_to",
     "Expected `str | null`, got `int`"),
    ("in_reply_to empty", with_(REPLY, in_reply_to=""), "$.in_reply_to",
     "Expected `str` of length >= 1"),
    ("return reason number", with_(RETURN, reason=5), "$.reason",
     "Expected `str | null`, got `int`"),
    ("delivery without order", with_(DELIVERY, order_id=_DROP), None,
     "Object missing required field `order_id`"),
    ("claim type", with_(CLAIM, claim_type="inr"), "$.claim_type",
     "Invalid enum value 'inr'"),
]


@pytest.mark.parametrize(("case", "doc", "field", "reason"), REASONS,
                         ids=[c for c, _, _, _ in REASONS])
def test_v11_reasons_name_the_field(case: str, doc: Any, field: str | None,
                                    reason: str) -> None:
    """Wrong-typed v1.1 fields are reported like the v1 ones: the field's JSON path
    and msgspec's own wording (or the year range, as for ``ship_by``)."""
    with pytest.raises(InvalidEvent) as info:
        decode_event(json.dumps(doc).encode())
    assert info.value.field == field, case
    assert reason in info.value.reason, (case, info.value.reason)


def test_bulk_route_rejects_what_decode_event_rejects() -> None:
    """The one-pass array decoder checks ``deliver_by``'s year range too."""
    good = with_(ORDER_V11, event_id="a")
    bad = with_(ORDER, event_id="b", deliver_by="9998-12-31T23:59:59.9999995Z")
    assert decode_events(json.dumps([good, DELIVERY, RETURN, REPLY]).encode()) is not None
    assert decode_events(json.dumps([good, bad]).encode()) is None
