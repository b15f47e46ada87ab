"""Evidence: what a verified callback said that can change something, as the receiver writes it down.

One ConfigMap per (namespace, name, resource uid, attempt, task, alive|ended) in the operator's own
namespace (the path's every part: evidence for one path never takes another path's name): the
cloud's three start callbacks and its resends of one task collapse into one object (409 on
create). The operator's side is `controller/evidence.py`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass

from rtc_recording.api.names import EVIDENCE_LABEL, segment

END_EVENTS = frozenset({"TaskStopped"})


_UID = re.compile(r"[0-9a-fA-F-]{1,64}")


@dataclass(frozen=True)
class Evidence:
    namespace: str
    name: str
    uid: str
    attempt: int
    task_id: str
    event: str

    @property
    def kind(self) -> str:
        return "ended" if self.event in END_EVENTS else "alive"

    def object_name(self) -> str:
        what = "\0".join((self.namespace, self.name, self.uid, str(self.attempt), self.task_id, self.kind))
        digest = hashlib.sha256(what.encode()).hexdigest()
        return f"rtcrec-evidence-{digest[:32]}"

    def to_configmap(self, namespace: str) -> dict:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": self.object_name(), "namespace": namespace, "labels": {EVIDENCE_LABEL: self.kind}},
            "data": {k: str(v) for k, v in asdict(self).items()},
        }

    @classmethod
    def from_configmap(cls, configmap: dict) -> Evidence:
        """Raises ValueError for a ConfigMap that is not well-formed evidence."""
        data = configmap.get("data") or {}
        try:
            evidence = cls(
                namespace=data["namespace"],
                name=data["name"],
                uid=data["uid"],
                attempt=int(data["attempt"]),
                task_id=data["task_id"],
                event=data["event"],
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"evidence without {exc}") from None
        if not _UID.fullmatch(evidence.uid) or evidence.attempt < 1 or not evidence.task_id:
            raise ValueError("malformed evidence")
        return evidence


def collection(namespace: str) -> str:
    return f"/api/v1/namespaces/{segment(namespace)}/configmaps"
