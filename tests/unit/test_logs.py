"""Logging an operator can read: one clean line per record, no error on a healthy
start, and no floods when Kafka goes away."""

from __future__ import annotations

import asyncio
import io
import logging
import threading
from collections.abc import Iterator

import pytest

from streams.logs import (
    LogfmtFormatter,
    RateLimitFilter,
    TransientStartupFilter,
    clean,
    log_thread_exception,
    make_handler,
    setup_logging,
)

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(name: str, msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A private logger tree routed through popstream's handler into a buffer."""
    stream = io.StringIO()
    handler = make_handler(stream)
    top = logging.getLogger("aiokafka")
    saved = (top.handlers[:], top.level, top.propagate)
    top.handlers[:] = [handler]
    top.setLevel(logging.WARNING)
    top.propagate = False
    try:
        yield top, stream
    finally:
        top.handlers[:], top.level, top.propagate = saved


def test_first_of_a_kind_passes_then_one_per_interval_with_a_count() -> None:
    clock = Clock()
    limit = RateLimitFilter(interval=10.0, clock=clock)
    template = "Unable connect to %r: %s"
    first = record("aiokafka", template, "k:9092", "refused")
    assert limit.filter(first)
    assert first.getMessage() == "Unable connect to 'k:9092': refused"
    passed = []
    for i in range(80 * 9):  # 80 lines/s for 9 s, as measured from a worker
        clock.now += 1 / 80
        passed.append(limit.filter(record("aiokafka", template, f"k{i}:9092", "refused")))
    assert not any(passed)
    clock.now += 1.1
    later = record("aiokafka", template, "k:9092", "refused")
    assert limit.filter(later)
    assert later.getMessage() == "Unable connect to 'k:9092': refused (720 similar suppressed)"
    clock.now += 10.0
    quiet = record("aiokafka", template, "k:9092", "refused")
    assert limit.filter(quiet)
    assert quiet.getMessage() == "Unable connect to 'k:9092': refused"  # nothing held back


def test_kinds_are_per_logger_and_template() -> None:
    limit = RateLimitFilter(clock=Clock())
    assert limit.filter(record("aiokafka.conn", "a %s", 1))
    assert limit.filter(record("aiokafka.client", "a %s", 1))  # another logger
    assert limit.filter(record("aiokafka.conn", "b %s", 1))  # another template
    assert not limit.filter(record("aiokafka.conn", "a %s", 2))


@pytest.mark.parametrize("name", ["aiokafka", "aiokafka.conn", "kafka", "faust.worker",
                                  "mode.services"])
def test_applies_to_the_kafka_and_faust_loggers(name: str) -> None:
    limit = RateLimitFilter(clock=Clock())
    assert limit.filter(record(name, "boom"))
    assert not limit.filter(record(name, "boom"))


@pytest.mark.parametrize(("name", "level"), [
    ("popstream.worker", logging.ERROR),  # our own lines are never dropped
    ("faustish", logging.ERROR),  # a prefix of a name is not a parent
    ("aiokafka", logging.INFO),  # below WARNING: --loglevel debug shows everything
])
def test_leaves_other_records_alone(name: str, level: int) -> None:
    limit = RateLimitFilter(clock=Clock())
    assert all(limit.filter(record(name, "same", level=level)) for _ in range(5))


def test_memory_stays_bounded_under_ever_new_messages() -> None:
    clock = Clock()
    limit = RateLimitFilter(clock=clock, max_keys=100)
    for i in range(10_000):
        clock.now += 0.001
        assert limit.filter(record("faust", f"formatted in place {i}"))
    assert len(limit._seen) <= 100


def test_group_coordinator_not_available_is_demoted_to_debug(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    top, stream = captured
    coordinator = logging.getLogger("aiokafka.consumer.group_coordinator")
    coordinator.error("Group Coordinator Request failed: %s",
                      "[Error 15] GroupCoordinatorNotAvailableError")
    assert stream.getvalue() == ""
    coordinator.error("Group Coordinator Request failed: %s",
                      "[Error 31] ClusterAuthorizationFailed")
    assert "level=error" in stream.getvalue()  # only that one condition is demoted
    top.setLevel(logging.DEBUG)  # with --loglevel debug it is still there, at debug
    coordinator.error("Group Coordinator Request failed: %s",
                      "[Error 15] GroupCoordinatorNotAvailableError")
    assert stream.getvalue().splitlines()[-1].count("level=debug") == 1


def test_the_demotion_is_for_that_logger_only() -> None:
    other = record("faust.worker", "GroupCoordinatorNotAvailableError")
    assert TransientStartupFilter().filter(other)
    assert other.levelno == logging.ERROR


def test_a_flood_through_the_handler_is_a_few_lines(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    conn = logging.getLogger("aiokafka.conn")
    for _ in range(10_000):
        conn.error('Unable connect to "%s:%s": %s', "127.0.0.1", 9092, "refused")
    assert len(captured[1].getvalue().splitlines()) == 1


@pytest.mark.parametrize("text", [
    "\x1b[31mred\x1b[0m", "spinner\x1b[?25h", "\x1b]0;title\x07x", "bell\x07", "a\rb",
    "nul\x00", "c1\x9b31m",
])
def test_no_terminal_escapes_or_control_characters(text: str) -> None:
    out = LogfmtFormatter().format(record("faust", text))
    assert not any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in out), out
    assert clean("\x1b[1;32mok\x1b[0m") == "ok"


def test_one_line_per_record_even_with_newlines_and_tracebacks() -> None:
    try:
        raise ValueError('bad\nthing "quoted"')
    except ValueError:
        import sys

        rec = logging.LogRecord("faust", logging.ERROR, __file__, 1, "two\nlines\r\n",
                                (), sys.exc_info())
    out = LogfmtFormatter().format(rec)
    assert "\n" not in out
    assert "\r" not in out
    assert 'msg="two | lines | "' in out
    assert "ValueError: bad | thing 'quoted'" in out


def test_setup_logging_is_idempotent() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level, threading.excepthook
    try:
        setup_logging("info")
        setup_logging("warning")
        assert len(root.handlers) == 1
        assert {type(f) for f in root.handlers[0].filters} == {TransientStartupFilter,
                                                                RateLimitFilter}
        assert threading.excepthook is log_thread_exception
    finally:
        root.handlers[:], root.level, threading.excepthook = saved


def _die(exc: BaseException) -> None:
    raise exc


@pytest.mark.parametrize(("exc", "expected"), [
    (ValueError("boom"), 'level=error logger=popstream.thread msg="thread t died: ValueError"'),
    (asyncio.CancelledError(), 'level=warning logger=popstream.thread msg="thread t cancelled'),
    (SystemExit(0), None),
])
def test_an_exception_ending_a_thread_is_one_log_line(
    exc: BaseException, expected: str | None,
) -> None:
    stream = io.StringIO()
    log = logging.getLogger("popstream.thread")
    saved = log.handlers[:], log.propagate, threading.excepthook
    log.handlers[:], log.propagate = [make_handler(stream)], False
    threading.excepthook = log_thread_exception
    try:
        thread = threading.Thread(target=_die, args=(exc,), name="t")
        thread.start()
        thread.join()
    finally:
        log.handlers[:], log.propagate, threading.excepthook = saved
    lines = stream.getvalue().splitlines()
    if expected is None:
        assert lines == []
    else:
        assert len(lines) == 1
        assert expected in lines[0]
        assert "Traceback" not in lines[0] or "ValueError: boom" in lines[0]
