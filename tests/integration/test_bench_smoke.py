"""A smoke run of the side-by-side benchmark on a small log (issue #5).

The full benchmark stays out of CI (``make bench``); this runs every contender on
a 3,000-event log on a broker of its own, so the harness, the peers and the
reference check cannot rot: each contender that computes the metrics must end
equal to the engine's replay, and every contender must see every event.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.compare import CONTENDERS

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_every_contender_sees_every_event_and_the_metric_ones_match(tmp_path: Path) -> None:
    out = tmp_path / "compare.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.compare", "--events", "3000", "--sellers", "300",
         "--runs", "1", "--settle", "0", "--skip", "latency", "recovery", "scrape",
         "--out", str(out)],
        capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    tp = results["throughput"]
    assert set(tp) == {c.name for c in CONTENDERS}
    for c in CONTENDERS:
        row = tp[c.name]
        assert row["events"] == results["events"], c.name
        assert row["events_per_second_median"] > 0, c.name
        assert row["peak_rss_bytes_max"] > 10 << 20, c.name
        assert row["verified_against_reference"] is (True if c.computes else None), c.name
    assert "popstream / faust-textbook" in results["ratios"]
    assert {t["target"] for t in results["targets"]} >= {
        "single-event events/s per worker >= 50,000", "single-event / faust-textbook >= 3"}
    assert "= reference" in done.stdout
