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
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from rtc_recording.api.names import ADOPT_ANNOTATION
from rtc_recording.api.recording import Phase, RtcRecordingStatus, status_of
from rtc_recording.api.timestamps import stamp
from rtc_recording.cloud.port import CloudError, RecordFiles, TaskInfo, TaskStatus

TERMINAL = frozenset({Phase.COMPLETED, Phase.FAILED})
LIVE = frozenset({Phase.RECORDING, Phase.RECOVERING, Phase.STOPPING})
SETTLED = frozenset({Phase.SUSPENDED, *TERMINAL})  # no Start is pending, whatever status.attempt says
# Conditions that kstatus (Flux) and the Argo CD health script read (docs/gitops.md).
RECONCILING = frozenset({Phase.PENDING, Phase.STARTING, Phase.STOPPING, Phase.RECOVERING})
READY = frozenset({Phase.RECORDING, Phase.COMPLETED, Phase.SUSPENDED})

HISTORY_KEPT = 10  # status.history
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
    SUSPENDED = "Suspended"
    RESUMED = "Resumed"
    OPERATOR_MAX_DURATION = "MaxDuration"  # spec.maxDurationSeconds, the operator's own limit
    ADOPTED = "Adopted"
    ADOPTION_FAILED = "AdoptionFailed"


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


@dataclass(frozen=True)
class Halt:
    """Stop the running task because the user asked (suspend) or its time is up (maxDuration).
    The intent is written first (phase Stopping with this reason), so a crash repeats it."""

    task_id: str
    reason: str


@dataclass(frozen=True)
class Suspend:
    """spec.suspend with no task running: just say so."""


@dataclass(frozen=True)
class Expire:
    """ttlSecondsAfterFinished has passed: delete the resource."""


@dataclass(frozen=True)
class AdoptTask:
    """The adopt annotation names a running task to take over instead of starting one."""

    task_id: str


Action = Start | AwaitOutcome | Update | Stop | Nothing | Halt | Suspend | Expire | AdoptTask


@dataclass(frozen=True)
class Controls:
    """The lifecycle controls of a spec (and the adopt annotation), as the decisions need them."""

    suspend: bool = False
    max_duration: int | None = None
    ttl: int | None = None
    adopt: str | None = None

    @classmethod
    def of(cls, obj: dict) -> Controls:
        spec = obj.get("spec") or {}
        max_duration = spec.get("maxDurationSeconds")
        if max_duration is None:  # the class's, as pinned when the task started (classes.py)
            pin = (obj.get("status") or {}).get("recordingClass") or {}
            max_duration = (pin.get("defaults") or {}).get("maxDurationSeconds")
        return cls(
            bool(spec.get("suspend")),
            max_duration,
            spec.get("ttlSecondsAfterFinished"),
            ((obj["metadata"].get("annotations") or {}).get(ADOPT_ANNOTATION) or None),
        )


def due_at(status: RtcRecordingStatus, controls: Controls) -> datetime | None:
    """When the next time-driven decision falls due (maxDuration, TTL), if any."""
    if status.phase in LIVE and controls.max_duration and status.start_time:
        return status.start_time + timedelta(seconds=controls.max_duration)
    if status.phase in TERMINAL and controls.ttl is not None and status.completion_time:
        return status.completion_time + timedelta(seconds=controls.ttl)
    return None


@dataclass(frozen=True)
class Cloud:
    """What the decisions need to know of the cloud's reachability (`reachability.py`)."""

    up: bool = True
    back_since: datetime | None = None  # when it last answered again after an outage
    recheck: float = 2.0  # how soon to look again while waiting on the cloud or on evidence


def _answer_unknown(
    status: RtcRecordingStatus, now: datetime, grace: float, cloud: Cloud, evidence_waiting: bool
) -> AwaitOutcome | None:
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


