"""/healthz fails on a stuck watch, poller or quota queue, and only then."""

from rtc_recording.health import Health


class FakeKube:
    def __init__(self, items):
        self.items, self.calls = items, []

    async def list_recordings(self, namespaces, task_id=None):
        self.calls.append(list(namespaces))
        return [i for i in self.items if not namespaces or i["metadata"]["namespace"] in namespaces]


class FakePoller:
    last_tick = 0.0


class FakeLimiter:
    def __init__(self, waiting, last_granted):
        self.waiting, self.last_granted = waiting, last_granted


class FakeQuotas:
    def __init__(self, **limiters):
        self._limiters = limiters

    def limiters(self):
        return self._limiters


def obj(name, rv, ns="a", **meta):
    return {"metadata": {"namespace": ns, "name": name, "resourceVersion": rv, **meta}}


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


def health(kube, now, poller_tick=None, quotas=None, namespaces=()):
    """Events seen via h.saw() happen at time 0; the probe then runs at `now`."""
    clock = Clock()
    h = Health(kube, FakePoller(), quotas or FakeQuotas(), stuck_seconds=120, namespaces=list(namespaces),
               clock=clock)
    h.poller.last_tick = now if poller_tick is None else poller_tick
    h.at = lambda t: setattr(clock, "now", t)
    return h


async def test_a_quiet_watch_is_fine_when_nothing_changed():
    kube = FakeKube([obj("r", "5")])
    h = health(kube, now=500)
    h.saw(obj("r", "5"))
    h.at(500)
    assert await h.problems() == []


async def test_a_watch_behind_the_apiserver_is_stuck():
    kube = FakeKube([obj("r", "6"), obj("gone", "9", deletionTimestamp="2026-01-01T00:00:00Z")])
    h = health(kube, now=500)
    h.saw(obj("r", "5"))
    h.at(500)
    assert await h.problems() == ["watch is behind the apiserver for 1 objects, e.g. a/r"]


async def test_a_recent_event_needs_no_list():
    kube = FakeKube([obj("r", "6")])
    h = health(kube, now=60)
    h.at(60)
    assert await h.problems() == [] and kube.calls == []


async def test_a_namespaced_install_lists_only_its_namespaces():
    kube = FakeKube([obj("r", "1", ns="a"), obj("s", "1", ns="b")])
    h = health(kube, now=500, namespaces=["a", "b"])
    h.saw(obj("r", "1", ns="a"))
    h.saw(obj("s", "1", ns="b"))
    h.at(500)
    assert await h.problems() == [] and kube.calls == [["a", "b"]]


async def test_a_stopped_poller_or_a_stuck_quota_queue_is_unhealthy():
    h = health(FakeKube([]), now=500, poller_tick=300,
               quotas=FakeQuotas(acct=FakeLimiter(waiting=3, last_granted=100), idle=FakeLimiter(0, 0)))
    h.at(500)
    h.last_event = 500  # the watch is fine here
    problems = await h.problems()
    assert problems[0] == "poller has not ticked for 200 s"
    assert problems[1].startswith("3 calls wait for the quota of 'acct', none granted for 400 s")
    assert len(problems) == 2  # an idle limiter with nobody waiting is fine
