"""What the operator keeps of every RtcRecording between events: a few hundred bytes each.

Fed from every watch event (`saw`). The poller, the evidence worker, the ownership check
and `/healthz` read it instead of asking the apiserver: at 10 000 resources a GET per
Describe, or a full object kept per resource, would cost more than the rest of the
operator together.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from rtc_recording.api.recording import status_of
from rtc_recording.decide import actions
from rtc_recording.decide.classes import account_fields, class_of
from rtc_recording.decide.ownership import Sealer

Key = tuple[str, str]
TOMBSTONES_KEPT = 20_000


@dataclass(frozen=True, slots=True)
class Tracked:
    namespace: str
    name: str
    uid: str
    resource_version: str
    generation: int
    deleting: bool
    phase: str | None
    task_id: str | None
    files_digest: str
    region: str | None
    secret: str | None  # spec.credentialsSecretRef.name, or the pinned class's Secret (classes.account_fields)
    due: float | None  # when maxDurationSeconds or ttlSecondsAfterFinished falls due (Unix time)
    secret_namespace: str | None = None  # set when the Secret is a class's, in another namespace
    attempt: int | None = None  # status.attempt.number
    seal: str | None = None  # status.taskSeal (decide/ownership.py)
    synced: bool | None = None  # the Synced condition's status; None: no such condition, or Unknown
    recording_class: str | None = None  # the class it was started from, else the one it names (classstatus.py)

    @classmethod
    def of(cls, obj: dict) -> Tracked:
        meta, status = obj["metadata"], obj.get("status") or {}
        controls = actions.Controls.of(obj)
        timed = controls.max_duration or controls.ttl is not None or controls.restart
        due = actions.due_at(status_of(obj), controls) if timed else None
        region, secret_namespace, secret = account_fields(obj)
        phase = status.get("phase")
        class_name = class_of(obj)
        return cls(
            sys.intern(meta["namespace"]),  # shared by every object of a namespace, as the phases are
            meta["name"],
            meta["uid"],
            meta.get("resourceVersion", ""),
            meta.get("generation", 0),
            bool(meta.get("deletionTimestamp")),
            sys.intern(phase) if phase else None,
            status.get("taskId"),
            files_digest(status.get("files")),
            region,
            secret,
            due.timestamp() if due else None,
            secret_namespace if secret_namespace != meta["namespace"] else None,
            (status.get("attempt") or {}).get("number"),
            status.get("taskSeal"),
            _synced(status.get("conditions")),
            sys.intern(class_name) if class_name else None,  # a handful of classes, shared by thousands
        )

    @property
    def key(self) -> Key:
        return self.namespace, self.name

    def stand_in(self) -> dict:
        """Enough of the object to pick its cloud account and write its status."""
        spec: dict = {"region": self.region} if self.region else {}
        # The task seal with it: it proves the account a class pin names (decide/ownership.py account_proven).
        status: dict = {"taskId": self.task_id, "taskSeal": self.seal} if self.task_id else {}
        if self.attempt is not None:
            status["attempt"] = {"number": self.attempt}
        if self.secret and self.secret_namespace:
            status["recordingClass"] = {
                "credentialsSecretRef": {"namespace": self.secret_namespace, "name": self.secret}
            }
        elif self.secret:
            spec["credentialsSecretRef"] = {"name": self.secret}
        return {
            "metadata": {
                "namespace": self.namespace,
                "name": self.name,
                "uid": self.uid,
                "resourceVersion": self.resource_version,
                "generation": self.generation,
            },
            "spec": spec,
            "status": status,
        }


def files_digest(files: dict | None) -> str:
    return hashlib.blake2b(json.dumps(files or {}, sort_keys=True).encode(), digest_size=8).hexdigest()


class Index:
    def __init__(self, sealer: Sealer, clock: Callable[[], float] = time.monotonic):
        self.sealer, self.clock = sealer, clock
        self.objects: dict[Key, Tracked] = {}
        self._owners: dict[str, Key] = {}
        self.tombstones: OrderedDict[str, Tracked] = OrderedDict()  # uid -> the last we saw of it
        self.last_event = clock()

    def saw(self, type_: str | None, obj: dict) -> Tracked | None:
        """One watch event (`type_` DELETED or anything else); returns what is kept, if anything."""
        self.last_event = self.clock()
        tracked = Tracked.of(obj)
        self.forget(tracked.key)
        if type_ == "DELETED":
            self.tombstones[tracked.uid] = tracked
            while len(self.tombstones) > TOMBSTONES_KEPT:
                self.tombstones.popitem(last=False)
            return None
        self.objects[tracked.key] = tracked
        if tracked.task_id and self.proven(tracked):  # a task id without our seal makes nobody its owner
            self._owners[tracked.task_id] = tracked.key
        return tracked

    def forget(self, key: Key) -> None:
        """Kept no more, without a tombstone (also a sharded object that moved away, docs/sharding.md)."""
        old = self.objects.pop(key, None)
        if old is not None and old.task_id and self._owners.get(old.task_id) == key:
            del self._owners[old.task_id]

    def proven(self, tracked: Tracked) -> bool:
        """Did the operator write this task id for this resource and attempt (decide/ownership.py)?"""
        account = (
            tracked.region or "",
            (tracked.secret_namespace or tracked.namespace) if tracked.secret else "",
            tracked.secret or "",
        )
        return self.sealer.verify(tracked.uid, tracked.attempt, tracked.task_id, tracked.seal, account)

    def account(self, key: Key) -> tuple[str | None, str | None, str | None] | None:
        """The account a resource's calls use, as far as its last watch event tells (None: unknown)."""
        tracked = self.objects.get(key)
        return (tracked.region, tracked.secret_namespace, tracked.secret) if tracked else None

    def owner(self, task_id: str) -> Tracked | None:
        """The resource whose current task this is (proven by its seal), if any."""
        key = self._owners.get(task_id)
        return self.objects.get(key) if key else None

    def __len__(self) -> int:
        return len(self.objects)


def _synced(conditions: list[dict] | None) -> bool | None:
    for condition in conditions or ():
        if condition.get("type") == "Synced":
            return {"True": True, "False": False}.get(condition.get("status") or "")
    return None
