"""Issue 14: what a tenant or an outsider can make the operator do, on the real apiserver and emulator.

Each test plays the attack of one finding and fails without the fix it covers.
"""

from __future__ import annotations

import json

import pytest

from .conftest import APP, recording, wait_for

pytestmark = pytest.mark.cluster


def patch_status(stack, namespace: str, name: str, status: dict) -> None:
    """What a tenant with `patch rtcrecordings/status` can do."""
    stack.cluster.kubectl("patch", "rtcrec", name, "-n", namespace, "--subresource=status", "--type=merge",
                          "-p", json.dumps({"status": status}))


def synced(stack, namespace: str, name: str) -> dict:
    return next((c for c in stack.status(namespace, name).get("conditions", []) if c["type"] == "Synced"), {})


def test_a_forged_task_id_steers_nothing(stack, crds, namespace, channel, emulator):
    """Finding 1: a tenant points status.taskId of their resource at another namespace's task."""
    victim_ns = f"{namespace}-v"
    crds.kubectl("create", "namespace", victim_ns)
    stack.apply(victim_ns, recording("victim", channel))
    victim_task = stack.wait_phase(victim_ns, "victim", "Recording")["taskId"]
    other = f"{channel}-thief"
    for user in ("alice", "bob"):
        emulator.control.join(APP, other, user)
    stack.apply(namespace, recording("thief", other))
    own_task = stack.wait_phase(namespace, "thief", "Recording")["taskId"]

    patch_status(stack, namespace, "thief", {"taskId": victim_task})
    wait_for(lambda: synced(stack, namespace, "thief").get("reason") == "TaskNotProven", timeout=15,
             what="the forged task id refused", details=lambda: stack.operator.output()[-3000:])
    assert any(e["reason"] == "TaskNotProven" for e in stack.events(namespace, "thief"))
    # A copied seal does not help: it is bound to the victim's uid.
    patch_status(stack, namespace, "thief", {"taskSeal": stack.status(victim_ns, "victim")["taskSeal"]})

    # An Update of the thief's subscribers must not reach the victim's task.
    stack.apply(namespace, recording("thief", other, subscribers=[{"userId": "alice"}],
                                     layout={"panes": [{"userId": "alice", "left": "0", "top": "0", "width": "1",
                                                        "height": "1"}]}))
    wait_for(lambda: synced(stack, namespace, "thief").get("observedGeneration") == 2, timeout=15,
             what="the Update of generation 2 refused")
    assert synced(stack, namespace, "thief")["reason"] == "TaskNotProven"
    assert {s["userId"] for s in emulator.control.task(victim_task)["subscribers"]} == {"alice", "bob"}

    # Deleting the thief neither stops the victim's task nor hangs.
    stack.cluster.kubectl("delete", "rtcrec", "thief", "-n", namespace, "--wait=true", "--timeout=30s")
    assert emulator.control.task(victim_task)["status"] == "RUNNING"
    assert stack.status(victim_ns, "victim")["phase"] == "Recording"
    # The thief's own task, which its status no longer names, is found by its heartbeat and stopped.
    wait_for(lambda: emulator.control.task(own_task)["status"] == "STOPPED", timeout=30,
             what="the thief's untracked task reaped")
    assert emulator.control.task(victim_task)["status"] == "RUNNING"


def test_task_ids_written_before_seals_are_sealed_once(stack, crds, namespace, emulator):
    """Finding 1, migration: objects an older operator wrote (a task id, no seal) are sealed at the first
    start of a sealing operator, unless two resources claim one task; afterwards never again."""
    channels = {}
    for name in ("legacy", "original", "copycat"):
        channels[name] = f"room-{name}-{namespace}"
        for user in ("alice", "bob"):
            emulator.control.join(APP, channels[name], user)
        stack.apply(namespace, recording(name, channels[name]))
    tasks = {name: stack.wait_phase(namespace, name, "Recording")["taskId"] for name in channels}

    stack.operator.kill()
    try:
        # As an older operator would have left them; the copycat claims the original's task.
        for name in ("legacy", "original"):
            patch_status(stack, namespace, name, {"taskSeal": None})
        patch_status(stack, namespace, "copycat", {"taskSeal": None, "taskId": tasks["original"]})
        crds.kubectl("delete", "configmap", "rtcrec-task-seals", "-n", "default", "--ignore-not-found")
    finally:
        stack.operator.start()
    wait_for(lambda: stack.status(namespace, "legacy").get("taskSeal"), timeout=30, what="the legacy task sealed",
             details=lambda: stack.operator.output()[-3000:])
    for name in ("original", "copycat"):
        wait_for(lambda: synced(stack, namespace, name).get("reason") == "TaskNotProven", timeout=15,
                 what=f"{name}: a task claimed twice is not sealed")
    assert crds.kubectl("get", "configmap", "rtcrec-task-seals", "-n", "default").returncode == 0

    # Once migrated, a seal removed later is never restored: the operator refuses that task id.
    patch_status(stack, namespace, "legacy", {"taskSeal": None})
    stack.operator.restart()
    wait_for(lambda: synced(stack, namespace, "legacy").get("reason") == "TaskNotProven", timeout=30,
             what="the unsealed task refused after the migration")
    assert not stack.status(namespace, "legacy").get("taskSeal")
    assert emulator.control.task(tasks["legacy"])["status"] == "RUNNING"
    # Deleting what is not proven stops nothing and does not hang; the tasks end when their channels idle.
    stack.cluster.kubectl("delete", "rtcrec", "--all", "-n", namespace, "--wait=true", "--timeout=60s")
    assert emulator.control.task(tasks["legacy"])["status"] == "RUNNING"
    for name, room in channels.items():
        for user in ("alice", "bob"):
            emulator.control.leave(APP, room, user)
