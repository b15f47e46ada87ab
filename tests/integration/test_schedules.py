"""RtcRecordingSchedule on the real apiserver and emulator.

The clock: the operator's is the wall clock, so these tests use a six-field schedule (seconds
first: a run every few seconds) to see several runs, and, for catch-up after a restart, a yearly
schedule whose last due time is certainly in the past, with status.lastScheduleTime moved back
while the operator is down (what an outage looks like to it). schedules.decide has its own unit
tests with an injected clock (tests/unit/test_schedules.py)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from itertools import pairwise

import pytest

from rtc_recording.api import names
from rtc_recording.decide import schedules

from .conftest import APP, RECORDINGS, recording, wait_for

pytestmark = pytest.mark.cluster


def schedule(name: str, channel: str, cron: str, **spec) -> dict:
    template = recording("unused", channel)["spec"]
    return {
        "apiVersion": "rtc.recording.io/v1alpha1",
        "kind": "RtcRecordingSchedule",
        "metadata": {"name": name},
        "spec": {"schedule": cron, "template": {"metadata": {"labels": {"team": "qa"}}, "spec": template}, **spec},
    }


def runs(stack, namespace: str, name: str) -> list[dict]:
    return stack.cluster.api.items(
        f"{RECORDINGS}/namespaces/{namespace}/rtcrecordings", labelSelector=f"{names.SCHEDULE_LABEL}={name}"
    )


def sched_status(stack, namespace: str, name: str) -> dict:
    return (
        stack.cluster.api.request("GET", f"{RECORDINGS}/namespaces/{namespace}/rtcrecordingschedules/{name}").get(
            "status"
        )
        or {}
    )


def test_a_schedule_runs_every_few_seconds_and_replace_stops_the_previous_run(stack, namespace, channel, emulator):
    stack.apply(namespace, schedule("often", channel, "*/3 * * * * *", concurrencyPolicy="Replace"))
    wait_for(
        lambda: len(stack.tasks(channel)) >= 3,
        timeout=60,
        what="three runs",
        details=lambda: stack.operator.output()[-3000:],
    )
    stack.cluster.kubectl(
        "patch", "rtcrecsched", "often", "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":true}}'
    )
    wait_for(lambda: len(stack.tasks(channel, status="RUNNING")) <= 1, timeout=30, what="replaced runs stopped")
    # The runs' stops and the scheduler's decision on the suspend race: wait for the suspended status.
    status = wait_for(
        lambda: "nextScheduleTime" not in (s := sched_status(stack, namespace, "often")) and s,
        timeout=15,
        what="the schedule suspended",
    )
    assert status["lastScheduleTime"]
    for run in runs(stack, namespace, "often"):
        at = run["metadata"]["annotations"][names.SCHEDULED_AT_ANNOTATION]
        unix = int(datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp())
        assert run["metadata"]["name"] == f"often-{unix}" and unix % 3 == 0
        assert run["metadata"]["labels"]["team"] == "qa"
        (owner,) = run["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["controller"]) == ("RtcRecordingSchedule", "often", True)
    task_ids = {t["taskId"] for t in stack.tasks(channel)}
    assert len(task_ids) >= 3 and len(stack.tasks(channel, status="RUNNING")) <= 1
    stack.wait_events(namespace, "often", "Started")


def test_forbid_waits_for_each_run_and_history_limits_delete_old_ones(stack, namespace, emulator):
    channel = f"quiet-{namespace}"
    emulator.control.join(APP, channel, "alice", publish=False)  # nobody publishes: each run idles out
    sched = schedule("idle", channel, "*/2 * * * * *", successfulRunsHistoryLimit=2)
    sched["spec"]["template"]["spec"]["maxIdleSeconds"] = 10  # 1/3 s at the emulator's scale
    stack.apply(namespace, sched)
    wait_for(
        lambda: len(emulator.control.tasks(app_id=APP, channel_id=channel)) >= 4,
        timeout=90,
        what="four runs, one after another",
        details=lambda: stack.operator.output()[-3000:],
    )
    tasks = emulator.control.tasks(app_id=APP, channel_id=channel)
    # Forbid: never two at once
    spans = sorted((t["createdAt"], t["stoppedAt"] or float("inf")) for t in tasks)
    assert all(a[1] <= b[0] for a, b in pairwise(spans)), spans

    # A run that has just completed is pruned at the schedule's next decision, so three can be seen for a moment;
    # fewer runs than tasks proves old ones were deleted.
    def pruned():
        found = runs(stack, namespace, "idle")
        completed = [r for r in found if (r.get("status") or {}).get("phase") == "Completed"]
        return len(completed) <= 2 and len(found) < len(tasks)

    wait_for(pruned, timeout=15, what="completed runs beyond the history limit deleted")
    stack.cluster.kubectl("delete", "rtcrecsched", "idle", "-n", namespace)


def test_catch_up_after_a_restart_runs_once_and_a_repeated_create_is_no_second_run(stack, namespace, channel):
    stack.apply(namespace, schedule("yearly", channel, "0 0 1 1 *"))
    wait_for(lambda: sched_status(stack, namespace, "yearly").get("nextScheduleTime"), timeout=30, what="decided")
    assert runs(stack, namespace, "yearly") == []  # created after this year's 1 January: nothing due
    now = datetime.now(UTC)
    due = datetime(now.year, 1, 1, tzinfo=UTC)
    stack.operator.kill()
    try:
        # Down since before 1 January: this year's run is due. The operator had created it and died before
        # writing lastScheduleTime: the create is repeated after the restart, and answered 409.
        stack.cluster.kubectl(
            "patch",
            "rtcrecsched",
            "yearly",
            "-n",
            namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps(
                {
                    "status": {
                        "lastScheduleTime": f"{now.year - 2}-01-01T00:00:00Z",
                        "nextScheduleTime": f"{now.year - 1}-01-01T00:00:00Z",
                    }
                }
            ),
        )
        sched = json.loads(stack.cluster.kubectl("get", "rtcrecsched", "yearly", "-n", namespace, "-o", "json").stdout)
        body = schedules.recording_for(sched, due)
        stack.cluster.kubectl("create", "-f", "-", input=json.dumps(body))
    finally:
        stack.operator.start()
    wait_for(
        lambda: sched_status(stack, namespace, "yearly").get("lastScheduleTime") == f"{now.year}-01-01T00:00:00Z",
        timeout=30,
        what="caught up",
        details=lambda: stack.operator.output()[-3000:],
    )
    stack.wait_phase(namespace, schedules.run_name("yearly", due), "Recording")
    assert [r["metadata"]["name"] for r in runs(stack, namespace, "yearly")] == [schedules.run_name("yearly", due)]
    assert len(stack.tasks(channel)) == 1
    status = sched_status(stack, namespace, "yearly")
    assert status["active"][0]["name"] == schedules.run_name("yearly", due)
    assert status["nextScheduleTime"] == f"{now.year + 1}-01-01T00:00:00Z"
    # kubectl shows a future time as it is (a "date" column would say <invalid>: it shows times since).
    shown = stack.cluster.kubectl("get", "rtcrecsched", "yearly", "-n", namespace).stdout
    assert f"{now.year + 1}-01-01T00:00:00Z" in shown and "<invalid>" not in shown


def test_a_run_past_its_starting_deadline_is_missed(stack, namespace, channel):
    stack.apply(namespace, schedule("strict", channel, "0 0 1 1 *", startingDeadlineSeconds=60))
    wait_for(lambda: sched_status(stack, namespace, "strict").get("nextScheduleTime"), timeout=30, what="decided")
    year = datetime.now(UTC).year
    stack.cluster.kubectl(
        "patch",
        "rtcrecsched",
        "strict",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"lastScheduleTime": f"{year - 2}-01-01T00:00:00Z", "observedGeneration": 0}}),
    )
    status = wait_for(
        lambda: (
            (s := sched_status(stack, namespace, "strict")).get("lastScheduleTime") == f"{year}-01-01T00:00:00Z" and s
        ),
        timeout=30,
        what="the missed run given up",
    )
    assert "startingDeadlineSeconds" in status["message"]
    assert runs(stack, namespace, "strict") == [] and stack.tasks(channel) == []


@pytest.fixture
def garbage_collector(crds):
    """kube-controller-manager's garbage collector (the real one) on the test apiserver: what deletes a
    deleted schedule's RtcRecordings through their ownerReferences."""
    crds.start_controllers("garbagecollector")
    return crds


