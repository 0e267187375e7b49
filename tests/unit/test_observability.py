"""Generated operations files are committed and up to date."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.observability import rendered_files

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("rel", sorted(rendered_files()))
def test_committed_file_is_what_the_catalog_generates(rel: str) -> None:
    path = ROOT / rel
    assert path.exists(), f"{rel} missing: run `make ops`"
    assert path.read_text() == rendered_files()[rel], f"{rel} is stale: run `make ops`"


def test_every_metric_has_a_breach_and_a_warning_alert_with_a_runbook() -> None:
    import yaml

    from streams.engine.catalog import default_catalog

    doc = yaml.safe_load(rendered_files()["prometheus/rules/popstream.rules.yml"])
    alerts = {r["alert"]: r for g in doc["groups"] for r in g["rules"] if "alert" in r}
    for metric in default_catalog().metrics:
        kinds = {r["labels"]["severity"] for r in alerts.values()
                 if r["labels"].get("metric") == metric.name}
        assert kinds == {"critical", "warning"}, metric.name
    assert all(r["annotations"]["runbook"] for r in alerts.values())


def test_dashboards_are_well_formed_grafana_models() -> None:
    import json

    import yaml

    provisioning = yaml.safe_load((ROOT / "grafana/provisioning/datasources/prometheus.yml")
                                  .read_text())
    uid = provisioning["datasources"][0]["uid"]
    files = {k: v for k, v in rendered_files().items() if k.startswith("grafana/dashboards/")}
    assert len(files) == 3
    uids = set()
    for rel, text in files.items():
        doc = json.loads(text)
        uids.add(doc["uid"])
        ids = [p["id"] for p in doc["panels"]]
        assert len(ids) == len(set(ids)), rel
        variables = {v["name"] for v in doc["templating"]["list"]}
        for panel in doc["panels"]:
            pos = panel["gridPos"]
            assert 0 <= pos["x"] <= pos["x"] + pos["w"] <= 24, (rel, panel["title"])
            assert panel["datasource"]["uid"] == uid
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                used = {w[1:] for w in target["expr"].replace('"', " ").split() if
                        w.startswith("$")}
                assert used <= variables, (panel["title"], used)
    assert len(uids) == 3
