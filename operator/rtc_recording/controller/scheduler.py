"""Carries out what `schedules.decide` says: creates and deletes the runs (RtcRecordings) of each
RtcRecordingSchedule and writes its status. Kopf-free: handlers.py feeds it watch events.

No timer per schedule: one heap of wake-up times (`deadlines.Deadlines`, the same as for
maxDurationSeconds) keyed by schedule, fed from the watch. A schedule's wake-up time is read from
its status (nextScheduleTime), so an operator restart sees every schedule again on start-up and
catches up at once on the ones that fell due while it was down. A run's phase change pokes its
schedule (Forbid waits, the active list, history limits), and a class appearing or going pokes the
schedules whose template names it (their Ready condition).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlencode

from rtc_recording.api import timestamps
from rtc_recording.api.names import SCHEDULE_LABEL, recording_path, schedule_path
from rtc_recording.controller.classresolver import ClassResolver
from rtc_recording.controller.deadlines import Deadlines
from rtc_recording.decide import schedules
from rtc_recording.decide.schedules import InvalidSchedule, Reason, Run
from rtc_recording.kube.client import Kube
from rtc_recording.kube.errors import ApiError, Conflict, NotFound
from rtc_recording.kube.events import EventRecorder

log = logging.getLogger(__name__)
Key = tuple[str, str]


class Scheduler:
    def __init__(
        self,
        kube: Kube,
        classes: ClassResolver,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        wall: Callable[[], float] = time.time,
    ):
        self.kube, self.classes, self.clock = kube, classes, clock
        self.events = EventRecorder(kube)
        self.deadlines = Deadlines(self.on_due, clock=wall)
        self.class_names: dict[Key, str] = {}  # schedule -> the class its template names (classstatus.py)
        self.class_missing: set[Key] = set()  # schedules whose Ready says that class does not exist
        self.class_names_changed: Callable[[], None] = lambda: None  # set by classstatus.py
        self.run_labels: dict[str, str] = {}  # sharded: a run is created on its schedule's shard (docs/sharding.md)

    async def run(self) -> None:
        await self.deadlines.run()

    # -- fed from the watch ------------------------------------------------------------------
    def saw(self, type_: str | None, obj: dict) -> None:
        """A watch event of a schedule: when to decide for it next."""
        meta, status = obj["metadata"], obj.get("status") or {}
        key = (meta["namespace"], meta["name"])
        gone = type_ == "DELETED" or bool(meta.get("deletionTimestamp"))
        named = None if gone else (obj["spec"]["template"]["spec"]).get("recordingClassName")
        if named != self.class_names.get(key):
            if named:
                self.class_names[key] = named
            else:
                del self.class_names[key]
            self.class_names_changed()
        ready: dict = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
        if named and ready.get("reason") == Reason.CLASS_NOT_FOUND:
            self.class_missing.add(key)
        else:
            self.class_missing.discard(key)
        if gone:
            self.deadlines.set(key, None)
            return
        next_time = schedules.parse_time(status.get("nextScheduleTime"))
        if status.get("observedGeneration") != meta.get("generation") or next_time is None:
            when = time.time()  # new, changed, or never decided: now
        else:
            when = next_time.timestamp()
        self.deadlines.set(key, when)

    def class_changed(self, name: str, exists: bool) -> None:
        """A class appeared or went: the schedules naming it whose Ready says otherwise decide again (not
        every schedule at each start-up, whose list of classes reports each as appearing)."""
        for key, named in self.class_names.items():
            if named == name and (key in self.class_missing) == exists:
                self.deadlines.set(key, time.time())

    def poke(self, recording: dict) -> None:
        """A run changed (or went): decide for its schedule now."""
        meta = recording["metadata"]
        owner = (meta.get("labels") or {}).get(SCHEDULE_LABEL)
        if owner:
            self.deadlines.set((meta["namespace"], owner), time.time())

    # -- deciding and acting -----------------------------------------------------------------
    async def runs(self, namespace: str, name: str) -> list[dict]:
        query = urlencode({"labelSelector": f"{SCHEDULE_LABEL}={name}"})
        return (await self.kube.request("GET", f"{recording_path(namespace)}?{query}")).get("items", [])

    async def on_due(self, key: Key) -> None:
        namespace, name = key
        try:
            schedule = await self.kube.request("GET", schedule_path(namespace, name))
        except NotFound:
            return
        meta, spec, status = schedule["metadata"], schedule["spec"], schedule.get("status") or {}
        if meta.get("deletionTimestamp"):
            return
        if any((meta.get("labels") or {}).get(k) != v for k, v in self.run_labels.items()):
            return  # another shard's now
        owned = [
            r
            for r in await self.runs(namespace, name)
            if any(o.get("uid") == meta["uid"] for o in r["metadata"].get("ownerReferences") or [])
        ]
        runs = [Run.of(r) for r in owned]
        now = self.clock()
        try:
            decision = schedules.decide(spec, status, timestamps.parse(meta["creationTimestamp"]), runs, now)
        except InvalidSchedule as exc:  # the CRD checks the form; croniter has the last word
            invalid = (False, Reason.INVALID_SCHEDULE, str(exc))
            await self._status(
                schedule,
                {
                    "message": str(exc),
                    "observedGeneration": meta["generation"],
                    "nextScheduleTime": None,
                    "conditions": schedules.status_conditions(status, invalid, meta["generation"], now, stalled=True),
                },
            )
            return
        named = (spec["template"]["spec"]).get("recordingClassName")
        ready = schedules.readiness(spec, named if named and named not in await self.classes.known() else None)
        for run in decision.replace:
            await self._delete(namespace, run)
            await self.events.record(
                schedule, "Normal", Reason.REPLACED, f"deleted the active run {run} (concurrencyPolicy Replace)"
            )
        started = None
        if decision.start is not None:
            started = schedules.run_name(name, decision.start)
            body = schedules.recording_for(schedule, decision.start)
            body["metadata"]["labels"].update(self.run_labels)
            try:
                await self.kube.request("POST", recording_path(namespace), json=body)
                await self.events.record(
                    schedule,
                    "Normal",
                    Reason.STARTED,
                    f"created {started} for the run of {schedules.format_time(decision.start)}",
                    key=f"run-{int(decision.start.timestamp())}",
                )
            except Conflict:
                log.info("%s/%s: run %s exists already (a create repeated after a restart)", namespace, name, started)
            except ApiError as exc:  # refused (a quota, an admission policy): said, and tried again (deadlines.py)
                message = f"could not create {started}: {exc}"
                await self.events.record(
                    schedule, "Warning", Reason.RUN_NOT_CREATED, message, key=f"run-{int(decision.start.timestamp())}-x"
                )
                conditions = schedules.status_conditions(
                    status, (False, Reason.RUN_NOT_CREATED, message), meta["generation"], now
                )
                await self._status(
                    schedule, {"message": message, "observedGeneration": meta["generation"], "conditions": conditions}
                )
                raise
        if decision.missed:
            log.info("%s/%s: %d scheduled time(s) missed or superseded", namespace, name, decision.missed)
        for run in decision.delete:
            await self._delete(namespace, run)
        patch = schedules.status_patch(decision, runs, meta["generation"], started)
        patch["conditions"] = schedules.status_conditions(status, ready, meta["generation"], now)
        await self._status(schedule, patch)
        if decision.wake_at is not None:
            self.deadlines.set(key, decision.wake_at.timestamp())

    async def _delete(self, namespace: str, name: str) -> None:
        try:
            await self.kube.request("DELETE", recording_path(namespace, name))
        except NotFound:
            pass

    async def _status(self, schedule: dict, patch: dict) -> None:
        status = schedule.get("status") or {}
        if all(status.get(k) == v for k, v in patch.items()):
            return  # nothing new: no write, no watch event
        meta = schedule["metadata"]
        try:
            await self.kube.request(
                "PATCH",
                schedule_path(meta["namespace"], meta["name"], "status"),
                json={"status": patch, "metadata": {"uid": meta["uid"]}},
                content_type="application/merge-patch+json",
            )
        except (NotFound, Conflict):
            pass
