"""Which RtcRecordings need a handler, when, and in what order: Kopf's create, resume, update and
delete causes, kept in memory instead of in status.

Kopf's own handlers cost a write per handled change (its diff-base) and its per-object machinery
for every object it resumes; with thousands to act on at a restart that machinery also held the
event loop (docs/scale.md). Here every watch event (`saw`) answers one question: does this object
need a handler? It does when it is being deleted and holds our finalizer, or when it is not at
rest (`actions.at_rest`), and in both cases only if its (uid, generation, deleting) is not what a
handler last ran for: the operator's own status writes never call for one.

Each object has at most one handler at a time, run with the object as the watch last showed it;
one that changed meanwhile runs again. At most `limit` run at once. Among the waiting, fresh work
(created, deleted or changed since this operator started) goes ahead of what a restart releases,
each in the order the watch showed it, so a burst reaches the quota's FIFO (cloud/budget.py) in
the order it was created. `RetryLater` runs the handler again after its delay; any other error
after a minute, logged once.

The limit is far above what the quota lets through: a Start holds its slot while it waits in its
account's budget, and at 50 calls/s with a Start's writes taking well under a second, 32 slots
never leave the budget idle.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from rtc_recording import metrics
from rtc_recording.api.names import STOP_FINALIZER
from rtc_recording.controller.executor import RetryLater
from rtc_recording.controller.executor.writes import handed_mark
from rtc_recording.controller.index import Key
from rtc_recording.decide.actions import at_rest
from rtc_recording.decide.backoff import backoff
from rtc_recording.kube import errors as k8s

log = logging.getLogger(__name__)
LIMIT = 32
ERROR_DELAY = 60.0  # an unexpected error: tried again after a minute, as Kopf did
KUBE_RETRY_SECONDS = 1.0  # an apiserver failure: again after 1 s, doubling up to a minute
Handler = Callable[[dict, int], Awaitable[None]]  # (object, retries so far) -> done, or RetryLater


def _state(meta: dict) -> int:
    """What a handler runs for, kept per object as a hash (a tuple each costs 1 MB at 10 000)."""
    return hash((meta["uid"], meta.get("generation", 0), bool(meta.get("deletionTimestamp"))))


def fresh(obj: dict, started: str) -> bool:
    """Created or deleted since this operator started (timestamps in one format compare as text)."""
    meta = obj["metadata"]
    return max(meta.get("creationTimestamp") or "", meta.get("deletionTimestamp") or "") >= started


def needs_handler(obj: dict, posted_before: str = "") -> bool:
    meta = obj["metadata"]
    if meta.get("deletionTimestamp"):
        return STOP_FINALIZER in (meta.get("finalizers") or ())
    return not at_rest(obj, max(posted_before, handed_mark(obj)))


class Dispatcher:
    def __init__(
        self,
        handler: Handler,
        started: str,
        posted_before: str = "",
        limit: int = LIMIT,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.handler, self.started, self.clock = handler, started, clock
        self.posted_before = posted_before  # the leader before this one posted every Event stamped earlier
        self._free = limit
        self._handled: dict[Key, int] = {}  # what a handler last ran for (`_state`)
        self._objects: dict[Key, dict] = {}  # the latest body of each object queued, running or to retry
        self._queued: dict[Key, float] = {}  # waiting for a slot, since when
        self._lines: tuple[deque[Key], deque[Key]] = (deque(), deque())  # fresh, backlog (stale keys skipped)
        self._fresh: set[Key] = set()
        self._running: set[Key] = set()
        self._retries: dict[Key, tuple[int, int]] = {}  # key -> (state, retries so far)
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._said: dict[Key, str] = {}  # the last retry message logged
        self._tasks: set[asyncio.Task] = set()

    def saw(self, type_: str | None, obj: dict) -> None:
        meta = obj["metadata"]
        key = (meta["namespace"], meta["name"])
        if type_ == "DELETED":
            self._forget(key)
            return
        state = _state(meta)
        if key in self._objects:
            self._objects[key] = obj
        if key in self._running:
            return  # looked at again when its handler ends
        if not needs_handler(obj, self.posted_before):
            if self._handled.get(key) != state:  # its resume or change, decided here: Nothing
                metrics.RECONCILES.labels(action="nothing", outcome="at_rest").inc()
                self._handled[key] = state
            self._forget(key, handled=True)
            return
        if self._handled.get(key) == state:
            return  # handled already, or its retry is timed
        self._cancel_timer(key)
        self._queue(key, obj, updated=key in self._handled)

    def _count(self) -> None:
        metrics.HANDLERS.labels(state="waiting").set(len(self._queued))
        metrics.HANDLERS.labels(state="running").set(len(self._running))
        metrics.HANDLERS.labels(state="retrying").set(len(self._timers))

    def late(self, stuck: float) -> list[Key]:
        """Objects that wait for a handler for longer than `stuck` seconds (health.py)."""
        now = self.clock()
        return [key for key, since in self._queued.items() if now - since > stuck]

    async def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _queue(self, key: Key, obj: dict, updated: bool = False) -> None:
        self._objects[key] = obj
        if key in self._queued:
            return
        is_fresh = updated or key in self._fresh or fresh(obj, self.started)
        if is_fresh:
            self._fresh.add(key)
        self._queued[key] = self.clock()
        self._lines[0 if is_fresh else 1].append(key)
        self._pump()

    def _pump(self) -> None:
        try:
            self._take()
        finally:
            self._count()

    def _take(self) -> None:
        while self._free and self._queued:
            key = self._next()
            if key is None:
                return
            self._free -= 1
            del self._queued[key]
            self._running.add(key)
            task = asyncio.create_task(self._run(key, self._objects[key]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _next(self) -> Key | None:
        for line in self._lines:
            while line:
                key = line.popleft()
                if key in self._queued and key not in self._running:
                    return key
        return None

    async def _run(self, key: Key, obj: dict) -> None:
        state = _state(obj["metadata"])
        self._handled[key] = state
        previous, retry = self._retries.get(key, (state, 0))
        retry = retry if previous == state else 0
        delay: float | None = None
        try:
            await self.handler(obj, retry)
        except RetryLater as exc:
            delay = exc.delay
            self._say(key, logging.INFO, str(exc), delay)
        except k8s.Failed as exc:  # the apiserver is restarting or overloaded: no bug, no traceback
            delay = backoff(retry, KUBE_RETRY_SECONDS, ERROR_DELAY)
            self._say(key, logging.WARNING, f"the apiserver failed: {exc}", delay)
        except asyncio.CancelledError:
            raise
        except Exception:
            delay = ERROR_DELAY
            log.exception("%s/%s: the handler failed; trying again in %.0f s", *key, delay)
        finally:
            self._running.discard(key)
            self._free += 1
        if key not in self._objects:
            pass  # deleted meanwhile
        elif delay is not None:
            self._retries[key] = (state, retry + 1)
            self._timers[key] = asyncio.get_running_loop().call_later(delay, self._due, key)
        else:
            self._retries.pop(key, None)
            self._said.pop(key, None)
            latest = self._objects[key]
            if needs_handler(latest, self.posted_before) and _state(latest["metadata"]) != state:
                self._queue(key, latest, updated=True)
            else:
                self._objects.pop(key, None)
                self._fresh.discard(key)
        self._pump()

    def _say(self, key: Key, level: int, reason: str, delay: float) -> None:
        """One line per new reason, not one per retry."""
        if self._said.get(key) != reason:
            self._said[key] = reason
            log.log(level, "%s/%s: %s; trying again in %.1f s", *key, reason, delay)

    def _due(self, key: Key) -> None:
        del self._timers[key]
        if key in self._objects and key not in self._running:
            self._queue(key, self._objects[key])

    def _cancel_timer(self, key: Key) -> None:
        if (timer := self._timers.pop(key, None)) is not None:
            timer.cancel()

    def _forget(self, key: Key, handled: bool = False) -> None:
        """Nothing left to do for it (`handled`: it is at rest), or it is gone."""
        self._cancel_timer(key)
        self._queued.pop(key, None)
        self._fresh.discard(key)
        self._retries.pop(key, None)
        self._said.pop(key, None)
        self._objects.pop(key, None)
        if not handled:
            self._handled.pop(key, None)
        self._count()
