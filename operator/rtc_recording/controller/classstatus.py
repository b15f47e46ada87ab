"""Writes each RtcRecordingClass's status (decide/classes.py class_status: default, inUse, problems,
Ready), and only when something in it changed: `kubectl wait --for=condition=Ready rtcrecclass/NAME`
and kstatus read it.

What a class costs at 10 000 recordings: inUse is a boolean, not a count (a count would be a write per
create). It is worked out from what the operator keeps anyway (the index of RtcRecordings and the
schedules' template class names; no request) when a class or a schedule's class changes, and
otherwise every USE_SCAN_SECONDS (an RtcRecording's start or end may lag that long), and it is
written only when it flips (docs/troubleshooting.md#class-status).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from rtc_recording.api.names import class_path
from rtc_recording.api.recording import TERMINAL
from rtc_recording.controller.classresolver import ClassResolver
from rtc_recording.controller.index import Index
from rtc_recording.controller.scheduler import Scheduler
from rtc_recording.decide.classes import class_status
from rtc_recording.kube.client import Kube
from rtc_recording.kube.errors import Conflict, KubeError, NotFound

log = logging.getLogger(__name__)
USE_SCAN_SECONDS = 30.0  # a scan of 10 000 index entries and 10 000 schedules takes under a millisecond


class ClassStatus:
    def __init__(
        self,
        kube: Kube,
        resolver: ClassResolver,
        index: Index,
        scheduler: Scheduler,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.kube, self.resolver, self.index, self.scheduler, self.clock = kube, resolver, index, scheduler, clock
        self.classes: dict[str, dict] = {}  # name -> as last seen (a cluster has a handful)
        self.uses: Callable[[], set[str]] | None = None  # sharded: the sharder's view of all (sharder.py)
        self._changed = asyncio.Event()
        resolver.observer = self.saw
        scheduler.class_names_changed = self._changed.set

    def saw(self, type_: str, obj: dict) -> None:
        name = obj["metadata"]["name"]
        if type_ == "DELETED":
            self.classes.pop(name, None)
        else:
            self.classes[name] = obj
        if type_ != "MODIFIED":
            self.scheduler.class_changed(name, exists=type_ != "DELETED")  # a schedule naming it is Ready, or not
        self._changed.set()

    def in_use(self) -> set[str]:
        """Classes an RtcRecording that is not Completed or Failed uses, or a schedule's template names."""
        if self.uses is not None:
            return self.uses()
        used = {t.recording_class for t in self.index.objects.values() if t.recording_class and t.phase not in TERMINAL}
        return used | set(self.scheduler.class_names.values())

    async def run(self) -> None:
        self.resolver.watch()
        while True:
            try:
                await asyncio.wait_for(self._changed.wait(), USE_SCAN_SECONDS)
            except TimeoutError:
                pass
            self._changed.clear()
            await self.write()

    async def write(self) -> None:
        used, now = self.in_use(), self.clock()
        for name, obj in list(self.classes.items()):
            status, patch = obj.get("status") or {}, class_status(obj, name in used, now)
            if all(status.get(k) == v for k, v in patch.items()):
                continue  # nothing new: no write, no watch event
            try:
                await self.kube.request(
                    "PATCH",
                    class_path(name, "status"),
                    json={"status": patch, "metadata": {"uid": obj["metadata"]["uid"]}},
                    content_type="application/merge-patch+json",
                )
            except (NotFound, Conflict):
                pass  # gone, or replaced: its own watch event comes
            except KubeError as exc:  # a courtesy: the classes work without it; tried again at the next scan
                log.warning("could not write the status of RtcRecordingClass %s: %s", name, exc)
