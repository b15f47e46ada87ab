"""The account's API quota (50 calls/s), enforced on our side so the service never throttles us.

Guarantee: the service never sees more than `rate` of our calls in any `window` seconds,
whatever the network jitter. A token bucket or a sliding log over *grant* times cannot
promise that: a call granted early but delayed on its way lands in the same window as
calls granted a second later. So each call is counted from its grant until the service
has certainly received it - when its answer is back - and call j is granted only a full
window after call j-`rate` was received. Cost: throughput is rate / (window + latency)
instead of rate / window (about 49/s against a local emulator).

A grant is not a send: a Start's write-ahead (a status PATCH) runs between the two, and
while the apiserver is slow that can take seconds, so calls granted a second apart could
leave together. A granted call that has not been sent yet therefore counts as not received:
call j+rate waits until call j has left and been answered (or `max_transit` after it left).

The one assumption: a call reaches the service within `max_transit` seconds of leaving.
A call still unanswered then (hung, or failed without an answer: it may yet arrive) is
counted as received at that moment, so that it cannot stall everybody.

Calls are also spaced `window/rate` apart (with an allowance of `burst` back-to-back calls)
so they reach the service smoothly instead of in bursts of `rate`.

Every call for an account, whatever it is for, waits in one queue: `Stop` before `Start`
before `Update` before `Describe` before `Waiting` (a running task we were told to stop costs
money; a Start is what users wait for; Describes are the poller's and can wait; a Start into a
channel that was empty at the last try is a guess), first come, first served within a priority.
`Waiting` calls also have a rate of their own (`waiting_share` of `rate`), so a thousand
recordings waiting for their participants keep most of the quota free even when nothing else is
queued at the moment a new Start arrives. The queue lives on the operator's event loop: the operator is the
only process that calls the cloud (docs/quota.md).
"""

from __future__ import annotations

import asyncio
import enum
import heapq
import itertools
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from rtc_recording import metrics

DEFAULT_RATE = 50  # calls per window: the quota of StartRtcCloudRecording, shared by all four calls
DEFAULT_WINDOW = 1.0
DEFAULT_BURST = 1
DEFAULT_MAX_TRANSIT = 1.0
DEFAULT_WAITING_SHARE = 0.2  # of the rate, for Priority.WAITING: 10 of 50 calls/s


@dataclass
class Slot:
    granted: float
    sent: float | None = None
    answered: float | None = None


class Grants:
    """Pure bookkeeping of grants: when may the next call go? No threads, no clock."""

    def __init__(self, rate: int, window: float, burst: int, max_transit: float) -> None:
        if rate < 1 or not 1 <= burst <= rate or window <= 0 or max_transit < 0:
            raise ValueError("need rate >= 1, 1 <= burst <= rate, window > 0, max_transit >= 0")
        self.rate = rate
        self.window = window
        self.burst = burst
        self.max_transit = max_transit
        self._spacing = window / rate
        self._theoretical = -math.inf  # GCRA's theoretical arrival time of the next call
        self._recent: deque[Slot] = deque(maxlen=rate)  # the last `rate` grants

    def ready_at(self) -> float:
        ready = self._theoretical - (self.burst - 1) * self._spacing
        if len(self._recent) == self.rate:
            # Call j waits for call j-rate; calls before j-rate were checked by earlier grants.
            ready = max(ready, self._received_by(self._recent[0]) + self.window)
        return ready

    def grant(self, now: float) -> Slot:
        self._theoretical = max(self._theoretical, now) + self._spacing
        slot = Slot(granted=now)
        self._recent.append(slot)
        return slot

    def _received_by(self, slot: Slot) -> float:
        if slot.sent is None:  # granted, not sent: it may still leave at any moment
            return math.inf if slot.answered is None else slot.answered  # answered unsent: never left
        latest = slot.sent + self.max_transit
        return latest if slot.answered is None else min(slot.answered, latest)


class Priority(enum.IntEnum):
    """Lower goes first."""

    STOP = 0
    START = 1
    UPDATE = 2
    DESCRIBE = 3
    WAITING = 4


