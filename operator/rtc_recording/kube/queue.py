"""A work queue as client-go's: each key queued once, never worked on by two workers at once, retried with backoff.

A key added while it waits is not added again; a key added while a worker has it is worked on once
more after that worker is done (the object changed meanwhile), never at the same time. A failed key
comes back after the one backoff (decide/backoff.py), growing with its failures in a row.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from rtc_recording.decide.backoff import backoff

log = logging.getLogger(__name__)
K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(self, name: str, retry_base: float, retry_max: float):
        self.name, self.retry_base, self.retry_max = name, retry_base, retry_max
        self._queue: asyncio.Queue[K] = asyncio.Queue()
        self._waiting: set[K] = set()  # queued, not yet taken
        self._working: set[K] = set()
        self._again: set[K] = set()  # added while being worked on
        self._failures: dict[K, int] = {}

    def add(self, key: K) -> None:
        if key in self._working:
            self._again.add(key)
        elif key not in self._waiting:
            self._waiting.add(key)
            self._queue.put_nowait(key)

    def __len__(self) -> int:
        return len(self._waiting) + len(self._working)

    async def run(self, workers: int, handle: Callable[[K], Awaitable[None]]) -> None:
        """`workers` workers, each taking a key and handling it; an exception retries the key later."""
        await asyncio.gather(*(self._worker(handle) for _ in range(workers)))

    async def _worker(self, handle: Callable[[K], Awaitable[None]]) -> None:
        while True:
            key = await self._queue.get()
            self._waiting.discard(key)
            self._working.add(key)
            try:
                await handle(key)
                self._failures.pop(key, None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._retry(key, exc)
            finally:
                self._working.discard(key)
                if key in self._again:
                    self._again.discard(key)
                    self.add(key)

    def _retry(self, key: K, exc: Exception) -> None:
        failures = self._failures[key] = self._failures.get(key, 0) + 1
        delay = backoff(failures - 1, self.retry_base, self.retry_max)
        log.warning("%s %s: %s; trying again in %.1f s", self.name, key, exc, delay)
        log.debug("%s %s failed", self.name, key, exc_info=exc)
        asyncio.get_running_loop().call_later(delay, self.add, key)
