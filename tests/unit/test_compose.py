"""docker-compose.yml is valid Compose (checked offline against the spec's schema),
mounts files that exist in the repository, keeps Kafka's data on its volume, and
starts monitoring whatever the state of the workers (issue #10)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft201909Validator

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
IMAGE_LOG_DIRS = "/tmp/kraft-combined-logs"  # apache/kafka's log.dirs when unset


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
    jobs = {job["job_name"]: job for job in prom["scrape_configs"]}
    workers = jobs["popstream"]  # the alert rules' job
    groups = workers["static_configs"]
    assert [t for g in groups for t in g["targets"]] == ["worker-1:6066", "worker-2:6066"]
    assert workers["sample_limit"] > 0
    assert jobs["prometheus"]["static_configs"][0]["targets"] == ["localhost:9090"]
    services = compose()["services"]
    # Each worker's seller pages, where a browser on the host reaches them: the port
    # compose publishes for the target's service (Grafana's seller dashboard link).
    for group in groups:
        (target,) = group["targets"]
        service, port = target.split(":")
        published = next(p.split(":")[0] for p in services[service]["ports"]
                         if p.split(":")[1] == port)
        assert group["labels"] == {"popstream_url": f"http://localhost:{published}"}
    for target in prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]:
        assert target.split(":")[0] in services
    am = yaml.safe_load((ROOT / "prometheus/alertmanager.yml").read_text())
    sink = compose()["services"]["alert-sink"]["environment"]["HTTP_PORT"]
    assert all(f"alert-sink:{sink}" in r["webhook_configs"][0]["url"] for r in am["receivers"])


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source of each short-syntax mount."""
    return {v.split(":")[1]: v.split(":")[0] for v in service.get("volumes", [])}


def test_kafka_keeps_its_data_on_its_volume() -> None:
    """apache/kafka writes to /tmp/kraft-combined-logs unless told otherwise: a
    `down`/`up` would then wipe topics and changelogs while workers keep RocksDB."""
    doc = compose()
    kafka = doc["services"]["kafka"]
    log_dirs = kafka["environment"].get("KAFKA_LOG_DIRS", IMAGE_LOG_DIRS).split(",")
    mounts = _mounts(kafka)
    for log_dir in log_dirs:
        assert log_dir in mounts, f"{log_dir} is not a mounted path of the kafka service"
        assert mounts[log_dir] in doc["volumes"], f"{log_dir} is not on a named volume"


def _needs(services: dict[str, Any], name: str) -> set[str]:
    """Every service ``name`` waits for, directly or through others."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        for dep in services[todo.pop()].get("depends_on", {}):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def test_monitoring_starts_whatever_the_state_of_the_workers() -> None:
    services = compose()["services"]
    monitored = {"kafka", "topics", "simulator"} | {n for n in services if n.startswith("worker")}
    for name in ("prometheus", "alertmanager", "alert-sink", "grafana"):
        assert not _needs(services, name) & monitored, f"{name} waits for the pipeline"
    assert "depends_on" not in services["prometheus"]
    assert services["grafana"]["depends_on"] == {"prometheus": {"condition": "service_started"}}