def running_runs(stack, namespace: str, name: str) -> list[dict]:
    return [r for r in runs(stack, namespace, name) if (r.get("status") or {}).get("phase") == "Recording"]


@pytest.mark.parametrize("cascade", ["background", "foreground"])
def test_deleting_a_schedule_deletes_its_runs_and_stops_their_tasks(
    stack, garbage_collector, namespace, channel, emulator, cascade
):
    """Kubernetes' garbage collector deletes the runs (ownerReferences); the operator stops each run's
    task before its finalizer lets the run go. Background: the schedule goes at once, its runs after;
    foreground: the schedule goes only after its runs (blockOwnerDeletion)."""
    stack.apply(namespace, schedule("cascade", channel, "*/2 * * * * *", concurrencyPolicy="Allow"))
    recording_runs = wait_for(
        lambda: len(r := running_runs(stack, namespace, "cascade")) >= 2 and r,
        timeout=60,
        what="two runs recording at once",
        details=lambda: stack.operator.output()[-3000:],
    )
    started = {r["status"]["taskId"] for r in recording_runs}
    assert {t["taskId"] for t in stack.tasks(channel, status="RUNNING")} >= started
    stack.cluster.kubectl(
        "delete", "rtcrecsched", "cascade", "-n", namespace, f"--cascade={cascade}", "--wait=true", "--timeout=60s"
    )
    if cascade == "foreground":
        # The schedule was kept until the collector had deleted its runs, and a run goes only once the
        # operator has stopped its task: nothing of it is left by now.
        assert runs(stack, namespace, "cascade") == []
        assert not started & {t["taskId"] for t in stack.tasks(channel, status="RUNNING")}
    wait_for(
        lambda: runs(stack, namespace, "cascade") == [],
        timeout=60,
        what="the garbage collector to delete the runs",
        details=lambda: stack.operator.output()[-3000:],
    )
    # Every task of the channel: also of a run created while the schedule was being deleted.
    wait_for(
        lambda: all(t["status"] == "STOPPED" for t in stack.tasks(channel)),
        timeout=30,
        what="every run's task STOPPED",
        details=lambda: json.dumps(stack.tasks(channel))[-2000:],
    )
    tasks = stack.tasks(channel)
    assert started <= {t["taskId"] for t in tasks} and len(tasks) >= 2
    assert stack.cluster.kubectl("get", "rtcrecsched", "cascade", "-n", namespace, check=False).returncode != 0


