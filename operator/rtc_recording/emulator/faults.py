"""Injected faults, decided by seeded dice so that a run can be replayed.

Each kind of fault draws from its own random stream (seeded from the emulator's seed),
and only when its rate is non-zero, so switching one fault on does not reshuffle the
others.
"""

from __future__ import annotations

import random

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
