"""Hypothesis strategies of hostile input for every place bytes enter popstream.

Built on the valid events of :mod:`tests.unit.strategies`, mutated the ways real
producers and real networks break them. Public, for any fuzz test of a boundary
(the decoder, replay, ``popstream produce``, the worker's pipeline):

``bad_values()``
    ``SearchStrategy[bytes]``: one Kafka value or JSONL line (no ``\\n`` inside
    unless a mutation put it there), drawn from every family below. Mostly
    invalid, *not always*: a flipped byte in an unknown field, ``-0`` as an
    amount, a truncation that only drops trailing spaces stay valid. Judge each
    value with ``decode_event`` (or check only that it has exactly one outcome).

``mixed_batches()``
    ``SearchStrategy[tuple[bytes, list[int]]]``: a JSON array of 1..8 elements and
    the indices of the elements that are valid events *alone* (``decode_event``
    accepts them; the engine may still reject one as a ``ConflictingEvent``). The
    array as a whole always splits (``split_batch`` returns one element per
    entry): bad elements are well-formed JSON values nested < 100 levels, though
    their strings may hold invalid UTF-8. Valid elements come from
    :func:`valid_events`, so they mix sellers and types unless ``uniform=True``
    (one seller, one type: what a bulk producer sends as one message).

``valid_events()``, ``valid_event_docs()``
    Valid events as bytes / as dicts, keys in varied order; ``v11=True`` draws
    contract v1.1 events too (off by default: the engine does not apply them yet).
    ``invalid_utf8_fields()`` always includes them (its values never decode).

Families (each a ``SearchStrategy[bytes]``): ``arbitrary_bytes``,
``flipped_bytes``, ``truncations``, ``deep_nestings`` (1..20,000 levels, as the
whole value, an ignored field, a known field or an array element),
``huge_numbers`` (1e400, 10**400, -0, NaN, Infinity, ...), ``odd_encodings``
(UTF-16/UTF-32/latin-1 re-encodings, BOMs, overlong UTF-8, lone surrogates
escaped and raw), ``invalid_utf8_values`` (bad bytes in each string field, in
keys, in unknown fields). ``invalid_utf8_fields()`` draws
``(value, path, offset)``: a valid event with invalid UTF-8 inserted into exactly
one decoded string field, its JSON path (``$.seller_id``) and the offset of the
first bad byte, for tests of the decoder's exact reason.
"""

from __future__ import annotations

from typing import Any, Final

import orjson
from hypothesis import strategies as st

from tests.unit.strategies import ORDERS, event_dicts, timestamps

# Byte sequences that are never valid UTF-8 (each alone, anywhere).
INVALID_UTF8: Final[tuple[bytes, ...]] = (
    b"\xff", b"\xfe", b"\x80", b"\xbf",       # never a start byte
    b"\xc0\xaf", b"\xc1\xbf",                 # overlong 2-byte ('/' and DEL)
    b"\xe0\x80\xaf", b"\xf0\x80\x80\xaf",     # overlong 3- and 4-byte
    b"\xed\xa0\x80", b"\xed\xbf\xbf",         # raw UTF-16 surrogates (CESU-8)
    b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", # beyond U+10FFFF
    b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98",    # truncated sequences
    b"\xc3\x28", b"\xe2\x28\xa1",             # bad continuation
)

# String fields msgspec decodes as text (so invalid UTF-8 there is reported with
# their path), by event type. Timestamps are parsed from raw bytes instead.
TEXT_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "order": ("type", "event_id", "seller_id", "order_id", "marketplace", "currency"),
    "cancellation": ("type", "event_id", "seller_id", "order_id", "initiated_by"),
    "shipment": ("type", "event_id", "seller_id", "order_id", "tracking_id"),
    "refund": ("type", "event_id", "seller_id", "order_id", "reason"),
    "feedback": ("type", "event_id", "seller_id", "order_id"),
    "claim": ("type", "event_id", "seller_id", "order_id", "claim_type", "status"),
    "message": ("type", "event_id", "seller_id", "message_id", "sender", "order_id",
                "in_reply_to"),
    "delivery": ("type", "event_id", "seller_id", "order_id"),
    "return": ("type", "event_id", "seller_id", "order_id", "reason"),
}

_HUGE: Final = (
    b"1e400", b"-1e400", b"1E+99999", b"1e-400", b"-0", b"-0.0", b"0e0",
    b"1" + b"0" * 400, b"-" + b"9" * 400, b"1." + b"0" * 400 + b"1",
    b"NaN", b"-NaN", b"Infinity", b"-Infinity", b"nan", b"inf",
    b"01", b"1.", b".5", b"+1", b"0x10", b"1e", b"--1",
)
_NUMBER_FIELDS: Final = ("amount", "rating", "removed", "response_needed", "seller_id",
                         "event_id", "x")