def test_kubectl_wait_reads_a_schedules_ready_condition_and_the_not_ready_reason(stack, namespace, channel):
    """Ready=False while the template's class is missing (ClassNotFound, shown by kubectl get), True once
    it exists; the class is in use while the schedule names it; a time zone croniter cannot read is
    Ready=False and Stalled (InvalidSchedule)."""
    kubectl = stack.cluster.kubectl
    klass = f"later-{uuid.uuid4().hex[:6]}"
    yearly = schedule("yearly", channel, "0 0 1 1 *")
    yearly["spec"]["template"]["spec"]["recordingClassName"] = klass
    stack.apply(namespace, yearly)
    kubectl("wait", "rtcrecsched/yearly", "-n", namespace, "--for=condition=Ready=false", "--timeout=30s")
    shown = kubectl("get", "rtcrecsched", "yearly", "-n", namespace, "-o", READY_REASON).stdout
    assert shown.startswith(f"ClassNotFound: RtcRecordingClass {klass} (spec.template.spec.recordingClassName)")
    header, row = kubectl("get", "rtcrecsched", "yearly", "-n", namespace).stdout.splitlines()
    assert header.split()[:3] == ["NAME", "READY", "SCHEDULE"] and row.split()[:2] == ["yearly", "False"]
    body = {
        "apiVersion": "rtc.recording.io/v1alpha1",
        "kind": "RtcRecordingClass",
        "metadata": {"name": klass},
        "spec": {"namespaceSelector": {}},
    }
    kubectl("apply", "-f", "-", input=json.dumps(body))
    try:
        kubectl("wait", "rtcrecsched/yearly", "-n", namespace, "--for=condition=Ready", "--timeout=30s")
        kubectl("wait", f"rtcrecclass/{klass}", "--for=condition=Ready", "--timeout=30s")
        kubectl("wait", f"rtcrecclass/{klass}", "--for=jsonpath={.status.inUse}=true", "--timeout=30s")
        kubectl("delete", "rtcrecsched", "yearly", "-n", namespace)
        kubectl("wait", f"rtcrecclass/{klass}", "--for=jsonpath={.status.inUse}=false", "--timeout=30s")
    finally:
        kubectl("delete", "rtcrecclass", klass, "--wait=false")
    stack.apply(namespace, schedule("martian", channel, "0 0 1 1 *", timeZone="Mars/Olympus_Mons"))
    kubectl("wait", "rtcrecsched/martian", "-n", namespace, "--for=condition=Stalled", "--timeout=30s")
    shown = kubectl("get", "rtcrecsched", "martian", "-n", namespace, "-o", READY_REASON).stdout
    assert shown == "InvalidSchedule: spec.timeZone 'Mars/Olympus_Mons' is not a time zone name (such as Europe/Berlin)"


READY_REASON = (
    'jsonpath={.status.conditions[?(@.type=="Ready")].reason}: {.status.conditions[?(@.type=="Ready")].message}'
)
