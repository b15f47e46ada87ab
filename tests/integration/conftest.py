"""Real parts only: the local kube-apiserver, the emulator on loopback, and the operator and
callback receiver as separate processes (so they can be SIGKILLed)."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from rtc_recording.cluster.launcher import free_port
from rtc_recording.emulator import EmulatorConfig, run_in_thread

APP = "demo-app"
BUCKET = "demo-recordings"
ACCESS_KEY = ("LTAI5tOperatorTest", "operator-test-secret")
AUTH_KEY = "receiverKey" + secrets.token_hex(8)
# Emulated minutes pass in real seconds: MaxIdleTime 60 s takes 2 s.
TIME_SCALE = 30
RTCREC = str(Path(sys.executable).with_name("rtcrec"))


def wait_for(predicate, timeout: float = 30, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last value: {last!r}")


class Process:
    """`rtcrec <command>` as a child process in its own session, killable like in production."""

    def __init__(self, command: str, env: dict[str, str], log: Path):
        self.command, self.env, self.log = command, env, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Process":
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([RTCREC, self.command], env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        return self

    def kill(self) -> None:
        """SIGKILL: no cleanup, no final patch, exactly like an OOM kill."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> None:
        self.kill()
        self.start()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="session")
def emulator():
    config = EmulatorConfig(access_keys=dict([ACCESS_KEY]), apps={APP}, oss_buckets={BUCKET},
                            time_scale=TIME_SCALE, seed=7)
    with run_in_thread(config) as handle:
        yield handle


@pytest.fixture(autouse=True)
def _calm_emulator(request):
    """Faults set by one test never leak into the next."""
    yield
    if "emulator" in request.fixturenames:
        request.getfixturevalue("emulator").control.set_faults(
            latency_seconds=0, error_rates={}, drop_start_rate=0, callbacks=True)


@pytest.fixture(scope="session")
def crds(cluster):
    cluster.apply_crds()
    return cluster


def operator_env(cluster, emulator, receiver_port: int, **settings) -> dict[str, str]:
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        "ALIBABA_CLOUD_ACCESS_KEY_ID": ACCESS_KEY[0],
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": ACCESS_KEY[1],
        "RTCREC_ENDPOINT": emulator.url,
        "RTCREC_CALLBACK_URL": f"http://127.0.0.1:{receiver_port}",
        "RTCREC_CALLBACK_AUTH_KEY": AUTH_KEY,
        "RTCREC_RECEIVER_PORT": str(receiver_port),
        "RTCREC_METRICS_PORT": str(free_port()),
        "RTCREC_UNKNOWN_OUTCOME_GRACE_SECONDS": "3",
        "RTCREC_POLL_INTERVAL_SECONDS": "2",
        "RTCREC_BACKOFF_BASE_SECONDS": "0.2",
        "RTCREC_BACKOFF_MAX_SECONDS": "2",
        "RTCREC_READ_TIMEOUT_SECONDS": "2",
    }
    env.update({f"RTCREC_{k.upper()}": str(v) for k, v in settings.items()})
    return env


@pytest.fixture(scope="session")
def stack(crds, emulator, tmp_path_factory):
    """Operator + receiver, shared by the integration tests (each test uses its own namespace)."""
    logs = tmp_path_factory.mktemp("logs")
    env = operator_env(crds, emulator, free_port())
    receiver = Process("receiver", env, logs / "receiver.log").start()
    operator = Process("run", env, logs / "operator.log").start()
    try:
        yield Stack(crds, emulator, operator, receiver, env)
    finally:
        operator.stop()
        receiver.stop()


class Stack:
    def __init__(self, cluster, emulator, operator: Process, receiver: Process, env: dict[str, str]):
        self.cluster, self.emulator, self.operator, self.receiver, self.env = (
            cluster, emulator, operator, receiver, env)

    def apply(self, namespace: str, manifest: dict) -> None:
        self.cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))

    def get(self, namespace: str, name: str) -> dict | None:
        got = self.cluster.kubectl("get", "rtcrec", name, "-n", namespace, "-o", "json", check=False)
        return json.loads(got.stdout) if got.returncode == 0 else None

    def status(self, namespace: str, name: str) -> dict:
        return (self.get(namespace, name) or {}).get("status") or {}

    def wait_phase(self, namespace: str, name: str, phase: str, timeout: float = 30) -> dict:
        return wait_for(lambda: (s := self.status(namespace, name)).get("phase") == phase and s, timeout,
                        what=f"{namespace}/{name} phase {phase} (operator log tail:\n{self.operator.output()[-3000:]})")

    def events(self, namespace: str, name: str) -> list[dict]:
        got = self.cluster.kubectl("get", "events", "-n", namespace, "-o", "json",
                                   f"--field-selector=involvedObject.name={name}")
        return json.loads(got.stdout)["items"]

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
        "appId": APP, "channelId": channel, "mode": "Mixed", "maxIdleSeconds": 60,
        "subscribers": [{"userId": "alice"}, {"userId": "bob"}],
        "storage": {"oss": {"endpoint": "oss-cn-shanghai.aliyuncs.com", "bucket": BUCKET}},
        "transcode": {"audioBitrateKbps": 64, "audioChannels": 2, "audioSampleRateHz": 48000,
                      "videoBitrateKbps": 1500, "videoFramerate": 25, "videoGop": 50,
                      "videoWidth": 1280, "videoHeight": 720},
        "layout": {"panes": [{"userId": "alice", "left": "0", "top": "0", "width": "0.5", "height": "1"},
                             {"userId": "bob", "left": "0.5", "top": "0", "width": "0.5", "height": "1"}]},
    }
    base.update(spec)
    return {"apiVersion": "rtc.recording.io/v1alpha1", "kind": "RtcRecording", "metadata": {"name": name},
            "spec": base}
