"""The global poller: what it tracks, how it spreads calls, and that it never exceeds its budget."""

import asyncio
import random
from itertools import pairwise

from rtc_recording.controller.index import Tracked
from rtc_recording.controller.poller import Poller


def obj(name, phase="Recording", task_id="t", **meta):
    return Tracked.of(
        {
            "metadata": {"namespace": "ns", "name": name, "uid": f"uid-{name}", **meta},
            "status": {"phase": phase, "taskId": task_id} if task_id else {"phase": phase},
        }
    )


def test_tracks_only_live_tasks():
    poller = Poller(lambda o: None, interval=60, calls_per_second=10)
    poller.track(obj("a"))
    poller.track(obj("b", phase="Recovering"))
    poller.track(obj("c", phase="Completed"))
    poller.track(obj("d", phase="Starting", task_id=None))
    poller.track(obj("e", deletionTimestamp="2026-01-01T00:00:00Z"))
    assert len(poller) == 2
    poller.track(obj("a", phase="Completed"))  # finished: forgotten
    assert len(poller) == 1


async def test_visits_each_task_about_once_per_interval_within_the_budget():
    seen: list[tuple[str, float]] = []
    loop = asyncio.get_running_loop()

    async def observe(o):
        seen.append((o.name, loop.time()))

    poller = Poller(observe, interval=0.2, calls_per_second=200, clock=loop.time, rng=random.Random(1))
    for name in "abcd":
        poller.track(obj(name))
    runner = asyncio.create_task(poller.run())
    await asyncio.sleep(0.75)
    runner.cancel()
    counts = {name: sum(1 for n, _ in seen if n == name) for name in "abcd"}
    assert all(2 <= c <= 5 for c in counts.values()), counts  # ~0.75 / 0.2, first visit jittered
    gaps = [b - a for (_, a), (_, b) in pairwise(seen)]
    assert min(gaps) >= 1 / 200 * 0.9  # the budget spaces every call


async def test_budget_wins_over_the_interval():
    seen = []
    loop = asyncio.get_running_loop()

    async def observe(o):
        seen.append(o.name)

    poller = Poller(observe, interval=0.01, calls_per_second=20, clock=loop.time)
    for i in range(50):
        poller.track(obj(f"r{i}"))
    runner = asyncio.create_task(poller.run())
    await asyncio.sleep(0.5)
    runner.cancel()
    assert len(seen) <= 0.5 * 20 + 1


async def test_a_failing_observation_does_not_stop_the_loop():
    calls = []
    loop = asyncio.get_running_loop()

    async def observe(o):
        calls.append(o)
        raise RuntimeError("apiserver down")

    poller = Poller(observe, interval=0.05, calls_per_second=100, clock=loop.time)
    poller.track(obj("a"))
    runner = asyncio.create_task(poller.run())
    await asyncio.sleep(0.3)
    runner.cancel()
    assert len(calls) >= 3


def test_a_forgotten_task_or_one_started_anew_is_described_only_at_its_one_due_time():
    now = [100.0]
    poller = Poller(lambda o: None, interval=60, calls_per_second=10, clock=lambda: now[0])
    poller.track(obj("gone"))
    poller.track(obj("renewed"))
    poller.forget(("ns", "gone"))
    poller.track(obj("renewed", task_id="t2"))  # a new task: a new due time, the old entry stale
    now[0] += 61
    assert poller._next_due() == ("ns", "renewed")
    assert poller._next_due() is None  # neither the forgotten one nor the stale entry comes back
