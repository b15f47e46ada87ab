"""Start: one StartRtcCloudRecording for one attempt, recorded before it is sent, its answer written once.

The steps, as `start` tells them:
1. the account and the vendor's parameters (a spec only the operator can see wrong is refused);
2. the budgeted call, whose write-ahead records the attempt only once the quota lets it go,
   so a crash while queued leaves no attempt that looks sent;
3. the answer: a refusal ends the attempt, a failure not carried out is retried, a lost answer
   is waited out for a callback naming the task (docs/exactly-once.md); an empty channel keeps
   the attempt pending, and it is sent again (`resend`, no write) until someone joins or the start
   deadline passes (`give_up`; controller/waiting.py);
4. one write naming the task, persisted through an apiserver blip; a task no write could name
   is stopped, since nobody could find it.
"""

from __future__ import annotations

import asyncio
import logging

from rtc_recording.api.callback import notify_url, path_key
from rtc_recording.api.recording import InvalidSpec, RtcRecordingSpec, RtcRecordingStatus, status_of
from rtc_recording.api.task import ChannelEmpty, Invalid, Throttled, Transient, UnknownOutcome
from rtc_recording.cloud.accounts import Account, CloudUnreachable
from rtc_recording.cloud.budget import Priority
from rtc_recording.cloud.credentials import CredentialsUnavailable
from rtc_recording.cloud.params import start_params
from rtc_recording.controller.executor.adopt import Adopter
from rtc_recording.controller.executor.context import CONFIRM_TRIES, RECHECK_SECONDS, Context, RetryLater
from rtc_recording.controller.executor.pinning import pin_patch
from rtc_recording.controller.executor.writes import Writes, attempt_pending
from rtc_recording.controller.waiting import Superseded
from rtc_recording.decide import actions, classes, patches
from rtc_recording.decide.actions import Controls
from rtc_recording.decide.classes import InvalidClassSpec
from rtc_recording.decide.patches import Reason
from rtc_recording.kube import errors as k8s

log = logging.getLogger(__name__)


