"""A replay marker: which body one receiver replica admitted for a (timestamp, signature) pair and
an event type, in the apiserver, so that every replica refuses another body with that pair.

The vendor signs the timestamp only: one captured header pair could carry any body for 5 minutes.
Each replica's in-memory cache (`receiver.server.Replays`) binds a pair's event type to one body;
this binds it across replicas. One ConfigMap per (pair, event type) in the receiver's (the
operator's) namespace, named by their hash, so the second replica's create answers 409 and it
compares bodies. It is useless once the pair's timestamp is stale; the operator deletes it then
(`controller/replays.py`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from rtc_recording.api.names import REPLAY_LABEL


@dataclass(frozen=True)
class Marker:
    timestamp: str
    signature: str
    event: str
    digest: str  # of the body admitted (receiver.server.digest_of)
    expires: int  # Unix seconds: the pair's timestamp is stale from then on

    def object_name(self) -> str:
        what = "\0".join((self.timestamp, self.signature, self.event))
        return f"rtcrec-replay-{hashlib.sha256(what.encode()).hexdigest()[:40]}"

    def to_configmap(self, namespace: str) -> dict:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": self.object_name(), "namespace": namespace, "labels": {REPLAY_LABEL: "marker"}},
            "data": {"digest": self.digest, "expires": str(self.expires)},
        }


def digest_in(configmap: dict) -> str | None:
    return (configmap.get("data") or {}).get("digest")


def expired(configmap: dict, now: float) -> bool:
    """Malformed counts as expired: nothing else writes this label, and nothing reads such a marker."""
    expires = (configmap.get("data") or {}).get("expires") or ""
    return not expires.isdigit() or int(expires) <= now
