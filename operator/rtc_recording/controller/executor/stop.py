"""Stop: end our own task, for a deletion (the finalizer waits for it) or a lifecycle control (suspend, maxDuration).

Never let go of a running task: a Stop that fails keeps the finalizer, says why (one Event, counted)
and is tried again. The one exception is a namespace being deleted whose credentials went first
(`_last_resort`).
"""

from __future__ import annotations

import logging

from rtc_recording import metrics
from rtc_recording.api.recording import Phase, status_of
from rtc_recording.api.task import Invalid, NotFound, Throttled, Transient
from rtc_recording.cloud.credentials import CredentialsUnavailable
from rtc_recording.cloud.secrets import SecretUnavailable
from rtc_recording.controller import usage
from rtc_recording.controller.executor.context import Context, RetryLater
from rtc_recording.controller.executor.writes import Writes
from rtc_recording.decide import actions, patches
from rtc_recording.decide.actions import AwaitOutcome, Orphan, Release, Stop
from rtc_recording.kube import errors as k8s
from rtc_recording.kube.events import Posted

log = logging.getLogger(__name__)
FAILURES = (Throttled, Transient, Invalid, CredentialsUnavailable)


class Stopper:
    def __init__(self, ctx: Context, writes: Writes):
        self.ctx, self.writes = ctx, writes

    async def delete(self, obj: dict, retry: int) -> None:
        """Stop the task; only then may the finalizer go. A cloud outage keeps it and retries."""
        meta = obj["metadata"]
        try:  # Kopf's body may predate an adoption
            obj = await self.ctx.kube.get_recording(meta["namespace"], meta["name"])
        except k8s.NotFound:
            return
        status = status_of(obj)
        if (obj["metadata"].get("deletionTimestamp") or self.ctx.started) < self.ctx.started and status.task_id:
            # A deletion the operator before this one began: it may have stopped the task and recorded
            # so, then died before the finalizer went. A Stop whose answer is known is not sent again.
            done = await self.ctx.deletions.get(meta["uid"])
            if done is not None and done.task_id == status.task_id and not done.orphaned:
                return
        waiting = status.attempt is not None and self.ctx.evidence_waiting(meta["uid"], status.attempt.number)
        orphan = (obj.get("spec") or {}).get("deletionPolicy") == "Orphan"
        sends = self.ctx.waiting.close(meta["uid"])  # no Start of it leaves any more
        match actions.deletion_action(
            status, self.ctx.clock(), self.ctx.grace, self.ctx.cloud_health(), waiting, orphan, sends
        ):
            case Orphan(task_id):
                await self._remember(obj, task_id, orphaned=True, retry=retry)
                running = f"task {task_id} keeps running" if task_id else "no task was running"
                message = f"deletionPolicy Orphan: {running}"
                await self.writes.event(obj, "Warning", "Orphaned", message, key=f"orphaned.{meta['uid'][:8]}")
            case AwaitOutcome(attempt, seconds):
                raise RetryLater(
                    seconds, f"attempt {attempt}: waiting for a callback naming its task before letting go"
                )
            case Release(attempt):
                obj, patch = await self.writes.on_attempt(obj, attempt, lambda s: {"attempt": {"notExecuted": True}})
                if patch is None and (adopted := status_of(obj).task_id):
                    await self.stop(obj, adopted, retry)  # adopted just now
                await self._remember(obj, status_of(obj).task_id, orphaned=False, retry=retry)
            case Stop(task_id):
                await self.stop(obj, task_id, retry)
                await self._remember(obj, task_id, orphaned=False, retry=retry)

    async def _remember(self, obj: dict, task_id: str | None, orphaned: bool, retry: int) -> None:
        """Record, before the finalizer goes, what the deletion did with the task (controller/deletions.py)."""
        meta = obj["metadata"]
        try:
            await self.ctx.deletions.record(meta["uid"], meta["namespace"], task_id, orphaned)
        except k8s.Failed as exc:
            raise RetryLater(self.ctx.backoff(retry), f"cannot record the deletion: {exc}") from exc

    async def stop(self, obj: dict, task_id: str, retry: int) -> None:
        if not self.ctx.index.sealer.proven(obj):
            # Not ours to stop. Holding the finalizer would wait for nothing: let the resource go.
            await self.writes.refuse_unproven(obj)
            return
        try:
            account = await self.ctx.account_for(obj)
            await self.ctx.clients.stop(account, task_id)
        except NotFound:
            pass  # nothing to stop is success
        except FAILURES as exc:
            metrics.RECONCILES.labels(action="stop", outcome="retry").inc()
            posted = await self._stop_failed(obj, task_id, exc)
            if posted is Posted.NAMESPACE_TERMINATING and isinstance(exc, SecretUnavailable) and exc.gone:
                await self._last_resort(obj, task_id)  # its namespace goes, and its credentials went first
                return
            raise RetryLater(self.ctx.delay(exc, retry), f"Stop failed: {exc}") from exc
        else:
            usage.stopped(obj, self.ctx.clock())
        metrics.RECONCILES.labels(action="stop", outcome="ok").inc()
        await self.writes.event(
            obj, "Normal", "Stopped", f"task {task_id} stopped", key=f"stopped.{task_id}"[:40].lower()
        )

    async def halt(self, obj: dict, task_id: str, reason: str, retry: int) -> None:
        """Stop our own task for a lifecycle control: intent, Stop, outcome; a crash anywhere
        repeats from the intent."""
        generation = obj["metadata"]["generation"]
        if not self.ctx.index.sealer.proven(obj):
            await self.writes.refuse_unproven(obj)  # not ours to stop (decide/ownership.py)
            return
        obj, _ = await self.writes.on_task(
            obj,
            task_id,
            lambda s: (
                None
                if (s.phase == Phase.STOPPING and s.reason == reason)
                else patches.halting(s, reason, generation, self.ctx.clock())
            ),
        )
        if status_of(obj).task_id != task_id:
            return  # something else happened to the task meanwhile: decide again next time
        try:
            account = await self.ctx.account_for(obj)
            await self.ctx.clients.stop(account, task_id)
        except NotFound:
            pass  # already stopped: the outcome is the same
        except FAILURES as exc:
            await self._stop_failed(obj, task_id, exc)
            raise RetryLater(self.ctx.delay(exc, retry), f"Stop failed: {exc}") from exc

        def halted(fresh: dict) -> dict | None:
            status = status_of(fresh)
            if not self.writes.task_current(fresh, task_id) or status.phase != Phase.STOPPING:
                return None
            return patches.halted(status, reason, fresh["metadata"]["generation"], self.ctx.clock())

        await self.writes.write(obj, halted, event=("Normal", reason), persist=True)

    async def expire(self, obj: dict) -> None:
        """ttlSecondsAfterFinished passed: delete, with the uid as a precondition (never a namesake)."""
        meta = obj["metadata"]
        message = "ttlSecondsAfterFinished passed: deleting the RtcRecording"
        await self.writes.event(obj, "Normal", "Expired", message, key=f"expired.{meta['uid'][:8]}")
        await self.ctx.kube.delete_recording(meta["namespace"], meta["name"], uid=meta["uid"])

    async def _stop_failed(self, obj: dict, task_id: str, exc: Exception) -> Posted:
        key = f"stopfailed.{task_id}"[:40].lower()
        return await self.writes.event(obj, "Warning", "StopFailed", f"task {task_id}: {exc}", key=key, repeat=True)

    async def _last_resort(self, obj: dict, task_id: str) -> None:
        """The namespace is being deleted and the credentials Secret is gone (pins.py): the operator's
        own credentials may stop the task; if not, it is given up on so the namespace can go."""
        meta = obj["metadata"]
        try:
            own = {"metadata": meta, "spec": {"region": (obj.get("spec") or {}).get("region")}}
            await self.ctx.clients.stop(await self.ctx.account_for(own), task_id)
            usage.stopped(obj, self.ctx.clock())
            message, outcome = f"task {task_id} stopped with the operator's own credentials", "ok"
        except (NotFound, *FAILURES) as exc:
            message, outcome = (
                (
                    f"task {task_id} could not be stopped: the namespace is being deleted and Secret "
                    f"spec.credentialsSecretRef is gone ({exc}); it ends by itself when idle"
                ),
                "abandoned",
            )
            metrics.ABANDONED.inc()
        log.error("%s/%s: %s", meta["namespace"], meta["name"], message)
        metrics.RECONCILES.labels(action="stop", outcome=outcome).inc()
        try:
            await self.ctx.kube.patch_status(
                meta["namespace"],
                meta["name"],
                {"reason": "StopAbandoned" if outcome == "abandoned" else "Stopped", "message": message},
            )
        except (k8s.Failed, k8s.NotFound):
            pass