@st.composite
def valid_event_docs(draw: st.DrawFn, v11: bool = False) -> dict[str, Any]:
    """One valid event as a dict, with optional fields filled in (``marketplace``,
    ``currency``, ``reason``, ``tracking_id``...) so every string field occurs."""
    pool = draw(st.lists(timestamps(), min_size=1, max_size=3))
    orders = list(ORDERS)
    doc = draw(event_dicts(pool, orders, v11=v11))
    doc["event_id"] = f"e{draw(st.integers(0, 10**6))}"
    doc["seller_id"] = draw(st.sampled_from(["s1", "s2", "seller-3", "A.b_c:9"]))
    kind = doc["type"]
    if kind == "order" and draw(st.booleans()):
        doc["marketplace"] = draw(st.sampled_from(["US", "DE", "Jürgen's", "日本"]))
        doc["currency"] = "EUR"
    elif kind == "shipment" and doc.get("tracking_id") is None and draw(st.booleans()):
        doc["tracking_id"] = "1Z999"
    elif kind == "claim":
        doc.setdefault("status", "opened")
    elif kind == "return" and doc.get("reason") is None and draw(st.booleans()):
        doc["reason"] = "zu groß"
    elif kind == "message" and doc["sender"] == "seller" and doc.get("in_reply_to") is None \
            and draw(st.booleans()):
        doc["in_reply_to"] = "m1"
    keys = list(doc)
    order = draw(st.permutations(keys))
    return {k: doc[k] for k in order}


def valid_events(v11: bool = False) -> st.SearchStrategy[bytes]:
    """One valid event as compact JSON bytes (UTF-8, ``ensure_ascii`` off)."""
    return valid_event_docs(v11).map(orjson.dumps)


def arbitrary_bytes() -> st.SearchStrategy[bytes]:
    """Any bytes at all, some shaped like JSON."""
    return st.binary(max_size=300) | st.binary(max_size=40).map(lambda b: b"{" + b + b"}") | (
        st.binary(max_size=40).map(lambda b: b"[" + b + b"]"))


