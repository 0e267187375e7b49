"""Generated operations files are committed and up to date."""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.engine.catalog import default_catalog
from streams.observability import rendered_files
from streams.observability.rules import RUNBOOK_BASE, exact_decimal, exact_percent

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("rel", sorted(rendered_files()))
def test_committed_file_is_what_the_catalog_generates(rel: str) -> None:
    path = ROOT / rel
    assert path.exists(), f"{rel} missing: run `make ops`"
    assert path.read_text() == rendered_files()[rel], f"{rel} is stale: run `make ops`"


def _rules() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(rendered_files()["prometheus/rules/popstream.rules.yml"])
    return doc


def _alerts() -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in _rules()["groups"] for r in g["rules"] if "alert" in r}


def test_every_metric_has_a_breach_and_a_warning_seller_alert_from_the_workers_status() -> None:
    alerts = _alerts()
    for metric in default_catalog().metrics:
        mine = [r for r in alerts.values() if r["labels"].get("metric") == metric.name
                and r["labels"]["severity"] == "seller"]
        assert {r["labels"]["seller_status"] for r in mine} == {"breach", "warning"}
        for rule in mine:
            status = rule["labels"]["seller_status"]
            # The worker's status is the single source of truth: no floor, target or
            # warning line is re-derived from floats in PromQL.
            assert (f'popstream_seller_metric_status{{metric="{metric.name}",'
                    f'status="{status}"}} == 1') in rule["expr"]
            assert "denominator" not in rule["expr"]
            assert "target" not in rule["expr"]
            assert rule["keep_firing_for"] == "10m"


def test_alerts_are_for_sellers_or_pages_with_a_runbook_url_and_no_queries() -> None:
    runbooks = rendered_files()["prometheus/rules/runbooks.md"]
    for name, rule in _alerts().items():
        assert rule["labels"]["severity"] in {"seller", "page"}, name
        notes = rule["annotations"]
        assert "runbook" not in notes, name
        assert notes["runbook_url"] == f"{RUNBOOK_BASE}#{name.lower()}"
        assert f"\n## {name}\n" in runbooks
        for text in notes.values():
            # An annotation is rendered per alert per evaluation: $value and labels
            # only, never a query of its own.
            assert "query" not in text, (name, text)
    assert _alerts()["PopstreamWorkerDown"]["labels"]["severity"] == "page"
    fleet = [n for n in _alerts() if n.startswith("PopstreamFleet")]
    assert len(fleet) == 1 + len(default_catalog().metrics)


def test_recording_rules_aggregate_and_are_named_level_metric_operations() -> None:
    recording = [r for g in _rules()["groups"] for r in g["rules"] if "record" in r]
    assert recording
    for rule in recording:
        level, metric, operations = rule["record"].split(":")
        assert level in {"metric", "job"}
        assert metric.startswith("popstream_")
        assert operations
        # No per-seller copy (issue #10: 1.8M extra series at 100,000 sellers).
        assert "popstream_seller_" not in rule["expr"], rule["record"]
        assert rule["expr"].startswith(("sum by", "max by", "metric:")), rule["record"]


def test_thresholds_are_written_as_the_decimals_they_are() -> None:
    assert exact_decimal(Fraction(1, 50)) == "0.02"
    assert exact_decimal(0.02) == "0.02"
    assert exact_percent(0.976) == "97.6%"
    assert exact_percent(Fraction(1, 125)) == "0.8%"
    assert exact_percent(0.04) == "4%"
    with pytest.raises(ValueError, match="no exact short decimal"):
        exact_decimal(Fraction(1, 3))
    text = "".join(v for k, v in rendered_files().items() if k.startswith("prometheus/"))
    assert not re.search(r"\d\.\d*(0{6,}|9{6,})\d", text), "a float artefact in a threshold"
    alerts = _alerts()
    cancel = alerts["PopstreamPreFulfillmentCancelRateWarning"]["annotations"]
    assert "warning from 2%" in cancel["summary"]
    assert "healthy below 2.5%" in cancel["summary"]


def test_alertmanager_routes_sellers_to_sellers_and_inhibits_only_among_them() -> None:
    config = yaml.safe_load(rendered_files()["prometheus/alertmanager.yml"])
    route = config["route"]
    assert route["receiver"] == "pager"
    seller = next(r for r in route["routes"] if r["receiver"] == "seller-notifications")
    assert seller["matchers"] == ['severity="seller"']
    assert seller["group_by"] == ["seller_id"]
    assert seller["repeat_interval"] == "24h"
    [inhibit] = config["inhibit_rules"]
    for side in ("source_matchers", "target_matchers"):
        assert 'severity="seller"' in inhibit[side]
        for label in inhibit["equal"]:
            assert f'{label}=~".+"' in inhibit[side], (side, label)
    assert 'seller_status="breach"' in inhibit["source_matchers"]
    assert 'seller_status="warning"' in inhibit["target_matchers"]


