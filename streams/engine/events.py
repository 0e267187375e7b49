"""The v1.1 event contract as typed structs, and the one decoder everything uses.

The published contract is the JSON Schema set in ``schemas/``; this module is its
fast twin. We decode with msgspec because it validates and parses timestamps in one
C pass (about 0.25 us for a 240-byte order event here, against ~4 us for
fastjsonschema plus datetime parsing), and ``tests/unit/test_schema_parity.py``
holds the two to accepting and rejecting exactly the same documents.

Timestamps: RFC 3339 with a mandatory ``Z`` or offset (msgspec's ``tz=True``);
naive ones are invalid. Years are limited to 1000..9998 so that every accepted
instant can be normalised to UTC without overflow. Everything downstream works in
integer microseconds since the Unix epoch (UTC), which makes comparisons exact and
keeps per-order state small.
"""

from __future__ import annotations

import datetime as _dt
import functools
import itertools
import re
from typing import Annotated, Final, Literal, TypeAlias

import msgspec

from streams.errors import InvalidEvent

# --- field types ---------------------------------------------------------------

Timestamp: TypeAlias = Annotated[_dt.datetime, msgspec.Meta(tz=True)]
EventId: TypeAlias = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
# The seller id's charset (the schema's ``^[A-Za-z0-9._:-]+$``) is checked after
# decoding, once per distinct id (_check_seller): as a msgspec ``pattern`` it was
# a Python regex call per event, half of a bulk array's decode time (0.73 of 1.42 us
# per event, issue #5). ``(?!\n)`` after ``$``: Python's ``$`` also matches before a
# final newline.
SELLER_ID_PATTERN: Final = r"^[A-Za-z0-9._:-]+$(?!\n)"
SellerId: TypeAlias = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
OrderId: TypeAlias = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Amount: TypeAlias = Annotated[float, msgspec.Meta(ge=0)]
# JSON Schema's "integer" accepts 5.0, so we decode as float and require a whole number.
Rating: TypeAlias = Annotated[float, msgspec.Meta(ge=1, le=5, multiple_of=1)]
MessageId: TypeAlias = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]

CancelInitiator: TypeAlias = Literal["seller", "buyer"]
ClaimType: TypeAlias = Literal["a_to_z", "chargeback", "item_not_received"]
ClaimStatus: TypeAlias = Literal["opened", "granted", "denied", "withdrawn"]
MessageSender: TypeAlias = Literal["buyer", "seller"]

EventType: TypeAlias = Literal[
    "order", "cancellation", "shipment", "refund", "feedback", "claim", "message",
    "delivery", "return",
]
EVENT_TYPES: Final[tuple[EventType, ...]] = (
    "order",
    "cancellation",
    "shipment",
    "refund",
    "feedback",
    "claim",
    "message",
    "delivery",
    "return",
)


class _Base(msgspec.Struct, kw_only=True, frozen=True, tag_field="type"):
    event_id: EventId
    seller_id: SellerId
    occurred_at: Timestamp


class Order(_Base, tag="order", frozen=True):
    """A purchase; ``occurred_at`` is the purchase time. ``deliver_by`` (v1.1,
    optional) is the promised latest delivery, which on-time delivery is measured
    against."""

    order_id: OrderId
    ship_by: Timestamp
    marketplace: str | None = None
    amount: Amount | None = None
    currency: str | None = None
    deliver_by: Timestamp | None = None


class Cancellation(_Base, tag="cancellation", frozen=True):
    order_id: OrderId
    initiated_by: CancelInitiator


class Shipment(_Base, tag="shipment", frozen=True):
    """A ship confirmation; ``occurred_at`` is when the seller confirmed it."""

    order_id: OrderId
    tracking_id: str | None = None


class Refund(_Base, tag="refund", frozen=True):
    order_id: OrderId
    amount: Amount | None = None
    reason: str | None = None


class Feedback(_Base, tag="feedback", frozen=True):
    order_id: OrderId
    rating: Rating
    removed: bool = False


class Claim(_Base, tag="claim", frozen=True):
    order_id: OrderId
    claim_type: ClaimType
    status: ClaimStatus = "opened"


