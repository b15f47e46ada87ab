"""RtcRecordingSchedule: pure decisions (when the next run is due, whether to start it now, which
finished runs to delete). No I/O: `controller/scheduler.py` reads the schedule and its runs, asks `decide`,
creates and deletes RtcRecordings, and writes status.

Times come from croniter (a maintained cron library): `schedule` has five fields (minute hour day
month weekday), or six with seconds first (Quartz style: "*/20 * * * * *"), in `timeZone` (an IANA
name read with zoneinfo; default UTC). Every decision takes `now`: the unit tests inject a clock, and
the operator's is the wall clock.

Exactly one run per scheduled time:
- A run's name is derived from its scheduled time (`run_name`): a create repeated after a crash,
  or by a second operator, is answered 409 by the apiserver and taken as done.
- lastScheduleTime is written after the create; the next decision looks for scheduled times after
  it, so an operator that was down catches up on start-up: the most recent scheduled time that is
  not older than startingDeadlineSeconds (any, when unset) is run, once; earlier ones it supersedes
  (the same channel cannot be recorded twice at once) and are counted as missed.
- concurrencyPolicy Forbid (the default) waits while a run is active (not Completed or Failed) and
  starts the due run when it finishes, still within the deadline; Replace deletes the active runs
  (their tasks stop through the normal delete path) and then starts; Allow starts regardless.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from rtc_recording.api import timestamps
from rtc_recording.api.names import SCHEDULE_LABEL, SCHEDULED_AT_ANNOTATION
from rtc_recording.api.recording import TERMINAL, Phase
from rtc_recording.decide import conditions
from rtc_recording.decide.classes import Reason as ClassReason

LOOKBACK_RUNS = 1000  # scheduled times examined per decision at most (a schedule idle for long)


class Reason(StrEnum):
    """A schedule's Ready reasons and Events (docs/troubleshooting.md)."""

    SCHEDULED = "Scheduled"
    SUSPENDED = "Suspended"
    INVALID_SCHEDULE = "InvalidSchedule"
    CLASS_NOT_FOUND = ClassReason.NOT_FOUND
    RUN_NOT_CREATED = "RunNotCreated"
    STARTED = "Started"  # Events
    REPLACED = "Replaced"


class InvalidSchedule(ValueError):
    pass


def _cron(expression: str, start: datetime) -> croniter:
    seconds = len(expression.split()) == 6
    if not croniter.is_valid(expression, second_at_beginning=seconds):
        raise InvalidSchedule(
            f"spec.schedule {expression!r} is not a cron expression (5 fields, or 6 with seconds first)"
        )
    return croniter(expression, start, second_at_beginning=seconds)


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidSchedule(f"spec.timeZone {name!r} is not a time zone name (such as Europe/Berlin)") from None


def next_after(expression: str, time_zone: str | None, after: datetime) -> datetime:
    """The first scheduled time strictly after `after` (UTC)."""
    start = after.astimezone(zone(time_zone))
    return _cron(expression, start).get_next(datetime).astimezone(UTC)


def scheduled_between(expression: str, time_zone: str | None, after: datetime, until: datetime) -> list[datetime]:
    """Scheduled times t with after < t <= until (UTC), the latest LOOKBACK_RUNS at most."""
    it = _cron(expression, until.astimezone(zone(time_zone)) + timedelta(microseconds=1))
    times: list[datetime] = []
    while len(times) < LOOKBACK_RUNS:
        t = it.get_prev(datetime).astimezone(UTC)
        if t <= after:
            break
        times.append(t)
    return sorted(times)


def run_name(schedule: str, at: datetime) -> str:
    """The RtcRecording of the run scheduled at `at`: the same name for the same time, always."""
    return f"{schedule}-{int(at.timestamp())}"


