"""What a verified callback means for its resource: adopt, reap, observe or ignore.

The receiver asks first, from its watch, whether a callback can change anything; the operator
asks again, from fresh status, before it spends a cloud call (docs/exactly-once.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from rtc_recording.api.recording import SETTLED, TERMINAL, Phase, status_of

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
    lost: bool = False  # the operator wrote that the pending attempt's answer was lost

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
            bool(pending and status.attempt and status.attempt.answer_lost),
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
