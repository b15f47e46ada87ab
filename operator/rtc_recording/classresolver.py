"""Reads what the class decisions (`classes.py`) need: the class an RtcRecording names (or every
class, for the default) and the labels of its namespace. One GET or LIST of classes and one GET of
the namespace per Start: Starts are bounded by the cloud quota, so no watch or cache is kept, and
a class is always read as it is when the task starts."""

from __future__ import annotations

from .classes import CLASS_PLURAL, Choice, RecordingClass, choose
from .kube import GROUP, VERSION, Gone, Kube, segment


class ClassResolver:
    def __init__(self, kube: Kube):
        self.kube = kube

    async def get(self, name: str) -> RecordingClass | None:
        try:
            return RecordingClass.of(
                await self.kube.request("GET", f"/apis/{GROUP}/{VERSION}/{CLASS_PLURAL}/{segment(name)}")
            )
        except Gone:
            return None

    async def all(self) -> list[RecordingClass]:
        listed = await self.kube.request("GET", f"/apis/{GROUP}/{VERSION}/{CLASS_PLURAL}")
        return [RecordingClass.of(item) for item in listed.get("items", [])]

    async def labels(self, namespace: str) -> dict[str, str]:
        try:
            got = await self.kube.request("GET", f"/api/v1/namespaces/{segment(namespace)}")
        except Gone:
            return {}
        return got["metadata"].get("labels") or {}

    async def resolve(self, obj: dict) -> Choice:
        namespace = obj["metadata"]["namespace"]
        name = (obj.get("spec") or {}).get("recordingClassName")
        if name is None:
            classes = await self.all()
            if not any(c.default for c in classes):
                return choose(None, None, [], namespace, {})
            return choose(None, None, classes, namespace, await self.labels(namespace))
        return choose(name, await self.get(name), None, namespace, await self.labels(namespace))
