"""Dead letters that always fit, and a flush that never acks what it did not save."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.runtime.deadletters import dead_letter
from streams.runtime.flusher import Flusher

pytestmark = pytest.mark.unit


@settings(max_examples=200, deadline=None)
@given(key=st.one_of(st.none(), st.binary(max_size=5000)),
       value=st.one_of(st.none(), st.binary(max_size=50_000)),
       reason=st.text(max_size=3000), limit=st.integers(4096, 60_000))
def test_a_dead_letter_always_fits_and_says_what_it_was(
        key: bytes | None, value: bytes | None, reason: str, limit: int) -> None:
    letter = dead_letter(key, value, reason, "orders", 3, 42, limit)
    assert letter.size <= limit - 512  # framing has room left
    headers = dict(letter.headers)
    raw = value or b""
    assert headers["popstream-original-size"] == str(len(raw)).encode()
    assert headers["popstream-sha256"] == hashlib.sha256(raw).hexdigest().encode()
    assert headers["popstream-offset"] == b"42"
    headers["popstream-reason"].decode()  # valid UTF-8, cut or not
    if letter.value != raw:
        assert headers["popstream-truncated"] == b"true"
        assert raw.startswith(letter.value)
    else:
        assert "popstream-truncated" not in headers


class FakeBroker:
    """Records writes; fails while ``down``; refuses records over ``limit``."""

    def __init__(self) -> None:
        self.down = False
        self.limit = 1 << 30
        self.log: list[tuple[str, bytes | None, bytes | None]] = []

    async def send(self, topic: str, key: bytes | None, value: bytes | None,
                   partition: int | None, headers: Any) -> Any:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        size = len(key or b"") + len(value or b"") + sum(
            len(k) + len(v) for k, v in headers or [])
        if self.down:
            future.set_exception(ConnectionError("broker away"))
        elif size > self.limit:
            future.set_exception(type("RecordTooLargeError", (Exception,), {})())
        else:
            self.log.append((topic, key, value))
            future.set_result(None)
        return future


async def test_nothing_is_acked_before_it_is_saved_and_a_failed_batch_is_retried() -> None:
    broker = FakeBroker()
    acked: list[Any] = []
    f = Flusher(send=broker.send, ack=acked.extend, changelog_topic=lambda: "cl",
                deadletter_topic="dl")
    chunks = [[(0, b"k1", b"v1")], [(0, b"k2", b"v2")]]
    f.acks.append("m1")
    f.dead_letter(b"s", b"bad", "why", "orders", 0, 1)
    broker.down = True
    assert await f.flush(lambda: chunks.pop(0)) is False
    assert acked == []
    assert not f.may_consume.is_set()
    assert f.failure
    f.acks.append("m2")  # arrived before the pause took effect
    assert await f.flush(lambda: chunks.pop(0)) is False  # retries the same batch
    assert len(chunks) == 1  # nothing new taken while a batch is outstanding
    broker.down = False
    assert await f.flush(lambda: chunks.pop(0)) is True
    assert acked == ["m1"]
    assert f.may_consume.is_set()
    assert f.failure is None
    assert [(t, k) for t, k, _ in broker.log] == [("dl", b"s"), ("cl", b"k1")]
    assert await f.flush(lambda: chunks.pop(0)) is True
    assert acked == ["m1", "m2"]


async def test_a_dead_letter_the_broker_finds_too_large_is_cut_further() -> None:
    broker = FakeBroker()
    broker.limit = 20_000
    acked: list[Any] = []
    f = Flusher(send=broker.send, ack=acked.extend, changelog_topic=lambda: "cl",
                deadletter_topic="dl", letter_limit=1_000_000)
    f.dead_letter(None, b"x" * 500_000, "too big", "orders", 0, 9)
    f.acks.append("m")
    for _ in range(10):
        if await f.flush(list):
            break
    assert acked == ["m"]
    assert len(broker.log) == 1
    assert len(broker.log[0][2] or b"") < 20_000


async def test_a_stop_during_a_flush_is_not_a_failure() -> None:
    broker = FakeBroker()
    broker.down = True
    f = Flusher(send=broker.send, ack=list, changelog_topic=lambda: "cl",
                deadletter_topic="dl")
    f.stopping = True
    f.acks.append("m")
    f.dead_letter(None, b"bad", "why", "orders", 0, 1)
    assert await f.flush(list) is False
    assert f.failure is None
    assert f.may_consume.is_set()
