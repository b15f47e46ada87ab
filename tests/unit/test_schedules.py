"""schedules.py with an injected clock: next times in a time zone, catch-up within
startingDeadlineSeconds, the concurrency policies, history limits, one name per scheduled time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rtc_recording.api import names
from rtc_recording.decide import schedules
from rtc_recording.decide.schedules import Decision, InvalidSchedule, Run, decide

UTC = UTC
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # a Monday
CREATED = T0 - timedelta(days=7)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def spec(**kw) -> dict:
    return {"schedule": "*/10 * * * *", "template": {"spec": {"appId": "a"}}, **kw}


def run(name: str, phase: str | None, minutes: float) -> Run:
    return Run(name, f"uid-{name}", phase, at(minutes))


def test_next_times_follow_the_time_zone_across_daylight_saving():
    # 09:00 in Berlin every Monday: 08:00 UTC in winter, 07:00 UTC after the switch on 29 March 2026
    assert schedules.next_after("0 9 * * 1", "Europe/Berlin", T0) == datetime(2026, 3, 9, 8, 0, tzinfo=UTC)
    assert schedules.next_after("0 9 * * 1", "Europe/Berlin", datetime(2026, 3, 28, tzinfo=UTC)) == datetime(
        2026, 3, 30, 7, 0, tzinfo=UTC
    )
    assert schedules.next_after("*/20 * * * * *", None, T0) == T0 + timedelta(seconds=20)  # seconds first


@pytest.mark.parametrize("expression, zone", [("every monday", None), ("* * * *", None), ("0 9 * * 1", "Mars/Olympus")])
def test_invalid_schedules(expression, zone):
    with pytest.raises(InvalidSchedule):
        schedules.next_after(expression, zone, T0)


def test_nothing_due():
    d = decide(spec(), {"lastScheduleTime": "2026-03-02T08:00:00Z"}, CREATED, [], at(5))
    assert d.start is None and d.next_schedule_time == at(10) and d.wake_at == at(10)


def test_a_due_run_starts_and_the_name_is_the_scheduled_time():
    d = decide(spec(), {"lastScheduleTime": "2026-03-02T08:00:00Z"}, CREATED, [], at(10.5))
    assert d.start == at(10) and d.last_schedule_time == at(10) and d.next_schedule_time == at(20)
    assert schedules.run_name("weekly", d.start) == f"weekly-{int(at(10).timestamp())}"


def test_catch_up_after_a_restart_runs_the_latest_missed_time_once():
    # The operator was down from 08:05 to 08:47: 08:10 ... 08:40 were due; 08:40 runs, the rest is superseded.
    d = decide(spec(), {"lastScheduleTime": "2026-03-02T08:00:00Z"}, CREATED, [], at(47))
    assert (d.start, d.missed, d.next_schedule_time) == (at(40), 3, at(50))
    # After the create (and its status write), deciding again starts nothing: no double run.
    again = decide(spec(), {"lastScheduleTime": "2026-03-02T08:40:00Z"}, CREATED, [run("r", None, 40)], at(47))
    assert again.start is None


def test_catch_up_respects_starting_deadline_seconds():
    late = decide(spec(startingDeadlineSeconds=300), {"lastScheduleTime": "2026-03-02T08:00:00Z"}, CREATED, [], at(47))
    assert late.start is None and late.missed == 4 and late.last_schedule_time == at(40)
    in_time = decide(
        spec(startingDeadlineSeconds=600), {"lastScheduleTime": "2026-03-02T08:00:00Z"}, CREATED, [], at(47)
    )
    assert in_time.start == at(40)


def test_a_new_schedule_starts_from_its_creation():
    d = decide(spec(), {}, at(3), [], at(11))
    assert d.start == at(10)
    assert decide(spec(), {}, at(3), [], at(9)).start is None


def test_forbid_waits_for_the_active_run_within_the_deadline():
    active = [run("prev", "Recording", 0)]
    d = decide(
        spec(startingDeadlineSeconds=120), {"lastScheduleTime": "2026-03-02T08:00:00Z"}, CREATED, active, at(10.5)
    )
    assert d.start is None and "waits for prev" in d.message
    assert d.last_schedule_time == at(0) and d.next_schedule_time == at(10)  # the waiting run is not counted yet
    assert d.wake_at <= at(12) + timedelta(seconds=1)
    done = [run("prev", "Completed", 0)]
    assert decide(
        spec(startingDeadlineSeconds=120), {"lastScheduleTime": "2026-03-02T08:00:00Z"}, CREATED, done, at(11)
    ).start == at(10)


def test_replace_deletes_the_active_run_and_allow_keeps_it():
    active = [run("prev", "Recording", 0)]
    d = decide(spec(concurrencyPolicy="Replace"), {"lastScheduleTime": "2026-03-02T08:00:00Z"}, CREATED, active, at(10))
    assert d.start == at(10) and d.replace == ("prev",)
    d = decide(spec(concurrencyPolicy="Allow"), {"lastScheduleTime": "2026-03-02T08:00:00Z"}, CREATED, active, at(10))
    assert d.start == at(10) and d.replace == ()


def test_suspend_starts_nothing():
    d = decide(spec(suspend=True), {"lastScheduleTime": "2026-03-02T08:00:00Z"}, CREATED, [], at(30))
    assert d == Decision(message="suspended", last_schedule_time=at(0))


def test_history_limits_delete_the_oldest_finished_runs():
    runs = [run(f"ok{i}", "Completed", i * 10) for i in range(5)] + [run(f"bad{i}", "Failed", i) for i in range(3)]
    runs.append(run("live", "Recording", 60))
    assert schedules.history_to_delete(runs, {}) == ("ok0", "ok1", "bad0", "bad1")
    assert schedules.history_to_delete(runs, {"successfulRunsHistoryLimit": 0, "failedRunsHistoryLimit": 3}) == (
        "ok0",
        "ok1",
        "ok2",
        "ok3",
        "ok4",
    )


def test_the_recording_of_a_run():
    schedule = {
        "apiVersion": "rtc.recording.io/v1alpha1",
        "kind": "RtcRecordingSchedule",
        "metadata": {"name": "weekly", "namespace": "team", "uid": "u-1"},
        "spec": {
            **spec(durationSeconds=3600),
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"appId": "a", "maxDurationSeconds": 60}},
        },
    }
    rec = schedules.recording_for(schedule, at(10))
    assert rec["metadata"]["name"] == f"weekly-{int(at(10).timestamp())}"
    assert rec["metadata"]["labels"] == {"a": "b", names.SCHEDULE_LABEL: "weekly"}
    assert rec["metadata"]["annotations"][names.SCHEDULED_AT_ANNOTATION] == "2026-03-02T08:10:00Z"
    assert rec["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert rec["spec"]["maxDurationSeconds"] == 3600  # durationSeconds wins
    assert schedule["spec"]["template"]["spec"]["maxDurationSeconds"] == 60  # the schedule is not changed
    assert rec["spec"]["startDeadlineSeconds"] == 3600  # waits for participants as long as the meeting lasts
    schedule["spec"]["template"]["spec"]["startDeadlineSeconds"] = 300
    assert schedules.recording_for(schedule, at(10))["spec"]["startDeadlineSeconds"] == 300  # the template's own


def test_status_patch_lists_the_active_runs():
    runs = [run("a", "Recording", 0), run("b", "Completed", 0), run("c", "Recording", 0)]
    d = Decision(start=at(10), last_schedule_time=at(10), next_schedule_time=at(20), replace=("c",))
    patch = schedules.status_patch(d, runs, 2, started="d")
    assert patch["active"] == [{"name": "a", "uid": "uid-a"}, {"name": "d"}]
    assert (patch["lastScheduleTime"], patch["nextScheduleTime"]) == ("2026-03-02T08:10:00Z", "2026-03-02T08:20:00Z")
    # A decision with nothing to say clears what an earlier one said ("could not create ..." of a refused run).
    assert patch["message"] is None
    assert schedules.status_patch(Decision(message="suspended"), runs, 2)["message"] == "suspended"


def test_a_run_created_before_a_crash_is_that_run_not_an_active_one():
    existing = [run("r", "Recording", 40)]  # created, then the status write was lost
    d = decide(spec(), {"lastScheduleTime": "2026-03-02T08:00:00Z"}, CREATED, existing, at(47))
    assert d.start is None and d.last_schedule_time == at(40) and "exists already" in d.message


def test_ready_says_why_runs_cannot_start_and_names_no_time():
    assert schedules.readiness(spec(), None) == (True, "Scheduled", "runs start on '*/10 * * * *' (UTC)")
    assert schedules.readiness(spec(suspend=True), "gone")[:2] == (True, "Suspended")  # as asked: Ready
    ready, reason, message = schedules.readiness(spec(), "gold")
    assert (ready, reason) == (False, "ClassNotFound") and "RtcRecordingClass gold" in message


def test_conditions_keep_their_transition_time_so_a_tick_writes_nothing_new():
    first = schedules.status_conditions({}, (True, "Scheduled", "m"), 1, at(0))
    assert [(c["type"], c["status"]) for c in first] == [("Ready", "True"), ("Stalled", "False")]
    again = schedules.status_conditions({"conditions": first}, (True, "Scheduled", "m"), 1, at(10))
    assert again == first
    invalid = schedules.status_conditions({"conditions": first}, (False, "InvalidSchedule", "bad"), 2, at(20))
    assert [(c["status"], c["reason"], c["lastTransitionTime"]) for c in invalid] == [
        ("False", "InvalidSchedule", "2026-03-02T08:20:00Z"),
        ("False", "InvalidSchedule", "2026-03-02T08:00:00Z"),  # Stalled stayed False
    ]
    stalled = schedules.status_conditions({"conditions": first}, (False, "InvalidSchedule", "bad"), 2, at(20), True)
    assert stalled[1]["status"] == "True" and stalled[1]["message"] == "bad" and stalled[0]["observedGeneration"] == 2
