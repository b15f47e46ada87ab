"""A relay: one callback the user's own spec.notify.url should get, as the receiver writes it down.

A ConfigMap in the operator's namespace, named by the resource's uid and the body, so a resend of
one callback is one relay. The body is rebuilt from the vendor's known fields only (`relayed_body`),
each short, so a relay is small (`MAX_BODY_CHARS`) whatever the callback carried. The operator's
side, which confirms, signs and delivers it, is `controller/relay.py`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from rtc_recording.api.names import RELAY_LABEL

# The callback's documented fields, and the payload's as the operator reads them (the vendor
# publishes none: decide/relays.py and the emulator agree on these).
FIELDS = ("appId", "channelId", "taskId", "eventType", "callbackTs")
PAYLOAD_FIELDS = ("reason", "stream", "format", "duration", "sequence", "filePath", "url", "mediaId")
MAX_FIELD_CHARS = 256  # as JSON, escapes included
MAX_BODY_CHARS = 8 * 1024  # what the fields above can add up to, the payload's escapes included


def relayed_body(body: dict[str, Any], payload: dict[str, Any]) -> str:
    """The callback as relayed: known fields with short string or number values, the payload as
    the JSON string the vendor documents. Anything else a body carries is not the vendor's."""
    kept: dict[str, Any] = {k: v for k in FIELDS if _short(v := body.get(k))}
    kept["payload"] = json.dumps({k: v for k in PAYLOAD_FIELDS if _short(v := payload.get(k))}, sort_keys=True)
    return json.dumps(kept, sort_keys=True)


def _short(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, str):
        return len(json.dumps(value)) <= MAX_FIELD_CHARS
    return isinstance(value, int | float) and len(str(value)) <= 32


@dataclass(frozen=True)
class Relay:
    namespace: str
    name: str
    uid: str
    body: str  # relayed_body(): a JSON object
    received: int = 0  # when the receiver took it (Unix seconds): how long it may wait for confirmation

    def object_name(self) -> str:
        digest = hashlib.sha256(f"{self.uid}/{self.body}".encode()).hexdigest()
        return f"rtcrec-relay-{digest[:32]}"

    def to_configmap(self, namespace: str) -> dict:
        data = {"namespace": self.namespace, "name": self.name, "uid": self.uid, "body": self.body}
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": self.object_name(), "namespace": namespace, "labels": {RELAY_LABEL: "pending"}},
            "data": {**data, "received": str(self.received)},
        }

    @classmethod
    def from_configmap(cls, configmap: dict) -> Relay:
        data = configmap.get("data") or {}
        try:
            relay = cls(data["namespace"], data["name"], data["uid"], data["body"], int(data.get("received", 0)))
            if not isinstance(json.loads(relay.body), dict):
                raise ValueError("the body is no JSON object")
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a relay: {exc}") from None
        return relay
