"""The per-AccessKey call quota: an exact sliding window.

A call is accepted when fewer than `limit` calls were accepted in the second before it,
so no window of one second ever holds more than `limit` accepted calls. Refused calls
do not count. A call is judged at the time it arrived, which for calls held by a hang
can be a little before calls already judged: those times are kept in order.
"""

from __future__ import annotations

import bisect
from collections import defaultdict, deque


class Quota:
    def __init__(self, limit: int, window: float = 1.0):
        self.limit = limit  # 0 = unlimited; may be changed at run time
        self.window = window
        self._accepted: dict[str, deque[float]] = defaultdict(deque)

    def allow(self, key: str, now: float) -> bool:
        if self.limit <= 0:
            return True
        calls = self._accepted[key]
        while calls and calls[0] <= now - self.window:
            calls.popleft()
        if len(calls) >= self.limit:
            return False
        if calls and now < calls[-1]:
            bisect.insort(calls, now)
        else:
            calls.append(now)
        return True
