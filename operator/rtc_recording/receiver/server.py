"""The NotifyUrl receiver: checks the cloud's callbacks, writes down what matters, answers 200.

The operator starts every task with NotifyUrl = <callback_url>/callbacks/<ns>/<name>/<uid>/<attempt>,
so a callback says which resource *and which Start attempt* it belongs to, even when the
answer to that Start was lost. The receiver holds no cloud credentials and calls no cloud
API: the operator is the one process that spends the account's quota. A verified callback
that can change something (see `callbacks.on_callback`) becomes evidence (`controller/evidence.py`)
for the operator to confirm and act on; all others, nearly every callback, cost nothing
but a look at the receiver's own watch of the RtcRecordings.

It runs as its own process (`rtcrec receiver`, several replicas behind one Service) so
that callbacks still land while the operator restarts (docs/exactly-once.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import re
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from rtc_recording import metrics
from rtc_recording.api import evidence
from rtc_recording.api.callback import MAX_CLOCK_SKEW_S, path_key, signature_ok
from rtc_recording.api.relay import Relay, relayed_body
from rtc_recording.api.replay import Marker, digest_in
from rtc_recording.decide import callbacks
from rtc_recording.decide.classes import effective_notify
from rtc_recording.kube.client import Kube
from rtc_recording.kube.errors import Conflict, KubeError

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
READ_TIMEOUT_SECONDS = 10.0  # for the request line and headers, then again for the body
REPLAYS_KEPT = 200_000  # (timestamp, signature) pairs remembered: ~30 MB at most
SETTLE_SECONDS = 1.0  # a callback may outrun the status write of the Start it belongs to,
DEFER_SECONDS = 10.0  # and a busy apiserver's answer write later still (a third of the operator's grace, 30 s)
TOMBSTONES_KEPT = 20_000
RECORDED_KEPT = 4096  # names of evidence this replica wrote lately,
RECORDED_SECONDS = 10.0  # and for how long a name counts as written
SUCCESS = {"Code": 0, "Msg": "Success"}
RELAY_BURST, RELAYS_PER_SECOND = 20, 1.0  # relays written per path: a start's bursts, then uploads and slices
RATES_KEPT = 20_000  # paths whose rate is tracked, the least recent forgotten
EVENT_TYPES = frozenset(
    {
        "TaskCreated",
        "TaskStarting",
        "TaskRunning",
        "TaskRecovering",
        "TaskStopping",
        "TaskStopped",
        "RecordFileUploaded",
    }
)
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS1123_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class Replays:
    """Refuses a (timestamp, signature) pair seen before with another path, task or channel, and
    an event type seen with that pair before with another body.

    The vendor signs the timestamp only, so one captured header pair could carry any body for
    5 minutes. The path's own key (`path_key`) already ties a pair to one path; this ties it
    to the one task that path's callbacks name, and each event type to one body: the cloud
    sends Created, Starting and Running with one pair (they pass), and resends a callback as
    it was (it passes), but a forged TaskStopped or RecordFileUploaded beside them does not.
    Per process, in front of the replicas' shared store (`Receiver._claim`), which most resends
    then never reach. Bounded: a pair is kept until its timestamp is stale, at most `kept`."""

    def __init__(self, kept: int = REPLAYS_KEPT):
        self.kept = kept
        self._seen: OrderedDict[tuple[str, str], tuple[int, tuple, dict[str, str]]] = OrderedDict()

    def admit(self, headers: Mapping[str, str], what: tuple, event: str, digest: str, now: float) -> bool:
        key = pair(headers)
        while self._seen:  # forget what is stale anyway (insertion order is about timestamp order)
            oldest, (expires, _, _) = next(iter(self._seen.items()))
            if expires > now and len(self._seen) < self.kept:
                break
            del self._seen[oldest]
        seen = self._seen.get(key)
        if seen is None:
            self._seen[key] = (stale_from(key[0]), what, {event: digest})
            return True
        bodies = seen[2]
        return seen[1] == what and bodies.setdefault(event, digest) == digest

    def undo(self, headers: Mapping[str, str], event: str, digest: str) -> None:
        """Forget an admission the shared store refused (or could not check), so that a forged body
        that reached this replica first does not lock out the cloud's own resend here."""
        key = pair(headers)
        seen = self._seen.get(key)
        if seen is not None and seen[2].get(event) == digest:
            del seen[2][event]
            if not seen[2]:
                del self._seen[key]


