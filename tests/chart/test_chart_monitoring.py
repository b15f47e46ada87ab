"""The chart's alerts and dashboard under promtool, built from Go modules as the control plane is: the rendered
PrometheusRule checks, every alert fires on its unit test's series and stays quiet on the healthy ones, and
every expression of the dashboard parses. (Which metrics they name: tests/integration/test_monitoring.py.)"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from rtc_recording.cluster import binaries

from .conftest import CHART, one

pytestmark = pytest.mark.slow  # promtool is built for `make test-all` only

UNIT_TESTS = Path(__file__).with_name("prometheus-rules-test.yaml")


@pytest.fixture(scope="module")
def promtool():
    path = binaries.ensure("promtool")["promtool"]

    def run(*args: str, cwd: Path | None = None) -> str:
        proc = subprocess.run([str(path), *args], capture_output=True, text=True, timeout=120, cwd=cwd)
        assert proc.returncode == 0, f"promtool {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    return run


def test_the_rendered_rule_checks(helm, promtool, tmp_path):
    objs = helm.template({"metrics": {"prometheusRule": {"enabled": True}}})
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(one(objs, "PrometheusRule", "rtc-rtc-recording-operator")["spec"]))
    assert "SUCCESS: 12 rules found" in promtool("check", "rules", str(rules))


def test_every_alert_fires_on_its_series_and_stays_quiet_when_healthy(promtool):
    alerts = {
        r["alert"]
        for g in yaml.safe_load((CHART / "files" / "prometheus-rules.yaml").read_text())["groups"]
        for r in g["rules"]
    }
    cases = [c for t in yaml.safe_load(UNIT_TESTS.read_text())["tests"] for c in t["alert_rule_test"]]
    assert {c["alertname"] for c in cases if c["exp_alerts"]} == alerts, "an alert without a series it fires on"
    assert {c["alertname"] for c in cases if not c["exp_alerts"]} == alerts, "an alert without a quiet case"
    assert "SUCCESS" in promtool("test", "rules", UNIT_TESTS.name, cwd=UNIT_TESTS.parent)


def test_every_dashboard_expression_parses(promtool, tmp_path):
    """promtool parses each panel's query as the expression of a recording rule, Grafana's variables given
    values as Grafana would."""
    dashboard = json.loads((CHART / "files" / "dashboard.json").read_text())
    rules = [
        {
            "record": f"panel_{p['id']}_{t['refId']}",
            "expr": t["expr"].replace("$__rate_interval", "5m").replace("$job", ".+"),
        }
        for p in dashboard["panels"]
        for t in p.get("targets", [])
    ]
    assert len(rules) >= 20
    file = tmp_path / "dashboard-rules.yaml"
    file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert f"SUCCESS: {len(rules)} rules found" in promtool("check", "rules", str(file))
