"""Relays: the user's own spec.notify.url still gets its events, sent by the operator.

The cloud calls one NotifyUrl per task, and with a receiver that is ours. The receiver, which
faces the internet and holds no Secret, writes each callback the user wants (`callbacks.forwarded`)
as a relay ConfigMap in the operator's namespace, next to the evidence. The operator, which
reads the user's notify key Secret (by consent, `secretcache.py`), posts it to spec.notify.url
signed with that key, through a connector that connects to public addresses only (`ssrf.py`),
tries once more like the cloud does, counts the outcome (`rtcrec_relays_total`), says why in
an Event when it could not deliver, and deletes the ConfigMap. So the receiver needs no access
to Secrets, and a relay waits out an operator restart instead of being lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable

import aiohttp

from rtc_recording import metrics
from rtc_recording.api.callback import callback_headers
from rtc_recording.api.names import RELAY_LABEL, segment
from rtc_recording.api.relay import Relay
from rtc_recording.cloud.credentials import CredentialsUnavailable
from rtc_recording.cloud.secrets import SecretCache
from rtc_recording.controller.ssrf import Guard, Refused
from rtc_recording.decide.classes import effective_notify
from rtc_recording.kube.client import Kube
from rtc_recording.kube.errors import NotFound
from rtc_recording.kube.events import EventRecorder
from rtc_recording.kube.reflector import Reflector

log = logging.getLogger(__name__)

TRIES = 2  # the cloud sends a callback once more when the first try fails
TIMEOUT_SECONDS = 5.0


class Relayer:
    """The operator's side: watches relay ConfigMaps, delivers each, deletes it."""

    def __init__(
        self,
        kube: Kube,
        secrets: SecretCache,
        guard: Guard,
        namespace: str,
        workers: int = 4,
        clock: Callable[[], float] = time.time,
    ):
        self.kube, self.secrets, self.guard, self.namespace = kube, secrets, guard, namespace
        self.events = EventRecorder(kube)
        self.workers, self.clock = workers, clock
        self.collection = f"/api/v1/namespaces/{segment(namespace)}/configmaps"
        self.reflector = Reflector(kube, self.collection, self._on_change, label_selector=RELAY_LABEL)
        self._queue: asyncio.Queue[tuple[str, Relay | None]] = asyncio.Queue()
        self._queued: set[str] = set()
        self._http: aiohttp.ClientSession | None = None

    def _on_change(self, type_: str, configmap: dict) -> None:
        name = configmap["metadata"]["name"]
        if type_ == "DELETED" or name in self._queued:
            return
        try:
            item: Relay | None = Relay.from_configmap(configmap)
        except ValueError:
            log.warning("ConfigMap %s/%s is not a relay; deleting it", self.namespace, name)
            item = None
        self._queued.add(name)
        self._queue.put_nowait((name, item))

    async def run(self) -> None:
        try:
            await asyncio.gather(self.reflector.run(), *(self._work() for _ in range(self.workers)))
        finally:
            if self._http is not None:
                await self._http.close()

    async def _work(self) -> None:
        while True:
            name, item = await self._queue.get()
            try:
                if item is not None:
                    outcome = await self.deliver(item)
                    metrics.RELAYS.labels(outcome=outcome).inc()
                await self.kube.delete(f"{self.collection}/{segment(name)}")
                self._queued.discard(name)
            except asyncio.CancelledError:
                raise
            except Exception:  # the apiserver: kept, tried again
                log.warning("relay %s: trying again", name, exc_info=True)
                asyncio.get_running_loop().call_later(2.0, self._queue.put_nowait, (name, item))

    async def deliver(self, item: Relay) -> str:
        try:
            obj = await self.kube.get_recording(item.namespace, item.name)
        except NotFound:
            return "gone"
        if obj["metadata"]["uid"] != item.uid:
            return "gone"  # a namesake: the user of that callback is gone
        notify = effective_notify(obj)  # the resource's own notify, else its pinned class's
        body = json.loads(item.body)
        what = str(body.get("eventType", "a callback"))[:64]
        try:
            url = self.guard.check_url(notify.get("url") or "")
            key = await self.secrets.notify_key(obj)
        except (Refused, CredentialsUnavailable) as exc:
            return await self._failed(obj, "refused", f"{what} not relayed to spec.notify.url: {exc}")
        if self._http is None:
            self._http = self.guard.session(TIMEOUT_SECONDS)
        why = "no answer"
        for _ in range(TRIES):
            try:
                async with self._http.post(
                    url, json=body, headers=callback_headers(key, self.clock()), allow_redirects=False
                ) as resp:
                    if resp.status < 400:
                        return "delivered"
                    why = f"HTTP {resp.status}"
                    if resp.status < 500:
                        return await self._failed(obj, "rejected", f"{what}: spec.notify.url answered {why}")
            except Refused as exc:
                return await self._failed(obj, "refused", f"{what} not relayed to spec.notify.url: {exc}")
            except (TimeoutError, aiohttp.ClientError) as exc:
                why = type(exc).__name__
        return await self._failed(obj, "failed", f"{what} could not be relayed to spec.notify.url ({why}, twice)")

    async def _failed(self, obj: dict, outcome: str, message: str) -> str:
        # one Event per resource and outcome, counted
        await self.events.record(obj, "Warning", "RelayFailed", message, key=f"relay-{outcome}", repeat=True)
        return outcome
