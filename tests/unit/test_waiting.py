"""Waiting for participants (controller/waiting.py, the Starter's resend and give_up) over in-memory fakes.

The cloud answers 404 InvalidParameter.ChannelId while nobody is in the channel. The rows check what
each try writes (once: Pending, WaitingForParticipants, one Event; then nothing), what it sends (the
same attempt, at the budget's WAITING priority), and what a restart or a deletion may assume.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from rtc_recording.api.task import ChannelEmpty
from rtc_recording.cloud.budget import Priority
from rtc_recording.controller.waiting import Superseded, WaitingRoom
from rtc_recording.decide.actions import Sends

from .fakes import NOW, NS, UNKNOWN, Answer, World, recording, transient

EMPTY = Answer(
    "error", ChannelEmpty("InvalidParameter.ChannelId", "standup-42, please check the channelId.", http_status=404)
)
KEY = (NS, "rec")


def uid(w: World) -> str:
    return w.body()["metadata"]["uid"]


def tries(w: World) -> list[int | None]:
    """The attempt number each Start carried (its NotifyUrl ends in /<attempt>)."""
    return [int(c.params["NotifyUrl"].rsplit("/", 1)[1]) for c in w.cloud.calls if c.verb == "start"]


async def test_an_empty_channel_waits_and_each_try_after_the_first_costs_no_write():
    w = World()
    w.kube.add_recording(recording())
    w.cloud.script("start", EMPTY, EMPTY, EMPTY)
    await w.executor.reconcile(w.body())
    status = w.status()
    assert (status["phase"], status["reason"], status["attempt"]["number"]) == ("Pending", "WaitingForParticipants", 1)
    assert "notExecuted" not in status["attempt"]  # pending: only this process knows it was refused
    assert status["waitingSince"] == "2026-11-26T12:00:00Z"
    writes = len(w.kube.status_writes())

    for _ in range(2):  # refused again: nothing written, no second Event
        w.clock.advance(5)
        await w.executor.try_again(KEY, uid(w))
    assert len(w.kube.status_writes()) == writes
    assert w.events().count(("Normal", "WaitingForParticipants")) == 1

    w.clock.advance(5)
    await w.executor.try_again(KEY, uid(w))  # someone joined
    status = w.status()
    assert (status["phase"], status["taskId"], status["attempt"]["number"]) == ("Recording", "task-1", 1)
    assert "waitingSince" not in status
    assert tries(w) == [1, 1, 1, 1] and len(w.cloud.tasks) == 1
    assert w.clients.start_priorities == [Priority.START, Priority.WAITING, Priority.WAITING, Priority.WAITING]
    assert len(w.executor.ctx.waiting) == 0


async def test_nobody_comes_failed_after_the_deadline_with_one_event():
    w = World()
    w.kube.add_recording(recording(startDeadlineSeconds=60))
    w.cloud.script("start", *[EMPTY] * 10)
    await w.executor.reconcile(w.body())
    w.clock.advance(30)
    await w.executor.try_again(KEY, uid(w))
    w.clock.advance(30)
    await w.executor.try_again(KEY, uid(w))
    status = w.status()
    assert (status["phase"], status["reason"]) == ("Failed", "NoParticipants")
    assert status["attempt"]["notExecuted"] is True  # a deletion waits for nothing
    assert w.events().count(("Warning", "NoParticipants")) == 1
    assert tries(w) == [1, 1] and not w.cloud.tasks
    assert len(w.executor.ctx.waiting) == 0


async def test_a_restarted_operator_treats_the_last_send_as_unknown_then_starts_the_next_attempt():
    w = World(settings={"unknown_outcome_grace_seconds": 30})
    w.kube.add_recording(recording())
    w.cloud.script("start", EMPTY, EMPTY)
    await w.executor.reconcile(w.body())
    w.clock.advance(600)
    w.start_operator()  # the refusal is forgotten: a resend by the old process may have made a task
    with pytest.raises(Exception, match="answer lost"):
        await w.executor.reconcile(w.body())
    w.clock.advance(31)
    await w.executor.reconcile(w.body())  # a new attempt, written ahead; still waiting, no new Event
    status = w.status()
    assert (status["phase"], status["reason"], status["attempt"]["number"]) == ("Pending", "WaitingForParticipants", 2)
    assert status["waitingSince"] == "2026-11-26T12:00:00Z"  # the deadline still counts from the first answer
    assert w.events().count(("Normal", "WaitingForParticipants")) == 1
    assert w.clients.start_priorities[-1] == Priority.WAITING


async def test_a_lost_resend_is_waited_out_from_when_it_was_sent():
    w = World(settings={"unknown_outcome_grace_seconds": 30})
    w.kube.add_recording(recording())
    w.cloud.script("start", EMPTY, UNKNOWN)
    await w.executor.reconcile(w.body())
    w.clock.advance(600)
    await w.executor.try_again(KEY, uid(w))  # carried out, answer lost
    assert len(w.cloud.tasks) == 1
    w.clock.advance(10)
    with pytest.raises(Exception, match="answer lost"):
        await w.executor.reconcile(w.body())  # not Start(2): its callbacks may yet name the task
    with pytest.raises(Exception, match="waiting for a callback"):
        await w.executor.delete(w.body())


async def test_a_failure_not_carried_out_keeps_the_attempt_sendable():
    w = World()
    w.kube.add_recording(recording())
    w.cloud.script("start", EMPTY, transient())
    await w.executor.reconcile(w.body())
    writes = len(w.kube.status_writes())
    with pytest.raises(Exception, match="not carried out"):
        await w.executor.reconcile(w.body())
    assert len(w.kube.status_writes()) == writes  # nothing to say: still waiting
    assert w.executor.ctx.waiting.sends(uid(w)).refused == 1
    await w.executor.reconcile(w.body())
    assert w.status()["taskId"] == "task-1" and tries(w) == [1, 1, 1]


async def test_deleting_a_waiting_recording_lets_go_at_once_and_sends_nothing_more():
    w = World()
    w.kube.add_recording(recording())
    w.cloud.script("start", EMPTY)
    await w.executor.reconcile(w.body())
    await w.executor.delete(w.body())  # the refusal proves there is no task: nothing to wait for
    await w.executor.try_again(KEY, uid(w))  # a try already due: deletion decides, nothing is sent
    assert tries(w) == [1]


async def test_suspending_a_waiting_recording():
    w = World()
    w.kube.add_recording(recording())
    w.cloud.script("start", EMPTY)
    await w.executor.reconcile(w.body())
    w.kube.edit(NS, "rec", lambda o: o["spec"].update(suspend=True))
    await w.executor.reconcile(w.body())
    assert w.status()["phase"] == "Suspended" and w.status()["attempt"]["notExecuted"] is True
    assert len(w.executor.ctx.waiting) == 0


# -- the room itself ---------------------------------------------------------------------------------
def room(clock: list[float]) -> WaitingRoom:
    return WaitingRoom(base=2, longest=10, now=lambda: NOW + timedelta(seconds=clock[0]))


def test_only_a_refused_attempt_may_be_claimed_and_only_once():
    r = room([0.0])
    with pytest.raises(Superseded):
        r.claim("u", 1)
    r.refused(KEY, "u", 1)
    with pytest.raises(Superseded):
        r.claim("u", 2)  # another attempt
    r.claim("u", 1)
    assert r.sends("u") == Sends(None, NOW, r.acting_since)  # on its way: not refused
    with pytest.raises(Superseded):
        r.claim("u", 1)  # a second send of it while the first is out
    r.not_sent("u")
    r.claim("u", 1)
    r.lost("u")
    r.not_sent("u")  # too late: it left
    assert r.sends("u").refused is None


def test_a_closed_entry_is_never_sent_but_remembers_its_answer():
    r = room([0.0])
    r.refused(KEY, "u", 1)
    r.claim("u", 1)
    assert r.close("u").refused is None  # a send is out: the deletion must wait for it
    r.refused(KEY, "u", 1)  # its answer: refused after all
    assert r.sends("u").refused == 1  # so nothing was made: the deletion may go
    with pytest.raises(Superseded):
        r.claim("u", 1)


async def test_tries_back_off_to_the_longest_pause_and_never_past_the_deadline():
    clock = [0.0]
    r = room(clock)
    due: list[float] = []
    for _ in range(6):
        r.refused(KEY, "u", 1)
        due.append(r._entries["u"].due)  # noqa: SLF001 - the schedule is what is tested
    start = NOW.timestamp()
    assert 1 <= due[0] - start <= 2 and all(5 <= d - start <= 10 for d in due[3:])
    r.until("u", NOW + timedelta(seconds=3))
    assert r._entries["u"].due == NOW.timestamp() + 3  # noqa: SLF001


async def test_the_loop_runs_what_falls_due():
    clock = [0.0]
    r = WaitingRoom(base=0.01, longest=0.01, now=lambda: NOW + timedelta(seconds=clock[0]))
    seen: list[tuple] = []

    async def act(key, uid):
        seen.append((key, uid))

    loop = asyncio.create_task(r.run(act))
    r.refused(KEY, "u", 1)
    clock[0] += 1
    r.later(KEY, "u", 0)  # wakes the loop
    for _ in range(100):
        if seen:
            break
        await asyncio.sleep(0.01)
    loop.cancel()
    assert seen == [(KEY, "u")]
