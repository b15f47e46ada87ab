"""Delivery of task events to NotifyUrl.

Events queue per task and go out in order, off the API's answer path. A POST carries
the lowerCamelCase body; with a NotifyAuthKey also ALI-LIVE-TIMESTAMP (real Unix seconds,
so that receivers can judge freshness) and ALI-LIVE-SIGNATURE = md5("<ts>|<key>"). A
5xx answer, a timeout or a connection failure gets exactly one resend; every attempt is
logged for the control API (the last MAX_LOG events) and counted (all of them).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable
from typing import Any

import aiohttp

from .clock import Clock
from .tasks import Event

MAX_LOG = 10_000  # deliveries remembered for introspection


def signature(timestamp: int, auth_key: str) -> str:
    return hashlib.md5(f"{timestamp}|{auth_key}".encode()).hexdigest()


def body(event: Event, payload_as_string: bool) -> dict[str, Any]:
    return {
        "appId": event.app_id,
        "channelId": event.channel_id,
        "taskId": event.task_id,
        "eventType": event.event_type,
        "callbackTs": int(event.at * 1000),
        "payload": json.dumps(event.payload) if payload_as_string else event.payload,
    }


class Dispatcher:
    def __init__(
        self, clock: Clock, *, enabled: Callable[[], bool], timeout: float, retry_delay: float, payload_as_string: bool
    ):
        self._clock = clock
        self._enabled = enabled
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._retry_delay = retry_delay
        self._payload_as_string = payload_as_string
        self._queues: dict[str, deque[Event]] = {}
        self._workers: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._in_flight = 0
        self.log: deque[dict[str, Any]] = deque(maxlen=MAX_LOG)
        self.reset_counts()

    def reset_counts(self) -> None:
        # outcome ("queued", "suppressed", "delivered", "failed", "attempts") -> count, overall and by event type
        self._counts: Counter[str] = Counter()
        self._by_type: defaultdict[str, Counter[str]] = defaultdict(Counter)

    def _count(self, event: Event, outcome: str, n: int = 1) -> None:
        self._counts[outcome] += n
        self._by_type[event.event_type][outcome] += n

    def counts(self) -> dict[str, Any]:
        """queued (sent to delivery), suppressed (callbacks off), delivered (a 2xx), failed (no 2xx after the
        resend, or a 4xx), pending (queued, not finished), attempts (POSTs), and the same by event type."""
        counts: dict[str, Any] = {
            k: self._counts[k] for k in ("queued", "suppressed", "delivered", "failed", "attempts")
        }
        counts["pending"] = sum(len(queue) for queue in self._queues.values()) + self._in_flight
        counts["byEventType"] = {kind: dict(c) for kind, c in sorted(self._by_type.items())}
        return counts

    async def open(self) -> None:
        # trust_env=False: callbacks go where NotifyUrl says, never through a proxy from the environment
        self._session = aiohttp.ClientSession(timeout=self._timeout, trust_env=False)

    async def close(self) -> None:
        for worker in list(self._workers):
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def submit(self, events: Iterable[Event]) -> None:
        """Queue events without waiting; with callbacks switched off they are logged as suppressed."""
        for event in events:
            if not self._enabled():
                self.log.append(self._entry(event) | {"suppressed": True})
                self._count(event, "suppressed")
                continue
            self._count(event, "queued")
            queue = self._queues.get(event.task_id)
            if queue is None:
                queue = self._queues[event.task_id] = deque()
                worker = asyncio.get_running_loop().create_task(self._drain(event.task_id, queue))
                self._workers.add(worker)
                worker.add_done_callback(self._workers.discard)
            queue.append(event)

    def clear(self) -> None:
        for worker in list(self._workers):
            worker.cancel()
        self._queues.clear()  # cancelled deliveries leave _in_flight as they unwind
        self.log.clear()
        self.reset_counts()

    async def _drain(self, task_id: str, queue: deque[Event]) -> None:
        try:
            while queue:
                await self._deliver(queue.popleft())
        finally:
            if self._queues.get(task_id) is queue:
                del self._queues[task_id]

    async def _deliver(self, event: Event) -> None:
        entry = self._entry(event) | {"attempts": [], "delivered": False}
        self.log.append(entry)
        self._in_flight += 1
        try:
            for attempt in range(2):
                if attempt:
                    await asyncio.sleep(self._retry_delay)
                outcome = await self._post(event)
                entry["attempts"].append(outcome)
                self._count(event, "attempts")
                if isinstance(outcome, int) and outcome < 500:
                    entry["delivered"] = 200 <= outcome < 300
                    break
            self._count(event, "delivered" if entry["delivered"] else "failed")
        finally:
            self._in_flight -= 1

    async def _post(self, event: Event) -> int | str:
        headers = {"Content-Type": "application/json"}
        if event.auth_key:
            timestamp = int(self._clock.wall())
            headers["ALI-LIVE-TIMESTAMP"] = str(timestamp)
            headers["ALI-LIVE-SIGNATURE"] = signature(timestamp, event.auth_key)
        data = json.dumps(body(event, self._payload_as_string)).encode()
        assert self._session is not None
        try:
            async with self._session.post(event.notify_url, data=data, headers=headers) as response:
                await response.read()
                return response.status
        except TimeoutError:
            return "timeout"
        except aiohttp.ClientError as error:
            return f"error: {type(error).__name__}"

    @staticmethod
    def _entry(event: Event) -> dict[str, Any]:
        return {
            "taskId": event.task_id,
            "eventType": event.event_type,
            "url": event.notify_url,
            "payload": event.payload,
            "at": event.at,
        }