def next_action(
    status: RtcRecordingStatus,
    generation: int,
    now: datetime,
    grace: float,
    cloud: Cloud = Cloud(),
    evidence_waiting: bool = False,
    controls: Controls = Controls(),
) -> Action:
    """What create, resume, spec updates and due times should do."""
    phase = status.phase
    due = due_at(status, controls)
    if phase in TERMINAL and due is not None and now >= due:
        return Expire()
    if phase == Phase.COMPLETED:
        return Nothing()  # a finished recording is never restarted behind the user's back
    if phase == Phase.FAILED:
        # A refused Start is retried only when the user changes the spec.
        if status.task_id is None and (status.observed_generation or 0) < generation:
            return Suspend() if controls.suspend else Start(attempt=_next_attempt(status))
        return Nothing()
    if phase == Phase.SUSPENDED:
        return Nothing() if controls.suspend else Start(attempt=_next_attempt(status))
    if status.task_id:
        if phase == Phase.STOPPING and status.reason in (Reason.SUSPENDED, Reason.OPERATOR_MAX_DURATION):
            return Halt(status.task_id, status.reason)  # our own Stop, interrupted: finish it
        if phase in LIVE and controls.suspend:
            return Halt(status.task_id, Reason.SUSPENDED)
        if phase in LIVE and due is not None and now >= due:
            return Halt(status.task_id, Reason.OPERATOR_MAX_DURATION)
        if (status.observed_generation or 0) < generation and phase in LIVE:
            return Update(status.task_id)
        return Nothing()
    if status.attempt is None:
        if controls.suspend:
            return Suspend()
        return AdoptTask(controls.adopt) if controls.adopt and phase is None else Start(attempt=1)
    if status.attempt.not_executed:
        # The service said no: nothing to wait for, the next number at once.
        return Suspend() if controls.suspend else Start(attempt=status.attempt.number + 1)
    waiting = _answer_unknown(status, now, grace, cloud, evidence_waiting)
    if waiting is not None:
        return waiting  # also when suspended: its task may yet be adopted, and then stopped
    return Suspend() if controls.suspend else Start(attempt=status.attempt.number + 1)


def at_rest(obj: Mapping[str, Any]) -> bool:
    """Would a resume of this object decide Nothing, whatever the clock says? Read from the raw
    object, before any parsing: at 10 000 objects a restart skips Kopf's handler machinery for
    these (docs/scale.md). Due times are left out on purpose: the deadline heap sees every object
    and acts on them (`Recorder.on_due`)."""
    status, meta = obj.get("status") or {}, obj["metadata"]
    if status.get("pendingEvent") or meta.get("deletionTimestamp") or not status.get("phase"):
        return False
    if (status.get("observedGeneration") or 0) != meta.get("generation"):
        return False
    suspend = bool((obj.get("spec") or {}).get("suspend"))
    match status["phase"]:
        case Phase.RECORDING:
            return bool(status.get("taskId")) and not suspend
        case Phase.SUSPENDED:
            return suspend
        case Phase.COMPLETED | Phase.FAILED:
            return True
    return False


@dataclass(frozen=True)
class Release:
    """Let go of a deleted resource whose last Start answer is unknown: clear the attempt with a
    compare-and-swap, so that an adoption racing with it fails and stops the task instead."""

    attempt: int


@dataclass(frozen=True)
class Orphan:
    """spec.deletionPolicy Orphan: let the object go and leave the task running."""

    task_id: str | None


def deletion_action(
    status: RtcRecordingStatus,
    now: datetime,
    grace: float,
    cloud: Cloud = Cloud(),
    evidence_waiting: bool = False,
    orphan: bool = False,
) -> Action | Release | Orphan:
    if orphan:
        return Orphan(status.task_id if status.phase in LIVE else None)
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
        conditions.append(
            {
                "type": type_,
                "status": value,
                "reason": reason,
                "message": message,
                "observedGeneration": generation,
                "lastTransitionTime": since,
            }
        )
    return sorted(conditions, key=lambda c: c["type"])


def answer_lost(status: RtcRecordingStatus) -> bool:
    """Is the pending attempt one whose answer was lost (not refused, not ended by a suspend)?"""
    return bool(
        status.attempt and not status.attempt.not_executed and status.task_id is None and status.phase == Phase.STARTING
    )


def attempt_recorded(status: RtcRecordingStatus, attempt: int, generation: int, now: datetime) -> dict:
    """Written (compare-and-swap) before Start is called."""
    retry = answer_lost(status)
    message = (
        f"attempt {attempt}: the answer to attempt {attempt - 1} was lost and no callback named its task"
        if retry
        else f"calling StartRtcCloudRecording (attempt {attempt})"
    )
    return {
        "phase": Phase.STARTING,
        "reason": Reason.UNKNOWN_OUTCOME if retry else None,
        "message": message,
        "taskId": None,
        "attempt": {"number": attempt, "startedAt": stamp(now), "generation": generation, "notExecuted": None},
        "conditions": phase_conditions(status, Phase.STARTING, "Starting", message, generation, now),
    }


