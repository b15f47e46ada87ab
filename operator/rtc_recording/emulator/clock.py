"""The emulator's one clock.

Emulated time (task lifecycles, idle timers, file durations, callbackTs) runs
`time_scale` times faster than real time and can be pushed forward with `advance`, so
tests see minutes or days pass in a moment. Signatures, quota windows and network
timeouts face real clients and therefore use real time (`wall`, `monotonic`). Presigned OSS
links are signed on their client's real clock too, but tests must see them expire: their
expiry is judged by real time moved on by every `advance` (`links`).
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Clock:
    def __init__(
        self,
        time_scale: float = 1.0,
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.time_scale = time_scale
        self._wall = wall
        self._monotonic = monotonic
        self._origin_wall = wall()
        self._origin_monotonic = monotonic()
        self._offset = 0.0

    def now(self) -> float:
        """Emulated Unix time in seconds."""
        elapsed = self._monotonic() - self._origin_monotonic
        return self._origin_wall + elapsed * self.time_scale + self._offset

    def advance(self, seconds: float) -> float:
        """Jump emulated time forward; returns the new emulated now."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        self._offset += seconds
        return self.now()

    def wall(self) -> float:
        """Real Unix time: what signature dates and callback signatures are checked against."""
        return self._wall()

    def links(self) -> float:
        """Real Unix time plus every `advance` so far: what a presigned link's expiry is judged by."""
        return self._wall() + self._offset

    def monotonic(self) -> float:
        """Real monotonic seconds: quota windows."""
        return self._monotonic()
