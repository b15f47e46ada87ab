"""/healthz fails on a stalled operator, a stuck watch, poller or quota queue, and only then."""

from rtc_recording.controller.dispatch import Dispatcher
from rtc_recording.controller.health import Health
from rtc_recording.controller.index import Index
from rtc_recording.decide.ownership import Sealer


class FakeKube:
    def __init__(self, items):
        self.items, self.calls = items, []

    async def list_recordings(self, namespaces, task_id=None, label_selector=None):
        self.calls.append(list(namespaces))
        return [
            i
            for i in self.items
            if (not namespaces or i["metadata"]["namespace"] in namespaces)
            and (
                label_selector is None
                or "=".join(next(iter(i["metadata"].get("labels", {}).items()), ())) == label_selector
            )
        ]


class FakePoller:
    last_tick = 0.0


class FakeBudget:
    def __init__(self, waiting, last_granted):
        self.waiting, self.last_granted = waiting, last_granted


class FakeBudgets:
    def __init__(self, **budgets):
        self._budgets = budgets

    def all(self):
        return self._budgets


def obj(name, rv, ns="a", generation=1, **meta):
    return {
        "metadata": {
            "namespace": ns,
            "name": name,
            "uid": f"uid-{name}",
            "resourceVersion": rv,
            "generation": generation,
            **meta,
        }
    }


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


def health(kube, now, poller_tick=None, budgets=None, namespaces=()):
    """Events seen via h.see() happen at time 0 unless h.at() moved the clock; the probe runs at `now`."""
    clock = Clock()
    index = Index(Sealer(b"k" * 32), clock=clock)
    dispatcher = Dispatcher(handler=None, started="", limit=0, clock=clock)  # no slot: what needs a handler waits
    h = Health(
        kube,
        index,
        FakePoller(),
        dispatcher,
        budgets or FakeBudgets(),
        stuck_seconds=120,
        namespaces=list(namespaces),
        clock=clock,
    )
    h.poller.last_tick = now if poller_tick is None else poller_tick
    h.at = lambda t: setattr(clock, "now", t)
    h.see = lambda o, handled=True: (index.saw("ADDED", o), None if handled else dispatcher.saw("ADDED", o))
    return h


async def test_a_quiet_watch_is_fine_when_nothing_changed():
    kube = FakeKube([obj("r", "5")])
    h = health(kube, now=500)
    h.see(obj("r", "5"))
    h.at(500)
    assert await h.problems() == []


async def test_a_watch_behind_the_apiserver_is_stuck():
    kube = FakeKube([obj("r", "6")])
    h = health(kube, now=500)
    h.see(obj("r", "5"))
    h.at(500)
    assert await h.problems() == ["watch is behind the apiserver for 1 objects, e.g. a/r"]
    h.at(510)
    assert await h.problems() == [] and len(kube.calls) == 1  # listed at most once per stuck period


async def test_a_recent_event_needs_no_list():
    kube = FakeKube([obj("r", "6")])
    h = health(kube, now=60)
    h.at(60)
    assert await h.problems() == [] and kube.calls == []


async def test_a_namespaced_install_lists_only_its_namespaces():
    kube = FakeKube([obj("r", "1", ns="a"), obj("s", "1", ns="b")])
    h = health(kube, now=500, namespaces=["a", "b"])
    h.see(obj("r", "1", ns="a"))
    h.see(obj("s", "1", ns="b"))
    h.at(500)
    assert await h.problems() == [] and kube.calls == [["a", "b"]]


async def test_objects_waiting_for_a_handler_too_long_are_a_stall():
    h = health(FakeKube([]), now=0, poller_tick=10**6)  # the poller is fine here
    h.see(obj("new", "1"), handled=False)  # e.g. a start-up whose handler never comes
    h.see(obj("done", "1"))
    h.at(100)
    h.index.last_event = 100
    assert await h.problems() == []
    h.at(130)
    h.index.last_event = 130
    assert await h.problems() == ["1 objects wait for a handler for more than 120 s, e.g. a/new"]


async def test_a_stopped_poller_or_a_stuck_quota_queue_is_unhealthy():
    h = health(
        FakeKube([]),
        now=500,
        poller_tick=300,
        budgets=FakeBudgets(acct=FakeBudget(waiting=3, last_granted=100), idle=FakeBudget(0, 0)),
    )
    h.at(500)
    h.index.last_event = 500  # the watch is fine here
    problems = await h.problems()
    assert problems[0] == "poller has not ticked for 200 s"
    assert problems[1].startswith("3 calls wait for the quota of 'acct', none granted for 400 s")
    assert len(problems) == 2  # an idle budget with nobody waiting is fine
