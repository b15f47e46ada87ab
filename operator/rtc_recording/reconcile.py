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
from .resource import RtcRecordingStatus


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


def next_action(status: RtcRecordingStatus, generation: int, now: datetime, grace: float) -> Action:
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
    waited = (now - status.attempt.started_at).total_seconds()
    if waited < grace:
        return AwaitOutcome(status.attempt.number, grace - waited)
    return Start(attempt=status.attempt.number + 1)


@dataclass(frozen=True)
class Release:
    """Let go of a deleted resource whose last Start answer is unknown: clear the attempt with a
    compare-and-swap, so that an adoption racing with it fails and stops the task instead."""
    attempt: int


def deletion_action(status: RtcRecordingStatus, now: datetime, grace: float) -> Action | Release:
    if status.task_id:
        return Stop(status.task_id)  # whatever the phase: Stop is idempotent, a leak is not
    attempt = status.attempt
    if attempt is None or attempt.not_executed:
        return Nothing()
    # Wait for the callback naming the task while the resource (and its credentials) still exist.
    waited = (now - attempt.started_at).total_seconds()
    if waited < grace:
        return AwaitOutcome(attempt.number, grace - waited)
    return Release(attempt.number)


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
class Adopt:
    """The callback names the task of the attempt whose answer was lost."""
    task_id: str


@dataclass(frozen=True)
class Reap:
    """A task that is not the resource's current one: stop it at once."""
    task_id: str


@dataclass(frozen=True)
class Observe:
    """An event about the current task: confirm with Describe, then update status."""
    task_id: str


@dataclass(frozen=True)
class Ignore:
    why: str


CallbackAction = Adopt | Reap | Observe | Ignore
STATE_EVENTS = frozenset({"TaskRunning", "TaskRecovering", "TaskStopping", "TaskStopped"})


def on_callback(status: RtcRecordingStatus | None, uid: str | None, path_uid: str, attempt: int,
                task_id: str, event_type: str) -> CallbackAction:
    """Decide what a verified callback for /callbacks/<ns>/<name>/<uid>/<attempt> means.

    `status` and `uid` are None when the resource no longer exists.
    """
    if status is None or uid != path_uid:
        return Reap(task_id) if event_type != "TaskStopped" else Ignore("stopped task of a deleted resource")
    if status.task_id == task_id:
        # State changes are worth a Describe; file uploads and early events are left to the poller.
        return Observe(task_id) if event_type in STATE_EVENTS else Ignore(f"{event_type} of the current task")
    if status.task_id is None and status.attempt and status.attempt.number == attempt:
        if event_type == "TaskStopped":
            return Ignore("the task of the pending attempt already stopped")
        return Adopt(task_id)
    if event_type == "TaskStopped":
        return Ignore("a stray task that already stopped")
    return Reap(task_id)


def stray_reaped(status: RtcRecordingStatus) -> dict:
    return {"strayTasks": (status.stray_tasks or 0) + 1}


# -- retries --------------------------------------------------------------------------------------
def backoff(retry: int, base: float, cap: float, rng: random.Random = random.Random()) -> float:
    """Capped exponential backoff with full jitter over its upper half (never hammers, never 0)."""
    ceiling = min(cap, base * 2 ** max(retry, 0))
    return ceiling * (0.5 + rng.random() / 2)
