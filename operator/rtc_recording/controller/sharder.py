"""The sharder: in one shard at a time (the holder of the release's Lease), it labels every RtcRecording
and schedule with the shard of its account, and moves accounts as shards come and go (docs/sharding.md).

It keeps a few fields of every object (a watch of all of them, in pages), reads the shards' Leases
as every shard sees them (membership.py) and decides with decide/shards.py. Every write is a compare-and-swap on the
object's resourceVersion: a decision made on a stale view fails, and the watch brings the next one.
So two sharders at once (one that lost its Lease and has not noticed yet) are wasteful, not unsafe:
only a dead shard's objects are relabelled without their owner's handover.

An RtcRecording moves from a live shard by a handover (controller/shard.py): the sharder sets the
drain label, the owner stops acting on it and writes the new shard itself. A schedule moves at once:
its runs are named after their time, so a run both shards create is created once.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, replace
from typing import Any

from prometheus_client import Counter as Count
from prometheus_client import Gauge

from rtc_recording.api.names import (
    DRAIN_LABEL,
    EVENTS_MARK,
    SHARD_LABEL,
    recording_path,
    schedule_path,
)
from rtc_recording.api.recording import TERMINAL
from rtc_recording.controller import leader
from rtc_recording.controller.classresolver import ClassResolver
from rtc_recording.controller.dispatch import needs_handler
from rtc_recording.controller.membership import Membership
from rtc_recording.controller.shard import Shard
from rtc_recording.decide import shards
from rtc_recording.decide.classes import class_of
from rtc_recording.kube import errors as k8s
from rtc_recording.kube.client import Kube
from rtc_recording.kube.reflector import Reflector
from rtc_recording.settings import Settings

log = logging.getLogger(__name__)
Key = tuple[str, str]
WRITERS = 32  # label writes at once: as many as the dispatcher's handlers, the apiserver not swamped
NAMESPACE_LABELS_SECONDS = 30.0  # a default class's namespaceSelector reads the labels this old at most
MEMBERS = Gauge("rtcrec_shard_members", "Shards alive, as the sharder sees their Leases (in the sharder only).")
ACCOUNTS = Gauge("rtcrec_shard_accounts", "Accounts each shard is given (in the sharder only).", ["shard"])
RECORDINGS = Gauge(
    "rtcrec_shard_recordings", 'RtcRecordings labelled for each shard (shard="": not yet), in the sharder.', ["shard"]
)
MOVES = Count(
    "rtcrec_shard_moves", "Objects moved: drain (its live owner hands over), reassign (a dead one's).", ["how"]
)


@dataclass(slots=True)
class Seen:
    """What the sharder keeps of an object."""

    resource_version: str
    account: str
    shard: str | None
    drain: str | None
    in_use: str | None  # the class a recording that is not finished uses (class status), or a schedule names
    urgent: bool = True  # it needs a handler (dispatch.needs_handler): labelled before objects at rest


class Sharder:
    def __init__(
        self, kube: Kube, classes: ClassResolver, namespaces: list[str], membership: Membership, retry_period: float
    ):
        self.kube, self.classes, self.namespaces, self.retry_period = kube, classes, namespaces, retry_period
        self.membership = membership
        self.objects: dict[str, dict[Key, Seen]] = {"recordings": {}, "schedules": {}}
        self.placed: dict[str, str] = {}  # account -> shard, as last decided
        self._held: dict[str, Counter[str]] = {}  # account -> shard (its objects' labels) -> objects
        self._live: set[str] = set()  # the live shards of the last pass
        self._looked = 0.0  # when a pass last looked at every object
        self._dirty: set[tuple[str, Key]] = set()  # changed since the last pass
        self._labels: dict[str, tuple[float, dict[str, str]]] = {}
        self._changed = asyncio.Event()
        self._writing: set[tuple[str, Key]] = set()
        # Writes to make, the urgent first (see _balance), then in the order decided.
        self._queue: asyncio.PriorityQueue[tuple[bool, int, tuple[str, Key, Seen, shards.Relabel]]] = (
            asyncio.PriorityQueue()
        )
        self._order = itertools.count()
        self._since = membership.clock()

    async def run(self) -> None:
        spaces: list[str | None] = [*self.namespaces] or [None]
        watches = [
            # Beside its list, a watch: a recording created while 10 000 are listed is labelled at once.
            *(
                Reflector(
                    self.kube, recording_path(ns), self._saw("recordings"), page_size=100, watch_while_listing=True
                )
                for ns in spaces
            ),
            *(Reflector(self.kube, schedule_path(ns), self._saw("schedules"), page_size=100) for ns in spaces),
        ]
        writers = [self._writer() for _ in range(WRITERS)]
        await asyncio.gather(*(w.run() for w in watches), self._members(), self._balance(), *writers)

    def classes_in_use(self) -> set[str]:
        """The classes a recording that is not finished uses or a schedule's template names (classstatus.py)."""
        return {seen.in_use for view in self.objects.values() for seen in view.values() if seen.in_use}

    # -- what it sees ----------------------------------------------------------------------------
    def _saw(self, kind: str):  # type: ignore[no-untyped-def]
        async def saw(type_: str, obj: dict) -> None:
            meta = obj["metadata"]
            key = (meta["namespace"], meta["name"])
            seen = None
            if type_ != "DELETED":
                subject = obj if kind == "recordings" else _template(obj)
                labels = meta.get("labels") or {}
                phase = (obj.get("status") or {}).get("phase")
                seen = Seen(
                    meta.get("resourceVersion", ""),
                    sys.intern(await self._account(subject)),  # one string per account, not per object
                    labels.get(SHARD_LABEL),
                    labels.get(DRAIN_LABEL),
                    class_of(subject) if kind == "schedules" or phase not in TERMINAL else None,
                    kind == "schedules" or needs_handler(obj),
                )
            self.put(kind, key, seen)

        return saw

    def put(self, kind: str, key: Key, seen: Seen | None) -> None:
        """What the sharder now knows of one object (None: it is gone)."""
        view = self.objects[kind]
        self._count(view.pop(key, None), -1)
        if seen is not None:
            view[key] = seen
            self._count(seen, 1)
        self._dirty.add((kind, key))
        self._changed.set()

    async def _account(self, obj: dict) -> str:
        classes = await self.classes.known()
        spec = obj.get("spec") or {}
        unnamed = not (spec.get("credentialsSecretRef") or {}).get("name") and "recordingClass" not in (
            obj.get("status") or {}
        )
        needs_labels = unnamed and not spec.get("recordingClassName") and any(c.default for c in classes.values())
        labels = await self._namespace_labels(obj["metadata"]["namespace"]) if needs_labels else None
        return shards.account_of(obj, classes, labels)

    async def _namespace_labels(self, namespace: str) -> dict[str, str]:
        now = time.monotonic()
        if (cached := self._labels.get(namespace)) is None or now - cached[0] > NAMESPACE_LABELS_SECONDS:
            cached = self._labels[namespace] = (now, await self.classes.labels(namespace))
        return cached[1]

    async def _members(self) -> None:
        while True:  # each listing of the Leases (membership.py) decides again
            await self.membership.changed.wait()
            self.membership.changed.clear()
            self._changed.set()

    def _count(self, seen: Seen | None, delta: int) -> None:
        """Objects per account and shard, kept as events come: a pass need not count 10 000 objects."""
        if seen is None:
            return
        counts = self._held.setdefault(seen.account, Counter())
        where = seen.drain or seen.shard or ""  # a moving object counts where it goes
        counts[where] += delta
        if counts[where] <= 0:
            del counts[where]
            if not counts:
                del self._held[seen.account]

    # -- what it writes --------------------------------------------------------------------------
    def plan(self) -> Iterator[tuple[str, Key, Seen, shards.Relabel]]:
        """The label writes the view calls for (objects with a write in flight left out): of the objects
        that changed since the last pass, or of all of them when the placement or the members changed, or
        a retry period passed (a shard only named by a label is judged dead without any event)."""
        # The live shards, and those that objects name whose Leases the sharder has not seen yet but which may
        # act (a sharder just started, after a restart of every shard): their accounts are not moved away
        # before they are known dead, D later (membership.py).
        named = {shard for counts in self._held.values() for shard in counts if shard}
        live = self.membership.live() | {shard for shard in named if self.membership.acting(shard)}
        # Its own last placement first: mid-move, the labels of an account are split between two shards, and
        # a placement read back from them could flip the move back and forth.
        current = {}
        for account, counts in self._held.items():
            if placed := [(n, s) for s, n in counts.items() if s in live]:
                current[account] = max(placed)[1]
        current.update({a: s for a, s in self.placed.items() if a in self._held and s in live})
        target = shards.assign(self._held, live, current)
        now = self.membership.clock()
        everything = target != self.placed or live != self._live or now - self._looked > self.retry_period
        self.placed, self._live = target, live
        if everything:
            self._looked = now
            MEMBERS.set(len(live))
            ACCOUNTS.clear()
            for shard, n in Counter(target.values()).items():
                ACCOUNTS.labels(shard=shard).set(n)
            RECORDINGS.clear()
            for shard, n in Counter(s.shard or "" for s in self.objects["recordings"].values()).items():
                RECORDINGS.labels(shard=shard).set(n)
        keys = [(k, key) for k, view in self.objects.items() for key in view] if everything else list(self._dirty)
        self._dirty.clear()
        # For its first retry period the sharder places no account that is on no shard yet: at a cold start every
        # shard's Lease is listed by then (membership.py), and no account goes to the first shards up only to be
        # moved to the others a moment later. An account with a shard is served at once.
        settling = now - self._since < self.retry_period
        for kind, key in keys:
            if (seen := self.objects[kind].get(key)) is None or (kind, key) in self._writing:
                continue
            if settling and seen.account not in current:
                self._dirty.add((kind, key))
                continue
            # A schedule needs no handover (see the module's docstring).
            acting = kind == "recordings" and seen.shard is not None and self.membership.acting(seen.shard)
            if (change := shards.relabel(seen.shard, seen.drain, target.get(seen.account), acting)) is not None:
                yield kind, key, seen, change

    async def _balance(self) -> None:
        while True:
            # At the next change, or each retry period: a Lease expires without an event.
            try:
                await asyncio.wait_for(self._changed.wait(), self.retry_period)
            except TimeoutError:
                pass
            self._changed.clear()
            # New objects and those that need a handler first: a dead shard's 3 000 objects at rest take the
            # apiserver tens of seconds to relabel, and what waits for a Start must not wait behind them.
            for planned in self.plan():
                self._writing.add((planned[0], planned[1]))
                self._queue.put_nowait((not planned[2].urgent, next(self._order), planned))
            await asyncio.sleep(0.1)  # a burst's events are decided together

    async def _writer(self) -> None:
        while True:
            _, _, planned = await self._queue.get()
            await self._write(*planned)

    async def _write(self, kind: str, key: Key, seen: Seen, change: shards.Relabel) -> None:
        path = (recording_path if kind == "recordings" else schedule_path)(*key)
        labels: dict[str, str | None] = {DRAIN_LABEL: change.drain}
        if change.shard is not None:
            labels[SHARD_LABEL] = change.shard
        # A dead shard's last word on its Events goes with its objects (decide/actions.py at_rest).
        reassigned = change.shard is not None and seen.shard is not None and seen.shard != change.shard
        mark = self.membership.marks.get(seen.shard or "") if reassigned else None
        try:
            written = await self.kube.patch_labels(
                path, labels, seen.resource_version, {EVENTS_MARK: mark} if mark else None
            )
            if reassigned:
                MOVES.labels(how="reassign").inc()
                log.info("%s %s/%s: shard %s is gone; now on %s", kind, *key, seen.shard, change.shard)
            elif change.drain is not None:
                MOVES.labels(how="drain").inc()
            if self.objects[kind].get(key) is seen:  # its watch event is not here yet: what was written is known
                meta = written["metadata"]
                now = meta.get("labels") or {}
                self.put(
                    kind,
                    key,
                    replace(
                        seen,
                        resource_version=meta["resourceVersion"],
                        shard=now.get(SHARD_LABEL),
                        drain=now.get(DRAIN_LABEL),
                    ),
                )
        except (k8s.Conflict, k8s.NotFound):  # changed or gone: its watch event brings the next decision
            if self.objects[kind].get(key) is not seen:
                self._dirty.add((kind, key))  # ... which came while this write waited
        except k8s.KubeError as exc:
            log.warning("could not label %s %s/%s: %s", kind, *key, exc)
            self._dirty.add((kind, key))  # tried again at the next pass
        finally:
            self._writing.discard((kind, key))
            self._changed.set()


