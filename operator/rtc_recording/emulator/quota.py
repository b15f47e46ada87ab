"""The per-AccessKey call quota: an exact sliding window.

A call is accepted when fewer than `limit` calls were accepted in the second before it,
so no window of one second ever holds more than `limit` accepted calls. Refused calls
do not count.
"""

from __future__ import annotations

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
        calls.append(now)
        return True
