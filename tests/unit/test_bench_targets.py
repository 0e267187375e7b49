"""The benchmark's target checks: each compares the right figures, both ways."""

from __future__ import annotations

from typing import Any

import pytest

from bench.compare import render_targets, targets

pytestmark = pytest.mark.unit


def _results(single: int, bulk: int) -> dict[str, Any]:
    tp = {name: {"events_per_second_median": eps} for name, eps in [
        ("popstream", single), ("popstream-bulk", bulk), ("aiokafka-limit", 200_000),
        ("aiokafka-limit-bulk", 500_000), ("faust-textbook", 20_000),
        ("quix-textbook", 60_000)]}
    return {"throughput": tp, "latency": {"popstream": {"p99_seconds": 0.05}},
            "recovery": {"orders": 1_000_000, "seconds_to_all_orders": 31.0},
            "scrape": {"scrape_seconds_median": 0.3, "scrape_seconds_cold": 1.2},
            "engine": {"events_per_second_median": 1_200_000,
                       "state_bytes_per_tracked_order": 100.4}}


def test_each_target_is_met_or_missed_by_its_own_figures() -> None:
    got = {t["target"]: t["met"] for t in targets(_results(70_000, 120_000))}
    assert got == {
        "single-event events/s per worker >= 50,000": True,
        "single-event / faust-textbook >= 3": True,
        "engine alone (decode + validate + apply, one core) >= 1,000,000 events/s": True,
        "state <= 100 bytes per order in memory": False,
        "single-event / aiokafka-limit (the same single-event messages) >= 0.5": False,
        "bulk / aiokafka-limit (single-event messages) >= 0.5": True,
        "bulk / aiokafka-limit-bulk (the same bulk messages) >= 0.5": False,
        "moonshot: single-event / quix-textbook > 1": True,
        "p99 produce-to-gauge latency at the offered load < 1 s": True,
        "recovery of 1,000,000 orders after kill -9 < 30 s": False,
        "scrape at 100,000 sellers < 1 s (sellers unchanged since the last scrape)": True,
        "scrape at 100,000 sellers < 1 s (every seller changed)": False,
    }
    slow = {t["target"]: t for t in targets(_results(45_000, 90_000))}
    assert not slow["single-event events/s per worker >= 50,000"]["met"]
    assert not slow["single-event / faust-textbook >= 3"]["met"]  # 2.25x
    assert slow["single-event / faust-textbook >= 3"]["value"] == 2.25
    assert not slow["moonshot: single-event / quix-textbook > 1"]["met"]
    assert "MISS  bulk / aiokafka-limit-bulk" in render_targets(list(slow.values()))
    at_goal = _results(100_000, 250_000)
    at_goal["engine"] = {"events_per_second_median": 999_999,
                         "state_bytes_per_tracked_order": 100.0}
    edge = {t["target"]: t["met"] for t in targets(at_goal)}
    assert edge["engine alone (decode + validate + apply, one core) >= 1,000,000 events/s"] \
        is False
    assert edge["state <= 100 bytes per order in memory"] is True
    assert edge["single-event / aiokafka-limit (the same single-event messages) >= 0.5"] is True
    assert edge["bulk / aiokafka-limit-bulk (the same bulk messages) >= 0.5"] is True


def test_missing_figures_are_left_out_not_passed() -> None:
    assert targets({"throughput": {}}) == []
