"""Dead-letter records that always fit their topic.

Every message (or array element) the worker cannot apply goes to the dead-letter
topic with the original bytes and why. The record must be accepted by the broker
whatever arrived: a value just under the consumer's limit grows past the topic's
once headers are added, and a compressed message can decompress to several times
the limit — a refused dead letter used to kill the worker. So the value (and a
pathological key) is cut to fit, and headers say the original size and SHA-256, so
an operator can still match it against the source topic.

Headers (all UTF-8 text):

``popstream-reason``      why, e.g. ``invalid UTF-8 at byte 41 in $.seller_id``
``popstream-topic``, ``popstream-partition``, ``popstream-offset``  where it came from
``popstream-original-size``  bytes of the value as consumed
``popstream-sha256``      hex SHA-256 of the value as consumed
``popstream-truncated``   ``true`` when the value was cut (absent otherwise)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

# A reason is a sentence; one built from an attacker's bytes must not be a megabyte.
REASON_MAX: Final = 1024
KEY_MAX: Final = 1024
# Record framing, header names and the fixed-size headers.
_OVERHEAD: Final = 1024
DEFAULT_LIMIT: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class DeadLetter:
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]

    @property
    def size(self) -> int:
        """Bytes the record carries (key, value, headers), framing excluded."""
        return (len(self.key or b"") + len(self.value)
                + sum(len(k) + len(v) for k, v in self.headers))


def _cut(text: bytes, limit: int) -> bytes:
    """At most ``limit`` bytes, not ending inside a UTF-8 sequence."""
    if len(text) <= limit:
        return text
    return text[:limit].decode("utf-8", "ignore").encode()


def dead_letter(key: bytes | None, value: bytes | None, reason: str, topic: str,
                partition: int, offset: int, limit: int = DEFAULT_LIMIT) -> DeadLetter:
    """The record for one bad message or element, no larger than ``limit``."""
    raw = value or b""
    headers: list[tuple[str, bytes]] = [
        ("popstream-reason", _cut(reason.encode("utf-8", "replace"), REASON_MAX)),
        ("popstream-topic", topic.encode()),
        ("popstream-partition", str(partition).encode()),
        ("popstream-offset", str(offset).encode()),
        ("popstream-original-size", str(len(raw)).encode()),
        ("popstream-sha256", hashlib.sha256(raw).hexdigest().encode()),
    ]
    if key is not None and len(key) > KEY_MAX:
        headers.append(("popstream-key-sha256", hashlib.sha256(key).hexdigest().encode()))
        key = key[:KEY_MAX]
    room = limit - _OVERHEAD - len(key or b"") - sum(len(k) + len(v) for k, v in headers)
    if len(raw) > room:
        raw = raw[:max(0, room - 32)]
        headers.append(("popstream-truncated", b"true"))
    return DeadLetter(key, raw, headers)
