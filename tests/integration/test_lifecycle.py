"""Lifecycle controls on the real apiserver and emulator: suspend/resume, maxDurationSeconds,
deletionPolicy Orphan, ttlSecondsAfterFinished, adopting a running task.

The operator's due times are computed from status.startTime and status.completionTime, never
from when it saw an object. So instead of waiting real minutes these tests move those
timestamps into the past (the clock the decision reads), which is also what a restart in the
middle of a maxDuration or a TTL looks like to the operator.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from .conftest import APP, recording, wait_for

pytestmark = pytest.mark.cluster


def ago(seconds: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def patch(stack, namespace: str, name: str, body: dict, status: bool = False) -> None:
    stack.cluster.kubectl(
        "patch",
        "rtcrec",
        name,
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps(body),
        *(["--subresource=status"] if status else []),
    )


def stopped(emulator, task_id: str) -> None:
    """Stopped by the operator: the cloud passes through STOPPING first."""
    wait_for(lambda: emulator.control.task(task_id)["status"] == "STOPPED", timeout=15, what=f"{task_id} STOPPED")


def test_suspend_stops_the_task_and_resume_starts_a_new_one(stack, namespace, channel, emulator):
    stack.apply(namespace, recording("pausable", channel))
    first = stack.wait_phase(namespace, "pausable", "Recording")["taskId"]
    patch(stack, namespace, "pausable", {"spec": {"suspend": True}})
    status = stack.wait_phase(namespace, "pausable", "Suspended")
    assert status.get("taskId") is None and status["history"][-1]["taskId"] == first
    assert status["history"][-1]["reason"] == "Suspended"
    stopped(emulator, first)
    patch(stack, namespace, "pausable", {"spec": {"suspend": False}})
    status = stack.wait_phase(namespace, "pausable", "Recording")
    assert status["taskId"] != first
    assert [t["taskId"] for t in stack.tasks(channel, status="RUNNING")] == [status["taskId"]]
    stack.wait_events(namespace, "pausable", "Suspended")


def test_created_suspended_starts_nothing(stack, namespace, channel):
    stack.apply(namespace, recording("later", channel, suspend=True))
    stack.wait_phase(namespace, "later", "Suspended")
    assert stack.tasks(channel) == []


def test_max_duration_stops_the_task(stack, namespace, channel, emulator):
    stack.apply(namespace, recording("bounded", channel, maxDurationSeconds=60))
    task_id = stack.wait_phase(namespace, "bounded", "Recording")["taskId"]
    patch(stack, namespace, "bounded", {"status": {"startTime": ago(58)}}, status=True)  # 2 s to go
    status = stack.wait_phase(namespace, "bounded", "Completed", timeout=20)
    assert (status["reason"], status["taskId"]) == ("MaxDuration", task_id)
    stopped(emulator, task_id)
    stack.wait_events(namespace, "bounded", "MaxDuration")


def test_max_duration_that_passed_while_the_operator_was_down(stack, namespace, channel, emulator):
    stack.apply(namespace, recording("overdue", channel, maxDurationSeconds=60))
    task_id = stack.wait_phase(namespace, "overdue", "Recording")["taskId"]
    stack.operator.kill()
    try:
        patch(stack, namespace, "overdue", {"status": {"startTime": ago(120)}}, status=True)
    finally:
        stack.operator.start()
    status = stack.wait_phase(namespace, "overdue", "Completed", timeout=30)
    assert (status["reason"], status["taskId"]) == ("MaxDuration", task_id)
    stopped(emulator, task_id)


def test_orphan_leaves_the_task_running(stack, namespace, channel, emulator):
    stack.apply(namespace, recording("left", channel, deletionPolicy="Orphan"))
    task_id = stack.wait_phase(namespace, "left", "Recording")["taskId"]
    stack.cluster.kubectl("delete", "rtcrec", "left", "-n", namespace, "--timeout=20s")
    assert emulator.control.task(task_id)["status"] == "RUNNING"
    assert "Orphaned" in [
        e["reason"]
        for e in json.loads(stack.cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    ]
    emulator.control.vanish(task_id)


@pytest.mark.parametrize("restart", [False, True])
def test_ttl_deletes_a_finished_recording(stack, namespace, channel, emulator, restart):
    stack.apply(namespace, recording("brief", channel, maxIdleSeconds=30, ttlSecondsAfterFinished=60))
    stack.wait_phase(namespace, "brief", "Recording")
    for user in ("alice", "bob"):
        emulator.control.leave(APP, channel, user)
    stack.wait_phase(namespace, "brief", "Completed", timeout=20)
    if restart:
        stack.operator.kill()
    try:
        patch(stack, namespace, "brief", {"status": {"completionTime": ago(58)}}, status=True)
    finally:
        if restart:
            stack.operator.start()
    wait_for(lambda: stack.get(namespace, "brief") is None, timeout=30, what="the TTL to delete it")


def test_adopting_a_running_task(stack, namespace, channel, emulator):
    # A task started elsewhere: here by an RtcRecording deleted with deletionPolicy Orphan.
    stack.apply(namespace, recording("origin", channel, deletionPolicy="Orphan"))
    task_id = stack.wait_phase(namespace, "origin", "Recording")["taskId"]
    stack.cluster.kubectl("delete", "rtcrec", "origin", "-n", namespace, "--timeout=20s")
    adopter = recording(
        "adopter",
        channel,
        subscribers=[{"userId": "alice"}],
        layout={"panes": [{"userId": "alice", "left": "0", "top": "0", "width": "1", "height": "1"}]},
    )
    adopter["metadata"]["annotations"] = {"rtc.recording.io/adopt-task-id": task_id}
    stack.apply(namespace, adopter)
    status = wait_for(
        lambda: (s := stack.status(namespace, "adopter")).get("observedGeneration") == 1 and s,
        timeout=30,
        what="adopted and updated",
    )
    assert (status["phase"], status["taskId"]) == ("Recording", task_id)
    assert len(stack.tasks(channel)) == 1  # nothing was started
    assert emulator.control.task(task_id)["updates"]  # its subscribers and layout now follow spec
    stack.wait_events(namespace, "adopter", "Adopted")


def test_adopting_an_unknown_task_fails_and_starts_nothing(stack, namespace, channel):
    manifest = recording("wishful", channel)
    manifest["metadata"]["annotations"] = {"rtc.recording.io/adopt-task-id": "00000000-1111-2222-3333-444444444444"}
    stack.apply(namespace, manifest)
    status = stack.wait_phase(namespace, "wishful", "Failed")
    assert status["reason"] == "AdoptionFailed"
    assert stack.tasks(channel) == []