class Message(_Base, tag="message", frozen=True):
    """A buyer-seller message. A seller's ``in_reply_to`` (v1.1) names the buyer
    message it answers (the seller response rate); on a buyer's it means nothing."""

    message_id: MessageId
    sender: MessageSender
    response_needed: bool = True
    order_id: OrderId | None = None
    in_reply_to: MessageId | None = None


class Delivery(_Base, tag="delivery", frozen=True):
    """A carrier delivery (v1.1); ``occurred_at`` is when it was delivered. With
    several, the latest is the order's delivery time (its last package)."""

    order_id: OrderId


class Return(_Base, tag="return", frozen=True):
    """The buyer returned (part of) the order (v1.1). Not a refund."""

    order_id: OrderId
    reason: str | None = None


Event: TypeAlias = (
    Order | Cancellation | Shipment | Refund | Feedback | Claim | Message | Delivery | Return
)
OrderEvent: TypeAlias = (
    Order | Cancellation | Shipment | Refund | Feedback | Claim | Delivery | Return
)

_decoder: Final = msgspec.json.Decoder(Event)
_array_decoder: Final = msgspec.json.Decoder(list[msgspec.Raw])
_events_decoder: Final = msgspec.json.Decoder(list[Event])
_encoder: Final = msgspec.json.Encoder()

_MIN_YEAR: Final = 1000
_MAX_YEAR: Final = 9998
_EPOCH: Final = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
_US: Final = _dt.timedelta(microseconds=1)
US_PER_DAY: Final = 86_400_000_000


_SELLER_CHARS: Final = re.compile(SELLER_ID_PATTERN)


def _pattern_reason() -> str:
    """msgspec's own wording for a pattern mismatch: the message stays what it was
    when msgspec checked the pattern itself."""
    try:
        msgspec.json.decode(b'" "', type=Annotated[str, msgspec.Meta(pattern=SELLER_ID_PATTERN)])
    except msgspec.ValidationError as exc:
        return str(exc)
    raise AssertionError("a space matched the seller id pattern")


_SELLER_REASON: Final = _pattern_reason()
# Seller ids seen valid: a marketplace has few sellers and many events each. Bounded
# (cleared when full) so a stream of random ids cannot grow it without limit.
_valid_sellers: set[str] = set()
_VALID_SELLERS_MAX: Final = 1 << 20


def _seller_ok(seller_id: str) -> bool:
    if _SELLER_CHARS.search(seller_id) is None:
        return False
    if len(_valid_sellers) >= _VALID_SELLERS_MAX:
        _valid_sellers.clear()
    _valid_sellers.add(seller_id)
    return True


def _check_seller(seller_id: str) -> None:
    if not _seller_ok(seller_id):
        raise InvalidEvent(_SELLER_REASON, field="$.seller_id")


def _check_year(ts: _dt.datetime, field: str) -> None:
    if not _MIN_YEAR <= ts.year <= _MAX_YEAR:
        raise InvalidEvent(
            f"expected a year in {_MIN_YEAR}..{_MAX_YEAR}, got {ts.year}", field=field
        )


