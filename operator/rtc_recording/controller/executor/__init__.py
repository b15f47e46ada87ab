"""The executor: carries out what decide/ decides, with cloud calls and compare-and-swap status writes.

Kopf-free, so the handlers stay thin; a need to try again later is raised as `RetryLater`. One
module per concern: `start`, `update`, `stop` (deletion and lifecycle controls), `adopt` (and
reap), `observe`, on top of `writes` (the write-and-Event protocol), `pinning` (the class) and
`context` (what they share). `Executor` below is what the handlers, the poller, the deadlines
and the evidence worker call: each entry decides, then hands the action to its concern.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from pydantic import ValidationError

from rtc_recording import metrics
from rtc_recording.api.recording import Phase, RtcRecordingSpec, spec_errors, status_of
from rtc_recording.api.task import CloudError, NotFound
from rtc_recording.cloud.accounts import CloudClients
from rtc_recording.cloud.credentials import CredentialsUnavailable
from rtc_recording.controller.executor.adopt import Adopter
from rtc_recording.controller.executor.context import Context, RetryLater
from rtc_recording.controller.executor.observe import Observer
from rtc_recording.controller.executor.pinning import Pinning
from rtc_recording.controller.executor.start import Starter
from rtc_recording.controller.executor.stop import Stopper
from rtc_recording.controller.executor.update import Updater
from rtc_recording.controller.executor.writes import Writes
from rtc_recording.controller.index import Index, Tracked
from rtc_recording.decide import actions, callbacks, classes, patches
from rtc_recording.decide.actions import (
    AdoptTask,
    AwaitOutcome,
    BackoffLimitExceeded,
    Controls,
    Expire,
    GiveUp,
    Halt,
    Resend,
    Restart,
    Start,
    Suspend,
    Update,
)
from rtc_recording.decide.callbacks import Adopt, Ignore, Observe, Reap
from rtc_recording.decide.classes import InvalidClassSpec
from rtc_recording.decide.patches import Reason
from rtc_recording.kube import errors as k8s
from rtc_recording.kube.client import Kube
from rtc_recording.settings import Settings

__all__ = ["Executor", "RetryLater"]
log = logging.getLogger(__name__)


class Executor:
    def __init__(
        self,
        kube: Kube,
        clients: CloudClients,
        settings: Settings,
        index: Index,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        previous_mark: str = "",
    ):
        self.ctx = ctx = Context(kube, clients, settings, index, clock)
        self.writes = Writes(ctx, previous_mark)
        self.pinning = Pinning(ctx, self.writes)
        self.observer = Observer(ctx, self.writes)
        self.updater = Updater(ctx, self.writes, self.observer)
        self.adopter = Adopter(ctx, self.writes, self.updater)
        self.starter = Starter(ctx, self.writes, self.adopter)
        self.stopper = Stopper(ctx, self.writes)

    # -- create / resume / update --------------------------------------------------------------
    async def reconcile(self, obj: dict, retry: int = 0) -> None:
        if obj["metadata"].get("deletionTimestamp"):
            return  # being deleted: the delete handler decides, and nothing may start
        ctx, status, generation = self.ctx, status_of(obj), obj["metadata"]["generation"]
        await self.writes.announce(obj)  # the operator may have died between a transition and its Event
        try:
            RtcRecordingSpec.model_validate(obj["spec"])
        except ValidationError as exc:  # the CRD let it through: say so instead of retrying forever
            await self.writes.refuse_spec(obj, spec_errors(exc))
            return
        uid = obj["metadata"]["uid"]
        waiting = status.attempt is not None and ctx.evidence_waiting(uid, status.attempt.number)
        action = actions.next_action(
            status,
            generation,
            ctx.clock(),
            ctx.grace,
            ctx.cloud_health(),
            waiting,
            Controls.of(obj),
            ctx.waiting.sends(uid),
        )
        name = type(action).__name__.lower()
        try:
            match action:
                case AwaitOutcome(attempt, seconds):
                    raise RetryLater(seconds, f"attempt {attempt}: answer lost, waiting for a callback naming its task")
                case Start(attempt):
                    if (classed := await self.pinning.with_class(obj, retry)) is not None:
                        await self.starter.start(*classed, status, attempt, retry)
                case Resend(attempt):
                    await self.starter.resend(obj, status, attempt, retry)
                case GiveUp(attempt):
                    await self.starter.give_up(obj, attempt)
                case Restart():
                    await self._restart(obj)
                case BackoffLimitExceeded():
                    await self._backoff_limit_exceeded(obj)
                case Update(task_id):
                    await self._update(obj, task_id, retry)
                case Halt(task_id, reason):
                    await self.stopper.halt(obj, task_id, reason, retry)
                case Suspend():
                    await self._suspend(obj)
                case Expire():
                    await self.stopper.expire(obj)
                case AdoptTask(task_id):
                    if (classed := await self.pinning.with_class(obj, retry)) is not None:
                        await self.adopter.adopt_annotated(*classed, task_id, retry)
        except RetryLater:
            metrics.RECONCILES.labels(action=name, outcome="retry").inc()
            raise
        metrics.RECONCILES.labels(action=name, outcome="ok").inc()

    async def _update(self, obj: dict, task_id: str, retry: int) -> None:
        pinned = obj["status"]["recordingClass"] if status_of(obj).recording_class else None
        try:  # with the class generation the task was started from, never the class as it is now
            spec = classes.validate(obj["spec"], pinned)
        except InvalidClassSpec as exc:
            await self.writes.refuse_spec(obj, str(exc))
            return
        await self.updater.update(obj, spec, task_id, retry)

    async def try_again(self, key: tuple[str, str], uid: str) -> None:
        """A recording waiting for participants is due (controller/waiting.py): decide again from fresh state."""
        waiting = self.ctx.waiting
        try:
            obj = await self.ctx.kube.get_recording(*key)
        except k8s.NotFound:
            waiting.forget(uid)
            return
        if obj["metadata"]["uid"] == uid:  # not a namesake (a deleting object: reconcile leaves it to the deletion)
            await self._reconcile_or_later(obj)

    async def _reconcile_or_later(self, obj: dict) -> None:
        """Reconcile outside a Kopf handler: a retry it asks for, or a failure, waits in the waiting room."""
        key, uid = _key(obj), obj["metadata"]["uid"]
        try:
            await self.reconcile(obj)
        except RetryLater as exc:
            self.ctx.waiting.later(key, uid, exc.delay)
        except (k8s.Failed, CloudError, CredentialsUnavailable) as exc:
            log.warning("%s/%s: %s; trying again", *key, exc)
            self.ctx.waiting.later(key, uid, self.ctx.backoff(1))

    async def _restart(self, obj: dict) -> None:
        """restartPolicy OnFailure: the ended task is stopped (a loss judged from one Describe may be
        wrong: Stop is idempotent, a forgotten task is not), the credentials pinned again (a settled
        recording released them), one write and one Event say so, and the next attempt waits its
        turn in the waiting room, not in the due-time loop."""
        generation, controls = obj["metadata"]["generation"], Controls.of(obj)
        ended = status_of(obj).task_id
        if ended and self.ctx.index.sealer.proven(obj):
            try:
                await self.ctx.clients.stop(await self.ctx.account_for(obj), ended)
            except NotFound:
                pass
        await self.ctx.pins.pin(obj)

        def restarting(fresh: dict) -> dict | None:
            status = status_of(fresh)
            if fresh["metadata"].get("deletionTimestamp") or status.task_id != ended:
                return None
            if actions.restart_at(status, controls) is None:
                return None
            return patches.restarting(status, controls.backoff_limit, generation, self.ctx.clock())

        _, patch = await self.writes.write(obj, restarting, event=("Normal", Reason.RESTARTING))
        if patch is not None:
            self.ctx.waiting.later(_key(obj), obj["metadata"]["uid"], 0)

    async def _backoff_limit_exceeded(self, obj: dict) -> None:
        generation, controls = obj["metadata"]["generation"], Controls.of(obj)
        ended = status_of(obj).task_id

        def exceeded(fresh: dict) -> dict | None:
            status = status_of(fresh)
            if status.task_id != ended or actions.restart_at(status, controls) is None:
                return None
            return patches.backoff_limit_exceeded(status, controls.backoff_limit, generation, self.ctx.clock())

        await self.writes.write(obj, exceeded, event=("Warning", Reason.BACKOFF_LIMIT_EXCEEDED))

    async def _suspend(self, obj: dict) -> None:
        generation = obj["metadata"]["generation"]

        def suspended(fresh: dict) -> dict | None:
            status = status_of(fresh)
            if status.task_id or status.phase == Phase.SUSPENDED:
                return None
            return patches.suspended_idle(status, generation, self.ctx.clock())

        await self.writes.write(obj, suspended, event=("Normal", "Suspended"))
        self.ctx.waiting.forget(obj["metadata"]["uid"])

    # -- delete, due times, observation ---------------------------------------------------------
    async def delete(self, obj: dict, retry: int = 0) -> None:
        await self.stopper.delete(obj, retry)

    async def on_due(self, key: tuple[str, str]) -> None:
        """A due time (maxDurationSeconds, a restart, ttlSecondsAfterFinished) passed: act if it still holds."""
        ctx = self.ctx
        try:
            obj = await ctx.kube.get_recording(*key)
        except k8s.NotFound:
            return
        if obj["metadata"].get("deletionTimestamp"):
            return  # the delete handler stops its task; nothing else is due
        status, generation = status_of(obj), obj["metadata"]["generation"]
        action = actions.next_action(
            status, generation, ctx.clock(), ctx.grace, ctx.cloud_health(), controls=Controls.of(obj)
        )
        match action:
            case Halt(task_id, reason):
                await self.stopper.halt(obj, task_id, reason, 0)
            case Expire():
                await self.stopper.expire(obj)
            case Restart():
                await self._restart(obj)
            case BackoffLimitExceeded():
                await self._backoff_limit_exceeded(obj)

    async def describe(self, tracked: Tracked) -> dict | None:
        return await self.observer.describe(tracked)

    async def refuse_unproven(self, obj: dict) -> None:
        await self.writes.refuse_unproven(obj)

    # -- evidence from callbacks ------------------------------------------------------------
    async def act_on(self, namespace: str, name: str, uid: str, attempt: int, task_id: str, event: str) -> None:
        """Decide again, from fresh status, what a recorded callback means, and do it."""
        try:
            obj: dict | None = await self.ctx.kube.get_recording(namespace, name)
        except k8s.NotFound:
            obj = None
        if obj is not None and obj["metadata"]["uid"] != uid:
            obj = None  # a namesake: the callback's resource is gone
        tomb = self.ctx.index.tombstones.get(uid)
        view = callbacks.View.of(obj) if obj is not None else None
        stopped = False
        if obj is None:
            # The resource is gone: its tasks are reaped only if its deletion said they were unwanted, as
            # recorded in the apiserver (controller/deletions.py), never on its absence alone.
            deletion = await self.ctx.deletions.get(uid)
            if deletion is None or deletion.orphaned and deletion.task_id == task_id:
                why = "left running on purpose" if deletion else "no record of its deletion stopping it"
                log.info("%s/%s: task %s of a deleted resource: %s; not reaped", namespace, name, task_id, why)
                return
            stopped = deletion.task_id == task_id
        action = callbacks.on_callback(view, uid, attempt, task_id, event, known_stopped=stopped)
        log.info("%s/%s attempt %s: evidence %s %s -> %s", namespace, name, attempt, event, task_id, action)
        match action:
            case Adopt(task) if obj is not None:
                await self.adopter.adopt_from_callback(obj, attempt, task)
            case Observe() if obj is not None:
                await self.observer.describe(Tracked.of(obj))
            case Reap(task):
                stand_in = obj or (tomb.stand_in() if tomb else {"metadata": {"namespace": namespace, "name": name}})
                await self.adopter.reap(stand_in, task)
            case Ignore():
                pass


def _key(obj: dict) -> tuple[str, str]:
    return obj["metadata"]["namespace"], obj["metadata"]["name"]
