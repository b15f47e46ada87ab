"""What Prometheus scrapes from a running operator and receiver, and what the chart's dashboard and alerts
ask of it: every metric they name is one these processes export. (promtool parses and unit-tests the same
expressions in the slow tier: tests/chart/test_chart_monitoring.py.)"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from rtc_recording.cluster.binaries import REPO_ROOT

from .conftest import metric_total, recording, wait_for

pytestmark = pytest.mark.cluster

FILES = REPO_ROOT / "charts" / "rtc-recording-operator" / "files"
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created")}
NOT_METRICS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}  # PromQL's keywords, and numbers' names


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except urllib.error.URLError:
        return 0, ""  # not listening (yet)


def scrape(port: str, active: bool = False) -> str:
    """/metrics once the process serves it (`active`: once the operator leads, and so counts its recordings)."""
    return wait_for(
        lambda: (
            (text := get(f"http://127.0.0.1:{port}/metrics")[1])
            and (not active or "rtcrec_leader 1.0" in text)
            and text
        ),
        timeout=30,
        what=f"/metrics on port {port}",
    )


def exported(text: str) -> set[str]:
    """The series names an exposition offers, those of families without a sample yet included."""
    names = set()
    for family in text_string_to_metric_families(text):
        names |= {s.name for s in family.samples}
        names |= {family.name + s for s in SUFFIXES.get(family.type, ("",))}
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: what is left of its identifiers once strings, label
    matchers, ranges, grouping clauses and function calls are taken out."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = re.findall(r"(?<![\w.$])([A-Za-z_:][\w:]*)\b(?!\s*\()", expr)
    return {n for n in names if n.lower() not in NOT_METRICS}


def expressions() -> dict[str, str]:
    """Every PromQL expression of the dashboard (Grafana's variables given values) and of the alert rules."""
    dashboard = json.loads((FILES / "dashboard.json").read_text())
    found = {f"panel {p['title']!r} {t['refId']}": t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])}
    for variable in dashboard["templating"]["list"]:
        if query := variable.get("definition"):  # label_values(<metric>, <label>): Grafana's, not PromQL
            found[f"variable {variable['name']}"] = query.removeprefix("label_values(").split(",")[0]
    for group in yaml.safe_load((FILES / "prometheus-rules.yaml").read_text())["groups"]:
        for rule in group["rules"]:
            found[f"alert {rule['alert']}"] = rule["expr"]
    return {where: expr.replace("$__rate_interval", "5m").replace("$job", ".+") for where, expr in found.items()}


def test_the_name_extraction_sees_through_promql():
    expr = (
        'sum by (namespace, job) (rate(a_total{code!~"OK|x{y}"}[5m])) / on (job) group_left (pod) '
        "histogram_quantile(0.9, sum by (le) (rate(b_bucket[5m]))) > 5 unless c and bool d offset 5m"
    )
    assert metric_names(expr) == {"a_total", "b_bucket", "c", "d"}


def test_every_expression_names_only_metrics_the_operator_or_the_receiver_exports(stack):
    operator = scrape(stack.env["RTCREC_METRICS_PORT"], active=True)
    offered = exported(operator) | exported(scrape(stack.env["RTCREC_RECEIVER_METRICS_PORT"]))
    unknown = {}
    for where, expr in expressions().items():
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        if names - offered:
            unknown[where] = sorted(names - offered)
    assert not unknown, f"metrics no process exports: {unknown}"


def test_the_receiver_serves_metrics_on_its_own_port_and_callbacks_and_health_on_the_other(stack):
    callbacks = stack.env["RTCREC_CALLBACK_URL"]
    wait_for(lambda: get(f"{callbacks}/healthz")[0] == 200, timeout=30, what="the receiver's /healthz")
    assert get(f"{callbacks}/metrics")[0] == 404  # the callback port faces the internet
    assert "rtcrec_callbacks_total" in exported(scrape(stack.env["RTCREC_RECEIVER_METRICS_PORT"]))


def test_both_say_their_build_and_the_active_operator_counts_its_recordings(stack, namespace, channel):
    stack.apply(namespace, recording("counted", channel))
    stack.wait_phase(namespace, "counted", "Recording")
    ports = {"operator": stack.env["RTCREC_METRICS_PORT"], "receiver": stack.env["RTCREC_RECEIVER_METRICS_PORT"]}
    for port in ports.values():
        (build,) = [
            s for f in text_string_to_metric_families(scrape(port)) for s in f.samples if s.name == "rtcrec_build_info"
        ]
        assert build.value == 1 and set(build.labels) == {"version", "python", "kopf"}
    assert metric_total(ports["operator"], "rtcrec_recordings", phase="Recording") >= 1
    assert metric_total(ports["operator"], "rtcrec_recordings_synced") >= 1
    assert metric_total(ports["receiver"], "rtcrec_recordings") == 0  # the receiver counts none


def test_a_task_stopped_for_its_deletion_adds_its_seconds_to_its_namespace(stack, namespace, channel):
    stack.apply(namespace, recording("billed", channel))
    started = time.time()
    stack.wait_phase(namespace, "billed", "Recording")
    stack.cluster.kubectl("delete", "rtcrec", "billed", "-n", namespace, "--wait=true", "--timeout=30s")
    port = stack.env["RTCREC_METRICS_PORT"]
    seconds = wait_for(
        lambda: metric_total(port, "rtcrec_recorded_seconds_total", namespace=namespace),
        timeout=10,
        what="the deleted recording's seconds",
    )
    # From the task's start (status.startTime, to the second) to its Stop: within this test's own time.
    assert 0 < seconds <= time.time() - started + 1
