"""The handler gate: a bound on what a restart releases at once, fresh work first."""

import asyncio

from rtc_recording.controller.gate import Gate, fresh


async def test_no_more_than_the_limit_at_once_and_every_one_gets_its_turn():
    gate, busy, most = Gate(limit=3), 0, 0

    async def work() -> None:
        nonlocal busy, most
        async with gate.slot(fresh=False):
            busy += 1
            most = max(most, busy)
            await asyncio.sleep(0.001)
            busy -= 1

    await asyncio.gather(*(work() for _ in range(50)))
    assert most == 3 and busy == 0 and gate.waiting == 0


async def test_fresh_work_goes_ahead_of_the_backlog_and_each_class_is_first_come_first_served():
    gate, order = Gate(limit=1), []
    release = asyncio.Event()

    async def holder() -> None:
        async with gate.slot(fresh=False):
            await release.wait()

    async def work(name: str, is_fresh: bool) -> None:
        async with gate.slot(fresh=is_fresh):
            order.append(name)

    first = asyncio.create_task(holder())
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(work(n, n.startswith("new"))) for n in ("old-1", "old-2", "new-1", "new-2")]
    await asyncio.sleep(0)
    assert gate.waiting == 4
    release.set()
    await asyncio.gather(first, *waiting)
    assert order == ["new-1", "new-2", "old-1", "old-2"]


async def test_a_waiter_cancelled_in_line_or_as_its_turn_came_loses_no_slot():
    gate = Gate(limit=1)
    release = asyncio.Event()

    async def holder() -> None:
        async with gate.slot(fresh=False):
            await release.wait()

    async def work() -> None:
        async with gate.slot(fresh=False):
            pass

    first = asyncio.create_task(holder())
    await asyncio.sleep(0)
    in_line, handed = asyncio.create_task(work()), asyncio.create_task(work())
    await asyncio.sleep(0)
    in_line.cancel()  # cancelled while waiting
    await asyncio.gather(in_line, return_exceptions=True)
    release.set()
    await asyncio.sleep(0)  # the holder leaves: `handed` is given the slot ...
    handed.cancel()  # ... and is cancelled before it runs
    await asyncio.gather(first, handed, return_exceptions=True)
    assert gate.waiting == 0
    await asyncio.wait_for(work(), 1)  # the slot was handed on, not lost


def test_fresh_is_what_a_user_asked_for_since_the_start():
    started = "2026-12-06T10:00:00Z"

    def obj(**meta: str) -> dict:
        return {"metadata": {"creationTimestamp": "2026-12-01T00:00:00Z", **meta}}

    assert not fresh(obj(), started, updated=False)
    assert fresh(obj(), started, updated=True)
    assert fresh(obj(creationTimestamp="2026-12-06T10:00:01Z"), started, updated=False)
    assert fresh(obj(deletionTimestamp="2026-12-06T10:00:00Z"), started, updated=False)
