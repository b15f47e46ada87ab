"""The dispatcher: which objects need a handler (Kopf's causes, in memory), one at a time per
object, a bounded number at once, fresh work first and each line first come first served."""

import asyncio

from prometheus_client import REGISTRY

from rtc_recording.api.names import STOP_FINALIZER
from rtc_recording.controller.dispatch import Dispatcher
from rtc_recording.controller.executor import RetryLater


def obj(name, generation=1, rv="1", created="2026-01-01T00:00:00Z", status=None, **meta):
    return {
        "metadata": {
            "namespace": "ns",
            "name": name,
            "uid": f"uid-{name}",
            "generation": generation,
            "resourceVersion": rv,
            "creationTimestamp": created,
            **meta,
        },
        "spec": {},
        "status": status or {},
    }


RECORDING = {"phase": "Recording", "taskId": "t", "observedGeneration": 1}


class Calls:
    """A handler that records what it ran for and does what each call is told (`then`)."""

    def __init__(self):
        self.calls: list[tuple[str, int, str]] = []
        self.then: dict[str, list] = {}
        self.gates: dict[str, asyncio.Event] = {}

    async def __call__(self, o, retry):
        name = o["metadata"]["name"]
        self.calls.append((name, retry, o["metadata"]["resourceVersion"]))
        if name in self.gates:
            await self.gates[name].wait()
        todo = self.then.get(name)
        if todo:
            outcome = todo.pop(0)
            if outcome is not None:
                raise outcome


async def settle():
    for _ in range(20):
        await asyncio.sleep(0)


async def test_a_new_object_is_handled_once_and_our_own_status_writes_call_for_no_handler():
    calls = Calls()
    d = Dispatcher(calls, started="2026-01-01T00:00:00Z")
    d.saw("ADDED", obj("r"))
    await settle()
    d.saw("MODIFIED", obj("r", rv="2", status={"phase": "Starting"}))  # the write-ahead: same generation
    await settle()
    assert calls.calls == [("r", 0, "1")]
    d.saw("MODIFIED", obj("r", generation=2, rv="3", status={"phase": "Starting"}))  # a spec change
    await settle()
    assert calls.calls == [("r", 0, "1"), ("r", 0, "3")]


async def test_an_object_at_rest_needs_no_handler_until_its_spec_changes():
    calls = Calls()
    d = Dispatcher(calls, started="2026-01-01T00:00:00Z")
    d.saw("ADDED", obj("r", status=RECORDING))
    await settle()
    assert calls.calls == []
    d.saw("MODIFIED", obj("r", generation=2, rv="2", status=RECORDING))
    await settle()
    assert calls.calls == [("r", 0, "2")]


async def test_a_deletion_is_handled_only_while_our_finalizer_holds_it():
    calls = Calls()
    d = Dispatcher(calls, started="2026-01-01T00:00:00Z")
    deleting = {"deletionTimestamp": "2026-01-02T00:00:00Z"}
    d.saw("MODIFIED", obj("theirs", status=RECORDING, finalizers=["other/x"], **deleting))
    d.saw("MODIFIED", obj("ours", status=RECORDING, finalizers=[STOP_FINALIZER], **deleting))
    await settle()
    assert calls.calls == [("ours", 0, "1")]


async def test_one_handler_per_object_and_a_change_meanwhile_runs_it_again_with_the_latest():
    calls = Calls()
    calls.gates["r"] = asyncio.Event()
    d = Dispatcher(calls, started="2026-01-01T00:00:00Z")
    d.saw("ADDED", obj("r"))
    await settle()
    d.saw("MODIFIED", obj("r", generation=2, rv="2"))
    d.saw("MODIFIED", obj("r", generation=3, rv="3"))
    await settle()
    assert calls.calls == [("r", 0, "1")]
    calls.gates["r"].set()
    await settle()
    assert calls.calls == [("r", 0, "1"), ("r", 0, "3")]


