"""Recordings waiting for their next Start outside Kopf's handlers: those waiting for participants
(tried again and again, and what makes that safe), and restarts that must try again.

The cloud starts no task in an empty channel. Such a refusal proves that the send made no task, so
the same attempt may be sent again without a write-ahead: nothing can be left behind by it that a
restart would have to find. That proof lives only here, in the memory of the process that saw it
(decide/actions.py `Sends`); a restarted replica lacks it and waits out the attempt as an answer
unknown. So a waiting recording costs one Start per try (budget priority WAITING, capped per
account) and one GET, and no apiserver write, however long it waits.

Each entry is one recording's latest attempt and the answer to its last send here: REFUSED (it
may be sent again: `claim`), PENDING (a send is on its way) or LOST (no answer came: decided like
any lost answer, from `last`). A recording being deleted is `closed`: never sent again, and its
entry kept for the deletion to know whether a send may have made a task.
A restart (restartPolicy OnFailure) comes from a due time, not from a handler: when its Start must
be tried again, it waits here too (`later`, an entry with no answer).
Tries are spaced by the backoff (settings.backoff_base_seconds doubling up to
participant_retry_seconds), never past the start deadline, and run on their own loop, a bounded
number at a time.
"""

from __future__ import annotations

import asyncio
import enum
import heapq
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from rtc_recording.controller.index import Key
from rtc_recording.decide.actions import Sends
from rtc_recording.decide.backoff import backoff

log = logging.getLogger(__name__)
AT_ONCE = 16  # tries under way at a time: each holds a GET and a place in the budget's queue


class Superseded(Exception):
    """The send is no longer ours to make (deleted, or another send of it is under way)."""


class Answer(enum.Enum):
    REFUSED = "refused"
    PENDING = "pending"
    LOST = "lost"


@dataclass(slots=True)
class Entry:
    key: Key
    attempt: int
    answer: Answer | None
    tries: int = 0
    last: datetime | None = None  # when this process last sent the attempt
    due: float | None = None  # when to try again (Unix time)
    closed: bool = False


class WaitingRoom:
    def __init__(self, base: float, longest: float, now: Callable[[], datetime]):
        self.base, self.longest, self.now = base, longest, now
        self.acting_since = now()
        self._entries: dict[str, Entry] = {}
        self._heap: list[tuple[float, str]] = []  # lazy: an entry whose due differs is stale
        self._wake = asyncio.Event()

    def __len__(self) -> int:
        return len(self._entries)

    def sends(self, uid: str) -> Sends:
        entry = self._entries.get(uid)
        if entry is None:
            return Sends(acting_since=self.acting_since)
        refused = entry.attempt if entry.answer is Answer.REFUSED else None
        return Sends(refused, entry.last, self.acting_since)

    # -- what the Starts learnt ------------------------------------------------------------
    def refused(self, key: Key, uid: str, attempt: int) -> None:
        """A send of `attempt` was refused for an empty channel: try again after a backoff."""
        entry = self._entries.get(uid)
        if entry is None or entry.attempt != attempt:
            last, closed = (entry.last, entry.closed) if entry else (None, False)
            entry = self._entries[uid] = Entry(key, attempt, Answer.REFUSED, last=last, closed=closed)
        entry.answer, entry.tries = Answer.REFUSED, entry.tries + 1
        if not entry.closed:
            self._schedule(uid, entry, self.now().timestamp() + backoff(entry.tries - 1, self.base, self.longest))

    def until(self, uid: str, deadline: datetime | None) -> None:
        """Never wait past the start deadline: the decision then gives up."""
        entry = self._entries.get(uid)
        if entry is not None and deadline is not None and entry.due is not None and entry.due > deadline.timestamp():
            self._schedule(uid, entry, deadline.timestamp())

    def claim(self, uid: str, attempt: int) -> None:
        """Just before a send leaves (after its grant): only a refused attempt may go again."""
        entry = self._entries.get(uid)
        if entry is None or entry.closed or entry.attempt != attempt or entry.answer is not Answer.REFUSED:
            raise Superseded(f"attempt {attempt} is not waiting to be sent again")
        entry.answer, entry.last = Answer.PENDING, self.now()

    def not_sent(self, uid: str) -> None:
        """The service answered that it did nothing (throttled, failed), or the send never left."""
        if (entry := self._entries.get(uid)) is not None and entry.answer is Answer.PENDING:
            entry.answer = Answer.REFUSED

    def lost(self, uid: str) -> None:
        if (entry := self._entries.get(uid)) is not None and entry.answer is Answer.PENDING:
            entry.answer = Answer.LOST

    def later(self, key: Key, uid: str, seconds: float) -> None:
        """Decide again in `seconds` (a retry the executor asked for)."""
        entry = self._entries.get(uid)
        if entry is None:
            entry = self._entries[uid] = Entry(key, 0, None)
        if not entry.closed:
            self._schedule(uid, entry, self.now().timestamp() + seconds)

    def close(self, uid: str) -> Sends:
        """The recording is being deleted: no send of it leaves any more. What was known, for the deletion."""
        if (entry := self._entries.get(uid)) is not None:
            entry.closed, entry.due = True, None
        return self.sends(uid)

    def forget(self, uid: str) -> None:
        self._entries.pop(uid, None)

    def _schedule(self, uid: str, entry: Entry, when: float) -> None:
        entry.due = when
        heapq.heappush(self._heap, (when, uid))
        self._wake.set()

    # -- the loop ----------------------------------------------------------------------------
    async def run(self, act: Callable[[Key, str], Awaitable[None]]) -> None:
        """Call `act(key, uid)` for each entry that falls due, AT_ONCE at a time."""
        slots = asyncio.Semaphore(AT_ONCE)
        running: set[asyncio.Task] = set()

        async def one(key: Key, uid: str) -> None:
            try:
                await act(key, uid)
            except Exception:
                log.exception("%s/%s: trying the Start again failed", *key)
                self.later(key, uid, self.longest)
            finally:
                slots.release()

        while True:
            while self._heap:
                when, uid = self._heap[0]
                entry = self._entries.get(uid)
                if entry is None or entry.due != when:
                    heapq.heappop(self._heap)  # forgotten or moved
                    continue
                wait = when - self.now().timestamp()
                if wait > 0:
                    break
                heapq.heappop(self._heap)
                entry.due = None
                await slots.acquire()
                task = asyncio.create_task(one(entry.key, uid))
                running.add(task)
                task.add_done_callback(running.discard)
            else:
                wait = 60.0
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=min(wait, 60.0))
            except TimeoutError:
                pass
