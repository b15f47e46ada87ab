"""Update: make a running task's subscribers and layout match the spec (UpdateRtcCloudRecording)."""

from __future__ import annotations

from rtc_recording.api.recording import RtcRecordingSpec
from rtc_recording.api.task import Invalid, NotFound, Throttled, Transient
from rtc_recording.cloud.credentials import CredentialsUnavailable
from rtc_recording.cloud.params import update_params
from rtc_recording.controller.executor.context import Context, RetryLater
from rtc_recording.controller.executor.observe import Observer
from rtc_recording.controller.executor.writes import Writes
from rtc_recording.controller.index import Tracked
from rtc_recording.decide import patches


class Updater:
    def __init__(self, ctx: Context, writes: Writes, observer: Observer):
        self.ctx, self.writes, self.observer = ctx, writes, observer

    async def update(self, obj: dict, spec: RtcRecordingSpec, task_id: str, retry: int) -> None:
        generation = obj["metadata"]["generation"]
        if not self.ctx.index.sealer.proven(obj):
            await self.writes.refuse_unproven(obj)
            return
        try:
            account = await self.ctx.account_for(obj)
            await self.ctx.clients.update(account, task_id, update_params(spec))
        except Invalid as exc:
            code, message = exc.code, f"UpdateRtcCloudRecording refused: {exc.code}: {exc.message}"
            await self.writes.on_task(
                obj,
                task_id,
                lambda s: patches.update_refused(s, code, message, generation, self.ctx.clock()),
                event=("Warning", "UpdateFailed"),
            )
            return
        except NotFound:
            await self.observer.describe(Tracked.of(obj))  # the task ended meanwhile: say so instead of updating
            return
        except (Throttled, Transient, CredentialsUnavailable) as exc:
            raise RetryLater(self.ctx.delay(exc, retry), f"Update not carried out: {exc}") from exc
        await self.writes.on_task(
            obj, task_id, lambda s: patches.updated(s, generation, self.ctx.clock()), event=("Normal", "Updated")
        )
