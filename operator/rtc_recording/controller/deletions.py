"""What each deletion did with its task, kept in the apiserver so that a restart forgets nothing.

A callback for a resource that no longer exists names a task: stop it only if the deletion
said its tasks were unwanted (deletionPolicy Stop: `stopped`), never one it left running on
purpose (deletionPolicy Orphan), and never on the resource's absence alone (a record expired
or never written: the task then ends when idle). An orphan is adoptable only from its own
namespace (controller/executor/adopt.py).

One small ConfigMap per deletion in the operator's namespace, `rtcrec-deletion-<uid>`, labelled
with what was done (DELETION_LABEL: orphaned or stopped) and the task (TASK_LABEL): a create per
deletion, a GET by name per callback of a deleted resource, a LIST by label per adoption, and no
object that every deletion rewrites (10 000 deletions at once do not contend). A record expires
with the cloud's 72-hour task limit, after which no task of it can call back: `sweep`, hourly,
deletes them (a paged LIST by label; about 400 bytes of etcd each meanwhile).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

from rtc_recording.api.names import DELETION_LABEL, TASK_LABEL, segment
from rtc_recording.controller.sweep import Sweep
from rtc_recording.kube.client import Kube
from rtc_recording.kube.errors import Conflict, NotFound

KEEP_SECONDS = 72 * 3600  # StartRtcCloudRecording's tasks end within 72 hours
EXPIRE_EVERY_SECONDS = 3600


@dataclass(frozen=True)
class Deletion:
    namespace: str
    task_id: str | None
    orphaned: bool
    at: float

    @classmethod
    def of(cls, configmap: dict) -> Deletion | None:
        data, labels = configmap.get("data") or {}, configmap["metadata"].get("labels") or {}
        if labels.get(DELETION_LABEL) not in ("orphaned", "stopped") or not (data.get("at") or "").isdigit():
            return None
        orphaned = labels[DELETION_LABEL] == "orphaned"
        return cls(data.get("namespace", ""), data.get("taskId") or None, orphaned, float(data["at"]))


class Deletions:
    def __init__(self, kube: Kube, namespace: str, clock: Callable[[], float] = time.time):
        self.kube, self.clock = kube, clock
        self.namespace = namespace
        self.collection = f"/api/v1/namespaces/{segment(namespace)}/configmaps"
        self.sweep = Sweep(kube, self.collection, DELETION_LABEL, self._stale, EXPIRE_EVERY_SECONDS, "deletion records")

    async def get(self, uid: str) -> Deletion | None:
        try:
            record = Deletion.of(await self.kube.request("GET", f"{self.collection}/{_name(uid)}"))
        except NotFound:
            return None
        return record if record is not None and not self._expired(record) else None

    async def orphan(self, task_id: str) -> Deletion | None:
        """The deletion that left `task_id` running on purpose, if any."""
        selector = f"{DELETION_LABEL}=orphaned,{TASK_LABEL}={task_id}"
        got = await self.kube.request("GET", f"{self.collection}?{urlencode({'labelSelector': selector})}")
        records = [r for item in got.get("items") or [] if (r := Deletion.of(item)) is not None]
        return next((r for r in records if r.task_id == task_id and not self._expired(r)), None)

    async def record(self, uid: str, namespace: str, task_id: str | None, orphaned: bool) -> None:
        """Say what the deletion of `uid` did with its task; raises kube errors (the finalizer then stays).
        A deletion retried after a crash records again: the newer record replaces the older."""
        labels = {DELETION_LABEL: "orphaned" if orphaned else "stopped"}
        if task_id:
            labels[TASK_LABEL] = task_id
        data = {"namespace": namespace, "at": str(int(self.clock()))}
        if task_id:
            data["taskId"] = task_id
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": _name(uid), "namespace": self.namespace, "labels": labels},
            "data": data,
        }
        try:
            await self.kube.create(self.collection, body)
        except Conflict:  # recorded before: this one says what the deletion did last
            await self.kube.delete(f"{self.collection}/{_name(uid)}")
            await self.kube.create(self.collection, body)

    def _stale(self, configmap: dict) -> bool:
        """No task of it can call back any more (or it is not a record this code wrote)."""
        record = Deletion.of(configmap)
        return record is None or self._expired(record)

    def _expired(self, record: Deletion) -> bool:
        return self.clock() - record.at >= KEEP_SECONDS


def _name(uid: str) -> str:
    return f"rtcrec-deletion-{segment(uid)}"
