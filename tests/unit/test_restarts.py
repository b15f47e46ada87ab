"""restartPolicy OnFailure over in-memory fakes: a task the cloud loses is followed by a new one,
from the due time (no handler is running then), counted, kept in history, limited by backoffLimit."""

from __future__ import annotations

from rtc_recording.api.task import TaskStatus
from rtc_recording.controller.index import Tracked

from .fakes import NS, World, recording, throttled

KEY = (NS, "rec")


async def lose_the_task(w: World) -> None:
    task = w.status()["taskId"]
    del w.cloud.tasks[task]  # the cloud forgets it: Describe answers NotFound
    await w.executor.describe(Tracked.of(w.body()))


async def test_a_lost_task_is_followed_by_a_new_one_after_the_backoff():
    w = World()
    w.kube.add_recording(recording(restartPolicy="OnFailure", backoffLimit=1))
    await w.executor.reconcile(w.body())
    await lose_the_task(w)
    assert (w.status()["phase"], w.status()["reason"]) == ("Failed", "TaskLost")

    await w.executor.on_due(KEY)  # too early: 10 s of backoff first
    assert len(w.cloud.tasks) == 0
    w.clock.advance(10)
    await w.executor.on_due(KEY)
    status = w.status()
    assert (status["phase"], status["taskId"], status["restarts"]) == ("Recording", "task-2", 1)
    assert [h["taskId"] for h in status["history"]] == ["task-1"]
    assert status["attempt"]["number"] == 2
    assert ("Normal", "Restarting") in w.events()

    await lose_the_task(w)  # the limit is 1: no third task
    await w.executor.on_due(KEY)
    status = w.status()
    assert (status["phase"], status["reason"], status["restarts"]) == ("Failed", "BackoffLimitExceeded", 1)
    assert [h["taskId"] for h in status["history"]] == ["task-1", "task-2"]
    assert w.events().count(("Warning", "BackoffLimitExceeded")) == 1
    assert [c.verb for c in w.cloud.calls].count("start") == 2


async def test_never_and_the_idle_timeout_start_nothing():
    w = World()
    w.kube.add_recording(recording())  # restartPolicy Never
    await w.executor.reconcile(w.body())
    await lose_the_task(w)
    w.clock.advance(1000)
    await w.executor.on_due(KEY)
    assert w.status()["reason"] == "TaskLost" and [c.verb for c in w.cloud.calls].count("start") == 1

    w = World()
    w.kube.add_recording(recording(restartPolicy="OnFailure"))
    await w.executor.reconcile(w.body())
    w.cloud.tasks[w.status()["taskId"]].status = TaskStatus.STOPPED  # nobody published: the idle timer
    await w.executor.describe(Tracked.of(w.body()))
    w.clock.advance(1000)
    await w.executor.on_due(KEY)
    assert w.status()["reason"] == "IdleTimeout" and [c.verb for c in w.cloud.calls].count("start") == 1


async def test_a_restart_whose_start_fails_tries_again_from_the_waiting_room():
    w = World()
    w.kube.add_recording(recording(restartPolicy="OnFailure"))
    await w.executor.reconcile(w.body())
    await lose_the_task(w)
    w.clock.advance(10)
    w.cloud.script("start", throttled())
    await w.executor.on_due(KEY)
    assert (w.status()["phase"], w.status()["restarts"]) == ("Pending", 1)
    assert len(w.executor.ctx.waiting) == 1  # its next try is due there, not in Kopf
    await w.executor.try_again(KEY, w.body()["metadata"]["uid"])
    assert (w.status()["phase"], w.status()["restarts"]) == ("Recording", 1)
    assert len(w.executor.ctx.waiting) == 0
