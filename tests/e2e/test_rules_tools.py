"""The rules and the Alertmanager config pass Prometheus' own tools, and the
rule unit tests (fire, don't fire, guard, warning, resolution) pass promtool."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def run(*cmd: str) -> str:
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def test_promtool_check_rules() -> None:
    assert "SUCCESS" in run("promtool", "check", "rules", "prometheus/rules/popstream.rules.yml")


def test_promtool_rule_unit_tests() -> None:
    assert "SUCCESS" in run("promtool", "test", "rules", "prometheus/tests/popstream.test.yml")


def test_amtool_check_config() -> None:
    out = run("amtool", "check-config", "prometheus/alertmanager.yml")
    assert "1 inhibit rules" in out
    assert "2 receivers" in out
