"""The CRD as a chart template, on a control plane of its own (no CRD applied by kubectl):
`helm upgrade` to a chart with a changed schema changes the served schema and keeps the objects,
`helm uninstall` keeps the CRD unless crds.keep=false, and a release of the 0.1.0 layout (the CRD
in crds/, which Helm never upgrades) moves to the template with `helm upgrade --take-ownership`.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
from pathlib import Path

import pytest
import yaml

from rtc_recording.api.names import STOP_FINALIZER
from rtc_recording.cluster import binaries
from rtc_recording.cluster.launcher import LocalCluster
from rtc_recording.cluster.processes import wait_for

from .conftest import CHART

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

CRD = "rtcrecordings.rtc.recording.io"
EXAMPLE = binaries.REPO_ROOT / "examples" / "mixed-oss-minimal.yaml"
NEW_FIELD = "crdUpgradeTestNote"


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    local = LocalCluster.start(tmp_path_factory.mktemp("crd-cluster"))
    try:
        yield local
    finally:
        local.stop()


def chart_with_new_field(tmp: Path) -> Path:
    """The chart, one patch version on, whose CRD accepts a new optional spec field."""
    chart = tmp / "chart-next"
    shutil.copytree(CHART, chart)
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    (chart / "Chart.yaml").write_text(
        re.sub(r"(?m)^version: .*$", f"version: {meta['version']}-next", (chart / "Chart.yaml").read_text())
    )
    path = chart / "files" / "crds" / "rtcrecordings.yaml"
    crd = yaml.safe_load(path.read_text())
    (version,) = crd["spec"]["versions"]
    version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][NEW_FIELD] = {
        "type": "string",
        "maxLength": 64,
        "description": "Added by the upgrade test.",
    }
    path.write_text(yaml.safe_dump(crd))
    return chart


def chart_of_0_1_0_layout(tmp: Path) -> Path:
    """The chart as 0.1.0 shipped it: the CRD in crds/, no template."""
    chart = tmp / "chart-0.1.0"
    shutil.copytree(CHART, chart)
    (chart / "files" / "crds").rename(chart / "crds")
    (chart / "templates" / "crds.yaml").unlink()
    return chart


def with_new_field(name: str) -> str:
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["metadata"]["name"] = name
    doc["spec"][NEW_FIELD] = "hello"
    return json.dumps(doc)


def crd(cluster) -> dict:
    return json.loads(cluster.kubectl("get", "crd", CRD, "-o", "json").stdout)


def test_upgrade_changes_the_schema_and_uninstall_keeps_the_crd(fresh, helm, tmp_path):
    release, namespace, records = f"crd-{secrets.token_hex(3)}", "rtc-crd", "recordings"

    def helm_run(*args: str, check: bool = True):
        return helm.run(*args, "--kubeconfig", str(fresh.kubeconfig), "-n", namespace, check=check)

    helm_run("install", release, str(CHART), "--create-namespace")
    installed = crd(fresh)
    assert installed["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert installed["metadata"]["annotations"]["meta.helm.sh/release-name"] == release
    fresh.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{CRD}")
    fresh.kubectl("create", "namespace", records)
    # Established, yet the kind's handler may answer 503 for a moment more.
    wait_for(
        lambda: fresh.kubectl("apply", "--server-side", "-n", records, "-f", str(EXAMPLE), check=False).returncode == 0,
        what="the first RtcRecording created",
    )
    refused = fresh.kubectl(
        "apply",
        "--server-side",
        "--dry-run=server",
        "-n",
        records,
        "-f",
        "-",
        input=with_new_field("noted"),
        check=False,
    )
    assert refused.returncode != 0 and NEW_FIELD in refused.stderr, refused.stderr

    helm_run("upgrade", release, str(chart_with_new_field(tmp_path)))
    # The apiserver serves the new schema moments after the CRD is updated.
    wait_for(
        lambda: (
            fresh.kubectl(
                "apply",
                "--server-side",
                "--dry-run=server",
                "-n",
                records,
                "-f",
                "-",
                input=with_new_field("noted"),
                check=False,
            ).returncode
            == 0
        ),
        what="the upgraded schema served",
    )
    fresh.kubectl("apply", "--server-side", "-n", records, "-f", "-", input=with_new_field("noted"))
    noted = json.loads(fresh.kubectl("get", "rtcrec", "noted", "-n", records, "-o", "json").stdout)
    assert noted["spec"][NEW_FIELD] == "hello"
    assert fresh.kubectl("get", "rtcrec", "standup-42", "-n", records, "-o", "name").stdout.strip()

    helm_run("uninstall", release)
    assert crd(fresh)["metadata"]["name"] == CRD, "crds.keep: the CRD stays"
    names = fresh.kubectl("get", "rtcrec", "-n", records, "-o", "name").stdout.split()
    assert sorted(names) == ["rtcrecording.rtc.recording.io/noted", "rtcrecording.rtc.recording.io/standup-42"]

    # The same release installed again adopts the kept CRD (its ownership annotations name it); an
    # upgrade to crds.keep=false takes the annotation off, and then uninstalling deletes the CRD.
    helm_run("install", release, str(CHART))
    helm_run("upgrade", release, str(CHART), "--set", "crds.keep=false")
    assert "helm.sh/resource-policy" not in crd(fresh)["metadata"].get("annotations", {})
    # The chart's admission policy put the operator's finalizer on those created once it acted (a moment
    # after the install: the first may have come before); no operator runs on this control plane (no
    # kubelet) to let them go when the CRD's deletion deletes them, so the test does it.
    finalizers = {
        name: json.loads(fresh.kubectl("get", name, "-n", records, "-o", "json").stdout)["metadata"].get("finalizers")
        for name in names
    }
    assert finalizers["rtcrecording.rtc.recording.io/noted"] == [STOP_FINALIZER]  # created well after the install
    for name in names:
        fresh.kubectl("patch", name, "-n", records, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    helm_run("uninstall", release)
    wait_for(lambda: fresh.kubectl("get", "crd", CRD, check=False).returncode != 0, what="the CRD deleted")


def test_release_of_the_0_1_0_layout_takes_the_crd_over(fresh, helm, tmp_path):
    release, namespace = f"old-{secrets.token_hex(3)}", f"rtc-old-{secrets.token_hex(3)}"

    def helm_run(*args: str, check: bool = True):
        return helm.run(*args, "--kubeconfig", str(fresh.kubeconfig), "-n", namespace, check=check)

    fresh.kubectl("delete", "crd", CRD, "--ignore-not-found", "--wait=true")
    helm_run("install", release, str(chart_of_0_1_0_layout(tmp_path)), "--create-namespace")
    assert "meta.helm.sh/release-name" not in crd(fresh)["metadata"].get("annotations", {})

    plain = helm_run("upgrade", release, str(CHART), check=False)
    assert plain.returncode != 0 and "invalid ownership metadata" in plain.stderr, plain.stderr
    helm_run("upgrade", release, str(CHART), "--take-ownership")
    owned = crd(fresh)["metadata"]
    assert owned["annotations"]["meta.helm.sh/release-name"] == release
    assert owned["annotations"]["helm.sh/resource-policy"] == "keep"
    helm_run("uninstall", release)
    assert crd(fresh)["metadata"]["name"] == CRD