class Starter:
    def __init__(self, ctx: Context, writes: Writes, adopter: Adopter):
        self.ctx, self.writes, self.adopter = ctx, writes, adopter

    async def start(
        self, obj: dict, spec: RtcRecordingSpec, status: RtcRecordingStatus, attempt: int, retry: int
    ) -> None:
        """`obj` carries the class pin staged by `Pinning.with_class`; `status` is what the decision read."""
        prepared = await self._prepare(obj, spec, attempt, retry)
        if prepared is None:
            return
        account, params = prepared
        if status.attempt and patches.answer_lost(status):
            await self.writes.event(
                obj,
                "Warning",
                "UnknownOutcome",
                f"no callback named the task of attempt {status.attempt.number}, whose answer was lost;"
                f" starting attempt {attempt}",
            )
        ahead: list[dict] = []
        task_id = await self._call(obj, status, account, params, attempt, retry, ahead=ahead)
        if task_id is not None:
            await self._record(obj, task_id, attempt, current=ahead[-1] if ahead else None)

    async def _prepare(
        self, obj: dict, spec: RtcRecordingSpec, attempt: int, retry: int
    ) -> tuple[Account, dict] | None:
        generation = obj["metadata"]["generation"]
        try:
            return await self.ctx.account_for(obj), await self._params(obj, spec, attempt)
        except InvalidSpec as exc:
            await self.writes.refuse_spec(obj, str(exc))
            return None
        except CredentialsUnavailable as exc:
            message = f"cannot call the cloud: {exc}"

            def missing(fresh: dict) -> dict | None:
                # Only over "nothing runs": a task may have been adopted meanwhile. One Event per new message.
                status = status_of(fresh)
                if status.task_id or (status.reason, status.message) == ("CredentialsUnavailable", message):
                    return None
                return patches.credentials_missing(status, message, generation, self.ctx.clock())

            await self.writes.write(obj, missing, event=("Warning", "CredentialsUnavailable"))
            raise RetryLater(self.ctx.delay(exc, retry), message) from exc

    async def _params(self, obj: dict, spec: RtcRecordingSpec, attempt: int) -> dict:
        meta, settings = obj["metadata"], self.ctx.settings
        if settings.callback_url and settings.callback_auth_key:
            url = notify_url(settings.callback_url, meta["namespace"], meta["name"], meta["uid"], attempt)
            # The attempt's own key: a captured signature is worth nothing on another path (api/callback.py).
            secret = settings.callback_auth_key.get_secret_value()
            key: str | None = path_key(secret, meta["namespace"], meta["name"], meta["uid"], attempt)
        else:
            # No receiver: start_params falls back to spec.notify.url, signed with the user's own key.
            url, key = None, await self.ctx.clients.secrets.notify_key(obj)
        params = start_params(spec, region_default=settings.default_region, notify_url=url, notify_auth_key=key)
        if settings.callback_url and spec.storage and spec.storage.oss:
            # Every HLS slice uploaded is then a callback: a heartbeat that exposes a duplicate
            # task within one slice duration, even if all its start callbacks were lost. The
            # service always writes HLS to OSS, so SLICE is always a valid choice.
            formats = params.get("NotifyFileUploadedFormat", [])
            params["NotifyFileUploadedFormat"] = sorted({*formats, "SLICE"})
        return params

    async def resend(self, obj: dict, status: RtcRecordingStatus, attempt: int, retry: int) -> None:
        """The pending attempt again, with the class it was pinned with: its last send found nobody."""
        pinned = obj["status"]["recordingClass"] if status.recording_class else None
        try:
            spec = classes.validate(obj["spec"], pinned)
        except InvalidClassSpec as exc:
            await self.writes.refuse_spec(obj, str(exc))
            self.ctx.waiting.forget(obj["metadata"]["uid"])
            return
        prepared = await self._prepare(obj, spec, attempt, retry)
        if prepared is not None:
            task_id = await self._call(obj, status, *prepared, attempt, retry, resend=True)
            if task_id is not None:
                await self._record(obj, task_id, attempt)

    async def give_up(self, obj: dict, attempt: int) -> None:
        generation, deadline = obj["metadata"]["generation"], Controls.of(obj).start_deadline
        await self.writes.on_attempt(
            obj,
            attempt,
            lambda s: patches.no_participants(s, deadline, generation, self.ctx.clock()),
            event=("Warning", Reason.NO_PARTICIPANTS),
        )
        self.ctx.waiting.forget(obj["metadata"]["uid"])

    async def _call(
        self,
        obj: dict,
        status: RtcRecordingStatus,
        account: Account,
        params: dict,
        attempt: int,
        retry: int,
        resend: bool = False,
        ahead: list[dict] | None = None,
    ) -> str | None:
        """The budgeted Start; its task id, or None once a refusal is written. A resend has no
        write-ahead: it leaves only while this process still knows its last send was refused.
        `ahead` receives the object as the write-ahead left it."""
        meta, generation = obj["metadata"], obj["metadata"]["generation"]
        room, uid = self.ctx.waiting, meta["uid"]

        async def write_ahead() -> None:
            # Compare-and-swap on what we decided from: a crash after Start is then recognisable as
            # "answer unknown", and a concurrent writer makes us re-read.
            patch = {**patches.attempt_recorded(status, attempt, generation, self.ctx.clock()), **pin_patch(obj)}
            try:
                written = await self.ctx.kube.patch_status(
                    meta["namespace"],
                    meta["name"],
                    self.ctx.index.sealer.sealed(obj, patch),
                    resource_version=meta["resourceVersion"],
                    uid=meta["uid"],
                )
            except k8s.Conflict:
                raise RetryLater(0.2, "the object changed since it was read; deciding again") from None
            if ahead is not None:
                ahead.append(written)

        async def claim() -> None:
            room.claim(uid, attempt)

        priority = Priority.WAITING if resend or actions.waiting(status) else Priority.START
        try:
            return await self.ctx.clients.start(
                account, params, before_send=claim if resend else write_ahead, priority=priority
            )
        except Superseded:
            return None  # deleted meanwhile, or another send of it is on its way: that one decides
        except ChannelEmpty:
            await self._wait_for_participants(obj, attempt)
            return None
        except Invalid as exc:
            room.forget(uid)
            # The service answered: this attempt made no task, so nothing is waited for on delete.
            code, message = exc.code, f"StartRtcCloudRecording refused: {exc.code}: {exc.message}"
            await self.writes.on_attempt(
                obj,
                attempt,
                lambda s: {
                    **patches.start_refused(s, code, message, generation, self.ctx.clock()),
                    "attempt": {"notExecuted": True},
                },
                event=("Warning", "Failed"),
            )
            return None
        except CloudUnreachable as exc:
            room.not_sent(uid)
            if not resend and not status.task_id and status.reason != Reason.CLOUD_UNREACHABLE:
                note = f"StartRtcCloudRecording waits: {exc}"  # nothing was sent; said once

                def unreachable(fresh: dict) -> dict | None:
                    s = status_of(fresh)
                    if s.task_id or s.reason == Reason.CLOUD_UNREACHABLE or patches.answer_lost(s):
                        return None
                    return patches.cloud_unreachable(s, note, generation, self.ctx.clock())

                await self.writes.write(obj, unreachable, event=("Warning", Reason.CLOUD_UNREACHABLE))
            raise RetryLater(RECHECK_SECONDS, str(exc)) from exc
        except (Throttled, Transient) as exc:
            if resend:  # still waiting: nothing to write, and the room keeps the attempt sendable
                room.not_sent(uid)
            else:
                error = exc
                await self.writes.on_attempt(
                    obj, attempt, lambda s: patches.start_not_executed(s, error, generation, self.ctx.clock())
                )
            raise RetryLater(self.ctx.delay(exc, retry), f"Start not carried out: {exc}") from exc
        except UnknownOutcome as exc:
            room.lost(uid)
            lost = f"attempt {attempt}: {exc}; waiting for a callback naming the task"
            await self.writes.on_attempt(
                obj,
                attempt,
                lambda s: patches.answer_unknown(s, lost, generation, self.ctx.clock()),
                event=("Warning", Reason.UNKNOWN_OUTCOME),
            )
            raise RetryLater(self.ctx.grace or RECHECK_SECONDS, str(exc)) from exc

    async def _wait_for_participants(self, obj: dict, attempt: int) -> None:
        """Nobody is in the channel: say so once (phase Pending, one Event) and try again later."""
        meta, controls, room = obj["metadata"], Controls.of(obj), self.ctx.waiting
        generation, channel = meta["generation"], obj["spec"]["channelId"]
        room.refused((meta["namespace"], meta["name"]), meta["uid"], attempt)

        def change(s: RtcRecordingStatus) -> dict | None:
            if s.reason == Reason.WAITING_FOR_PARTICIPANTS:
                return None  # said already
            return patches.waiting_for_participants(s, channel, controls.start_deadline, generation, self.ctx.clock())

        written = obj
        if change(status_of(obj)) is not None or not attempt_pending(obj, attempt):
            try:  # a compare-and-swap from a fresh read; a resend's object was read just before it (one GET a try)
                written, _ = await self.writes.on_attempt(
                    obj, attempt, change, event=("Normal", Reason.WAITING_FOR_PARTICIPANTS)
                )
            except k8s.NotFound:
                room.forget(meta["uid"])
                return
        status = status_of(written)
        if not attempt_pending(written, attempt) or not actions.waiting(status):
            room.forget(meta["uid"])  # adopted, suspended or refused meanwhile: nothing to try again
            return
        room.until(meta["uid"], actions.give_up_at(status, controls))

    async def _record(self, obj: dict, task_id: str, attempt: int, current: dict | None = None) -> None:
        """The one write naming the new task (`current`: the object as the write-ahead left it). A task
        it could not name is a duplicate or lost: stopped."""
        generation = obj["metadata"]["generation"]
        self.ctx.waiting.forget(obj["metadata"]["uid"])
        try:
            written, patch = await self.writes.on_attempt(
                obj,
                attempt,
                lambda s: patches.started(s, task_id, generation, self.ctx.clock()),
                event=("Normal", "Started"),
                persist=True,
                current=current,
            )
        except k8s.NotFound:
            # With the class pin staged (and sealed) for this Start: the task runs on that account.
            pin = (obj.get("status") or {}).get("recordingClass")
            stand_in = {
                "metadata": {k: obj["metadata"][k] for k in ("namespace", "name", "uid")},
                "spec": obj.get("spec"),
                "status": {"recordingClass": pin} if pin else {},
            }
            await self.adopter.reap(stand_in, task_id)
            return
        except k8s.Failed:
            await self._confirm_or_reap(obj, task_id)
            raise
        if patch is None and status_of(written).task_id != task_id:
            await self.adopter.reap(written, task_id)  # a newer attempt or an adoption won: this task is a duplicate

    async def _confirm_or_reap(self, obj: dict, task_id: str) -> None:
        """The write naming a new task got no answer for a minute, yet the apiserver may have taken
        it (a timeout, a 504 while it restarts). Once it answers again: a task its status names is
        kept; any other must not run on, since nobody can find it."""
        meta = obj["metadata"]
        for attempt in range(1, CONFIRM_TRIES + 1):
            try:
                fresh = await self.ctx.kube.get_recording(meta["namespace"], meta["name"])
            except k8s.NotFound:
                break
            except k8s.Failed:
                await asyncio.sleep(self.ctx.backoff(attempt))
                continue
            if fresh["metadata"].get("uid") == meta["uid"] and status_of(fresh).task_id == task_id:
                log.info(
                    "%s/%s: the write naming task %s was taken after all", meta["namespace"], meta["name"], task_id
                )
                return
            break
        await self.adopter.reap(obj, task_id)
