"""Evidence: what a verified callback said that can change something, kept until the operator acts.

The receiver makes no cloud call and holds no cloud credentials. When a callback can change
something (it names the task of a Start whose answer was lost, a task that is not its
resource's current one, or the end of the current task) the receiver writes it down as a
ConfigMap in the operator's own namespace, where tenants cannot write, and answers 200.
The operator watches those ConfigMaps, confirms within its one quota budget (Describe,
Stop), adopts, reaps or completes, and deletes the ConfigMap. So evidence outlives a cloud
brown-out, an operator restart and a receiver restart alike (docs/exactly-once.md).

One ConfigMap per (namespace, name, resource uid, attempt, task, alive|ended): the cloud's three start
callbacks and its resends of one task collapse into one object (409 on create).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from rtc_recording import metrics
from rtc_recording.api.evidence import Evidence, collection
from rtc_recording.api.names import EVIDENCE_LABEL, segment
from rtc_recording.kube.client import Kube
from rtc_recording.kube.queue import WorkQueue
from rtc_recording.kube.reflector import Reflector

log = logging.getLogger(__name__)

MAX_RETRY_SECONDS = 60.0
NOT_MINE_SECONDS = 5.0  # sharded: evidence of another shard's object is looked at again this often


class Worker:
    """The operator's side: watches the evidence ConfigMaps and acts on each through `act`,
    deleting it once done. A failure (cloud down, apiserver blip) keeps it for a later try, and
    one piece of evidence is never acted on twice at once (a relist delivers it again)."""

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        act: Callable[..., Awaitable[None]],
        workers: int = 4,
        retry_seconds: float = 2.0,
        mine: Callable[[Evidence, float], bool] | None = None,
    ):
        """`mine(evidence, seconds since first seen)`: sharded, is it this shard's to act on (operator.py)?"""
        self.kube, self.namespace, self.act, self.workers, self.mine = kube, namespace, act, workers, mine
        self.first_seen: dict[str, float] = {}
        self.reflector = Reflector(kube, collection(namespace), self._on_change, label_selector=EVIDENCE_LABEL)
        self.items: dict[str, Evidence | None] = {}  # None: not evidence, deleted unread
        self.queue: WorkQueue[str] = WorkQueue("evidence", retry_seconds, MAX_RETRY_SECONDS)

    def waiting(self, uid: str, attempt: int) -> bool:
        """Is there evidence of a live task for this Start attempt that is not confirmed yet?"""
        return any(
            e is not None and e.uid == uid and e.attempt == attempt and e.kind == "alive" for e in self.items.values()
        )

    def _on_change(self, type_: str, configmap: dict) -> None:
        name = configmap["metadata"]["name"]
        if type_ == "DELETED":
            self.items.pop(name, None)
            self.first_seen.pop(name, None)
        else:
            self.first_seen.setdefault(name, time.monotonic())
            try:
                self.items[name] = Evidence.from_configmap(configmap)
            except ValueError:
                log.warning("ConfigMap %s/%s is not evidence; deleting it", self.namespace, name)
                self.items[name] = None
            self.queue.add(name)
        metrics.EVIDENCE_PENDING.set(len(self.items))

    async def run(self) -> None:
        await asyncio.gather(self.reflector.run(), self.queue.run(self.workers, self._handle))

    async def _handle(self, name: str) -> None:
        if name not in self.items:
            return  # done already, or deleted meanwhile
        if (item := self.items[name]) is not None:
            if self.mine is not None and not self.mine(item, time.monotonic() - self.first_seen[name]):
                asyncio.get_running_loop().call_later(NOT_MINE_SECONDS, self.queue.add, name)
                return
            await self.act(item.namespace, item.name, item.uid, item.attempt, item.task_id, item.event)
        await self.kube.delete(f"{collection(self.namespace)}/{segment(name)}")
        self.items.pop(name, None)
        self.first_seen.pop(name, None)
        metrics.EVIDENCE_PENDING.set(len(self.items))
