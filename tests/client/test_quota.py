"""The account's budget: rate bound whatever the latency, Stop first, FIFO within a priority,
no spinning."""

from __future__ import annotations

import asyncio
import math
import random
import time

import pytest

from rtc_recording import metrics
from rtc_recording.cloud.budget import AccountBudget, Budgets, Grants, Priority


def simulate(
    schedule: Grants, latencies: list[float | None], write_aheads: list[float] | None = None
) -> tuple[list[float], list[float], list[float | None]]:
    """Grant len(latencies) calls, all queued at t=0, as early as `schedule` allows.

    Event-driven fake time: the next event is a grant, a send (`write_aheads[i]` after the
    grant: the Start's status PATCH) or an answer. A latency of None is a call that never
    answers. Returns grant, send and answer times.
    """
    write_aheads = write_aheads or [0.0] * len(latencies)
    now, grants, sends, answers = 0.0, [], [], []
    events: list[tuple[float, str, object, float | None]] = []  # (time, "send"|"answer", slot, latency)
    for write_ahead, latency in zip(write_aheads, latencies, strict=True):
        while True:
            ready = schedule.ready_at()
            event = min(events, default=None, key=lambda item: item[0])
            if event is not None and event[0] < max(ready, now):
                events.remove(event)
                now = max(now, event[0])
                at, kind, slot, after = event
                if kind == "send":
                    slot.sent = now
                    if after is not None:
                        events.append((now + after, "answer", slot, None))
                else:
                    slot.answered = now
                continue
            assert ready != math.inf, "nothing left to wait for"
            now = max(now, ready)
            break
        slot = schedule.grant(now)
        grants.append(now)
        sends.append(now + write_ahead)
        answers.append(None if latency is None else now + write_ahead + latency)
        events.append((now + write_ahead, "send", slot, latency))
    return grants, sends, answers


def max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    most, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window - 1e-9:  # half-open windows, float-tolerant
            start += 1
        most = max(most, end - start + 1)
    return most


@pytest.mark.parametrize("burst", [1, 5, 10])
@pytest.mark.parametrize("seed", range(5))
def test_service_never_sees_more_than_rate_per_window(burst, seed):
    rng = random.Random(seed)
    rate, window, transit = 10, 1.0, 0.5
    latencies = [rng.choice([0.0, 0.001, 0.05, 0.3, 0.8, None]) for _ in range(300)]
    _, sends, answers = simulate(Grants(rate, window, burst, transit), latencies)
    # The service may receive a call at any moment between its send and its answer
    # (or send + max_transit): try the worst of both ends for each call.
    for _ in range(20):
        arrivals = [
            s if rng.random() < 0.5 else min(a if a is not None else s + transit, s + transit)
            for s, a in zip(sends, answers, strict=True)
        ]
        assert max_in_window(arrivals, window) <= rate


@pytest.mark.parametrize("seed", range(5))
def test_a_slow_write_ahead_does_not_let_calls_bunch_up(seed):
    """While the apiserver is slow, a Start's write-ahead between grant and send takes
    seconds: calls granted a window apart must still not leave together."""
    rng = random.Random(seed)
    rate, window, transit = 10, 1.0, 0.5
    write_aheads = [rng.choice([0.02, 0.5, 2.5]) if i < 60 else 0.02 for i in range(300)]
    latencies = [rng.choice([0.01, 0.05, 0.3, None]) for _ in range(300)]
    _, sends, answers = simulate(Grants(rate, window, 1, transit), latencies, write_aheads)
    assert max_in_window(sends, window) <= rate
    assert all(a is None or a >= s for s, a in zip(sends, answers, strict=True))


def test_throughput_is_rate_per_window_plus_latency():
    grants, _, _ = simulate(Grants(50, 1.0, 1, 1.0), [0.0] * 1000)
    assert grants[-1] == pytest.approx(19.98)  # evenly spaced 20 ms apart
    grants, _, _ = simulate(Grants(50, 1.0, 1, 1.0), [0.01] * 1000)
    assert grants[-1] == pytest.approx(19 * 1.01 + 0.98, abs=0.02)  # window + latency per 50 calls


def test_burst_lets_calls_go_back_to_back():
    grants, _, _ = simulate(Grants(10, 1.0, 4, 1.0), [0.0] * 6)
    assert grants == pytest.approx([0, 0, 0, 0, 0.1, 0.2])


def test_a_hung_call_stalls_the_others_at_most_max_transit():
    grants, _, _ = simulate(Grants(2, 1.0, 1, 0.5), [None, 0.0, 0.0, 0.0])
    # Call 2 waits for call 0, assumed received by 0.5 s; call 3 for call 1, answered at 0.5 s.
    assert grants == pytest.approx([0, 0.5, 1.5, 2.0])


@pytest.mark.parametrize("args", [(0, 1.0, 1, 1.0), (5, 1.0, 6, 1.0), (5, 0, 1, 1.0), (5, 1.0, 0, 1.0)])
def test_invalid_settings(args):
    with pytest.raises(ValueError):
        Grants(*args)
    with pytest.raises(ValueError):
        Budgets(*args)
    with pytest.raises(ValueError):
        AccountBudget(*args)


