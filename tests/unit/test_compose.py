"""docker-compose.yml is valid Compose (checked offline against the spec's schema)
and mounts files that exist in the repository."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft201909Validator

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return doc


def test_compose_file_matches_the_compose_specification() -> None:
    schema = json.loads((ROOT / "tests/data/compose-spec.schema.json").read_text())
    validator = Draft201909Validator(schema)
    errors = sorted(str(e.message) for e in validator.iter_errors(compose()))
    assert errors == []


def test_bind_mounts_and_build_context_exist() -> None:
    doc = compose()
    for name, service in doc["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
        if "build" in service:
            assert (ROOT / service["build"] / "Dockerfile").exists()


def test_dependencies_and_health() -> None:
    services = compose()["services"]
    for name, service in services.items():
        for dep, cond in service.get("depends_on", {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{dep} has no healthcheck"
    expected = {"kafka", "topics", "worker-1", "worker-2", "simulator", "prometheus",
                "alertmanager", "grafana"}
    assert expected <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


def test_prometheus_scrapes_both_workers_and_loads_the_rules() -> None:
    prom = yaml.safe_load((ROOT / "prometheus/prometheus.yml").read_text())
    targets = prom["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == ["worker-1:6066", "worker-2:6066"]
    assert prom["scrape_configs"][0]["job_name"] == "popstream"  # the alert rules' job
    am = yaml.safe_load((ROOT / "prometheus/alertmanager.yml").read_text())
    sink = compose()["services"]["alert-sink"]["environment"]["HTTP_PORT"]
    assert all(f"alert-sink:{sink}" in r["webhook_configs"][0]["url"] for r in am["receivers"])
