"""Observe: Describe the current task and write what the cloud says (the poller and the evidence ask for it)."""

from __future__ import annotations

from rtc_recording.api.recording import Phase, status_of
from rtc_recording.api.task import NotFound, TaskInfo, TaskStatus
from rtc_recording.controller.executor.context import Context
from rtc_recording.controller.executor.writes import Writes
from rtc_recording.controller.index import Tracked, files_digest
from rtc_recording.decide import patches

PHASE_OF = {
    TaskStatus.RUNNING: Phase.RECORDING,
    TaskStatus.RECOVERING: Phase.RECOVERING,
    TaskStatus.STOPPING: Phase.STOPPING,
    TaskStatus.STOPPED: Phase.COMPLETED,
}


class Observer:
    def __init__(self, ctx: Context, writes: Writes):
        self.ctx, self.writes = ctx, writes

    async def describe(self, tracked: Tracked) -> dict | None:
        """Describe the current task and write what the cloud says; returns the patch applied.
        Costs no apiserver request when the cloud says what status already says."""
        task_id = tracked.task_id
        if not task_id or not self.ctx.index.proven(tracked):
            return None  # not proven ours: `Writes.refuse_unproven` says so, once
        stand_in = tracked.stand_in()
        account = await self.ctx.account_for(stand_in)
        info: TaskInfo | None
        try:
            info = await self.ctx.clients.describe(account, task_id)
        except NotFound:
            info = None
        if info is not None and _already_said(info, tracked):
            return None

        def change(fresh: dict) -> dict | None:
            if not self.writes.task_current(fresh, task_id):
                return None
            return patches.observed(status_of(fresh), info, fresh["metadata"]["generation"], self.ctx.clock())

        obj, patch = await self.writes.write(stand_in, change)
        if patch and patch.get("phase"):
            kind = "Warning" if patch["phase"] in (Phase.FAILED, Phase.RECOVERING) else "Normal"
            key = f"{patch['phase']}.{task_id}"[:40].lower()
            await self.writes.event(obj, kind, str(patch["reason"]), str(patch["message"]), key=key)
        return patch


def _already_said(info: TaskInfo, tracked: Tracked) -> bool:
    return (
        PHASE_OF[info.status] == tracked.phase
        and files_digest(patches.files_status(info.files)) == tracked.files_digest
    )
