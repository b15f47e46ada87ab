"""The oldest and the newest supported Kubernetes version (README, "Kubernetes versions"): the
operator and the receiver, as processes, against a control plane of that version, take a recording
to Recording and delete it cleanly. Every other integration test runs against the default version.
The receiver adopts a task whose Start answer is lost: its lookup by `status.taskId` needs the
CRD's selectable field on that version."""

from __future__ import annotations

import json
import uuid

import pytest

from rtc_recording.cluster import binaries
from rtc_recording.cluster.launcher import free_port
from rtc_recording.cluster.processes import RtcrecProcess, local_env, wait_for

from .conftest import ACCESS_KEY, AUTH_KEY, recording

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


@pytest.fixture(params=binaries.OTHER_KUBERNETES_VERSIONS)
def versioned(request, cluster_of, emulator, tmp_path):
    """(cluster of that version, its namespace, operator, receiver)."""
    cluster = cluster_of(request.param)
    cluster.apply_crds()
    namespace = f"v-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", namespace)
    env = local_env(
        cluster.kubeconfig,
        emulator.url,
        receiver_port=free_port(),
        metrics_port=free_port(),
        auth_key=AUTH_KEY,
        access_key=ACCESS_KEY,
        namespaces=namespace,
        unknown_outcome_grace_seconds=20,
        backoff_base_seconds=0.2,
        backoff_max_seconds=2,
        read_timeout_seconds=2,
    )
    receiver = RtcrecProcess("receiver", env, tmp_path / "receiver.log").start()
    operator = RtcrecProcess("run", env, tmp_path / "operator.log").start()
    try:
        yield cluster, namespace, operator, receiver
    finally:
        operator.stop()
        receiver.stop()


def test_apply_record_delete(versioned, emulator, channel):
    cluster, namespace, operator, receiver = versioned
    logs = lambda: f"--- operator\n{operator.output()[-3000:]}\n--- receiver\n{receiver.output()[-3000:]}"  # noqa: E731

    def status(name: str) -> dict:
        got = cluster.kubectl("get", "rtcrec", name, "-n", namespace, "-o", "json", check=False)
        return (json.loads(got.stdout).get("status") or {}) if got.returncode == 0 else {}

    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(recording("plain", channel)))
    plain = wait_for(
        lambda: (s := status("plain")).get("phase") == "Recording" and s, what="plain Recording", details=logs
    )
    assert [(t["taskId"], t["status"]) for t in emulator.control.tasks(channel_id=channel)] == [
        (plain["taskId"], "RUNNING")
    ]

    # The Start answer is lost: only the receiver, finding the resource by status.taskId, can adopt it.
    second = f"{channel}-lost"
    for user in ("alice", "bob"):
        emulator.control.join("demo-app", second, user)
    emulator.control.set_faults(drop_start_rate=1.0)
    try:
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(recording("adopted", second)))
        adopted = wait_for(
            lambda: (s := status("adopted")).get("phase") == "Recording" and s, what="adopted Recording", details=logs
        )
    finally:
        emulator.control.set_faults(drop_start_rate=0.0)
    assert "learned from its callback" in adopted.get("message", ""), adopted

    cluster.kubectl("delete", "rtcrec", "plain", "adopted", "-n", namespace, "--wait=true", "--timeout=60s")
    assert cluster.kubectl("get", "rtcrec", "-n", namespace, "-o", "name").stdout.strip() == ""
    for ch in (channel, second):  # stopped by the operator, one task each
        assert [t["status"] for t in emulator.control.tasks(channel_id=ch)] == ["STOPPED"], logs()
