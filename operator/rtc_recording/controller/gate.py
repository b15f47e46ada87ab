"""At most a few handlers at work at once, new work ahead of the backlog a restart releases.

Kopf starts one worker per object that needs a handler, all at once: at a restart with thousands
of them (an upgrade, tasks the cloud ended while the operator was down) that was thousands of
concurrent apiserver writes, and the apiserver, saturated, answered the Lease renewal too late
(docs/ha.md). The gate keeps what a restart releases to `limit` handlers at a time (Kopf's own
patch after each handler is not covered); among the waiting, fresh work (an object created or
deleted since this operator started, a spec changed) goes first, so a recording created during a
restart does not wait in the gate behind the backlog.

The limit is far above what the quota lets through: a Start holds its slot while it waits in the
account's budget (cloud/budget.py), and at 50 calls/s with a Start's writes taking well under a second,
32 slots never leave the budget idle.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

LIMIT = 32


class Gate:
    def __init__(self, limit: int = LIMIT):
        self._free = limit
        self._waiting: tuple[deque[asyncio.Future[None]], deque[asyncio.Future[None]]] = (deque(), deque())

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self._waiting)

    @asynccontextmanager
    async def slot(self, fresh: bool) -> AsyncIterator[None]:
        if self._free and not self.waiting:
            self._free -= 1
        else:
            turn = asyncio.get_running_loop().create_future()
            self._waiting[0 if fresh else 1].append(turn)
            try:
                await turn
            except asyncio.CancelledError:
                if turn.done() and not turn.cancelled():
                    self._hand_on()  # handed a slot as it was cancelled: the next one gets it
                else:
                    with contextlib.suppress(ValueError):  # already passed over by _hand_on
                        self._waiting[0 if fresh else 1].remove(turn)
                raise
        try:
            yield
        finally:
            self._hand_on()

    def _hand_on(self) -> None:
        for queue in self._waiting:
            while queue:
                turn = queue.popleft()
                if not turn.done():
                    turn.set_result(None)
                    return
        self._free += 1


def fresh(obj: dict, started: str, updated: bool) -> bool:
    """Work a user asked for since this operator started (timestamps in one format compare as text)."""
    meta = obj["metadata"]
    return updated or max(meta.get("creationTimestamp") or "", meta.get("deletionTimestamp") or "") >= started
