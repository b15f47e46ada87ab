"""Injected faults, decided by seeded dice so that a run can be replayed.

Each kind of fault draws from its own random stream (seeded from the emulator's seed),
and only when its rate is non-zero, so switching one fault on does not reshuffle the
others. A hang is not dice: it holds every call for a period.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from .config import FaultKnobs

SERVER_ERRORS = ("InternalError", "ServiceUnavailable")


class Faults:
    def __init__(self, knobs: FaultKnobs, seed: int):
        self.knobs = knobs
        self._errors = random.Random(f"{seed}:errors")
        self._drops = random.Random(f"{seed}:drops")

    def server_error(self, action: str) -> str | None:
        """The 5xx code to answer this call with, if any."""
        rates = self.knobs.error_rates
        rate = rates.get(action, rates.get("*", 0.0))
        if rate > 0 and self._errors.random() < rate:
            return self._errors.choice(SERVER_ERRORS)
        return None

    def drop_start(self) -> bool:
        """Whether this (successful) Start loses its answer."""
        rate = self.knobs.drop_start_rate
        return rate > 0 and self._drops.random() < rate


class Hang:
    """A hung service: API connections are accepted but nothing is answered until the hang ends.

    Calls that arrive meanwhile are held and, when it ends (its time is up or it is ended
    through the control API), executed in the order they arrived and answered, if their
    caller is still there: a Start that timed out at the client creates its task late.
    """

    def __init__(self, monotonic: Callable[[], float]):
        self._monotonic = monotonic
        self._release: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._until = 0.0
        self.waiting = 0  # calls held right now
        self.held = 0  # calls ever held (since the last stats reset)

    @property
    def active(self) -> bool:
        return self._release is not None

    def remaining(self) -> float:
        return max(0.0, self._until - self._monotonic()) if self.active else 0.0

    def start(self, seconds: float) -> None:
        """Hang for `seconds` from now (replacing any hang under way); 0 ends it now."""
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if seconds == 0:
            self.end()
            return
        loop = asyncio.get_running_loop()
        if self._release is None:
            self._release = loop.create_future()
        self._until = self._monotonic() + seconds
        self._timer = loop.call_later(seconds, self.end)

    def end(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        release, self._release = self._release, None
        if release is not None and not release.done():
            release.set_result(None)  # waiters resume in the order they began to wait

    async def hold(self) -> None:
        """Return at once, or when the hang under way ends."""
        if self._release is None:
            return
        self.waiting += 1
        self.held += 1
        try:
            await asyncio.shield(self._release)
        finally:
            self.waiting -= 1

    def view(self) -> dict[str, object]:
        return {
            "active": self.active,
            "remainingSeconds": round(self.remaining(), 3),
            "waiting": self.waiting,
            "held": self.held,
        }
