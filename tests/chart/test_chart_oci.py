"""The chart as a user installs it (README, "Installing from the OCI chart"): `make chart`'s script packages it
and pushes it to a registry (the CNCF distribution registry, built from Go modules, on loopback), and
`helm install oci://...` installs it into the local apiserver, Artifact Hub metadata and all.

Then its `helm test` hook: no pod runs here (no kubelet), so the hook's check, taken from the installed
release (`helm get hooks`), runs as a local process with the operator ServiceAccount's token, against the
apiserver and an operator run as in test_chart_rbac_live.py (its /healthz on loopback instead of the
metrics Service the hook names). It passes, and fails once the operator is gone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from urllib.parse import urlsplit

import pytest
import yaml

from rtc_recording.cluster import binaries
from rtc_recording.cluster.launcher import free_port
from rtc_recording.cluster.processes import wait_for

from .conftest import CHART
from .test_chart_rbac_live import Deployed, crds, emulator  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]


@pytest.fixture(scope="module", autouse=True)
def helm_home(tmp_path_factory):
    """helm's registry config and cache in a temporary home, not the user's."""
    home = tmp_path_factory.mktemp("helm-home")
    with pytest.MonkeyPatch.context() as env:
        for kind in ("CACHE", "CONFIG", "DATA"):
            env.setenv(f"HELM_{kind}_HOME", str(home / kind.lower()))
        yield home


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """The distribution registry on 127.0.0.1, storing in a temporary directory. Yields host:port."""
    work = tmp_path_factory.mktemp("registry")
    address = f"127.0.0.1:{free_port()}"
    config = {
        "version": 0.1,
        "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(work / "storage")}},
        "http": {"addr": address},
    }
    (work / "config.yml").write_text(yaml.safe_dump(config))
    log = open(work / "registry.log", "wb")  # closed at teardown
    proc = subprocess.Popen(
        [binaries.ensure("registry")["registry"], "serve", str(work / "config.yml")],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "OTEL_TRACES_EXPORTER": "none"},
    )

    def up() -> bool:
        try:
            with urllib.request.urlopen(f"http://{address}/v2/", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return proc.poll() is not None  # exited: say so below rather than wait

    try:
        wait_for(up, what="the registry", details=lambda: (work / "registry.log").read_text())
        assert proc.poll() is None, (work / "registry.log").read_text()
        yield address
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.fixture(scope="module")
def published(registry, helm, tmp_path_factory) -> str:
    """What `make chart CHART_REGISTRY=127.0.0.1:PORT/charts CHART_PUSH_FLAGS=--plain-http` runs."""
    out = tmp_path_factory.mktemp("chart")
    env = {
        **os.environ,
        "HELM": str(helm.path),
        "CHART_REGISTRY": f"{registry}/charts",
        "CHART_PUSH_FLAGS": "--plain-http",
        "OUT": str(out),
    }
    script = binaries.REPO_ROOT / "tools" / "chart" / "publish.sh"
    proc = subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (out / f"rtc-recording-operator-{VERSION}.tgz").exists()
    assert f"Pushed: {registry}/charts/rtc-recording-operator:{VERSION}" in proc.stdout + proc.stderr
    return f"oci://{registry}/charts/rtc-recording-operator"


def test_the_registry_serves_the_chart_with_its_metadata(helm, published):
    shown = yaml.safe_load(helm.run("show", "chart", published, "--version", VERSION, "--plain-http").stdout)
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert shown["version"] == VERSION and shown["annotations"] == chart["annotations"]
    assert shown["home"] == chart["home"] and shown["maintainers"] == chart["maintainers"]
    kinds = yaml.safe_load(shown["annotations"]["artifacthub.io/crds"])
    assert {c["kind"] for c in kinds} == {"RtcRecording", "RtcRecordingSchedule", "RtcRecordingClass"}


def test_install_from_oci_and_the_helm_test_check(crds, helm, published, emulator, tmp_path):  # noqa: F811
    release = Deployed(crds, helm, tmp_path, {}, chart=(published, "--version", VERSION, "--plain-http"))
    kubeconfig = ["--kubeconfig", str(crds.kubeconfig), "-n", release.namespace]
    try:
        installed = json.loads(helm.run("get", "metadata", release.release, *kubeconfig, "-o", "json").stdout)
        assert installed["status"] == "deployed" and (installed["chart"], installed["version"]) == (
            "rtc-recording-operator",
            VERSION,
        )
        hooks = [h for h in yaml.safe_load_all(helm.run("get", "hooks", release.release, *kubeconfig).stdout) if h]
        (pod,) = [h for h in hooks if h["kind"] == "Pod" and h["metadata"]["annotations"]["helm.sh/hook"] == "test"]
        (account_hook,) = [h for h in hooks if h["kind"] == "ServiceAccount"]  # its own, bound to nothing
        (check,) = pod["spec"]["containers"]
        health = f"http://{release.fullname}-metrics.{release.namespace}.svc:8080/healthz"
        assert check["env"] == [{"name": "HEALTH_URL", "value": health}]
        assert check["command"][0] == "python3" and pod["spec"]["serviceAccountName"] == f"{release.fullname}-test"

        # What the kubelet would give the pod: the ServiceAccount's token and CA, the apiserver's address.
        account = tmp_path / "serviceaccount"
        account.mkdir()
        crds.kubectl("apply", "-f", "-", input=yaml.safe_dump(account_hook))  # as `helm test` creates it first
        test_account = account_hook["metadata"]["name"]
        token = crds.kubectl("create", "token", test_account, "-n", release.namespace, "--duration=1h")
        (account / "token").write_text(token.stdout.strip())
        (account / "ca.crt").write_bytes(crds.ca_file.read_bytes())
        server = urlsplit(crds.server)
        env = {
            "PATH": os.environ["PATH"],
            "HEALTH_URL": f"http://127.0.0.1:{release.metrics_port}/healthz",
            "KUBERNETES_SERVICE_HOST": server.hostname,
            "KUBERNETES_SERVICE_PORT": str(server.port),
            "SERVICE_ACCOUNT_DIR": str(account),
        }

        def run_check() -> subprocess.CompletedProcess:
            argv = [sys.executable, *check["command"][1:]]  # the image's python3: stdlib only
            return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)

        release.start(emulator)
        wait_for(release._serving, what="the operator's health server", details=release.logs)
        passed = run_check()
        assert passed.returncode == 0, passed.stdout + passed.stderr + release.logs()[-3000:]
        assert "ok   operator health" in passed.stdout
        assert "serves rtcrecordingclasses, rtcrecordings, rtcrecordingschedules" in passed.stdout

        for proc in release.procs:
            proc.stop()
        failed = run_check()
        assert failed.returncode != 0 and f"FAIL {env['HEALTH_URL']}" in failed.stderr
    finally:
        release.stop()
