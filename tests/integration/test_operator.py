"""From kubectl apply to TaskId in status to Stop on delete: the operator against real parts."""

import json
import urllib.error
import urllib.request

import pytest

from rtc_recording.api.names import STOP_FINALIZER

from .conftest import recording, wait_for

pytestmark = pytest.mark.cluster


def live(stack, channel):
    return [t for t in stack.tasks(channel) if t["status"] in ("RUNNING", "RECOVERING")]


def test_apply_records_and_delete_stops(stack, namespace, channel):
    stack.apply(namespace, recording("standup", channel))
    status = stack.wait_phase(namespace, "standup", "Recording")

    tasks = stack.tasks(channel)
    assert [t["taskId"] for t in tasks] == [status["taskId"]]
    assert tasks[0]["status"] == "RUNNING"
    assert status["observedGeneration"] == 1 and status["startTime"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    stack.wait_events(namespace, "standup", "Started")
    # The printer columns show what a person needs.
    row = stack.cluster.kubectl("get", "rtcrec", "standup", "-n", namespace).stdout
    assert channel in row and "Recording" in row and status["taskId"] in row

    stack.cluster.kubectl("delete", "rtcrec", "standup", "-n", namespace, "--wait=true", "--timeout=30s")
    assert stack.get(namespace, "standup") is None
    assert [t["status"] for t in stack.tasks(channel)] == ["STOPPED"]


def test_the_apiserver_puts_the_finalizer_on_and_the_operator_writes_none(stack, namespace, channel):
    """policies/ (applied with the CRDs on 1.36+): the finalizer comes with the create, so the
    operator's first write for a Start is its write-ahead. A finalizer patch of its own would own
    metadata.finalizers in managedFields (a merge patch records what it changed)."""
    stack.apply(namespace, recording("fenced", channel))
    stack.wait_phase(namespace, "fenced", "Recording")
    meta = stack.get(namespace, "fenced")["metadata"]
    assert meta["finalizers"] == [STOP_FINALIZER]
    owners = [m["manager"] for m in meta["managedFields"] if "f:finalizers" in m["fieldsV1"].get("f:metadata", {})]
    assert owners == []


def scrape(port: str, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_metrics_and_health_tell_what_happened(stack, namespace, channel):
    stack.apply(namespace, recording("observed", channel))
    stack.wait_phase(namespace, "observed", "Recording")
    code, health = scrape(stack.env["RTCREC_METRICS_PORT"], "/healthz")
    assert code == 200 and json.loads(health) == {"ok": True, "problems": []}
    _, text = scrape(stack.env["RTCREC_METRICS_PORT"], "/metrics")
    samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert float(samples['rtcrec_cloud_calls_total{code="OK",verb="start"}']) >= 1
    assert float(samples['rtcrec_recordings{phase="Recording"}']) >= 1
    assert float(samples['rtcrec_reconciles_total{action="start",outcome="ok"}']) >= 1
    assert "rtcrec_quota_wait_seconds_count" in samples


def test_subscriber_and_layout_edits_update_the_same_task(stack, namespace, channel):
    stack.emulator.control.join("demo-app", channel, "carol")
    stack.apply(namespace, recording("edits", channel))
    task_id = stack.wait_phase(namespace, "edits", "Recording")["taskId"]

    edited = recording(
        "edits",
        channel,
        subscribers=[{"userId": "alice"}, {"userId": "bob"}, {"userId": "carol"}],
        layout={"panes": [{"userId": "carol", "left": "0", "top": "0", "width": "1", "height": "1"}]},
    )
    stack.apply(namespace, edited)
    wait_for(lambda: stack.status(namespace, "edits").get("observedGeneration") == 2, what="generation 2 applied")

    tasks = stack.tasks(channel)
    assert [t["taskId"] for t in tasks] == [task_id]  # no restart, no duplicate
    assert tasks[0]["updates"] == 1
    assert {s["userId"] for s in tasks[0]["subscribers"]} == {"alice", "bob", "carol"}
    assert stack.status(namespace, "edits")["taskId"] == task_id


def test_unknown_app_fails_with_the_vendor_code_and_an_event(stack, namespace, channel):
    stack.apply(namespace, recording("wrong-app", channel, appId="no-such-app"))
    status = stack.wait_phase(namespace, "wrong-app", "Failed")
    assert status["reason"] == "InvalidParameter.AppId"
    assert "InvalidParameter.AppId" in next(c for c in status["conditions"] if c["type"] == "Ready")["message"]
    wait_for(
        lambda: any(
            e["type"] == "Warning" and "InvalidParameter.AppId" in e["message"]
            for e in stack.events(namespace, "wrong-app")
        ),
        timeout=15,
        what="a Warning Event with the vendor's code",
    )
    assert stack.tasks(channel) == []


def test_a_burst_of_5xx_is_survived_without_a_second_task(stack, namespace, channel):
    stack.emulator.control.set_faults(error_rates={"StartRtcCloudRecording": 1.0})
    stack.apply(namespace, recording("bursty", channel))
    wait_for(lambda: stack.status(namespace, "bursty").get("phase") == "Pending", what="a retried Start")
    stack.emulator.control.set_faults(error_rates={})
    status = stack.wait_phase(namespace, "bursty", "Recording")
    assert [t["taskId"] for t in stack.tasks(channel)] == [status["taskId"]]


def test_sigkill_mid_way_keeps_the_task_and_starts_no_second(stack, namespace, channel):
    # Slow answers so that the kill lands while Starts are in flight.
    stack.emulator.control.set_faults(latency_seconds=0.5)
    names = [f"crash-{i}" for i in range(4)]
    for name in names:
        stack.apply(namespace, recording(name, channel))
    wait_for(lambda: any(stack.status(namespace, n).get("attempt") for n in names), what="an attempt written")
    stack.operator.kill()
    stack.emulator.control.set_faults(latency_seconds=0)
    stack.operator.start()

    statuses = {n: stack.wait_phase(namespace, n, "Recording", timeout=60) for n in names}
    task_ids = {s["taskId"] for s in statuses.values()}
    assert len(task_ids) == len(names)
    # Every task the cloud runs for this channel belongs to a resource: no duplicate survived.
    wait_for(lambda: {t["taskId"] for t in live(stack, channel)} == task_ids, timeout=30, what="duplicates reaped")
    before = json.dumps(statuses, sort_keys=True)
    stack.operator.restart()  # a restart in a quiet moment changes nothing
    wait_for(lambda: all(stack.status(namespace, n).get("phase") == "Recording" for n in names), timeout=10)
    assert {stack.status(namespace, n)["taskId"] for n in names} == task_ids, before
