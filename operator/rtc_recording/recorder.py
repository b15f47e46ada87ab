"""Carries out what `reconcile` decides: cloud calls and compare-and-swap status writes.

Kopf-free, so the handlers stay thin and the receiver (a separate process) shares it. A
need to try again later is raised as `RetryLater`; the handlers turn it into Kopf's
TemporaryError.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

from pydantic import ValidationError

from . import metrics, reconcile
from .cloud import Invalid, NotFound, RecordingCloud, Throttled, Transient, UnknownOutcome
from .credentials import CredentialsUnavailable
from .kube import Conflict, Gone, Kube
from .reconcile import AwaitOutcome, Release, Start, Stop, Update
from .resource import (InvalidSpec, RtcRecordingSpec, RtcRecordingStatus, spec_errors, start_params,
                       status_of, update_params)
from .settings import Settings

log = logging.getLogger(__name__)
COMPONENT = "rtc-recording-operator"
PERSIST_TRIES = 6  # with the backoff settings' defaults: about a minute


def notify_url(base: str, namespace: str, name: str, uid: str, attempt: int) -> str:
    """The receiver's URL for one Start attempt: the path correlates a callback with it."""
    return f"{base.rstrip('/')}/callbacks/{namespace}/{name}/{uid}/{attempt}"


class RetryLater(Exception):
    def __init__(self, delay: float, message: str):
        super().__init__(message)
        self.delay = delay


CloudFor = Callable[[dict], Awaitable[RecordingCloud]]
Run = Callable[..., Awaitable[Any]]
NotifyKey = Callable[[dict], Awaitable[str | None]]