def started(status: RtcRecordingStatus, task_id: str, generation: int, now: datetime) -> dict:
    message = f"recording as task {task_id}"
    return {
        "phase": Phase.RECORDING,
        "reason": Reason.STARTED,
        "message": message,
        "taskId": task_id,
        "startTime": stamp(now),
        "completionTime": None,
        "observedGeneration": generation,
        "files": None,
        "conditions": phase_conditions(status, Phase.RECORDING, Reason.STARTED, message, generation, now),
    }


def start_refused(status: RtcRecordingStatus, code: str, message: str, generation: int, now: datetime) -> dict:
    """A permanent refusal (by the cloud, or by a check only the operator can make): no task
    exists, and none is tried again until the user changes the spec."""
    return {
        "phase": Phase.FAILED,
        "reason": code,
        "message": message,
        "observedGeneration": generation,
        # metav1.Condition reasons are CamelCase words; the vendor's dotted code is in status.reason.
        "conditions": phase_conditions(status, Phase.FAILED, "StartRefused", message, generation, now),
    }


def start_not_executed(status: RtcRecordingStatus, error: CloudError, generation: int, now: datetime) -> dict:
    """Throttled, or a failure the service answered: no task was started."""
    message = f"will retry StartRtcCloudRecording: {error.code}: {error.message}"
    return {
        # The number stays taken: a late callback can never be mistaken for a later attempt's.
        "phase": Phase.PENDING,
        "reason": error.code,
        "message": message,
        "attempt": {"notExecuted": True},
        "conditions": phase_conditions(status, Phase.PENDING, "StartRetrying", message, generation, now),
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
        patch.update(
            phase=phase,
            reason=reason,
            message=message,
            conditions=phase_conditions(status, phase, reason, message, generation, now),
        )
    return patch or None


def files_status(files: RecordFiles) -> dict[str, Any]:
    return {
        "hls": list(files.hls),
        "mp4": list(files.mp4),
        "mp3": list(files.mp3),
        "vod": [v.model_dump(by_alias=True, mode="json") for v in files.vod],
    }


def _why_stopped(status: RtcRecordingStatus, now: datetime) -> str:
    if status.start_time and now - status.start_time >= CLOUD_MAX_TASK_AGE:
        return Reason.MAX_DURATION
    # We did not stop it (deletion is handled elsewhere), so the idle timer did.
    return Reason.IDLE_TIMEOUT


def _finished(
    status: RtcRecordingStatus, phase: Phase, reason: str, message: str, generation: int, now: datetime
) -> dict:
    return {
        "phase": phase,
        "reason": reason,
        "message": message,
        "completionTime": stamp(now),
        "history": history_with(status, reason, now),
        "conditions": phase_conditions(status, phase, reason, message, generation, now),
    }


def history_with(status: RtcRecordingStatus, reason: str, now: datetime) -> list[dict[str, Any]]:
    """status.history with the current task appended as ended now (the latest HISTORY_KEPT)."""
    entry = {
        "taskId": status.task_id,
        "startTime": stamp(status.start_time) if status.start_time else None,
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
    return {
        "phase": Phase.STOPPING,
        "reason": reason,
        "message": message,
        "conditions": phase_conditions(status, Phase.STOPPING, reason, message, generation, now),
    }


def halted(status: RtcRecordingStatus, reason: str, generation: int, now: datetime) -> dict:
    """Our Stop is done: Suspended (the task goes to history; resuming starts a new one) or
    Completed with reason MaxDuration."""
    if reason == Reason.SUSPENDED:
        message = f"suspended: task {status.task_id} stopped, its files kept; set spec.suspend to false to record again"
        return {
            "phase": Phase.SUSPENDED,
            "reason": reason,
            "message": message,
            "taskId": None,
            "observedGeneration": generation,
            "history": history_with(status, reason, now),
            "conditions": phase_conditions(status, Phase.SUSPENDED, reason, message, generation, now),
        }
    message = f"task {status.task_id} stopped after spec.maxDurationSeconds"
    return {**_finished(status, Phase.COMPLETED, reason, message, generation, now), "observedGeneration": generation}


def suspended_idle(status: RtcRecordingStatus, generation: int, now: datetime) -> dict:
    """spec.suspend with nothing running (a pending, refused or lost Start is given up)."""
    message = "suspended: no task runs; set spec.suspend to false to record"
    patch: dict[str, Any] = {
        "phase": Phase.SUSPENDED,
        "reason": Reason.SUSPENDED,
        "message": message,
        "observedGeneration": generation,
        "conditions": phase_conditions(status, Phase.SUSPENDED, Reason.SUSPENDED, message, generation, now),
    }
    if status.attempt and not status.attempt.not_executed:
        patch["attempt"] = {"notExecuted": True}  # a late callback of it is then a stray
    return patch


def adoption_failed(status: RtcRecordingStatus, task_id: str, why: str, generation: int, now: datetime) -> dict:
    message = f"cannot adopt task {task_id} ({ADOPT_ANNOTATION}): {why}; nothing was started"
    return {
        "phase": Phase.FAILED,
        "reason": Reason.ADOPTION_FAILED,
        "message": message,
        "observedGeneration": generation,
        "conditions": phase_conditions(status, Phase.FAILED, Reason.ADOPTION_FAILED, message, generation, now),
    }


def credentials_missing(status: RtcRecordingStatus, message: str, generation: int, now: datetime) -> dict:
    return {
        "phase": Phase.PENDING,
        "reason": "CredentialsUnavailable",
        "message": message,
        "conditions": phase_conditions(status, Phase.PENDING, "CredentialsUnavailable", message, generation, now),
    }


# -- callbacks ------------------------------------------------------------------------------------
_NONE_STOPPED: frozenset[str] = frozenset()  # shared: 10 000 empty sets would cost 2 MB


@dataclass(frozen=True, slots=True)
class View:
    """What a callback decision needs to know of a resource: small enough to keep for 10 000."""

    uid: str
    task_id: str | None
    phase: str | None
    pending_attempt: int | None  # the attempt whose answer is unknown, if any
    stopped_tasks: frozenset[str] = frozenset()  # its strays already stopped, and its ended tasks
    attempt: int | None = None  # status.attempt.number: the last attempt written ahead

    @classmethod
    def of(cls, obj: dict) -> View:
        status = status_of(obj)
        pending = (
            status.attempt.number
            if (
                status.task_id is None
                and status.attempt
                and not status.attempt.not_executed
                and status.phase not in SETTLED
            )
            else None
        )
        return cls(
            obj["metadata"]["uid"],
            status.task_id,
            status.phase,
            pending,
            frozenset([*status.stray_task_ids, *(h.task_id for h in status.history)]) or _NONE_STOPPED,
            status.attempt.number if status.attempt is not None else None,
        )


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
NEWS = {
    "TaskStopped": frozenset(TERMINAL),
    "TaskStopping": frozenset({Phase.STOPPING, *TERMINAL}),
    "TaskRecovering": frozenset({Phase.RECOVERING, *TERMINAL}),
    "TaskRunning": frozenset({Phase.RECORDING, Phase.STOPPING, *TERMINAL}),
}


def on_callback(
    view: View | None, path_uid: str, attempt: int, task_id: str, event_type: str, known_stopped: bool = False
) -> CallbackAction:
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
    if view.pending_attempt == attempt or (view.attempt or 0) < attempt:
        # The attempt whose answer status does not show yet. A newer attempt than the view knows
        # is one too: its write-ahead came before its Start, only the receiver's watch lags (so
        # the receiver waits for its watch, as for any adoption, instead of recording a reap).
        return Adopt(task_id)
    return Reap(task_id)


def stray_reaped(status: RtcRecordingStatus, task_id: str) -> dict:
    return {
        "strayTasks": (status.stray_tasks or 0) + 1,
        "strayTaskIds": [*status.stray_task_ids, task_id][-STRAY_IDS_KEPT:],
    }


# -- retries --------------------------------------------------------------------------------------
_RNG = random.Random()


def backoff(retry: int, base: float, cap: float, rng: random.Random = _RNG) -> float:
    """The operator's one backoff: capped exponential with *equal* jitter, a delay drawn uniformly
    from the upper half of min(cap, base * 2**retry), so never 0 (no hammering) and never above cap."""
    ceiling = min(cap, base * 2 ** max(retry, 0))
    return ceiling * (0.5 + rng.random() / 2)