def decode_event(data: bytes | str | memoryview) -> Event:
    """Decode one JSON document into a typed event or raise :class:`InvalidEvent`.

    Total: no other exception escapes, whatever the bytes (see :func:`_undecodable`
    for what msgspec raises besides its own errors). msgspec's message already
    names the JSON path (``- at `$.rating```); we split it into ``reason`` and
    ``field`` so a dead-letter consumer can group by field.
    """
    try:
        event: Event = _decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise _invalid(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise InvalidEvent(f"not valid JSON: {exc}") from None
    except Exception as exc:  # bad UTF-8, deep nesting: explained off the hot path
        raise _undecodable(data, exc) from None
    if event.seller_id not in _valid_sellers:
        _check_seller(event.seller_id)
    # Inline range checks: this runs for every event (see _check_year for the message).
    if not _MIN_YEAR <= event.occurred_at.year <= _MAX_YEAR:
        _check_year(event.occurred_at, "$.occurred_at")
    if type(event) is Order:
        if not _MIN_YEAR <= event.ship_by.year <= _MAX_YEAR:
            _check_year(event.ship_by, "$.ship_by")
        if event.deliver_by is not None and not _MIN_YEAR <= event.deliver_by.year <= _MAX_YEAR:
            _check_year(event.deliver_by, "$.deliver_by")
    return event


def split_batch(data: bytes) -> list[msgspec.Raw] | None:
    """Return the elements of a JSON array value, or ``None`` if it is not an array.

    Bulk producers may send ``[event, event, ...]`` as one message; each element is
    then decoded (and, if bad, dead-lettered) on its own. Raises only
    :class:`InvalidEvent`, for an array that is not valid JSON as a whole
    (malformed, or nested too deep): then no element can be told apart.
    """
    stripped = data.lstrip()
    if not stripped.startswith(b"["):
        return None
    try:
        return _array_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise InvalidEvent(f"not valid JSON: {exc}") from None
    except msgspec.ValidationError as exc:
        raise _invalid(str(exc)) from None
    except Exception as exc:
        raise _undecodable(data, exc) from None


def decode_events(data: bytes) -> list[Event] | None:
    """Decode a JSON array of events in one pass, or return ``None`` if any element
    is invalid (or it is not an array at all).

    The fast route for bulk messages: one C call for the whole array instead of one
    per element. On ``None`` the caller takes the slow route (:func:`split_batch`,
    then :func:`decode_event` per element), which finds and explains each bad
    element, so both routes accept exactly the same events. Never raises.
    """
    try:
        events: list[Event] = _events_decoder.decode(data)
    except Exception:  # whatever it is, the slow route explains it
        return None
    for event in events:
        if event.seller_id not in _valid_sellers and not _seller_ok(event.seller_id):
            return None
        if not _MIN_YEAR <= event.occurred_at.year <= _MAX_YEAR or (
            type(event) is Order and (
                not _MIN_YEAR <= event.ship_by.year <= _MAX_YEAR
                or (event.deliver_by is not None
                    and not _MIN_YEAR <= event.deliver_by.year <= _MAX_YEAR))
        ):
            return None
    return events


def encode_event(event: Event) -> bytes:
    """Canonical JSON for an event (used by snapshots, producers and tests)."""
    return _encoder.encode(event)


def to_us(ts: _dt.datetime) -> int:
    """Microseconds since the Unix epoch, UTC; exact integer arithmetic."""
    return (ts - _EPOCH) // _US


def from_us(us: int) -> _dt.datetime:
    return _EPOCH + _dt.timedelta(microseconds=us)


def format_us(us: int) -> str:
    """RFC 3339 in UTC with a ``Z``, seconds precision unless there is a fraction."""
    ts = from_us(us)
    text = ts.strftime("%Y-%m-%dT%H:%M:%S")
    if ts.microsecond:
        text += f".{ts.microsecond:06d}"
    return text + "Z"


def parse_timestamp(text: str) -> int:
    """Parse an RFC 3339 timestamp given on a command line or in a setting.

    Uses the same msgspec parser as events so that ``--as-of`` accepts exactly what
    ``occurred_at`` accepts. Raises only :class:`InvalidEvent`.
    """
    expected = f"expected an RFC 3339 timestamp with Z or an offset, got {text!r}"
    try:
        ts = msgspec.json.decode(_encoder.encode(text), type=Timestamp)
    except msgspec.ValidationError as exc:
        raise InvalidEvent(f"{expected}: {str(exc).split(' - at ')[0]}") from None
    except UnicodeError:  # a lone surrogate (from os.fsdecode of a bad argv byte)
        raise InvalidEvent(f"{expected}: not encodable as UTF-8") from None
    except Exception as exc:
        raise InvalidEvent(f"{expected}: undecodable: {type(exc).__name__}: {exc}") from None
    _check_year(ts, "timestamp")
    return to_us(ts)


def _invalid(message: str) -> InvalidEvent:
    reason, sep, where = message.rpartition(" - at `")
    if not sep:
        return InvalidEvent(message)
    field = where.rstrip("`")
    if field == "$.type" and reason.startswith("Invalid value "):
        reason = (
            f"unknown event type {reason.removeprefix('Invalid value ')}; "
            f"expected one of {', '.join(EVENT_TYPES)}"
        )
    return InvalidEvent(reason, field=field)


# --- explaining what msgspec raises besides its own errors (slow path only) ------
#
# msgspec reports invalid UTF-8 inside a string it decodes as the codec's
# UnicodeDecodeError, positioned within that string only, and nesting beyond the
# interpreter's C recursion budget as RecursionError. Both are turned into an
# InvalidEvent here, after the fact: the hot path pays nothing for them.

# A JSON string token; an unterminated one runs to the end (linear, no backtracking).
_STRING_TOKEN: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?', re.S)
# Tokens of a best-effort structural scan: strings, punctuation, anything else.
_TOKEN: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}:,]|[^\s\[\]{}:,"]+', re.S)
_ESCAPE: Final = re.compile(
    rb"\\u([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})"
    rb"|\\u([0-9a-fA-F]{4})|\\(.)",
    re.S,
)
_SIMPLE_ESCAPES: Final = {b'"': b'"', b"\\": b"\\", b"/": b"/", b"b": b"\b",
                          b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t"}
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")
_BRACKET_STEPS: Final = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


def _undecodable(data: bytes | str | memoryview, exc: Exception) -> InvalidEvent:
    """The InvalidEvent for an exception msgspec raised that is not its own.

    The last line of defence is ``undecodable: TYPE: MESSAGE``; this function
    itself never raises.
    """
    try:
        if isinstance(exc, UnicodeError):
            return _utf8_error(data, exc)
        if isinstance(exc, RecursionError):
            return _nesting_error(data)
    except Exception:  # an explanation must not become the next crash
        pass
    return InvalidEvent(f"undecodable: {type(exc).__name__}: {exc}")


def _as_bytes(data: bytes | str | memoryview) -> bytes:
    # A str reaches msgspec encoded as UTF-8; one holding a lone surrogate cannot
    # be, and "surrogatepass" turns that surrogate into the invalid bytes it is.
    return data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)


def _utf8_error(data: bytes | str | memoryview, exc: UnicodeError) -> InvalidEvent:
    """``invalid UTF-8 at byte N: 0xBB, WHY`` at the JSON path of the string holding it.

    N is the absolute offset in ``data`` (for a batch element, in that element).
    msgspec fails on the first string it decodes whose bytes are not UTF-8 and
    hands the codec that string (unescaped) as ``exc.object``: the scan below
    names the string of the document equal to it. Strings msgspec skips (unknown
    fields, object keys) may hold bad bytes too; when no string matches, the first
    bad one is named, and with no string at all, just the first bad byte.
    """
    text = _as_bytes(data)
    target = exc.object if isinstance(exc, UnicodeDecodeError) else None
    spot = _find_bad_string(text, target)
    if spot is None:
        try:
            text.decode("utf-8")
        except UnicodeDecodeError as bad:
            return InvalidEvent(f"invalid UTF-8 at byte {bad.start}: {_why(bad)}")
        return InvalidEvent(f"undecodable: {type(exc).__name__}: {exc}")
    offset, why, path, is_key = spot
    if is_key:
        return InvalidEvent(f"invalid UTF-8 at byte {offset} in an object key: {why}", path)
    return InvalidEvent(f"invalid UTF-8 at byte {offset}: {why}", path)


def _why(bad: UnicodeDecodeError) -> str:
    obj = bad.object
    byte = obj[bad.start] if isinstance(obj, bytes | bytearray) and bad.start < len(obj) else 0
    return f"0x{byte:02x}, {bad.reason}"


def _unescape(content: bytes) -> bytes:
    """A JSON string's content as the bytes msgspec decodes (escapes resolved)."""
    if b"\\" not in content:
        return content

    def one(m: re.Match[bytes]) -> bytes:
        high, low, single, simple = m.groups()
        if high is not None:
            code = 0x10000 + ((int(high, 16) - 0xD800) << 10) + (int(low, 16) - 0xDC00)
            return chr(code).encode()
        if single is not None:
            return chr(int(single, 16)).encode("utf-8", "surrogatepass")
        return _SIMPLE_ESCAPES.get(simple, simple)

    return _ESCAPE.sub(one, content)


def _find_bad_string(
    text: bytes, target: bytes | None
) -> tuple[int, str, str, bool] | None:
    """``(offset of the bad byte, why, JSON path, is a key)`` of the first string
    token whose unescaped content is ``target`` (else of the first holding invalid
    UTF-8), by one linear scan that tolerates malformed JSON."""
    # Each open container: [path, is object, key or index, expecting a key].
    stack: list[list[object]] = []
    first: tuple[int, str, str, bool] | None = None
    for m in _TOKEN.finditer(text):
        token = m.group()
        head = token[:1]
        top = stack[-1] if stack else None
        if head == b'"':
            is_key = top is not None and bool(top[1]) and bool(top[3])
            content = token[1:-1] if len(token) > 1 and token.endswith(b'"') else token[1:]
            if is_key and top is not None:
                top[2] = _unescape(content).decode("utf-8", "replace")
                top[3] = False
            try:
                content.decode("utf-8")
            except UnicodeDecodeError as bad:
                path = str(top[0]) if is_key and top is not None else _child(top)
                spot = (m.start() + 1 + bad.start, _why(bad), path, is_key)
                if target is None or _unescape(content) == target:
                    return spot
                if first is None:
                    first = spot
        elif head in (b"{", b"["):
            stack.append([_child(top), head == b"{", None if head == b"{" else 0, True])
        elif head in (b"}", b"]"):
            if stack:
                stack.pop()
        elif head == b"," and top is not None:
            if top[1]:
                top[3] = True
            elif isinstance(top[2], int):
                top[2] += 1
    return first


def _child(top: list[object] | None) -> str:
    """The path of the value about to be read in container ``top``."""
    if top is None:
        return "$"
    if top[1]:
        return f"{top[0]}.{top[2]}" if top[2] is not None else str(top[0])
    return f"{top[0]}[{top[2]}]"


def _nesting_error(data: bytes | str | memoryview) -> InvalidEvent:
    """``nesting deeper than N levels, found D``: D measured with strings removed,
    N = what the decoder took here (:func:`_depth_limit`), at most D - 1."""
    brackets = _STRING_TOKEN.sub(b"", _as_bytes(data)).translate(_BRACKET_STEPS, _NOT_BRACKETS)
    # Signed bytes (+1 / -1) summed in C: ~6x faster than a generator, and a
    # nesting bomb is exactly the input that must stay cheap.
    depth = max(itertools.accumulate(memoryview(brackets).cast("b")), default=0)
    limit = min(_depth_limit(), depth - 1)
    return InvalidEvent(f"nesting deeper than {limit} levels, found {depth}")


@functools.cache
def _depth_limit() -> int:
    """The deepest nesting msgspec decodes, measured once, when first needed.

    msgspec recurses once per level and stops at the interpreter's recursion
    budget: 9,999 levels from a shallow stack on CPython 3.12+ (its C recursion
    limit, 10,000), a few fewer from deep in a call stack; on 3.11 the Python
    recursion limit (1,000) less the frames already on the stack.
    """
    low, high = 0, 1 << 15
    while low < high:
        mid = (low + high + 1) // 2
        try:
            msgspec.json.decode(b"[" * mid + b"]" * mid)
        except RecursionError:
            high = mid - 1
        else:
            low = mid
    return low


_TYPE_OF: Final[dict[type, EventType]] = {
    Order: "order",
    Cancellation: "cancellation",
    Shipment: "shipment",
    Refund: "refund",
    Feedback: "feedback",
    Claim: "claim",
    Message: "message",
    Delivery: "delivery",
    Return: "return",
}


def event_type(event: Event) -> EventType:
    """The ``type`` tag of a decoded event."""
    return _TYPE_OF[type(event)]


def type_tag(kind: type) -> EventType:
    """The ``type`` tag of an event class (counters key by class, label by tag)."""
    return _TYPE_OF[kind]
