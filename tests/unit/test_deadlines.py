"""The one heap of due times (deadlines.py): what is moved or forgotten never fires, what is due
fires once, a failed action is tried again."""

import asyncio
import time

from rtc_recording.controller import deadlines
from rtc_recording.controller.deadlines import Deadlines


async def run_until(deadlines_: Deadlines, done: asyncio.Event, timeout: float = 2.0) -> None:
    runner = asyncio.create_task(deadlines_.run())
    try:
        await asyncio.wait_for(done.wait(), timeout)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


async def test_a_moved_or_forgotten_due_time_never_fires_and_the_due_one_fires_once():
    acted: list = []
    done = asyncio.Event()

    async def act(key) -> None:
        acted.append(key)
        done.set()

    d = Deadlines(act)
    now = time.time()
    d.set(("ns", "moved"), now - 5)
    d.set(("ns", "moved"), now + 3600)  # moved an hour on: the stale entry is passed over
    d.set(("ns", "forgotten"), now - 5)
    d.set(("ns", "forgotten"), None)
    d.set(("ns", "soon"), now + 0.05)  # waited for, then fired
    await run_until(d, done)
    assert acted == [("ns", "soon")] and len(d) == 1


async def test_a_failed_action_is_tried_again_after_the_retry_delay(monkeypatch):
    monkeypatch.setattr(deadlines, "RETRY_SECONDS", 0.05)
    tries: list[float] = []
    done = asyncio.Event()

    async def act(key) -> None:
        tries.append(time.monotonic())
        if len(tries) == 1:
            raise RuntimeError("the apiserver is away")
        done.set()

    d = Deadlines(act)
    d.set(("ns", "r"), time.time() - 1)
    await run_until(d, done)
    assert len(tries) == 2 and tries[1] - tries[0] >= 0.04 and len(d) == 0
