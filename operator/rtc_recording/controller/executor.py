"""Carries out what `decisions` decides: cloud calls and compare-and-swap status writes.

Kopf-free, so the handlers stay thin. A need to try again later is raised as `RetryLater`;
the handlers turn it into Kopf's TemporaryError.

Status writes: every write is a compare-and-swap (`Kube.mutate_status`: read, decide from
the fresh object, PATCH with its resourceVersion and uid, repeat on 409), so nothing we
decided from stale state is ever written. A write that is a transition also carries
`status.pendingEvent`; its Event is posted under a fixed name and then cleared, so a crash
in between is repaired on the next reconcile without a duplicate (`_announce`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from pydantic import ValidationError

from rtc_recording import metrics
from rtc_recording.api import recording
from rtc_recording.api.callback import notify_url, path_key
from rtc_recording.api.names import ADOPT_ANNOTATION, COMPONENT
from rtc_recording.api.recording import InvalidSpec, Phase, RtcRecordingSpec, RtcRecordingStatus, spec_errors, status_of
from rtc_recording.api.task import Invalid, NotFound, TaskStatus, Throttled, Transient, UnknownOutcome
from rtc_recording.cloud.accounts import CloudClients, CloudUnreachable
from rtc_recording.cloud.credentials import CredentialsUnavailable
from rtc_recording.cloud.params import start_params, update_params
from rtc_recording.cloud.secrets import SecretUnavailable
from rtc_recording.controller.classresolver import ClassResolver
from rtc_recording.controller.index import Index, Tracked, files_digest
from rtc_recording.decide import actions, backoff, callbacks, classes, patches
from rtc_recording.decide.actions import (
    AdoptTask,
    AwaitOutcome,
    Controls,
    Expire,
    Halt,
    Orphan,
    Release,
    Start,
    Stop,
    Suspend,
    Update,
)
from rtc_recording.decide.callbacks import Adopt, Ignore, Observe, Reap
from rtc_recording.decide.classes import InvalidClassSpec
from rtc_recording.decide.ownership import REASON as NOT_PROVEN
from rtc_recording.decide.ownership import refusal
from rtc_recording.kube import errors as k8s
from rtc_recording.kube.client import Kube
from rtc_recording.settings import Settings

log = logging.getLogger(__name__)
PERSIST_TRIES = 6  # with the backoff settings' defaults: about a minute
CONFIRM_TRIES = 12  # then as long again to learn whether the last of them was taken after all
RECHECK_SECONDS = 2.0  # while waiting on the cloud or on evidence
PHASE_OF = {
    TaskStatus.RUNNING: Phase.RECORDING,
    TaskStatus.RECOVERING: Phase.RECOVERING,
    TaskStatus.STOPPING: Phase.STOPPING,
    TaskStatus.STOPPED: Phase.COMPLETED,
}
Change = Callable[[dict], dict | None]
STORED_PIN = "_storedRecordingClass"  # in a staged object (never written): the pin that is stored


class RetryLater(Exception):
    def __init__(self, delay: float, message: str):
        super().__init__(message)
        self.delay = delay


class Recorder:
    def __init__(
        self,
        kube: Kube,
        clients: CloudClients,
        settings: Settings,
        index: Index,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.kube, self.clients, self.settings, self.index, self.clock = kube, clients, settings, index, clock
        self.classes = ClassResolver(kube)
        # Set by the evidence worker: is there unprocessed evidence of a live task for (uid, attempt)?
        self.evidence_waiting: Callable[[str, int], bool] = lambda uid, attempt: False

    @property
    def _grace(self) -> float:
        """How long a lost Start answer may take to be named by a callback. Without a receiver
        no callback can name it: waiting would only delay the retry."""
        return self.settings.unknown_outcome_grace_seconds if self.settings.callback_url else 0

    def _cloud(self) -> actions.CloudHealth:
        reach = self.clients.reachability
        return actions.CloudHealth(up=reach.up, back_since=reach.since, recheck=RECHECK_SECONDS)

    def _delay(self, exc: Exception, retry: int) -> float:
        """A server-side failure is retried soon: a sustained outage is the circuit's business,
        so the delay does not grow through it. Quota and credentials problems back off."""
        if isinstance(exc, Transient) and not isinstance(exc, Throttled):
            return backoff.backoff(0, self.settings.backoff_base_seconds, self.settings.backoff_max_seconds)
        return backoff.backoff(retry, self.settings.backoff_base_seconds, self.settings.backoff_max_seconds)

    # -- status writes and their Events ------------------------------------------------------
    async def _write(
        self, ns: str, name: str, change: Change, event: tuple[str, str] | None = None, tries: int = 1
    ) -> tuple[dict, dict | None]:
        """Compare-and-swap `change`; with `event` (type, reason) the write is a transition whose
        Event is posted right after. `tries` > 1 rides out an apiserver blip for writes that
        must not be lost (k8s.NotFound and k8s.Conflict are answers, not blips)."""

        def announced(obj: dict) -> dict | None:
            patch = self.index.sealer.sealed(obj, change(obj))  # every task id written is sealed
            if patch is None or event is None:
                return patch
            type_, reason = event
            return {
                **patch,
                "pendingEvent": {
                    "key": uuid.uuid4().hex[:12],
                    "type": type_,
                    "reason": reason,
                    "message": str(patch.get("message") or reason)[:1024],
                },
            }

        for attempt in range(1, tries + 1):
            try:
                obj, patch = await self.kube.mutate_status(ns, name, announced)
                break
            except k8s.Failed:
                if attempt == tries:
                    raise
                log.warning("%s/%s: status write failed, retrying", ns, name, exc_info=True)
                await asyncio.sleep(
                    backoff.backoff(attempt, self.settings.backoff_base_seconds, self.settings.backoff_max_seconds)
                )
        if patch is not None and event is not None:
            await self._announce(obj)
        return obj, patch

    async def _announce(self, obj: dict) -> None:
        """Post the pending Event (under its fixed name: a second post is a no-op), then clear it."""
        pending = status_of(obj).pending_event
        if pending is None:
            return
        if await self._event(obj, pending.type, pending.reason, pending.message, key=pending.key) is None:
            return  # not posted: it stays pending, and the next reconcile posts it
        meta = obj["metadata"]
        try:
            await self.kube.patch_status(
                meta["namespace"],
                meta["name"],
                {"pendingEvent": None},
                resource_version=meta["resourceVersion"],
                uid=meta["uid"],
            )
        except k8s.Conflict:
            await self.kube.mutate_status(
                meta["namespace"],
                meta["name"],
                lambda o: (
                    {"pendingEvent": None} if ((pe := status_of(o).pending_event) and pe.key == pending.key) else None
                ),
            )
        except k8s.NotFound:
            pass

    async def _event(
        self, obj: dict, type_: str, reason: str, message: str, key: str | None = None, repeat: bool = False
    ) -> bool | None:
        """One log line and one Event naming the resource and its task. True when posted; False when
        the namespace is being deleted (no Event can be created there, so status says it instead);
        None when the apiserver would not take it."""
        meta = obj["metadata"]
        log.log(
            logging.WARNING if type_ == "Warning" else logging.INFO,
            "%s/%s %s: %s",
            meta["namespace"],
            meta["name"],
            reason,
            message,
            extra={
                "object": {
                    "namespace": meta["namespace"],
                    "name": meta["name"],
                    "taskId": (obj.get("status") or {}).get("taskId"),
                    "reason": reason,
                }
            },
        )
        try:
            await self.kube.post_event(obj, type_, reason, message, COMPONENT, key=key, repeat=repeat)
        except k8s.NamespaceTerminating:
            try:
                await self.kube.patch_status(meta["namespace"], meta["name"], {"reason": reason, "message": message})
            except (k8s.Failed, k8s.NotFound):
                pass
            return False
        except (k8s.Failed, k8s.NotFound):
            # An Event is a courtesy: never let it undo the work (a pending one is posted again).
            log.warning("could not post event %s for %s", reason, meta["name"], exc_info=True)
            return None
        return True

    # -- create / resume / update -----------------------------------------------------------
    async def reconcile(self, obj: dict, retry: int = 0) -> None:
        status, generation = status_of(obj), obj["metadata"]["generation"]
        await self._announce(obj)  # the operator may have died between a transition and its Event
        try:
            spec = RtcRecordingSpec.model_validate(obj["spec"])
        except ValidationError as exc:  # the CRD let it through: say so instead of retrying forever
            await self._refuse_spec(obj, spec_errors(exc))
            return
        waiting = status.attempt is not None and self.evidence_waiting(obj["metadata"]["uid"], status.attempt.number)
        action = actions.next_action(
            status, generation, self.clock(), self._grace, self._cloud(), waiting, Controls.of(obj)
        )
        name = type(action).__name__.lower()
        try:
            match action:
                case AwaitOutcome(attempt, seconds):
                    raise RetryLater(seconds, f"attempt {attempt}: answer lost, waiting for a callback naming its task")
                case Start(attempt):
                    if (classed := await self._with_class(obj, retry)) is not None:
                        await self._start(*classed, status, attempt, retry)
                case Update(task_id):
                    try:  # with the class generation the task was started from, never the class as it is now
                        spec = classes.validate(
                            obj["spec"], obj["status"]["recordingClass"] if status.recording_class else None
                        )
                    except InvalidClassSpec as exc:
                        await self._refuse_spec(obj, str(exc))
                        return
                    await self._update(obj, spec, task_id, retry)
                case Halt(task_id, reason):
                    await self._halt(obj, task_id, reason, retry)
                case Suspend():
                    await self._write(
                        obj["metadata"]["namespace"],
                        obj["metadata"]["name"],
                        lambda o: (
                            None
                            if status_of(o).task_id or status_of(o).phase == Phase.SUSPENDED
                            else patches.suspended_idle(status_of(o), generation, self.clock())
                        ),
                        event=("Normal", "Suspended"),
                    )
                case Expire():
                    await self._expire(obj)
                case AdoptTask(task_id):
                    if (classed := await self._with_class(obj, retry)) is not None:
                        await self._adopt_annotated(*classed, task_id, retry)
        except RetryLater:
            metrics.RECONCILES.labels(action=name, outcome="retry").inc()
            raise
        metrics.RECONCILES.labels(action=name, outcome="ok").inc()

    async def _refuse_spec(self, obj: dict, message: str, code: str = "InvalidSpec") -> None:
        """A spec only the operator can see is wrong: Failed if no task runs; if one does, it keeps
        its settings and Synced=False says why (never Failed over a live task)."""
        meta, generation = obj["metadata"], obj["metadata"]["generation"]

        def change(o: dict) -> dict | None:
            status = status_of(o)
            if status.task_id:
                return patches.update_refused(status, code, message, generation, self.clock())
            if status.phase == Phase.FAILED and status.observed_generation == generation:
                return None
            return patches.start_refused(status, code, message, generation, self.clock())

        await self._write(meta["namespace"], meta["name"], change, event=("Warning", code))

    async def _with_class(self, obj: dict, retry: int) -> tuple[dict, RtcRecordingSpec] | None:
        """Before a task starts: the class that applies (read now), its namespace check, and the merged
        spec. Returns the object with status.recordingClass staged (written with the attempt) and the
        effective spec; None once a refusal is written. A missing class is waited for."""
        meta, generation = obj["metadata"], obj["metadata"]["generation"]
        try:
            choice = await self.classes.resolve(obj)
        except k8s.Failed as exc:
            raise RetryLater(self._delay(exc, retry), f"cannot read the RtcRecordingClass or namespace: {exc}") from exc
        if isinstance(choice, classes.Refuse):
            if not choice.retry:
                await self._refuse_spec(obj, choice.message, code=choice.reason)
                return None
            await self._write(
                meta["namespace"],
                meta["name"],
                lambda o: (
                    None
                    if status_of(o).task_id or (status_of(o).reason == choice.reason)
                    else classes.class_pending(status_of(o), choice.reason, choice.message, generation, self.clock())
                ),
                event=("Warning", choice.reason),
            )
            raise RetryLater(self._delay(Exception(), retry), choice.message)
        pin = choice.recording_class.pin() if isinstance(choice, classes.Use) else None
        try:
            spec = classes.validate(obj["spec"], pin)
        except InvalidClassSpec as exc:
            await self._refuse_spec(obj, str(exc))
            return None
        status = obj.get("status") or {}
        return {**obj, "status": {**status, "recordingClass": pin, STORED_PIN: status.get("recordingClass")}}, spec

    @staticmethod
    def _pin_patch(obj: dict) -> dict:
        """status.recordingClass as `_with_class` staged it, as a merge patch over what is stored."""
        status = obj.get("status") or {}
        if "recordingClass" not in status:
            return {}
        stored = status.get(STORED_PIN)
        return {"recordingClass": classes.pin_patch(stored, status["recordingClass"])}

    async def _start(
        self, obj: dict, spec: RtcRecordingSpec, status: RtcRecordingStatus, attempt: int, retry: int
    ) -> None:
        meta, generation = obj["metadata"], obj["metadata"]["generation"]
        ns, name = meta["namespace"], meta["name"]
        try:
            account = await self.clients.account_for(obj)
            params = await self._start_params(obj, spec, attempt)
        except InvalidSpec as exc:
            await self._refuse_spec(obj, str(exc))
            return
        except CredentialsUnavailable as exc:
            message = f"cannot call the cloud: {exc}"
            # Only over "nothing runs": a task may have been adopted meanwhile. One Event per new message.
            await self._write(
                ns,
                name,
                lambda o: (
                    None
                    if status_of(o).task_id
                    or (status_of(o).reason, status_of(o).message) == ("CredentialsUnavailable", message)
                    else patches.credentials_missing(status_of(o), message, generation, self.clock())
                ),
                event=("Warning", "CredentialsUnavailable"),
            )
            raise RetryLater(self._delay(exc, retry), message) from exc

        if status.attempt and patches.answer_lost(status):
            await self._event(
                obj,
                "Warning",
                "UnknownOutcome",
                f"no callback named the task of attempt {status.attempt.number}, whose answer was lost;"
                f" starting attempt {attempt}",
            )

        async def write_ahead() -> None:
            # Only now that the quota lets the call go: a crash while queued leaves no attempt
            # that looks sent. Compare-and-swap on what we decided from: a crash after Start is
            # then recognisable as "answer unknown", and a concurrent writer makes us re-read.
            try:
                await self.kube.patch_status(
                    ns,
                    name,
                    self.index.sealer.sealed(
                        obj,
                        {
                            **patches.attempt_recorded(status, attempt, generation, self.clock()),
                            **self._pin_patch(obj),
                        },
                    ),
                    resource_version=meta["resourceVersion"],
                    uid=meta["uid"],
                )
            except k8s.Conflict:
                raise RetryLater(0.2, "the object changed since it was read; deciding again") from None

        try:
            task_id = await self.clients.start(account, params, before_send=write_ahead)
        except Invalid as exc:
            # The service answered: this attempt made no task, so nothing is waited for on delete.
            code, message = exc.code, f"StartRtcCloudRecording refused: {exc.code}: {exc.message}"
            await self._write(
                ns,
                name,
                lambda o: self._if_attempt(
                    o,
                    attempt,
                    lambda s: {
                        **patches.start_refused(s, code, message, generation, self.clock()),
                        "attempt": {"notExecuted": True},
                    },
                ),
                event=("Warning", "Failed"),
            )
            return
        except CloudUnreachable as exc:
            raise RetryLater(RECHECK_SECONDS, str(exc)) from exc  # nothing was sent, nothing written
        except (Throttled, Transient) as exc:
            error = exc
            await self._write(
                ns,
                name,
                lambda o: self._if_attempt(
                    o, attempt, lambda s: patches.start_not_executed(s, error, generation, self.clock())
                ),
            )
            raise RetryLater(self._delay(exc, retry), f"Start not carried out: {exc}") from exc
        except UnknownOutcome as exc:
            await self._event(
                obj, "Warning", "UnknownOutcome", f"attempt {attempt}: {exc}; waiting for a callback naming the task"
            )
            raise RetryLater(self._grace or RECHECK_SECONDS, str(exc)) from exc

        try:
            obj, patch = await self._write(
                ns,
                name,
                lambda o: self._if_attempt(o, attempt, lambda s: patches.started(s, task_id, generation, self.clock())),
                event=("Normal", "Started"),
                tries=PERSIST_TRIES,
            )
        except k8s.NotFound:
            await self._reap({"metadata": {"namespace": ns, "name": name}, "spec": obj.get("spec")}, task_id)
            return
        except k8s.Failed:
            await self._confirm_or_reap(obj, task_id)
            raise
        if patch is None and status_of(obj).task_id != task_id:
            await self._reap(obj, task_id)  # a newer attempt or an adoption won: this task is a duplicate

    async def _confirm_or_reap(self, obj: dict, task_id: str) -> None:
        """The write naming a new task got no answer for a minute, yet the apiserver may have taken
        it (a timeout, a 504 while it restarts). Once it answers again: a task its status names is
        kept; any other must not run on, since nobody can find it."""
        meta = obj["metadata"]
        for attempt in range(1, CONFIRM_TRIES + 1):
            try:
                fresh = await self.kube.get_recording(meta["namespace"], meta["name"])
            except k8s.NotFound:
                break
            except k8s.Failed:
                await asyncio.sleep(
                    backoff.backoff(attempt, self.settings.backoff_base_seconds, self.settings.backoff_max_seconds)
                )
                continue
            if fresh["metadata"].get("uid") == meta["uid"] and status_of(fresh).task_id == task_id:
                log.info(
                    "%s/%s: the write naming task %s was taken after all", meta["namespace"], meta["name"], task_id
                )
                return
            break
        await self._reap(obj, task_id)

    def _if_attempt(self, obj: dict, attempt: int, change: Callable[[RtcRecordingStatus], dict]) -> dict | None:
        """Apply `change` only while this attempt is still the pending one."""
        status = status_of(obj)
        if (
            status.task_id is None
            and status.attempt
            and status.attempt.number == attempt
            and not status.attempt.not_executed
            and status.phase not in recording.SETTLED
        ):
            return change(status)
        return None

    def _if_task(self, obj: dict, task_id: str, change: Callable[[RtcRecordingStatus], dict | None]) -> dict | None:
        """Apply `change` only while `task_id` is the current task, and proven ours (ownership.py)."""
        status = status_of(obj)
        return change(status) if status.task_id == task_id and self.index.sealer.proven(obj) else None

    async def _start_params(self, obj: dict, spec: RtcRecordingSpec, attempt: int) -> dict:
        meta = obj["metadata"]
        if self.settings.callback_url and self.settings.callback_auth_key:
            url = notify_url(self.settings.callback_url, meta["namespace"], meta["name"], meta["uid"], attempt)
            # The attempt's own key: a captured signature is worth nothing on another path (callbacks.py).
            key: str | None = path_key(
                self.settings.callback_auth_key.get_secret_value(),
                meta["namespace"],
                meta["name"],
                meta["uid"],
                attempt,
            )
        else:
            url, key = None, await self.clients.secrets.notify_key(obj)  # start_params falls back to spec.notify.url
        params = start_params(spec, region_default=self.settings.default_region, notify_url=url, notify_auth_key=key)
        if self.settings.callback_url and spec.storage and spec.storage.oss:
            # Every HLS slice uploaded is then a callback: a heartbeat that exposes a duplicate
            # task within one slice duration, even if all its start callbacks were lost. The
            # service always writes HLS to OSS, so SLICE is always a valid choice.
            formats = params.get("NotifyFileUploadedFormat", [])
            params["NotifyFileUploadedFormat"] = sorted({*formats, "SLICE"})
        return params

    async def _update(self, obj: dict, spec: RtcRecordingSpec, task_id: str, retry: int) -> None:
        meta, generation = obj["metadata"], obj["metadata"]["generation"]
        ns, name = meta["namespace"], meta["name"]
        if not self.index.sealer.proven(obj):
            await self.refuse_unproven(obj)
            return
        try:
            account = await self.clients.account_for(obj)
            await self.clients.update(account, task_id, update_params(spec))
        except Invalid as exc:
            code, message = exc.code, f"UpdateRtcCloudRecording refused: {exc.code}: {exc.message}"
            await self._write(
                ns,
                name,
                lambda o: self._if_task(
                    o, task_id, lambda s: patches.update_refused(s, code, message, generation, self.clock())
                ),
                event=("Warning", "UpdateFailed"),
            )
            return
        except NotFound:
            await self.describe(Tracked.of(obj))  # the task ended meanwhile: say so instead of updating
            return
        except (Throttled, Transient, CredentialsUnavailable) as exc:
            raise RetryLater(self._delay(exc, retry), f"Update not carried out: {exc}") from exc
        await self._write(
            ns,
            name,
            lambda o: self._if_task(o, task_id, lambda s: patches.updated(s, generation, self.clock())),
            event=("Normal", "Updated"),
        )

    # -- lifecycle controls ----------------------------------------------------------------
    async def _halt(self, obj: dict, task_id: str, reason: str, retry: int) -> None:
        """Stop our own task (suspend, maxDuration): intent, Stop, outcome; a crash anywhere
        repeats from the intent."""
        meta, generation = obj["metadata"], obj["metadata"]["generation"]
        ns, name = meta["namespace"], meta["name"]
        if not self.index.sealer.proven(obj):
            await self.refuse_unproven(obj)  # not ours to stop (ownership.py)
            return
        obj, _ = await self._write(
            ns,
            name,
            lambda o: self._if_task(
                o,
                task_id,
                lambda s: (
                    None
                    if (s.phase == Phase.STOPPING and s.reason == reason)
                    else patches.halting(s, reason, generation, self.clock())
                ),
            ),
        )
        if status_of(obj).task_id != task_id:
            return  # something else happened to the task meanwhile: decide again next time
        try:
            account = await self.clients.account_for(obj)
            await self.clients.stop(account, task_id)
        except NotFound:
            pass  # already stopped: the outcome is the same
        except (Throttled, Transient, Invalid, CredentialsUnavailable) as exc:
            await self._event(
                obj,
                "Warning",
                "StopFailed",
                f"task {task_id}: {exc}",
                key=f"stopfailed.{task_id}"[:40].lower(),
                repeat=True,
            )
            raise RetryLater(self._delay(exc, retry), f"Stop failed: {exc}") from exc
        await self._write(
            ns,
            name,
            lambda o: self._if_task(
                o,
                task_id,
                lambda s: (
                    patches.halted(s, reason, o["metadata"]["generation"], self.clock())
                    if s.phase == Phase.STOPPING
                    else None
                ),
            ),
            event=("Normal", reason),
            tries=PERSIST_TRIES,
        )

    async def on_due(self, key: tuple[str, str]) -> None:
        """A due time (maxDurationSeconds, ttlSecondsAfterFinished) passed: act if it still holds."""
        try:
            obj = await self.kube.get_recording(*key)
        except k8s.NotFound:
            return
        action = actions.next_action(
            status_of(obj),
            obj["metadata"]["generation"],
            self.clock(),
            self._grace,
            self._cloud(),
            controls=Controls.of(obj),
        )
        match action:
            case Halt(task_id, reason):
                await self._halt(obj, task_id, reason, 0)
            case Expire():
                await self._expire(obj)

    async def _expire(self, obj: dict) -> None:
        """ttlSecondsAfterFinished passed: delete, with the uid as a precondition (never a namesake)."""
        meta = obj["metadata"]
        await self._event(
            obj,
            "Normal",
            "Expired",
            "ttlSecondsAfterFinished passed: deleting the RtcRecording",
            key=f"expired.{obj['metadata']['uid'][:8]}",
        )
        await self.kube.delete_recording(meta["namespace"], meta["name"], uid=meta["uid"])

    async def _adopt_annotated(self, obj: dict, spec: RtcRecordingSpec, task_id: str, retry: int) -> None:
        """Take over a task started elsewhere, named by the adopt annotation: it must exist, be
        live and be no other resource's task. Its subscribers and layout are then made to match
        spec by an Update (observedGeneration 0)."""
        meta, generation = obj["metadata"], obj["metadata"]["generation"]
        ns, name = meta["namespace"], meta["name"]
        why = None
        if (owner := self.index.owner(task_id)) is not None and owner.uid != meta["uid"]:
            why = "it is the task of another RtcRecording"
        else:
            try:
                account = await self.clients.account_for(obj)
                info = await self.clients.describe(account, task_id)
                if info.status not in (TaskStatus.RUNNING, TaskStatus.RECOVERING):
                    why = f"it is {info.status.value}, not running"
            except NotFound:
                why = "the cloud does not know it (for these credentials and region)"
            except (Throttled, Transient, CredentialsUnavailable) as exc:
                raise RetryLater(self._delay(exc, 0), f"adoption of {task_id} not confirmed: {exc}") from exc
        if why is not None:
            await self._write(
                ns,
                name,
                lambda o: (
                    None
                    if status_of(o).phase
                    else patches.adoption_failed(status_of(o), task_id, why, generation, self.clock())
                ),
                event=("Warning", "AdoptionFailed"),
            )
            return
        obj, patch = await self._write(
            ns,
            name,
            lambda o: (
                None
                if status_of(o).phase
                else {
                    **patches.started(status_of(o), task_id, 0, self.clock()),
                    **self._pin_patch(obj),
                    "reason": patches.Reason.ADOPTED,
                    "message": f"recording as task {task_id}, adopted ({ADOPT_ANNOTATION})",
                }
            ),
            event=("Normal", "Adopted"),
            tries=PERSIST_TRIES,
        )
        if patch is not None:
            await self._update(obj, spec, task_id, retry)

    # -- delete ------------------------------------------------------------------------------
    async def delete(self, obj: dict, retry: int = 0) -> None:
        """Stop the task; only then may the finalizer go. A cloud outage keeps it and retries."""
        meta = obj["metadata"]
        try:  # Kopf's body may predate an adoption
            obj = await self.kube.get_recording(meta["namespace"], meta["name"])
        except k8s.NotFound:
            return
        status = status_of(obj)
        waiting = status.attempt is not None and self.evidence_waiting(meta["uid"], status.attempt.number)
        orphan = (obj.get("spec") or {}).get("deletionPolicy") == "Orphan"
        match actions.deletion_action(status, self.clock(), self._grace, self._cloud(), waiting, orphan):
            case Orphan(task_id):
                await self._event(
                    obj,
                    "Warning",
                    "Orphaned",
                    f"deletionPolicy Orphan: task {task_id} keeps running"
                    if task_id
                    else "deletionPolicy Orphan: no task was running",
                    key=f"orphaned.{meta['uid'][:8]}",
                )
            case AwaitOutcome(attempt, seconds):
                raise RetryLater(
                    seconds, f"attempt {attempt}: waiting for a callback naming its task before letting go"
                )
            case Release(attempt):
                obj, patch = await self.kube.mutate_status(
                    meta["namespace"],
                    meta["name"],
                    lambda o: self._if_attempt(o, attempt, lambda s: {"attempt": {"notExecuted": True}}),
                )
                if patch is None and (adopted := status_of(obj).task_id):
                    await self._stop(obj, adopted, retry)  # adopted just now
            case Stop(task_id):
                await self._stop(obj, task_id, retry)

    async def _stop(self, obj: dict, task_id: str, retry: int) -> None:
        if not self.index.sealer.proven(obj):
            # Not ours to stop. Holding the finalizer would wait for nothing: let the resource go.
            await self.refuse_unproven(obj)
            return
        try:
            account = await self.clients.account_for(obj)
            await self.clients.stop(account, task_id)
        except NotFound:
            pass  # nothing to stop is success
        except (Throttled, Transient, Invalid, CredentialsUnavailable) as exc:
            # Never let go of a running task: keep the finalizer, say why (one Event, counted), try again.
            metrics.RECONCILES.labels(action="stop", outcome="retry").inc()
            if (
                await self._event(
                    obj,
                    "Warning",
                    "StopFailed",
                    f"task {task_id}: {exc}",
                    key=f"stopfailed.{task_id}"[:40].lower(),
                    repeat=True,
                )
                is False
                and isinstance(exc, SecretUnavailable)
                and exc.gone
            ):
                await self._last_resort(obj, task_id)  # its namespace goes, and its credentials went first
                return
            raise RetryLater(self._delay(exc, retry), f"Stop failed: {exc}") from exc
        metrics.RECONCILES.labels(action="stop", outcome="ok").inc()
        await self._event(obj, "Normal", "Stopped", f"task {task_id} stopped", key=f"stopped.{task_id}"[:40].lower())

    async def _last_resort(self, obj: dict, task_id: str) -> None:
        """The namespace is being deleted and the credentials Secret is gone (pins.py): the operator's
        own credentials may stop the task; if not, it is given up on so the namespace can go."""
        meta = obj["metadata"]
        try:
            own = {"metadata": meta, "spec": {"region": (obj.get("spec") or {}).get("region")}}
            await self.clients.stop(await self.clients.account_for(own), task_id)
            message, outcome = f"task {task_id} stopped with the operator's own credentials", "ok"
        except (NotFound, Throttled, Transient, Invalid, CredentialsUnavailable) as exc:
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
            await self.kube.patch_status(
                meta["namespace"],
                meta["name"],
                {"reason": "StopAbandoned" if outcome == "abandoned" else "Stopped", "message": message},
            )
        except (k8s.Failed, k8s.NotFound):
            pass

    async def refuse_unproven(self, obj: dict) -> None:
        """status.taskId is not sealed for this resource (someone else wrote it): call nothing,
        say so once (an Event and Synced=False)."""
        meta, task_id = obj["metadata"], (obj.get("status") or {}).get("taskId")
        log.warning(
            "%s/%s: task %s is not proven to be this resource's; not acted on", meta["namespace"], meta["name"], task_id
        )
        try:
            await self._write(
                meta["namespace"],
                meta["name"],
                lambda o: (
                    None
                    if ((o.get("status") or {}).get("taskId") != task_id or self.index.sealer.proven(o))
                    else refusal(o, self.clock())
                ),
                event=("Warning", NOT_PROVEN),
            )
        except k8s.NotFound:
            pass

    # -- observation -------------------------------------------------------------------------
    async def describe(self, tracked: Tracked) -> dict | None:
        """Describe the current task and write what the cloud says; returns the patch applied.
        Costs no apiserver request when the cloud says what status already says."""
        task_id = tracked.task_id
        if not task_id or not self.index.proven(tracked):
            return None  # not proven ours: `refuse_unproven` says so, once
        account = await self.clients.account_for(tracked.stand_in())
        try:
            info = await self.clients.describe(account, task_id)
        except NotFound:
            info = None
        if (
            info is not None
            and PHASE_OF[info.status] == tracked.phase
            and files_digest(patches.files_status(info.files)) == tracked.files_digest
        ):
            return None

        def change(o: dict) -> dict | None:
            return self._if_task(
                o, task_id, lambda s: patches.observed(s, info, o["metadata"]["generation"], self.clock())
            )

        obj, patch = await self._write(tracked.namespace, tracked.name, change)
        if patch and patch.get("phase"):
            kind = "Warning" if patch["phase"] in (Phase.FAILED, Phase.RECOVERING) else "Normal"
            await self._event(
                obj, kind, str(patch["reason"]), str(patch["message"]), key=f"{patch['phase']}.{task_id}"[:40].lower()
            )
        return patch

    # -- evidence from callbacks -------------------------------------------------------------
    async def act_on(self, namespace: str, name: str, uid: str, attempt: int, task_id: str, event: str) -> None:
        """Decide again, from fresh status, what a recorded callback means, and do it."""
        try:
            obj: dict | None = await self.kube.get_recording(namespace, name)
        except k8s.NotFound:
            obj = None
        if obj is not None and obj["metadata"]["uid"] != uid:
            obj = None  # a namesake: the callback's resource is gone
        tomb = self.index.tombstones.get(uid)
        view = callbacks.View.of(obj) if obj is not None else None
        action = callbacks.on_callback(
            view, uid, attempt, task_id, event, known_stopped=bool(tomb and tomb.task_id == task_id)
        )
        log.info("%s/%s attempt %s: evidence %s %s -> %s", namespace, name, attempt, event, task_id, action)
        match action:
            case Adopt(task) if obj is not None:
                await self._adopt(obj, attempt, task)
            case Observe() if obj is not None:
                await self.describe(Tracked.of(obj))
            case Reap(task):
                stand_in = obj or (tomb.stand_in() if tomb else {"metadata": {"namespace": namespace, "name": name}})
                await self._reap(stand_in, task)
            case Ignore():
                pass

    async def _adopt(self, obj: dict, attempt: int, task_id: str) -> None:
        """A callback named the task of a pending attempt: confirm it exists, then take it."""
        if (owner := self.index.owner(task_id)) is not None and owner.uid != obj["metadata"]["uid"]:
            log.warning("evidence names task %s, the current task of %s/%s; not adopted", task_id, *owner.key)
            return
        account = await self.clients.account_for(obj)
        try:
            info = await self.clients.describe(account, task_id)
        except NotFound:
            return  # not confirmed: a forged or very old callback changes nothing
        if info.status == TaskStatus.STOPPED:
            return  # it ended before we learned of it; the grace period then starts the next attempt
        meta = obj["metadata"]
        # The task carries the spec of the attempt's generation; a newer one is then an Update.
        obj, patch = await self._write(
            meta["namespace"],
            meta["name"],
            lambda o: self._if_attempt(
                o,
                attempt,
                lambda s: {
                    **patches.started(s, task_id, s.attempt.generation or 0 if s.attempt else 0, self.clock()),
                    "message": f"recording as task {task_id} (learned from its callback: the Start answer was lost)",
                },
            ),
            event=("Normal", "Started"),
            tries=PERSIST_TRIES,
        )
        if patch is None and status_of(obj).task_id != task_id:
            await self._reap(obj, task_id)

    async def _reap(self, obj: dict, task_id: str) -> None:
        """Stop a task that is not `obj`'s current one (obj may stand in for a deleted resource).
        Never one that is any resource's current task: a callback's body is not signed."""
        if (owner := self.index.owner(task_id)) is not None:
            log.warning("not stopping task %s: it is the current task of %s/%s", task_id, *owner.key)
            return
        account = await self.clients.account_for(obj)
        try:
            await self.clients.stop(account, task_id)
        except NotFound:
            return  # already stopped, or not this account's
        metrics.STRAY_TASKS.inc()
        meta = obj["metadata"]
        log.warning("stopped stray task %s of %s/%s", task_id, meta["namespace"], meta["name"])
        if "uid" not in meta:
            return  # the resource is gone: nothing to count on
        try:
            await self._write(
                meta["namespace"],
                meta["name"],
                lambda o: patches.stray_reaped(status_of(o), task_id) if o["metadata"]["uid"] == meta["uid"] else None,
            )
        except k8s.NotFound:
            return
        await self._event(
            obj, "Warning", "StrayTaskStopped", f"stopped duplicate task {task_id}", key=f"stray.{task_id}"[:40].lower()
        )
