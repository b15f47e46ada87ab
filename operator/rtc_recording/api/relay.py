"""A relay: one callback the user's own spec.notify.url should get, as the receiver writes it down.

A ConfigMap in the operator's namespace, named by the resource's uid and the body, so a resend of
one callback is one relay. The operator's side, which signs and delivers it, is `controller/relay.py`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from rtc_recording.api.names import RELAY_LABEL


@dataclass(frozen=True)
class Relay:
    namespace: str
    name: str
    uid: str
    body: str  # the callback as received: a JSON object

    def object_name(self) -> str:
        digest = hashlib.sha256(f"{self.uid}/{self.body}".encode()).hexdigest()
        return f"rtcrec-relay-{digest[:32]}"

    def to_configmap(self, namespace: str) -> dict:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": self.object_name(), "namespace": namespace, "labels": {RELAY_LABEL: "pending"}},
            "data": {"namespace": self.namespace, "name": self.name, "uid": self.uid, "body": self.body},
        }

    @classmethod
    def from_configmap(cls, configmap: dict) -> Relay:
        data = configmap.get("data") or {}
        try:
            relay = cls(data["namespace"], data["name"], data["uid"], data["body"])
            json.loads(relay.body)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a relay: {exc}") from None
        return relay
