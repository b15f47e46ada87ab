"""restartPolicy OnFailure over in-memory fakes: a task the cloud loses is followed by a new one,
from the due time (no handler is running then), counted, kept in history, limited by backoffLimit."""

from __future__ import annotations

from rtc_recording.api.task import TaskStatus
from rtc_recording.controller.index import Tracked

from .fakes import NS, World, recording, throttled

KEY = (NS, "rec")


async def recording_started(**spec) -> World:
    w = World()
    w.kube.add_recording(recording(**spec))
    await w.executor.reconcile(w.body())
    return w


def uid(w: World) -> str:
    return w.body()["metadata"]["uid"]


async def lose_the_task(w: World) -> None:
    task = w.status()["taskId"]
    del w.cloud.tasks[task]  # the cloud forgets it: Describe answers NotFound
    await w.executor.describe(Tracked.of(w.body()))


async def test_a_lost_task_is_followed_by_a_new_one_after_the_backoff():
    w = await recording_started(restartPolicy="OnFailure", backoffLimit=1)
    await lose_the_task(w)
    assert (w.status()["phase"], w.status()["reason"]) == ("Failed", "TaskLost")

    assert Tracked.of(w.body()).due == w.clock.now.timestamp() + 10  # the due-time heap will act then
    await w.executor.on_due(KEY)  # too early: 10 s of backoff first
    assert len(w.cloud.tasks) == 0
    w.clock.advance(10)
    await w.executor.on_due(KEY)  # stops what was judged lost, says so, and hands the Start on
    assert (w.status()["phase"], w.status()["reason"]) == ("Pending", "Restarting")
    assert ("stop", "task-1") in w.cloud.verbs()
    await w.executor.try_again(KEY, uid(w))  # from the waiting room, not the due-time loop
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
    w = await recording_started()  # restartPolicy Never
    await lose_the_task(w)
    w.clock.advance(1000)
    await w.executor.on_due(KEY)
    assert w.status()["reason"] == "TaskLost" and [c.verb for c in w.cloud.calls].count("start") == 1

    w = await recording_started(restartPolicy="OnFailure")
    w.cloud.tasks[w.status()["taskId"]].status = TaskStatus.STOPPED  # nobody published: the idle timer
    await w.executor.describe(Tracked.of(w.body()))
    w.clock.advance(1000)
    await w.executor.on_due(KEY)
    assert w.status()["reason"] == "IdleTimeout" and [c.verb for c in w.cloud.calls].count("start") == 1


async def test_a_restart_whose_start_fails_tries_again_from_the_waiting_room():
    w = await recording_started(restartPolicy="OnFailure")
    await lose_the_task(w)
    w.clock.advance(10)
    w.cloud.script("start", throttled())
    await w.executor.on_due(KEY)
    await w.executor.try_again(KEY, uid(w))
    assert (w.status()["phase"], w.status()["restarts"]) == ("Pending", 1)
    assert len(w.executor.ctx.waiting) == 1  # its next try is due there, not in Kopf
    await w.executor.try_again(KEY, uid(w))
    assert (w.status()["phase"], w.status()["restarts"]) == ("Recording", 1)
    assert len(w.executor.ctx.waiting) == 0


async def test_a_restart_keeps_the_first_start_so_max_duration_counts_the_whole_recording():
    w = await recording_started(restartPolicy="OnFailure", maxDurationSeconds=120)
    first_start = w.status()["startTime"]
    w.clock.advance(60)
    await lose_the_task(w)
    w.clock.advance(10)
    await w.executor.on_due(KEY)
    await w.executor.try_again(KEY, uid(w))
    status = w.status()
    assert status["phase"] == "Recording" and status["startTime"] == first_start
    assert status["history"][0]["startTime"] == first_start  # the first task's own start
    w.clock.advance(50)  # 120 s since the first start: the limit
    await w.executor.on_due(KEY)
    assert (w.status()["phase"], w.status()["reason"]) == ("Completed", "MaxDuration")


async def test_no_restart_once_the_recording_time_is_up_while_suspended_or_deleted():
    w = await recording_started(restartPolicy="OnFailure", maxDurationSeconds=60)
    w.clock.advance(60)
    await lose_the_task(w)  # lost just as its time was up
    w.clock.advance(1000)
    await w.executor.on_due(KEY)
    assert w.status()["reason"] == "TaskLost" and [c.verb for c in w.cloud.calls].count("start") == 1

    w = await recording_started(restartPolicy="OnFailure")
    await lose_the_task(w)
    w.kube.edit(NS, "rec", lambda o: o["spec"].update(suspend=True))
    w.clock.advance(1000)
    await w.executor.on_due(KEY)
    assert w.status()["reason"] == "TaskLost" and "restarts" not in w.status()

    w = await recording_started(restartPolicy="OnFailure", finalizers=["rtc.recording.io/stop-task"])
    await lose_the_task(w)
    w.kube.edit(NS, "rec", lambda o: o["metadata"].update(deletionTimestamp="2026-11-26T12:00:05Z"))
    w.clock.advance(1000)
    await w.executor.on_due(KEY)
    await w.executor.reconcile(w.body())
    assert [c.verb for c in w.cloud.calls].count("start") == 1  # a deleted resource never gets a new task