class FakeClock:
    """Time moves only when the test says so. The budget's timers still fire in real time
    (after `ready - now` of these units, so keep windows small): each sees the clock as set."""

    def __init__(self) -> None:
        self.t = 0.0
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.t


async def settle(predicate, timeout: float = 5.0) -> None:
    """Let the event loop run until `predicate()` holds (a guard against hanging, not a timing)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.001)


class Queue:
    """Callers of one budget, each recording when it was granted."""

    def __init__(self, budget: AccountBudget, clock: FakeClock) -> None:
        self.budget, self.clock = budget, clock
        self.granted: list[tuple[str, float]] = []
        self.tasks: dict[str, asyncio.Task] = {}

    async def arrive(self, name: str, priority: Priority) -> None:
        """Queue a caller and wait until it is in the queue: arrival order is the test's."""
        depth = self.budget.waiting

        async def call() -> None:
            self.budget.sending(await self.budget.acquire(priority))
            self.granted.append((name, self.clock.t))

        self.tasks[name] = asyncio.create_task(call())
        await settle(lambda: self.budget.waiting == depth + 1)

    async def advance(self, to: float, grants: int) -> None:
        self.clock.t = to
        await settle(lambda: len(self.granted) == grants)

    def names(self) -> list[str]:
        return [name for name, _ in self.granted]


async def test_waiters_are_served_first_come_first_served():
    clock = FakeClock()
    budget = AccountBudget(rate=1, window=0.01, max_transit=0.0, clock=clock)
    queue = Queue(budget, clock)
    budget.sending(await budget.acquire(Priority.DESCRIBE))  # t=0: nothing waits for it
    for name in ("a", "b", "c", "d"):
        await queue.arrive(name, Priority.DESCRIBE)
    for step in range(1, 6):
        if step == 2:
            await queue.arrive("late", Priority.DESCRIBE)  # arrives while b, c, d still wait: after them
        await queue.advance(step, grants=step)  # one grant per step: the next is a window later
    assert queue.granted == [("a", 1.0), ("b", 2.0), ("c", 3.0), ("d", 4.0), ("late", 5.0)]
    assert budget.waiting == 0 and budget.last_granted == 5.0


async def test_a_stop_goes_before_the_describes_that_came_first():
    clock = FakeClock()
    budget = AccountBudget(rate=1, window=0.01, max_transit=0.0, clock=clock)
    queue = Queue(budget, clock)
    budget.sending(await budget.acquire(Priority.DESCRIBE))
    arrivals = [
        ("d1", Priority.DESCRIBE),
        ("d2", Priority.DESCRIBE),
        ("u1", Priority.UPDATE),
        ("s1", Priority.START),
        ("stop1", Priority.STOP),
        ("d3", Priority.DESCRIBE),
        ("stop2", Priority.STOP),
        ("s2", Priority.START),
    ]
    for name, priority in arrivals:
        await queue.arrive(name, priority)
    for step in range(1, len(arrivals) + 1):
        await queue.advance(step, grants=step)
    assert queue.names() == ["stop1", "stop2", "s1", "s2", "u1", "d1", "d2", "d3"]


async def test_starts_into_empty_channels_go_last_and_take_only_their_share():
    clock = FakeClock()
    u = 1 / 64  # the spacing of 4 calls per window; the waiting share (1/4) is 1 call per window
    budget = AccountBudget(rate=4, window=4 * u, max_transit=0.0, waiting_share=0.25, clock=clock)
    queue = Queue(budget, clock)
    budget.sending(await budget.acquire(Priority.DESCRIBE))  # t=0
    for name in ("w1", "w2", "w3", "s1"):
        await queue.arrive(name, Priority.WAITING if name.startswith("w") else Priority.START)
    await queue.advance(u, grants=1)
    await queue.advance(2 * u, grants=2)
    await queue.arrive("s2", Priority.START)  # a Start arriving later still goes first
    await queue.advance(3 * u, grants=3)
    clock.t = 5 * u  # the quota would let w2 go; its share would not
    await asyncio.sleep(0.1)
    assert len(queue.granted) == 3
    await queue.advance(6 * u, grants=4)  # the next waiting call a window after the last one
    await queue.advance(10 * u, grants=5)
    assert queue.granted == [("s1", u), ("w1", 2 * u), ("s2", 3 * u), ("w2", 6 * u), ("w3", 10 * u)]


async def test_a_stop_arriving_late_overtakes_the_queue():
    clock = FakeClock()
    budget = AccountBudget(rate=1, window=0.01, max_transit=0.0, clock=clock)
    queue = Queue(budget, clock)
    budget.sending(await budget.acquire(Priority.DESCRIBE))
    for name in ("d1", "d2", "d3"):
        await queue.arrive(name, Priority.DESCRIBE)
    await queue.advance(1, grants=1)
    await queue.arrive("stop", Priority.STOP)
    await queue.advance(2, grants=2)
    await queue.advance(3, grants=3)
    assert queue.names() == ["d1", "stop", "d2"]


