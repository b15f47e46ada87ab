"""The composition root: every part of the running operator, built once at start-up, closed at the end.

The Kopf wiring (handlers.py) reaches everything through one typed `Operator` instead of Kopf's
untyped memo; `handle` is what the dispatcher (dispatch.py) runs for an object that needs action.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from rtc_recording.api import timestamps
from rtc_recording.api.evidence import Evidence
from rtc_recording.api.names import SHARD_LABEL, STOP_FINALIZER, recording_path
from rtc_recording.api.recording import SETTLED, TERMINAL
from rtc_recording.cloud.accounts import CloudClients
from rtc_recording.controller import evidence, health, relay, replays, sealing, ssrf
from rtc_recording.controller.classstatus import ClassStatus
from rtc_recording.controller.deadlines import Deadlines
from rtc_recording.controller.dispatch import Dispatcher
from rtc_recording.controller.executor import Executor, RetryLater
from rtc_recording.controller.index import Index, Key
from rtc_recording.controller.pins import Pins
from rtc_recording.controller.poller import Poller
from rtc_recording.controller.scheduler import Scheduler
from rtc_recording.controller.shard import Shard
from rtc_recording.controller.sharder import Sharder, lead
from rtc_recording.decide import ownership
from rtc_recording.kube import errors as k8s
from rtc_recording.kube.client import Kube
from rtc_recording.kube.reflector import Reflector
from rtc_recording.settings import Settings

log = logging.getLogger(__name__)
FINALIZER_TRIES = 5  # compare-and-swaps of the finalizer list before the dispatcher tries again later
UNCLAIMED_EVIDENCE_SECONDS = 30.0  # sharded: evidence of an object no shard has, acted on by the sharder's


@dataclass
class Operator:
    config: Settings
    kube: Kube
    index: Index
    clients: CloudClients
    executor: Executor
    pins: Pins
    poller: Poller
    deadlines: Deadlines
    health: health.Health
    scheduler: Scheduler
    class_status: ClassStatus
    dispatcher: Dispatcher
    try_again: Callable[[Key, str], Awaitable[Any]]  # the waiting room's (waiting.py)
    shard: Shard | None = None  # sharded (docs/sharding.md); None: the one active replica (docs/ha.md)
    sharder: Sharder | None = None  # while this shard holds the release's Lease
    refused: dict[str, str | None] = field(default_factory=dict)  # uid -> the unproven task id, said once
    tasks: list[asyncio.Task] = field(default_factory=list)
    _background: set[asyncio.Task] = field(default_factory=set)

    @classmethod
    async def build(cls, config: Settings, kube: Kube, previous_mark: str = "") -> Operator:
        """`previous_mark`: the Lease's EVENTS_MARK as this replica took over (leader.py)."""
        key = config.ownership_secret()
        if key is None:  # `rtcrec run` refuses to start without one (cli.py); this is for other entry points
            raise RuntimeError("no ownership key: set RTCREC_OWNERSHIP_KEY (or RTCREC_CALLBACK_AUTH_KEY)")
        index = Index(ownership.Sealer(key))
        await sealing.migrate(kube, index.sealer, config.namespaces, config.evidence_namespace)
        clients = CloudClients(config, kube)
        executor = Executor(kube, clients, config, index, previous_mark=previous_mark)
        # Settings made sure a shard has a name (its pod's).
        shard = (
            Shard(str(config.pod_name), kube, index, executor.writes.handover_mark, config.lease_duration_seconds)
            if config.sharding
            else None
        )

        def fenced(act: Callable[..., Awaitable[Any]], key_of: Callable[..., Key]) -> Callable[..., Awaitable[Any]]:
            return shard.fenced(act, key_of) if shard is not None else act

        interval = config.poll_interval_seconds * (config.poll_factor_with_callbacks if config.callback_url else 1)
        poller = Poller(fenced(executor.describe, lambda tracked: tracked.key), interval, config.poll_calls_per_second)
        dispatcher = Dispatcher(lambda obj, retry: op.handle(obj, retry), timestamps.now(), previous_mark)
        scheduler = Scheduler(kube, executor.ctx.classes)
        op = cls(  # the dispatcher runs op.handle
            config=config,
            kube=kube,
            index=index,
            clients=clients,
            executor=executor,
            pins=executor.ctx.pins,
            poller=poller,
            deadlines=Deadlines(fenced(executor.on_due, lambda key: key)),
            health=health.Health(
                kube,
                index,
                poller,
                dispatcher,
                clients.budgets,
                config.stuck_seconds,
                config.namespaces,
                selector=shard.selector if shard else None,
            ),
            scheduler=scheduler,
            class_status=ClassStatus(kube, executor.ctx.classes, index, scheduler),
            dispatcher=dispatcher,
            try_again=fenced(executor.try_again, lambda key, uid: key),
            shard=shard,
        )
        if shard is not None:
            scheduler.run_labels = {SHARD_LABEL: shard.name}
        return op

    def start(self) -> None:
        """The operator's loops: its watch of the RtcRecordings, the poller, the schedules, the deadlines..."""
        config = self.config
        # Our own watch, not Kopf's: what changes while 10 000 objects are listed comes at once (reflector.py).
        paths = [recording_path(ns) for ns in config.namespaces] or [recording_path(None)]
        mine = self.shard.selector if self.shard else None  # a shard lists and watches its share
        # Pages of 100: the peak of a 10 000-object start-up is the page being parsed (whole objects).
        watches = [
            Reflector(self.kube, path, self.saw, mine, page_size=100, watch_while_listing=True) for path in paths
        ]
        chores = [self.class_status.run, self.executor.ctx.deletions.sweep.run]  # cluster-wide: one replica's
        self.tasks = [
            *(asyncio.create_task(watch.run(), name="watch") for watch in watches),
            asyncio.create_task(self.poller.run(), name="poller"),
            asyncio.create_task(self.scheduler.run(), name="schedules"),
            asyncio.create_task(self.clients.probe(), name="probe"),
            asyncio.create_task(self.deadlines.run(), name="deadlines"),
            asyncio.create_task(self.executor.ctx.waiting.run(self.try_again, self.index.account), name="waiting"),
            asyncio.create_task(health.serve(self.health, config.metrics_port), name="metrics"),
        ]
        if config.callback_url:
            worker = evidence.Worker(
                self.kube, config.evidence_namespace, self._act_on, mine=self._evidence_mine if self.shard else None
            )
            self.executor.ctx.evidence_waiting = worker.waiting
            self.tasks.append(asyncio.create_task(worker.run(), name="evidence"))
            guard = ssrf.Guard(config.relay_allowed_hosts, config.relay_denied_ranges, config.relay_only_allowed_hosts)
            relayer = relay.Relayer(self.kube, self.clients.secrets, guard, config.evidence_namespace)
            chores += [relayer.run, replays.sweep(self.kube, config.evidence_namespace).run]
        if self.shard is None:
            self.tasks += [asyncio.create_task(chore()) for chore in chores]
        else:
            self.executor.ctx.classes.watch()  # every shard's Starts need the classes (the chores start it otherwise)
            self.tasks.append(
                asyncio.create_task(
                    lead(config, self.kube, self.shard, self.executor.ctx.classes, chores, self._became_sharder),
                    name="sharder",
                )
            )
            members = self.shard.membership.watch(
                self.kube, config.lease_name, config.lease_namespace, config.lease_retry_period_seconds
            )
            self.tasks.append(asyncio.create_task(members, name="members"))

    def _became_sharder(self, sharder: Sharder | None) -> None:
        self.sharder = sharder
        if sharder is not None:
            self.class_status.uses = sharder.classes_in_use

    def _evidence_mine(self, item: Evidence, age: float) -> bool:
        """Sharded: evidence is for the shard that has its object, or had it when it was deleted; evidence of an
        object no shard has (deleted before any shard saw it) is, after a while, for the sharder's shard."""
        key = (item.namespace, item.name)
        if key in self.index.objects or item.uid in self.index.tombstones:
            return True
        sharder = self.sharder
        return sharder is not None and key not in sharder.objects["recordings"] and age > UNCLAIMED_EVIDENCE_SECONDS

    async def _act_on(self, namespace: str, name: str, uid: str, attempt: int, task_id: str, event: str) -> None:
        action = self.executor.act_on(namespace, name, uid, attempt, task_id, event)
        if self.shard is None:
            await action
        else:  # the worker decided it is ours (`_evidence_mine`); counted, so that a handover waits for it
            await self.shard.act((namespace, name), action, anyway=True)

    def saw(self, type_: str, obj: dict) -> None:
        """Every change of an RtcRecording feeds the index, the dispatcher, the poller and the deadlines.
        No readiness gate: each object is decided as it comes (docs/scale.md)."""
        meta = obj["metadata"]
        key = (meta["namespace"], meta["name"])
        if self.shard is not None and (self.shard.left(obj) if type_ == "DELETED" else self.shard.leaving(obj)):
            self._let_go(key, obj, moving=type_ != "DELETED")
            return
        tracked = self.index.saw(type_, obj)
        self.dispatcher.saw(type_, obj)
        self.scheduler.poke(obj)  # a schedule's run: its schedule decides again
        if tracked is None or tracked.task_id or tracked.phase in SETTLED:
            self.executor.ctx.waiting.forget(meta["uid"])  # nothing left to start: no Start of it waits
        if tracked is None:
            self.poller.forget(key)
            self.deadlines.set(key, None)
            self.refused.pop(meta["uid"], None)
        elif tracked.task_id and not self.index.proven(tracked):
            self.poller.forget(key)  # not ours to describe (decide/ownership.py); said once, here
            self.deadlines.track(tracked)  # a TTL still deletes it; a halt refuses to stop that task
            if not tracked.deleting and self.refused.get(tracked.uid) != tracked.task_id:
                self.refused[tracked.uid] = tracked.task_id
                self.background(self.executor.refuse_unproven(obj))
        else:
            self.poller.track(tracked)
            self.deadlines.track(tracked)
        # A credentials Secret whose last unfinished recording finished or went is released (pins.py).
        if unused := self.pins.saw(meta["uid"], tracked, self.index.tombstones.get(meta["uid"])):
            self.background(self.pins.release(*unused))

    def _let_go(self, key: Key, obj: dict, moving: bool) -> None:
        """Sharded: moved away, or `moving` (the drain label): forgotten, not deleted; a move is handed over."""
        uid = obj["metadata"]["uid"]
        self.dispatcher.saw("DELETED", obj)
        self.index.forget(key)
        self.poller.forget(key)
        self.deadlines.set(key, None)
        self.executor.ctx.waiting.forget(uid)
        self.refused.pop(uid, None)
        self.pins.forget(uid)  # every user of its Secret moves with it: the next shard pins it
        if moving and self.shard is not None and self.shard.draining(obj):
            self.shard.hand_over(obj)

    async def handle(self, obj: dict, retry: int) -> None:
        """An object that needs action (dispatch.py): its deletion, or a reconcile."""
        if self.shard is not None:
            await self.shard.act(_key(obj), self._handle(obj, retry))
        else:
            await self._handle(obj, retry)

    async def _handle(self, obj: dict, retry: int) -> None:
        if obj["metadata"].get("deletionTimestamp"):
            await self._delete(obj, retry)
        else:
            await self._reconcile(obj, retry)

    async def _reconcile(self, obj: dict, retry: int) -> None:
        meta = obj["metadata"]
        if (obj.get("status") or {}).get("phase") not in TERMINAL:
            try:
                await self.pins.pin(obj)  # before any Start: the Stop will need these credentials (pins.py)
            except k8s.ApiError as exc:
                log.warning("could not mark the credentials Secret of %s/%s in use: %s", *_key(obj), exc)
        finalizers = meta.get("finalizers") or []
        if STOP_FINALIZER not in finalizers:  # before any Start: its task is stopped before the object goes
            try:
                obj = await self.kube.patch_finalizers(
                    recording_path(meta["namespace"], meta["name"]),
                    [*finalizers, STOP_FINALIZER],
                    meta["resourceVersion"],
                )
            except k8s.Conflict:
                raise RetryLater(0.2, "changed since it was read") from None
            except k8s.NotFound:
                return
        await self.executor.reconcile(obj, retry)

    async def _delete(self, obj: dict, retry: int) -> None:
        meta = obj["metadata"]
        await self.executor.delete(obj, retry)
        secret = ((obj.get("spec") or {}).get("credentialsSecretRef") or {}).get("name")
        await self.pins.release(meta["namespace"], secret, but=meta["uid"])
        path = recording_path(meta["namespace"], meta["name"])
        for _ in range(FINALIZER_TRIES):  # only ours goes: a merge patch of the list, compare-and-swap
            finalizers = meta.get("finalizers") or []
            if STOP_FINALIZER not in finalizers:
                return
            try:
                await self.kube.patch_finalizers(
                    path, [f for f in finalizers if f != STOP_FINALIZER], meta["resourceVersion"]
                )
                return
            except k8s.NotFound:
                return
            except k8s.Conflict:
                try:
                    fresh = await self.kube.get_recording(meta["namespace"], meta["name"])
                except k8s.NotFound:
                    return
                if fresh["metadata"]["uid"] != meta["uid"]:
                    return
                meta = fresh["metadata"]
        raise RetryLater(0.2, "the finalizer could not be removed: the object kept changing")

    async def close(self) -> None:
        await self.dispatcher.close()
        if self.shard is not None:
            await self.shard.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.clients.close()
        await self.kube.close()

    def background(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """A write that an event handler must not wait for (the next event would queue behind it)."""
        task = asyncio.create_task(_logged(coroutine))
        self._background.add(task)  # a task nobody holds may be collected mid-flight
        task.add_done_callback(self._background.discard)


def _key(obj: dict) -> tuple[str, str]:
    return obj["metadata"]["namespace"], obj["metadata"]["name"]


async def _logged(coroutine: Coroutine[Any, Any, None]) -> None:
    try:
        await coroutine
    except Exception as exc:
        log.warning(
            "a background step failed: %s; the next event tries again", exc, exc_info=not isinstance(exc, k8s.KubeError)
        )
