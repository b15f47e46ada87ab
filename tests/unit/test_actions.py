"""The decision table of reconcile, without any server."""

import re
from datetime import UTC, datetime, timedelta

import pytest

from rtc_recording.api.recording import RtcRecordingStatus
from rtc_recording.api.task import CloudError, RecordFiles, TaskInfo, TaskStatus
from rtc_recording.decide import actions as r
from rtc_recording.decide import backoff, callbacks, patches

from .fakes import merge_patch

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
GRACE = 30.0


def status(**fields) -> RtcRecordingStatus:
    return RtcRecordingStatus.model_validate(fields)


def attempt(n, seconds_ago):
    return {"number": n, "startedAt": (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")}


@pytest.mark.parametrize(
    "fields, generation, expected",
    [
        ({}, 1, r.Start(1)),  # never called
        ({"phase": "Starting", "attempt": attempt(1, 5)}, 1, r.AwaitOutcome(1, 25.0)),  # answer unknown
        ({"phase": "Starting", "attempt": attempt(1, 31)}, 1, r.Start(2)),  # grace over
        ({"phase": "Starting", "attempt": attempt(3, 30)}, 1, r.Start(4)),
        ({"phase": "Recording", "taskId": "t1", "observedGeneration": 1}, 1, r.Nothing()),
        ({"phase": "Recording", "taskId": "t1", "observedGeneration": 1}, 2, r.Update("t1")),
        ({"phase": "Recovering", "taskId": "t1", "observedGeneration": 1}, 2, r.Update("t1")),
        ({"phase": "Completed", "taskId": "t1", "observedGeneration": 1}, 2, r.Nothing()),  # never restarted
        ({"phase": "Failed", "taskId": "t1", "reason": "TaskLost", "observedGeneration": 1}, 2, r.Nothing()),
        ({"phase": "Failed", "reason": "InvalidParameter.AppId", "observedGeneration": 1}, 1, r.Nothing()),
        (
            {
                "phase": "Failed",
                "reason": "InvalidParameter.UserId",
                "observedGeneration": 1,
                "attempt": attempt(1, 100),
            },
            2,
            r.Start(2),
        ),  # spec changed: retry
        ({"phase": "Pending", "reason": "Throttling.User"}, 1, r.Start(1)),
        # The service said it started nothing: the next number at once, never the same one again.
        ({"phase": "Pending", "attempt": {**attempt(2, 1), "notExecuted": True}}, 1, r.Start(3)),
    ],
)
def test_next_action(fields, generation, expected):
    assert r.next_action(status(**fields), generation, NOW, GRACE) == expected


LOST = {"phase": "Starting", "attempt": attempt(1, 100)}  # grace long over


@pytest.mark.parametrize(
    "cloud, evidence, expected",
    [
        (r.CloudHealth(), False, r.Start(2)),
        (r.CloudHealth(up=False, recheck=2), False, r.AwaitOutcome(1, 2)),  # no pile-up while the cloud is mute
        (
            r.CloudHealth(back_since=NOW - timedelta(seconds=10)),
            False,
            r.AwaitOutcome(1, 20.0),
        ),  # grace from its return
        (r.CloudHealth(back_since=NOW - timedelta(seconds=40)), False, r.Start(2)),
        (r.CloudHealth(back_since=NOW - timedelta(seconds=500)), False, r.Start(2)),  # an old outage changes nothing
        (r.CloudHealth(recheck=2), True, r.AwaitOutcome(1, 2)),  # its task called back: never replace it
    ],
)
def test_a_lost_answer_waits_for_the_cloud_and_for_evidence(cloud, evidence, expected):
    assert r.next_action(status(**LOST), 1, NOW, GRACE, cloud, evidence) == expected
    released = r.Release(1) if isinstance(expected, r.Start) else expected
    assert r.deletion_action(status(**LOST), NOW, GRACE, cloud, evidence) == released


@pytest.mark.parametrize(
    "fields, expected",
    [
        ({"phase": "Recording", "taskId": "t1"}, r.Stop("t1")),
        ({"phase": "Recovering", "taskId": "t1"}, r.Stop("t1")),
        ({"phase": "Completed", "taskId": "t1"}, r.Stop("t1")),  # idempotent; a wrong phase must not leak
        ({"phase": "Failed", "taskId": "t1", "reason": "TaskLost"}, r.Stop("t1")),
        ({"phase": "Starting", "attempt": attempt(1, 10)}, r.AwaitOutcome(1, 20.0)),  # its callback may still come
        ({"phase": "Starting", "attempt": attempt(1, 31)}, r.Release(1)),
        ({"phase": "Pending", "attempt": {**attempt(1, 1), "notExecuted": True}}, r.Nothing()),
        ({"phase": "Failed", "reason": "InvalidParameter.AppId"}, r.Nothing()),
        ({}, r.Nothing()),
    ],
)
def test_deletion_action(fields, expected):
    assert r.deletion_action(status(**fields), NOW, GRACE) == expected


PENDING = callbacks.View("u", None, "Starting", 2, attempt=2)
RECORDING = callbacks.View("u", "t2", "Recording", None, frozenset({"t0"}), attempt=2)
RECOVERING = callbacks.View("u", "t2", "Recovering", None, attempt=2)
UNSEEN = callbacks.View("u", None, None, None)  # the receiver's watch has not shown the write-ahead yet


@pytest.mark.parametrize(
    "view, path_uid, n, task, event, stopped, expected",
    [
        (PENDING, "u", 2, "t2", "TaskCreated", False, callbacks.Adopt("t2")),
        (PENDING, "u", 2, "t2", "TaskRunning", False, callbacks.Adopt("t2")),
        (PENDING, "u", 1, "t1", "TaskRunning", False, callbacks.Reap("t1")),  # an older attempt's orphan
        (UNSEEN, "u", 1, "t1", "TaskCreated", False, callbacks.Adopt("t1")),  # the watch lags the write-ahead
        (RECORDING, "u", 3, "t3", "TaskCreated", False, callbacks.Adopt("t3")),  # a newer attempt than the watch shows
        (
            PENDING,
            "u",
            2,
            "t2",
            "TaskStopped",
            False,
            callbacks.Ignore("a task that is not current has stopped: nothing to do"),
        ),
        (RECORDING, "u", 2, "t2", "TaskStopped", False, callbacks.Observe("t2")),
        (RECORDING, "u", 2, "t2", "TaskRecovering", False, callbacks.Observe("t2")),
        (
            RECORDING,
            "u",
            2,
            "t2",
            "TaskRunning",
            False,
            callbacks.Ignore("TaskRunning of the current task: status already says so"),
        ),
        (RECOVERING, "u", 2, "t2", "TaskRunning", False, callbacks.Observe("t2")),
        (
            RECORDING,
            "u",
            2,
            "t2",
            "RecordFileUploaded",
            False,
            callbacks.Ignore("RecordFileUploaded of the current task: status already says so"),
        ),
        (RECORDING, "u", 1, "t1", "TaskCreated", False, callbacks.Reap("t1")),
        (RECORDING, "u", 1, "t0", "RecordFileUploaded", False, callbacks.Ignore("a stray that was already stopped")),
        (RECORDING, "old-uid", 2, "t9", "TaskRunning", False, callbacks.Reap("t9")),  # a previous incarnation's task
        (None, "u", 1, "t1", "TaskRunning", False, callbacks.Reap("t1")),  # resource deleted
        (
            None,
            "u",
            1,
            "t1",
            "RecordFileUploaded",
            True,
            callbacks.Ignore("the last task of a deleted resource, stopped with it"),
        ),
        (
            None,
            "u",
            1,
            "t1",
            "TaskStopped",
            False,
            callbacks.Ignore("a task that is not current has stopped: nothing to do"),
        ),
    ],
)
def test_on_callback(view, path_uid, n, task, event, stopped, expected):
    assert callbacks.on_callback(view, path_uid, n, task, event, known_stopped=stopped) == expected


def test_view_of_an_object():
    obj = {
        "metadata": {"uid": "u"},
        "status": {"phase": "Starting", "attempt": attempt(3, 1), "strayTaskIds": ["a", "b"]},
    }
    assert callbacks.View.of(obj) == callbacks.View("u", None, "Starting", 3, frozenset({"a", "b"}), attempt=3)
    obj["status"]["attempt"]["notExecuted"] = True
    assert callbacks.View.of(obj).pending_attempt is None


def test_observed_maps_cloud_states():
    live = status(phase="Recording", taskId="t1", startTime="2026-11-26T11:00:00Z")
    assert patches.observed(live, TaskInfo("t1", TaskStatus.RUNNING), 1, NOW) == {
        "files": {"hls": [], "mp4": [], "mp3": [], "vod": []}
    }
    recovering = patches.observed(live, TaskInfo("t1", TaskStatus.RECOVERING), 1, NOW)
    assert recovering["phase"] == "Recovering"
    assert [c["status"] for c in recovering["conditions"] if c["type"] == "Ready"] == ["False"]
    done = patches.observed(live, TaskInfo("t1", TaskStatus.STOPPED, RecordFiles(mp4=("a.mp4",))), 1, NOW)
    assert (done["phase"], done["reason"], done["files"]["mp4"]) == ("Completed", "IdleTimeout", ["a.mp4"])
    assert done["completionTime"] == "2026-11-26T12:00:00Z"
    lost = patches.observed(live, None, 1, NOW)
    assert (lost["phase"], lost["reason"]) == ("Failed", "TaskLost")


def test_observed_after_72_hours_names_the_cloud_limit():
    old = status(phase="Recording", taskId="t1", startTime="2026-11-23T11:00:00Z")
    assert patches.observed(old, TaskInfo("t1", TaskStatus.STOPPED), 1, NOW)["reason"] == "CloudMaxDuration"


def test_observed_changes_nothing_when_nothing_changed_or_terminal():
    same = status(phase="Recording", taskId="t1", files={"hls": [], "mp4": [], "mp3": [], "vod": []})
    assert patches.observed(same, TaskInfo("t1", TaskStatus.RUNNING), 1, NOW) is None
    done = status(phase="Completed", taskId="t1")
    assert patches.observed(done, None, 1, NOW) is None


def test_condition_keeps_transition_time_while_unchanged():
    first = patches.condition(status(), "Ready", True, "Started", "m", 1, NOW)
    later = patches.condition(status(conditions=first), "Ready", True, "Started", "m2", 2, NOW + timedelta(hours=1))
    assert later[0]["lastTransitionTime"] == first[0]["lastTransitionTime"]
    flipped = patches.condition(
        status(conditions=later), "Ready", False, "IdleTimeout", "m3", 2, NOW + timedelta(hours=2)
    )
    assert flipped[0]["lastTransitionTime"] == "2026-11-26T14:00:00Z"


def test_condition_reasons_are_valid_kubernetes_reasons():
    """metav1.Condition.reason must be CamelCase; the vendor's dotted code goes to status.reason."""
    st = status(phase="Recording", taskId="t1")
    written = [
        patches.start_refused(st, "InvalidParameter.AppId", "m", 1, NOW),
        patches.start_not_executed(st, CloudError("Throttling.User", "m"), 1, NOW),
        patches.update_refused(st, "InvalidParameter.UserId", "m", 1, NOW),
        patches.attempt_recorded(st, 2, 1, NOW),
        patches.started(st, "t1", 1, NOW),
        patches.observed(st, None, 1, NOW),
        patches.observed(st, TaskInfo("t1", TaskStatus.RECOVERING), 1, NOW),
    ]
    reasons = [c["reason"] for p in written for c in p["conditions"]]
    assert all(re.fullmatch(r"[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?", reason) for reason in reasons), reasons


def test_attempt_patches_round_trip_through_the_status_model():
    st = status()
    written = patches.attempt_recorded(st, 1, 1, NOW)
    assert written["attempt"]["generation"] == 1  # an adopted task then knows which spec it carries
    assert r.next_action(
        status(**{k: v for k, v in written.items() if v is not None}), 1, NOW, GRACE
    ) == r.AwaitOutcome(1, GRACE)
    refused = patches.start_refused(st, "InvalidParameter.AppId", "no such app", 1, NOW)
    assert refused["phase"] == "Failed" and refused["reason"] == "InvalidParameter.AppId"
    retry = patches.start_not_executed(st, CloudError("Throttling.User", "slow down"), 1, NOW)
    assert retry["attempt"] == {"notExecuted": True} and retry["phase"] == "Pending"
    refused = patches.update_refused(status(phase="Recording", taskId="t1", observedGeneration=1), "X", "m", 2, NOW)
    # Seen and refused: not retried until the spec changes, and no GitOps tool waits on it forever.
    assert refused["observedGeneration"] == 2
    assert (
        r.next_action(status(phase="Recording", taskId="t1", **{"observedGeneration": 2}), 2, NOW, GRACE) == r.Nothing()
    )
    assert refused["conditions"][0] == {
        **refused["conditions"][0],
        "type": "Synced",
        "status": "False",
        "observedGeneration": 2,
    }


@pytest.mark.parametrize("retry", range(12))
def test_backoff_is_capped_and_jittered(retry):
    delays = {backoff.backoff(retry, 2, 300) for _ in range(20)}
    ceiling = min(300, 2 * 2**retry)
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert len(delays) > 1


# -- lifecycle controls ---------------------------------------------------------------------------
def ago(seconds):
    return (NOW - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


LIVE_T1 = {
    "phase": "Recording",
    "taskId": "t1",
    "observedGeneration": 1,
    "startTime": ago(100),
    "attempt": attempt(1, 100),
}
DONE = {"phase": "Completed", "taskId": "t1", "observedGeneration": 1, "completionTime": ago(100)}


@pytest.mark.parametrize(
    "fields, generation, controls, expected",
    [
        (LIVE_T1, 2, r.Controls(suspend=True), r.Halt("t1", "Suspended")),  # suspend wins over Update
        (LIVE_T1, 1, r.Controls(max_duration=100), r.Halt("t1", "MaxDuration")),  # ran exactly that long
        (LIVE_T1, 1, r.Controls(max_duration=101), r.Nothing()),
        ({**LIVE_T1, "phase": "Stopping", "reason": "Suspended"}, 2, r.Controls(), r.Halt("t1", "Suspended")),
        (
            {**LIVE_T1, "phase": "Stopping", "reason": "StoppedByCloud"},
            1,
            r.Controls(suspend=True),
            r.Halt("t1", "Suspended"),
        ),
        ({"phase": "Suspended", "attempt": attempt(1, 100), "observedGeneration": 2}, 3, r.Controls(), r.Start(2)),
        ({"phase": "Suspended", "attempt": attempt(1, 100)}, 3, r.Controls(suspend=True), r.Nothing()),
        ({}, 1, r.Controls(suspend=True), r.Suspend()),  # created suspended
        ({"phase": "Starting", "attempt": attempt(1, 5)}, 1, r.Controls(suspend=True), r.AwaitOutcome(1, 25.0)),
        ({"phase": "Starting", "attempt": attempt(1, 50)}, 1, r.Controls(suspend=True), r.Suspend()),
        ({"phase": "Failed", "reason": "X", "observedGeneration": 1}, 2, r.Controls(suspend=True), r.Suspend()),
        (DONE, 1, r.Controls(ttl=100), r.Expire()),
        (DONE, 1, r.Controls(ttl=101), r.Nothing()),
        (DONE, 1, r.Controls(suspend=True), r.Nothing()),  # terminal stays terminal
        ({}, 1, r.Controls(adopt="t9"), r.AdoptTask("t9")),
        (
            {"phase": "Failed", "reason": "AdoptionFailed", "observedGeneration": 1},
            1,
            r.Controls(adopt="t9"),
            r.Nothing(),
        ),
    ],
)
def test_lifecycle_decisions(fields, generation, controls, expected):
    assert r.next_action(status(**fields), generation, NOW, GRACE, controls=controls) == expected


def test_due_times_come_from_status_so_restarts_keep_them():
    assert r.due_at(status(**LIVE_T1), r.Controls(max_duration=300)) == NOW + timedelta(seconds=200)
    assert r.due_at(status(**DONE), r.Controls(ttl=0)) == NOW - timedelta(seconds=100)
    assert r.due_at(status(**LIVE_T1), r.Controls(ttl=5)) is None
    assert r.due_at(status(**DONE), r.Controls(max_duration=60)) is None


def test_orphan_lets_go_at_once():
    assert r.deletion_action(status(**LIVE_T1), NOW, GRACE, orphan=True) == r.Orphan("t1")
    assert r.deletion_action(status(phase="Starting", attempt=attempt(1, 1)), NOW, GRACE, orphan=True) == r.Orphan(None)


def test_halted_keeps_the_task_in_history():
    st = status(**{**LIVE_T1, "phase": "Stopping", "reason": "Suspended", "files": {"hls": ["a.m3u8"]}})
    patch = patches.halted(st, "Suspended", 2, NOW)
    assert (patch["phase"], patch["taskId"], patch["observedGeneration"]) == ("Suspended", None, 2)
    assert patch["history"] == [
        {
            "taskId": "t1",
            "startTime": ago(100),
            "endTime": ago(0),
            "reason": "Suspended",
            "files": {"hls": ["a.m3u8"], "mp4": [], "mp3": [], "vod": []},
        }
    ]
    done = patches.halted(st, "MaxDuration", 2, NOW)
    assert (done["phase"], done["reason"], done["completionTime"]) == ("Completed", "MaxDuration", ago(0))
    many = status(**{**LIVE_T1, "history": [{"taskId": f"h{i}"} for i in range(10)]})
    assert [h["taskId"] for h in patches.history_with(many, "x", NOW)] == [*(f"h{i}" for i in range(1, 10)), "t1"]


@pytest.mark.parametrize(
    "phase, ready, reconciling, stalled",
    [
        ("Pending", "False", "True", "False"),
        ("Starting", "False", "True", "False"),
        ("Recording", "True", "False", "False"),
        ("Recovering", "False", "True", "False"),
        ("Stopping", "False", "True", "False"),
        ("Suspended", "True", "False", "False"),
        ("Completed", "True", "False", "False"),
        ("Failed", "False", "False", "True"),
    ],
)
def test_conditions_kstatus_and_argo_read(phase, ready, reconciling, stalled):
    got = {c["type"]: c["status"] for c in patches.phase_conditions(status(), r.Phase(phase), "Why", "m", 3, NOW)}
    assert got == {"Ready": ready, "Reconciling": reconciling, "Stalled": stalled}


def _combinations():
    """Objects over every phase, with and without task, generation lag, suspend, pending Event,
    deletion and lost attempt: the space a resume may meet."""
    import itertools

    for phase, task, lag, suspend, pending, deleting, attempt in itertools.product(
        [None, *r.Phase], [None, "t-1"], [0, 1], [False, True], [False, True], [False, True], [None, 1]
    ):
        status = {"phase": phase, "taskId": task, "observedGeneration": 2 - lag}
        if attempt:
            status["attempt"] = {"number": attempt, "generation": 1, "startedAt": "2026-11-26T11:00:00Z"}
        if pending:
            status["pendingEvent"] = {"key": "k", "type": "Normal", "reason": "Started", "message": "m"}
        meta = {"generation": 2, **({"deletionTimestamp": "2026-11-26T12:00:00Z"} if deleting else {})}
        yield {"metadata": meta, "spec": {"suspend": suspend}, "status": {k: v for k, v in status.items() if v}}


def test_an_object_at_rest_decides_nothing_on_resume():
    """A resume skipped for `at_rest` objects must be one that would have done nothing; and the
    common restart (Recording and Completed, in sync) is skipped."""
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    skipped = 0
    for obj in _combinations():
        if not r.at_rest(obj):
            continue
        skipped += 1
        assert not obj["status"].get("pendingEvent") and "deletionTimestamp" not in obj["metadata"]
        status = RtcRecordingStatus.model_validate(obj["status"])
        action = r.next_action(status, 2, now, 30, controls=r.Controls.of(obj))
        assert isinstance(action, r.Nothing), (obj, action)
    assert skipped > 0
    assert r.at_rest(
        {"metadata": {"generation": 1}, "status": {"phase": "Recording", "taskId": "t", "observedGeneration": 1}}
    )
    assert r.at_rest({"metadata": {"generation": 1}, "status": {"phase": "Completed", "observedGeneration": 1}})


# -- waiting for participants ----------------------------------------------------------------------
def waiting_status(since_ago: float, attempt_ago: float = 100, n: int = 1) -> RtcRecordingStatus:
    return status(
        phase="Pending",
        reason="WaitingForParticipants",
        attempt=attempt(n, attempt_ago),
        waitingSince=(NOW - timedelta(seconds=since_ago)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


LONG_AGO = NOW - timedelta(hours=1)


@pytest.mark.parametrize(
    "since_ago, sends, controls, expected",
    [
        # This process saw the last send refused: the same attempt again, no write-ahead.
        (60, r.Sends(refused=1, acting_since=LONG_AGO), r.Controls(), r.Resend(1)),
        (899, r.Sends(refused=1, acting_since=LONG_AGO), r.Controls(), r.Resend(1)),
        (900, r.Sends(refused=1, acting_since=LONG_AGO), r.Controls(), r.GiveUp(1)),  # the default deadline
        (61, r.Sends(refused=1, acting_since=LONG_AGO), r.Controls(start_deadline=60), r.GiveUp(1)),
        (60, r.Sends(refused=1, acting_since=LONG_AGO), r.Controls(suspend=True), r.Suspend()),
        # A send on its way, or one whose answer was lost: like any lost answer, from that send.
        (60, r.Sends(last=NOW - timedelta(seconds=5), acting_since=LONG_AGO), r.Controls(), r.AwaitOutcome(1, 25.0)),
        (60, r.Sends(last=NOW - timedelta(seconds=31), acting_since=LONG_AGO), r.Controls(), r.Start(2)),
        # Another process sent it (a restart): its last send came before this one began acting.
        (60, r.Sends(acting_since=NOW - timedelta(seconds=10)), r.Controls(), r.AwaitOutcome(1, 20.0)),
        (60, r.Sends(acting_since=LONG_AGO), r.Controls(), r.Start(2)),
        (901, r.Sends(acting_since=LONG_AGO), r.Controls(), r.GiveUp(1)),
        (901, r.Sends(acting_since=NOW - timedelta(seconds=10)), r.Controls(), r.AwaitOutcome(1, 20.0)),
        # Refused memory of an older attempt proves nothing about this one.
        (60, r.Sends(refused=7, acting_since=NOW - timedelta(seconds=10)), r.Controls(), r.AwaitOutcome(1, 20.0)),
    ],
)
def test_waiting_for_participants(since_ago, sends, controls, expected):
    assert r.next_action(waiting_status(since_ago), 1, NOW, GRACE, controls=controls, sends=sends) == expected


def test_only_the_refusal_this_process_saw_lets_a_deletion_go_at_once():
    s = waiting_status(60)
    assert r.deletion_action(s, NOW, GRACE, sends=r.Sends(refused=1, acting_since=LONG_AGO)) == r.Nothing()
    unknown = r.Sends(last=NOW - timedelta(seconds=5), acting_since=LONG_AGO)
    assert r.deletion_action(s, NOW, GRACE, sends=unknown) == r.AwaitOutcome(1, 25.0)
    restarted = r.Sends(acting_since=NOW - timedelta(seconds=1))
    assert r.deletion_action(s, NOW, GRACE, sends=restarted) == r.AwaitOutcome(1, 29.0)
    assert r.deletion_action(s, NOW, GRACE, sends=r.Sends(acting_since=LONG_AGO)) == r.Release(1)


def test_a_refusal_only_counts_while_status_says_waiting():
    # A plain Starting attempt with a refusal remembered (status not yet written): an answer unknown.
    s = status(phase="Starting", attempt=attempt(1, 5))
    assert r.next_action(s, 1, NOW, GRACE, sends=r.Sends(refused=1, acting_since=LONG_AGO)) == r.AwaitOutcome(1, 25.0)


def test_waiting_patches():
    s = status(phase="Starting", attempt=attempt(1, 1))
    patch = patches.waiting_for_participants(s, "room-1", 900, 1, NOW)
    assert (patch["phase"], patch["reason"], patch["waitingSince"]) == (
        "Pending",
        "WaitingForParticipants",
        "2026-11-26T12:00:00Z",
    )
    assert "room-1" in patch["message"] and "2026-11-26T12:15:00Z" in patch["message"]
    assert "attempt" not in patch  # pending still: this process sends it again
    waiting = status(**{**s.model_dump(by_alias=True, mode="json", exclude_none=True), **patch})
    # A new attempt (after a restart) keeps saying it waits, and since when.
    ahead = patches.attempt_recorded(waiting, 2, 1, NOW + timedelta(seconds=60))
    assert set(ahead) == {"taskId", "attempt"} and ahead["attempt"]["number"] == 2
    assert patches.waiting_for_participants(waiting, "room-1", 900, 1, NOW)["waitingSince"] == "2026-11-26T12:00:00Z"
    # Once recording, or starting afresh, the wait is over.
    assert patches.started(waiting, "t1", 1, NOW)["waitingSince"] is None
    failed = status(phase="Failed", reason="NoParticipants", waitingSince="2026-11-26T11:00:00Z")
    assert patches.attempt_recorded(failed, 3, 2, NOW)["waitingSince"] is None
    gave_up = patches.no_participants(waiting, 900, 1, NOW)
    assert (gave_up["phase"], gave_up["reason"], gave_up["attempt"]) == (
        "Failed",
        "NoParticipants",
        {"notExecuted": True},
    )


# -- restartPolicy OnFailure ------------------------------------------------------------------------
def ended(reason: str, seconds_ago: float, restarts: int = 0, phase: str | None = None) -> RtcRecordingStatus:
    phase = phase or ("Failed" if reason == "TaskLost" else "Completed")
    completed = (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return status(
        phase=phase, reason=reason, taskId="t1", observedGeneration=1, completionTime=completed, restarts=restarts
    )


ON_FAILURE = r.Controls(restart=True)


@pytest.mark.parametrize(
    "given, controls, expected",
    [
        (ended("TaskLost", 10), ON_FAILURE, r.Restart()),  # 10 s after the first end
        (ended("TaskLost", 9), ON_FAILURE, r.Nothing()),
        (ended("CloudMaxDuration", 10), ON_FAILURE, r.Restart()),  # the 72-hour limit
        (ended("TaskLost", 39, restarts=2), ON_FAILURE, r.Nothing()),  # 40 s after the third
        (ended("TaskLost", 40, restarts=2), ON_FAILURE, r.Restart()),
        (ended("TaskLost", 299, restarts=5), ON_FAILURE, r.Nothing()),  # capped at 300 s
        (ended("TaskLost", 0, restarts=6), ON_FAILURE, r.BackoffLimitExceeded()),  # the default limit
        (ended("TaskLost", 0), r.Controls(restart=True, backoff_limit=0), r.BackoffLimitExceeded()),
        # What the user or the meeting ended is never restarted.
        (ended("IdleTimeout", 1000), ON_FAILURE, r.Nothing()),
        (ended("MaxDuration", 1000), ON_FAILURE, r.Nothing()),
        (ended("BackoffLimitExceeded", 1000, restarts=6, phase="Failed"), ON_FAILURE, r.Nothing()),
        # restartPolicy Never: as before.
        (ended("TaskLost", 1000), r.Controls(), r.Nothing()),
        (ended("TaskLost", 1000), r.Controls(ttl=60), r.Expire()),
    ],
)
def test_restart_on_failure(given, controls, expected):
    assert r.next_action(given, 1, NOW, GRACE, controls=controls) == expected


def test_a_restart_is_due_from_status_and_the_ttl_waits_for_the_last_task():
    lost = ended("TaskLost", 0, restarts=1)
    assert r.due_at(lost, r.Controls(restart=True, ttl=5)) == NOW + timedelta(seconds=20)
    gave_up = ended("BackoffLimitExceeded", 0, restarts=6, phase="Failed")
    assert r.due_at(gave_up, r.Controls(restart=True, ttl=5)) == NOW + timedelta(seconds=5)


def test_restarting_patches():
    lost = status(
        phase="Failed",
        reason="TaskLost",
        taskId="t1",
        restarts=1,
        attempt={"number": 3},
        startTime="2026-11-26T11:00:00Z",
        completionTime="2026-11-26T11:59:50Z",
        history=[{"taskId": "t1", "reason": "TaskLost"}],
    )
    patch = patches.restarting(lost, 6, 1, NOW)
    assert (patch["phase"], patch["reason"], patch["restarts"], patch["taskId"]) == ("Pending", "Restarting", 2, None)
    assert patch["attempt"] == {"notExecuted": True}  # its outcome is known: the next attempt starts at once
    assert "restart 2 of 6" in patch["message"] and "history" not in patch  # the ended task is in history already
    after = status(**merge_patch(lost.model_dump(by_alias=True, mode="json", exclude_none=True), patch))
    assert r.next_action(after, 1, NOW, GRACE, controls=ON_FAILURE) == r.Start(4)
    exceeded = patches.backoff_limit_exceeded(lost, 1, 1, NOW)
    assert (exceeded["phase"], exceeded["reason"]) == ("Failed", "BackoffLimitExceeded")