@dataclass(frozen=True)
class Run:
    name: str
    uid: str
    phase: str | None
    scheduled_at: datetime | None
    created: str = ""
    deleting: bool = False

    @property
    def active(self) -> bool:
        return self.phase not in TERMINAL and not self.deleting

    @classmethod
    def of(cls, obj: dict) -> Run:
        meta = obj["metadata"]
        at = (meta.get("annotations") or {}).get(SCHEDULED_AT_ANNOTATION)
        return cls(
            meta["name"],
            meta["uid"],
            (obj.get("status") or {}).get("phase"),
            parse_time(at) if at else None,
            meta.get("creationTimestamp") or "",
            bool(meta.get("deletionTimestamp")),
        )


@dataclass(frozen=True)
class Decision:
    start: datetime | None = None  # create the run scheduled at this time
    delete: tuple[str, ...] = ()  # runs to delete first (Replace) or after (history limits)
    last_schedule_time: datetime | None = None
    next_schedule_time: datetime | None = None
    wake_at: datetime | None = None  # when to decide again
    missed: int = 0  # scheduled times superseded or past their deadline
    message: str = ""
    replace: tuple[str, ...] = field(default=())  # active runs deleted because of Replace


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return timestamps.parse(value)


def format_time(value: datetime | None) -> str | None:
    return timestamps.stamp(value) if value else None


FORBID_RECHECK = timedelta(seconds=30)  # a Forbid wait also ends when a run's phase changes (a watch event)


def decide(spec: dict[str, Any], status: dict[str, Any], created: datetime, runs: list[Run], now: datetime) -> Decision:
    """What to do for one schedule now. `created` is its creationTimestamp (the start of time for a
    schedule that never ran); `runs` its RtcRecordings."""
    expression, tz = spec["schedule"], spec.get("timeZone")
    last = parse_time(status.get("lastScheduleTime"))
    trimmed = history_to_delete(runs, spec)
    if spec.get("suspend"):
        return Decision(
            delete=trimmed, last_schedule_time=last, next_schedule_time=None, wake_at=None, message="suspended"
        )
    upcoming = next_after(expression, tz, now)
    due = scheduled_between(expression, tz, last or created, now)
    if not due:
        return Decision(delete=trimmed, last_schedule_time=last, next_schedule_time=upcoming, wake_at=upcoming)
    base = Decision(delete=trimmed, last_schedule_time=last, next_schedule_time=upcoming, wake_at=upcoming)
    return _for_latest(spec, due, runs, now, base)


def _for_latest(spec: dict[str, Any], due: list[datetime], runs: list[Run], now: datetime, base: Decision) -> Decision:
    """The latest scheduled time that fell due is the one run to start (the earlier ones are superseded),
    unless it is too late, exists already, or must wait for an active run (Forbid)."""
    latest, missed = due[-1], len(due) - 1
    deadline = spec.get("startingDeadlineSeconds")
    policy = spec.get("concurrencyPolicy") or "Forbid"
    at = format_time(latest)
    if deadline is not None and (now - latest).total_seconds() > deadline:
        # Too late even for the latest: count them all missed and wait for the next.
        message = f"missed the run of {at}: more than startingDeadlineSeconds ({deadline}) late"
        return replace(base, last_schedule_time=latest, missed=len(due), message=message)
    if any(r.scheduled_at == latest for r in runs):
        # Created before a crash that lost the status write: this is that run, not another.
        return replace(base, last_schedule_time=latest, missed=missed, message=f"the run of {at} exists already")
    active = [r for r in runs if r.active]
    if active and policy == "Forbid":
        expiry = latest + timedelta(seconds=deadline + 1) if deadline is not None else None
        wake = min(t for t in (now + FORBID_RECHECK, expiry, base.wake_at) if t)
        message = f"the run of {at} waits for {active[0].name} to finish (concurrencyPolicy Forbid)"
        return replace(base, next_schedule_time=latest, wake_at=wake, missed=missed, message=message)
    superseded = f" ({missed} earlier scheduled time(s) superseded)" if missed else ""
    return replace(
        base,
        start=latest,
        last_schedule_time=latest,
        missed=missed,
        replace=tuple(r.name for r in active) if policy == "Replace" else (),
        message=f"started the run of {at}{superseded}",
    )


