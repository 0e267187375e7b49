"""``popstream produce`` without Kafka: the send loop, streaming input, the CLI report.

The Kafka producer is replaced by a fake that records what it is given; what a
line becomes is fuzzed in test_fuzz_decoding.py (``plan_line``). Here: standard
input is read as lines arrive (a message leaves before the pipe closes), every
line has one outcome on stderr, and broker trouble is a report, not a traceback.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

import streams.runtime.producer as producer_module
from streams.cli import EXIT_BROKER, EXIT_OK, main
from streams.errors import BrokerUnavailable
from streams.runtime.producer import produce_lines, stream_lines
from streams.settings import from_env

pytestmark = pytest.mark.unit

GOOD = (b'{"event_id":"%d","type":"order","seller_id":"%s","order_id":"o%d",'
        b'"occurred_at":"2024-06-14T00:00:00Z","ship_by":"2024-06-16T00:00:00Z"}')


def good(n: int, seller: bytes = b"s1") -> bytes:
    return GOOD % (n, seller, n)


class FakeProducer:
    """EventProducer's interface, recording ``(topic type, key, value, time)``."""

    sent: list[tuple[str, str, bytes, float]]
    fail_delivery = False
    fail_send: Exception | None = None

    def __init__(self, settings: Any, linger_ms: int = 5) -> None:
        FakeProducer.sent = []

    async def __aenter__(self) -> FakeProducer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def send_raw(self, event_type: str, seller_id: str, value: bytes) -> asyncio.Future[Any]:
        if self.fail_send is not None:
            raise self.fail_send
        FakeProducer.sent.append((event_type, seller_id, value, time.monotonic()))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.fail_delivery:
            future.set_exception(RuntimeError("RecordTooLarge"))
        else:
            future.set_result(None)
        return future

    async def flush(self) -> None:
        return None


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> type[FakeProducer]:
    monkeypatch.setattr(producer_module, "EventProducer", FakeProducer)
    FakeProducer.sent = []
    FakeProducer.fail_delivery = False
    FakeProducer.fail_send = None
    return FakeProducer


async def test_stream_lines_yields_each_line_as_it_arrives() -> None:
    rfd, wfd = os.pipe()
    seen: list[int] = []
    with os.fdopen(rfd, "rb") as stream:
        lines = stream_lines(stream, seen.append)
        os.write(wfd, b"one\n")
        assert await asyncio.wait_for(anext(lines), 2) == b"one"
        os.write(wfd, b"two\nthr")
        assert await asyncio.wait_for(anext(lines), 2) == b"two"
        os.write(wfd, b"ee")
        os.close(wfd)
        assert await asyncio.wait_for(anext(lines), 2) == b"three"
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(anext(lines), 2)
    assert seen[-1] == len(b"one\ntwo\nthree")


async def test_stream_lines_of_a_file_with_long_lines(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    body = [b"x" * 100_000, b"", b"y" * 3, b"z" * 70_000]
    path.write_bytes(b"\n".join(body) + b"\n")
    with path.open("rb") as stream:
        got = [line async for line in stream_lines(stream, chunk_size=4096)]
    assert got == body


async def test_produce_sends_a_line_before_the_input_ends(fake: type[FakeProducer]) -> None:
    rfd, wfd = os.pipe()
    settings = from_env({})
    with os.fdopen(rfd, "rb") as stream:
        task = asyncio.create_task(produce_lines(settings, stream_lines(stream)))
        os.write(wfd, good(1) + b"\n")
        deadline = time.monotonic() + 3
        while not fake.sent and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert [v for _, _, v, _ in fake.sent] == [good(1)], "held until EOF"
        os.write(wfd, b"[" + good(2) + b"," + good(3, b"s2") + b', {"type":1}]\n')
        os.write(wfd, b'{"type":"order","seller_id":"s\xff"}\n\n')
        os.close(wfd)
        report = await asyncio.wait_for(task, 5)
    assert [(t, k) for t, k, _, _ in fake.sent] == [("order", "s1"), ("order", "s1"),
                                                     ("order", "s2")]
    assert (report.sent, report.messages, report.failed) == (3, 3, 0)
    assert [(w, e.reason) for w, e in report.rejected] == [
        ("2[2]", "Expected `str`"),
        ("3", "invalid UTF-8 at byte 30: 0xff, invalid start byte"),
    ]
    assert report.rejected[1][1].field == "$.seller_id"


async def test_failed_deliveries_are_counted_not_raised(fake: type[FakeProducer]) -> None:
    fake.fail_delivery = True
    report = await produce_lines(from_env({}), [good(1), b"[" + good(2) + b"," + good(3) + b"]"])
    assert (report.sent, report.messages, report.failed) == (0, 0, 3)
    assert report.errors == ["RecordTooLarge", "RecordTooLarge"]


async def test_a_broker_error_while_sending_is_broker_unavailable(
    fake: type[FakeProducer],
) -> None:
    from aiokafka.errors import KafkaTimeoutError

    fake.fail_send = KafkaTimeoutError("buffer full")
    with pytest.raises(BrokerUnavailable, match="cannot send to Kafka"):
        await produce_lines(from_env({}), [good(1)])


def test_cli_reports_every_line(fake: type[FakeProducer], tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "log.jsonl"
    path.write_bytes(b"\n".join([
        good(1), b"{oops", b"[" + good(2) + b",\xff" + good(3) + b"]",
        b"[" + good(4) + b',"\xfe"]', b"[" + b"[" * 20_000, b"\xc0\xaf" * 3, b"",
    ]) + b"\n")
    assert main(["produce", str(path)]) == EXIT_OK
    err = capsys.readouterr().err.splitlines()
    assert err[0] == ("popstream: line 2: not valid JSON: JSON is malformed: object keys must "
                      "be strings (byte 1)")
    assert err[1].startswith("popstream: line 3: not valid JSON")
    assert err[2] == "popstream: line 4[1]: Expected `object`, got `str`"
    assert err[3].startswith("popstream: line 5: nesting deeper than ")
    assert err[4] == ("popstream: line 6: not valid JSON: JSON is malformed: invalid character "
                      "(byte 0)")
    assert err[5] == ("popstream: sent 2 events in 2 messages, 5 invalid lines or elements "
                      "not sent")


def test_cli_exit_code_when_deliveries_fail(fake: type[FakeProducer], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    fake.fail_delivery = True
    path = tmp_path / "log.jsonl"
    path.write_bytes(good(1) + b"\n")
    assert main(["produce", str(path)]) == EXIT_BROKER
    err = capsys.readouterr().err
    assert "popstream: delivery failed: RecordTooLarge" in err
    assert "sent 0 events in 0 messages, 1 failed delivery, 0 invalid" in err
