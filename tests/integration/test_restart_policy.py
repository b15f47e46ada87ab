"""restartPolicy OnFailure against the real apiserver and the emulator: a task the cloud forgets
(`/_emulator/tasks/{id}/vanish`: Describe answers NotFound.Task) is followed by a new one."""

from __future__ import annotations

import pytest

from rtc_recording.cluster.processes import wait_for

from .conftest import recording

pytestmark = pytest.mark.cluster


@pytest.mark.slow  # a restart's first backoff (10 s) in real time; tests/unit/test_restarts.py has the fast ones
def test_on_failure_starts_a_new_task_when_the_cloud_loses_one_then_stops_at_the_limit(stack, namespace, channel):
    stack.apply(namespace, recording("lost", channel, restartPolicy="OnFailure", backoffLimit=1))
    first = stack.wait_phase(namespace, "lost", "Recording")["taskId"]
    stack.emulator.control.vanish(first)
    status = wait_for(
        lambda: (
            (s := stack.status(namespace, "lost")).get("taskId") not in (None, first)
            and s.get("phase") == "Recording"
            and s
        ),
        60,
        what="a new task",
        details=lambda: stack.operator.output()[-3000:],
    )
    second = status["taskId"]
    assert status["restarts"] == 1
    assert [h["taskId"] for h in status["history"]] == [first]
    assert [t["taskId"] for t in stack.tasks(channel, status="RUNNING")] == [second]
    assert len(stack.wait_events(namespace, "lost", "Restarting")) == 1

    stack.emulator.control.vanish(second)  # the limit is 1: no third task
    status = wait_for(
        lambda: (s := stack.status(namespace, "lost")).get("reason") == "BackoffLimitExceeded" and s,
        30,
        what="BackoffLimitExceeded",
    )
    assert status["phase"] == "Failed" and status["restarts"] == 1
    assert [h["taskId"] for h in status["history"]] == [first, second]
    assert len(stack.tasks(channel)) == 2


def test_past_the_backoff_limit_it_fails_and_never_stays_silent(stack, namespace, channel):
    stack.apply(namespace, recording("limited", channel, restartPolicy="OnFailure", backoffLimit=0))
    first = stack.wait_phase(namespace, "limited", "Recording")["taskId"]
    stack.emulator.control.vanish(first)
    status = wait_for(
        lambda: (s := stack.status(namespace, "limited")).get("reason") == "BackoffLimitExceeded" and s,
        30,
        what="BackoffLimitExceeded",
    )
    assert status["phase"] == "Failed" and not status.get("restarts")
    assert len(stack.tasks(channel)) == 1
