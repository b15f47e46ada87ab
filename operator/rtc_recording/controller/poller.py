"""One global loop that describes every live task, within its own share of the quota.

Not a timer or daemon per object: those cost memory per resource (docs/scale.md). The
handlers feed `track` from every watch event with the index's slim `Tracked`; the loop visits each task about once per
interval, spread with jitter, and never faster than `calls_per_second` overall. With many
tasks the budget wins and each is visited less often: the interval is a target, the
budget a ceiling.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import random
import time
from collections.abc import Awaitable, Callable

from rtc_recording.api.recording import LIVE
from rtc_recording.api.task import CloudError
from rtc_recording.cloud.credentials import CredentialsUnavailable
from rtc_recording.controller.index import Tracked
from rtc_recording.kube.errors import KubeError

log = logging.getLogger(__name__)
EXPECTED = (KubeError, CloudError, CredentialsUnavailable)  # an outage, not a bug

Key = tuple[str, str]


class Poller:
    def __init__(
        self,
        describe: Callable[[Tracked], Awaitable[object]],
        interval: float,
        calls_per_second: float,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ):
        self.describe, self.interval, self.spacing = describe, interval, 1 / calls_per_second
        self.clock, self.rng = clock, rng or random.Random()
        self._objects: dict[Key, Tracked] = {}
        self._next: dict[Key, float] = {}  # the one valid due time per key
        self._due: list[tuple[float, Key]] = []  # lazy heap: entries not in _next are stale
        self._wake = asyncio.Event()
        self.last_tick = clock()

    def track(self, tracked: Tracked) -> None:
        """Called with every watched object: polls live tasks, forgets the rest."""
        key = tracked.key
        if not tracked.task_id or tracked.phase not in LIVE or tracked.deleting:
            self.forget(key)
            return
        old = self._objects.get(key)
        self._objects[key] = tracked
        if old is None or old.task_id != tracked.task_id:
            self._schedule(key, self.interval * self.rng.uniform(0.5, 1.0))

    def forget(self, key: Key) -> None:
        self._objects.pop(key, None)
        self._next.pop(key, None)

    def _schedule(self, key: Key, delay: float) -> None:
        at = self.clock() + delay
        self._next[key] = at
        heapq.heappush(self._due, (at, key))
        self._wake.set()

    def __len__(self) -> int:
        return len(self._objects)

    async def run(self) -> None:
        while True:
            self.last_tick = self.clock()
            due = self._next_due()
            if due is None:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self._sleep_for())
                except TimeoutError:
                    pass
                continue
            self._schedule(due, self.interval)
            try:
                await self.describe(self._objects[due])
            except Exception as exc:  # the next visit tries again; a traceback only for what is no outage
                log.warning("polling %s/%s failed: %s", *due, exc, exc_info=not isinstance(exc, EXPECTED))
            await asyncio.sleep(self.spacing)

    def _next_due(self) -> Key | None:
        while self._due:
            at, key = self._due[0]
            if self._next.get(key) != at:
                heapq.heappop(self._due)  # forgotten or rescheduled
                continue
            if at > self.clock():
                return None
            heapq.heappop(self._due)
            return key
        return None

    def _sleep_for(self) -> float:
        # Bounded so that the liveness heartbeat keeps moving while idle.
        return max(0.01, min(self._due[0][0] - self.clock(), 1.0)) if self._due else 1.0
