"""The RtcRecordingClass that applies, resolved before a task starts, and its pin in status.

A task runs with the class generation it was started from: the pin is written with the Start
attempt (or the adoption), never re-read from the class as it is now.
"""

from __future__ import annotations

from rtc_recording.api.recording import RtcRecordingSpec, status_of
from rtc_recording.controller.executor.context import Context, RetryLater
from rtc_recording.controller.executor.writes import Writes
from rtc_recording.decide import classes
from rtc_recording.decide.classes import InvalidClassSpec
from rtc_recording.kube import errors as k8s

STORED_PIN = "_storedRecordingClass"  # in a staged object (never written): the pin that is stored


class Pinning:
    def __init__(self, ctx: Context, writes: Writes):
        self.ctx, self.writes = ctx, writes

    async def with_class(self, obj: dict, retry: int) -> tuple[dict, RtcRecordingSpec] | None:
        """The class that applies (read now), its namespace check, and the merged spec. Returns the
        object with status.recordingClass staged (written with the attempt) and the effective spec;
        None once a refusal is written. A missing class is waited for."""
        generation = obj["metadata"]["generation"]
        try:
            choice = await self.ctx.classes.resolve(obj)
        except k8s.Failed as exc:
            raise RetryLater(
                self.ctx.delay(exc, retry), f"cannot read the RtcRecordingClass or namespace: {exc}"
            ) from exc
        if isinstance(choice, classes.Refuse):
            if not choice.retry:
                await self.writes.refuse_spec(obj, choice.message, code=choice.reason)
                return None

            def pending(fresh: dict) -> dict | None:
                status = status_of(fresh)
                if status.task_id or status.reason == choice.reason:
                    return None
                return classes.class_pending(status, choice.reason, choice.message, generation, self.ctx.clock())

            await self.writes.write(obj, pending, event=("Warning", choice.reason))
            raise RetryLater(self.ctx.backoff(retry), choice.message)
        pin = choice.recording_class.pin() if isinstance(choice, classes.Use) else None
        if pin is not None:  # read now, and it selects the namespace: the one pin the operator seals
            pin["seal"] = self.ctx.index.sealer.pin_seal(obj["metadata"]["uid"], pin)
        try:
            spec = classes.validate(obj["spec"], pin)
        except InvalidClassSpec as exc:
            await self.writes.refuse_spec(obj, str(exc))
            return None
        status = obj.get("status") or {}
        return {**obj, "status": {**status, "recordingClass": pin, STORED_PIN: status.get("recordingClass")}}, spec


def pin_patch(obj: dict) -> dict:
    """status.recordingClass as `with_class` staged it, as a merge patch over what is stored."""
    status = obj.get("status") or {}
    if "recordingClass" not in status:
        return {}
    return {"recordingClass": classes.pin_patch(status.get(STORED_PIN), status["recordingClass"])}
