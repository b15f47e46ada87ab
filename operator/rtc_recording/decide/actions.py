"""Pure decisions: (status, generation, what the cloud said, now) -> the next action.

No I/O here. The executor reads an object, asks `next_action` (or `deletion_action`) what to
do, acts, and writes the status patch that `patches.py` builds with a resourceVersion
precondition. So every rule about which phase follows which lives in decide/.

The resume logic tells three situations apart by the status alone:
  never called      no `attempt`, no `taskId`
  answer unknown    `attempt` recorded, no `taskId` (crash or lost answer after Start)
  have the task     `taskId`
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from rtc_recording.api.names import ADOPT_ANNOTATION
from rtc_recording.api.recording import LIVE, TERMINAL, Phase, RtcRecordingStatus
from rtc_recording.decide.classes import effective_spec
from rtc_recording.decide.patches import Reason


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
        if max_duration is None:  # the class's, as pinned when the task started (unless dropped)
            pin = (obj.get("status") or {}).get("recordingClass")
            max_duration = effective_spec(spec, pin).get("maxDurationSeconds")
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
class CloudHealth:
    """What the decisions need to know of the cloud's reachability (`cloud/circuit.py`)."""

    up: bool = True
    back_since: datetime | None = None  # when it last answered again after an outage
    recheck: float = 2.0  # how soon to look again while waiting on the cloud or on evidence


def _answer_unknown(
    status: RtcRecordingStatus, now: datetime, grace: float, cloud: CloudHealth, evidence_waiting: bool
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
    cloud: CloudHealth = CloudHealth(),
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
    and acts on them (`Executor.on_due`)."""
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
    cloud: CloudHealth = CloudHealth(),
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


# -- callbacks ------------------------------------------------------------------------------------
