"""`rtcrec cluster up|env|down` as a person uses it, and teardown that leaves nothing behind."""

import json
import os
import subprocess

import pytest

from rtc_recording.cluster.launcher import alive
from rtc_recording.cluster.processes import RTCREC

pytestmark = pytest.mark.cluster


def rtcrec(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([RTCREC, *args], capture_output=True, text=True, timeout=180)


def test_up_env_down_leaves_no_process_and_no_file(tmp_path):
    state = tmp_path / "cluster"
    up = rtcrec("cluster", "up", "--dir", str(state))
    assert up.returncode == 0, up.stderr
    exports = dict(
        line.removeprefix("export ").split("=", 1) for line in up.stdout.splitlines() if line.startswith("export ")
    )
    kubectl = next(line.split("=", 1)[1] for line in up.stdout.splitlines() if line.startswith("alias kubectl="))
    pids = json.loads((state / "cluster.json").read_text())["pids"]
    try:
        namespaces = subprocess.run(
            [kubectl, "get", "namespaces", "-o", "name"],
            capture_output=True,
            text=True,
            env={**os.environ, **exports},
            check=True,
        ).stdout
        assert "namespace/kube-system" in namespaces
        assert rtcrec("cluster", "up", "--dir", str(state)).returncode == 1  # one at a time
        assert rtcrec("cluster", "env", "--dir", str(state)).stdout.startswith(f"export KUBECONFIG={state}")
    finally:
        down = rtcrec("cluster", "down", "--dir", str(state))
    assert down.returncode == 0, down.stderr
    assert not any(alive(pid) for pid in pids.values())
    assert not state.exists()
