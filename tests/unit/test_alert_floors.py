"""The floors, end to end without Prometheus: one bad order never breaches a 1 %
metric, three in 100 do.

The alert rules route the status the worker computes; their promtool tests
(``prometheus/tests/popstream.test.yml``, group ``floors``) feed Prometheus the
series a worker would export for those sellers. Here the real engine and exporter
are given the same orders, and must export exactly those series: the promtool
model is what the worker does, not a guess.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from streams.engine.catalog import default_catalog
from streams.engine.engine import Engine
from streams.engine.events import to_us
from streams.fleet import FleetExporter
from tests.unit.builders import ev, order
from tests.unit.strategies import NOW

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
PROMTOOL_TESTS = ROOT / "prometheus/tests/popstream.test.yml"
ORDERED_AT = "2024-06-14T10:00:00Z"
SHIP_BY = "2024-06-20T10:00:00Z"  # after NOW: nothing is late

Key = tuple[str, tuple[tuple[str, str], ...]]

# seller -> (orders, of which with negative feedback, watch-listed)
SELLERS: dict[str, tuple[int, int, bool]] = {
    "ONE": (100, 1, False),
    "TWO": (100, 2, False),
    "THREE": (100, 3, False),
    "SMALL": (20, 1, True),
    "P": (100, 4, False),  # 96 of 100 perfect
}


def _exported() -> dict[Key, float]:
    engine = Engine(default_catalog(), now=to_us(NOW), track_touched=True)
    watch = [s for s, (_, _, watched) in SELLERS.items() if watched]
    exporter = FleetExporter(engine, "alerting", watchlist=watch)
    for seller, (orders, bad, _) in SELLERS.items():
        for n in range(orders):
            oid = f"{seller}-{n}"
            engine.apply_bytes(order(at=ORDERED_AT, ship_by=SHIP_BY, order=oid, seller=seller))
            if n < bad:
                engine.apply_bytes(ev("feedback", ORDERED_AT, order=oid, seller=seller,
                                      rating=1))
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(exporter.render().decode())
            for s in f.samples}


_SERIES = re.compile(r"^(\w+)\{(.*)\}$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def _modelled() -> dict[Key, float]:
    """The floors group's input series for the sellers above, as a worker exports
    them (without the job and instance labels Prometheus adds), at their first
    sample."""
    doc: dict[str, Any] = yaml.safe_load(PROMTOOL_TESTS.read_text())
    [group] = [t for t in doc["tests"] if t.get("name") == "floors"]
    out: dict[Key, float] = {}
    for entry in group["input_series"]:
        match = _SERIES.match(entry["series"])
        assert match, entry["series"]
        labels = dict(_LABEL.findall(match[2]))
        if labels.get("seller_id") not in SELLERS:
            continue
        del labels["job"], labels["instance"]
        first = str(entry["values"]).split()[0].split("x")[0]
        out[(match[1], tuple(sorted(labels.items())))] = float(first)
    return out


def test_the_promtool_floor_cases_are_what_the_worker_exports() -> None:
    exported, modelled = _exported(), _modelled()
    assert {dict(k[1])["seller_id"] for k in modelled} == set(SELLERS)
    for key, value in modelled.items():
        assert exported.get(key) == value, key
    # And the model is complete where it matters: for each seller and metric it
    # models, the worker exports the same one status.
    for key in modelled:
        if key[0] != "popstream_seller_metric_status":
            continue
        labels = dict(key[1])
        statuses = {dict(k[1])["status"] for k in exported
                    if k[0] == "popstream_seller_metric_status"
                    and dict(k[1])["seller_id"] == labels["seller_id"]
                    and dict(k[1])["metric"] == labels["metric"]}
        assert statuses == {labels["status"]}, key


def _status(exported: dict[Key, float], seller: str, metric: str) -> str | None:
    found = [dict(k[1])["status"] for k in exported
             if k[0] == "popstream_seller_metric_status"
             and dict(k[1]).get("seller_id") == seller and dict(k[1])["metric"] == metric]
    assert len(found) <= 1
    return found[0] if found else None


def test_one_bad_order_never_breaches_and_three_in_100_do() -> None:
    exported = _exported()
    odr = "order_defect_rate"
    assert _status(exported, "ONE", odr) == "warning"    # 1 % exactly, 1 bad order
    assert _status(exported, "TWO", odr) == "warning"    # 2 bad orders: tolerated
    assert _status(exported, "THREE", odr) == "breach"
    assert _status(exported, "SMALL", odr) == "insufficient_volume"  # 20 < 30 orders
    # Fleet series count every seller, exported or not.
    key = ("popstream_fleet_sellers", (("metric", odr), ("status", "breach")))
    assert exported[key] == 2  # THREE and P
