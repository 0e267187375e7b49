"""What every contender shares: its command line, its clock, its report.

A contender is a process the harness (:mod:`bench.compare`) starts on a topic set
that already holds the log. It reads until it has seen ``--expect`` events, then
writes one JSON report and exits: the wall times of its first and last event
(the throughput window, free of start-up and of the harness's polling), each
event's produce-to-processed latency, and — for the contenders that compute the
metrics — every seller's ``[numerator, denominator]`` per metric, which the
harness checks against the engine's replay of the same log.
"""

from __future__ import annotations

import argparse
import os
import time
from array import array
from pathlib import Path
from typing import Any

import orjson


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topics", required=True, help="comma-separated")
    parser.add_argument("--expect", type=int, required=True, help="events to read")
    parser.add_argument("--group", required=True, help="consumer group / app id")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--as-of", default="2024-06-15T00:00:00Z")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--latency-after", type=float, default=0.0,
                        help="record latency only for events produced after this epoch")
    return parser.parse_args()


def peak_rss(pid: int) -> int:
    """A process's peak resident set (``VmHWM``), in bytes.

    Not ``ru_maxrss`` from ``wait4``: Linux carries a forked child's high-water
    mark across ``exec``, so every contender would report at least the RSS of the
    harness that forked it (the 1M-event log: ~1 GB). ``VmHWM`` belongs to the
    process's own address space, which ``exec`` replaces.
    """
    with open(f"/proc/{pid}/status", "rb") as status:
        for line in status:
            if line.startswith(b"VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


class Tally:
    """Counts events and stamps the first and last; records latencies."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.expect: int = args.expect
        self.out: Path = args.out
        self.latency_after_ms: float = args.latency_after * 1000
        self.events = 0
        self.invalid = 0
        self.first_at = 0.0
        self.last_at = 0.0
        self.latency = array("d")

    def seen(self, timestamp_ms: float | None) -> bool:
        """One event processed; True once all expected ones are."""
        now = time.time()
        if not self.events:
            self.first_at = now
        self.last_at = now
        self.events += 1
        if timestamp_ms and timestamp_ms >= self.latency_after_ms:
            self.latency.append(now - timestamp_ms / 1000)
        return self.events >= self.expect

    def write(self, counts: dict[str, Any] | None = None) -> None:
        lat = sorted(self.latency)
        quantiles = {f"p{q}": lat[min(len(lat) - 1, int(len(lat) * q / 100))] if lat else None
                     for q in (50, 99)}
        quantiles["n"] = len(lat)
        doc = {"events": self.events, "invalid": self.invalid, "first_at": self.first_at,
               "last_at": self.last_at, "latency": quantiles, "counts": counts,
               "peak_rss_bytes": peak_rss(os.getpid())}
        tmp = self.out.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(doc))
        tmp.rename(self.out)

    def finish(self, counts: dict[str, Any] | None = None) -> None:
        """Report and leave at once: no graceful shutdown is being measured."""
        self.write(counts)
        os._exit(0)
