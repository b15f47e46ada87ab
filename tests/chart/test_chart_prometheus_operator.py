"""The README's Monitoring section followed as written, against the Prometheus Operator's own CRDs (a pinned release,
from the Go module proxy) served by the local apiserver: the Quickstart's release, then the section's `helm upgrade`
and `kubectl get`. The API server keeps every field the chart renders in the ServiceMonitor and the PrometheusRule
(a structural schema drops what it does not know, and helm's install still succeeds), the ServiceMonitor
selects the operator's and the receivers' metrics Services and names the port they have, and the dashboard
ConfigMap is one Grafana's sidecar loads. No Prometheus runs: what it would scrape is the API server's objects."""

from __future__ import annotations

import json
import secrets
import shlex

import pytest
import yaml

from rtc_recording.cluster import binaries

from .conftest import CHART
from .test_chart_install import Release, crds  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

README = binaries.REPO_ROOT / "README.md"
KINDS = ("servicemonitors", "prometheusrules")


def readme_commands(heading: str) -> list[list[str]]:
    """The commands of the first `sh` block of a README section, as a shell would split them."""
    section = README.read_text().split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0].replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def prometheus_operator_crds(crds):  # noqa: F811
    directory = (
        binaries.go_module(binaries.PROMETHEUS_OPERATOR, binaries.PROMETHEUS_OPERATOR_VERSION)
        / "example"
        / "prometheus-operator-crd"
    )
    names = [f"{kind}.monitoring.coreos.com" for kind in KINDS]
    for kind in KINDS:
        crds.kubectl("apply", "--server-side", "-f", str(directory / f"monitoring.coreos.com_{kind}.yaml"))
    crds.kubectl("wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{name}" for name in names))
    yield crds
    crds.kubectl("delete", "crd", *names)  # the session's other tests find the apiserver as it was


@pytest.fixture(scope="module")
def monitored(prometheus_operator_crds, helm):
    """The Quickstart's `helm install` (the project's CRDs are the crds fixture's), then the Monitoring section's
    commands, each with the release, its namespace and the chart's path put in for the README's."""
    suffix = secrets.token_hex(3)
    rel = Release(prometheus_operator_crds, helm, f"monitored-{suffix}", f"rtc-monitored-{suffix}")
    ours = {"rtc": rel.name, "rtc-recording": rel.namespace, "charts/rtc-recording-operator": str(CHART)}
    install = next(c for c in readme_commands("Quickstart on a real cluster") if c[:2] == ["helm", "install"])
    upgrade, get = readme_commands("Monitoring")
    assert upgrade[:2] == ["helm", "upgrade"] and get[:2] == ["kubectl", "-n"], "the section's commands changed"
    kubeconfig = ["--kubeconfig", str(rel.cluster.kubeconfig)]
    helm.run(*[ours.get(a, a) for a in install[1:]], "--set", "crds.enabled=false", *kubeconfig)
    helm.run(*[ours.get(a, a) for a in upgrade[1:]], *kubeconfig)
    rel.listed = rel.cluster.kubectl(*[ours.get(a, a) for a in get[1:]], "-o", "name").stdout.split()
    manifest = helm.run("get", "manifest", rel.name, "-n", rel.namespace, *kubeconfig).stdout
    rel.manifest = [d for d in yaml.safe_load_all(manifest) if d]
    yield rel
    rel.helm_run("uninstall")


def rendered(rel: Release, kind: str, name: str) -> dict:
    (obj,) = [o for o in rel.manifest if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


def test_the_readme_get_lists_the_three_objects(monitored):
    f = monitored.fullname
    assert sorted(monitored.listed) == sorted(
        [
            f"servicemonitor.monitoring.coreos.com/{f}",
            f"prometheusrule.monitoring.coreos.com/{f}",
            f"configmap/{f}-dashboard",
        ]
    )


@pytest.mark.parametrize("kind", ["ServiceMonitor", "PrometheusRule"])
def test_the_api_server_stores_what_the_chart_rendered(monitored, kind):
    """Equal, not only accepted: a field that the CRD's schema does not know would be pruned from what is stored."""
    stored, chart = monitored.get(kind.lower(), monitored.fullname), rendered(monitored, kind, monitored.fullname)
    assert stored["spec"] == chart["spec"]
    assert stored["metadata"]["labels"] == chart["metadata"]["labels"]
    assert stored["metadata"]["labels"]["release"] == "kube-prometheus-stack"  # the README's --set-string


def test_the_service_monitor_scrapes_both_metrics_services_by_their_port_name(monitored):
    f, spec = monitored.fullname, monitored.get("servicemonitor", monitored.fullname)["spec"]
    assert set(spec["selector"]) == {"matchLabels"} and "namespaceSelector" not in spec  # the release's namespace
    selector = ",".join(f"{k}={v}" for k, v in spec["selector"]["matchLabels"].items())
    services = json.loads(
        monitored.cluster.kubectl("get", "services", "-n", monitored.namespace, "-l", selector, "-o", "json").stdout
    )["items"]
    # Never the receiver's own Service (`<fullname>-receiver`): the Internet may reach it.
    assert sorted(s["metadata"]["name"] for s in services) == [f"{f}-metrics", f"{f}-receiver-metrics"]
    for service in services:
        ports = {p["name"] for p in service["spec"]["ports"]}
        for endpoint in spec["endpoints"]:
            assert endpoint["port"] in ports, f"{service['metadata']['name']} has no port {endpoint['port']}"


def test_the_dashboard_config_map_is_one_grafanas_sidecar_loads(monitored):
    config_map = monitored.get("configmap", f"{monitored.fullname}-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    (key,) = config_map["data"]
    assert key.endswith(".json")  # the sidecar writes each key as a file; Grafana reads *.json
    assert json.loads(config_map["data"][key]) == json.loads((CHART / "files" / "dashboard.json").read_text())
