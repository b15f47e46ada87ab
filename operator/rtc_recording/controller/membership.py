"""The shards as the sharder sees them: one Lease each (RING_LABEL), judged on the sharder's own clock.

A shard acts only while it renews its Lease: it exits once it could not renew for the renew deadline
R, which is below the Lease's duration D (controller/leader.py, docs/ha.md). So a Lease the sharder has
seen unchanged for D (its own monotonic clock, started when it first read that state) belongs to a
shard that no longer acts, and its objects may be given to another shard without its consent. The
same holds for a Lease that went away (a shard whose Lease is deleted exits at its next renewal):
dead D after the sharder first missed it. A Lease whose holder was cleared was released by a shard
that had stopped acting first: dead at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from urllib.parse import urlencode

from rtc_recording.api.names import EVENTS_MARK, RING_LABEL, segment
from rtc_recording.kube import errors as k8s
from rtc_recording.kube.client import Kube

log = logging.getLogger(__name__)


class Membership:
    def __init__(self, duration: float, clock: Callable[[], float] = time.monotonic):
        self.duration, self.clock = duration, clock
        self._seen: dict[str, tuple[dict, float]] = {}  # name -> (spec, since when it is unchanged)
        self._missing: dict[str, float] = {}  # name -> since when the sharder knows of it without a Lease
        self.marks: dict[str, str] = {}  # shard -> the EVENTS_MARK its Lease carries (leader.py)
        self.changed = asyncio.Event()

    async def watch(self, kube: Kube, ring: str, namespace: str, period: float) -> None:
        """List the ring's Leases every `period`, in every shard: a shard that becomes the sharder has
        watched the others' Leases already, and knows at once which went unrenewed."""
        path = f"/apis/coordination.k8s.io/v1/namespaces/{segment(namespace)}/leases?"
        path += urlencode({"labelSelector": f"{RING_LABEL}={ring}"})
        while True:
            try:
                listed = (await kube.request("GET", path)).get("items") or []
                self.observe(listed)
                self.marks = {
                    lease["metadata"]["name"]: mark
                    for lease in listed
                    if (mark := (lease["metadata"].get("annotations") or {}).get(EVENTS_MARK))
                }
                self.changed.set()
            except k8s.KubeError as exc:
                log.warning("could not list the shards' Leases: %s", exc)
            await asyncio.sleep(period)

    def observe(self, leases: list[dict]) -> None:
        """One listing of the ring's Leases."""
        now, names = self.clock(), set()
        for lease in leases:
            name, spec = lease["metadata"]["name"], lease.get("spec") or {}
            names.add(name)
            if (seen := self._seen.get(name)) is None or seen[0] != spec:
                self._seen[name] = (spec, now)
            self._missing.pop(name, None)
        for name in [n for n in self._seen if n not in names]:
            del self._seen[name]
            self._missing[name] = now

    def live(self) -> set[str]:
        """The shards to give accounts to: each holds its own Lease, renewed within the lease duration."""
        return {name for name in self._seen if self.acting(name)}

    def acting(self, name: str) -> bool:
        """May shard `name` still act? Only a shard known dead may lose its objects without a handover."""
        now = self.clock()
        if (seen := self._seen.get(name)) is not None:
            spec, since = seen
            return spec.get("holderIdentity") == name and now - since < self._duration(spec)
        return now - self._missing.setdefault(name, now) < self.duration

    def _duration(self, spec: dict) -> float:
        # Never trust a shorter duration than the holder announced (settings may differ during an upgrade).
        return max(self.duration, float(spec.get("leaseDurationSeconds") or 0))
