"""The account's API quota (50 calls/s), enforced on our side so the service never throttles us.

Guarantee: the service never sees more than `rate` of our calls in any `window` seconds,
whatever the network jitter. A token bucket or a sliding log over *grant* times cannot
promise that: a call granted early but delayed on its way lands in the same window as
calls granted a second later. So each call is counted from its grant until the service
has certainly received it - when its answer is back - and call j is granted only a full
window after call j-`rate` was received. Cost: throughput is rate / (window + latency)
instead of rate / window (about 49/s against a local emulator).

The one assumption: a call reaches the service within `max_transit` seconds of its grant.
A call still unanswered then (hung, or failed without an answer: it may yet arrive) is
counted as received at that moment, so that it cannot stall everybody.

Calls are also spaced `window/rate` apart (with an allowance of `burst` back-to-back calls)
so they reach the service smoothly instead of in bursts of `rate`.

Waiters are served strictly first come, first served: no thread starves.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from rtc_recording import metrics

DEFAULT_RATE = 50  # calls per window: the quota of StartRtcCloudRecording, shared by all four calls
DEFAULT_WINDOW = 1.0
DEFAULT_BURST = 1
DEFAULT_MAX_TRANSIT = 1.0


@dataclass
class Slot:
    granted: float
    answered: float | None = None


class Schedule:
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
        latest = slot.granted + self.max_transit
        return latest if slot.answered is None else min(slot.answered, latest)


class Clock(Protocol):
    def now(self) -> float: ...

    def wait(self, turn: threading.Condition, timeout: float) -> None:
        """Wait on `turn` (its lock held) until notified or `timeout` seconds passed."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.monotonic()

    def wait(self, turn: threading.Condition, timeout: float) -> None:
        turn.wait(timeout)


class QuotaLimiter:
    """Thread-safe, FIFO limiter for one account. Use as `with limiter.slot(): send()`."""

    def __init__(
        self,
        rate: int = DEFAULT_RATE,
        window: float = DEFAULT_WINDOW,
        burst: int = DEFAULT_BURST,
        max_transit: float = DEFAULT_MAX_TRANSIT,
        *,
        clock: Clock | None = None,
        min_sleep: float = 0.001,
    ) -> None:
        self._schedule = Schedule(rate, window, burst, max_transit)
        self._clock = clock or SystemClock()
        self._min_sleep = min_sleep  # a computed wait of 1e-9 s must not become a busy loop
        self._lock = threading.Lock()
        self._queue: deque[threading.Condition] = deque()  # one condition per waiter, head first
        self.waited_seconds = 0.0
        self.last_granted = self._clock.now()  # for liveness: waiters but no grants means stuck

    @property
    def waiting(self) -> int:
        return len(self._queue)

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Wait for our turn, then hold a slot while the call is on the wire.

        Leave the block normally once the service answered (any HTTP status); leave it by an
        exception when no answer came (timeout, lost connection): such a call may still reach
        the service, so it counts as in flight until `max_transit` after its grant.
        """
        slot = self._acquire()
        yield
        with self._lock:
            slot.answered = self._clock.now()
            if self._queue:
                self._queue[0].notify()  # the head may have been waiting for this answer

    def _acquire(self) -> Slot:
        with self._lock:
            turn = threading.Condition(self._lock)
            self._queue.append(turn)
            metrics.QUOTA_QUEUE_DEPTH.inc()
            arrived = self._clock.now()
            try:
                while True:
                    if self._queue[0] is not turn:
                        turn.wait()  # woken when we become the head
                        continue
                    now = self._clock.now()
                    ready = self._schedule.ready_at()
                    if now >= ready:
                        break
                    self._clock.wait(turn, max(ready - now, self._min_sleep))
                slot = self._schedule.grant(now)
                self.last_granted = now
            finally:
                self._queue.remove(turn)
                metrics.QUOTA_QUEUE_DEPTH.dec()
                if self._queue:
                    self._queue[0].notify()
            waited = now - arrived
            self.waited_seconds += waited
        metrics.QUOTA_WAIT_SECONDS.observe(waited)
        return slot


class QuotaRegistry:
    """One limiter per account, for the whole process.

    Key it by the long-term AccessKeyId (or one fixed key for the pod's own identity):
    the quota belongs to the account, and STS AccessKeyIds change at every refresh.
    """

    def __init__(
        self,
        rate: int = DEFAULT_RATE,
        window: float = DEFAULT_WINDOW,
        burst: int = DEFAULT_BURST,
        max_transit: float = DEFAULT_MAX_TRANSIT,
    ) -> None:
        Schedule(rate, window, burst, max_transit)  # validate now, not at the first call
        self._settings = (rate, window, burst, max_transit)
        self._limiters: dict[str, QuotaLimiter] = {}
        self._lock = threading.Lock()

    def limiter(self, key: str) -> QuotaLimiter:
        with self._lock:
            if key not in self._limiters:
                self._limiters[key] = QuotaLimiter(*self._settings)
            return self._limiters[key]

    def limiters(self) -> dict[str, QuotaLimiter]:
        with self._lock:
            return dict(self._limiters)
