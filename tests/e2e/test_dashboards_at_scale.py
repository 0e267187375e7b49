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
    resolve_variables,
    run_queries,
    simulate,
)
from streams.engine.catalog import default_catalog
from streams.observability.dashboards import WORST_N, dashboards, panel_targets, variables

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
SELLERS = 2_000


@pytest.mark.parametrize("mode", ["all", "alerting"])
def test_every_panel_answers_and_worst_tables_have_exactly_n_rows(
        mode: Mode, tmp_path: Path) -> None:
    catalog = default_catalog()
    timeline = Timeline(end_time(time.time(), 6, 15), 6, 15, 240)
    last = len(timeline.seller_times()) - 1
    fleet = Fleet(catalog, SELLERS, workers=2, steps=last + 1)
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
        assert len(results) == sum(len(panel_targets(d)) + len(variables(d))
                                   for d in dashboards(catalog).values())

        at = timeline.end
        board = dashboards(catalog)["fleet-health"]
        values, _ = resolve_variables(port, board, at)
        for m, metric in enumerate(catalog.metrics):
            title = f"{metric.name}: {WORST_N} worst"
            queries = [q for q in panel_targets(board) if q.panel.startswith(title)]
            rows = [instant(port, q.runnable("1m", values=values), at) for q in queries]
            sellers = [{r["metric"]["seller_id"] for r in result} for result in rows]
            assert [len(r) for r in rows] == [WORST_N] * 4, metric.name
            assert all(s == sellers[0] for s in sellers), metric.name

            # The N worst values among the sellers past the floor (and exported). A
            # backfill has no staleness markers, so the lookback (5 min) holds the
            # last two seller samples: a seller that stopped being exported at the
            # last step shows its previous one, and one just past the floor still
            # has its insufficient_volume series there (the table leaves it out).
            eligible = []
            for i in range(SELLERS):
                steps = [k for k in (last - 1, last) if mode == "all" or exported[k][i]]
                if not steps or any(
                        fleet.rules[m].status(*fleet.counts(i, m, k)) == IV for k in steps):
                    continue
                n, d = fleet.counts(i, m, steps[-1])
                eligible.append(n / d)
            worst = sorted(eligible, reverse=metric.healthy == "below")[:WORST_N]
            shown = sorted((float(r["value"][1]) for r in rows[0]),
                           reverse=metric.healthy == "below")
            assert shown == pytest.approx(worst), metric.name
            assert "insufficient_volume" not in {r["metric"]["status"] for r in rows[3]}

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