async def test_a_cancelled_waiter_frees_its_place():
    clock = FakeClock()
    budget = AccountBudget(rate=1, window=0.01, max_transit=0.0, clock=clock)
    queue = Queue(budget, clock)
    depth = metrics.QUOTA_QUEUE_DEPTH._value.get()
    budget.sending(await budget.acquire(Priority.DESCRIBE))
    for name in ("a", "b", "c", "d"):
        await queue.arrive(name, Priority.DESCRIBE)
    assert metrics.QUOTA_QUEUE_DEPTH._value.get() == depth + 4
    for name in ("a", "c"):  # the head, and one behind it
        queue.tasks[name].cancel()
    await settle(lambda: queue.tasks["a"].done() and queue.tasks["c"].done())
    assert budget.waiting == 2 and metrics.QUOTA_QUEUE_DEPTH._value.get() == depth + 2
    await queue.advance(1, grants=1)  # the first grant goes to b, not to the head that left
    await queue.advance(2, grants=2)
    assert queue.granted == [("b", 1.0), ("d", 2.0)]
    for name in ("a", "c"):
        with pytest.raises(asyncio.CancelledError):
            await queue.tasks[name]
    assert budget.waiting == 0 and metrics.QUOTA_QUEUE_DEPTH._value.get() == depth


# Powers of two: exact in floats.
WINDOW, TRANSIT, TIMEOUT = 2**-6, 2**-7, 2**-9


async def test_a_call_without_answer_counts_until_max_transit():
    clock = FakeClock()
    budget = AccountBudget(rate=1, window=WINDOW, max_transit=TRANSIT, clock=clock)
    queue = Queue(budget, clock)
    budget.sending(await budget.acquire(Priority.STOP))  # granted at 0, then no answer: it may still reach the service
    clock.t = TIMEOUT
    await queue.arrive("next", Priority.STOP)
    clock.t = TIMEOUT + WINDOW  # a window after the timeout is not enough...
    reads = clock.reads
    await settle(lambda: clock.reads >= reads + 3)  # the budget looked at this time, more than once
    assert queue.granted == []
    await queue.advance(TRANSIT + WINDOW, grants=1)  # ...a window after grant + max_transit is
    assert queue.granted == [("next", TRANSIT + WINDOW)]


async def test_an_answered_call_counts_until_its_answer():
    clock = FakeClock()
    budget = AccountBudget(rate=1, window=WINDOW, max_transit=TRANSIT, clock=clock)
    queue = Queue(budget, clock)
    slot = await budget.acquire(Priority.STOP)
    clock.t = TIMEOUT
    budget.answered(slot)  # received by now for certain
    assert slot.answered == TIMEOUT
    await queue.arrive("next", Priority.STOP)
    await queue.advance(TIMEOUT + WINDOW, grants=1)
    assert queue.granted == [("next", TIMEOUT + WINDOW)]


async def test_tiny_waits_do_not_spin():
    clock = FakeClock()
    budget = AccountBudget(rate=1, window=1.0, clock=clock, min_sleep=0.05)
    budget.answered(await budget.acquire(Priority.DESCRIBE))
    clock.t = 1.0 - 1e-9
    waiter = asyncio.create_task(budget.acquire(Priority.DESCRIBE))
    await settle(lambda: budget.waiting == 1)
    loop = asyncio.get_running_loop()
    assert budget._timer is not None and budget._timer.when() - loop.time() > 0.04  # not 1e-9
    clock.t = 1.0
    assert (await asyncio.wait_for(waiter, 5)).granted == 1.0


SHARED = [p for p in Priority if p != Priority.WAITING]  # WAITING has a share of its own


async def test_real_tasks_respect_the_rate():
    rate, window, calls, tasks = 10, 0.2, 60, 12
    budget = AccountBudget(rate=rate, window=window)
    depth = metrics.QUOTA_QUEUE_DEPTH._value.get()
    entered: list[float] = []

    async def worker() -> None:
        for _ in range(calls // tasks):
            slot = await budget.acquire(random.choice(SHARED))
            entered.append(time.monotonic())
            await asyncio.sleep(random.uniform(0, 0.005))
            budget.answered(slot)

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    elapsed = time.monotonic() - started

    assert len(entered) == calls
    assert max_in_window(entered, window) <= rate
    assert (calls / rate - 1) * window <= elapsed < (calls / rate) * window * 1.5
    assert budget.waiting == 0 and metrics.QUOTA_QUEUE_DEPTH._value.get() == depth


def test_budgets_have_one_budget_per_account():
    budgets = Budgets(rate=5)
    assert budgets.of("LTAI-a") is budgets.of("LTAI-a")
    assert budgets.of("LTAI-a") is not budgets.of("LTAI-b")
    assert set(budgets.all()) == {"LTAI-a", "LTAI-b"}
