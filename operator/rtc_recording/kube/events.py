"""One Event recorder for the operator: a log line and a core/v1 Event about an object, never an error.

An Event is a courtesy: failing to post one never undoes the work it reports. With a `key` its
name is fixed, so posting it again (a retry after a crash) is a no-op, or with `repeat` counts one
more occurrence, as client-go's recorder aggregates. A Warning's message ends with the section of
docs/troubleshooting.md on its reason: added to the Event only, never to the status that holds a
pending Event, so it costs no write.
"""

from __future__ import annotations

import enum
import logging
import uuid

from rtc_recording import metrics
from rtc_recording.api import timestamps
from rtc_recording.api.names import COMPONENT, GROUP, VERSION, segment, troubleshooting
from rtc_recording.kube.client import Kube
from rtc_recording.kube.errors import Conflict, Failed, NamespaceTerminating, NotFound

log = logging.getLogger(__name__)
MESSAGE_LIMIT = 1024  # an Event's message is cut to this (events.k8s.io/v1 limits a note to 1 kB)


class Posted(enum.Enum):
    YES = "posted"
    NAMESPACE_TERMINATING = "namespace terminating"  # nothing new can be created there
    NO = "not posted"  # the apiserver would not take it; logged


class EventRecorder:
    def __init__(self, kube: Kube, component: str = COMPONENT):
        self.kube, self.component = kube, component

    async def record(
        self, obj: dict, type_: str, reason: str, message: str, key: str | None = None, repeat: bool = False
    ) -> Posted:
        meta = obj["metadata"]
        metrics.EVENTS.labels(type=type_, reason=reason).inc()
        log.log(
            logging.WARNING if type_ == "Warning" else logging.INFO,
            "%s/%s %s: %s",
            meta["namespace"],
            meta["name"],
            reason,
            message,
            extra={
                "object": {
                    "namespace": meta["namespace"],
                    "name": meta["name"],
                    "taskId": (obj.get("status") or {}).get("taskId"),
                    "reason": reason,
                }
            },
        )
        try:
            await self._post(obj, type_, reason, message, key, repeat)
        except NamespaceTerminating:
            return Posted.NAMESPACE_TERMINATING
        except (Failed, NotFound, Conflict) as exc:
            log.warning("could not post event %s for %s/%s: %s", reason, meta["namespace"], meta["name"], exc)
            return Posted.NO
        return Posted.YES

    async def _post(self, obj: dict, type_: str, reason: str, message: str, key: str | None, repeat: bool) -> None:
        meta = obj["metadata"]
        if type_ == "Warning":
            see = f" (see {troubleshooting(reason)})"
            message = message[: MESSAGE_LIMIT - len(see)] + see
        now = timestamps.now()
        name = f"{meta['name']}.{key or uuid.uuid4().hex[:12]}"
        events = f"/api/v1/namespaces/{segment(meta['namespace'])}/events"
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion", f"{GROUP}/{VERSION}"),
                "kind": obj.get("kind", "RtcRecording"),
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:MESSAGE_LIMIT],
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "source": {"component": self.component},
            "reportingComponent": self.component,
        }
        try:
            await self.kube.request("POST", events, json=event)
        except Conflict:
            if key is None:
                raise
            if not repeat:
                return
            old = await self.kube.request("GET", f"{events}/{segment(name)}")
            await self.kube.request(
                "PATCH",
                f"{events}/{segment(name)}",
                content_type="application/merge-patch+json",
                json={
                    "count": int(old.get("count") or 1) + 1,
                    "lastTimestamp": now,
                    "message": message[:MESSAGE_LIMIT],
                },
            )
