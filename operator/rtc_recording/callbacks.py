"""The NotifyUrl receiver: turns the cloud's recording callbacks into status, and reaps strays.

The operator starts every task with NotifyUrl = <callback_url>/callbacks/<ns>/<name>/<uid>/<attempt>,
so a callback says which resource *and which Start attempt* it belongs to, even when the
answer to that Start was lost. Callbacks are hints: signature and freshness are checked,
the task is confirmed with DescribeRtcCloudRecordingFiles before status changes, and every
action is idempotent because the cloud resends a callback once on a 5xx or timeout.

It runs as its own process (`rtcrec receiver`, several replicas behind one Service) so
that callbacks still land while the operator restarts.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from . import metrics, reconcile
from .kube import Gone
from .recorder import Recorder
from .resource import status_of

log = logging.getLogger(__name__)

MAX_CLOCK_SKEW_S = 300
SUCCESS = {"Code": 0, "Msg": "Success"}


def signature_ok(headers: Mapping[str, str], auth_key: str, now: float) -> bool:
    """ALI-LIVE-SIGNATURE = md5("<ALI-LIVE-TIMESTAMP>|<key>"); it does not cover the body, so
    stale timestamps are refused too."""
    timestamp, signature = headers.get("ALI-LIVE-TIMESTAMP", ""), headers.get("ALI-LIVE-SIGNATURE", "")
    if not re.fullmatch(r"[0-9]{1,12}", timestamp) or not re.fullmatch(r"[0-9A-Fa-f]{32}", signature):
        return False
    if abs(now - int(timestamp)) > MAX_CLOCK_SKEW_S:
        return False
    return hmac.compare_digest(signed_headers(auth_key, int(timestamp))["ALI-LIVE-SIGNATURE"], signature.lower())


@dataclass(frozen=True)
class Callback:
    app_id: str
    channel_id: str
    task_id: str
    event_type: str
    payload: dict[str, Any]

    @classmethod
    def parse(cls, body: Any) -> "Callback":
        if not isinstance(body, dict):
            raise ValueError("a callback is a JSON object")
        payload = body.get("payload") or {}
        if isinstance(payload, str):  # documented as a JSON string; some senders nest an object
            try:
                payload = json.loads(payload)
            except ValueError:
                payload = {}
        return cls(app_id=str(body["appId"]), channel_id=str(body["channelId"]), task_id=str(body["taskId"]),
                   event_type=str(body["eventType"]), payload=payload if isinstance(payload, dict) else {})

    @property
    def stop_reason(self) -> str | None:
        """The payload's stop reason, in our vocabulary; unknown payloads leave it to inference."""
        reason = str(self.payload.get("reason") or self.payload.get("stopReason") or "")
        return {"IdleTimeout": reconcile.Reason.IDLE_TIMEOUT, "MaxDuration": reconcile.Reason.MAX_DURATION,
                "Stopped": reconcile.Reason.STOPPED}.get(reason)


def forwarded(spec: dict, callback: Callback) -> bool:
    """Does the user's own NotifyUrl want this event? Task events always; uploads only in the
    formats they chose (the operator adds SLICE for itself)."""
    notify = spec.get("notify") or {}
    if not notify.get("url"):
        return False
    if callback.event_type != "RecordFileUploaded":
        return True
    wanted = {f.upper() for f in notify.get("fileUploadedFormats") or []}
    return str(callback.payload.get("format", "")).upper() in wanted


def signed_headers(auth_key: str | None, now: float) -> dict[str, str]:
    if not auth_key:
        return {}
    timestamp = str(int(now))
    return {"ALI-LIVE-TIMESTAMP": timestamp,
            "ALI-LIVE-SIGNATURE": hashlib.md5(f"{timestamp}|{auth_key}".encode()).hexdigest()}