class AccountBudget:
    """The quota of one account: a priority queue of waiting calls, granted on the event loop.

    `slot = await budget.acquire(priority)`, `budget.sending(slot)` as it leaves, then
    `budget.answered(slot)` once the service answered (any HTTP status), or at once if it
    never left. A call that got no answer is never marked: it may still reach the service,
    so it counts as in flight until `max_transit` after it left.
    """

    def __init__(
        self,
        rate: int = DEFAULT_RATE,
        window: float = DEFAULT_WINDOW,
        burst: int = DEFAULT_BURST,
        max_transit: float = DEFAULT_MAX_TRANSIT,
        waiting_share: float = DEFAULT_WAITING_SHARE,
        *,
        clock: Callable[[], float] = time.monotonic,
        min_sleep: float = 0.001,
    ) -> None:
        self._schedule = Grants(rate, window, burst, max_transit)
        self._waiting_spacing = window / (rate * waiting_share)
        self._waiting_next = -math.inf  # the earliest grant of the next Priority.WAITING call
        self._clock = clock
        self._min_sleep = min_sleep  # a computed wait of 1e-9 s must not become a busy loop
        self._waiters: list[tuple[int, int, asyncio.Future[Slot]]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self.last_granted = clock()  # for liveness: waiters but no grants means stuck

    @property
    def waiting(self) -> int:
        return sum(1 for *_, future in self._waiters if not future.done())

    async def acquire(self, priority: Priority) -> Slot:
        future: asyncio.Future[Slot] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._order), future))
        metrics.QUOTA_QUEUE_DEPTH.inc()
        arrived = self._clock()
        try:
            self._dispatch()
            return await future
        finally:
            metrics.QUOTA_QUEUE_DEPTH.dec()
            if future.cancelled():  # so were we, while waiting: our place goes to the next
                self._dispatch()
            else:
                metrics.QUOTA_WAIT_SECONDS.observe(self._clock() - arrived)

    def sending(self, slot: Slot) -> None:
        slot.sent = self._clock()
        self._dispatch()  # the head may have been waiting for this call to leave

    def answered(self, slot: Slot) -> None:
        slot.answered = self._clock()
        self._dispatch()  # the head may have been waiting for this answer

    def _dispatch(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._waiters:
            priority, _, future = self._waiters[0]
            if future.done():  # cancelled while waiting
                heapq.heappop(self._waiters)
                continue
            now, ready = self._clock(), self._schedule.ready_at()
            if ready == math.inf:
                return  # sending() or answered() of the call we wait for dispatches again
            if priority == Priority.WAITING:  # at the head, so nothing else is queued
                ready = max(ready, self._waiting_next)
            if now < ready:
                self._timer = asyncio.get_running_loop().call_later(max(ready - now, self._min_sleep), self._dispatch)
                return
            heapq.heappop(self._waiters)
            self.last_granted = now
            if priority == Priority.WAITING:
                self._waiting_next = max(self._waiting_next, now) + self._waiting_spacing
            future.set_result(self._schedule.grant(now))


class Budgets:
    """One budget per account, for the whole process.

    Key it by the long-term AccessKeyId (or one fixed key for the pod's own identity):
    the quota belongs to the account, and STS AccessKeyIds change at every refresh.
    """

    def __init__(
        self,
        rate: int = DEFAULT_RATE,
        window: float = DEFAULT_WINDOW,
        burst: int = DEFAULT_BURST,
        max_transit: float = DEFAULT_MAX_TRANSIT,
        waiting_share: float = DEFAULT_WAITING_SHARE,
    ) -> None:
        Grants(rate, window, burst, max_transit)  # validate now, not at the first call
        if not 0 < waiting_share <= 1:
            raise ValueError("need 0 < waiting_share <= 1")
        self._settings = (rate, window, burst, max_transit, waiting_share)
        self._budgets: dict[str, AccountBudget] = {}
        metrics.QUOTA_RATE.set(rate / window)

    def of(self, account: str) -> AccountBudget:
        if account not in self._budgets:
            self._budgets[account] = AccountBudget(*self._settings)
        return self._budgets[account]

    def all(self) -> dict[str, AccountBudget]:
        return dict(self._budgets)
