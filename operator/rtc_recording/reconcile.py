"""Pure decisions: (status, generation, what the cloud said, now) -> action and status patch.

No I/O here. The handlers, the poller and the callback receiver each read an object,
ask one of these functions what to do, act, and write the returned status patch with a
resourceVersion precondition. So every rule about phases lives in this one module.

The resume logic tells three situations apart by the status alone:
  never called      no `attempt`, no `taskId`
  answer unknown    `attempt` recorded, no `taskId` (crash or lost answer after Start)
  have the task     `taskId`
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from .cloud import CloudError, RecordFiles, TaskInfo, TaskStatus
from .resource import RtcRecordingStatus, status_of


class Phase(StrEnum):
    PENDING = "Pending"
    STARTING = "Starting"
    RECORDING = "Recording"
    RECOVERING = "Recovering"
    STOPPING = "Stopping"
    COMPLETED = "Completed"
    FAILED = "Failed"


TERMINAL = frozenset({Phase.COMPLETED, Phase.FAILED})
LIVE = frozenset({Phase.RECORDING, Phase.RECOVERING, Phase.STOPPING})

STRAY_IDS_KEPT = 20  # status.strayTaskIds: enough to silence late callbacks of recent strays

# The service stops every task after 72 hours, whatever else happens.
CLOUD_MAX_TASK_AGE = timedelta(hours=72)


class Reason(StrEnum):
    STARTED = "Started"
    UNKNOWN_OUTCOME = "UnknownOutcome"
    IDLE_TIMEOUT = "IdleTimeout"
    MAX_DURATION = "CloudMaxDuration"
    TASK_LOST = "TaskLost"
    RECOVERING = "Recovering"
    STOPPED = "StoppedByCloud"
    UPDATED = "Updated"


# -- actions ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Start:
    attempt: int


@dataclass(frozen=True)
class AwaitOutcome:
    """A Start may have created a task we do not know yet: wait for the callback naming it."""
    attempt: int
    seconds: float


@dataclass(frozen=True)
class Update:
    task_id: str


@dataclass(frozen=True)
class Stop:
    task_id: str


@dataclass(frozen=True)
class Nothing:
    pass


Action = Start | AwaitOutcome | Update | Stop | Nothing


@dataclass(frozen=True)
class Cloud:
    """What the decisions need to know of the cloud's reachability (`reachability.py`)."""
    up: bool = True
    back_since: datetime | None = None  # when it last answered again after an outage
    recheck: float = 2.0  # how soon to look again while waiting on the cloud or on evidence


def _answer_unknown(status: RtcRecordingStatus, now: datetime, grace: float, cloud: Cloud,
                    evidence_waiting: bool) -> AwaitOutcome | None:
    """Wait for the lost answer's callbacks: not while evidence of its task awaits confirmation,
    not while the cloud answers nothing, and for the grace period counted from when its
    callbacks could first arrive (the attempt, or the cloud's return, whichever is later)."""
    attempt = status.attempt
    assert attempt is not None and attempt.started_at is not None
    if evidence_waiting or not cloud.up:
        return AwaitOutcome(attempt.number, cloud.recheck)
    since = max(attempt.started_at, cloud.back_since) if cloud.back_since else attempt.started_at
    waited = (now - since).total_seconds()
    return AwaitOutcome(attempt.number, grace - waited) if waited < grace else None


def next_action(status: RtcRecordingStatus, generation: int, now: datetime, grace: float,
                cloud: Cloud = Cloud(), evidence_waiting: bool = False) -> Action:
    """What create, resume and spec updates should do."""
    phase = status.phase
    if phase == Phase.COMPLETED:
        return Nothing()  # a finished recording is never restarted behind the user's back
    if phase == Phase.FAILED:
        # A refused Start is retried only when the user changes the spec.
        if status.task_id is None and (status.observed_generation or 0) < generation:
            return Start(attempt=_next_attempt(status))
        return Nothing()
    if status.task_id:
        if (status.observed_generation or 0) < generation and phase in LIVE:
            return Update(status.task_id)
        return Nothing()
    if status.attempt is None:
        return Start(attempt=1)
    if status.attempt.not_executed:
        return Start(attempt=status.attempt.number + 1)  # the service said no: nothing to wait for
    return _answer_unknown(status, now, grace, cloud, evidence_waiting) or Start(attempt=status.attempt.number + 1)


@dataclass(frozen=True)
class Release:
    """Let go of a deleted resource whose last Start answer is unknown: clear the attempt with a
    compare-and-swap, so that an adoption racing with it fails and stops the task instead."""
    attempt: int


def deletion_action(status: RtcRecordingStatus, now: datetime, grace: float, cloud: Cloud = Cloud(),
                    evidence_waiting: bool = False) -> Action | Release:
    if status.task_id:
        return Stop(status.task_id)  # whatever the phase: Stop is idempotent, a leak is not
    attempt = status.attempt
    if attempt is None or attempt.not_executed:
        return Nothing()
    # Wait for the callback naming the task while the resource (and its credentials) still exist.
    return _answer_unknown(status, now, grace, cloud, evidence_waiting) or Release(attempt.number)