def pair(headers: Mapping[str, str]) -> tuple[str, str]:
    return headers.get("ALI-LIVE-TIMESTAMP", ""), headers.get("ALI-LIVE-SIGNATURE", "").lower()


def stale_from(timestamp: str) -> int:
    """When a pair's signature stops passing `signature_ok`, and what remembers it is useless."""
    return int(timestamp) + MAX_CLOCK_SKEW_S + 1


def digest_of(body: dict) -> str:
    """What one event says: the body but its callbackTs (a resend may carry a newer one)."""
    said = {k: v for k, v in body.items() if k != "callbackTs"}
    return hashlib.sha256(json.dumps(said, sort_keys=True).encode()).hexdigest()


class Rates:
    """A token bucket per callback path: relays one path may write, so one captured pair, or
    many, cannot turn a burst of requests into a burst of relay ConfigMaps."""

    def __init__(self, kept: int = RATES_KEPT):
        self.kept = kept
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # path -> tokens, at

    def take(self, path: str, now: float) -> bool:
        tokens, at = self._buckets.pop(path, (float(RELAY_BURST), now))
        tokens = min(float(RELAY_BURST), tokens + (now - at) * RELAYS_PER_SECOND)
        self._buckets[path] = (tokens - 1, now) if tokens >= 1 else (tokens, now)
        while len(self._buckets) > self.kept:
            self._buckets.popitem(last=False)
        return tokens >= 1


def path_ok(namespace: str, name: str, uid: str) -> bool:
    return bool(_DNS1123_LABEL.fullmatch(namespace) and _DNS1123_NAME.fullmatch(name) and _UUID.fullmatch(uid))


@dataclass(frozen=True)
class Callback:
    app_id: str
    channel_id: str
    task_id: str
    event_type: str
    payload: dict[str, Any]

    @classmethod
    def parse(cls, body: Any) -> Callback:
        if not isinstance(body, dict):
            raise ValueError("a callback is a JSON object")
        payload = body.get("payload") or {}
        if isinstance(payload, str):  # documented as a JSON string; some senders nest an object
            try:
                payload = json.loads(payload)
            except (ValueError, RecursionError):
                payload = {}
        keys = ("appId", "channelId", "taskId", "eventType")
        fields = [f for k in keys if isinstance(f := body.get(k), str) and 0 < len(f) <= 256]
        if len(fields) != len(keys):
            raise ValueError("appId, channelId, taskId and eventType must be short strings")
        app_id, channel_id, task_id, event_type = fields
        return cls(app_id, channel_id, task_id, event_type, payload=payload if isinstance(payload, dict) else {})


def forwarded(notify: dict, callback: Callback) -> bool:
    """Does the user's own NotifyUrl want this event? Task events always; uploads only in the
    formats they chose (the operator adds SLICE for itself)."""
    if not notify.get("url"):
        return False
    if callback.event_type != "RecordFileUploaded":
        return True
    wanted = {f.upper() for f in notify.get("fileUploadedFormats") or []}
    return str(callback.payload.get("format", "")).upper() in wanted


@dataclass(frozen=True, slots=True)
class Known:
    """What the receiver keeps of one RtcRecording."""

    view: callbacks.View
    app_id: str  # interned: one app's 10 000 recordings share the one string
    channel_id: str
    notify: dict | None  # spec.notify merged with the pinned class's (classes.effective_notify), for relays


