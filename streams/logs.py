"""Structured, quiet-by-default logging: one logfmt line per record on stderr.

Default level WARNING for everything (Faust and aiokafka are chatty at INFO);
``--loglevel info`` raises popstream's own loggers only, ``debug`` everything.

Two filters keep what reaches an operator readable:

* :class:`TransientStartupFilter` demotes to DEBUG the one error aiokafka logs on
  every fresh start (the group coordinator is not elected yet: it retries and
  succeeds a moment later). A log that shows an error on a healthy start teaches
  people to ignore errors.
* :class:`RateLimitFilter`: when Kafka goes away, aiokafka, Faust and mode log the
  same reconnect error in a tight loop (measured: ~80 lines/s from a worker, 232k
  lines in 27 s from ``produce``). The first of each kind passes, then at most
  one per interval, carrying a count of what was held back.

The formatter never writes a terminal escape or a raw newline: logs go to files
and collectors far more often than to a terminal.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Final, TextIO

THIRD_PARTY_LOGGERS: Final = ("aiokafka", "kafka", "faust", "mode")
RATE_LIMIT_INTERVAL: Final = 10.0

# CSI sequences (colours, cursor moves such as Faust's spinner's ESC[?25h), OSC
# sequences (window titles, hyperlinks) and any other C0/C1 control character.
_ANSI: Final = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC
    r"|\x1b[@-Z\\-_]"  # other two-byte escapes
    r"|[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]"  # other controls (\t and \n handled apart)
)


def clean(text: str) -> str:
    """``text`` without terminal escapes or control characters, on one line."""
    return _ANSI.sub("", text).replace("\r\n", "\n").replace("\n", " | ").replace("\t", " ")


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        msg = clean(record.getMessage()).replace('"', "'")
        line = (f'ts={ts}.{int(record.msecs):03d}Z level={record.levelname.lower()} '
                f'logger={record.name} msg="{msg}"')
        if record.exc_info:
            line += ' exc="' + clean(self.formatException(record.exc_info)).replace('"', "'") + '"'
        return line


def _under(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


class TransientStartupFilter(logging.Filter):
    """Demote aiokafka's "Group Coordinator Request failed: [Error 15]
    GroupCoordinatorNotAvailableError" to DEBUG, and nothing else.

    On a fresh cluster (or right after a broker restart) the coordinator of the
    consumer group is still being elected; aiokafka logs that at ERROR and
    retries, and the retry succeeds. A coordinator that never comes back shows
    up as the worker not starting, which the rest of the log does report.
    """

    LOGGER: Final = "aiokafka.consumer.group_coordinator"
    MARKER: Final = "GroupCoordinatorNotAvailableError"

    def filter(self, record: logging.LogRecord) -> bool:
        if (record.name == self.LOGGER and record.levelno > logging.DEBUG
                and self.MARKER in record.getMessage()):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


class RateLimitFilter(logging.Filter):
    """The first record of each (logger, message template) passes; after that at
    most one per ``interval`` seconds, suffixed "(N similar suppressed)".

    Applies to records at ``min_level`` and above from the ``loggers`` given (and
    their children); everything else passes untouched. The template is the
    unformatted message (``record.msg``), so "Unable connect to %r: %s" for
    different hosts is one kind. Memory is bounded: at most ``max_keys`` kinds
    are remembered.
    """

    def __init__(
        self,
        loggers: Iterable[str] = THIRD_PARTY_LOGGERS,
        interval: float = RATE_LIMIT_INTERVAL,
        min_level: int = logging.WARNING,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 1024,
    ) -> None:
        super().__init__()
        self.loggers = tuple(loggers)
        self.interval = interval
        self.min_level = min_level
        self.clock = clock
        self.max_keys = max_keys
        # (logger, template) -> [time last let through, suppressed since]
        self._seen: dict[tuple[str, str], list[float]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.min_level or not _under(record.name, self.loggers):
            return True
        key = (record.name, str(record.msg))
        now = self.clock()
        seen = self._seen.get(key)
        if seen is None:
            if len(self._seen) >= self.max_keys:
                self._forget(now)
            self._seen[key] = [now, 0]
            return True
        if now - seen[0] < self.interval:
            seen[1] += 1
            return False
        suppressed = int(seen[1])
        seen[0], seen[1] = now, 0
        if suppressed:
            record.msg = f"{record.getMessage()} ({suppressed} similar suppressed)"
            record.args = ()
        return True

    def _forget(self, now: float) -> None:
        """Drop kinds quiet for a whole interval (they would pass anyway);
        everything if that is not enough."""
        stale = [k for k, (last, n) in self._seen.items() if now - last >= self.interval and not n]
        for k in stale:
            del self._seen[k]
        if len(self._seen) >= self.max_keys:
            self._seen.clear()


def make_handler(stream: TextIO | None = None) -> logging.Handler:
    """A handler on ``stream`` (default stderr) with popstream's formatter and filters."""
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(LogfmtFormatter())
    handler.addFilter(TransientStartupFilter())
    handler.addFilter(RateLimitFilter())
    return handler


def log_thread_exception(args: threading.ExceptHookArgs) -> None:
    """``threading.excepthook``: an exception that ends a thread becomes one log
    line, not a bare traceback on stderr. Faust runs its consumer in a thread,
    which is cancelled when a worker stops while Kafka is away: that is the
    shutdown working, so it is a warning without a traceback."""
    name = args.thread.name if args.thread is not None else "?"
    log = logging.getLogger("popstream.thread")
    if issubclass(args.exc_type, SystemExit):
        return  # as the default hook does
    if issubclass(args.exc_type, asyncio.CancelledError):
        log.warning("thread %s cancelled while stopping", name)
    elif args.exc_value is not None:
        log.error("thread %s died: %s", name, args.exc_type.__name__,
                  exc_info=(args.exc_type, args.exc_value, args.exc_traceback))


def setup_logging(level: str = "warning") -> None:
    """Route every log record through one logfmt handler on stderr (idempotent:
    a second call replaces the handler), uncaught thread exceptions included."""
    root = logging.getLogger()
    root.handlers[:] = [make_handler()]
    numeric = getattr(logging, level.upper(), logging.WARNING)
    root.setLevel(numeric if level == "debug" else logging.WARNING)
    logging.getLogger("popstream").setLevel(numeric)
    threading.excepthook = log_thread_exception
