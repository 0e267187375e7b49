"""Offline replay: a JSON Lines log in, the metrics as of a fixed time out.

This is a contract other tools call (``popstream replay PATH --as-of T --format
json``), so its output shape and error reporting are stable: invalid lines are
reported on stderr with line number and reason, counted in a summary line,
optionally written to ``--rejects``, and stop the run only under ``--strict``.
A line holding a JSON array is a batch (as a Kafka message value may be); its
elements are validated and rejected one by one, numbered ``LINE[i]``.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import orjson

from streams.engine.catalog import Catalog
from streams.engine.engine import Engine, MetricValue, Outcome
from streams.engine.events import format_us, split_batch
from streams.errors import InvalidEvent, PopstreamError


class StrictModeViolation(PopstreamError):
    """``--strict`` and an invalid line: the run stops at the first one."""


@dataclass(frozen=True, slots=True)
class Reject:
    """One invalid line (or batch element): where, why, and the raw text."""

    where: str  # "12" or "12[3]"
    reason: str
    field: str | None
    raw: bytes

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "line": self.where,
                "reason": _utf8(self.reason),
                "field": None if self.field is None else _utf8(self.field),
                "raw": self.raw.decode("utf-8", "replace"),
            }
        )

    def __str__(self) -> str:
        at = f" (at {self.field})" if self.field else ""
        return f"line {self.where}: {self.reason}{at}"


def _utf8(text: str) -> str:
    # orjson refuses a lone surrogate; a reason quoting input could carry one.
    return text.encode("utf-8", "replace").decode("utf-8")


@dataclass
class ReplayResult:
    as_of: int
    engine: Engine
    lines: int = 0
    outcomes: Counter[Outcome] = field(default_factory=Counter)
    rejected: int = 0

    def summary(self) -> str:
        o = self.outcomes
        return (
            f"replay: {self.lines} lines, {sum(o.values())} events: "
            f"{o[Outcome.APPLIED]} applied, {o[Outcome.PENDING]} pending-order, "
            f"{o[Outcome.DUPLICATE]} duplicate, {o[Outcome.HELD]} after as-of, "
            f"{o[Outcome.EXPIRED]} before the window; {self.rejected} rejected; "
            f"{len(self.engine.sellers)} sellers, {self.engine.tracked_orders} orders tracked"
        )

    def report(self) -> dict[str, Any]:
        """The JSON document ``--format json`` prints."""
        return {
            "as_of": format_us(self.as_of),
            "sellers": {
                seller: {name: mv.to_dict() for name, mv in metrics.items()}
                for seller, metrics in self.engine.report().items()
            },
        }


def replay(
    lines: Iterable[bytes],
    as_of: int,
    *,
    catalog: Catalog | None = None,
    strict: bool = False,
    on_reject: Callable[[Reject], None] | None = None,
) -> ReplayResult:
    """Apply every line to a fresh engine whose clock stands at ``as_of``."""
    engine = Engine(catalog, now=as_of, fixed_clock=True)
    result = ReplayResult(as_of, engine)
    outcomes = result.outcomes
    # Bytes in: the native engine decodes them itself (no Python event objects).
    apply_bytes = engine.apply_bytes

    def reject(where: str, exc: InvalidEvent, raw: bytes) -> None:
        result.rejected += 1
        item = Reject(where, exc.reason, exc.field, raw)
        if on_reject is not None:
            on_reject(item)
        if strict:
            raise StrictModeViolation(str(item))

    # Every line, and every element of a batch line, has exactly one outcome: an
    # Outcome counted, or a Reject. Decoding raises only InvalidEvent; anything
    # else (a bug in the engine) is rejected as an internal error, not a crash.
    for number, raw in enumerate(lines, start=1):
        result.lines = number
        line = raw.rstrip(b"\r\n")
        try:
            batch = split_batch(line)
        except InvalidEvent as exc:
            reject(str(number), exc, line)
            continue
        except Exception as exc:
            reject(str(number), _internal(exc), line)
            continue
        if batch is None:
            try:
                if not line.strip():
                    raise InvalidEvent("empty line; expected one JSON event per line")
                outcomes[apply_bytes(line)] += 1
            except InvalidEvent as exc:
                reject(str(number), exc, line)
            except Exception as exc:
                reject(str(number), _internal(exc), line)
            continue
        for index, element in enumerate(batch):
            try:
                outcomes[apply_bytes(bytes(element))] += 1
            except InvalidEvent as exc:
                reject(f"{number}[{index}]", exc, bytes(element))
            except Exception as exc:
                reject(f"{number}[{index}]", _internal(exc), bytes(element))
    return result


def _internal(exc: Exception) -> InvalidEvent:
    """A Reject's reason for an exception that is nobody's contract: a bug, shown."""
    return InvalidEvent(f"internal error: {type(exc).__name__}: {exc}")


def read_lines(stream: IO[bytes], progress: Callable[[int], None] | None = None) -> Iterator[bytes]:
    """Lines of a binary stream; ``progress`` gets the bytes read so far, ~every 64k lines."""
    done = 0
    for n, line in enumerate(stream, start=1):
        done += len(line)
        if progress is not None and n % 65536 == 0:
            progress(done)
        yield line
    if progress is not None:
        progress(done)


def worst_sellers(
    report: dict[str, dict[str, MetricValue]], catalog: Catalog, top: int
) -> dict[str, list[tuple[str, MetricValue]]]:
    """Per metric, the ``top`` sellers furthest on the wrong side of the target
    (breached first), skipping sellers with a zero denominator."""
    out: dict[str, list[tuple[str, MetricValue]]] = {}
    for metric in catalog.metrics:
        rows = [
            (seller, ms[metric.name])
            for seller, ms in report.items()
            if ms[metric.name].value is not None
        ]
        sign = 1.0 if metric.healthy == "at_least" else -1.0
        rows.sort(key=lambda r: (sign * (r[1].value or 0.0), -r[1].denominator, r[0]))
        out[metric.name] = rows[:top]
    return out


class Progress:
    """Progress on stderr: a rich bar on a terminal, a line every 10 s otherwise
    (CI logs stay readable), nothing for small inputs."""

    def __init__(self, total: int | None, label: str, stream: IO[str] = sys.stderr) -> None:
        self.total = total
        self.label = label
        self.stream = stream
        self._bar: Any = None
        self._task: Any = None
        self._last = time.monotonic()
        self._enabled = total is None or total > 8 << 20
        if self._enabled and stream.isatty():
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                "[progress.description]{task.description}",
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                transient=True,
            )
            self._task = self._bar.add_task(label, total=total)
            self._bar.start()

    def update(self, done: int) -> None:
        if not self._enabled:
            return
        if self._bar is not None:
            self._bar.update(self._task, completed=done)
            return
        now = time.monotonic()
        if now - self._last >= 10:
            self._last = now
            pct = f" ({100 * done / self.total:.0f}%)" if self.total else ""
            print(f"{self.label}: {done >> 20} MiB read{pct}", file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