class Recorder:
    def __init__(self, kube: Kube, cloud_for: CloudFor, run: Run, settings: Settings, user_notify_key: NotifyKey,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.kube, self.cloud_for, self.run, self.settings = kube, cloud_for, run, settings
        self.user_notify_key, self.clock = user_notify_key, clock

    @property
    def _grace(self) -> float:
        """How long a lost Start answer may take to be named by a callback. Without a receiver
        no callback can name it: waiting would only delay the retry."""
        return self.settings.unknown_outcome_grace_seconds if self.settings.callback_url else 0

    def _backoff(self, retry: int) -> float:
        return reconcile.backoff(retry, self.settings.backoff_base_seconds, self.settings.backoff_max_seconds)

    async def _event(self, obj: dict, type_: str, reason: str, message: str) -> None:
        """Every transition is one Event and one log line naming the resource and its task."""
        meta = obj["metadata"]
        log.log(logging.WARNING if type_ == "Warning" else logging.INFO, "%s/%s %s: %s", meta["namespace"],
                meta["name"], reason, message,
                extra={"object": {"namespace": meta["namespace"], "name": meta["name"],
                                  "taskId": (obj.get("status") or {}).get("taskId"), "reason": reason}})
        try:
            await self.kube.post_event(obj, type_, reason, message, COMPONENT)
        except Exception:  # an Event is a courtesy; never let it undo the work
            log.warning("could not post event %s for %s", reason, obj["metadata"]["name"], exc_info=True)

    # -- create / resume / update -----------------------------------------------------------------
    async def reconcile(self, obj: dict, retry: int = 0) -> None:
        status, generation = status_of(obj), obj["metadata"]["generation"]
        try:
            spec = RtcRecordingSpec.model_validate(obj["spec"])
        except ValidationError as exc:  # the CRD let it through: say so instead of retrying forever
            await self._refuse_spec(obj, spec_errors(exc))
            return
        action = reconcile.next_action(status, generation, self.clock(), self._grace)
        name = type(action).__name__.lower()
        try:
            match action:
                case AwaitOutcome(attempt, seconds):
                    raise RetryLater(seconds, f"attempt {attempt}: answer lost, waiting for a callback naming its task")
                case Start(attempt):
                    await self._start(obj, spec, status, attempt, retry)
                case Update(task_id):
                    await self._update(obj, spec, task_id, retry)
        except RetryLater:
            metrics.RECONCILES.labels(action=name, outcome="retry").inc()
            raise
        metrics.RECONCILES.labels(action=name, outcome="ok").inc()

    async def _refuse_spec(self, obj: dict, message: str) -> None:
        """A spec only the operator can see is wrong: Failed if no task runs; if one does, it keeps
        its settings and Synced=False says why (never Failed over a live task)."""
        meta, generation = obj["metadata"], obj["metadata"]["generation"]

        def change(o: dict) -> dict | None:
            status = status_of(o)
            if status.task_id:
                return reconcile.update_refused(status, "InvalidSpec", message, generation, self.clock())
            if status.phase == reconcile.Phase.FAILED and status.observed_generation == generation:
                return None
            return reconcile.start_refused(status, "InvalidSpec", message, generation, self.clock())

        obj, patch = await self.kube.mutate_status(meta["namespace"], meta["name"], change)
        if patch is not None:
            await self._event(obj, "Warning", "InvalidSpec", message)

    async def _start(self, obj: dict, spec: RtcRecordingSpec, status: RtcRecordingStatus, attempt: int,
                     retry: int) -> None:
        meta, generation = obj["metadata"], obj["metadata"]["generation"]
        ns, name = meta["namespace"], meta["name"]
        try:
            cloud = await self.cloud_for(obj)
            params = await self._start_params(obj, spec, attempt)
        except InvalidSpec as exc:
            await self._refuse_spec(obj, str(exc))
            return
        except (CredentialsUnavailable, Gone, ValueError) as exc:
            message = f"cannot call the cloud: {exc}"
            # Only over "nothing runs": the receiver may have adopted a task meanwhile.
            await self._write(ns, name, lambda o: None if status_of(o).task_id else {
                "phase": reconcile.Phase.PENDING, "reason": "CredentialsUnavailable", "message": message})
            raise RetryLater(self._backoff(retry), message) from exc

        if status.attempt and not status.attempt.not_executed:
            await self._event(obj, "Warning", "UnknownOutcome",
                              f"no callback named the task of attempt {status.attempt.number}, whose answer was lost;"
                              f" starting attempt {attempt}")

        # Write ahead (compare-and-swap on what we decided from): a crash after Start is then
        # recognisable as "answer unknown", and a concurrent writer makes us re-read instead.
        try:
            obj = await self.kube.patch_status(
                ns, name, reconcile.attempt_recorded(status, attempt, generation, self.clock()),
                resource_version=meta["resourceVersion"], uid=meta["uid"])
        except Conflict:
            raise RetryLater(0.2, "the object changed since it was read; deciding again") from None

        try:
            task_id = await self.run(cloud.start, params)
        except Invalid as exc:
            # The service answered: this attempt made no task, so nothing is waited for on delete.
            obj = await self._write(ns, name, lambda o: self._if_attempt(o, attempt, lambda s: {
                **reconcile.start_refused(s, exc.code, f"StartRtcCloudRecording refused: {exc.code}: {exc.message}",
                                          generation, self.clock()),
                "attempt": {"notExecuted": True}}))
            await self._event(obj, "Warning", "Failed", f"{exc.code}: {exc.message}")
            return
        except (Throttled, Transient) as exc:
            await self._write(ns, name, lambda o: self._if_attempt(o, attempt, lambda s: reconcile.start_not_executed(
                s, exc, generation, self.clock())))
            raise RetryLater(self._backoff(retry), f"Start not carried out: {exc}") from exc
        except UnknownOutcome as exc:
            await self._event(obj, "Warning", "UnknownOutcome",
                              f"attempt {attempt}: {exc}; waiting for a callback naming the task")
            raise RetryLater(self._grace or self._backoff(retry), str(exc)) from exc

        try:
            obj, patch = await self._persist(ns, name, lambda o: self._if_attempt(
                o, attempt, lambda s: reconcile.started(s, task_id, generation, self.clock())))
        except Gone:
            await self._reap({"metadata": {"namespace": ns, "name": name}}, cloud, task_id)  # deleted meanwhile
            return
        except Exception:
            # The apiserver would not take it: a task nobody can find must not run on.
            await self._reap(obj, cloud, task_id)
            raise
        if patch is not None:
            await self._event(obj, "Normal", "Started", f"recording {spec.channel_id} as task {task_id}")
        elif status_of(obj).task_id != task_id:
            # A newer attempt or an adopted callback won: this task is a duplicate.
            await self._reap(obj, cloud, task_id)

    def _if_attempt(self, obj: dict, attempt: int, change: Callable[[RtcRecordingStatus], dict]) -> dict | None:
        """Apply `change` only while this attempt is still the pending one."""
        status = status_of(obj)
        if status.task_id is None and status.attempt and status.attempt.number == attempt:
            return change(status)
        return None

    def _if_task(self, obj: dict, task_id: str, change: Callable[[RtcRecordingStatus], dict]) -> dict | None:
        """Apply `change` only while `task_id` is the live current task."""
        status = status_of(obj)
        return change(status) if status.task_id == task_id and status.phase in reconcile.LIVE else None

    async def _start_params(self, obj: dict, spec: RtcRecordingSpec, attempt: int) -> dict:
        meta = obj["metadata"]
        if self.settings.callback_url:
            url = notify_url(self.settings.callback_url, meta["namespace"], meta["name"], meta["uid"], attempt)
            key = self.settings.callback_auth_key.get_secret_value()
        else:
            url, key = None, await self.user_notify_key(obj)  # start_params falls back to spec.notify.url
        params = start_params(spec, region_default=self.settings.default_region, notify_url=url,
                              notify_auth_key=key)
        if self.settings.callback_url and spec.storage.oss:
            # Every HLS slice uploaded is then a callback: a heartbeat that exposes a duplicate
            # task within one slice duration, even if all its start callbacks were lost. The
            # service always writes HLS to OSS, so SLICE is always a valid choice.
            formats = params.get("NotifyFileUploadedFormat", [])
            params["NotifyFileUploadedFormat"] = sorted({*formats, "SLICE"})
        return params

    async def _update(self, obj: dict, spec: RtcRecordingSpec, task_id: str, retry: int) -> None:
        meta, generation = obj["metadata"], obj["metadata"]["generation"]
        cloud = await self.cloud_for(obj)
        try:
            await self.run(cloud.update, task_id, update_params(spec))
        except Invalid as exc:
            message = f"UpdateRtcCloudRecording refused: {exc.code}: {exc.message}"
            obj = await self._write(meta["namespace"], meta["name"], lambda o: self._if_task(
                o, task_id, lambda s: reconcile.update_refused(s, exc.code, message, generation, self.clock())))
            await self._event(obj, "Warning", "UpdateFailed", f"{exc.code}: {exc.message}")
            return
        except NotFound:
            await self.observe(obj)  # the task ended meanwhile: say so instead of updating
            return
        except (Throttled, Transient) as exc:
            raise RetryLater(self._backoff(retry), f"Update not carried out: {exc}") from exc
        obj = await self._write(meta["namespace"], meta["name"], lambda o: self._if_task(
            o, task_id, lambda s: reconcile.updated(s, generation, self.clock())))
        await self._event(obj, "Normal", "Updated", f"subscribers and layout of generation {generation} applied")

    # -- delete ------------------------------------------------------------------------------------
    async def delete(self, obj: dict, retry: int = 0) -> None:
        """Stop the task; only then may the finalizer go. A cloud outage keeps it and retries."""
        meta = obj["metadata"]
        try:  # Kopf's body may predate an adoption by the receiver
            obj = await self.kube.get_recording(meta["namespace"], meta["name"])
        except Gone:
            return
        match reconcile.deletion_action(status_of(obj), self.clock(), self._grace):
            case AwaitOutcome(attempt, seconds):
                raise RetryLater(seconds, f"attempt {attempt}: waiting for a callback naming its task before letting go")
            case Release(attempt):
                obj, patch = await self.kube.mutate_status(meta["namespace"], meta["name"], lambda o: self._if_attempt(
                    o, attempt, lambda s: {"attempt": {"notExecuted": True}}))
                if patch is None and status_of(obj).task_id:
                    await self._stop(obj, status_of(obj).task_id, retry)  # adopted just now
            case Stop(task_id):
                await self._stop(obj, task_id, retry)

    async def _stop(self, obj: dict, task_id: str, retry: int) -> None:
        try:
            cloud = await self.cloud_for(obj)
            await self.run(cloud.stop, task_id)
        except NotFound:
            pass  # nothing to stop is success
        except (Throttled, Transient, Invalid, CredentialsUnavailable, Gone, ValueError) as exc:
            # Never let go of a running task: keep the finalizer, say why, try again.
            metrics.RECONCILES.labels(action="stop", outcome="retry").inc()
            await self._event(obj, "Warning", "StopFailed", f"task {task_id}: {exc}")
            raise RetryLater(self._backoff(retry), f"Stop failed: {exc}") from exc
        metrics.RECONCILES.labels(action="stop", outcome="ok").inc()
        await self._event(obj, "Normal", "Stopped", f"task {task_id} stopped")

    # -- observation --------------------------------------------------------------------------------
    async def observe(self, obj: dict, stop_reason: str | None = None) -> dict | None:
        """Describe the current task and write what the cloud says; returns the patch applied."""
        task_id = status_of(obj).task_id
        if not task_id:
            return None
        cloud = await self.cloud_for(obj)
        try:
            info = await self.run(cloud.describe, task_id)
        except NotFound:
            info = None
        meta = obj["metadata"]

        def change(o: dict) -> dict | None:
            status = status_of(o)
            if status.task_id != task_id:
                return None
            return reconcile.observed(status, info, o["metadata"]["generation"], self.clock(), stop_reason)

        obj, patch = await self.kube.mutate_status(meta["namespace"], meta["name"], change)
        if patch and patch.get("phase"):
            kind = "Warning" if patch["phase"] in (reconcile.Phase.FAILED, reconcile.Phase.RECOVERING) else "Normal"
            await self._event(obj, kind, str(patch["reason"]), str(patch["message"]))
        return patch

    async def adopt(self, obj: dict, attempt: int, task_id: str) -> None:
        """A callback named the task of a pending attempt: confirm it exists, then take it."""
        cloud = await self.cloud_for(obj)
        try:
            await self.run(cloud.describe, task_id)
        except NotFound:
            return  # not confirmed: a forged or very late callback changes nothing
        # The task carries the spec of the attempt's generation; a newer one is then an Update.
        obj, patch = await self.kube.mutate_status(obj["metadata"]["namespace"], obj["metadata"]["name"],
                                                   lambda o: self._if_attempt(o, attempt, lambda s: {
            **reconcile.started(s, task_id, s.attempt.generation or 0, self.clock()),
            "message": f"recording as task {task_id} (learned from its callback: the Start answer was lost)"}))
        if patch is not None:
            await self._event(obj, "Normal", "Started", patch["message"])
        elif status_of(obj).task_id != task_id:
            await self._reap(obj, cloud, task_id)

    async def reap(self, obj: dict, task_id: str) -> None:
        """Stop a task that is not `obj`'s current one (obj may be a stand-in for a deleted resource)."""
        await self._reap(obj, await self.cloud_for(obj), task_id)

    # -- helpers ------------------------------------------------------------------------------------
    async def _write(self, ns: str, name: str, change: Callable[[dict], dict | None]) -> dict:
        obj, _ = await self.kube.mutate_status(ns, name, change)
        return obj

    async def _persist(self, ns: str, name: str, change: Callable[[dict], dict | None]) -> tuple[dict, dict | None]:
        """mutate_status that rides out an apiserver blip: for writes that must not be lost."""
        retry = 0
        while True:
            try:
                return await self.kube.mutate_status(ns, name, change)
            except Gone:
                raise
            except Exception:
                retry += 1
                if retry == PERSIST_TRIES:
                    raise
                log.warning("%s/%s: status write failed, retrying", ns, name, exc_info=True)
                await asyncio.sleep(self._backoff(retry))

    async def _reap(self, obj: dict, cloud: RecordingCloud, task_id: str) -> None:
        try:
            await self.run(cloud.stop, task_id)
        except NotFound:
            if "uid" not in obj["metadata"]:
                # A deleted resource's task is stopped with the default credentials and region:
                # if it used others, this finds nothing. Say so; it will end by its idle timer.
                log.warning("stray task %s of deleted %s/%s: not found with the operator's own credentials",
                            task_id, obj["metadata"]["namespace"], obj["metadata"]["name"])
            return  # else already stopped: a resent callback, or another replica was first
        metrics.STRAY_TASKS.inc()
        log.warning("stopped stray task %s of %s", task_id, obj["metadata"]["name"])
        meta = obj["metadata"]
        if "uid" not in meta:
            return  # the resource is gone: nothing to count on
        obj = await self._write(meta["namespace"], meta["name"], lambda o: reconcile.stray_reaped(status_of(o)))
        await self._event(obj, "Warning", "StrayTaskStopped", f"stopped duplicate task {task_id}")
