"""The one work queue (kube/queue.py): each key once, never twice at once, retried with a growing backoff."""

import asyncio

import pytest

from rtc_recording.kube import queue as queue_module
from rtc_recording.kube.queue import WorkQueue

from .fakes import until


@pytest.fixture
def waits(monkeypatch) -> list[int]:
    """The backoff each retry asked for (by failures in a row), with no real waiting."""
    asked: list[int] = []
    monkeypatch.setattr(queue_module, "backoff", lambda retry, base, cap: asked.append(retry) or 0)
    return asked


async def run(queue: WorkQueue, workers: int, handle) -> asyncio.Task:
    return asyncio.create_task(queue.run(workers, handle))


async def test_a_key_added_while_it_waits_is_worked_on_once():
    queue: WorkQueue[str] = WorkQueue("test", 1, 10)
    for _ in range(3):
        queue.add("a")
    queue.add("b")
    handled: list[str] = []

    async def handle(key: str) -> None:
        handled.append(key)

    task = await run(queue, 4, handle)
    try:
        await until(lambda: len(queue) == 0 and len(handled) >= 2)
        await asyncio.sleep(0.01)
    finally:
        task.cancel()
    assert sorted(handled) == ["a", "b"]


async def test_a_key_added_while_worked_on_is_worked_on_again_after_never_at_once():
    queue: WorkQueue[str] = WorkQueue("test", 1, 10)
    release, running, most, handled = asyncio.Event(), [0], [0], []

    async def handle(key: str) -> None:
        running[0] += 1
        most[0] = max(most[0], running[0])
        handled.append(key)
        await release.wait()
        running[0] -= 1

    queue.add("a")
    task = await run(queue, 4, handle)
    try:
        await until(lambda: handled == ["a"])
        queue.add("a")  # changed meanwhile (a relist delivers it again)
        queue.add("a")
        await asyncio.sleep(0.01)
        assert handled == ["a"]  # three idle workers, and none took it
        release.set()
        await until(lambda: handled == ["a", "a"] and len(queue) == 0)
    finally:
        task.cancel()
    assert most[0] == 1


async def test_a_failing_key_is_retried_with_a_growing_backoff_that_resets_on_success(waits):
    queue: WorkQueue[str] = WorkQueue("test", 1, 10)
    outcomes = [RuntimeError("blip")] * 3 + [None, RuntimeError("again"), None]
    tries: list[str] = []

    async def handle(key: str) -> None:
        tries.append(key)
        if (outcome := outcomes.pop(0)) is not None:
            raise outcome

    queue.add("a")
    task = await run(queue, 1, handle)
    try:
        await until(lambda: len(tries) == 4)
        queue.add("a")
        await until(lambda: len(tries) == 6 and len(queue) == 0)
    finally:
        task.cancel()
    assert waits == [0, 1, 2, 0]  # three in a row, then one after a success
