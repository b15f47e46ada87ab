"""Backoff and budget of the idempotent verbs (fake sleep, fake clock)."""

from __future__ import annotations

import pytest

from rtc_recording.aliyun import RetryPolicy
from rtc_recording.cloud import Invalid, NotFound, Throttled, Transient, UnknownOutcome


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def failing(*errors: Exception, result: str = "ok", time: FakeTime | None = None, cost: float = 0.0):
    """A call that raises `errors` in turn, then returns `result`; each attempt costs `cost` s."""
    pending = list(errors)
    calls = []

    def call() -> str:
        calls.append(1)
        if time is not None:
            time.now += cost
        if pending:
            raise pending.pop(0)
        return result

    call.calls = calls
    return call


def policy(time: FakeTime, **kw) -> RetryPolicy:
    return RetryPolicy(sleep=time.sleep, clock=time.clock, jitter=lambda: 1.0, **kw)


def test_exponential_backoff_capped():
    time = FakeTime()
    p = policy(time, max_attempts=6, max_seconds=100, base_delay=0.2, max_delay=1.0)
    call = failing(Transient("InternalError"), Throttled("Throttling.User"), Transient("x"), Transient("x"),
                   Transient("x"))
    assert p.run(call, "describe t") == "ok"
    assert time.sleeps == pytest.approx([0.2, 0.4, 0.8, 1.0, 1.0])
    assert len(call.calls) == 6


def test_jitter_scales_the_delay():
    time = FakeTime()
    p = RetryPolicy(sleep=time.sleep, clock=time.clock, jitter=lambda: 0.25, base_delay=0.4)
    p.run(failing(Transient("x"), Transient("x")), "stop t")
    assert time.sleeps == pytest.approx([0.1, 0.2])


def test_gives_up_after_max_attempts():
    time = FakeTime()
    call = failing(*[Throttled("Throttling.User")] * 10)
    with pytest.raises(Throttled):
        policy(time, max_attempts=3, max_seconds=100).run(call, "stop t")
    assert len(call.calls) == 3 and len(time.sleeps) == 2


def test_no_retry_starts_after_the_budget():
    time = FakeTime()
    # Each attempt takes 2 s (read timeouts): attempts start at 0, 2.5, 5.0; the next would at 7.5.
    call = failing(*[Transient("ReadTimeout")] * 10, time=time, cost=2.0)
    with pytest.raises(Transient):
        policy(time, max_attempts=10, max_seconds=5, base_delay=0.5, max_delay=0.5).run(call, "describe t")
    assert len(call.calls) == 3 and time.sleeps == [0.5, 0.5]


@pytest.mark.parametrize("error", [Invalid("InvalidParameter.AppId"), NotFound("NotFound.Task"),
                                   UnknownOutcome("ReadTimeout"), ValueError("bug")])
def test_does_not_retry_what_repeating_cannot_fix(error):
    time = FakeTime()
    call = failing(error)
    with pytest.raises(type(error)):
        policy(time).run(call, "stop t")
    assert len(call.calls) == 1 and time.sleeps == []
