"""Pure decisions: (status, generation, what the cloud said, now) -> the next action.

No I/O here. The executor reads an object, asks `next_action` (or `deletion_action`) what to
do, acts, and writes the status patch that `patches.py` builds with a resourceVersion
precondition. So every rule about which phase follows which lives in decide/.

The resume logic tells three situations apart by the status alone:
  never called      no `attempt`, no `taskId`
  answer unknown    `attempt` recorded, no `taskId` (crash or lost answer after Start)
  have the task     `taskId`

One more fact lives only in the memory of the process that learnt it: that the last send of the
pending attempt was refused because nobody was in the channel (`refused`). Only then is the same
attempt sent again without a write (`Resend`): whoever lacks that fact (a restarted or new
replica) treats the attempt as an answer unknown, which is always safe (docs/exactly-once.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from rtc_recording.api.names import ADOPT_ANNOTATION
from rtc_recording.api.recording import (
    BACKOFF_LIMIT,
    LIVE,
    START_DEADLINE_SECONDS,
    TERMINAL,
    Phase,
    RtcRecordingStatus,
)
from rtc_recording.decide.classes import effective_spec
from rtc_recording.decide.patches import Reason, waiting


# -- actions ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Start:
    attempt: int


@dataclass(frozen=True)
class Resend:
    """Send the pending attempt again: its last send was refused for an empty channel, seen by this process."""

    attempt: int


@dataclass(frozen=True)
class GiveUp:
    """Nobody came within spec.startDeadlineSeconds: Failed, reason NoParticipants; no task exists."""

    attempt: int


@dataclass(frozen=True)
class Restart:
    """restartPolicy OnFailure: the cloud lost or ended the task on its own; a new one after the backoff."""


@dataclass(frozen=True)
class BackoffLimitExceeded:
    """restartPolicy OnFailure, and spec.backoffLimit new tasks were started already: Failed."""


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


Action = (
    Start
    | Resend
    | GiveUp
    | Restart
    | BackoffLimitExceeded
    | AwaitOutcome
    | Update
    | Stop
    | Nothing
    | Halt
    | Suspend
    | Expire
    | AdoptTask
)


@dataclass(frozen=True)
class Controls:
    """The lifecycle controls of a spec (and the adopt annotation), as the decisions need them."""

    suspend: bool = False
    max_duration: int | None = None
    ttl: int | None = None
    adopt: str | None = None
    start_deadline: int = START_DEADLINE_SECONDS
    restart: bool = False  # spec.restartPolicy OnFailure
    backoff_limit: int = BACKOFF_LIMIT

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
            spec.get("startDeadlineSeconds") or START_DEADLINE_SECONDS,
            spec.get("restartPolicy") == "OnFailure",
            BACKOFF_LIMIT if spec.get("backoffLimit") is None else spec["backoffLimit"],
        )


def give_up_at(status: RtcRecordingStatus, controls: Controls) -> datetime | None:
    """When a recording waiting for participants stops trying."""
    if not waiting(status) or status.waiting_since is None:
        return None
    return status.waiting_since + timedelta(seconds=controls.start_deadline)


# Ended by the cloud on its own while the meeting may go on: what restartPolicy OnFailure restarts.
# Not the idle timeout (nobody publishes), nor a stop the user or maxDurationSeconds asked for.
RESTARTABLE = frozenset({Reason.TASK_LOST, Reason.MAX_DURATION})
RESTART_BACKOFF = (10.0, 300.0)  # seconds: doubling per restart, as a Pod's CrashLoopBackOff


def restart_at(status: RtcRecordingStatus, controls: Controls) -> datetime | None:
    """When restartPolicy OnFailure decides again about a task the cloud ended (at once past the limit)."""
    if not controls.restart or controls.suspend or status.phase not in TERMINAL or status.reason not in RESTARTABLE:
        return None
    if status.completion_time is None:
        return None
    if controls.max_duration and status.start_time:  # the recording's time was up anyway
        if status.completion_time >= status.start_time + timedelta(seconds=controls.max_duration):
            return None
    restarts = status.restarts or 0
    if restarts >= controls.backoff_limit:
        return status.completion_time
    base, cap = RESTART_BACKOFF
    return status.completion_time + timedelta(seconds=min(cap, base * 2**restarts))


def due_at(status: RtcRecordingStatus, controls: Controls) -> datetime | None:
    """When the next time-driven decision falls due (maxDuration, a restart, TTL), if any."""
    if status.phase in LIVE and controls.max_duration and status.start_time:
        return status.start_time + timedelta(seconds=controls.max_duration)
    if (restart := restart_at(status, controls)) is not None:
        return restart  # not finished yet: the TTL counts from the end of the last task
    if status.phase in TERMINAL and controls.ttl is not None and status.completion_time:
        return status.completion_time + timedelta(seconds=controls.ttl)
    return None


@dataclass(frozen=True)
class CloudHealth:
    """What the decisions need to know of the cloud's reachability (`cloud/circuit.py`)."""

    up: bool = True
    back_since: datetime | None = None  # when it last answered again after an outage
    recheck: float = 2.0  # how soon to look again while waiting on the cloud or on evidence


