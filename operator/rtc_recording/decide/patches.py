"""Status patches: what each transition writes into an RtcRecording's status, conditions included.

Pure: each function takes the status as read and returns a merge patch; the executor writes it with
a compare-and-swap. Conditions follow the phase the way kstatus and Argo CD read them (docs/gitops.md).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from rtc_recording.api.names import ADOPT_ANNOTATION
from rtc_recording.api.recording import READY, RECONCILING, SETTLED, TERMINAL, Phase, RtcRecordingStatus
from rtc_recording.api.task import CloudError, RecordFiles, TaskInfo, TaskStatus
from rtc_recording.api.timestamps import stamp
from rtc_recording.decide import conditions as metav1

HISTORY_KEPT = 10  # status.history
STRAY_IDS_KEPT = 20  # status.strayTaskIds: enough to silence late callbacks of recent strays
# The service stops every task after 72 hours, whatever else happens.
CLOUD_MAX_TASK_AGE = timedelta(hours=72)


class Reason(StrEnum):
    STARTED = "Started"
    UNKNOWN_OUTCOME = "UnknownOutcome"
    CLOUD_UNREACHABLE = "CloudUnreachable"
    IDLE_TIMEOUT = "IdleTimeout"
    MAX_DURATION = "CloudMaxDuration"
    TASK_LOST = "TaskLost"
    RECOVERING = "Recovering"
    STOPPED = "StoppedByCloud"
    UPDATED = "Updated"
    SUSPENDED = "Suspended"
    OPERATOR_MAX_DURATION = "MaxDuration"  # spec.maxDurationSeconds, the operator's own limit
    ADOPTED = "Adopted"
    ADOPTION_FAILED = "AdoptionFailed"
    WAITING_FOR_PARTICIPANTS = "WaitingForParticipants"
    RESTARTING = "Restarting"
    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
    NO_PARTICIPANTS = "NoParticipants"


# -- status patches ------------------------------------------------------------------------------
def condition(
    status: RtcRecordingStatus, type_: str, state: bool, reason: str, message: str, generation: int, now: datetime
) -> list[dict[str, Any]]:
    """The whole conditions list with one condition set; lastTransitionTime moves only on change."""
    return _conditions(status, {type_: (state, reason, message)}, generation, now)


def phase_conditions(
    status: RtcRecordingStatus, phase: Phase, reason: str, message: str, generation: int, now: datetime
) -> list[dict[str, Any]]:
    """Ready, Reconciling and Stalled for a phase, as kstatus (Flux) and Argo CD read them
    (docs/gitops.md): Ready when the resource is where its spec wants it (recording, or settled:
    Completed like a finished Job, Suspended as asked; kstatus reads any Ready=False as still in
    progress), Reconciling while the operator or the cloud is getting somewhere, Stalled when
    Failed. `reason` must be a CamelCase word (a vendor code such as InvalidParameter.AppId is not)."""
    return _conditions(
        status,
        {
            "Ready": (phase in READY, reason, message),
            "Reconciling": (phase in RECONCILING, reason, message),
            "Stalled": (phase == Phase.FAILED, reason, message),
        },
        generation,
        now,
    )


def transition(
    status: RtcRecordingStatus,
    phase: Phase,
    reason: str | None,
    message: str,
    generation: int,
    now: datetime,
    condition_reason: str | None = None,
) -> dict[str, Any]:
    """phase, reason and message, and the conditions that go with them: what every transition writes.
    `condition_reason` where status.reason is no CamelCase word (a vendor's dotted code) or none."""
    conditions = phase_conditions(status, phase, condition_reason or reason or "", message, generation, now)
    return {"phase": phase, "reason": reason, "message": message, "conditions": conditions}


def _conditions(
    status: RtcRecordingStatus, changes: dict[str, tuple[bool, str, str]], generation: int, now: datetime
) -> list[dict[str, Any]]:
    conditions = [
        c.model_dump(by_alias=True, mode="json", exclude_none=True) for c in status.conditions if c.type not in changes
    ]
    for type_, (state, reason, message) in changes.items():
        value = "True" if state else "False"
        old = next((c for c in status.conditions if c.type == type_), None)
        since = stamp(old.last_transition_time) if old and old.status == value else stamp(now)
        conditions.append(metav1.condition(type_, value, reason, message, generation, since))
    return sorted(conditions, key=lambda c: c["type"])


def waiting(status: RtcRecordingStatus) -> bool:
    """Is it waiting for participants (the cloud said the channel was empty, and nothing has settled
    it since)? Read from waitingSince, not the reason: a credentials problem meanwhile changes that."""
    return status.waiting_since is not None and status.task_id is None and status.phase not in SETTLED


def answer_lost(status: RtcRecordingStatus) -> bool:
    """Is the pending attempt one whose answer was lost (not refused, not ended by a suspend)?"""
    return bool(
        status.attempt and not status.attempt.not_executed and status.task_id is None and status.phase == Phase.STARTING
    )


def attempt_recorded(status: RtcRecordingStatus, attempt: int, generation: int, now: datetime) -> dict:
    """Written (compare-and-swap) before Start is called. A recording waiting for participants
    keeps saying so: only the attempt changes."""
    ahead = {
        "number": attempt,
        "startedAt": stamp(now),
        "generation": generation,
        "notExecuted": None,
        "answerLost": None,
    }
    if waiting(status):
        return {"taskId": None, "attempt": ahead}
    retry = answer_lost(status)
    message = (
        f"attempt {attempt}: the answer to attempt {attempt - 1} was lost and no callback named its task"
        if retry
        else f"calling StartRtcCloudRecording (attempt {attempt})"
    )
    return {
        **transition(
            status, Phase.STARTING, Reason.UNKNOWN_OUTCOME if retry else None, message, generation, now, "Starting"
        ),
        "taskId": None,
        "attempt": ahead,
        "waitingSince": None,
    }


def waiting_for_participants(
    status: RtcRecordingStatus, channel: str, deadline: int, generation: int, now: datetime
) -> dict:
    """The cloud answered that nobody is in the channel: the attempt stays pending (this process
    sends it again), and status says so once."""
    since = status.waiting_since or now
    until = since + timedelta(seconds=deadline)
    message = (
        f"nobody is in channel {channel} yet; trying again until {stamp(until)} (spec.startDeadlineSeconds {deadline})"
    )
    reason = Reason.WAITING_FOR_PARTICIPANTS
    return {
        **transition(status, Phase.PENDING, reason, message, generation, now),
        "waitingSince": stamp(since),
        "observedGeneration": generation,
    }


def restarting(status: RtcRecordingStatus, limit: int, generation: int, now: datetime) -> dict:
    """restartPolicy OnFailure: the ended task stays in history; the next attempt starts a new one."""
    restarts = (status.restarts or 0) + 1
    why = "the cloud lost it" if status.reason == Reason.TASK_LOST else "the cloud ended it after 72 hours"
    message = f"task {status.task_id} ended ({why}); starting a new task (restart {restarts} of {limit})"
    reason = Reason.RESTARTING
    patch = {
        **transition(status, Phase.PENDING, reason, message, generation, now),
        "restarts": restarts,
        "taskId": None,
        "completionTime": None,
        "files": None,
    }
    if status.attempt is not None:
        patch["attempt"] = {"notExecuted": True}  # its outcome is known: the task that ended
    return patch


def backoff_limit_exceeded(status: RtcRecordingStatus, limit: int, generation: int, now: datetime) -> dict:
    message = (
        f"task {status.task_id} ended ({status.reason}) after {status.restarts or 0} restarts; "
        f"spec.backoffLimit is {limit}"
    )
    reason = Reason.BACKOFF_LIMIT_EXCEEDED
    return transition(status, Phase.FAILED, reason, message, generation, now)


def no_participants(status: RtcRecordingStatus, deadline: int, generation: int, now: datetime) -> dict:
    """spec.startDeadlineSeconds passed with the channel still empty: no task exists."""
    message = f"nobody joined the channel within spec.startDeadlineSeconds ({deadline} s); nothing was recorded"
    reason = Reason.NO_PARTICIPANTS
    return {
        **transition(status, Phase.FAILED, reason, message, generation, now),
        "observedGeneration": generation,
        "completionTime": stamp(now),
        "attempt": {"notExecuted": True},
    }


def started(status: RtcRecordingStatus, task_id: str, generation: int, now: datetime) -> dict:
    message = f"recording as task {task_id}"
    return {
        **transition(status, Phase.RECORDING, Reason.STARTED, message, generation, now),
        "taskId": task_id,
        # A restarted recording keeps its first start, as a Job does: maxDurationSeconds counts it all.
        "startTime": stamp(status.start_time or now),
        "completionTime": None,
        "waitingSince": None,
        "observedGeneration": generation,
        "files": None,
    }


def start_refused(status: RtcRecordingStatus, code: str, message: str, generation: int, now: datetime) -> dict:
    """A permanent refusal (by the cloud, or by a check only the operator can make): no task
    exists, and none is tried again until the user changes the spec."""
    return {
        # metav1.Condition reasons are CamelCase words; the vendor's dotted code is in status.reason.
        **transition(status, Phase.FAILED, code, message, generation, now, "StartRefused"),
        "observedGeneration": generation,
    }


def answer_unknown(status: RtcRecordingStatus, message: str, generation: int, now: datetime) -> dict:
    """The Start was sent and its answer lost: the attempt stays pending until a callback names its
    task, which the receiver then records at once (decide/callbacks.py)."""
    return {
        **transition(status, Phase.STARTING, Reason.UNKNOWN_OUTCOME, message, generation, now),
        "attempt": {"answerLost": True},
    }


def cloud_unreachable(status: RtcRecordingStatus, message: str, generation: int, now: datetime) -> dict:
    """Nothing was sent: the cloud answers nobody (cloud/circuit.py); the Start waits for it."""
    return transition(status, Phase.PENDING, Reason.CLOUD_UNREACHABLE, message, generation, now)


def start_not_executed(status: RtcRecordingStatus, error: CloudError, generation: int, now: datetime) -> dict:
    """Throttled, or a failure the service answered: no task was started."""
    message = f"will retry StartRtcCloudRecording: {error.code}: {error.message}"
    return {
        **transition(status, Phase.PENDING, error.code, message, generation, now, "StartRetrying"),
        # The number stays taken: a late callback can never be mistaken for a later attempt's.
        "attempt": {"notExecuted": True},
    }


def updated(status: RtcRecordingStatus, generation: int, now: datetime) -> dict:
    return {
        "observedGeneration": generation,
        "reason": Reason.UPDATED,
        "message": f"subscribers and layout of generation {generation} applied to task {status.task_id}",
        "conditions": condition(status, "Synced", True, Reason.UPDATED, "spec applied", generation, now),
    }


def update_refused(status: RtcRecordingStatus, code: str, message: str, generation: int, now: datetime) -> dict:
    """The task keeps recording with its previous subscribers and layout; Synced=False says this
    generation was refused. observedGeneration moves on (it was seen, and retrying will not
    help until the spec changes): otherwise GitOps tools would show it progressing forever."""
    return {
        "reason": code,
        "message": message,
        "observedGeneration": generation,
        "conditions": condition(status, "Synced", False, "UpdateRefused", message, generation, now),
    }


def observed(
    status: RtcRecordingStatus, info: TaskInfo | None, generation: int, now: datetime, stop_reason: str | None = None
) -> dict | None:
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
        if status.phase == Phase.STOPPING and status.reason in (Reason.SUSPENDED, Reason.OPERATOR_MAX_DURATION):
            return {**patch, **halted(status, status.reason, generation, now)}  # we stopped it: say why
        reason = stop_reason or _why_stopped(status, now)
        known: dict[str, str] = {
            Reason.IDLE_TIMEOUT: "nobody subscribed published for maxIdleSeconds; the cloud ended the task",
            Reason.MAX_DURATION: "the cloud ends every task after 72 hours",
        }
        message = known.get(reason, f"the cloud stopped task {status.task_id} ({reason})")
        return {**patch, **_finished(status, Phase.COMPLETED, reason, message, generation, now)}
    phase = {
        TaskStatus.RUNNING: Phase.RECORDING,
        TaskStatus.RECOVERING: Phase.RECOVERING,
        TaskStatus.STOPPING: Phase.STOPPING,
    }[info.status]
    if phase != status.phase:
        reason = {Phase.RECORDING: Reason.STARTED, Phase.RECOVERING: Reason.RECOVERING}.get(phase, Reason.STOPPED)
        message = {
            Phase.RECORDING: f"recording as task {status.task_id}",
            Phase.RECOVERING: "the cloud lost the recorder and is bringing it back",
        }.get(phase, "the cloud is stopping the task")
        patch.update(transition(status, phase, reason, message, generation, now))
    return patch or None


def files_status(files: RecordFiles) -> dict[str, Any]:
    return {
        "hls": list(files.hls),
        "mp4": list(files.mp4),
        "mp3": list(files.mp3),
        "vod": [v.model_dump(by_alias=True, mode="json") for v in files.vod],
    }


def task_start(status: RtcRecordingStatus) -> datetime | None:
    """When the current task started: startTime, or for a restarted recording (whose startTime is its
    first task's) the write-ahead of the attempt that made it."""
    attempt = status.attempt.started_at if status.attempt else None
    return max(status.start_time, attempt) if status.start_time and attempt else status.start_time


def _why_stopped(status: RtcRecordingStatus, now: datetime) -> str:
    if (start := task_start(status)) and now - start >= CLOUD_MAX_TASK_AGE:
        return Reason.MAX_DURATION
    # We did not stop it (deletion is handled elsewhere), so the idle timer did.
    return Reason.IDLE_TIMEOUT


def _finished(
    status: RtcRecordingStatus, phase: Phase, reason: str, message: str, generation: int, now: datetime
) -> dict:
    return {
        **transition(status, phase, reason, message, generation, now),
        "completionTime": stamp(now),
        "history": history_with(status, reason, now),
    }


def history_with(status: RtcRecordingStatus, reason: str, now: datetime) -> list[dict[str, Any]]:
    """status.history with the current task appended as ended now (the latest HISTORY_KEPT)."""
    entry = {
        "taskId": status.task_id,
        "startTime": stamp(start) if (start := task_start(status)) else None,
        "endTime": stamp(now),
        "reason": reason,
        "files": status.files.model_dump(by_alias=True, mode="json", exclude_none=True) if status.files else None,
    }
    old = [h.model_dump(by_alias=True, mode="json", exclude_none=True) for h in status.history]
    return [*old, {k: v for k, v in entry.items() if v is not None}][-HISTORY_KEPT:]


def halting(status: RtcRecordingStatus, reason: str, generation: int, now: datetime) -> dict:
    """The intent to stop our own task, written before the Stop."""
    messages: dict[str, str] = {
        Reason.SUSPENDED: f"stopping task {status.task_id}: spec.suspend is true",
        Reason.OPERATOR_MAX_DURATION: f"stopping task {status.task_id}: it ran spec.maxDurationSeconds",
    }
    message = messages[reason]
    return transition(status, Phase.STOPPING, reason, message, generation, now)


def halted(status: RtcRecordingStatus, reason: str, generation: int, now: datetime) -> dict:
    """Our Stop is done: Suspended (the task goes to history; resuming starts a new one) or
    Completed with reason MaxDuration."""
    if reason == Reason.SUSPENDED:
        message = f"suspended: task {status.task_id} stopped, its files kept; set spec.suspend to false to record again"
        return {
            **transition(status, Phase.SUSPENDED, reason, message, generation, now),
            "taskId": None,
            "startTime": None,  # a resume starts afresh, as a resumed Job does
            "observedGeneration": generation,
            "history": history_with(status, reason, now),
        }
    message = f"task {status.task_id} stopped after spec.maxDurationSeconds"
    return {**_finished(status, Phase.COMPLETED, reason, message, generation, now), "observedGeneration": generation}


def suspended_idle(status: RtcRecordingStatus, generation: int, now: datetime) -> dict:
    """spec.suspend with nothing running (a pending, refused or lost Start is given up)."""
    message = "suspended: no task runs; set spec.suspend to false to record"
    patch: dict[str, Any] = {
        **transition(status, Phase.SUSPENDED, Reason.SUSPENDED, message, generation, now),
        "observedGeneration": generation,
    }
    if status.attempt and not status.attempt.not_executed:
        patch["attempt"] = {"notExecuted": True}  # a late callback of it is then a stray
    return patch


def adoption_failed(status: RtcRecordingStatus, task_id: str, why: str, generation: int, now: datetime) -> dict:
    message = f"cannot adopt task {task_id} ({ADOPT_ANNOTATION}): {why}; nothing was started"
    return {
        **transition(status, Phase.FAILED, Reason.ADOPTION_FAILED, message, generation, now),
        "observedGeneration": generation,
    }


def credentials_missing(status: RtcRecordingStatus, message: str, generation: int, now: datetime) -> dict:
    return transition(status, Phase.PENDING, "CredentialsUnavailable", message, generation, now)


def stray_reaped(status: RtcRecordingStatus, task_id: str) -> dict:
    return {
        "strayTasks": (status.stray_tasks or 0) + 1,
        "strayTaskIds": [*status.stray_task_ids, task_id][-STRAY_IDS_KEPT:],
    }
