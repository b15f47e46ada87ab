"""Reads what the class decisions (`decide/classes.py`) need: the class an RtcRecording names (or every
class, for the default) and the labels of its namespace.

The classes come from a watch (a cluster has a handful, so all of them are kept): a Start reads
none from the apiserver, where a LIST per Start was one of the burst's largest costs. The
namespace is read with one GET per Start that a class applies to. A class is read as the watch
last saw it, and the status pins the generation the task was started from."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from rtc_recording.api.names import class_path, segment
from rtc_recording.decide.classes import Choice, RecordingClass, choose
from rtc_recording.kube.client import Kube
from rtc_recording.kube.errors import NotFound
from rtc_recording.kube.reflector import Reflector

SYNC_WAIT_SECONDS = 2.0


class ClassResolver:
    def __init__(self, kube: Kube):
        self.kube = kube
        self._classes: dict[str, RecordingClass] = {}
        self._reflector = Reflector(kube, class_path(), self._on_change)
        self._watch: asyncio.Task[None] | None = None
        self.observer: Callable[[str, dict], None] = lambda type_, obj: None  # every watch event (classstatus.py)
        self.sync_wait = SYNC_WAIT_SECONDS

    def _on_change(self, type_: str, obj: dict) -> None:
        name = obj["metadata"]["name"]
        if type_ == "DELETED":
            self._classes.pop(name, None)
        else:
            self._classes[name] = RecordingClass.of(obj)
        self.observer(type_, obj)

    def watch(self) -> None:
        """Start the watch (once): at start-up, with the class status (classstatus.py); `known()` starts it too."""
        if self._watch is None:
            self._watch = asyncio.create_task(self._reflector.run(), name="recording classes")

    async def known(self) -> dict[str, RecordingClass]:
        """Every class by name. The Starts of a start-up wait a moment for the watch's first list (one
        LIST, not one each: 32 at once met 429s from an apiserver still filling its cache); if it
        cannot sync, the classes are listed as they are."""
        self.watch()
        try:
            await asyncio.wait_for(self._reflector.synced.wait(), self.sync_wait)
            return self._classes
        except TimeoutError:
            pass
        listed = await self.kube.request("GET", class_path())
        return {item["metadata"]["name"]: RecordingClass.of(item) for item in listed.get("items", [])}

    async def labels(self, namespace: str) -> dict[str, str]:
        try:
            got = await self.kube.request("GET", f"/api/v1/namespaces/{segment(namespace)}")
        except NotFound:
            return {}
        return got["metadata"].get("labels") or {}

    async def resolve(self, obj: dict) -> Choice:
        known = await self.known()
        namespace = obj["metadata"]["namespace"]
        name = (obj.get("spec") or {}).get("recordingClassName")
        if name is None:
            if not any(c.default for c in known.values()):
                return choose(None, None, [], namespace, {})
            return choose(None, None, list(known.values()), namespace, await self.labels(namespace))
        return choose(name, known.get(name), None, namespace, await self.labels(namespace))
