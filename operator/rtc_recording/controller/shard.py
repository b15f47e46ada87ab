"""This replica's share of the RtcRecordings when sharded (docs/sharding.md): what it may act on, and
the handover of what the sharder moves away.

Its watch shows only the objects labelled for it. Every way the operator acts on an object (the
dispatcher's handlers, the deadlines, the waiting room, the poller's Describes, evidence) passes
`act`: it acts only on an object in its index, and counts what is under way per object. An object
the sharder moves carries the drain label: the shard drops it from its index at once (nothing new
starts), waits until nothing is under way for it, and writes the new owner itself, in one
compare-and-swap with its own Events mark. The new owner acts only once its label says so, and starts
from status and evidence like a replica after a restart. A Start whose answer was lost is in status
(`status.attempt`, docs/exactly-once.md): nothing unknown is kept in memory that a handover would lose.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from prometheus_client import Counter as Count
from prometheus_client import Gauge

from rtc_recording.api.names import DRAIN_LABEL, EVENTS_MARK, SHARD_LABEL, recording_path
from rtc_recording.controller.index import Index, Key
from rtc_recording.controller.membership import Membership
from rtc_recording.kube import errors as k8s
from rtc_recording.kube.client import Kube

log = logging.getLogger(__name__)
T = TypeVar("T")
IDLE_POLL_SECONDS = 0.02
INFO = Gauge("rtcrec_shard_info", "1, labelled with this shard's name (sharded operators only).", ["shard"])
HANDOVERS = Count("rtcrec_shard_handovers", "RtcRecordings this shard let go of and handed to the next owner.")


class Shard:
    def __init__(self, name: str, kube: Kube, index: Index, mark: Callable[[dict], str], lease_duration: float):
        self.name, self.kube, self.index, self.mark = name, kube, index, mark
        self.selector = f"{SHARD_LABEL}={name}"
        self.membership = Membership(lease_duration)  # the ring's Leases, for whenever this shard is the sharder
        self.busy: Counter[Key] = Counter()
        self._handing: dict[Key, asyncio.Task] = {}
        self._handed: set[Key] = set()  # handed over, until the watch says it left
        INFO.labels(shard=name).set(1)

    def leaving(self, obj: dict) -> bool:
        """Is this object not (or no longer) this shard's to act on?"""
        labels = obj["metadata"].get("labels") or {}
        return labels.get(SHARD_LABEL) != self.name or bool(labels.get(DRAIN_LABEL))

    def draining(self, obj: dict) -> bool:
        """Is this shard's object asked to move (the sharder's drain label)?"""
        labels = obj["metadata"].get("labels") or {}
        return labels.get(SHARD_LABEL) == self.name and bool(labels.get(DRAIN_LABEL))

    def left(self, obj: dict) -> bool:
        """A DELETED watch event: did the object leave this shard's label selector rather than go? The
        event carries the object as it last matched, so its labels cannot tell. An object that had a task
        went through deletion (our finalizer): one without a deletionTimestamp only left (or never had a
        task to remember), as did one this shard handed over."""
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
        if key in self._handed:
            self._handed.discard(key)
            return True
        return not obj["metadata"].get("deletionTimestamp")

    async def act(self, key: Key, action: Awaitable[T], anyway: bool = False) -> T | None:
        """Run `action` for the object `key` if it is this shard's (`anyway`: the caller knows it is,
        e.g. evidence of an object deleted while it was), counted until done. Otherwise it is dropped."""
        if not anyway and key not in self.index.objects:
            if asyncio.iscoroutine(action):
                action.close()
            return None
        self.busy[key] += 1
        try:
            return await action
        finally:
            self.busy[key] -= 1
            if not self.busy[key]:
                del self.busy[key]

    def fenced(self, act: Callable[..., Awaitable[Any]], key_of: Callable[..., Key]) -> Callable[..., Awaitable[Any]]:
        async def fenced_act(*args: Any) -> Any:
            return await self.act(key_of(*args), act(*args))

        return fenced_act

    def hand_over(self, obj: dict) -> None:
        """The sharder moves this object: let it go (the caller dropped it from the index already)."""
        meta = obj["metadata"]
        key = (meta["namespace"], meta["name"])
        if key not in self._handing:
            task = asyncio.create_task(self._hand_over(key, obj))
            self._handing[key] = task
            task.add_done_callback(lambda _: self._handing.pop(key, None))

    async def _hand_over(self, key: Key, obj: dict) -> None:
        while self.busy.get(key):
            await asyncio.sleep(IDLE_POLL_SECONDS)
        path = recording_path(*key)
        while True:  # until handed over, or no longer ours to hand over: the sharder does not ask twice
            version, target = obj["metadata"]["resourceVersion"], obj["metadata"]["labels"][DRAIN_LABEL]
            try:
                await self.kube.patch_labels(
                    path, {SHARD_LABEL: target, DRAIN_LABEL: None}, version, {EVENTS_MARK: self.mark(obj)}
                )
                self._handed.add(key)
                HANDOVERS.inc()
                log.info("%s/%s: handed over to shard %s", *key, target)
                return
            except k8s.NotFound:
                return
            except k8s.Conflict:  # written meanwhile (by what was under way, or the sharder): look again
                try:
                    obj = await self.kube.get_recording(*key)
                except k8s.NotFound:
                    return
                if not self.draining(obj):
                    return  # moved already, or kept here after all: its watch event says so
            except k8s.KubeError as exc:
                log.warning("%s/%s: could not hand over to shard %s: %s; trying again", *key, target, exc)
                await asyncio.sleep(1.0)

    async def close(self) -> None:
        for task in list(self._handing.values()):
            task.cancel()
        await asyncio.gather(*self._handing.values(), return_exceptions=True)
