"""Recordings applied before anyone joins their channel, against the real apiserver and the emulator,
which refuses a Start on an empty channel (404 InvalidParameter.ChannelId) as the service does."""

from __future__ import annotations

import time
import uuid

import pytest

from rtc_recording.cluster.processes import wait_for

from .conftest import APP, RECORDINGS, recording

pytestmark = pytest.mark.cluster


@pytest.fixture
def empty_channel() -> str:
    return f"room-{uuid.uuid4().hex[:8]}"


def waiting_events(stack, namespace: str, name: str) -> list[dict]:
    return [e for e in stack.events(namespace, name) if e["reason"] == "WaitingForParticipants"]


def test_applied_before_anyone_joins_it_waits_then_records_once_they_do(stack, namespace, empty_channel):
    stack.apply(namespace, recording("early", empty_channel))
    status = wait_for(
        lambda: (s := stack.status(namespace, "early")).get("reason") == "WaitingForParticipants" and s,
        30,
        what="waiting for participants",
    )
    assert status["phase"] == "Pending" and status["waitingSince"]
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "False",
        "Reconciling": "True",
        "Stalled": "False",
    }
    calls = stack.emulator.control.stats()["calls"]["byAction"].get("StartRtcCloudRecording", 0)
    wait_for(  # it keeps trying: several more Starts refused
        lambda: stack.emulator.control.stats()["calls"]["byAction"].get("StartRtcCloudRecording", 0) >= calls + 3,
        30,
        what="Starts tried again",
    )
    for user in ("alice", "bob"):
        stack.emulator.control.join(APP, empty_channel, user)
    joined = time.monotonic()
    status = stack.wait_phase(namespace, "early", "Recording")
    print(f"Recording {time.monotonic() - joined:.1f} s after the join")
    assert len(stack.tasks(empty_channel)) == 1
    assert status["attempt"]["number"] == 1  # every try was the same attempt
    assert "waitingSince" not in status
    assert len(waiting_events(stack, namespace, "early")) == 1  # one Event, not one per try


@pytest.mark.slow  # the shortest start deadline (10 s) in real time; tests/unit/test_waiting.py has the fast one
def test_nobody_comes_failed_after_the_deadline_and_no_task(stack, namespace, empty_channel):
    stack.apply(namespace, recording("alone", empty_channel, startDeadlineSeconds=10))
    status = stack.wait_phase(namespace, "alone", "Failed")
    assert status["reason"] == "NoParticipants"
    assert [e["type"] for e in stack.wait_events(namespace, "alone", "NoParticipants")] == ["Warning"]
    assert len(waiting_events(stack, namespace, "alone")) == 1
    assert stack.tasks(empty_channel) == []


def test_a_waiting_recording_is_deleted_at_once(stack, namespace, empty_channel):
    stack.apply(namespace, recording("gone", empty_channel))
    wait_for(lambda: stack.status(namespace, "gone").get("reason") == "WaitingForParticipants", 30, what="waiting")
    stack.cluster.api.request("DELETE", f"{RECORDINGS}/namespaces/{namespace}/rtcrecordings/gone")
    wait_for(lambda: stack.get(namespace, "gone") is None, 15, what="the recording gone")
    stack.emulator.control.join(APP, empty_channel, "alice")
    time.sleep(2)  # a try that was due would have gone out by now
    assert stack.tasks(empty_channel) == []
