"""Layout presets on the real apiserver and the emulator: the panes follow the subscribers."""

from __future__ import annotations

import uuid

import pytest

from .conftest import APP, recording, wait_for

pytestmark = pytest.mark.cluster

USERS = ["alice", "bob", "carol", "dave", "erin", "frank"]


def grid(channel: str, users: list[str]) -> dict:
    return recording("grid", channel, subscribers=[{"userId": u} for u in users], layout={"preset": "Grid"})


def test_a_sixth_subscriber_of_a_grid_is_one_update_with_six_panes(stack, namespace, emulator):
    channel = f"room-{uuid.uuid4().hex[:8]}"
    for user in USERS:  # the service starts no task on an empty channel
        emulator.control.join(APP, channel, user)
    stack.apply(namespace, grid(channel, USERS[:5]))
    task_id = stack.wait_phase(namespace, "grid", "Recording")["taskId"]
    started = emulator.control.task(task_id)
    assert started["updates"] == 0
    assert [(p["UserId"], p["X"], p["Y"]) for p in started["layout"]["UserPanes"]] == [
        ("alice", "0", "0"),
        ("bob", "0.3333333", "0"),
        ("carol", "0.6666667", "0"),
        ("dave", "0.1666667", "0.5"),  # the last row centred
        ("erin", "0.5", "0.5"),
    ]

    stack.apply(namespace, grid(channel, USERS))
    wait_for(lambda: stack.status(namespace, "grid").get("observedGeneration") == 2, what="generation 2 applied")
    task = emulator.control.task(task_id)
    assert task["updates"] == 1
    (update,) = task["history"]
    assert update["MixLayoutParams"] == task["layout"]
    assert [(p["UserId"], p["X"], p["Y"]) for p in task["layout"]["UserPanes"]] == [
        ("alice", "0", "0"),
        ("bob", "0.3333333", "0"),
        ("carol", "0.6666667", "0"),
        ("dave", "0", "0.5"),
        ("erin", "0.3333333", "0.5"),
        ("frank", "0.6666667", "0.5"),
    ]
    assert [t["taskId"] for t in stack.tasks(channel)] == [task_id]  # the same task, updated
    synced = next(c for c in stack.status(namespace, "grid")["conditions"] if c["type"] == "Synced")
    assert (synced["status"], synced["observedGeneration"]) == ("True", 2)
