"""Is the cloud answering? A circuit over every call the operator makes.

While the service answers nothing (timeouts, lost connections, 5xx), sending more only
piles up work it may execute late: a hung Start that times out can still create its task
minutes later. So after `open_after` unanswered calls in a row the circuit opens: callers
wait (`wait_up`) instead of sending, and one cheap probe a few seconds apart finds out when
the service is back. Then everybody proceeds at once (within the quota), instead of each
resource sleeping out its own exponential backoff.

`since` is the wall-clock moment the service last came back: a Start whose answer was lost
during an outage gets its grace period counted from then, because its callbacks could not
arrive before (docs/exactly-once.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

log = logging.getLogger(__name__)


class Reachability:
    def __init__(self, open_after: int = 3, wall: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.open_after, self.wall = open_after, wall
        self.since: datetime | None = None  # None: never seen down since the process started
        self._unanswered = 0
        self._up = asyncio.Event()
        self._up.set()

    @property
    def up(self) -> bool:
        return self._up.is_set()

    def answered(self) -> None:
        self._unanswered = 0
        if not self.up:
            self.since = self.wall()
            self._up.set()
            log.warning("the cloud answers again")

    def unanswered(self) -> None:
        self._unanswered += 1
        if self.up and self._unanswered >= self.open_after:
            self._up.clear()
            log.warning(
                "the cloud does not answer (%d calls in a row): holding new calls until a probe succeeds",
                self._unanswered,
            )

    async def wait_up(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._up.wait(), timeout)
        except TimeoutError:
            return False
        return True
