"""leader.Lease against the real apiserver, with short timings: who may lead, and when.

The safety property (docs/ha.md): a replica that can no longer renew stops (on_lost) before
any other replica may take the Lease; a standby waits the whole lease duration, on its own
clock, after the last change it saw."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest

from rtc_recording.api.names import EVENTS_MARK
from rtc_recording.controller.leader import Lease, Renewal, Timing
from rtc_recording.kube.client import Kube
from rtc_recording.kube.config import Connection
from rtc_recording.settings import Settings

pytestmark = pytest.mark.cluster

TIMING = Timing(duration=3, renew_deadline=1.5, retry_period=0.3)


class Replica:
    """A Lease contender in this process; on_lost records when it would have exited."""

    def __init__(self, cluster, name: str, identity: str, timing: Timing = TIMING):
        self.kube = Kube(Connection.from_kubeconfig(str(cluster.kubeconfig)))
        self.lost: list[tuple[float, str]] = []
        self.lease = Lease(
            self.kube,
            "default",
            name,
            identity,
            timing,
            on_lost=lambda reason: self.lost.append((time.monotonic(), reason)),
        )
        self.renewal: Renewal | None = None
        self.led_at: float | None = None

    async def lead(self) -> None:
        await self.lease.acquire()
        self.led_at = time.monotonic()
        self.renewal = Renewal(self.lease)

    async def stop_renewing(self) -> None:
        if self.renewal:
            await asyncio.to_thread(self.renewal.stop)
            self.renewal = None

    async def sigkill(self) -> None:
        """What a SIGKILL leaves: no renewal, no release, no watchdog."""
        self.lease._stop.set()
        self.lease.leading = False
        await self.stop_renewing()

    async def close(self) -> None:
        await self.sigkill()
        await self.kube.close()


@pytest.fixture
async def replicas(cluster):
    """replicas(identity): contenders for one fresh Lease."""
    made: list[Replica] = []
    name = f"lease-{uuid.uuid4().hex[:8]}"

    def make(identity: str, timing: Timing = TIMING) -> Replica:
        made.append(Replica(cluster, name, identity, timing))
        return made[-1]

    yield make
    for replica in made:
        await replica.close()


def lease_of(cluster, replica: Replica) -> dict:
    return cluster.api.request("GET", replica.lease.path)["spec"]


async def test_a_standby_takes_over_only_after_a_whole_lease_duration(cluster, replicas):
    a, b = replicas("a"), replicas("b")
    await a.lead()
    assert lease_of(cluster, a)["holderIdentity"] == "a"
    assert not await b.lease.try_acquire()  # held and renewed: b stands by
    standby = asyncio.create_task(b.lead())
    await asyncio.sleep(2 * TIMING.duration)
    assert not standby.done(), "b took a Lease that a kept renewing"
    await a.sigkill()
    last_renewal = a.lease.renewed_at
    await asyncio.wait_for(standby, 3 * TIMING.duration)
    # Safety: b acted no earlier than D after a's last renewal was sent.
    assert b.led_at - last_renewal >= TIMING.duration
    spec = lease_of(cluster, b)
    assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1
    assert not a.lost and not b.lost


async def test_a_leader_that_cannot_renew_stops_before_the_standby_takes_over(cluster, replicas):
    a, b = replicas("a"), replicas("b")
    await a.lead()
    standby = asyncio.create_task(b.lead())
    await asyncio.sleep(1)

    async def partitioned(*args, **kwargs):
        raise ConnectionError("partitioned from the apiserver")

    a.renewal.kube.request = partitioned  # a runs on, but none of its renewals arrives
    await asyncio.wait_for(standby, 3 * TIMING.duration)
    [(lost_at, reason)] = a.lost
    assert "no renewal" in reason
    assert lost_at - a.lease.renewed_at <= TIMING.renew_deadline + 0.5  # the watchdog's promptness
    # a stopped before b started acting, by (almost) the whole margin D - R.
    assert b.led_at - lost_at >= TIMING.duration - TIMING.renew_deadline - 0.5
    assert not a.lease.leading


async def test_a_leader_whose_event_loop_is_busy_for_longer_than_the_renew_deadline_keeps_the_lease(cluster, replicas):
    """Busy is not dead: at a restart the operator's loop may run thousands of handlers for longer
    than the renew deadline; the renewal has a thread, a loop and a connection of its own."""
    a, b = replicas("a"), replicas("b")
    await a.lead()
    before = lease_of(cluster, a)["renewTime"]
    time.sleep(3 * TIMING.renew_deadline)  # the whole event loop held, as by a handler that never yields
    assert not a.lost, a.lost
    assert lease_of(cluster, a)["renewTime"] != before  # renewed meanwhile, not merely not yet noticed
    assert not await b.lease.try_acquire()


async def test_a_leader_whose_lease_was_taken_stops_at_its_next_renewal(cluster, replicas):
    a = replicas("a")
    await a.lead()
    spec = lease_of(cluster, a)
    patch = {"spec": {**spec, "holderIdentity": "intruder"}}
    cluster.kubectl("patch", "lease", a.lease.name, "-n", "default", "--type=merge", "-p", json.dumps(patch))
    taken = time.monotonic()
    for _ in range(50):
        if a.lost:
            break
        await asyncio.sleep(0.1)
    [(lost_at, reason)] = a.lost
    assert "intruder" in reason and lost_at - taken <= 2 * TIMING.retry_period + 0.5


async def test_a_restarted_container_takes_its_own_lease_back_and_others_wait(cluster, replicas):
    a = replicas("pod-a")
    await a.lead()
    await a.sigkill()
    other = replicas("pod-b")
    assert not await other.lease.try_acquire()
    again = replicas("pod-a")  # the same pod name: the previous container is dead
    assert await again.lease.try_acquire()
    assert lease_of(cluster, again)["leaseTransitions"] == 0


async def test_a_released_lease_is_taken_within_a_retry_period(cluster, replicas):
    a, b = replicas("a"), replicas("b")
    await a.lead()
    standby = asyncio.create_task(b.lead())
    await asyncio.sleep(1)
    await a.stop_renewing()
    released = time.monotonic()
    await a.lease.release()
    await asyncio.wait_for(standby, TIMING.duration)
    assert b.led_at - released <= 2 * TIMING.retry_period + 0.5
    assert not a.lost  # releasing is not losing


async def test_of_two_standbys_racing_for_an_expired_lease_one_wins(cluster, replicas):
    a, b, c = replicas("a"), replicas("b"), replicas("c")
    await a.lead()
    assert not await b.lease.try_acquire() and not await c.lease.try_acquire()
    await a.sigkill()
    await asyncio.sleep(TIMING.duration + 0.5)
    won = await asyncio.gather(b.lease.try_acquire(), c.lease.try_acquire())
    assert sorted(won) == [False, True]
    assert lease_of(cluster, a)["holderIdentity"] == ("b" if won[0] else "c")


async def test_the_next_leader_reads_the_events_mark_each_renewal_and_the_release_wrote(cluster, replicas):
    """Which pending Events the leader posted (controller/executor/writes.py) travels on the Lease."""
    a, b = replicas("a"), replicas("b")
    await a.lead()
    marks = iter(f"2026-01-01T00:00:{i:02d}.000000Z" for i in range(60))
    a.lease.mark = lambda: next(marks)
    await asyncio.sleep(3 * TIMING.retry_period)
    renewed = cluster.api.request("GET", a.lease.path)["metadata"]["annotations"][EVENTS_MARK]
    assert renewed >= "2026-01-01T00:00:01.000000Z"
    await a.stop_renewing()
    await a.lease.release()
    await b.lead()
    assert b.lease.previous_mark > renewed  # the release's own, written last


def test_timings_that_would_let_two_replicas_act_are_refused(monkeypatch):
    with pytest.raises(ValueError):
        Timing(duration=10, renew_deadline=9.5, retry_period=2)  # no margin for the exit
    with pytest.raises(ValueError):
        Timing(duration=10, renew_deadline=2, retry_period=2)  # no retry within the deadline
    monkeypatch.setenv("RTCREC_LEASE_RENEW_DEADLINE_SECONDS", "10")
    with pytest.raises(ValueError, match="renew deadline"):
        Settings()