async def test_retry_later_runs_again_after_its_delay_with_the_count_and_a_new_change_resets_it():
    calls = Calls()
    calls.then["r"] = [RetryLater(0.01, "not yet"), RetryLater(0.01, "not yet"), None]
    d = Dispatcher(calls, started="2026-01-01T00:00:00Z")
    d.saw("ADDED", obj("r"))
    d.saw("MODIFIED", obj("r", rv="2", status={"phase": "Pending"}))  # meanwhile: the retry takes the latest
    await asyncio.sleep(0.05)
    assert calls.calls == [("r", 0, "1"), ("r", 1, "2"), ("r", 2, "2")]
    calls.then["r"] = [RetryLater(10, "long")]
    d.saw("MODIFIED", obj("r", generation=2, rv="3"))
    await settle()
    d.saw("MODIFIED", obj("r", generation=3, rv="4"))  # a new cause does not wait for the timer
    await settle()
    assert calls.calls[-2:] == [("r", 0, "3"), ("r", 0, "4")]
    await d.close()


async def test_an_unexpected_error_is_tried_again_later_not_at_once(caplog):
    calls = Calls()
    calls.then["r"] = [ValueError("bug")]
    d = Dispatcher(calls, started="2026-01-01T00:00:00Z")
    d.saw("ADDED", obj("r"))
    await settle()
    d.saw("MODIFIED", obj("r", rv="2", status={"phase": "Pending"}))
    await settle()
    assert calls.calls == [("r", 0, "1")] and d._timers and "bug" in caplog.text
    await d.close()


async def test_a_deleted_object_is_forgotten_and_its_retry_never_runs():
    calls = Calls()
    calls.then["r"] = [RetryLater(0.01, "not yet")]
    d = Dispatcher(calls, started="2026-01-01T00:00:00Z")
    d.saw("ADDED", obj("r"))
    await settle()
    d.saw("DELETED", obj("r", rv="2"))
    await asyncio.sleep(0.03)
    assert calls.calls == [("r", 0, "1")] and not d._objects and not d._timers


async def test_at_most_the_limit_at_once_fresh_work_first_each_line_in_the_order_seen():
    calls = Calls()
    calls.gates.update({name: asyncio.Event() for name in ("old-0", "old-1", "old-2", "new-1", "new-2")})
    d = Dispatcher(calls, started="2026-06-01T00:00:00Z", limit=1)
    for i in range(3):
        d.saw("ADDED", obj(f"old-{i}", created="2026-01-01T00:00:00Z"))
    for i in (1, 2):
        d.saw("ADDED", obj(f"new-{i}", created="2026-06-01T00:00:01Z"))
    await settle()
    assert [c[0] for c in calls.calls] == ["old-0"] and REGISTRY.get_sample_value(
        "rtcrec_handlers", {"state": "waiting"}
    ) == 4
    for gate in calls.gates.values():
        gate.set()
    await settle()
    assert [c[0] for c in calls.calls] == ["old-0", "new-1", "new-2", "old-1", "old-2"]


async def test_waiting_too_long_is_late_for_health():
    now = [0.0]
    d = Dispatcher(Calls(), started="", limit=0, clock=lambda: now[0])
    d.saw("ADDED", obj("r"))
    d.saw("ADDED", obj("rest", status=RECORDING))
    now[0] = 121
    assert d.late(120) == [("ns", "r")]
    d.saw("DELETED", obj("r"))
    assert d.late(120) == []


async def test_the_handlers_gauge_says_how_many_wait_run_and_retry():
    def gauge(state):
        return REGISTRY.get_sample_value("rtcrec_handlers", {"state": state})

    calls = Calls()
    calls.gates["r"] = asyncio.Event()
    calls.then["s"] = [RetryLater(10, "later")]
    d = Dispatcher(calls, started="", limit=2)
    for name in ("r", "s", "t"):
        d.saw("ADDED", obj(name))
    await settle()
    assert (gauge("waiting"), gauge("running"), gauge("retrying")) == (0, 1, 1)  # t ran at once, s retries
    calls.gates["r"].set()
    await settle()
    assert (gauge("waiting"), gauge("running"), gauge("retrying")) == (0, 0, 1)
    d.saw("DELETED", obj("s"))
    assert gauge("retrying") == 0
