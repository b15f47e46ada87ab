"""Real parts only: the local kube-apiserver, the emulator on loopback, and the operator and
callback receiver as separate processes (so they can be SIGKILLed)."""

from __future__ import annotations

import json
import secrets
import uuid

import pytest

from rtc_recording.cluster.launcher import free_port
from rtc_recording.cluster.processes import RtcrecProcess, local_env, wait_for
from rtc_recording.emulator import EmulatorConfig, run_in_thread

APP = "demo-app"
BUCKET = "demo-recordings"
ACCESS_KEY = ("LTAI5tOperatorTest", "operator-test-secret")
AUTH_KEY = "receiverKey" + secrets.token_hex(8)
OWNERSHIP_KEY = "ownershipKey" + secrets.token_hex(16)
RECORDINGS = "/apis/rtc.recording.io/v1alpha1"
# Emulated minutes pass in real seconds: MaxIdleTime 60 s takes 2 s.
TIME_SCALE = 30


@pytest.fixture(scope="session")
def emulator():
    config = EmulatorConfig(
        access_keys=dict([ACCESS_KEY]), apps={APP}, oss_buckets={BUCKET}, time_scale=TIME_SCALE, seed=7
    )
    with run_in_thread(config) as handle:
        yield handle


@pytest.fixture(autouse=True)
def _calm_emulator(request):
    """Faults set by one test never leak into the next."""
    yield
    if "emulator" in request.fixturenames:
        request.getfixturevalue("emulator").control.set_faults(
            latency_seconds=0, error_rates={}, drop_start_rate=0, callbacks=True
        )


@pytest.fixture(scope="session")
def crds(cluster):
    cluster.apply_crds()
    return cluster


@pytest.fixture(scope="package")
def stack(crds, emulator, tmp_path_factory):
    """Operator + receiver, shared by the integration tests (each test uses its own namespace).
    Package scope: a cluster-wide operator must be gone before other packages' tests run theirs."""
    logs = tmp_path_factory.mktemp("logs")
    env = local_env(
        crds.kubeconfig,
        emulator.url,
        receiver_port=free_port(),
        metrics_port=free_port(),
        auth_key=AUTH_KEY,
        access_key=ACCESS_KEY,
        unknown_outcome_grace_seconds=3,
        poll_interval_seconds=2,
        poll_factor_with_callbacks=1,
        backoff_base_seconds=0.2,
        backoff_max_seconds=2,
        participant_retry_seconds=1,
        read_timeout_seconds=2,
        ownership_key=OWNERSHIP_KEY,
        relay_allowed_hosts="127.0.0.1",  # loopback is refused unless allowed
        receiver_read_timeout_seconds=2,
        # A stable identity, as a pod's name is: a restart (SIGKILL, then the same
        # "pod" again) takes its own Lease back at once instead of waiting it out.
        pod_name="operator",
    )
    receiver_env = {k: v for k, v in env.items() if k != "RTCREC_OWNERSHIP_KEY"}  # the operator's alone
    receiver = RtcrecProcess("receiver", receiver_env, logs / "receiver.log").start()
    operator = RtcrecProcess("run", env, logs / "operator.log").start()
    try:
        yield Stack(crds, emulator, operator, receiver, env)
    finally:
        operator.stop()
        receiver.stop()


