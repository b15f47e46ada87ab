"""The quota limiter: rate bound whatever the latency, FIFO, no spinning."""

from __future__ import annotations

import random
import threading
import time

import pytest

from rtc_recording import metrics
from rtc_recording.quota import QuotaLimiter, QuotaRegistry, Schedule


def simulate(schedule: Schedule, latencies: list[float | None]) -> tuple[list[float], list[float | None]]:
    """Grant len(latencies) calls, all queued at t=0, as early as `schedule` allows.

    Event-driven fake time: the next event is either a grant or an answer. A latency of
    None is a call that never answers. Returns grant and answer times.
    """
    now, grants, answers, in_flight = 0.0, [], [], []  # in_flight: (answer time, slot)
    for latency in latencies:
        while True:
            ready = schedule.ready_at()
            next_answer = min(in_flight, default=None, key=lambda item: item[0])
            if next_answer is not None and next_answer[0] < max(ready, now):
                in_flight.remove(next_answer)
                now = max(now, next_answer[0])
                next_answer[1].answered = now
                continue
            now = max(now, ready)
            break
        slot = schedule.grant(now)
        grants.append(now)
        answers.append(None if latency is None else now + latency)
        if latency is not None:
            in_flight.append((now + latency, slot))
    return grants, answers


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
    grants, answers = simulate(Schedule(rate, window, burst, transit), latencies)
    # The service may receive a call at any moment between its grant and its answer
    # (or grant + max_transit): try the worst of both ends for each call.
    for _ in range(20):
        arrivals = [
            g if rng.random() < 0.5 else min(a if a is not None else g + transit, g + transit)
            for g, a in zip(grants, answers)
        ]
        assert max_in_window(arrivals, window) <= rate


def test_throughput_is_rate_per_window_plus_latency():
    grants, _ = simulate(Schedule(50, 1.0, 1, 1.0), [0.0] * 1000)
    assert grants[-1] == pytest.approx(19.98)  # evenly spaced 20 ms apart
    grants, _ = simulate(Schedule(50, 1.0, 1, 1.0), [0.01] * 1000)
    assert grants[-1] == pytest.approx(19 * 1.01 + 0.98, abs=0.02)  # window + latency per 50 calls


def test_burst_lets_calls_go_back_to_back():
    grants, _ = simulate(Schedule(10, 1.0, 4, 1.0), [0.0] * 6)
    assert grants == pytest.approx([0, 0, 0, 0, 0.1, 0.2])


def test_a_hung_call_stalls_the_others_at_most_max_transit():
    grants, _ = simulate(Schedule(2, 1.0, 1, 0.5), [None, 0.0, 0.0, 0.0])
    # Call 2 waits for call 0, assumed received by 0.5 s; call 3 for call 1, answered at 0.5 s.
    assert grants == pytest.approx([0, 0.5, 1.5, 2.0])


@pytest.mark.parametrize("args", [(0, 1.0, 1, 1.0), (5, 1.0, 6, 1.0), (5, 0, 1, 1.0), (5, 1.0, 0, 1.0)])
def test_invalid_settings(args):
    with pytest.raises(ValueError):
        Schedule(*args)
    with pytest.raises(ValueError):
        QuotaRegistry(*args)


class FakeClock:
    """Time moves only when the test says so; waiters poll briefly in real time."""

    def __init__(self) -> None:
        self.t = 0.0
        self.waits: list[float] = []

    def now(self) -> float:
        return self.t

    def wait(self, turn: threading.Condition, timeout: float) -> None:
        self.waits.append(timeout)
        turn.wait(0.002)


def wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_waiters_are_served_first_come_first_served():
    clock = FakeClock()
    limiter = QuotaLimiter(rate=1, window=1.0, clock=clock)
    granted: list[tuple[str, float]] = []

    def call(name: str) -> None:
        with limiter.slot():
            granted.append((name, clock.now()))

    threads = []

    def enqueue(name: str) -> None:
        depth = limiter.waiting
        thread = threading.Thread(target=call, args=(name,))
        thread.start()
        threads.append(thread)
        wait_until(lambda: limiter.waiting == depth + 1)

    call("first")  # t=0: nothing waits for it
    for name in ("a", "b", "c", "d"):
        enqueue(name)
    for step in range(1, 6):
        if step == 2:
            enqueue("late")  # arrives while a, b, c, d still wait: served after them
        clock.t = float(step)
        wait_until(lambda: len(granted) == step + 1)
    for thread in threads:
        thread.join()

    assert granted == [("first", 0.0), ("a", 1.0), ("b", 2.0), ("c", 3.0), ("d", 4.0), ("late", 5.0)]
    assert limiter.waiting == 0 and limiter.last_granted == 5.0
    assert limiter.waited_seconds == pytest.approx(1 + 2 + 3 + 4 + (5 - 1))


def test_a_call_without_answer_counts_until_max_transit():
    clock = FakeClock()
    limiter = QuotaLimiter(rate=1, window=1.0, max_transit=0.5, clock=clock)
    with pytest.raises(TimeoutError), limiter.slot():
        clock.t = 0.2
        raise TimeoutError  # no answer: the request may still reach the service
    granted = []
    thread = threading.Thread(target=lambda: limiter.slot().__enter__() or granted.append(clock.now()))
    thread.start()
    wait_until(lambda: limiter.waiting == 1)
    clock.t = 1.2  # a window after the timeout is not enough...
    time.sleep(0.02)
    assert granted == []
    clock.t = 1.5  # ...a window after grant + max_transit is
    thread.join()
    assert granted == [1.5]


def test_tiny_waits_do_not_spin():
    clock = FakeClock()
    limiter = QuotaLimiter(rate=1, window=1.0, clock=clock, min_sleep=0.05)
    with limiter.slot():
        pass
    clock.t = 1.0 - 1e-9
    thread = threading.Thread(target=lambda: limiter.slot().__enter__())
    thread.start()
    wait_until(lambda: clock.waits)
    clock.t = 1.0
    thread.join()
    assert min(clock.waits) == 0.05


def test_real_threads_respect_the_rate():
    rate, window, calls, threads = 10, 0.2, 60, 12
    limiter = QuotaLimiter(rate=rate, window=window)
    depth = metrics.QUOTA_QUEUE_DEPTH._value.get()
    entered: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(calls // threads):
            with limiter.slot():
                with lock:
                    entered.append(time.monotonic())
                time.sleep(random.uniform(0, 0.005))

    started = time.monotonic()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    elapsed = time.monotonic() - started

    assert len(entered) == calls
    assert max_in_window(entered, window) <= rate
    assert (calls / rate - 1) * window <= elapsed < (calls / rate) * window * 1.5
    assert limiter.waiting == 0 and metrics.QUOTA_QUEUE_DEPTH._value.get() == depth


def test_registry_has_one_limiter_per_account():
    registry = QuotaRegistry(rate=5)
    assert registry.limiter("LTAI-a") is registry.limiter("LTAI-a")
    assert registry.limiter("LTAI-a") is not registry.limiter("LTAI-b")
    assert set(registry.limiters()) == {"LTAI-a", "LTAI-b"}
