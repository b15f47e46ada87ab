"""Recorded seconds per namespace (controller/usage.py): each task counts once, from its start to where the
operator learns that it ended, and a restarted operator never counts it again."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client import REGISTRY

from rtc_recording.api.task import TaskStatus
from rtc_recording.controller.index import Tracked

from .fakes import NOW, NS, World, recording, ts

RAN = 600  # seconds the task has recorded at NOW


def recorded() -> float:
    return REGISTRY.get_sample_value("rtcrec_recorded_seconds_total", {"namespace": NS}) or 0.0


def world(task: TaskStatus, **spec) -> World:
    w = World()
    w.cloud.add_task(task, task_id="task-1")
    status = {
        "phase": "Recording",
        "reason": "Started",
        "taskId": "task-1",
        "observedGeneration": 1,
        "startTime": ts(NOW - timedelta(seconds=RAN)),
        "attempt": {"number": 1, "startedAt": ts(NOW - timedelta(seconds=RAN + 1)), "generation": 1},
    }
    w.add(recording(status=status, **spec))
    return w


async def test_a_task_the_cloud_ended_counts_once_as_it_goes_to_history():
    w, before = world(TaskStatus.STOPPED), recorded()
    await w.executor.describe(Tracked.of(w.body()))
    assert w.status()["phase"] == "Completed" and recorded() - before == RAN
    w.start_operator()  # a restart: the task is in history already, nothing is written or counted again
    await w.executor.describe(Tracked.of(w.body()))
    assert recorded() - before == RAN


async def test_a_suspended_task_counts_once_as_it_goes_to_history():
    w, before = world(TaskStatus.RUNNING, suspend=True), recorded()
    await w.executor.reconcile(w.body(), 0)
    assert w.status()["phase"] == "Suspended" and recorded() - before == RAN
    w.start_operator()
    await w.executor.reconcile(w.body(), 0)
    assert recorded() - before == RAN


async def test_a_task_stopped_for_its_deletion_counts_once():
    w, before = world(TaskStatus.RUNNING), recorded()
    await w.executor.delete(w.body(), 0)
    assert w.cloud.verbs() == [("stop", "task-1")] and recorded() - before == RAN
    # Restarted before the finalizer went: the Stop is sent again, the cloud knows no such task any
    # more, and nothing more is counted.
    w.start_operator()
    await w.executor.delete(w.body(), 0)
    assert recorded() - before == RAN


async def test_a_deleted_recording_whose_task_had_ended_counts_nothing_more():
    w = world(TaskStatus.STOPPED)
    await w.executor.describe(Tracked.of(w.body()))
    before = recorded()
    await w.executor.delete(w.body(), 0)
    assert recorded() == before