def history_to_delete(runs: list[Run], spec: dict[str, Any]) -> tuple[str, ...]:
    """Finished runs beyond the history limits, oldest first (Completed and Failed counted apart)."""
    out: list[str] = []
    for phase, key, default in (
        (Phase.COMPLETED, "successfulRunsHistoryLimit", 3),
        (Phase.FAILED, "failedRunsHistoryLimit", 1),
    ):
        limit = spec.get(key, default)
        done = sorted(
            (r for r in runs if r.phase == phase and not r.deleting),
            key=lambda r: (r.scheduled_at or datetime.min.replace(tzinfo=UTC), r.created, r.name),
        )
        out += [r.name for r in done[: max(len(done) - limit, 0)]]
    return tuple(out)


def recording_for(schedule: dict, at: datetime, name: str | None = None) -> dict:
    """The RtcRecording of one run: the template, owned by the schedule (deleting the schedule deletes
    it, and so stops its task), labelled with the schedule and annotated with the scheduled time."""
    meta, spec = schedule["metadata"], schedule["spec"]
    template = copy.deepcopy(spec["template"])
    run_meta = template.get("metadata") or {}
    run_spec = template["spec"]
    if spec.get("durationSeconds") is not None:
        run_spec["maxDurationSeconds"] = spec["durationSeconds"]
        # Waiting for participants longer than the meeting lasts records nothing anyway.
        run_spec.setdefault("startDeadlineSeconds", spec["durationSeconds"])
    return {
        "apiVersion": "rtc.recording.io/v1alpha1",
        "kind": "RtcRecording",
        "metadata": {
            "name": name or run_name(meta["name"], at),
            "namespace": meta["namespace"],
            "labels": {**(run_meta.get("labels") or {}), SCHEDULE_LABEL: meta["name"]},
            "annotations": {**(run_meta.get("annotations") or {}), SCHEDULED_AT_ANNOTATION: format_time(at)},
            "ownerReferences": [
                {
                    "apiVersion": schedule.get("apiVersion", "rtc.recording.io/v1alpha1"),
                    "kind": "RtcRecordingSchedule",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": run_spec,
    }


def status_patch(decision: Decision, runs: list[Run], generation: int, started: str | None = None) -> dict:
    """status after a decision: active runs (as the decision leaves them), the times, and what happened."""
    gone = set(decision.delete) | set(decision.replace)
    active = [{"name": r.name, "uid": r.uid} for r in runs if r.active and r.name not in gone]
    if started and started not in {a["name"] for a in active}:
        active.append({"name": started})
    patch: dict[str, Any] = {
        "active": active or None,
        "observedGeneration": generation,
        "nextScheduleTime": format_time(decision.next_schedule_time),
    }
    if decision.last_schedule_time is not None:
        patch["lastScheduleTime"] = format_time(decision.last_schedule_time)
    patch["message"] = decision.message or None  # null: a message of an earlier decision (a refused run) goes
    return patch


def readiness(spec: dict[str, Any], missing_class: str | None) -> conditions.State:
    """The Ready condition of a schedule that parsed. No times in it: it changes when the schedule's
    state does, never per run, so it costs no status write of its own. Suspended is Ready, as asked
    (as an RtcRecording's Suspended is: kstatus would read False as in progress for ever)."""
    if spec.get("suspend"):
        return True, Reason.SUSPENDED, "spec.suspend is true: no new runs start"
    if missing_class:
        return (
            False,
            Reason.CLASS_NOT_FOUND,
            f"RtcRecordingClass {missing_class} (spec.template.spec.recordingClassName) does not exist; "
            "each run waits for it",
        )
    return True, Reason.SCHEDULED, f"runs start on {spec['schedule']!r} ({spec.get('timeZone') or 'UTC'})"


def status_conditions(
    status: dict[str, Any], ready: conditions.State, generation: int, now: datetime, stalled: bool = False
) -> list[dict]:
    """status.conditions: Ready, and Stalled (True only for what a person must fix: an invalid schedule)."""
    return conditions.conditions(
        status.get("conditions"), conditions.ready_and_stalled(*ready, stalled=stalled), generation, now
    )
