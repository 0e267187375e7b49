"""The dashboards on a fleet: 2,000 sellers' series over 6 hours, backfilled into
Debian's Prometheus (bench/dashboards_bench.py, which runs the same at 100,000).

Every query of every panel runs as Grafana would run it, in both export modes, and
must succeed with data; the worst-sellers tables show exactly N rows, and they are
the N worst sellers past the volume floor; the fleet counts and the picked
seller's statuses are what the fleet was generated with.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bench.dashboards_bench import (
    BREACH,
    IV,
    STATUSES,
    Fleet,
    Mode,
    Timeline,
    backfill,
    end_time,
    instant,
    prometheus,
    run_queries,
    simulate,
)
from streams.engine.catalog import default_catalog
from streams.observability.dashboards import WORST_N, dashboards, panel_targets

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
SELLERS = 2_000


@pytest.mark.parametrize("mode", ["all", "alerting"])
def test_every_panel_answers_and_worst_tables_have_exactly_n_rows(
        mode: Mode, tmp_path: Path) -> None:
    catalog = default_catalog()
    timeline = Timeline(end_time(time.time(), 6, 15), 6, 15, 240)
    last = len(timeline.seller_times()) - 1
    fleet = Fleet(catalog, SELLERS, workers=4, steps=last + 1)
    aggs, exported = simulate(fleet)
    dataset = backfill(fleet, timeline, mode, tmp_path / "tsdb", tmp_path, aggs, exported,
                       overlap=True)
    assert dataset.series > (20_000 if mode == "all" else 2_000)

    with prometheus(dataset.path, tmp_path, ready_timeout=60) as port:
        results = run_queries(port, dataset, repeat=1)
        failed = [f"{r.dashboard}: {r.panel} [{r.ref_id}]: {r.error}" for r in results
                  if r.error]
        assert failed == [], "\n".join(failed)
        empty = [f"{r.dashboard}: {r.panel} [{r.ref_id}]: {r.expr}" for r in results
                 if not r.series]
        assert empty == [], "queries without data:\n" + "\n".join(empty)
        assert len(results) == sum(len(panel_targets(d))
                                   for d in dashboards(catalog).values())

        at = timeline.end
        board = dashboards(catalog)["fleet-health"]
        for m, metric in enumerate(catalog.metrics):
            panel = next(p for p in board["panels"] if p["type"] == "table"
                         and p["title"].startswith(f"{metric.name}: {WORST_N} worst"))
            exprs = [t["expr"] for t in panel["targets"]]
            rows = [instant(port, e, at) for e in exprs]
            sellers = [{r["metric"]["seller_id"] for r in result} for result in rows]
            assert len(rows[0]) == WORST_N, metric.name
            assert all(len(r) == WORST_N for r in rows), (metric.name, [len(r) for r in rows])
            assert all(s == sellers[0] for s in sellers), metric.name

            # The N worst values among the sellers past the floor (and exported). A
            # backfill has no staleness markers: a seller that stopped being exported
            # at the last step still shows its previous sample (within the lookback).
            eligible = []
            for i in range(SELLERS):
                step = (last if mode == "all" or exported[last][i]
                        else last - 1 if exported[last - 1][i] else None)
                if step is None:
                    continue
                n, d = fleet.counts(i, m, step)
                if fleet.rules[m].status(n, d) != IV:
                    eligible.append(n / d)
            worst = sorted(eligible, reverse=metric.healthy == "below")[:WORST_N]
            shown = sorted((float(r["value"][1]) for r in rows[0]),
                           reverse=metric.healthy == "below")
            assert shown == pytest.approx(worst), metric.name
            statuses = {r["metric"]["status"] for r in rows[3]}
            assert "insufficient_volume" not in statuses

            breaches = instant(port, f'sum(popstream_fleet_sellers{{metric="{metric.name}",'
                               'status="breach"})', at)
            expected = sum(a.statuses[m][BREACH] for a in aggs[last])
            assert float(breaches[0]["value"][1]) == expected, metric.name

        # The picked seller: one status per metric, the one it was generated with.
        i = int(dataset.seller[1:])
        status_rows = instant(port, next(
            q.runnable("1m", dataset.seller) for q in panel_targets(
                dashboards(catalog)["seller-detail"]) if q.panel.startswith("Now")), at)
        got = {r["metric"]["metric"]: r["metric"]["status"] for r in status_rows}
        want = {metric.name: STATUSES[fleet.rules[m].status(*fleet.counts(i, m, last))]
                for m, metric in enumerate(catalog.metrics)}
        assert got == want
