"""Adopt and reap: take over a task this resource did not see start, and stop a task nobody may keep.

- Adopting by annotation: the user names a running task (`rtc.recording.io/adopt-task-id`).
- Adopting from a callback: a callback named the task of a Start whose answer was lost.
- Reaping: a task that is not its resource's current one (a duplicate, or a deleted resource's)
  is stopped, unless it is any resource's current task: a callback's body is not signed.
"""

from __future__ import annotations

import logging

from rtc_recording import metrics
from rtc_recording.api.names import ADOPT_ANNOTATION
from rtc_recording.api.recording import RtcRecordingSpec, status_of
from rtc_recording.api.task import NotFound, TaskStatus, Throttled, Transient
from rtc_recording.cloud.credentials import CredentialsUnavailable
from rtc_recording.controller.executor.context import Context, RetryLater
from rtc_recording.controller.executor.pinning import pin_patch
from rtc_recording.controller.executor.update import Updater
from rtc_recording.controller.executor.writes import Writes
from rtc_recording.decide import patches
from rtc_recording.decide.patches import Reason
from rtc_recording.kube import errors as k8s

log = logging.getLogger(__name__)


class Adopter:
    def __init__(self, ctx: Context, writes: Writes, updater: Updater):
        self.ctx, self.writes, self.updater = ctx, writes, updater

    async def adopt_annotated(self, obj: dict, spec: RtcRecordingSpec, task_id: str, retry: int) -> None:
        """The task the adopt annotation names must exist, be live and be no other resource's task.
        Its subscribers and layout are then made to match spec by an Update (observedGeneration 0)."""
        generation = obj["metadata"]["generation"]
        why = await self._cannot_adopt(obj, task_id)
        if why is not None:
            await self.writes.write(
                obj,
                lambda o: (
                    None
                    if status_of(o).phase
                    else patches.adoption_failed(status_of(o), task_id, why, generation, self.ctx.clock())
                ),
                event=("Warning", "AdoptionFailed"),
            )
            return
        adopted = {
            "reason": Reason.ADOPTED,
            "message": f"recording as task {task_id}, adopted ({ADOPT_ANNOTATION})",
            **pin_patch(obj),
        }
        obj, patch = await self.writes.write(
            obj,
            lambda o: (
                None
                if status_of(o).phase
                else {**patches.started(status_of(o), task_id, 0, self.ctx.clock()), **adopted}
            ),
            event=("Normal", "Adopted"),
            persist=True,
        )
        if patch is not None:
            await self.updater.update(obj, spec, task_id, retry)

    async def _cannot_adopt(self, obj: dict, task_id: str) -> str | None:
        if (owner := self.ctx.index.owner(task_id)) is not None and owner.uid != obj["metadata"]["uid"]:
            return "it is the task of another RtcRecording"
        try:
            orphan = await self.ctx.deletions.orphan(task_id)
        except k8s.Failed as exc:
            raise RetryLater(self.ctx.backoff(0), f"cannot read the deletion records: {exc}") from exc
        if orphan is not None and orphan.namespace != obj["metadata"]["namespace"]:
            return "a deletion in another namespace left it running (deletionPolicy Orphan)"
        try:
            account = await self.ctx.account_for(obj)
            info = await self.ctx.clients.describe(account, task_id)
        except NotFound:
            return "the cloud does not know it (for these credentials and region)"
        except (Throttled, Transient, CredentialsUnavailable) as exc:
            raise RetryLater(self.ctx.delay(exc, 0), f"adoption of {task_id} not confirmed: {exc}") from exc
        if info.status not in (TaskStatus.RUNNING, TaskStatus.RECOVERING):
            return f"it is {info.status.value}, not running"
        return None

    async def adopt_from_callback(self, obj: dict, attempt: int, task_id: str) -> None:
        """A callback named the task of a pending attempt: confirm it exists, then take it."""
        if (owner := self.ctx.index.owner(task_id)) is not None and owner.uid != obj["metadata"]["uid"]:
            log.warning("evidence names task %s, the current task of %s/%s; not adopted", task_id, *owner.key)
            return
        if not self.ctx.index.sealer.account_proven(obj):
            log.warning(
                "evidence names task %s, but the class pin of %s/%s is not ours; not adopted", task_id, *_key(obj)
            )
            return
        account = await self.ctx.account_for(obj)
        try:
            info = await self.ctx.clients.describe(account, task_id)
        except NotFound:
            return  # not confirmed: a forged or very old callback changes nothing
        if info.status == TaskStatus.STOPPED:
            return  # it ended before we learned of it; the grace period then starts the next attempt
        message = f"recording as task {task_id} (learned from its callback: the Start answer was lost)"
        # The task carries the spec of the attempt's generation; a newer one is then an Update.
        obj, patch = await self.writes.on_attempt(
            obj,
            attempt,
            lambda s: {
                **patches.started(s, task_id, s.attempt.generation or 0 if s.attempt else 0, self.ctx.clock()),
                "message": message,
            },
            event=("Normal", "Started"),
            persist=True,
        )
        if patch is None and status_of(obj).task_id != task_id:
            await self.reap(obj, task_id)

    async def reap(self, obj: dict, task_id: str) -> None:
        """Stop a task that is not `obj`'s current one (obj may stand in for a deleted resource).
        Never one that is any resource's current task: a callback's body is not signed."""
        if (owner := self.ctx.index.owner(task_id)) is not None:
            log.warning("not stopping task %s: it is the current task of %s/%s", task_id, *owner.key)
            return
        if not self.ctx.index.sealer.account_proven(obj):
            log.warning("not stopping task %s: the class pin of %s/%s is not ours", task_id, *_key(obj))
            return
        account = await self.ctx.account_for(obj)
        try:
            await self.ctx.clients.stop(account, task_id)
        except NotFound:
            return  # already stopped, or not this account's
        metrics.STRAY_TASKS.inc()
        meta = obj["metadata"]
        log.warning("stopped stray task %s of %s/%s", task_id, meta["namespace"], meta["name"])
        if "uid" not in meta:
            return  # the resource is gone: nothing to count on
        try:
            await self.writes.write(
                obj,
                lambda o: patches.stray_reaped(status_of(o), task_id) if o["metadata"]["uid"] == meta["uid"] else None,
            )
        except k8s.NotFound:
            return
        key = f"stray.{task_id}"[:40].lower()
        await self.writes.event(obj, "Warning", "StrayTaskStopped", f"stopped duplicate task {task_id}", key=key)


def _key(obj: dict) -> tuple[str, str]:
    return obj["metadata"]["namespace"], obj["metadata"]["name"]
