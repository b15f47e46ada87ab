"""What each deletion did with its task, kept in the apiserver so that a restart forgets nothing.

A callback for a resource that no longer exists names a task: stop it only if the deletion
said its tasks were unwanted (deletionPolicy Delete: `stopped`), never one it left running on
purpose (deletionPolicy Orphan), and never on the resource's absence alone (a record evicted
or never written: the task then ends when idle). An orphan is adoptable only from its own
namespace (controller/executor/adopt.py).

One ConfigMap in the operator's namespace, `rtcrec-deletions`: a key per resource uid, its
value `<namespace> <task id or -> <orphaned|stopped> <unix time>`. A record expires with the
cloud's 72-hour task limit (no task of it can call back later), and at most MAX_RECORDS are
kept (about 130 bytes each, well under a ConfigMap's 1 MiB): the oldest goes first, which at
worst leaves a stray to end when idle. Written with the resourceVersion read (only the leader
writes; a conflict reads again).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from rtc_recording.api.names import segment
from rtc_recording.kube.client import Kube
from rtc_recording.kube.errors import Conflict, NotFound

RECORDS = "rtcrec-deletions"
KEEP_SECONDS = 72 * 3600  # StartRtcCloudRecording's tasks end within 72 hours
MAX_RECORDS = 6000
TRIES = 5


@dataclass(frozen=True)
class Deletion:
    namespace: str
    task_id: str | None
    orphaned: bool
    at: float

    def encode(self) -> str:
        return f"{self.namespace} {self.task_id or '-'} {'orphaned' if self.orphaned else 'stopped'} {int(self.at)}"

    @classmethod
    def decode(cls, value: str) -> Deletion | None:
        parts = value.split(" ")
        if len(parts) != 4 or parts[2] not in ("orphaned", "stopped") or not parts[3].isdigit():
            return None
        return cls(parts[0], None if parts[1] == "-" else parts[1], parts[2] == "orphaned", float(parts[3]))


class Deletions:
    def __init__(self, kube: Kube, namespace: str, clock: Callable[[], float] = time.time):
        self.kube, self.clock = kube, clock
        self.collection = f"/api/v1/namespaces/{segment(namespace)}/configmaps"
        self.namespace = namespace

    async def _read(self) -> tuple[dict[str, Deletion], str | None, set[str]]:
        """The records in force, the resourceVersion read (None: no ConfigMap yet), every key stored."""
        try:
            got = await self.kube.request("GET", f"{self.collection}/{RECORDS}")
        except NotFound:
            return {}, None, set()
        now, out, stored = self.clock(), {}, got.get("data") or {}
        for uid, value in stored.items():
            record = Deletion.decode(value)
            if record is not None and now - record.at < KEEP_SECONDS:
                out[uid] = record
        return out, got["metadata"]["resourceVersion"], set(stored)

    async def get(self, uid: str) -> Deletion | None:
        return (await self._read())[0].get(uid)

    async def orphan(self, task_id: str) -> Deletion | None:
        """The deletion that left `task_id` running on purpose, if any."""
        records, _, _ = await self._read()
        return next((r for r in records.values() if r.orphaned and r.task_id == task_id), None)

    async def record(self, uid: str, namespace: str, task_id: str | None, orphaned: bool) -> None:
        """Say what the deletion of `uid` did with its task; raises kube errors (the finalizer then stays)."""
        entry = Deletion(namespace, task_id, orphaned, self.clock())
        for _ in range(TRIES):
            records, version, stored = await self._read()
            newest = sorted((k for k in records if k != uid), key=lambda k: records[k].at, reverse=True)
            kept = set(newest[: MAX_RECORDS - 1])
            try:
                if version is None:
                    meta = {"name": RECORDS, "namespace": self.namespace}
                    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {uid: entry.encode()}}
                    await self.kube.create(self.collection, body)
                else:  # a merge patch: expired and excess records go, with the resourceVersion read
                    data: dict[str, str | None] = {k: None for k in stored if k not in kept}
                    data[uid] = entry.encode()
                    await self.kube.request(
                        "PATCH",
                        f"{self.collection}/{RECORDS}",
                        json={"metadata": {"resourceVersion": version}, "data": data},
                        content_type="application/merge-patch+json",
                    )
                return
            except Conflict:
                continue
        raise Conflict(f"ConfigMap {RECORDS} kept changing while the deletion of {uid} was recorded")