def _template(schedule: dict) -> dict:
    """A schedule's runs as the account sees them: its template's spec, in its namespace."""
    spec = ((schedule.get("spec") or {}).get("template") or {}).get("spec") or {}
    return {"metadata": {"namespace": schedule["metadata"]["namespace"]}, "spec": spec}


async def lead(
    config: Settings,
    kube: Kube,
    shard: Shard,
    classes: ClassResolver,
    chores: list[Callable[[], Coroutine[Any, Any, None]]],
    became: Callable[[Sharder | None], None],
) -> None:
    """In every shard: contend for the release's Lease; its holder runs the sharder and the cluster-wide
    `chores`. Losing it stops them, not the shard: two sharders at once are wasteful, not unsafe."""
    loop, lost = asyncio.get_running_loop(), asyncio.Event()

    def on_lost(why: str) -> None:
        log.warning("no longer the sharder: %s", why)
        loop.call_soon_threadsafe(lost.set)

    timing = leader.Timing.of(config)
    lease = leader.Lease(kube, config.lease_namespace, config.lease_name, shard.name, timing, on_lost=on_lost)
    try:
        while True:
            await lease.acquire()
            lost.clear()
            renewal = leader.Renewal(lease)
            sharder = Sharder(kube, classes, config.namespaces, shard.membership, config.lease_retry_period_seconds)
            became(sharder)
            work = [asyncio.create_task(sharder.run(), name="sharder")]
            work += [asyncio.create_task(chore()) for chore in chores]
            try:
                await lost.wait()
            finally:
                for task in work:
                    task.cancel()
                await asyncio.gather(*work, return_exceptions=True)
                became(None)
                await asyncio.to_thread(renewal.stop)
    finally:
        await lease.release()  # stopping: another shard takes over at once