def test_dashboards_are_well_formed_grafana_models() -> None:
    import json

    import yaml

    provisioning = yaml.safe_load((ROOT / "grafana/provisioning/datasources/prometheus.yml")
                                  .read_text())
    uid = provisioning["datasources"][0]["uid"]
    files = {k: v for k, v in rendered_files().items() if k.startswith("grafana/dashboards/")}
    assert len(files) == 3
    uids = set()
    builtins = {"__rate_interval", "__interval", "__range"}
    for rel, text in files.items():
        doc = json.loads(text)
        uids.add(doc["uid"])
        ids = [p["id"] for p in doc["panels"]]
        assert len(ids) == len(set(ids)), rel
        titles = [p["title"] for p in doc["panels"]]
        assert len(titles) == len(set(titles)), rel
        variables = {v["name"] for v in doc["templating"]["list"]}
        for panel in doc["panels"]:
            pos = panel["gridPos"]
            assert 0 <= pos["x"] <= pos["x"] + pos["w"] <= 24, (rel, panel["title"])
            assert panel["datasource"]["uid"] == uid
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                used = set(re.findall(r"\$(\w+)", target["expr"]))
                assert used <= variables | builtins, (panel["title"], used)
    assert len(uids) == 3


def _boards() -> dict[str, dict[str, Any]]:
    from streams.engine.catalog import default_catalog
    from streams.observability.dashboards import dashboards

    return dashboards(default_catalog())


def _targets() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    return [(name, panel, t) for name, board in _boards().items()
            for panel in board["panels"] for t in panel["targets"]]


def test_no_range_query_reads_every_seller() -> None:
    """Issue #10: range queries over all sellers hit the 50M-sample limit at 100,000
    sellers. Per-seller series are read by range only for the one picked seller."""
    for name, panel, t in _targets():
        if t["range"] and "popstream_seller_" in t["expr"]:
            assert 'seller_id="$seller"' in t["expr"], (name, panel["title"])
        assert "popstream:" not in t["expr"], "dashboards need no recording rule"


def test_tables_stats_and_gauges_are_instant_and_rates_use_rate_interval() -> None:
    for name, panel, t in _targets():
        assert t["instant"] != t["range"], (name, panel["title"])
        if panel["type"] in ("table", "stat", "bargauge"):
            assert t["instant"], (name, panel["title"])
        windows = re.findall(r"\[([^\]]+)\]", t["expr"])
        assert all(w == "$__rate_interval" for w in windows), (panel["title"], windows)


def test_worst_tables_show_n_sellers_past_the_floor_coloured_against_the_target() -> None:
    from streams.engine.catalog import default_catalog
    from streams.observability.dashboards import WORST_N

    fleet = _boards()["fleet-health"]
    for metric in default_catalog().metrics:
        panel = next(p for p in fleet["panels"] if p["type"] == "table"
                     and p["title"].startswith(f"{metric.name}: {WORST_N} worst"))
        worst = "bottomk" if metric.healthy == "at_least" else "topk"
        # One hidden variable ranks the sellers once; the table's queries select them.
        variable = next(v for v in fleet["templating"]["list"]
                        if v["name"] == f"worst_{metric.name}")
        assert variable["query"].startswith(f"query_result({worst}({WORST_N}, ")
        assert ' unless on (seller_id) popstream_seller_metric_status{metric="' \
            f'{metric.name}",status="insufficient_volume"}}' in variable["query"]
        assert variable["hide"] == 2
        assert variable["includeAll"]
        assert variable["current"]["value"] == ["$__all"]
        assert all(f'seller_id=~"$worst_{metric.name}"' in t["expr"]
                   for t in panel["targets"]), "rows of the same sellers"
        assert all(t["instant"] for t in panel["targets"])
        value = next(o for o in panel["fieldConfig"]["overrides"]
                     if o["matcher"]["options"] == "Value #A")
        props = {p["id"]: p["value"] for p in value["properties"]}
        steps = [s["value"] for s in props["thresholds"]["steps"]]
        assert metric.target in steps, steps
        assert props["custom.cellOptions"]["type"] == "color-background"
        assert props["displayName"] == metric.name


def test_zero_breaches_show_as_zero_and_the_seller_picker_loads_no_ids() -> None:
    fleet, seller = _boards()["fleet-health"], _boards()["seller-detail"]
    bar = next(p for p in fleet["panels"] if p["title"] == "Sellers in breach, per metric")
    # popstream_fleet_sellers carries every status, 0 included, on every worker.
    assert bar["targets"][0]["expr"].startswith("sum by (metric) (popstream_fleet_sellers{")
    picker, owner = seller["templating"]["list"]
    assert picker["name"] == "seller"
    assert picker["type"] == "textbox" or 'status=~"warning|breach"' in picker["query"]
    # The hidden owner variable loads one instance, for the seller page link.
    assert owner["name"] == "worker"
    assert owner["hide"] == 2
    assert 'seller_id="$seller"' in owner["query"]
    (link,) = seller["links"]
    assert link["url"] == "${worker}/sellers/${seller:percentencode}"
    assert "popstream_url" in owner["query"]


def test_ratio_axes_around_the_target_and_legends_tell_series_apart() -> None:
    from streams.engine.catalog import default_catalog

    for name, board in _boards().items():
        for panel in board["panels"]:
            if panel["type"] != "table":  # tables name columns, not series
                legends = [t["legendFormat"] for t in panel["targets"]]
                assert len(legends) == len(set(legends)), (name, panel["title"], legends)
            defaults = panel.get("fieldConfig", {}).get("defaults", {})
            if defaults.get("unit") != "percentunit" or panel["type"] != "timeseries":
                continue
            metric = next(m for m in default_catalog().metrics
                          if panel["title"].startswith(m.name))
            custom = defaults["custom"]
            if metric.healthy == "below":
                assert defaults["min"] == 0
                assert "max" not in defaults
                assert metric.target < custom["axisSoftMax"] <= 3 * metric.target
            else:
                headroom = 1 - metric.target
                assert defaults["max"] == 1
                assert metric.target - 3 * headroom <= custom["axisSoftMin"] < metric.target