def _next_attempt(status: RtcRecordingStatus) -> int:
    return (status.attempt.number if status.attempt else 0) + 1


# -- status patches ------------------------------------------------------------------------------
def _ts(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(status: RtcRecordingStatus, type_: str, state: bool, reason: str, message: str,
              generation: int, now: datetime) -> list[dict[str, Any]]:
    """The whole conditions list with one condition set; lastTransitionTime moves only on change."""
    value = "True" if state else "False"
    conditions = [c.model_dump(by_alias=True, mode="json", exclude_none=True)
                  for c in status.conditions if c.type != type_]
    old = next((c for c in status.conditions if c.type == type_), None)
    since = _ts(old.last_transition_time) if old and old.status == value else _ts(now)
    conditions.append({"type": type_, "status": value, "reason": reason, "message": message,
                       "observedGeneration": generation, "lastTransitionTime": since})
    return sorted(conditions, key=lambda c: c["type"])


def attempt_recorded(status: RtcRecordingStatus, attempt: int, generation: int, now: datetime) -> dict:
    """Written (compare-and-swap) before Start is called."""
    retry = attempt > 1 and status.phase != Phase.FAILED
    message = (f"attempt {attempt}: the answer to attempt {attempt - 1} was lost and no callback named its task"
               if retry else f"calling StartRtcCloudRecording (attempt {attempt})")
    return {
        "phase": Phase.STARTING, "reason": Reason.UNKNOWN_OUTCOME if retry else None, "message": message,
        "taskId": None,
        "attempt": {"number": attempt, "startedAt": _ts(now), "generation": generation, "notExecuted": None},
        "conditions": condition(status, "Ready", False, "Starting", message, generation, now),
    }


def started(status: RtcRecordingStatus, task_id: str, generation: int, now: datetime) -> dict:
    message = f"recording as task {task_id}"
    return {
        "phase": Phase.RECORDING, "reason": Reason.STARTED, "message": message, "taskId": task_id,
        "startTime": _ts(now), "completionTime": None, "observedGeneration": generation,
        "conditions": condition(status, "Ready", True, Reason.STARTED, message, generation, now),
    }


def start_refused(status: RtcRecordingStatus, code: str, message: str, generation: int, now: datetime) -> dict:
    """A permanent refusal (by the cloud, or by a check only the operator can make): no task
    exists, and none is tried again until the user changes the spec."""
    return {
        "phase": Phase.FAILED, "reason": code, "message": message, "observedGeneration": generation,
        # metav1.Condition reasons are CamelCase words; the vendor's dotted code is in status.reason.
        "conditions": condition(status, "Ready", False, "StartRefused", message, generation, now),
    }


def start_not_executed(status: RtcRecordingStatus, error: CloudError, generation: int, now: datetime) -> dict:
    """Throttled, or a failure the service answered: no task was started."""
    message = f"will retry StartRtcCloudRecording: {error.code}: {error.message}"
    return {
        # The number stays taken: a late callback can never be mistaken for a later attempt's.
        "phase": Phase.PENDING, "reason": error.code, "message": message, "attempt": {"notExecuted": True},
        "conditions": condition(status, "Ready", False, "StartRetrying", message, generation, now),
    }


def updated(status: RtcRecordingStatus, generation: int, now: datetime) -> dict:
    return {
        "observedGeneration": generation, "reason": Reason.UPDATED,
        "message": f"subscribers and layout of generation {generation} applied to task {status.task_id}",
        "conditions": condition(status, "Synced", True, Reason.UPDATED, "spec applied", generation, now),
    }


def update_refused(status: RtcRecordingStatus, code: str, message: str, generation: int, now: datetime) -> dict:
    """The task keeps recording with its previous subscribers and layout, so observedGeneration
    stays where it was; Synced=False (with this generation) says the change was refused."""
    return {
        "reason": code, "message": message,
        "conditions": condition(status, "Synced", False, "UpdateRefused", message, generation, now),
    }


def observed(status: RtcRecordingStatus, info: TaskInfo | None, generation: int, now: datetime,
             stop_reason: str | None = None) -> dict | None:
    """Map what Describe (or a verified callback) says onto status; None when nothing changes.

    `info` None means the cloud no longer knows the task: TaskLost, never a silent restart.
    """
    if status.phase in TERMINAL or not status.task_id:
        return None
    if info is None:
        message = f"the cloud no longer knows task {status.task_id}; create a new RtcRecording to record again"
        return _finished(status, Phase.FAILED, Reason.TASK_LOST, message, generation, now)
    patch: dict[str, Any] = {}
    files = files_status(info.files)
    if files != (status.files.model_dump(by_alias=True, mode="json", exclude_none=True) if status.files else None):
        patch["files"] = files
    if info.status == TaskStatus.STOPPED:
        reason = stop_reason or _why_stopped(status, now)
        message = {Reason.IDLE_TIMEOUT: "nobody subscribed published for maxIdleSeconds; the cloud ended the task",
                   Reason.MAX_DURATION: "the cloud ends every task after 72 hours"}.get(
            reason, f"the cloud stopped task {status.task_id} ({reason})")
        return {**patch, **_finished(status, Phase.COMPLETED, reason, message, generation, now)}
    phase = {TaskStatus.RUNNING: Phase.RECORDING, TaskStatus.RECOVERING: Phase.RECOVERING,
             TaskStatus.STOPPING: Phase.STOPPING}[info.status]
    if phase != status.phase:
        ready = phase == Phase.RECORDING
        reason = {Phase.RECORDING: Reason.STARTED, Phase.RECOVERING: Reason.RECOVERING}.get(phase, Reason.STOPPED)
        message = {Phase.RECORDING: f"recording as task {status.task_id}",
                   Phase.RECOVERING: "the cloud lost the recorder and is bringing it back"}.get(
            phase, "the cloud is stopping the task")
        patch.update(phase=phase, reason=reason, message=message,
                     conditions=condition(status, "Ready", ready, reason, message, generation, now))
    return patch or None


def files_status(files: RecordFiles) -> dict[str, Any]:
    return {"hls": list(files.hls), "mp4": list(files.mp4), "mp3": list(files.mp3),
            "vod": [{"mediaIds": list(v.media_ids), "mergedIds": list(v.merged_ids), "stream": v.stream}
                    for v in files.vod]}


def _why_stopped(status: RtcRecordingStatus, now: datetime) -> str:
    if status.start_time and now - status.start_time >= CLOUD_MAX_TASK_AGE:
        return Reason.MAX_DURATION
    # We did not stop it (deletion is handled elsewhere), so the idle timer did.
    return Reason.IDLE_TIMEOUT


def _finished(status: RtcRecordingStatus, phase: Phase, reason: str, message: str, generation: int,
              now: datetime) -> dict:
    return {"phase": phase, "reason": reason, "message": message, "completionTime": _ts(now),
            "conditions": condition(status, "Ready", False, reason, message, generation, now)}


# -- callbacks ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class View:
    """What a callback decision needs to know of a resource: small enough to keep for 10 000."""
    uid: str
    task_id: str | None
    phase: str | None
    pending_attempt: int | None  # the attempt whose answer is unknown, if any
    stopped_tasks: frozenset[str] = frozenset()  # strays this resource's tasks already had stopped

    @classmethod
    def of(cls, obj: dict) -> "View":
        status = status_of(obj)
        pending = status.attempt.number if (status.task_id is None and status.attempt
                                            and not status.attempt.not_executed) else None
        return cls(obj["metadata"]["uid"], status.task_id, status.phase, pending, frozenset(status.stray_task_ids))


@dataclass(frozen=True)
class Adopt:
    """The callback names the task of the attempt whose answer was lost."""
    task_id: str


@dataclass(frozen=True)
class Reap:
    """A task that is not the resource's current one: stop it."""
    task_id: str


@dataclass(frozen=True)
class Observe:
    """A change of the current task worth a Describe (it ended, or it is recovering)."""
    task_id: str


@dataclass(frozen=True)
class Ignore:
    why: str


CallbackAction = Adopt | Reap | Observe | Ignore
# The current task's events that say more than "still running" in this phase.
NEWS = {"TaskStopped": frozenset(TERMINAL), "TaskStopping": frozenset({Phase.STOPPING, *TERMINAL}),
        "TaskRecovering": frozenset({Phase.RECOVERING, *TERMINAL}),
        "TaskRunning": frozenset({Phase.RECORDING, Phase.STOPPING, *TERMINAL})}


def on_callback(view: View | None, path_uid: str, attempt: int, task_id: str, event_type: str,
                known_stopped: bool = False) -> CallbackAction:
    """What a verified callback for /callbacks/<ns>/<name>/<uid>/<attempt> means.

    `view` is None when the resource no longer exists; `known_stopped` says the task is one
    that was already stopped (a deleted resource's last task). The receiver records evidence
    for anything but Ignore; the operator decides again from fresh status and acts.
    """
    if event_type == "TaskStopped" and (view is None or view.task_id != task_id):
        return Ignore("a task that is not current has stopped: nothing to do")
    if view is None or view.uid != path_uid:
        if known_stopped:
            return Ignore("the last task of a deleted resource, stopped with it")
        return Reap(task_id)
    if view.task_id == task_id:
        if view.phase in NEWS.get(event_type, frozenset(Phase)):
            return Ignore(f"{event_type} of the current task: status already says so")
        return Observe(task_id)
    if task_id in view.stopped_tasks:
        return Ignore("a stray that was already stopped")
    if view.pending_attempt == attempt:
        return Adopt(task_id)
    return Reap(task_id)


def stray_reaped(status: RtcRecordingStatus, task_id: str) -> dict:
    return {"strayTasks": (status.stray_tasks or 0) + 1,
            "strayTaskIds": [*status.stray_task_ids, task_id][-STRAY_IDS_KEPT:]}


# -- retries --------------------------------------------------------------------------------------
def backoff(retry: int, base: float, cap: float, rng: random.Random = random.Random()) -> float:
    """Capped exponential backoff with full jitter over its upper half (never hammers, never 0)."""
    ceiling = min(cap, base * 2 ** max(retry, 0))
    return ceiling * (0.5 + rng.random() / 2)