@dataclass(frozen=True)
class Sends:
    """What this process knows of its own sends of the pending attempt (see the module's docstring)."""

    refused: int | None = None  # the attempt whose last send was refused for an empty channel, none since
    last: datetime | None = None  # when it last sent a waiting recording's attempt
    acting_since: datetime | None = None  # when it began acting: an earlier replica's sends came before


def _answer_unknown(
    status: RtcRecordingStatus,
    now: datetime,
    grace: float,
    cloud: CloudHealth,
    evidence_waiting: bool,
    sends: Sends,
) -> AwaitOutcome | None:
    """Wait for the lost answer's callbacks: not while evidence of its task awaits confirmation,
    not while the cloud answers nothing, and for the grace period counted from when its
    callbacks could first arrive (the attempt, or the cloud's return, whichever is later). A
    waiting recording's attempt is sent again and again with one write-ahead, so its last send
    is this process's last (or, before this process acted, any time before it began)."""
    attempt = status.attempt
    assert attempt is not None and attempt.started_at is not None
    if evidence_waiting or not cloud.up:
        return AwaitOutcome(attempt.number, cloud.recheck)
    since = max(t for t in (attempt.started_at, cloud.back_since, sends.last) if t is not None)
    if waiting(status) and sends.last is None and sends.acting_since is not None:
        since = max(since, sends.acting_since)
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
    sends: Sends = Sends(),
) -> Action:
    """What create, resume, spec updates and due times should do."""
    phase = status.phase
    due = due_at(status, controls)
    if (restart := restart_at(status, controls)) is not None:
        if (status.restarts or 0) >= controls.backoff_limit:
            return BackoffLimitExceeded()
        return Restart() if now >= restart else Nothing()
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
    number, give_up = status.attempt.number, give_up_at(status, controls)
    if sends.refused == number and waiting(status):
        if controls.suspend:
            return Suspend()
        return GiveUp(number) if give_up is not None and now >= give_up else Resend(number)
    unknown = _answer_unknown(status, now, grace, cloud, evidence_waiting, sends)
    if unknown is not None:
        return unknown  # also when suspended: its task may yet be adopted, and then stopped
    if controls.suspend:
        return Suspend()
    return GiveUp(number) if give_up is not None and now >= give_up else Start(attempt=number + 1)


def event_posted(stamped: str | None, mark: str) -> bool:
    """Was a pendingEvent stamped then posted, by the leader whose Lease left `mark`? Stamps and marks
    are MicroTimes, compared as text; one without a stamp (an older operator's) only once a mark exists."""
    return (stamped or "") < mark


def at_rest(obj: Mapping[str, Any], posted_before: str = "") -> bool:
    """Would a resume of this object decide Nothing, whatever the clock says? Read from the raw
    object, before any parsing: at 10 000 objects a restart needs no handler for these
    (docs/scale.md). Due times are left out on purpose: the deadline heap sees every object and
    acts on them (`Executor.on_due`). A pendingEvent stamped before `posted_before` was posted
    (controller/executor/writes.py)."""
    status, meta = obj.get("status") or {}, obj["metadata"]
    pending = status.get("pendingEvent")
    if pending and not event_posted(pending.get("at"), posted_before):
        return False
    if meta.get("deletionTimestamp") or not status.get("phase"):
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
    sends: Sends = Sends(),
) -> Action | Release | Orphan:
    if orphan:
        return Orphan(status.task_id if status.phase in LIVE else None)
    if status.task_id:
        return Stop(status.task_id)  # whatever the phase: Stop is idempotent, a leak is not
    attempt = status.attempt
    if attempt is None or attempt.not_executed or sends.refused == attempt.number:
        return Nothing()
    # Wait for the callback naming the task while the resource (and its credentials) still exist.
    return _answer_unknown(status, now, grace, cloud, evidence_waiting, sends) or Release(attempt.number)


def _next_attempt(status: RtcRecordingStatus) -> int:
    return (status.attempt.number if status.attempt else 0) + 1


# -- callbacks ------------------------------------------------------------------------------------