class Receiver:
    """With the receiver, the cloud calls us; a user's spec.notify.url still gets its events:
    relayed as received, signed with the user's own key, resent once like the cloud does."""

    def __init__(self, recorder: Recorder, auth_key: str, namespaces: list[str],
                 clock: Callable[[], float] = time.time):
        self.recorder, self.auth_key, self.namespaces, self.clock = recorder, auth_key, namespaces, clock
        self._relays: set[asyncio.Task] = set()
        self._http: aiohttp.ClientSession | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/callbacks/{namespace}/{name}/{uid}/{attempt:[0-9]+}", self.handle)
        app.router.add_get("/healthz", lambda _: web.json_response({"ok": True}))
        app.router.add_get("/metrics", metrics.metrics_response)
        app.on_cleanup.append(self._close)
        return app

    async def _close(self, _: web.Application) -> None:
        await asyncio.gather(*self._relays, return_exceptions=True)
        if self._http:
            await self._http.close()

    async def handle(self, request: web.Request) -> web.Response:
        if not signature_ok(request.headers, self.auth_key, self.clock()):  # names case-insensitive
            metrics.CALLBACKS.labels(event="unknown", outcome="rejected").inc()
            return web.json_response({"Code": 403, "Msg": "bad or stale signature"}, status=403)
        try:
            body = await request.json()
            callback = Callback.parse(body)
        except (ValueError, KeyError):
            metrics.CALLBACKS.labels(event="unknown", outcome="rejected").inc()
            return web.json_response({"Code": 400, "Msg": "malformed callback"}, status=400)
        m = request.match_info
        try:
            obj, action = await self.process(m["namespace"], m["name"], m["uid"], int(m["attempt"]), callback)
        except Exception:  # a 5xx makes the cloud send it once more
            log.exception("callback %s for %s/%s not processed", callback.event_type, m["namespace"], m["name"])
            metrics.CALLBACKS.labels(event=callback.event_type, outcome="error").inc()
            return web.json_response({"Code": 500, "Msg": "retry"}, status=500)
        metrics.CALLBACKS.labels(event=callback.event_type, outcome="ok").inc()
        # The user hears about their own resource's tasks only: not a namesake's, not a stray just stopped.
        if (obj is not None and obj["metadata"]["uid"] == m["uid"] and not isinstance(action, reconcile.Reap)
                and forwarded(obj["spec"], callback)):
            relay = asyncio.create_task(self._relay(obj, body))  # never delay our answer to the cloud
            self._relays.add(relay)
            relay.add_done_callback(self._relays.discard)
        return web.json_response(SUCCESS)

    async def _relay(self, obj: dict, body: dict) -> None:
        url = obj["spec"]["notify"]["url"]
        try:
            key = await self.recorder.user_notify_key(obj)
            if self._http is None:
                self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
            for _ in range(2):
                try:
                    async with self._http.post(url, json=body, headers=signed_headers(key, self.clock()),
                                               allow_redirects=False) as resp:
                        if resp.status < 500:
                            return
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    pass
            log.warning("could not relay %s to %s", body.get("eventType"), url)
        except Exception:
            log.warning("could not relay %s to %s", body.get("eventType"), url, exc_info=True)

    async def process(self, namespace: str, name: str, uid: str, attempt: int,
                      callback: Callback) -> tuple[dict | None, reconcile.CallbackAction]:
        """Act on one callback; returns the resource it names (if it still exists) and the decision."""
        try:
            obj = await self.recorder.kube.get_recording(namespace, name)
        except Gone:
            obj = None
        same = obj is not None and obj["metadata"]["uid"] == uid
        # Only a callback for this very resource must match its channel; one for a deleted
        # namesake (another uid) is a stray to reap, whatever channel it names.
        if same and (obj["spec"]["appId"], obj["spec"]["channelId"]) != (callback.app_id, callback.channel_id):
            log.warning("callback for %s/%s names another channel; ignored", namespace, name)
            return obj, reconcile.Ignore("another channel")
        status = status_of(obj) if obj else None
        action = reconcile.on_callback(status, obj["metadata"]["uid"] if obj else None, uid, attempt,
                                       callback.task_id, callback.event_type)
        if isinstance(action, (reconcile.Reap, reconcile.Adopt)) and await self._owned_elsewhere(callback.task_id):
            # The signature does not cover the body: never stop or take another resource's task
            # on a callback's word.
            log.warning("callback for %s/%s names task %s, the current task of another resource; ignored",
                        namespace, name, callback.task_id)
            return obj, reconcile.Ignore("another resource's task")
        log.info("%s/%s attempt %s: %s %s -> %s", namespace, name, attempt, callback.event_type, callback.task_id,
                 action)
        match action:
            case reconcile.Reap(task_id) if same:
                await self.recorder.reap(obj, task_id)
            case reconcile.Reap(task_id):
                # Its resource is gone: a namesake's credentials are the best guess, else the
                # operator's own. Nothing to count it on.
                stand_in = {"metadata": {"namespace": namespace, "name": name}, "spec": obj["spec"] if obj else {}}
                await self.recorder.reap(stand_in, task_id)
            case reconcile.Adopt(task_id):
                await self.recorder.adopt(obj, attempt, task_id)
            case reconcile.Observe():
                await self.recorder.observe(obj, callback.stop_reason)
        return obj, action

    async def _owned_elsewhere(self, task_id: str) -> bool:
        return bool(await self.recorder.kube.list_recordings(self.namespaces, task_id=task_id))
