"""classstatus.py: a class's status is written when it changes and only then; inUse comes from the
index and the schedules, not from a request."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from rtc_recording.controller.classstatus import ClassStatus


class Kube:
    def __init__(self):
        self.patches: list[tuple[str, dict]] = []

    async def request(self, method: str, path: str, *, json=None, content_type=None) -> dict:
        self.patches.append((path, json))
        return {}


def tracked(recording_class: str | None, phase: str) -> SimpleNamespace:
    return SimpleNamespace(recording_class=recording_class, phase=phase)


def gold(status: dict | None = None) -> dict:
    meta = {"name": "gold", "uid": "u-gold", "generation": 1}
    return {"metadata": meta, "spec": {"namespaceSelector": {}}, **({"status": status} if status else {})}


def test_in_use_counts_unfinished_recordings_and_schedules_and_writes_only_a_change():
    kube, poked = Kube(), []
    resolver = SimpleNamespace(observer=None)
    index = SimpleNamespace(objects={("a", "done"): tracked("gold", "Completed"), ("a", "x"): tracked(None, "Pending")})
    scheduler = SimpleNamespace(class_names={}, class_changed=lambda name, exists: poked.append((name, exists)))
    classes = ClassStatus(kube, resolver, index, scheduler)  # type: ignore[arg-type]
    saw = resolver.observer
    saw("ADDED", gold())
    assert poked == [("gold", True)]  # the schedules waiting for it decide again
    assert classes.in_use() == set()  # a Completed recording does not hold a class
    asyncio.run(classes.write())
    ((path, body),) = kube.patches
    assert path == "/apis/rtc.recording.io/v1alpha1/rtcrecordingclasses/gold/status"
    assert body["metadata"] == {"uid": "u-gold"} and body["status"]["inUse"] is False
    saw("MODIFIED", gold(body["status"]))  # the write comes back through the watch
    asyncio.run(classes.write())
    assert len(kube.patches) == 1  # nothing changed: nothing written
    index.objects[("a", "y")] = tracked("gold", "Recording")
    assert classes.in_use() == {"gold"}
    scheduler.class_names[("b", "weekly")] = "silver"
    assert classes.in_use() == {"gold", "silver"}
    asyncio.run(classes.write())
    assert len(kube.patches) == 2 and kube.patches[1][1]["status"]["inUse"] is True


def schedule_obj(name: str, class_name: str | None, ready_reason: str) -> dict:
    template = {"spec": {"appId": "a", **({"recordingClassName": class_name} if class_name else {})}}
    ready = {"type": "Ready", "status": "False" if ready_reason == "ClassNotFound" else "True", "reason": ready_reason}
    return {
        "metadata": {"namespace": "n", "name": name, "generation": 1},
        "spec": {"schedule": "0 9 * * 1", "template": template},
        "status": {"observedGeneration": 1, "nextScheduleTime": "2030-01-01T00:00:00Z", "conditions": [ready]},
    }


def test_a_class_appearing_wakes_only_the_schedules_that_wait_for_it():
    """Not every schedule at each start-up, whose list of classes reports each class as appearing."""
    from rtc_recording.controller.scheduler import Scheduler

    scheduler = Scheduler(Kube(), SimpleNamespace())  # type: ignore[arg-type]
    woken, changed = [], []
    scheduler.class_names_changed = lambda: changed.append(True)
    scheduler.saw("ADDED", schedule_obj("waits", "gold", "ClassNotFound"))
    scheduler.saw("ADDED", schedule_obj("ready", "gold", "Scheduled"))
    scheduler.saw("ADDED", schedule_obj("classless", None, "Scheduled"))
    assert scheduler.class_names == {("n", "waits"): "gold", ("n", "ready"): "gold"} and len(changed) == 2
    scheduler.deadlines = SimpleNamespace(set=lambda key, when: woken.append(key))  # type: ignore[assignment]
    scheduler.class_changed("gold", exists=True)
    assert woken == [("n", "waits")]
    scheduler.class_changed("gold", exists=False)
    assert woken == [("n", "waits"), ("n", "ready")]
    scheduler.saw("DELETED", schedule_obj("ready", "gold", "Scheduled"))
    assert scheduler.class_names == {("n", "waits"): "gold"} and len(changed) == 3
