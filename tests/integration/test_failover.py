"""Active/standby (docs/ha.md): two operator replicas, the active one SIGKILLed during a burst of
creates. Every resource reaches Recording with exactly one live task, and the standby, which did
nothing before, took over. How long that takes is measured by benchmarks/failover.py, not here."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from rtc_recording.cluster.launcher import free_port
from rtc_recording.cluster.processes import RtcrecProcess

from .conftest import APP, recording, wait_for

pytestmark = pytest.mark.cluster

LEASE = ("default", "rtc-recording-operator")  # the default Lease of a local `rtcrec run`


def metric(port: int, name: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include `labels` (0 when none)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")):
            head, value = line.rsplit(" ", 1)
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                total += float(value)
    return total


def families(port: int) -> set[str]:
    """The metric families /metrics describes."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return {line.split()[2] for line in resp.read().decode().splitlines() if line.startswith("# TYPE")}


def healthz(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            return json.loads(resp.read())
    except (urllib.error.URLError, ConnectionError):
        return None


def lease(stack) -> dict:
    got = stack.cluster.api.get(f"/apis/coordination.k8s.io/v1/namespaces/{LEASE[0]}/leases/{LEASE[1]}")
    return (got or {}).get("spec") or {}


class Replica(RtcrecProcess):
    def __init__(self, stack, name: str, tmp_path):
        self.name, self.port = name, free_port()
        super().__init__(
            "run",
            {**stack.env, "RTCREC_POD_NAME": name, "RTCREC_METRICS_PORT": str(self.port)},
            tmp_path / f"{name}.log",
        )


@pytest.fixture
def pair(stack, tmp_path):
    """The shared operator stopped (it releases the Lease), two replicas in its place."""
    stack.operator.stop()
    a, b = Replica(stack, "replica-a", tmp_path), Replica(stack, "replica-b", tmp_path)
    try:
        a.start()
        wait_for(lambda: lease(stack).get("holderIdentity") == a.name, what="replica-a leading", details=a.output)
        b.start()
        # /healthz listens before the standby's first read of the Lease: wait until it names the leader.
        wait_for(
            lambda: (healthz(b.port) or {}).get("leader") == a.name, what="replica-b standing by", details=b.output
        )
        yield a, b
    finally:
        a.stop()
        b.stop()
        stack.operator.start()


@pytest.mark.slow  # a burst of 30 across a SIGKILL and a whole lease duration
def test_the_standby_takes_over_a_burst_from_a_killed_active_replica(stack, namespace, emulator, pair):
    active, standby = pair
    transitions = lease(stack).get("leaseTransitions", 0)
    names = [f"burst-{i}" for i in range(30)]
    for name in names:
        emulator.control.join(APP, f"{name}-{namespace}", "alice")

    def manifest(name: str) -> dict:
        return recording(
            name,
            f"{name}-{namespace}",
            subscribers=[{"userId": "alice"}],
            layout={"panes": [{"userId": "alice", "left": "0", "top": "0", "width": "1", "height": "1"}]},
        )

    def statuses() -> dict[str, dict]:  # one request: the kill must land within the delay below
        got = stack.cluster.kubectl("get", "rtcrec", "-n", namespace, "-o", "json")
        return {i["metadata"]["name"]: i.get("status") or {} for i in json.loads(got.stdout)["items"]}

    # Slow answers (executed all the same, after the delay), so the kill lands on Starts in flight.
    emulator.control.set_faults(latency_seconds=1.5)
    stack.cluster.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [manifest(n) for n in names[:10]]}),
    )
    wait_for(
        lambda: any(s.get("attempt") for s in statuses().values()),
        what="an attempt written",
        details=active.output,
        interval=0.05,
    )
    # The standby has done nothing so far: no cloud call (so no poller), no Lease.
    assert metric(standby.port, "rtcrec_cloud_calls_total") == 0
    assert metric(standby.port, "rtcrec_leader") == 0 and metric(active.port, "rtcrec_leader") == 1
    active.kill()
    in_flight = [n for n, s in statuses().items() if s.get("attempt") and not s.get("taskId")]
    emulator.control.set_faults(latency_seconds=0)
    for name in names[10:]:  # created while nobody leads, then while the standby takes over
        stack.apply(namespace, manifest(name))

    statuses = {n: stack.wait_phase(namespace, n, "Recording", timeout=90) for n in names}
    assert in_flight, "the kill found no Start in flight: this test proved less than it claims"
    for name, status in statuses.items():
        channel = f"{name}-{namespace}"
        wait_for(
            lambda channel=channel, status=status: (
                [t["taskId"] for t in stack.tasks(channel) if t["status"] in ("RUNNING", "RECOVERING")]
                == [status["taskId"]]
            ),
            timeout=30,
            what=f"exactly one live task for {name}",
        )
    # The standby took over: it holds the Lease, and it started every resource created after the kill.
    spec = lease(stack)
    assert spec["holderIdentity"] == standby.name and spec["leaseTransitions"] == transitions + 1
    assert metric(standby.port, "rtcrec_leader") == 1
    assert metric(standby.port, "rtcrec_cloud_calls_total", verb="start", code="OK") >= len(names[10:])
    assert "leading as replica-b: took over from replica-a" in standby.output()


def test_a_standby_stops_cleanly_without_acting(stack, pair):
    """It serves /healthz as a standby, naming the leader, and SIGTERM ends it without acting."""
    active, standby = pair
    assert healthz(standby.port) == {"ok": True, "problems": [], "standby": True, "leader": active.name}
    # It says what runs and that it stands by, and counts no recordings: it holds none (the active one does).
    assert {"rtcrec_build_info", "rtcrec_leader"} <= families(standby.port)
    assert not {"rtcrec_recordings", "rtcrec_recordings_synced"} & families(standby.port)
    assert {"rtcrec_recordings", "rtcrec_recordings_synced"} <= families(active.port)
    standby.stop()
    assert standby.proc.returncode == 0, standby.output()[-3000:]
    assert "leading as" not in standby.output()
