"""The write-and-Event protocol: every status write is a compare-and-swap, and a transition carries its Event.

`Kube.mutate_status` reads, decides from the fresh object, and PATCHes with its resourceVersion and uid,
repeating on 409: nothing decided from stale state is ever written. A write that is a transition also
carries `status.pendingEvent`; the Event is posted under that fixed name, so a crash in between is
repaired after the restart without a duplicate (`announce`). The pendingEvent is not cleared (that
was a write per transition): the next transition replaces it, and the Lease says which are posted.
Every pendingEvent stamped before `posted_before()` (this process's clock) was posted, or its write
never landed; the renewal writes that mark on the Lease (leader.py), and the next leader posts again
only those stamped later (`actions.at_rest`, `announce`).

The guards (`on_attempt`, `on_task`) apply a status patch only while what it was decided for still
holds: the same pending Start attempt, or the same current task, proven ours (decide/ownership.py).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from rtc_recording.api import timestamps
from rtc_recording.api.names import EVENTS_MARK
from rtc_recording.api.recording import SETTLED, PendingEvent, Phase, RtcRecordingStatus, status_of
from rtc_recording.controller import usage
from rtc_recording.controller.executor.context import PERSIST_TRIES, Context
from rtc_recording.decide import actions, patches
from rtc_recording.decide.ownership import REASON as NOT_PROVEN
from rtc_recording.decide.ownership import refusal
from rtc_recording.kube import errors as k8s
from rtc_recording.kube.events import Posted

log = logging.getLogger(__name__)
Change = Callable[[dict], dict | None]  # the fresh object -> a status patch, or None to write nothing
Patch = Callable[[RtcRecordingStatus], dict | None]
Event = tuple[str, str]  # type, reason


UNSURE_KEPT = 10_000
WALL_CLOCK_SLACK = timedelta(seconds=1)  # posted_before() stays clear of a small step back of the clock


class Writes:
    def __init__(self, ctx: Context, previous_mark: str = ""):
        self.ctx = ctx
        self.previous_mark = previous_mark  # the last posted_before() of the leader before this process
        self._token = uuid.uuid4().hex[:4]  # starts the key of each pendingEvent this process writes
        self._unposted: dict[str, str] = {}  # key -> stamp, of this process's pendingEvents not yet posted
        self._unsure: dict[str, str] = {}  # the same, whose write got no answer: posted if found, never waited for
        self.slack = WALL_CLOCK_SLACK

    def posted_before(self) -> str:
        """Every pendingEvent this process stamped before this moment is posted (read on the renewal's thread)."""
        now = (datetime.now(UTC) - self.slack).strftime(timestamps.MICRO_FORMAT)
        return min([*self._unposted.values(), now])

    def handover_mark(self, obj: dict) -> str:
        """What a shard handing `obj` over writes on it (docs/sharding.md): its Events mark, or just past the
        object's pending Event if this process posted that one (nothing of the object is under way then)."""
        mark = self.posted_before()
        pending = status_of(obj).pending_event
        if pending is not None and pending.at and self._posted_here(pending.key):
            after = timestamps.parse(pending.at) + timedelta(microseconds=1)
            mark = max(mark, after.strftime(timestamps.MICRO_FORMAT))
        return mark

    def _posted_here(self, key: str) -> bool:
        """A pendingEvent this process wrote (its key starts with the process's token) and posted."""
        return key.startswith(self._token) and key not in self._unposted and key not in self._unsure

    async def write(
        self,
        obj: dict,
        change: Change,
        event: Event | None = None,
        persist: bool = False,
        current: dict | None = None,
    ) -> tuple[dict, dict | None]:
        """Compare-and-swap `change` on the resource `obj` names; with `event` the write is a
        transition whose Event is posted right after. `persist` rides out an apiserver blip for a
        write that must not be lost (NotFound and Conflict are answers, not blips). `current`: the
        object as this process just wrote it, so the swap needs no read unless it changed since."""
        meta = obj["metadata"]
        ns, name = meta["namespace"], meta["name"]

        stamped: list[str] = []  # a conflict's retry stamps a new key: only the one written counts

        def announced(fresh: dict) -> dict | None:
            patch = self.ctx.index.sealer.sealed(fresh, change(fresh))  # every task id written is sealed
            if patch is None or event is None:
                return patch
            type_, reason = event
            message = str(patch.get("message") or reason)[:1024]
            key, at = self._token + uuid.uuid4().hex[:8], timestamps.micro_now()
            stamped.append(key)
            self._unposted[key] = at
            return {
                **patch,
                "pendingEvent": {"key": key, "type": type_, "reason": reason, "message": message, "at": at},
            }

        tries = PERSIST_TRIES if persist else 1
        try:
            for attempt in range(1, tries + 1):
                try:
                    base = current if attempt == 1 else None
                    written, patch = await self.ctx.kube.mutate_status(ns, name, announced, current=base)
                    break
                except k8s.Failed as exc:
                    if attempt == tries:
                        raise
                    log.warning("%s/%s: status write failed (%s), retrying", ns, name, exc)
                    await asyncio.sleep(self.ctx.backoff(attempt))
        except BaseException:
            for key in stamped:  # it may have landed: the next look at the object posts it (`announce`)
                self._doubt(key)
            raise
        usage.written(ns, patch)
        landed = (status_of(written).pending_event or _NONE).key
        for key in stamped:
            if key != landed:
                self._unposted.pop(key, None)
        if landed in stamped:
            await self.announce(written)
        return written, patch

    async def on_attempt(
        self,
        obj: dict,
        attempt: int,
        patch: Patch,
        event: Event | None = None,
        persist: bool = False,
        current: dict | None = None,
    ) -> tuple[dict, dict | None]:
        """Write `patch` only while `attempt` is still the pending Start attempt."""
        return await self.write(
            obj,
            lambda fresh: patch(status_of(fresh)) if attempt_pending(fresh, attempt) else None,
            event,
            persist,
            current,
        )

    async def on_task(
        self, obj: dict, task_id: str, patch: Patch, event: Event | None = None, persist: bool = False
    ) -> tuple[dict, dict | None]:
        """Write `patch` only while `task_id` is the current task, and proven ours."""
        return await self.write(
            obj, lambda fresh: patch(status_of(fresh)) if self.task_current(fresh, task_id) else None, event, persist
        )

    def task_current(self, fresh: dict, task_id: str) -> bool:
        return status_of(fresh).task_id == task_id and self.ctx.index.sealer.proven(fresh)

    async def announce(self, obj: dict) -> None:
        """Post the pending Event if it may not be posted yet, under its fixed name (a second post is a no-op)."""
        pending = status_of(obj).pending_event
        if pending is None:
            return
        if pending.key.startswith(self._token):  # this process's: it knows
            if self._posted_here(pending.key):
                return
        elif actions.event_posted(pending.at, max(self.previous_mark, handed_mark(obj))):
            return  # the leader before posted it, or the shard that handed it over
        if await self.event(obj, pending.type, pending.reason, pending.message, key=pending.key) is Posted.NO:
            self._doubt(pending.key)  # it stays pending, and the next reconcile posts it
            return
        self._unposted.pop(pending.key, None)
        self._unsure.pop(pending.key, None)

    def _doubt(self, key: str) -> None:
        """Posted at the next look in this process; a restart does not wait for it (the mark moves on)."""
        if key in self._unposted:
            self._unsure[key] = self._unposted.pop(key)
        while len(self._unsure) > UNSURE_KEPT:
            del self._unsure[next(iter(self._unsure))]

    async def event(
        self, obj: dict, type_: str, reason: str, message: str, key: str | None = None, repeat: bool = False
    ) -> Posted:
        """One log line and one Event naming the resource and its task. In a namespace being deleted no
        Event can be created, so status says it instead."""
        posted = await self.ctx.events.record(obj, type_, reason, message, key=key, repeat=repeat)
        if posted is Posted.NAMESPACE_TERMINATING:
            meta = obj["metadata"]
            try:
                await self.ctx.kube.patch_status(
                    meta["namespace"], meta["name"], {"reason": reason, "message": message}
                )
            except (k8s.Failed, k8s.NotFound):
                pass
        return posted

    async def refuse_spec(self, obj: dict, message: str, code: str = "InvalidSpec") -> None:
        """A spec only the operator can see is wrong: Failed if no task runs; if one does, it keeps
        its settings and Synced=False says why (never Failed over a live task)."""
        generation = obj["metadata"]["generation"]

        def change(fresh: dict) -> dict | None:
            status = status_of(fresh)
            if status.task_id:
                return patches.update_refused(status, code, message, generation, self.ctx.clock())
            if status.phase == Phase.FAILED and status.observed_generation == generation:
                return None
            return patches.start_refused(status, code, message, generation, self.ctx.clock())

        await self.write(obj, change, event=("Warning", code))

    async def refuse_unproven(self, obj: dict) -> None:
        """status.taskId is not sealed for this resource (someone else wrote it): call nothing,
        say so once (an Event and Synced=False)."""
        meta, task_id = obj["metadata"], (obj.get("status") or {}).get("taskId")
        log.warning(
            "%s/%s: task %s is not proven to be this resource's; not acted on", meta["namespace"], meta["name"], task_id
        )

        def change(fresh: dict) -> dict | None:
            if (fresh.get("status") or {}).get("taskId") != task_id or self.ctx.index.sealer.proven(fresh):
                return None
            return refusal(fresh, self.ctx.clock())

        try:
            await self.write(obj, change, event=("Warning", NOT_PROVEN))
        except k8s.NotFound:
            pass


_NONE = PendingEvent(key="", type="", reason="")


def attempt_pending(fresh: dict, attempt: int) -> bool:
    status = status_of(fresh)
    return bool(
        status.task_id is None
        and status.attempt
        and status.attempt.number == attempt
        and not status.attempt.not_executed
        and status.phase not in SETTLED
    )


def handed_mark(obj: dict) -> str:
    """The Events mark of the shard that handed this object over, if one did (docs/sharding.md)."""
    return (obj["metadata"].get("annotations") or {}).get(EVENTS_MARK, "")
