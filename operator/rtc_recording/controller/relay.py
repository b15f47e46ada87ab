"""Relays: the user's own spec.notify.url still gets its events, sent by the operator.

The cloud calls one NotifyUrl per task, and with a receiver that is ours. The receiver, which
faces the internet and holds no Secret, writes each callback the user wants (`callbacks.forwarded`)
as a relay ConfigMap in the operator's namespace, next to the evidence. The operator, which
reads the user's notify key Secret (by consent, `cloud/secrets.py`), posts it to spec.notify.url
signed with that key, through a connector that connects to public addresses only (`ssrf.py`),
tries once more like the cloud does, counts the outcome (`rtcrec_relays_total`), says why in
an Event when it could not deliver, and deletes the ConfigMap. So the receiver needs no access
to Secrets, and a relay waits out an operator restart instead of being lost. A task's end and a
file's upload wait until the operator's own Describe confirms them (decide/relays.py): looked at
again after 5 s, doubling up to 5 minutes, and dropped unsent (`unconfirmed`) after 30 minutes.
Each namespace has its own queue and worker, so one tenant's slow or hanging URL delays its own
relays only, and at most `MAX_PENDING_PER_RESOURCE` and `MAX_PENDING_PER_NAMESPACE` relays wait:
beyond, a relay is deleted unsent and counted (`rtcrec_relays_dropped_total`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Callable

import aiohttp

from rtc_recording import metrics
from rtc_recording.api.callback import callback_headers
from rtc_recording.api.names import RELAY_LABEL, segment
from rtc_recording.api.relay import Relay
from rtc_recording.cloud.credentials import CredentialsUnavailable
from rtc_recording.cloud.secrets import SecretCache
from rtc_recording.controller.ssrf import Guard, Refused
from rtc_recording.decide.backoff import backoff
from rtc_recording.decide.classes import effective_notify
from rtc_recording.decide.relays import confirmed
from rtc_recording.kube.client import Kube
from rtc_recording.kube.errors import NotFound
from rtc_recording.kube.events import EventRecorder
from rtc_recording.kube.queue import WorkQueue
from rtc_recording.kube.reflector import Reflector

log = logging.getLogger(__name__)

TRIES = 2  # the cloud sends a callback once more when the first try fails
TIMEOUT_SECONDS = 5.0
RETRY_SECONDS = 2.0  # an apiserver blip while deleting a delivered relay
MAX_RETRY_SECONDS = 60.0
CONFIRM_SECONDS = 1800.0  # the poller visits each task within this even at 10 000 tasks
CONFIRM_RECHECK_SECONDS = (5.0, 300.0)  # first look again, and the longest wait between looks
MAX_PENDING_PER_RESOURCE = 50
MAX_PENDING_PER_NAMESPACE = 500
WAIT = "waiting"  # not confirmed yet: looked at again later


class Relayer:
    """The operator's side: watches relay ConfigMaps, delivers each, deletes it."""

    def __init__(
        self,
        kube: Kube,
        secrets: SecretCache,
        guard: Guard,
        namespace: str,
        clock: Callable[[], float] = time.time,
    ):
        self.kube, self.secrets, self.guard, self.namespace = kube, secrets, guard, namespace
        self.events = EventRecorder(kube)
        self.clock = clock
        self.collection = f"/api/v1/namespaces/{segment(namespace)}/configmaps"
        self.reflector = Reflector(kube, self.collection, self._on_change, label_selector=RELAY_LABEL)
        self.items: dict[str, Relay | None] = {}  # None: not a relay, deleted unsent
        self.queues: dict[str, WorkQueue[str]] = {}  # one per namespace, each with its own worker
        self._workers: list[asyncio.Task] = []
        self.pending: Counter[tuple[str, ...]] = Counter()  # relays waiting, by (namespace,) and (namespace, uid)
        self._http: aiohttp.ClientSession | None = None
        self._looks: dict[str, int] = {}  # relays waiting for confirmation: looks so far

    def queue(self, name: str) -> WorkQueue[str]:
        """The queue of the namespace the relay is for (one of its own for what is no relay)."""
        item = self.items.get(name)
        tenant = item.namespace if item is not None else ""
        if (queue := self.queues.get(tenant)) is None:
            queue = self.queues[tenant] = WorkQueue(f"relay {tenant}", RETRY_SECONDS, MAX_RETRY_SECONDS)
            self._workers.append(asyncio.get_running_loop().create_task(queue.run(1, self._handle)))
        return queue

    def _on_change(self, type_: str, configmap: dict) -> None:
        name = configmap["metadata"]["name"]
        if type_ == "DELETED":
            self._forget(name)
            self._looks.pop(name, None)
            return
        if name in self.items:
            return  # a relay's body never changes: delivered once
        try:
            item: Relay | None = Relay.from_configmap(configmap)
        except ValueError:
            log.warning("ConfigMap %s/%s is not a relay; deleting it", self.namespace, name)
            item = None
        if item is not None:
            over = self._over(item)
            if over:
                metrics.RELAYS_DROPPED.labels(reason=over).inc()
                item = None
            else:
                self.pending.update([(item.namespace,), (item.namespace, item.uid)])
        self.items[name] = item
        self.queue(name).add(name)

    def _over(self, item: Relay) -> str | None:
        if self.pending[(item.namespace, item.uid)] >= MAX_PENDING_PER_RESOURCE:
            return "resource"
        if self.pending[(item.namespace,)] >= MAX_PENDING_PER_NAMESPACE:
            return "namespace"
        return None

    def _forget(self, name: str) -> None:
        item = self.items.pop(name, None)
        if item is not None:
            self.pending.subtract([(item.namespace,), (item.namespace, item.uid)])
            for key in ((item.namespace,), (item.namespace, item.uid)):
                if self.pending[key] <= 0:
                    del self.pending[key]

    async def run(self) -> None:
        try:
            await self.reflector.run()
        finally:
            for worker in self._workers:
                worker.cancel()
            await asyncio.gather(*self._workers, return_exceptions=True)
            if self._http is not None:
                await self._http.close()

    async def _handle(self, name: str) -> None:
        if name not in self.items:
            return  # done already, or deleted meanwhile
        if (item := self.items[name]) is not None:
            outcome = await self.deliver(item)
            if outcome == WAIT:
                looks = self._looks[name] = self._looks.get(name, 0) + 1
                delay = backoff(looks - 1, *CONFIRM_RECHECK_SECONDS)
                asyncio.get_running_loop().call_later(delay, self.queue(name).add, name)
                return
            self._looks.pop(name, None)
            metrics.RELAYS.labels(outcome=outcome).inc()
            self._forget(name)
            self.items[name] = None  # delivered: a failed delete below must not send it again
        await self.kube.delete(f"{self.collection}/{segment(name)}")
        self.items.pop(name, None)

    async def deliver(self, item: Relay) -> str:
        try:
            obj = await self.kube.get_recording(item.namespace, item.name)
        except NotFound:
            return "gone"
        if obj["metadata"]["uid"] != item.uid:
            return "gone"  # a namesake: the user of that callback is gone
        notify = effective_notify(obj)  # the resource's own notify, else its pinned class's
        body = json.loads(item.body)
        if not confirmed(obj, body):
            return WAIT if self.clock() - item.received < CONFIRM_SECONDS else "unconfirmed"
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