@st.composite
def flipped_bytes(draw: st.DrawFn) -> bytes:
    """A valid event with 1..4 bytes replaced by random ones."""
    data = bytearray(draw(valid_events()))
    for _ in range(draw(st.integers(1, 4))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


@st.composite
def truncations(draw: st.DrawFn) -> bytes:
    """A valid event (or a batch of two) cut short anywhere, or with a tail added."""
    data = draw(valid_events() | st.tuples(valid_events(), valid_events()).map(
        lambda p: b"[" + p[0] + b"," + p[1] + b"]"))
    cut = draw(st.integers(0, len(data) - 1))
    if draw(st.booleans()):
        return data[:cut]
    return data + draw(st.sampled_from([b"}", b"]", b",", b" x", b"\x00", b"{}", b'"']))


def nesting(depth: int, opener: bytes = b"[", inner: bytes = b"") -> bytes:
    """``depth`` levels of arrays (``opener=b"["``) or objects (``b"{"``, each
    level a key ``"a"``) around ``inner``."""
    if opener == b"[":
        return b"[" * depth + inner + b"]" * depth
    return b'{"a":' * depth + (inner or b"0") + b"}" * depth


@st.composite
def deep_nestings(draw: st.DrawFn) -> bytes:
    """1..20,000 levels (often right around msgspec's ~10,000), as the whole
    value, under an unknown field, under a known field, or as an array element."""
    depth = draw(st.sampled_from([1, 2, 99, 100, 1000, 9990, 9995, 9998, 9999, 10000,
                                  10001, 10005, 20000]) | st.integers(1, 20000))
    opener = draw(st.sampled_from([b"[", b"{"]))
    deep = nesting(depth, opener)
    event = draw(valid_events())
    where = draw(st.sampled_from(["whole", "unknown", "known", "element", "unclosed"]))
    if where == "whole":
        return deep
    if where == "unknown":
        return event[:-1] + b',"x":' + deep + b"}"
    if where == "known":
        return event[:-1] + b',"seller_id":' + deep + b"}"
    if where == "element":
        return b"[" + event + b"," + deep + b"]"
    return (opener * depth)


@st.composite
def huge_numbers(draw: st.DrawFn) -> bytes:
    """A valid event with a field (known or not) set to an extreme number literal,
    or such a literal as the whole value."""
    literal = draw(st.sampled_from(_HUGE))
    if draw(st.integers(0, 5)) == 0:
        return literal
    event = draw(valid_events())
    name = draw(st.sampled_from(_NUMBER_FIELDS))
    return event[:-1] + b',"' + name.encode() + b'":' + literal + b"}"


@st.composite
def odd_encodings(draw: st.DrawFn) -> bytes:
    """A valid event in the wrong encoding, behind a BOM, or holding overlong
    UTF-8 or a lone surrogate (escaped ``\\ud800`` or raw ``ED A0 80``)."""
    doc = draw(valid_event_docs())
    text = orjson.dumps(doc).decode()
    how = draw(st.sampled_from(["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le",
                                "latin-1", "bom8", "bom16", "overlong", "escaped-lone",
                                "raw-lone", "escaped-pair-reversed"]))
    if how in ("utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le"):
        return text.encode(how)
    if how == "latin-1":
        return text.replace('"s', '"\u00e9s', 1).encode("latin-1", "replace")
    if how == "bom8":
        return b"\xef\xbb\xbf" + text.encode()
    if how == "bom16":
        return b"\xff\xfe" + text.encode()
    data = text.encode()
    field = draw(st.sampled_from(TEXT_FIELDS[doc["type"]]))
    anchor = b'"' + field.encode() + b'":"'
    if anchor not in data:
        return data + b"\xc0\xaf"
    insert = {"overlong": b"\xc0\xaf", "escaped-lone": b"\\ud800", "raw-lone": b"\xed\xa0\x80",
              "escaped-pair-reversed": b"\\udc00\\ud800"}[how]
    return data.replace(anchor, anchor + insert, 1)


@st.composite
def invalid_utf8_fields(draw: st.DrawFn) -> tuple[bytes, str, int]:
    """``(value, path, offset)``: a valid event with invalid UTF-8 inserted into one
    string field msgspec decodes as text; ``offset`` is the first bad byte's."""
    doc = draw(valid_event_docs(v11=True))
    candidates = [f for f in TEXT_FIELDS[doc["type"]] if isinstance(doc.get(f), str)]
    field = draw(st.sampled_from(candidates))
    data = orjson.dumps(doc)
    anchor = b'"' + field.encode() + b'":"'
    start = data.index(anchor) + len(anchor)
    end = data.index(b'"', start)
    at = start + draw(st.integers(0, end - start))
    # Only where a UTF-8 sequence starts: inside a character would move the offset.
    while at > start and 0x80 <= data[at] < 0xC0:
        at -= 1
    bad = draw(st.sampled_from(INVALID_UTF8))
    return data[:at] + bad + data[at:], f"$.{field}", at


@st.composite
def invalid_utf8_values(draw: st.DrawFn) -> bytes:
    """Invalid UTF-8 in a known field, an unknown field, a key, or between tokens."""
    where = draw(st.sampled_from(["field", "field", "unknown", "key", "outside"]))
    bad = draw(st.sampled_from(INVALID_UTF8))
    if where == "field":
        return draw(invalid_utf8_fields())[0]
    event = draw(valid_events())
    if where == "unknown":
        return event[:-1] + b',"note":"' + bad + b'"}'
    if where == "key":
        return event[:-1] + b',"n' + bad + b'te":"x"}'
    at = draw(st.integers(0, len(event)))
    return event[:at] + bad + event[at:]


def bad_values() -> st.SearchStrategy[bytes]:
    """Every family: see the module docstring. Mostly invalid, not always."""
    return st.one_of(
        arbitrary_bytes(), flipped_bytes(), truncations(), deep_nestings(), huge_numbers(),
        odd_encodings(), invalid_utf8_values(), mixed_batches().map(lambda b: b[0]),
    )


@st.composite
def bad_elements(draw: st.DrawFn) -> bytes:
    """A well-formed JSON value (nested < 100 levels) that is not a valid event;
    its strings may hold invalid UTF-8, which an array split does not check."""
    doc = draw(valid_event_docs())
    how = draw(st.sampled_from(["missing", "type", "seller", "utf8", "scalar", "nested",
                                "number", "array", "year"]))
    if how == "missing":
        del doc["event_id"]
    elif how == "type":
        doc["type"] = draw(st.sampled_from(["teleport", "", "Order", 1]))
    elif how == "seller":
        doc["seller_id"] = draw(st.sampled_from(["bad seller", "", "x" * 65, "s\n"]))
    elif how == "utf8":
        return draw(invalid_utf8_fields())[0]
    elif how == "scalar":
        return draw(st.sampled_from([b"null", b"1", b'"order"', b"true", b"{}"]))
    elif how == "nested":
        return nesting(draw(st.integers(1, 98)), draw(st.sampled_from([b"[", b"{"])))
    elif how == "number":
        doc["occurred_at"] = 1718409600
    elif how == "array":
        return b"[" + orjson.dumps(doc) + b"]"
    else:
        doc["occurred_at"] = "0999-12-31T23:59:59Z"
    return orjson.dumps(doc)


@st.composite
def mixed_batches(draw: st.DrawFn, uniform: bool = False) -> tuple[bytes, list[int]]:
    """``(array, valid)``: see the module docstring."""
    size = draw(st.integers(1, 8))
    elements: list[bytes] = []
    valid: list[int] = []
    first: dict[str, Any] | None = None
    for index in range(size):
        if draw(st.integers(0, 2)):
            if not uniform:
                doc = draw(valid_event_docs())
            else:  # the first valid event again, as another event of its seller
                first = first or draw(valid_event_docs())
                doc = dict(first, event_id=f"u{index}")
                if "order_id" in doc:
                    doc["order_id"] = draw(st.sampled_from(ORDERS))
            elements.append(orjson.dumps(doc))
            valid.append(index)
        else:
            elements.append(draw(bad_elements()))
    space = draw(st.sampled_from([b"", b" ", b"\n ", b"\t"]))
    return b"[" + space + (b"," + space).join(elements) + space + b"]", valid

