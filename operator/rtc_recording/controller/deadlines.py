"""Time-driven decisions (spec.maxDurationSeconds, spec.ttlSecondsAfterFinished) without a
timer per object: one heap of due times, fed from every watch event, and one loop.

The due time is computed from status (startTime, completionTime), never from when the
operator saw the object, so a restart neither resets nor forgets it: on start-up every
object is seen again and anything overdue fires at once.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Awaitable, Callable

from rtc_recording.controller.index import Key, Tracked

log = logging.getLogger(__name__)
RETRY_SECONDS = 5.0


class Deadlines:
    def __init__(self, act: Callable[[Key], Awaitable[None]], clock: Callable[[], float] = time.time):
        self.act, self.clock = act, clock
        self._due: dict[Key, float] = {}  # the one valid due time per key
        self._heap: list[tuple[float, Key]] = []  # lazy: entries not in _due are stale
        self._wake = asyncio.Event()

    def track(self, tracked: Tracked) -> None:
        self.set(tracked.key, None if tracked.deleting else tracked.due)

    def set(self, key: Key, when: float | None) -> None:
        if when is None:
            self._due.pop(key, None)
            return
        if self._due.get(key) != when:
            self._due[key] = when
            heapq.heappush(self._heap, (when, key))
            self._wake.set()

    def __len__(self) -> int:
        return len(self._due)

    async def run(self) -> None:
        while True:
            while self._heap and self._due.get(self._heap[0][1]) != self._heap[0][0]:
                heapq.heappop(self._heap)  # forgotten or moved
            wait = self._heap[0][0] - self.clock() if self._heap else 60.0
            if wait > 0:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=min(wait, 60.0))
                except TimeoutError:
                    pass
                continue
            when, key = heapq.heappop(self._heap)
            del self._due[key]
            try:
                await self.act(key)
            except Exception as exc:  # try again soon; a fresh watch event may also move it
                log.warning("%s/%s: due action failed (%s); again in %.0f s", *key, exc, RETRY_SECONDS)
                self.set(key, self.clock() + RETRY_SECONDS)