class Stack:
    def __init__(self, cluster, emulator, operator: RtcrecProcess, receiver: RtcrecProcess, env: dict[str, str]):
        self.cluster, self.emulator, self.operator, self.receiver, self.env = (
            cluster,
            emulator,
            operator,
            receiver,
            env,
        )

    def apply(self, namespace: str, manifest: dict) -> None:
        self.cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))

    def get(self, namespace: str, name: str) -> dict | None:
        return self.cluster.api.get(f"{RECORDINGS}/namespaces/{namespace}/rtcrecordings/{name}")

    def evidence(self) -> list[dict]:
        """The receiver's evidence ConfigMaps (in the operator's namespace: default, run locally)."""
        return self.cluster.api.items(
            "/api/v1/namespaces/default/configmaps", labelSelector="rtc.recording.io/evidence"
        )

    def status(self, namespace: str, name: str) -> dict:
        return (self.get(namespace, name) or {}).get("status") or {}

    def wait_phase(self, namespace: str, name: str, phase: str, timeout: float = 30) -> dict:
        return wait_for(
            lambda: (s := self.status(namespace, name)).get("phase") == phase and s,
            timeout,
            what=f"{namespace}/{name} phase {phase}",
            details=lambda: self.operator.output()[-3000:],
        )

    def events(self, namespace: str, name: str) -> list[dict]:
        return self.cluster.api.items(
            f"/api/v1/namespaces/{namespace}/events", fieldSelector=f"involvedObject.name={name}"
        )

    def wait_events(self, namespace: str, name: str, reason: str, timeout: float = 15) -> list[dict]:
        """The Events of that reason, once there is one: the operator posts an Event after the
        status write that names it, so a status seen does not mean its Event is there yet."""
        return wait_for(
            lambda: [e for e in self.events(namespace, name) if e["reason"] == reason],
            timeout,
            what=f"a {reason} Event of {namespace}/{name}",
        )

    def tasks(self, channel: str, status: str | None = None) -> list[dict]:
        return self.emulator.control.tasks(app_id=APP, channel_id=channel, status=status)


@pytest.fixture
def namespace(crds):
    name = f"t-{uuid.uuid4().hex[:8]}"
    crds.kubectl("create", "namespace", name)
    return name


@pytest.fixture
def channel(emulator):
    """A fresh channel with two users publishing camera audio+video."""
    name = f"room-{uuid.uuid4().hex[:8]}"
    for user in ("alice", "bob"):
        emulator.control.join(APP, name, user)
    return name


def recording(name: str, channel: str, **spec) -> dict:
    """A minimal mixed recording to OSS, the shape of examples/minimal-mixed-oss.yaml."""
    base = {
        "appId": APP,
        "channelId": channel,
        "mode": "Mixed",
        "maxIdleSeconds": 60,
        "subscribers": [{"userId": "alice"}, {"userId": "bob"}],
        "storage": {"oss": {"endpoint": "oss-cn-shanghai.aliyuncs.com", "bucket": BUCKET}},
        "transcode": {
            "audioBitrateKbps": 64,
            "audioChannels": 2,
            "audioSampleRateHz": 48000,
            "videoBitrateKbps": 1500,
            "videoFramerate": 25,
            "videoGop": 50,
            "videoWidth": 1280,
            "videoHeight": 720,
        },
        "layout": {
            "panes": [
                {"userId": "alice", "left": "0", "top": "0", "width": "0.5", "height": "1"},
                {"userId": "bob", "left": "0.5", "top": "0", "width": "0.5", "height": "1"},
            ]
        },
    }
    base.update(spec)
    return {"apiVersion": "rtc.recording.io/v1alpha1", "kind": "RtcRecording", "metadata": {"name": name}, "spec": base}


# -- helpers of test_restart_at_scale.py and test_chaos.py ----------------------------------------
def metric_total(port: int | str, name: str, **labels: str) -> float:
    """Sum of a metric's samples at http://127.0.0.1:port/metrics whose labels include `labels`."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            head, value = line.rsplit(" ", 1)
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                total += float(value)
    return total


def apply_many(stack: Stack, namespace: str, manifests: list[dict]) -> None:
    stack.cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests})
    )


def one_user_recording(name: str, channel: str) -> dict:
    """One publisher, one pane: the cheapest recording to make by the hundred."""
    return recording(
        name,
        channel,
        subscribers=[{"userId": "alice"}],
        layout={"panes": [{"userId": "alice", "left": "0", "top": "0", "width": "1", "height": "1"}]},
    )


def items(stack: Stack, namespace: str) -> list[dict]:
    return stack.cluster.api.items(f"{RECORDINGS}/namespaces/{namespace}/rtcrecordings")