class _Quiet(logging.Filter):
    """A request aiohttp cannot parse (a 70 KB request line, a bad header) is answered 400 by
    aiohttp and was logged with a traceback each time, unsigned: the internet's noise, one line each."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg, record.args = "malformed request refused (%s): %s", (exc.code, str(exc.message)[:120])
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info = record.exc_text = None
        return True


QUIET = _Quiet()


class _Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class Receiver:
    """Callbacks in, evidence out. The events a user's spec.notify.url wants are handed to the
    operator as relays (controller/relay.py): the receiver reads no Secret, and sends nothing anywhere."""

    def __init__(
        self,
        kube: Kube,
        auth_key: str,
        evidence_namespace: str,
        clock: Callable[[], float] = time.time,
        settle_seconds: float = SETTLE_SECONDS,
        read_timeout: float = READ_TIMEOUT_SECONDS,
        defer_seconds: float = DEFER_SECONDS,
    ):
        self.kube, self.auth_key, self.evidence_namespace = kube, auth_key, evidence_namespace
        self.clock, self.settle_seconds, self.read_timeout = clock, settle_seconds, read_timeout
        self.defer_seconds = defer_seconds
        self.replays = Replays()
        self.rates = Rates()
        self.known: dict[tuple[str, str], Known] = {}
        self.tombstones: OrderedDict[str, str | None] = OrderedDict()  # uid -> its last task (stopped with it)
        self.recorded: OrderedDict[str, float] = OrderedDict()
        self._changes: dict[tuple[str, str], tuple[asyncio.Event, int]] = {}  # key -> (event, callbacks waiting)
        self._deferred: set[asyncio.Task] = set()
        self.ready: Callable[[], bool] = lambda: True  # has the watch listed every resource once?

    # -- the watch ---------------------------------------------------------------------------
    def on_change(self, type_: str, obj: dict) -> None:
        meta = obj["metadata"]
        key = (sys.intern(meta["namespace"]), meta["name"])
        if type_ == "DELETED":
            gone = self.known.pop(key, None)
            if gone is not None:
                self.tombstones[gone.view.uid] = gone.view.task_id
                while len(self.tombstones) > TOMBSTONES_KEPT:
                    self.tombstones.popitem(last=False)
        else:
            spec = obj.get("spec") or {}
            self.known[key] = Known(
                callbacks.View.of(obj),
                sys.intern(spec.get("appId", "")),
                spec.get("channelId", ""),
                effective_notify(obj) or None,
            )
        if waiting := self._changes.pop(key, None):
            waiting[0].set()

    async def _changed(self, key: tuple[str, str], timeout: float) -> None:
        """Until the watch shows a change of `key`, or `timeout`; any number of callbacks may wait."""
        event, count = self._changes.get(key) or (asyncio.Event(), 0)
        self._changes[key] = (event, count + 1)
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass
        finally:
            current = self._changes.get(key)
            if current is not None and current[0] is event:
                if current[1] > 1:
                    self._changes[key] = (event, current[1] - 1)
                else:
                    del self._changes[key]

    # -- HTTP --------------------------------------------------------------------------------
    def app(self) -> web.Application:
        async def healthz(_: web.Request) -> web.Response:  # a handler is async (bare functions are deprecated)
            return web.json_response({"ok": self.ready()}, status=200 if self.ready() else 503)

        logging.getLogger("aiohttp.server").addFilter(QUIET)
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post("/callbacks/{namespace}/{name}/{uid}/{attempt:[0-9]{1,9}}", self.handle)
        app.router.add_get("/healthz", healthz)  # no /metrics: it has a port of its own (main.py)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        """Verify, decide, record, answer: a 5xx makes the cloud send the callback once more."""
        m = request.match_info
        try:
            callback, body = await self._verified(request)
        except _Refused as refused:
            metrics.CALLBACKS.labels(event="unknown", outcome="rejected").inc()
            return web.json_response({"Code": refused.status, "Msg": refused.message}, status=refused.status)
        if not self.ready():  # every resource would look deleted: let the cloud send it again
            return web.json_response({"Code": 503, "Msg": "starting"}, status=503)
        event = callback.event_type if callback.event_type in EVENT_TYPES else "other"
        key, uid, attempt = (m["namespace"], m["name"]), m["uid"], int(m["attempt"])
        digest = digest_of(body)
        try:
            action = await self.process(key, uid, attempt, callback, self.settle_seconds)
            relayed = self._relayed(key, uid, action, callback) and self._within_rate(request.path)
            deferred = isinstance(action, callbacks.Adopt) and not self._lost(key, attempt)
            if relayed or not (deferred or isinstance(action, callbacks.Ignore)):  # only what writes is checked
                await self._claim(request.headers, callback.event_type, digest)
            if deferred:
                self._defer(dict(request.headers), key, uid, attempt, callback, digest)
            elif not isinstance(action, callbacks.Ignore):
                await self._record(evidence.Evidence(*key, uid, attempt, callback.task_id, callback.event_type))
            if relayed:
                relay = Relay(key[0], key[1], uid, relayed_body(body, callback.payload), int(self.clock()))
                await self._create(relay.to_configmap(self.evidence_namespace))
        except _Refused as refused:
            self._refused(request.headers, callback.event_type, digest, event, refused)
            return web.json_response({"Code": refused.status, "Msg": refused.message}, status=refused.status)
        except Exception:
            log.exception("callback %s for %s/%s not recorded", event, *key)
            metrics.CALLBACKS.labels(event=event, outcome="error").inc()
            return web.json_response({"Code": 500, "Msg": "retry"}, status=500)
        outcome = "ignored" if isinstance(action, callbacks.Ignore) else "deferred" if deferred else "recorded"
        metrics.CALLBACKS.labels(event=event, outcome=outcome).inc()
        return web.json_response(SUCCESS)

    def _defer(
        self, headers: Mapping[str, str], key: tuple[str, str], uid: str, attempt: int, callback: Callback, digest: str
    ) -> None:
        """A start callback whose task status does not show yet is news only if the operator never
        writes it (its answer was lost): most often the operator is about to. Decided again at every
        change the watch shows for `defer_seconds` (a third of the operator's grace for a lost answer),
        and recorded only if it still names a task nobody wrote. Answered at once: a
        receiver that dies meanwhile loses it as it could lose any callback, and the task's next
        callback (an HLS slice, at most a slice duration later) is evidence again."""

        async def decide_later() -> None:
            try:
                action = await self.process(key, uid, attempt, callback, self.defer_seconds)
                if not isinstance(action, callbacks.Ignore):
                    await self._claim(headers, callback.event_type, digest)
                    await self._record(evidence.Evidence(*key, uid, attempt, callback.task_id, callback.event_type))
                metrics.CALLBACKS.labels(
                    event=callback.event_type, outcome="ignored" if isinstance(action, callbacks.Ignore) else "recorded"
                ).inc()
            except _Refused as refused:  # a replayed body, or no apiserver for its marker: said as handle says it
                self._refused(headers, callback.event_type, digest, callback.event_type, refused)
                log.warning("callback %s for %s/%s not recorded: %s", callback.event_type, *key, refused.message)
            except Exception:
                log.exception("callback %s for %s/%s not recorded", callback.event_type, *key)

        task = asyncio.create_task(decide_later())
        self._deferred.add(task)  # a task nobody holds may be collected mid-flight
        task.add_done_callback(self._deferred.discard)

    def _refused(self, headers: Mapping[str, str], event_type: str, digest: str, event: str, refused: _Refused) -> None:
        """A callback refused after its signature was admitted: its pair may be sent again, and it is counted."""
        self.replays.undo(headers, event_type, digest)
        metrics.CALLBACKS.labels(event=event, outcome="rejected" if refused.status < 500 else "error").inc()

    async def drain(self) -> None:
        """Until every deferred callback is decided (and recorded if it is news)."""
        while self._deferred:
            await asyncio.gather(*self._deferred, return_exceptions=True)

    async def _verified(self, request: web.Request) -> tuple[Callback, Any]:
        """The callback and its body, once its path, signature, body and freshness are checked."""
        m = request.match_info
        if not path_ok(m["namespace"], m["name"], m["uid"]):
            raise _Refused(400, "malformed callback")
        key_of_path = path_key(self.auth_key, m["namespace"], m["name"], m["uid"], int(m["attempt"]))
        if not signature_ok(request.headers, key_of_path, self.clock()):  # names case-insensitive
            raise _Refused(403, "bad or stale signature")
        try:
            raw = await asyncio.wait_for(request.read(), self.read_timeout)
        except TimeoutError:
            raise _Refused(408, "body too slow") from None
        except web.HTTPException:
            raw = b""  # too large: malformed
        try:
            body = json.loads(raw)
            callback = Callback.parse(body)
        except (ValueError, RecursionError):
            raise _Refused(400, "malformed callback") from None
        seen_with = (m["namespace"], m["name"], m["uid"], m["attempt"], callback.app_id, callback.channel_id)
        what, digest = (*seen_with, callback.task_id), digest_of(body)
        if not self.replays.admit(request.headers, what, callback.event_type, digest, self.clock()):
            log.warning(
                "callback for %s/%s refused: its signature was seen with another path, task or body",
                m["namespace"],
                m["name"],
            )
            raise _Refused(403, "replayed signature")
        return callback, body

    async def _claim(self, headers: Mapping[str, str], event: str, digest: str) -> None:
        """The replay check shared by the replicas (api/replay.py): the first to write for a (pair,
        event type) leaves a marker with its body's digest; another body is refused (403), the same
        one (the cloud's resend to another replica) passes. Without the apiserver nothing is written
        anyway: 503 and the cloud sends it again, rather than a pair admitted unchecked."""
        timestamp, signature = pair(headers)
        marker = Marker(timestamp, signature, event, digest, stale_from(timestamp))
        collection = evidence.collection(self.evidence_namespace)
        try:
            try:
                await self.kube.create(collection, marker.to_configmap(self.evidence_namespace))
                return
            except Conflict:
                admitted = digest_in(await self.kube.request("GET", f"{collection}/{marker.object_name()}"))
        except KubeError as exc:
            log.warning("replay marker %s not written or read: %s", marker.object_name(), exc)
            raise _Refused(503, "retry") from None
        if admitted != digest:
            log.warning("callback refused: another replica admitted its signature with another body")
            raise _Refused(403, "replayed signature")

    def _within_rate(self, path: str) -> bool:
        if self.rates.take(path, self.clock()):
            return True
        metrics.RELAYS_DROPPED.labels(reason="rate").inc()
        return False

    def _relayed(self, key: tuple[str, str], uid: str, action: object, callback: Callback) -> bool:
        """The user hears about their own resource's tasks only: not a namesake's, not a stray."""
        known = self.known.get(key)
        return bool(
            known is not None
            and known.view.uid == uid
            and not isinstance(action, callbacks.Reap)
            and known.notify
            and forwarded(known.notify, callback)
        )

    async def process(
        self, key: tuple[str, str], uid: str, attempt: int, callback: Callback, settle: float
    ) -> callbacks.CallbackAction:
        """Decide from the receiver's view (the caller records evidence unless there is nothing to do).

        The common race: the callback outran the status write of its Start's answer, or our
        watch lags behind the operator's writes (it may not even show the write-ahead yet). So
        an Adopt is decided again at every change of the resource the watch shows, for up to
        `settle` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settle
        while True:
            action = self._decide(key, uid, attempt, callback)
            if not isinstance(action, callbacks.Adopt) or loop.time() >= deadline or self._lost(key, attempt):
                break
            await self._changed(key, deadline - loop.time())
        log.info("%s/%s attempt %s: %s %s -> %s", *key, attempt, callback.event_type, callback.task_id, action)
        return action

    def _lost(self, key: tuple[str, str], attempt: int) -> bool:
        """The operator wrote that this attempt's answer was lost: a callback naming its task is news now."""
        known = self.known.get(key)
        return known is not None and known.view.lost and known.view.pending_attempt == attempt

    def _decide(self, key: tuple[str, str], uid: str, attempt: int, callback: Callback) -> callbacks.CallbackAction:
        known = self.known.get(key)
        channel = (callback.app_id, callback.channel_id)
        if known is not None and known.view.uid == uid and (known.app_id, known.channel_id) != channel:
            log.warning("callback for %s/%s names another channel; ignored", *key)
            return callbacks.Ignore("another channel")
        stopped = uid in self.tombstones and self.tombstones[uid] == callback.task_id
        return callbacks.on_callback(
            known.view if known else None, uid, attempt, callback.task_id, callback.event_type, known_stopped=stopped
        )

    async def _record(self, item: evidence.Evidence) -> None:
        """One POST per piece of evidence: the three start callbacks of a task (and the cloud's
        resends) name the same ConfigMap within seconds. A name seen again later is written again:
        the operator may have acted on it and deleted it, and this is news (a second recovery)."""
        name, now = item.object_name(), asyncio.get_running_loop().time()
        if now - self.recorded.get(name, -math.inf) < RECORDED_SECONDS:
            return
        self.recorded[name] = now
        self.recorded.move_to_end(name)
        while len(self.recorded) > RECORDED_KEPT:
            self.recorded.popitem(last=False)
        try:
            await self._create(item.to_configmap(self.evidence_namespace))
        except BaseException:
            self.recorded.pop(name, None)
            raise

    async def _create(self, configmap: dict) -> None:
        try:
            await self.kube.create(evidence.collection(self.evidence_namespace), configmap)
        except Conflict:
            pass  # the same one is already there (a resend, or another start callback)
