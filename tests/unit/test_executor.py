"""The executor (`controller/executor/`) over in-memory fakes: one row per branch.

In the style of crossplane-runtime's managed reconciler tests: each row gives the world
before (status, spec, what the cloud runs, what it will answer, anything else in `given`),
one action, and what must hold after: status fields, the cloud calls made, the Events
posted, the error raised (RetryLater with bounds on its delay). No server, no network.

`want` keys are status fields; a dotted key reaches into one (`attempt.number`), and
`conditions.<Type>` is that condition's status. ABSENT: the field is unset.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from rtc_recording.api.callback import path_key
from rtc_recording.api.names import ADOPT_ANNOTATION, CLASS_PLURAL, PLURAL
from rtc_recording.api.task import RecordFiles, TaskStatus, Throttled
from rtc_recording.cloud.secrets import CREDENTIALS, NOTIFY_KEY
from rtc_recording.controller.executor import RetryLater
from rtc_recording.controller.executor.context import PERSIST_TRIES
from rtc_recording.controller.index import Tracked
from rtc_recording.kube.errors import ApiError, KubeError

from .fakes import (
    BASE_SPEC,
    CALLBACK_KEY,
    CRASH,
    DIED_BEFORE_SEND,
    NOW,
    NS,
    UNKNOWN,
    Callbacks,
    ProcessDied,
    World,
    invalid,
    recording,
    throttled,
    transient,
    ts,
    until,
)

# Receiver.app() (the Callbacks rows) routes /healthz to a plain function, which aiohttp 3.14 deprecates.
pytestmark = pytest.mark.filterwarnings("ignore:Bare functions are deprecated:DeprecationWarning")

RUNNING, RECOVERING = TaskStatus.RUNNING, TaskStatus.RECOVERING
STOPPING, STOPPED = TaskStatus.STOPPING, TaskStatus.STOPPED
ABSENT = object()
GRACE = 30.0
BASE_TRANSCODE = BASE_SPEC["transcode"]


class Has:
    """Equal to any string containing `part`."""

    def __init__(self, part: str):
        self.part = part

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and self.part in other

    def __repr__(self) -> str:
        return f"Has({self.part!r})"


def ago(seconds: float) -> str:
    return ts(NOW - timedelta(seconds=seconds))


def starting(number: int = 1, seconds_ago: float = 0, **more: Any) -> dict:
    """An attempt written ahead, its answer not (yet) known."""
    return {"phase": "Starting", "attempt": {"number": number, "startedAt": ago(seconds_ago), "generation": 1}, **more}


def recording_as(task: str = "task-1", generation: int = 1, phase: str = "Recording", **more: Any) -> dict:
    return {
        "phase": phase,
        "reason": "Started",
        "taskId": task,
        "observedGeneration": generation,
        "startTime": ago(600),
        "attempt": {"number": 1, "startedAt": ago(601), "generation": 1},
        **more,
    }


def finished(phase: str = "Completed", seconds_ago: float = 0, **more: Any) -> dict:
    return {**recording_as(), "phase": phase, "reason": "IdleTimeout", "completionTime": ago(seconds_ago), **more}


# -- actions -----------------------------------------------------------------------------------


def reconcile(retry: int = 0) -> Callable[[World], Awaitable]:
    return lambda w: w.executor.reconcile(w.body(), retry)


def delete(retry: int = 0) -> Callable[[World], Awaitable]:
    return lambda w: w.executor.delete(w.body(), retry)


def observe() -> Callable[[World], Awaitable]:
    return lambda w: w.executor.describe(Tracked.of(w.body()))


def on_due() -> Callable[[World], Awaitable]:
    return lambda w: w.executor.on_due((NS, "rec"))


def act_on(attempt: int, task: str, event: str, uid: str | None = None) -> Callable[[World], Awaitable]:
    return lambda w: w.executor.act_on(NS, "rec", uid or w.uid, attempt, task, event)


def stale(action: Callable[[World], Awaitable], change: Callable[[World], Any]) -> Callable[[World], Awaitable]:
    """`action` on the object as read *before* `change` (Kopf's body, or the poller's index, lags)."""

    async def run(w: World) -> None:
        body = w.body()
        change(w)
        w.body = lambda name="rec": body  # type: ignore[method-assign]
        await action(w)

    return run


# -- givens ------------------------------------------------------------------------------------


def poke_before(method: str, pattern: str, patch: dict, skip: int = 0) -> Callable[[World], None]:
    """Another writer changes status right before a matching request is served (after `skip` of them). A task
    id it writes is sealed: that writer is the operator itself (another handler, the evidence worker)."""
    return lambda w: w.kube.before(method, pattern, lambda k: w.poke(patch), skip=skip)


GET_REC = r"/rtcrecordings/rec$"
STATUS = r"/rtcrecordings/rec/status$"


def other_owns(task: str) -> Callable[[World], None]:
    return lambda w: w.add(recording("other", status=recording_as(task)))


def cloud_down(w: World) -> None:
    w.clients.reachability.up = False


def evidence_waits(w: World) -> None:
    w.executor.ctx.evidence_waiting = lambda uid, attempt: True


def gone(w: World) -> None:
    w.kube.remove("rtcrecordings", NS, "rec")


def all_of(*givens: Callable[[World], Any]) -> Callable[[World], None]:
    def run(w: World) -> None:
        for given in givens:
            given(w)

    return run


# -- the table machinery ------------------------------------------------------------------------


@dataclass
class Row:
    id: str
    status: dict = field(default_factory=dict)
    spec: dict = field(default_factory=dict)
    generation: int = 1
    annotations: dict | None = None
    tasks: dict[str, TaskStatus] | None = None  # None: the status's taskId runs, if any
    script: dict[str, tuple] = field(default_factory=dict)
    sealed: bool = True  # False: status.taskId was written by someone else than the operator
    given: Callable[[World], Any] | None = None
    act: Callable[[World], Awaitable] = field(default_factory=reconcile)
    settings: dict = field(default_factory=dict)
    # what must hold after
    want: dict = field(default_factory=dict)
    calls: list[tuple[str, str | None]] | None = None
    events: list[tuple[str, str]] | None = None
    raises: type[BaseException] | None = None
    delay: tuple[float, float] | None = None
    tasks_after: dict[str, TaskStatus] | None = None
    status_writes: int | None = None  # successful PATCHes of /status
    requests: int | None = None  # any apiserver request at all
    then: Callable[[World], Any] | None = None
    marks: tuple = ()


def rows(*table: Row) -> list:
    return [pytest.param(row, id=row.id, marks=row.marks) for row in table]


def pick(status: dict, key: str) -> Any:
    if key.startswith("conditions."):
        type_ = key.split(".", 1)[1]
        found = [c["status"] for c in status.get("conditions") or [] if c["type"] == type_]
        return found[0] if found else ABSENT
    value: Any = status
    for part in key.split("."):
        if not isinstance(value, dict) or value.get(part) is None:
            return ABSENT
        value = value[part]
    return value


async def run(row: Row) -> World:
    w = World(settings=row.settings)
    status = row.status
    tasks = row.tasks if row.tasks is not None else ({status["taskId"]: RUNNING} if status.get("taskId") else {})
    for task_id, task_status in tasks.items():
        w.cloud.add_task(task_status, task_id=task_id)
    obj = w.add(
        recording(status=status, generation=row.generation, annotations=row.annotations, **row.spec), sealed=row.sealed
    )
    w.uid = obj["metadata"]["uid"]  # type: ignore[attr-defined]
    for verb, answers in row.script.items():
        w.cloud.script(verb, *answers)
    if row.given is not None:
        row.given(w)
    if row.raises is not None:
        with pytest.raises(row.raises) as caught:
            await asyncio.wait_for(row.act(w), 10)
        if row.delay is not None:
            lo, hi = row.delay
            assert lo <= caught.value.delay <= hi, f"delay {caught.value.delay} not in [{lo}, {hi}]"
    else:
        assert row.delay is None, "a delay comes with raises=RetryLater"
        await asyncio.wait_for(row.act(w), 10)
    after = w.status()
    for key, expected in row.want.items():
        got = pick(after, key)
        assert got is expected if expected is ABSENT else got == expected, f"status {key}: {got!r}, want {expected!r}"
    if row.calls is not None:
        assert w.cloud.verbs() == row.calls
    if row.events is not None:
        assert w.events() == row.events
    if row.tasks_after is not None:
        assert {t: w.cloud.status_of(t) for t in row.tasks_after} == row.tasks_after
    if row.status_writes is not None:
        assert len(w.kube.status_writes("rec")) == row.status_writes
    if row.requests is not None:
        assert len(w.kube.requests) == row.requests, [(r.method, r.path) for r in w.kube.requests]
    if row.then is not None:
        assert row.then(w) is not False, "a `then` check returned False: it should assert"
    return w


def backoff(retry: int, base: float = 1.0) -> tuple[float, float]:
    """The bounds of decisions.backoff(retry, base, 300): the upper half of base * 2**retry."""
    ceiling = min(300.0, base * 2**retry)
    return ceiling / 2, ceiling


# -- start ---------------------------------------------------------------------------------------


def start_params_and_order(w: World) -> None:
    params = w.cloud.tasks["task-1"].params
    assert params["NotifyUrl"] == f"http://receiver.invalid/callbacks/{NS}/rec/{w.uid}/1"
    assert params["NotifyAuthKey"] == path_key(CALLBACK_KEY, NS, "rec", w.uid, 1)  # the attempt's own key
    assert "SLICE" in params["NotifyFileUploadedFormat"]  # the heartbeat of OSS recordings
    # The attempt is written ahead, with the resourceVersion read: then, and only then, Start.
    first, *_ = w.kube.status_writes("rec")
    assert first.body["status"]["attempt"]["number"] == 1 and first.body["metadata"]["resourceVersion"]
    order = [e for e in w.journal if e[0] == "cloud" or e[1] == "PATCH"]
    assert order[0] == ("kube", "PATCH", "/apis/rtc.recording.io/v1alpha1/namespaces/ns/rtcrecordings/rec/status")
    assert order[1] == ("cloud", "start", None)


def notify_from_spec(w: World) -> None:
    params = w.cloud.tasks["task-1"].params
    assert params["NotifyUrl"] == "https://hooks.example.com/rtc"
    assert params["NotifyAuthKey"] == "userkey0123456789"
    assert params.get("NotifyFileUploadedFormat") is None  # no SLICE heartbeat without a receiver


def reaped_after_persist_failed(w: World) -> None:
    patches = w.kube.status_writes("rec", ok_only=False)
    assert [p.code for p in patches] == [200] + [500] * PERSIST_TRIES + [500]  # write-ahead, Started x6, stray count


def conflict_then_fresh(w: World) -> None:
    codes = [(r.method, r.code) for r in w.kube.requests if r.kind == "rtcrecordings"]
    # The answer's write swaps against the object the write-ahead returned (no read), then reads on 409.
    assert codes[:4] == [("PATCH", 200), ("PATCH", 409), ("GET", 200), ("PATCH", 200)]
    assert w.status()["message"] == "recording as task task-1"  # ours, decided from the fresh object


MISSING_KEYS = (
    "cannot call the cloud: Secret 'keys' (spec.credentialsSecretRef) is not available to the operator: "
    "it uses only Secrets in the resource's namespace labelled rtc.recording.io/usage=credentials"
)
NOTIFY = {"url": "https://hooks.example.com/rtc", "authKeySecretRef": {"name": "notify", "key": "k"}}
NO_RECEIVER = {"callback_url": None, "callback_auth_key": None}


async def reconcile_after_a_retry(w: World) -> None:
    with pytest.raises(RetryLater):
        await w.executor.reconcile(w.body())
    await w.executor.reconcile(w.body())


START = rows(
    Row(
        "fresh: write-ahead, Start, Recording with one Started Event",
        want={
            "phase": "Recording",
            "reason": "Started",
            "taskId": "task-1",
            "attempt.number": 1,
            "attempt.generation": 1,
            "observedGeneration": 1,
            "startTime": ts(NOW),
            "pendingEvent.reason": "Started",  # kept until the next transition: no write to clear it
            "conditions.Ready": "True",
            "conditions.Reconciling": "False",
        },
        calls=[("start", None)],
        events=[("Normal", "Started")],
        tasks_after={"task-1": RUNNING},
        then=start_params_and_order,
    ),
    Row(
        "the Started write meets another writer: 409, re-read, written on the fresh object",
        given=lambda w: w.kube.before(  # the answer's write: the write-ahead's object is no longer current
            "PATCH", STATUS, lambda k: k.poke_status(NS, "rec", {"conditions": []}), skip=1
        ),
        want={"phase": "Recording", "taskId": "task-1"},
        calls=[("start", None)],
        events=[("Normal", "Started")],
        then=conflict_then_fresh,
    ),
    Row(
        "Start refused (Invalid): Failed with the vendor's code, attempt not executed, no retry",
        script={"start": (invalid("InvalidParameter.AppId"),)},
        want={
            "phase": "Failed",
            "reason": "InvalidParameter.AppId",
            "taskId": ABSENT,
            "attempt.number": 1,
            "attempt.notExecuted": True,
            "observedGeneration": 1,
            "conditions.Stalled": "True",
            "conditions.Ready": "False",
            "message": Has("StartRtcCloudRecording refused"),
        },
        calls=[("start", None)],
        events=[("Warning", "Failed")],
    ),
    Row(
        "Start throttled: Pending, attempt not executed, backoff grows with the retry",
        script={"start": (throttled(),)},
        act=reconcile(retry=3),
        raises=RetryLater,
        delay=backoff(3),
        want={
            "phase": "Pending",
            "reason": "Throttling.User",
            "attempt.number": 1,
            "attempt.notExecuted": True,
            "taskId": ABSENT,
        },
        calls=[("start", None)],
        events=[],
    ),
    Row(
        "Start transient (5xx): Pending, retried soon whatever the retry count",
        script={"start": (transient(),)},
        act=reconcile(retry=6),
        raises=RetryLater,
        delay=backoff(0),
        want={"phase": "Pending", "reason": "ServiceUnavailable", "attempt.notExecuted": True},
        calls=[("start", None)],
    ),
    Row(
        "Start answer lost (UnknownOutcome): its task runs, the attempt stays pending, wait the grace",
        script={"start": (UNKNOWN,)},
        raises=RetryLater,
        delay=(GRACE, GRACE),
        want={
            "phase": "Starting",
            "reason": "UnknownOutcome",  # in status too, not only in the Event
            "attempt.answerLost": True,  # the receiver records a callback naming its task at once
            "attempt.number": 1,
            "attempt.notExecuted": ABSENT,
            "taskId": ABSENT,
        },
        calls=[("start", None)],
        events=[("Warning", "UnknownOutcome")],
        tasks_after={"task-1": RUNNING},
    ),
    Row(
        "answer lost without a receiver: nothing can name its task, look again soon",
        settings=NO_RECEIVER,
        script={"start": (UNKNOWN,)},
        raises=RetryLater,
        delay=(2.0, 2.0),
        want={"phase": "Starting", "attempt.number": 1},
        calls=[("start", None)],
    ),
    Row(
        "cloud unreachable: nothing written ahead, nothing sent; status says why, once",
        given=cloud_down,
        act=lambda w: reconcile_after_a_retry(w),
        raises=RetryLater,
        delay=(2.0, 2.0),
        want={"phase": "Pending", "reason": "CloudUnreachable", "attempt": ABSENT},
        calls=[],
        status_writes=1,
        events=[("Warning", "CloudUnreachable")],
    ),
    Row(
        "write-ahead conflict (another writer since the read): nothing sent, decide again",
        given=lambda w: w.kube.before("PATCH", STATUS, lambda k: k.poke_status(NS, "rec", {"message": "other"})),
        raises=RetryLater,
        delay=(0.2, 0.2),
        want={"attempt": ABSENT, "message": "other"},
        calls=[],
        status_writes=0,
        events=[],
    ),
    Row(
        "status write after Start fails for a minute: the task is reaped and counted, the error raised",
        settings={"backoff_base_seconds": 0.001},
        given=lambda w: w.kube.before(
            "PATCH", STATUS, lambda k: k.fail("PATCH", STATUS, ApiError(500, "etcd"), times=PERSIST_TRIES), skip=1
        ),
        raises=KubeError,
        want={"phase": "Starting", "attempt.number": 1, "taskId": ABSENT, "strayTaskIds": ["task-1"]},
        calls=[("start", None), ("stop", "task-1")],
        tasks_after={"task-1": STOPPED},
        events=[("Warning", "StrayTaskStopped")],
        then=lambda w: _assert(
            [p.code for p in w.kube.status_writes("rec", ok_only=False)] == [200] + [500] * PERSIST_TRIES + [200]
        ),
    ),
    Row(
        "status write after Start taken by the apiserver but never answered, the watch down: the task is kept",
        settings={"backoff_base_seconds": 0.001},
        given=lambda w: (
            w.kube.listeners.clear(),  # the operator's watch shows nothing (the apiserver restarts)
            w.kube.before(
                "PATCH",
                STATUS,
                lambda k: (
                    k.fail("PATCH", STATUS, ApiError(504, "timeout"), times=PERSIST_TRIES - 1),
                    k.fail("PATCH", STATUS, ApiError(504, "timeout"), served=True),
                ),
                skip=1,
            ),
        ),
        raises=KubeError,
        want={"phase": "Recording", "taskId": "task-1", "strayTaskIds": ABSENT},
        calls=[("start", None)],
        tasks_after={"task-1": RUNNING},
    ),
    Row(
        "status writes keep failing: the task is reaped all the same, the error raised",
        settings={"backoff_base_seconds": 0.001},
        given=lambda w: w.kube.before(
            "PATCH", STATUS, lambda k: k.fail("PATCH", STATUS, ApiError(500, "etcd"), times=None), skip=1
        ),
        raises=KubeError,
        want={"phase": "Starting", "attempt.number": 1, "taskId": ABSENT},
        calls=[("start", None), ("stop", "task-1")],
        tasks_after={"task-1": STOPPED},
        then=reaped_after_persist_failed,
    ),
    Row(
        "resource deleted while Start ran: its task is reaped, nothing written",
        given=lambda w: w.kube.before("PATCH", STATUS, lambda k: k.remove("rtcrecordings", NS, "rec"), skip=1),
        calls=[("start", None), ("stop", "task-1")],
        tasks_after={"task-1": STOPPED},
        status_writes=1,
    ),
    Row(
        "an adoption won while Start ran: this task is a duplicate, reaped and counted",
        tasks={"task-9": RUNNING},
        given=poke_before("PATCH", STATUS, {"phase": "Recording", "taskId": "task-9"}, skip=1),
        want={"taskId": "task-9", "strayTasks": 1, "strayTaskIds": ["task-1"]},
        calls=[("start", None), ("stop", "task-1")],
        events=[("Warning", "StrayTaskStopped")],
        tasks_after={"task-9": RUNNING, "task-1": STOPPED},
    ),
    Row(
        "answer of attempt 1 lost, grace over: an Event says so, attempt 2 starts",
        status=starting(1, seconds_ago=31),
        want={"phase": "Recording", "taskId": "task-1", "attempt.number": 2},
        calls=[("start", None)],
        events=[("Warning", "UnknownOutcome"), ("Normal", "Started")],
        then=lambda w: _assert(w.kube.status_writes("rec")[0].body["status"]["reason"] == "UnknownOutcome"),
    ),
    Row(
        "answer lost, within the grace: wait out the rest, nothing sent or written",
        status=starting(1, seconds_ago=10),
        raises=RetryLater,
        delay=(GRACE - 10, GRACE - 10),
        calls=[],
        status_writes=0,
        events=[],
    ),
    Row(
        "answer lost, evidence of its task waits: never a new attempt, look again soon",
        status=starting(1, seconds_ago=100),
        given=evidence_waits,
        raises=RetryLater,
        delay=(2.0, 2.0),
        calls=[],
        status_writes=0,
    ),
    Row(
        "answer lost, the cloud is down: wait for it, look again soon",
        status=starting(1, seconds_ago=100),
        given=cloud_down,
        raises=RetryLater,
        delay=(2.0, 2.0),
        calls=[],
        status_writes=0,
    ),
    Row(
        "answer lost during an outage: the grace counts from the cloud's return",
        status=starting(1, seconds_ago=100),
        given=lambda w: setattr(w.clients.reachability, "since", NOW - timedelta(seconds=10)),
        raises=RetryLater,
        delay=(GRACE - 10, GRACE - 10),
        calls=[],
    ),
    Row(
        "attempt not executed: the next number at once, nothing said of a lost answer",
        status={
            "phase": "Pending",
            "reason": "Throttling.User",
            "attempt": {"number": 2, "startedAt": ago(5), "notExecuted": True},
        },
        want={"phase": "Recording", "taskId": "task-1", "attempt.number": 3, "attempt.notExecuted": ABSENT},
        calls=[("start", None)],
        events=[("Normal", "Started")],
    ),
    Row(
        "the write-ahead after a not-executed attempt does not claim a lost answer",
        status={
            "phase": "Pending",
            "reason": "Throttling.User",
            "attempt": {"number": 2, "startedAt": ago(5), "notExecuted": True},
        },
        then=lambda w: _write_ahead_claims_no_lost_answer(w, 3),
    ),
    Row(
        "Failed and the spec changed: a new attempt",
        status={
            "phase": "Failed",
            "reason": "InvalidParameter.AppId",
            "observedGeneration": 1,
            "attempt": {"number": 1, "startedAt": ago(100), "notExecuted": True},
        },
        generation=2,
        want={"phase": "Recording", "attempt.number": 2, "attempt.generation": 2, "observedGeneration": 2},
        calls=[("start", None)],
        events=[("Normal", "Started")],
    ),
    Row(
        "Failed, spec unchanged: nothing",
        status={
            "phase": "Failed",
            "reason": "InvalidParameter.AppId",
            "observedGeneration": 1,
            "attempt": {"number": 1, "startedAt": ago(100), "notExecuted": True},
        },
        want={"phase": "Failed"},
        calls=[],
        status_writes=0,
        events=[],
    ),
    Row(
        "Completed: never restarted behind the user's back",
        status=finished(),
        generation=2,
        tasks={"task-1": STOPPED},
        calls=[],
        status_writes=0,
        events=[],
    ),
    Row(
        "Recording, spec unchanged: nothing (no call, no write)",
        status=recording_as(),
        calls=[],
        status_writes=0,
        requests=0,
    ),
    Row(
        "a spec only the operator can check (OSS endpoint outside the default region): Failed, nothing sent",
        spec={"region": None, "storage": {"oss": {"endpoint": "oss-us-east-1.aliyuncs.com"}}},
        want={
            "phase": "Failed",
            "reason": "InvalidSpec",
            "message": Has("default region cn-shanghai"),
            "observedGeneration": 1,
        },
        calls=[],
        events=[("Warning", "InvalidSpec")],
    ),
    Row(
        "a spec the CRD should have refused: Failed InvalidSpec naming the field, nothing sent",
        spec={"mode": "Sideways"},
        want={"phase": "Failed", "reason": "InvalidSpec", "message": Has("spec.mode")},
        calls=[],
        events=[("Warning", "InvalidSpec")],
    ),
    Row(
        "an invalid spec over a running task: it keeps recording, Synced=False",
        status=recording_as(),
        generation=2,
        spec={"mode": "Sideways"},
        want={
            "phase": "Recording",
            "taskId": "task-1",
            "reason": "InvalidSpec",
            "conditions.Synced": "False",
            "observedGeneration": 2,
        },
        calls=[],
        events=[("Warning", "InvalidSpec")],
        tasks_after={"task-1": RUNNING},
    ),
    Row(
        "an invalid spec already refused for this generation: no write, no second Event",
        status={"phase": "Failed", "reason": "InvalidSpec", "observedGeneration": 1},
        spec={"mode": "Sideways"},
        calls=[],
        status_writes=0,
        events=[],
    ),
    Row(
        "credentials Secret missing: Pending CredentialsUnavailable, backoff, nothing sent",
        spec={"credentialsSecretRef": {"name": "keys"}},
        act=reconcile(retry=1),
        raises=RetryLater,
        delay=backoff(1),
        want={"phase": "Pending", "reason": "CredentialsUnavailable", "message": Has("keys"), "attempt": ABSENT},
        calls=[],
        events=[("Warning", "CredentialsUnavailable")],
    ),
    Row(
        "credentials Secret missing, still: no second write or Event",
        spec={"credentialsSecretRef": {"name": "keys"}},
        status={"phase": "Pending", "reason": "CredentialsUnavailable", "message": MISSING_KEYS},
        raises=RetryLater,
        calls=[],
        status_writes=0,
        events=[],
    ),
    Row(
        "a credentials Secret that did not opt in: refused in the very words of a missing one",
        spec={"credentialsSecretRef": {"name": "keys"}},
        given=lambda w: w.kube.add_secret(NS, "keys", {"accessKeyId": "AK1", "accessKeySecret": "s"}),
        raises=RetryLater,
        want={"phase": "Pending", "message": MISSING_KEYS},
        calls=[],
    ),
    Row(
        "credentials Secret missing, but a task was adopted meanwhile: its status is left alone",
        spec={"credentialsSecretRef": {"name": "keys"}},
        given=poke_before("GET", GET_REC, {"phase": "Recording", "taskId": "task-5"}),
        raises=RetryLater,
        want={"phase": "Recording", "taskId": "task-5"},
        calls=[],
        status_writes=0,
    ),
    Row(
        "credentials from the Secret: the task belongs to that account",
        spec={"credentialsSecretRef": {"name": "keys"}},
        given=lambda w: w.kube.add_secret(NS, "keys", {"accessKeyId": "AK1", "accessKeySecret": "s"}, CREDENTIALS),
        want={"phase": "Recording", "taskId": "task-1"},
        calls=[("start", None)],
        then=lambda w: _assert(w.cloud.calls[0].account == "cn-shanghai/AK1"),
    ),
    Row(
        "without a receiver: spec.notify.url and its key from the user's Secret",
        settings=NO_RECEIVER,
        spec={"notify": NOTIFY},
        given=lambda w: w.kube.add_secret(NS, "notify", {"k": "userkey0123456789"}, NOTIFY_KEY),
        want={"phase": "Recording"},
        calls=[("start", None)],
        then=notify_from_spec,
    ),
    Row(
        "without a receiver, the notify key's Secret missing: Pending, nothing sent",
        settings=NO_RECEIVER,
        spec={"notify": NOTIFY},
        raises=RetryLater,
        want={"phase": "Pending", "reason": "CredentialsUnavailable"},
        calls=[],
    ),
)


def _assert(condition: bool) -> None:
    assert condition


def _write_ahead_claims_no_lost_answer(w: World, attempt: int) -> None:
    ahead = next(p.body["status"] for p in w.kube.status_writes("rec") if "attempt" in p.body["status"])
    assert ahead["attempt"]["number"] == attempt
    assert ahead.get("reason") != "UnknownOutcome" and "was lost" not in ahead["message"], ahead


@pytest.mark.parametrize("row", START)
async def test_start(row: Row) -> None:
    await run(row)


# -- classes: the RtcRecordingClass a Start (or an adoption) uses ----------------------------------

CLASS_DEFAULTS = {
    "storage": {"oss": {"endpoint": "oss-cn-shanghai.aliyuncs.com", "bucket": "class-bucket"}},
    "transcode": BASE_TRANSCODE,
    "maxIdleSeconds": 600,
    "layout": {"background": {"url": "https://img.example.com/a.png"}},
}
CLASSED = {"recordingClassName": "standard", "storage": None, "transcode": None}


def a_class(name: str = "standard", default: bool = False, generation: int = 1, **spec: Any) -> Callable[[World], None]:
    return lambda w: w.kube.add_class(name, {**CLASS_DEFAULTS, **spec}, default=default, generation=generation)


def started_from_class(w: World) -> None:
    params = w.cloud.tasks["task-1"].params
    assert params["StorageParams"]["OSSParams"]["OSSBucket"] == "class-bucket"
    assert params["MaxIdleTime"] == 600
    assert params["MixLayoutParams"]["MixBackground"] == {"Url": "https://img.example.com/a.png"}
    ahead = w.kube.status_writes("rec")[0].body["status"]
    assert ahead["attempt"]["number"] == 1 and ahead["recordingClass"]["name"] == "standard"  # pinned ahead


def updated_with_pinned_background(w: World) -> None:
    (update,) = w.cloud.tasks["task-1"].updates
    assert update["MixLayoutParams"]["MixBackground"] == {"Url": "https://img.example.com/a.png"}


PIN = {"name": "standard", "generation": 1, "defaults": CLASS_DEFAULTS}
CLASS_NOTIFY = {"url": "https://hooks.example.com/class", "fileUploadedFormats": ["MP4"]}
CLASS_STORAGE_MP4 = {**CLASS_DEFAULTS["storage"], "files": [{"format": "MP4"}]}


def class_notify_through_receiver(w: World) -> None:
    params = w.cloud.tasks["task-1"].params
    assert params["NotifyUrl"] == f"http://receiver.invalid/callbacks/{NS}/rec/{w.uid}/1"  # relayed from there
    assert params["NotifyAuthKey"] == path_key(CALLBACK_KEY, NS, "rec", w.uid, 1)
    assert params["NotifyFileUploadedFormat"] == ["MP4", "SLICE"]


CLASSES = rows(
    Row(
        "a named class: its defaults fill the spec, its generation pinned with the attempt",
        spec=CLASSED,
        given=a_class(),
        want={
            "phase": "Recording",
            "taskId": "task-1",
            "recordingClass.name": "standard",
            "recordingClass.generation": 1,
        },
        calls=[("start", None)],
        events=[("Normal", "Started")],
        then=started_from_class,
    ),
    Row(
        "the default class fills a resource naming none",
        spec={"maxIdleSeconds": None},
        given=a_class("house", default=True, maxIdleSeconds=900),
        want={"phase": "Recording", "recordingClass.name": "house"},
        then=lambda w: _assert(w.cloud.tasks["task-1"].params["MaxIdleTime"] == 900),
    ),
    Row(
        "a default class whose namespaceSelector does not match: no class",
        given=a_class("house", default=True, namespaceSelector={"matchLabels": {"team": "a"}}),
        want={"phase": "Recording", "recordingClass": ABSENT},
    ),
    Row(
        "the class's credentials Secret, in its own namespace, is the account",
        spec=CLASSED,
        given=all_of(
            a_class(credentialsSecretRef={"namespace": "shared", "name": "keys"}),
            lambda w: w.kube.add_secret("shared", "keys", {"accessKeyId": "AK9", "accessKeySecret": "s"}, CREDENTIALS),
        ),
        want={"phase": "Recording", "recordingClass.credentialsSecretRef.namespace": "shared"},
        then=lambda w: _assert(w.cloud.calls[0].account == "cn-shanghai/AK9"),
    ),
    Row(
        "a class's notify settings: Start names the receiver (as with the resource's own), the class's formats too",
        spec=CLASSED,
        given=a_class(notify=CLASS_NOTIFY, storage=CLASS_STORAGE_MP4),
        want={"phase": "Recording", "recordingClass.defaults.notify": CLASS_NOTIFY},
        calls=[("start", None)],
        then=class_notify_through_receiver,
    ),
    Row(
        "a class's notify settings without a receiver: Start names the class's url, as the resource's own",
        spec=CLASSED,
        settings=NO_RECEIVER,
        given=a_class(notify=CLASS_NOTIFY, storage=CLASS_STORAGE_MP4),
        want={"phase": "Recording"},
        then=lambda w: _assert(w.cloud.tasks["task-1"].params["NotifyUrl"] == CLASS_NOTIFY["url"]),
    ),
    Row(
        "a named class that does not exist (yet): Pending ClassNotFound, one Warning, nothing sent",
        spec=CLASSED,
        act=reconcile(retry=1),
        raises=RetryLater,
        delay=backoff(1),
        want={"phase": "Pending", "reason": "ClassNotFound", "attempt": ABSENT},
        calls=[],
        events=[("Warning", "ClassNotFound")],
    ),
    Row(
        "still no such class: no second write or Event",
        spec=CLASSED,
        status={"phase": "Pending", "reason": "ClassNotFound", "message": "waiting"},
        raises=RetryLater,
        calls=[],
        status_writes=0,
        events=[],
    ),
    Row(
        "a class whose namespaceSelector refuses this namespace: Failed ClassNotAllowed, nothing sent",
        spec=CLASSED,
        given=a_class(namespaceSelector={"matchLabels": {"team": "a"}}),
        want={"phase": "Failed", "reason": "ClassNotAllowed", "attempt": ABSENT},
        calls=[],
        events=[("Warning", "ClassNotAllowed")],
    ),
    Row(
        "a class whose selector matches the namespace's labels",
        spec=CLASSED,
        given=all_of(
            a_class(namespaceSelector={"matchLabels": {"team": "a"}}), lambda w: w.kube.add_namespace(NS, {"team": "a"})
        ),
        want={"phase": "Recording", "recordingClass.name": "standard"},
    ),
    Row(
        "the merged spec is invalid: Failed InvalidSpec saying who set the field, nothing sent",
        spec=CLASSED,
        given=a_class(storage={"oss": {"endpoint": "oss-us-east-1.aliyuncs.com", "bucket": "class-bucket"}}),
        want={"phase": "Failed", "reason": "InvalidSpec", "message": Has("set by RtcRecordingClass standard")},
        calls=[],
        events=[("Warning", "InvalidSpec")],
    ),
    Row(
        "reading the class fails (apiserver): retried, nothing written",
        spec=CLASSED,
        given=lambda w: (
            w.kube.fail("GET", "/rtcrecordingclasses", ApiError(500, "etcd"), times=None),
            setattr(w.executor.ctx.classes, "sync_wait", 0.01),  # the watch cannot sync: listed, which fails too
        ),
        raises=RetryLater,
        calls=[],
        status_writes=0,
    ),
    Row(
        "adopting with a class: the pin is written with the adoption",
        spec=CLASSED,
        annotations={ADOPT_ANNOTATION: "task-7"},
        tasks={"task-7": RUNNING},
        given=a_class(),
        want={"taskId": "task-7", "recordingClass.name": "standard"},
        calls=[("describe", "task-7"), ("update", "task-7")],
    ),
    Row(
        "an Update uses the pinned class generation, not the class as it is now",
        spec=CLASSED,
        generation=2,
        status=recording_as(recordingClass=PIN),
        given=a_class(generation=2, layout={"background": {"url": "https://img.example.com/b.png"}}),
        want={"observedGeneration": 2, "recordingClass.generation": 1},
        calls=[("update", "task-1")],
        then=updated_with_pinned_background,
    ),
    Row(
        "an Update whose merge with the pinned class is invalid: refused, the task keeps recording",
        spec={**CLASSED, "region": "ap-southeast-1"},  # the pinned class's OSS endpoint is in cn-shanghai
        generation=2,
        status=recording_as(recordingClass=PIN),
        want={"phase": "Recording", "reason": "InvalidSpec", "conditions.Synced": "False"},
        calls=[],
        events=[("Warning", "InvalidSpec")],
    ),
)


@pytest.mark.parametrize("row", CLASSES)
async def test_classes(row: Row) -> None:
    await run(row)


async def test_classes_come_from_the_watch_once_it_has_synced() -> None:
    """A LIST of classes per Start was one of the burst's largest apiserver costs."""
    w = World()
    a_class()(w)
    for name in ("rec", "rec2", "rec3"):
        w.add(recording(name, **CLASSED))
    await w.executor.reconcile(w.body("rec"))  # the first Start waits for the watch's first list
    assert w.executor.ctx.classes._reflector.synced.is_set()
    reads = len([r for r in w.kube.requests if r.kind == "rtcrecordingclasses"])
    w.kube.edit(
        "", "standard", lambda c: c["spec"].update(maxIdleSeconds=900), kind=CLASS_PLURAL
    )  # seen by the next Start
    await until(lambda: w.executor.ctx.classes._classes["standard"].defaults.get("maxIdleSeconds") == 900)
    for name in ("rec2", "rec3"):
        await w.executor.reconcile(w.body(name))
    assert [r for r in w.kube.requests if r.kind == "rtcrecordingclasses" and r.method == "GET"][reads:] == []
    assert [w.status(n)["phase"] for n in ("rec", "rec2", "rec3")] == ["Recording"] * 3
    assert w.cloud.tasks[w.status("rec3")["taskId"]].params["MaxIdleTime"] == 900


async def test_the_starts_of_a_start_up_share_the_class_watchs_first_list() -> None:
    """32 Starts at once each listed the classes before: 429s from an apiserver still filling its cache."""
    w = World()
    a_class()(w)
    names = [f"rec{i}" for i in range(8)]
    for name in names:
        w.add(recording(name, **CLASSED))
    await asyncio.gather(*(w.executor.reconcile(w.body(name)) for name in names))
    lists = [r for r in w.kube.requests if r.kind == "rtcrecordingclasses" and r.method == "GET"]
    assert len(lists) == 1 and [w.status(n)["phase"] for n in names] == ["Recording"] * len(names)


# -- update --------------------------------------------------------------------------------------


def one_update(w: World) -> None:
    assert len(w.cloud.tasks["task-1"].updates) == 1
    assert set(w.cloud.tasks["task-1"].updates[0]) == {"SubscribeParams", "MixLayoutParams"}


UPDATE = rows(
    Row(
        "spec changed while recording: Update, Synced, observedGeneration moves",
        status=recording_as(),
        generation=2,
        want={"phase": "Recording", "reason": "Updated", "observedGeneration": 2, "conditions.Synced": "True"},
        calls=[("update", "task-1")],
        events=[("Normal", "Updated")],
        then=one_update,
    ),
    Row(
        "spec changed while recovering: Update too",
        status=recording_as(phase="Recovering"),
        generation=2,
        want={"phase": "Recovering", "observedGeneration": 2},
        calls=[("update", "task-1")],
        events=[("Normal", "Updated")],
    ),
    Row(
        "Update refused: the task keeps its settings, Synced=False, observedGeneration moves",
        status=recording_as(),
        generation=2,
        script={"update": (invalid("InvalidParameter.UserPanes"),)},
        want={
            "phase": "Recording",
            "taskId": "task-1",
            "reason": "InvalidParameter.UserPanes",
            "observedGeneration": 2,
            "conditions.Synced": "False",
        },
        calls=[("update", "task-1")],
        events=[("Warning", "UpdateFailed")],
    ),
    Row(
        "the task ended meanwhile (NotFound): Describe, Completed instead",
        status=recording_as(),
        generation=2,
        tasks={"task-1": STOPPED},
        want={"phase": "Completed", "reason": "IdleTimeout", "completionTime": ts(NOW)},
        calls=[("update", "task-1"), ("describe", "task-1")],
        events=[("Normal", "IdleTimeout")],
    ),
    Row(
        "the cloud no longer knows the task: Failed TaskLost, never a silent restart",
        status=recording_as(),
        generation=2,
        tasks={},
        want={"phase": "Failed", "reason": "TaskLost", "taskId": "task-1"},
        calls=[("update", "task-1"), ("describe", "task-1")],
        events=[("Warning", "TaskLost")],
    ),
    Row(
        "Update throttled: backoff, nothing written",
        status=recording_as(),
        generation=2,
        script={"update": (throttled(),)},
        act=reconcile(retry=2),
        raises=RetryLater,
        delay=backoff(2),
        want={"observedGeneration": 1},
        calls=[("update", "task-1")],
        status_writes=0,
        events=[],
    ),
    Row(
        "Update transient: retried soon",
        status=recording_as(),
        generation=2,
        script={"update": (transient(),)},
        act=reconcile(retry=7),
        raises=RetryLater,
        delay=backoff(0),
        status_writes=0,
    ),
    Row(
        "Update without credentials: retried, nothing written",
        status=recording_as(),
        generation=2,
        spec={"credentialsSecretRef": {"name": "keys"}},
        raises=RetryLater,
        calls=[],
        status_writes=0,
    ),
    Row(
        "task replaced between Update and its write: nothing written over the new one",
        status=recording_as(),
        generation=2,
        tasks={"task-1": RUNNING, "task-2": RUNNING},
        given=poke_before("GET", GET_REC, {"taskId": "task-2", "observedGeneration": 1}),
        want={"taskId": "task-2", "observedGeneration": 1},
        calls=[("update", "task-1")],
        events=[],
    ),
)


@pytest.mark.parametrize("row", UPDATE)
async def test_update(row: Row) -> None:
    await run(row)


# -- halt: suspend and maxDurationSeconds -----------------------------------------------------------


def intent_before_stop(w: World, reason: str) -> None:
    patches = [e for e in w.journal if e[0] == "cloud" or (e[1] == "PATCH" and e[2].endswith("/status"))]
    first_patch = w.kube.status_writes("rec")[0].body["status"]
    assert (first_patch["phase"], first_patch["reason"]) == ("Stopping", reason)
    assert patches[0][0] == "kube" and patches[1] == ("cloud", "stop", "task-1")


def stop_failed_counted(w: World) -> None:
    events = w.kube.events_about("rec")
    assert [(e["reason"], e["count"]) for e in events] == [("StopFailed", 2)]


async def twice(w: World) -> None:
    for retry in range(2):
        with pytest.raises(RetryLater):
            await w.executor.reconcile(w.body(), retry)


HALT = rows(
    Row(
        "suspend while recording: intent written, Stop, Suspended with the task in history",
        status=recording_as(),
        spec={"suspend": True},
        want={
            "phase": "Suspended",
            "reason": "Suspended",
            "taskId": ABSENT,
            "observedGeneration": 1,
            "conditions.Ready": "True",
            "pendingEvent.reason": "Suspended",
        },
        calls=[("stop", "task-1")],
        events=[("Normal", "Suspended")],
        tasks_after={"task-1": STOPPED},
        then=lambda w: (
            intent_before_stop(w, "Suspended"),
            _assert([h["taskId"] for h in w.status()["history"]] == ["task-1"]),
        ),
    ),
    Row(
        "maxDurationSeconds passed: intent, Stop, Completed MaxDuration",
        status=recording_as(),
        spec={"maxDurationSeconds": 60},
        want={"phase": "Completed", "reason": "MaxDuration", "taskId": "task-1", "completionTime": ts(NOW)},
        calls=[("stop", "task-1")],
        events=[("Normal", "MaxDuration")],
        tasks_after={"task-1": STOPPED},
        then=lambda w: intent_before_stop(w, "MaxDuration"),
    ),
    Row(
        "maxDurationSeconds not reached: nothing",
        status=recording_as(),
        spec={"maxDurationSeconds": 3600},
        calls=[],
        status_writes=0,
        requests=0,
    ),
    Row(
        "a halt interrupted after its intent: Stop again, the intent is not rewritten",
        status=recording_as(phase="Stopping", reason="Suspended"),
        spec={"suspend": True},
        want={"phase": "Suspended", "taskId": ABSENT},
        calls=[("stop", "task-1")],
        events=[("Normal", "Suspended")],
        status_writes=1,
    ),  # the outcome with its pendingEvent
    Row(
        "a halt interrupted after its intent, and suspend cleared since: finished anyway",
        status=recording_as(phase="Stopping", reason="Suspended"),
        want={"phase": "Suspended"},
        calls=[("stop", "task-1")],
    ),
    Row(
        "the cloud is stopping the task and suspend is set: our intent, Stop (NotFound), Suspended",
        status=recording_as(phase="Stopping", reason="StoppedByCloud"),
        tasks={"task-1": STOPPING},
        spec={"suspend": True},
        want={"phase": "Suspended"},
        calls=[("stop", "task-1")],
    ),
    Row(
        "Stop answers NotFound (stopped already): the same outcome",
        status=recording_as(),
        spec={"suspend": True},
        tasks={"task-1": STOPPED},
        want={"phase": "Suspended"},
        calls=[("stop", "task-1")],
        events=[("Normal", "Suspended")],
    ),
    Row(
        "Stop throttled: StopFailed, Stopping kept, backoff",
        status=recording_as(),
        spec={"suspend": True},
        script={"stop": (throttled(),)},
        act=reconcile(retry=1),
        raises=RetryLater,
        delay=backoff(1),
        want={"phase": "Stopping", "reason": "Suspended", "taskId": "task-1"},
        calls=[("stop", "task-1")],
        events=[("Warning", "StopFailed")],
        tasks_after={"task-1": RUNNING},
    ),
    Row(
        "Stop refused twice: one StopFailed Event, counted twice",
        status=recording_as(),
        spec={"suspend": True},
        script={"stop": (transient(), transient())},
        act=twice,
        calls=[("stop", "task-1"), ("stop", "task-1")],
        then=stop_failed_counted,
    ),
    Row(
        "task replaced before the intent: no Stop of either task",
        status=recording_as(),
        spec={"suspend": True},
        tasks={"task-1": RUNNING, "task-2": RUNNING},
        given=poke_before("GET", GET_REC, {"taskId": "task-2"}),
        want={"taskId": "task-2", "phase": "Recording"},
        calls=[],
        status_writes=0,
        tasks_after={"task-1": RUNNING, "task-2": RUNNING},
    ),
    Row(
        "on_due: maxDurationSeconds passed: halted",
        status=recording_as(),
        spec={"maxDurationSeconds": 60},
        act=on_due(),
        want={"phase": "Completed", "reason": "MaxDuration"},
        calls=[("stop", "task-1")],
    ),
    Row(
        "on_due: not due (any more): nothing",
        status=recording_as(),
        spec={"maxDurationSeconds": 3600},
        act=on_due(),
        calls=[],
        status_writes=0,
    ),
    Row(
        "on_due: the resource is gone: nothing",
        status=recording_as(),
        spec={"maxDurationSeconds": 60},
        act=on_due(),
        given=gone,
        calls=[],
    ),
    Row("on_due never starts, adopts or updates", status={}, act=on_due(), generation=3, calls=[], status_writes=0),
)


@pytest.mark.parametrize("row", HALT)
async def test_halt(row: Row) -> None:
    await run(row)


# -- suspend with no task -------------------------------------------------------------------------

SUSPEND = rows(
    Row(
        "suspend before any Start: Suspended, nothing sent",
        spec={"suspend": True},
        want={"phase": "Suspended", "reason": "Suspended", "observedGeneration": 1, "attempt": ABSENT},
        calls=[],
        events=[("Normal", "Suspended")],
    ),
    Row(
        "already Suspended: nothing",
        status={"phase": "Suspended", "reason": "Suspended", "observedGeneration": 1},
        spec={"suspend": True},
        calls=[],
        status_writes=0,
        events=[],
    ),
    Row(
        "suspend over a not-executed attempt: Suspended, the attempt stays given up",
        status={"phase": "Pending", "attempt": {"number": 2, "startedAt": ago(5), "notExecuted": True}},
        spec={"suspend": True},
        want={"phase": "Suspended", "attempt.number": 2, "attempt.notExecuted": True},
        calls=[],
    ),
    Row(
        "suspend over a lost answer, grace over: Suspended, the attempt given up (a late callback is a stray)",
        status=starting(1, seconds_ago=31),
        spec={"suspend": True},
        want={"phase": "Suspended", "attempt.number": 1, "attempt.notExecuted": True},
        calls=[],
        events=[("Normal", "Suspended")],
    ),
    Row(
        "suspend over a lost answer within the grace: wait first (its task may yet be adopted, then stopped)",
        status=starting(1, seconds_ago=10),
        spec={"suspend": True},
        raises=RetryLater,
        delay=(GRACE - 10, GRACE - 10),
        calls=[],
        status_writes=0,
    ),
    Row(
        "suspend over a refused Start whose spec changed: Suspended",
        status={"phase": "Failed", "reason": "InvalidParameter.AppId", "observedGeneration": 1},
        generation=2,
        spec={"suspend": True},
        want={"phase": "Suspended", "observedGeneration": 2},
        calls=[],
    ),
    Row(
        "suspend with the adopt annotation: Suspended, nothing adopted",
        annotations={ADOPT_ANNOTATION: "task-7"},
        tasks={"task-7": RUNNING},
        spec={"suspend": True},
        want={"phase": "Suspended", "taskId": ABSENT},
        calls=[],
    ),
    Row(
        "suspended meanwhile by a concurrent write: no second write or Event",
        spec={"suspend": True},
        given=poke_before("GET", GET_REC, {"phase": "Suspended"}),
        calls=[],
        status_writes=0,
        events=[],
    ),
    Row(
        "resumed (suspend cleared): a new attempt starts",
        status={
            "phase": "Suspended",
            "reason": "Suspended",
            "observedGeneration": 1,
            "attempt": {"number": 1, "startedAt": ago(600), "generation": 1},
            "history": [{"taskId": "task-1", "reason": "Suspended"}],
        },
        tasks={"task-1": STOPPED},
        generation=2,
        want={"phase": "Recording", "taskId": "task-2", "attempt.number": 2, "observedGeneration": 2},
        calls=[("start", None)],
    ),
    Row(
        "resumed: no Warning claims a lost answer, and status does not either",
        status={
            "phase": "Suspended",
            "reason": "Suspended",
            "observedGeneration": 1,
            "attempt": {"number": 1, "startedAt": ago(600), "generation": 1},
            "history": [{"taskId": "task-1", "reason": "Suspended"}],
        },
        tasks={"task-1": STOPPED},
        generation=2,
        events=[("Normal", "Started")],
        then=lambda w: _write_ahead_claims_no_lost_answer(w, 2),
    ),
)


@pytest.mark.parametrize("row", SUSPEND)
async def test_suspend(row: Row) -> None:
    await run(row)


# -- expire: ttlSecondsAfterFinished ---------------------------------------------------------------


def deleted_with_uid(w: World) -> None:
    assert w.kube.recording("rec") is None
    (delete,) = [r for r in w.kube.requests if r.method == "DELETE"]
    assert delete.body == {"preconditions": {"uid": w.uid}}


def namesake_kept(w: World) -> None:
    assert w.kube.recording("rec")["metadata"]["uid"] == "0f8fad5b-d9cb-469f-a165-70867728950e"
    (delete,) = [r for r in w.kube.requests if r.method == "DELETE"]
    assert delete.code == 409


def replace_with_namesake(w: World) -> None:
    gone(w)
    w.add(recording(uid="0f8fad5b-d9cb-469f-a165-70867728950e"))


EXPIRE = rows(
    Row(
        "Completed, TTL passed: Expired Event, deleted with the uid as a precondition",
        status=finished(seconds_ago=61),
        spec={"ttlSecondsAfterFinished": 60},
        tasks={"task-1": STOPPED},
        calls=[],
        events=[("Normal", "Expired")],
        then=deleted_with_uid,
    ),
    Row(
        "Failed, TTL passed: deleted too",
        status=finished("Failed", seconds_ago=61, reason="TaskLost"),
        spec={"ttlSecondsAfterFinished": 60},
        calls=[],
        events=[("Normal", "Expired")],
        then=deleted_with_uid,
    ),
    Row(
        "TTL 0: deleted as soon as it finished",
        status=finished(seconds_ago=0),
        spec={"ttlSecondsAfterFinished": 0},
        then=deleted_with_uid,
    ),
    Row(
        "TTL not passed: nothing",
        status=finished(seconds_ago=30),
        spec={"ttlSecondsAfterFinished": 60},
        calls=[],
        requests=0,
    ),
    Row("no TTL: kept for ever", status=finished(seconds_ago=10**6), calls=[], requests=0),
    Row(
        "a namesake replaced it meanwhile: the uid precondition keeps the namesake",
        status=finished(seconds_ago=61),
        spec={"ttlSecondsAfterFinished": 60},
        act=stale(reconcile(), replace_with_namesake),
        then=namesake_kept,
    ),
    Row(
        "a namesake's own expiry gets its own Event (an earlier object's 'Expired' Event still exists)",
        status=finished(seconds_ago=61),
        spec={"ttlSecondsAfterFinished": 60},
        given=lambda w: w.kube.store.__setitem__(
            ("events", NS, "rec.expired"),
            {
                "metadata": {"namespace": NS, "name": "rec.expired", "resourceVersion": "1"},
                "count": 1,
                "type": "Normal",
                "reason": "Expired",
                "involvedObject": {"name": "rec", "uid": "an-earlier-rec"},
            },
        ),
        then=lambda w: _assert(
            [e["involvedObject"]["uid"] for e in w.kube.events_about("rec")] == ["an-earlier-rec", w.uid]
        ),
    ),
    Row(
        "on_due: TTL passed: deleted",
        status=finished(seconds_ago=61),
        spec={"ttlSecondsAfterFinished": 60},
        act=on_due(),
        events=[("Normal", "Expired")],
        then=deleted_with_uid,
    ),
)


@pytest.mark.parametrize("row", EXPIRE)
async def test_expire(row: Row) -> None:
    await run(row)


# -- delete (the finalizer) and deletionPolicy Orphan ------------------------------------------------

DELETE = rows(
    Row(
        "a running task: exactly one Stop, a Stopped Event, the finalizer may go",
        status=recording_as(),
        act=delete(),
        calls=[("stop", "task-1")],
        events=[("Normal", "Stopped")],
        tasks_after={"task-1": STOPPED},
        status_writes=0,
    ),
    Row(
        "Stop answers NotFound: nothing to stop is success",
        status=recording_as(),
        tasks={},
        act=delete(),
        calls=[("stop", "task-1")],
        events=[("Normal", "Stopped")],
    ),
    Row(
        "a finished task: Stop anyway (idempotent; a wrong phase must not leak a task)",
        status=finished(),
        tasks={"task-1": RUNNING},
        act=delete(),
        calls=[("stop", "task-1")],
        tasks_after={"task-1": STOPPED},
    ),
    Row(
        "Stop throttled: StopFailed, the finalizer stays, backoff",
        status=recording_as(),
        script={"stop": (throttled(),)},
        act=delete(retry=2),
        raises=RetryLater,
        delay=backoff(2),
        calls=[("stop", "task-1")],
        events=[("Warning", "StopFailed")],
        tasks_after={"task-1": RUNNING},
    ),
    Row(
        "Stop transient: the finalizer stays, retried soon",
        status=recording_as(),
        script={"stop": (transient(),)},
        act=delete(retry=9),
        raises=RetryLater,
        delay=backoff(0),
        events=[("Warning", "StopFailed")],
    ),
    Row(
        "Stop refused (Invalid): the finalizer stays",
        status=recording_as(),
        script={"stop": (invalid("Forbidden.RAM"),)},
        act=delete(),
        raises=RetryLater,
        delay=backoff(0),
        events=[("Warning", "StopFailed")],
    ),
    Row(
        "credentials gone: the finalizer stays, StopFailed",
        status=recording_as(),
        spec={"credentialsSecretRef": {"name": "keys"}},
        act=delete(),
        raises=RetryLater,
        calls=[],
        events=[("Warning", "StopFailed")],
        tasks_after={"task-1": RUNNING},
    ),
    Row(
        "Kopf's body predates an adoption: the fresh object's task is stopped",
        status=starting(1, seconds_ago=5),
        tasks={"task-1": RUNNING},
        act=stale(delete(), lambda w: w.poke({"phase": "Recording", "taskId": "task-1"})),
        calls=[("stop", "task-1")],
    ),
    Row(
        "already gone: nothing",
        status=recording_as(),
        act=stale(delete(), gone),
        calls=[],
        tasks_after={"task-1": RUNNING},
    ),
    Row("never started: let go at once", act=delete(), calls=[], requests=1),
    Row(
        "attempt not executed: let go at once",
        status={"phase": "Pending", "attempt": {"number": 1, "startedAt": ago(1), "notExecuted": True}},
        act=delete(),
        calls=[],
        status_writes=0,
    ),
    Row(
        "answer unknown within the grace: hold the finalizer for its callback",
        status=starting(1, seconds_ago=10),
        act=delete(),
        raises=RetryLater,
        delay=(GRACE - 10, GRACE - 10),
        calls=[],
        status_writes=0,
    ),
    Row(
        "answer unknown, evidence of its task waits: hold",
        status=starting(1, seconds_ago=100),
        act=delete(),
        given=evidence_waits,
        raises=RetryLater,
        delay=(2.0, 2.0),
        calls=[],
    ),
    Row(
        "answer unknown, the cloud is down: hold",
        status=starting(1, seconds_ago=100),
        act=delete(),
        given=cloud_down,
        raises=RetryLater,
        delay=(2.0, 2.0),
    ),
    Row(
        "answer unknown, grace over: release (the attempt given up by compare-and-swap), nothing stopped",
        status=starting(1, seconds_ago=31),
        act=delete(),
        want={"attempt.number": 1, "attempt.notExecuted": True},
        calls=[],
        status_writes=1,
    ),
    Row(
        "the release races with an adoption: the adopted task is stopped",
        status=starting(1, seconds_ago=31),
        tasks={"task-1": RUNNING},
        act=delete(),
        given=poke_before("GET", GET_REC, {"phase": "Recording", "taskId": "task-1"}, skip=1),  # after delete's read
        want={"taskId": "task-1", "attempt.notExecuted": ABSENT},
        calls=[("stop", "task-1")],
        tasks_after={"task-1": STOPPED},
        events=[("Normal", "Stopped")],
    ),
    Row(
        "deletionPolicy Orphan with a live task: it keeps running, an Event says so",
        status=recording_as(),
        spec={"deletionPolicy": "Orphan"},
        act=delete(),
        calls=[],
        events=[("Warning", "Orphaned")],
        tasks_after={"task-1": RUNNING},
        then=lambda w: _assert("keeps running" in w.kube.events_about("rec")[0]["message"]),
    ),
    Row(
        "deletionPolicy Orphan with nothing running",
        status=finished(),
        tasks={"task-1": STOPPED},
        spec={"deletionPolicy": "Orphan"},
        act=delete(),
        calls=[],
        events=[("Warning", "Orphaned")],
        then=lambda w: _assert("no task was running" in w.kube.events_about("rec")[0]["message"]),
    ),
    Row(
        "deletionPolicy Orphan while an answer is unknown: let go without waiting",
        status=starting(1, seconds_ago=5),
        spec={"deletionPolicy": "Orphan"},
        act=delete(),
        calls=[],
        events=[("Warning", "Orphaned")],
    ),
)


@pytest.mark.parametrize("row", DELETE)
async def test_delete(row: Row) -> None:
    await run(row)


# -- adopt: the annotation ----------------------------------------------------------------------------

ADOPT = {ADOPT_ANNOTATION: "task-7"}


def orphaned_elsewhere(
    action: Callable[[World], Awaitable], namespace: str = "tenant-b"
) -> Callable[[World], Awaitable]:
    """`action` once a deletion in `namespace` has left task-7 running (deletionPolicy Orphan)."""

    async def run(w: World) -> None:
        await w.executor.ctx.deletions.record("0f8fad5b-d9cb-469f-a165-70867728950f", namespace, "task-7", True)
        await action(w)

    return run


ADOPT_ANNOTATED = rows(
    Row(
        "an orphan left running by a deletion in another namespace: AdoptionFailed, nothing called",
        annotations=ADOPT,
        tasks={"task-7": RUNNING},
        act=orphaned_elsewhere(reconcile()),
        want={"taskId": ABSENT, "reason": "AdoptionFailed", "message": Has("another namespace")},
        calls=[],
        events=[("Warning", "AdoptionFailed")],
    ),
    Row(
        "an orphan of this namespace's own deletion: adopted",
        annotations=ADOPT,
        tasks={"task-7": RUNNING},
        act=orphaned_elsewhere(reconcile(), namespace=NS),
        want={"taskId": "task-7"},
        calls=[("describe", "task-7"), ("update", "task-7")],
    ),
    Row(
        "a running task: Describe, Adopted, then an Update makes it match spec",
        annotations=ADOPT,
        tasks={"task-7": RUNNING},
        want={
            "phase": "Recording",
            "taskId": "task-7",
            "reason": "Updated",
            "observedGeneration": 1,
            "conditions.Synced": "True",
            "attempt": ABSENT,
        },
        calls=[("describe", "task-7"), ("update", "task-7")],
        events=[("Normal", "Adopted"), ("Normal", "Updated")],
    ),
    Row(
        "a recovering task: adopted too",
        annotations=ADOPT,
        tasks={"task-7": RECOVERING},
        want={"taskId": "task-7"},
        calls=[("describe", "task-7"), ("update", "task-7")],
    ),
    Row(
        "a stopped task: AdoptionFailed, nothing started",
        annotations=ADOPT,
        tasks={"task-7": STOPPED},
        want={"phase": "Failed", "reason": "AdoptionFailed", "taskId": ABSENT, "message": Has("STOPPED")},
        calls=[("describe", "task-7")],
        events=[("Warning", "AdoptionFailed")],
    ),
    Row(
        "a task the cloud does not know (for these credentials): AdoptionFailed",
        annotations=ADOPT,
        tasks={},
        want={"phase": "Failed", "reason": "AdoptionFailed", "message": Has("does not know")},
        calls=[("describe", "task-7")],
        events=[("Warning", "AdoptionFailed")],
    ),
    Row(
        "another RtcRecording's current task: AdoptionFailed without a call",
        annotations=ADOPT,
        tasks={"task-7": RUNNING},
        given=other_owns("task-7"),
        want={"phase": "Failed", "reason": "AdoptionFailed", "message": Has("another RtcRecording")},
        calls=[],
        tasks_after={"task-7": RUNNING},
    ),
    Row(
        "Describe throttled: retried, nothing written",
        annotations=ADOPT,
        tasks={"task-7": RUNNING},
        script={"describe": (throttled(),)},
        raises=RetryLater,
        delay=backoff(0),
        calls=[("describe", "task-7")],
        status_writes=0,
    ),
    Row(
        "no credentials: retried, nothing written",
        annotations=ADOPT,
        tasks={"task-7": RUNNING},
        spec={"credentialsSecretRef": {"name": "keys"}},
        raises=RetryLater,
        calls=[],
        status_writes=0,
    ),
    Row(
        "adopted, then the Update is refused: the task is kept, Synced=False",
        annotations=ADOPT,
        tasks={"task-7": RUNNING},
        script={"update": (invalid("InvalidParameter.UserId"),)},
        want={
            "phase": "Recording",
            "taskId": "task-7",
            "reason": "InvalidParameter.UserId",
            "conditions.Synced": "False",
        },
        events=[("Normal", "Adopted"), ("Warning", "UpdateFailed")],
    ),
    Row(
        "someone else set a phase meanwhile: no write, no Update",
        annotations=ADOPT,
        tasks={"task-7": RUNNING},
        given=poke_before("GET", GET_REC, {"phase": "Pending"}),
        want={"phase": "Pending", "taskId": ABSENT},
        calls=[("describe", "task-7")],
        status_writes=0,
    ),
    Row(
        "the annotation is read only before any Start: a started resource ignores it",
        annotations=ADOPT,
        status=recording_as(),
        tasks={"task-1": RUNNING, "task-7": RUNNING},
        calls=[],
        requests=0,
    ),
)


@pytest.mark.parametrize("row", ADOPT_ANNOTATED)
async def test_adopt_annotated(row: Row) -> None:
    await run(row)


# -- evidence: act_on (adopt, reap, observe, ignore) ----------------------------------------------------


def tombstoned(w: World) -> None:
    gone(w)  # the operator's watch saw the deletion: the index keeps a tombstone


def forgotten(w: World) -> None:
    gone(w)
    w.start_operator()  # restarted since: no tombstone


async def orphaned_then_restarted(w: World) -> None:
    await w.executor.delete(w.body())
    gone(w)
    w.start_operator()  # a helm upgrade: the operator (and the receiver) forget what they kept in memory
    await act_on(1, "task-1", "RecordFileUploaded")(w)


async def deleted_then_restarted(w: World) -> None:
    await w.executor.delete(w.body())
    gone(w)
    w.start_operator()
    await act_on(1, "task-3", "RecordFileUploaded")(w)


def after_deletion(
    action: Callable[[World], Awaitable], task: str | None = "task-2", orphaned: bool = False
) -> Callable[[World], Awaitable]:
    """`action` once the operator has recorded the resource's deletion (controller/deletions.py): its
    task stopped, or left running (deletionPolicy Orphan). The record's own requests are not counted."""

    async def run(w: World) -> None:
        await w.executor.ctx.deletions.record(w.uid, NS, task, orphaned)
        w.kube.requests.clear()
        await action(w)

    return run


EVIDENCE = rows(
    Row(
        "adopt: a callback names the pending attempt's task: Describe, Recording, Started",
        status=starting(1, seconds_ago=5),
        tasks={"task-1": RUNNING},
        act=act_on(1, "task-1", "TaskRunning"),
        want={
            "phase": "Recording",
            "taskId": "task-1",
            "attempt.number": 1,
            "observedGeneration": 1,
            "message": Has("learned from its callback"),
        },
        calls=[("describe", "task-1")],
        events=[("Normal", "Started")],
    ),
    Row(
        "adopt: the attempt was of an older generation: observedGeneration says so (an Update follows)",
        status=starting(1, seconds_ago=5),
        generation=2,
        tasks={"task-1": RUNNING},
        act=act_on(1, "task-1", "TaskRunning"),
        want={"taskId": "task-1", "observedGeneration": 1},
    ),
    Row(
        "adopt: the task has stopped already: nothing (the grace decides the next attempt)",
        status=starting(1, seconds_ago=5),
        tasks={"task-1": STOPPED},
        act=act_on(1, "task-1", "TaskRunning"),
        want={"taskId": ABSENT},
        calls=[("describe", "task-1")],
        status_writes=0,
    ),
    Row(
        "adopt: Describe does not confirm it (forged, or another account's): nothing",
        status=starting(1, seconds_ago=5),
        tasks={},
        act=act_on(1, "task-1", "TaskRunning"),
        calls=[("describe", "task-1")],
        status_writes=0,
        events=[],
    ),
    Row(
        "adopt: the task is another resource's current one: nothing, no call",
        status=starting(1, seconds_ago=5),
        tasks={"task-1": RUNNING},
        given=other_owns("task-1"),
        act=act_on(1, "task-1", "TaskRunning"),
        calls=[],
        status_writes=0,
        tasks_after={"task-1": RUNNING},
    ),
    Row(
        "adopt races with the release of a deletion: the task is reaped instead",
        status=starting(1, seconds_ago=31),
        tasks={"task-1": RUNNING},
        act=act_on(1, "task-1", "TaskRunning"),
        given=poke_before("GET", GET_REC, {"attempt": {"notExecuted": True}}, skip=1),  # after act_on's read
        want={"taskId": ABSENT, "strayTasks": 1, "strayTaskIds": ["task-1"]},
        calls=[("describe", "task-1"), ("stop", "task-1")],
        tasks_after={"task-1": STOPPED},
        events=[("Warning", "StrayTaskStopped")],
    ),
    Row(
        "adopt after a newer attempt won: the task is reaped",
        status=starting(1, seconds_ago=5),
        tasks={"task-1": RUNNING, "task-2": RUNNING},
        act=act_on(1, "task-1", "TaskRunning"),
        given=poke_before("GET", GET_REC, {"phase": "Recording", "taskId": "task-2", "attempt": {"number": 2}}, skip=1),
        want={"taskId": "task-2", "strayTasks": 1},
        calls=[("describe", "task-1"), ("stop", "task-1")],
        tasks_after={"task-1": STOPPED, "task-2": RUNNING},
    ),
    Row(
        "reap: a late callback of a replaced attempt's task: Stop, counted, Event",
        status=recording_as("task-2", attempt={"number": 2, "startedAt": ago(60)}),
        tasks={"task-1": RUNNING, "task-2": RUNNING},
        act=act_on(1, "task-1", "TaskRunning"),
        want={"taskId": "task-2", "strayTasks": 1, "strayTaskIds": ["task-1"]},
        calls=[("stop", "task-1")],
        events=[("Warning", "StrayTaskStopped")],
        tasks_after={"task-1": STOPPED, "task-2": RUNNING},
    ),
    Row(
        "reap: stopped already (NotFound): nothing counted",
        status=recording_as("task-2"),
        tasks={"task-1": STOPPED, "task-2": RUNNING},
        act=act_on(1, "task-1", "TaskRunning"),
        calls=[("stop", "task-1")],
        status_writes=0,
        events=[],
    ),
    Row(
        "reap refused: the task is another resource's current one (a callback body is not signed)",
        status=recording_as("task-2"),
        tasks={"task-1": RUNNING, "task-2": RUNNING},
        given=other_owns("task-1"),
        act=act_on(1, "task-1", "TaskRunning"),
        calls=[],
        tasks_after={"task-1": RUNNING},
    ),
    Row(
        "reap for a deleted resource: stopped with its account, nothing written",
        status=recording_as("task-2"),
        tasks={"task-1": RUNNING, "task-2": STOPPED},
        given=tombstoned,
        act=after_deletion(act_on(1, "task-1", "TaskRunning")),
        calls=[("stop", "task-1")],
        tasks_after={"task-1": STOPPED},
        status_writes=0,
    ),
    Row(
        "reap for a resource the restarted operator never saw: stopped with the default account",
        status=recording_as("task-2"),
        tasks={"task-1": RUNNING, "task-2": STOPPED},
        given=forgotten,
        act=after_deletion(act_on(1, "task-1", "TaskRunning")),
        calls=[("stop", "task-1")],
        tasks_after={"task-1": STOPPED},
        status_writes=0,
    ),
    Row(
        "a namesake holds the name: the old resource's task is reaped, the namesake untouched",
        status=starting(1, seconds_ago=5),
        tasks={"task-1": RUNNING},
        given=replace_with_namesake,
        act=after_deletion(act_on(1, "task-1", "TaskRunning"), task=None),  # deleted during its attempt
        calls=[("stop", "task-1")],
        status_writes=0,
        want={"phase": ABSENT, "strayTasks": ABSENT},
    ),
    Row(
        "the last task of a deleted resource, stopped with it: ignored",
        status=recording_as(),
        tasks={"task-1": STOPPED},
        given=tombstoned,
        act=after_deletion(act_on(1, "task-1", "TaskRunning"), task="task-1"),
        calls=[],
        requests=2,  # the GET of the resource, the GET of the deletion records
    ),
    Row(
        "a deleted resource with no record that its deletion stopped its task: not reaped (absence proves nothing)",
        status=recording_as("task-2"),
        tasks={"task-1": RUNNING, "task-2": STOPPED},
        given=forgotten,
        act=act_on(1, "task-1", "TaskRunning"),
        calls=[],
        tasks_after={"task-1": RUNNING},
    ),
    Row(
        "deletionPolicy Orphan, then operator restarted: the orphan's slice callback does not stop it",
        status=recording_as(),
        spec={"deletionPolicy": "Orphan"},
        act=orphaned_then_restarted,
        calls=[],
        tasks_after={"task-1": RUNNING},
        then=lambda w: _assert(w.kube.recording("rec") is None),
    ),
    Row(
        "deletionPolicy Delete, then operator restarted: a duplicate task of the deleted resource is reaped",
        status=recording_as(),
        tasks={"task-1": RUNNING, "task-3": RUNNING},
        act=deleted_then_restarted,
        calls=[("stop", "task-1"), ("stop", "task-3")],
        tasks_after={"task-1": STOPPED, "task-3": STOPPED},
    ),
    Row(
        "observe: the current task stopped: Describe, Completed",
        status=recording_as(),
        tasks={"task-1": STOPPED},
        act=act_on(1, "task-1", "TaskStopped"),
        want={"phase": "Completed", "reason": "IdleTimeout"},
        calls=[("describe", "task-1")],
        events=[("Normal", "IdleTimeout")],
    ),
    Row(
        "observe: the current task is recovering",
        status=recording_as(),
        tasks={"task-1": RECOVERING},
        act=act_on(1, "task-1", "TaskRecovering"),
        want={"phase": "Recovering", "reason": "Recovering"},
        calls=[("describe", "task-1")],
        events=[("Warning", "Recovering")],
    ),
    Row(
        "ignore: the current task runs, as status says",
        status=recording_as(),
        act=act_on(1, "task-1", "TaskRunning"),
        calls=[],
        status_writes=0,
    ),
    Row(
        "ignore: a stray stopped before (strayTaskIds)",
        status=recording_as("task-2", strayTaskIds=["task-1"], strayTasks=1),
        tasks={"task-1": STOPPED, "task-2": RUNNING},
        act=act_on(1, "task-1", "TaskRunning"),
        calls=[],
        status_writes=0,
    ),
    Row(
        "ignore: a task that is not current has stopped",
        status=recording_as("task-2"),
        tasks={"task-1": STOPPED, "task-2": RUNNING},
        act=act_on(1, "task-1", "TaskStopped"),
        calls=[],
        status_writes=0,
    ),
)


@pytest.mark.parametrize("row", EVIDENCE)
async def test_evidence(row: Row) -> None:
    await run(row)


# -- observe (the poller's Describe) ------------------------------------------------------------------

EMPTY_FILES = {"hls": [], "mp4": [], "mp3": [], "vod": []}


def with_files(**files: Any) -> Callable[[World], None]:
    def given(w: World) -> None:
        w.cloud.tasks["task-1"].files = RecordFiles(**{k: tuple(v) for k, v in files.items()})

    return given


def returns(expected: Any) -> Callable[[World], Awaitable]:
    async def act(w: World) -> None:
        assert await w.executor.describe(Tracked.of(w.body())) == expected

    return act


OBSERVE = rows(
    Row("no task: nothing, no call", status=starting(), act=returns(None), calls=[], requests=0),
    Row(
        "the cloud says what status says: no apiserver request at all",
        status=recording_as(files=EMPTY_FILES),
        act=returns(None),
        calls=[("describe", "task-1")],
        requests=0,
    ),
    Row(
        "new files: written, no Event",
        status=recording_as(files=EMPTY_FILES),
        given=with_files(hls=["a.m3u8"]),
        act=observe(),
        want={"phase": "Recording", "files.hls": ["a.m3u8"]},
        events=[],
        status_writes=1,
    ),
    Row(
        "recovering: phase Recovering, a Warning",
        status=recording_as(files=EMPTY_FILES),
        tasks={"task-1": RECOVERING},
        act=observe(),
        want={"phase": "Recovering", "reason": "Recovering", "conditions.Reconciling": "True"},
        events=[("Warning", "Recovering")],
    ),
    Row(
        "recovered: Recording again",
        status=recording_as(phase="Recovering", files=EMPTY_FILES),
        act=observe(),
        want={"phase": "Recording", "reason": "Started"},
        events=[("Normal", "Started")],
    ),
    Row(
        "the cloud is stopping it: Stopping",
        status=recording_as(files=EMPTY_FILES),
        tasks={"task-1": STOPPING},
        act=observe(),
        want={"phase": "Stopping", "reason": "StoppedByCloud"},
    ),
    Row(
        "stopped by the cloud (idle): Completed IdleTimeout, the task in history",
        status=recording_as(files=EMPTY_FILES),
        tasks={"task-1": STOPPED},
        act=observe(),
        want={
            "phase": "Completed",
            "reason": "IdleTimeout",
            "completionTime": ts(NOW),
            "taskId": "task-1",
            "conditions.Ready": "True",
        },
        events=[("Normal", "IdleTimeout")],
        then=lambda w: _assert([h["taskId"] for h in w.status()["history"]] == ["task-1"]),
    ),
    Row(
        "stopped after 72 hours: Completed CloudMaxDuration",
        status=recording_as(
            files=EMPTY_FILES,
            startTime=ago(73 * 3600),
            attempt={"number": 1, "startedAt": ago(73 * 3600 + 1), "generation": 1},
        ),
        tasks={"task-1": STOPPED},
        act=observe(),
        want={"phase": "Completed", "reason": "CloudMaxDuration"},
    ),
    Row(
        "our own suspend's Stop ended it: Suspended, not Completed",
        status=recording_as(phase="Stopping", reason="Suspended", files=EMPTY_FILES),
        tasks={"task-1": STOPPED},
        act=observe(),
        want={"phase": "Suspended", "taskId": ABSENT},
        events=[("Normal", "Suspended")],
    ),
    Row(
        "unknown to the cloud: Failed TaskLost",
        status=recording_as(),
        tasks={},
        act=observe(),
        want={"phase": "Failed", "reason": "TaskLost", "conditions.Stalled": "True"},
        events=[("Warning", "TaskLost")],
    ),
    Row(
        "the task was replaced since the index saw it: nothing written",
        status=recording_as(files=EMPTY_FILES),
        tasks={"task-1": STOPPED, "task-2": RUNNING},
        act=stale(observe(), lambda w: w.poke({"taskId": "task-2"})),
        want={"taskId": "task-2", "phase": "Recording"},
        calls=[("describe", "task-1")],
        status_writes=0,
        events=[],
    ),
    Row(
        "a concurrent writer between read and compare-and-swap: 409, re-read, one write",
        status=recording_as(files=EMPTY_FILES),
        tasks={"task-1": STOPPED},
        given=lambda w: w.kube.before("PATCH", STATUS, lambda k: k.poke_status(NS, "rec", {"message": "x"})),
        act=observe(),
        want={"phase": "Completed"},
        then=lambda w: _assert([r.code for r in w.kube.status_writes("rec", ok_only=False)][:2] == [409, 200]),
    ),
    Row(
        "Describe throttled: raised to the poller, nothing written",
        status=recording_as(),
        script={"describe": (throttled(),)},
        act=observe(),
        raises=Throttled,
        status_writes=0,
    ),
)


@pytest.mark.parametrize("row", OBSERVE)
async def test_observe(row: Row) -> None:
    await run(row)


# -- transitions and their Events (status.pendingEvent) ------------------------------------------------

PENDING = {"key": "k1", "type": "Normal", "reason": "Started", "message": "recording as task task-1"}


def event_once(w: World) -> None:
    (event,) = w.kube.events_about("rec")
    assert (event["metadata"]["name"], event["count"]) == ("rec.k1", 1)


async def reconcile_twice(w: World) -> None:
    await w.executor.reconcile(w.body())
    await w.executor.reconcile(w.body())


def posts(w: World) -> int:
    return sum(1 for r in w.kube.requests if r.method == "POST" and r.path.endswith("/events"))


EVENTS = rows(
    Row(
        "a transition's Event left pending by a leader that died before posting it: posted under its key",
        status=recording_as(pendingEvent=PENDING),
        want={"pendingEvent.key": "k1", "phase": "Recording"},
        calls=[],
        events=[("Normal", "Started")],
        then=event_once,
    ),
    Row(
        "pending, and already posted before the crash: the second post is a no-op",
        status=recording_as(pendingEvent=PENDING),
        given=lambda w: w.kube.store.__setitem__(
            ("events", NS, "rec.k1"),
            {
                "metadata": {"namespace": NS, "name": "rec.k1", "resourceVersion": "1"},
                "count": 1,
                "type": "Normal",
                "reason": "Started",
                "involvedObject": {"name": "rec"},
            },
        ),
        events=[("Normal", "Started")],
        then=event_once,
    ),
    Row(
        "stamped before the mark the leader before left on the Lease: posted then, not posted again",
        status=recording_as(pendingEvent={**PENDING, "at": "2026-01-01T00:00:00.000000Z"}),
        given=lambda w: setattr(w.executor.writes, "previous_mark", "2026-01-01T00:00:00.000001Z"),
        events=[],
        status_writes=0,
        then=lambda w: _assert(posts(w) == 0),
    ),
    Row(
        "stamped at the mark or later: posted again (once)",
        status=recording_as(pendingEvent={**PENDING, "at": "2026-01-01T00:00:00.000001Z"}),
        given=lambda w: setattr(w.executor.writes, "previous_mark", "2026-01-01T00:00:00.000001Z"),
        events=[("Normal", "Started")],
        then=event_once,
    ),
    Row(
        "the resource went while its Event was posted: nothing is written",
        status=recording_as(pendingEvent=PENDING),
        given=lambda w: w.kube.before("POST", "/events$", lambda k: k.remove("rtcrecordings", NS, "rec")),
        events=[("Normal", "Started")],
        status_writes=0,
    ),
    Row(
        "an Event the apiserver refuses never undoes the transition",
        given=lambda w: w.kube.fail("POST", "/events$", ApiError(500, "etcd")),
        want={"phase": "Recording", "taskId": "task-1"},
        calls=[("start", None)],
        events=[],
    ),
    Row(
        "an Event the apiserver refused is posted by the next reconcile (every transition gets one Event)",
        given=lambda w: w.kube.fail("POST", "/events$", ApiError(500, "etcd")),
        act=reconcile_twice,
        want={"phase": "Recording", "pendingEvent.reason": "Started"},
        calls=[("start", None)],
        events=[("Normal", "Started")],
    ),
    Row(
        "this process's Event, once posted, is never posted again by a later reconcile",
        act=reconcile_twice,
        want={"phase": "Recording", "pendingEvent.reason": "Started"},
        calls=[("start", None)],
        events=[("Normal", "Started")],
        then=lambda w: _assert(posts(w) == 1),
    ),
)


@pytest.mark.parametrize("row", EVENTS)
async def test_events(row: Row) -> None:
    await run(row)


# -- ownership: a task id the operator did not seal is not acted on ------------------------------------


def claimed_unsealed(task: str) -> Callable[[World], None]:
    return lambda w: w.add(recording("other", status=recording_as(task)), sealed=False)


def seal_of_another(w: World) -> None:
    other = w.add(recording("other", status=recording_as("task-1")))
    w.kube.poke_status(NS, "rec", {"taskSeal": other["status"]["taskSeal"]})


def refused_once(w: World) -> None:
    assert [e["count"] for e in w.kube.events_about("rec")] == [1]


KEYS = {"credentialsSecretRef": {"name": "keys"}}


def account_known_then_secret_gone(w: World) -> None:
    w.kube.add_secret(NS, "keys", {"accessKeyId": "AK1", "accessKeySecret": "s"}, CREDENTIALS)
    w.cloud.tasks["task-1"].account = "cn-shanghai/AK1"


async def secret_gone_after_use(w: World) -> None:
    await w.executor.describe(Tracked.of(w.body()))  # the account is made with the Secret
    w.kube.remove("secrets", NS, "keys")
    w.clients.secrets.forget(NS, "keys")
    await w.executor.delete(w.body())


def terminating_without_secret(account: str) -> Callable[[World], None]:
    def given(w: World) -> None:
        w.kube.terminating.add(NS)
        w.cloud.tasks["task-1"].account = account

    return given


# -- a forged class pin: status.recordingClass names another tenant's Secret or a class not for this namespace --

OTHER_KEYS = {"namespace": "tenant-b", "name": "keys"}
FORGED_PIN = {"name": "tenant-b-only", "generation": 1, "credentialsSecretRef": OTHER_KEYS, "defaults": {}}


def other_tenants_secret(w: World) -> None:
    w.kube.add_secret("tenant-b", "keys", {"accessKeyId": "AKB", "accessKeySecret": "s"}, CREDENTIALS)
    w.kube.add_class("tenant-b-only", {"namespaceSelector": {"matchLabels": {"team": "b"}}})


def forge_pin(pin: dict) -> Callable[[World], None]:
    """The tenant patches status (after the operator sealed the task): a pin the operator never wrote."""

    def given(w: World) -> None:
        other_tenants_secret(w)
        w.kube.poke_status(NS, "rec", {"recordingClass": pin})

    return given


def pin_seal_of_another(w: World) -> None:
    """A pin sealed by the operator for another resource (tenant B's), copied with its seal."""
    other_tenants_secret(w)
    other = recording("other")
    pin = {**FORGED_PIN, "seal": w.index.sealer.pin_seal(other["metadata"]["uid"], FORGED_PIN)}
    w.kube.poke_status(NS, "rec", {"recordingClass": pin})


def no_call_on(account: str) -> Callable[[World], None]:
    return lambda w: _assert(all(c.account != account for c in w.cloud.calls))


SEALED_PIN = {"name": "standard", "generation": 1, "credentialsSecretRef": {"namespace": "shared", "name": "keys"}}


def class_keys(w: World) -> None:
    w.kube.add_secret("shared", "keys", {"accessKeyId": "AK9", "accessKeySecret": "s"}, CREDENTIALS)
    for task in w.cloud.tasks.values():
        task.account = "cn-shanghai/AK9"  # started with the class's credentials


def sealed_class_pin(w: World) -> None:
    class_keys(w)
    w.kube.poke_status(
        NS, "rec", {"recordingClass": {**SEALED_PIN, "seal": w.index.sealer.pin_seal(w.uid, SEALED_PIN)}}
    )


PINS = rows(
    Row(
        "reap with a forged pin naming another tenant's Secret: nothing is called",
        status=recording_as("task-2"),
        tasks={"task-1": RUNNING, "task-2": RUNNING},
        given=forge_pin(FORGED_PIN),
        act=act_on(1, "task-1", "TaskRunning"),
        calls=[],
        tasks_after={"task-1": RUNNING},
        then=no_call_on("cn-shanghai/AKB"),
    ),
    Row(
        "reap with a pin and its seal copied from another resource: nothing is called",
        status=recording_as("task-2"),
        tasks={"task-1": RUNNING, "task-2": RUNNING},
        given=pin_seal_of_another,
        act=act_on(1, "task-1", "TaskRunning"),
        calls=[],
        tasks_after={"task-1": RUNNING},
    ),
    Row(
        "adopt from a callback with a forged pin: no Describe, nothing sealed over that account",
        status=starting(1),
        tasks={"task-7": RUNNING},
        given=forge_pin(FORGED_PIN),
        act=act_on(1, "task-7", "TaskRunning"),
        calls=[],
        want={"taskId": ABSENT, "taskSeal": ABSENT},
    ),
    Row(
        "adopt annotation with a forged pin: the class is resolved again, the forged one replaced",
        annotations={ADOPT_ANNOTATION: "task-7"},
        tasks={"task-7": RUNNING},
        given=forge_pin(FORGED_PIN),
        want={"taskId": "task-7", "recordingClass": ABSENT},
        calls=[("describe", "task-7"), ("update", "task-7")],
        then=no_call_on("cn-shanghai/AKB"),
    ),
    Row(
        "an Update with a forged pin over a sealed task: refused, nothing called",
        status=recording_as(),
        generation=2,
        given=pin_seal_of_another,
        want={"reason": "TaskNotProven"},
        calls=[],
        events=[("Warning", "TaskNotProven")],
    ),
    Row(
        "delete with a forged pin: let go without a Stop on the other tenant's account",
        status=recording_as(),
        act=delete(),
        given=pin_seal_of_another,
        calls=[],
        tasks_after={"task-1": RUNNING},
    ),
    Row(
        "a pin the operator sealed for this resource: the reap stops with the class's account",
        status=recording_as("task-2"),
        tasks={"task-1": RUNNING, "task-2": RUNNING},
        given=sealed_class_pin,
        act=act_on(1, "task-1", "TaskRunning"),
        calls=[("stop", "task-1")],
        tasks_after={"task-1": STOPPED},
        then=lambda w: _assert(w.cloud.calls[0].account == "cn-shanghai/AK9"),
    ),
    Row(
        "a pin from before pin seals, its task sealed over the same account: the upgrade keeps stopping it",
        status=recording_as(recordingClass=SEALED_PIN),
        given=class_keys,
        act=delete(),
        calls=[("stop", "task-1")],
        tasks_after={"task-1": STOPPED},
        then=lambda w: _assert(w.cloud.calls[0].account == "cn-shanghai/AK9"),
    ),
    Row(
        "a class pinned at the write-ahead carries its seal",
        spec=CLASSED,
        given=a_class(),
        want={"recordingClass.seal": Has("pin1.")},
        then=lambda w: _assert(w.index.sealer.pin_proven(w.body()) and w.index.sealer.proven(w.body())),
    ),
)


@pytest.mark.parametrize("row", PINS)
async def test_forged_pins(row: Row) -> None:
    await run(row)


OWNERSHIP = rows(
    Row(
        "a task id someone else wrote: no Update, TaskNotProven said once, Synced=False",
        status=recording_as(),
        sealed=False,
        generation=2,
        act=reconcile_twice,
        want={"phase": "Recording", "reason": "TaskNotProven", "conditions.Synced": "False", "observedGeneration": 2},
        calls=[],
        events=[("Warning", "TaskNotProven")],
        then=refused_once,
    ),
    Row(
        "a seal copied from another resource proves nothing",
        status=recording_as(),
        generation=2,
        given=seal_of_another,
        want={"reason": "TaskNotProven"},
        calls=[],
        events=[("Warning", "TaskNotProven")],
    ),
    Row(
        "delete with an unproven task: let go without a Stop",
        status=recording_as(),
        sealed=False,
        act=delete(),
        calls=[],
        events=[("Warning", "TaskNotProven")],
        tasks_after={"task-1": RUNNING},
    ),
    Row(
        "suspend with an unproven task: no Stop",
        status=recording_as(),
        sealed=False,
        spec={"suspend": True},
        calls=[],
        want={"phase": "Recording", "reason": "TaskNotProven"},
        tasks_after={"task-1": RUNNING},
    ),
    Row(
        "the poller and an unproven task: no Describe",
        status=recording_as(),
        sealed=False,
        act=returns(None),
        calls=[],
        requests=0,
    ),
    Row(
        "reap: a task claimed without a seal is nobody's, so it is stopped",
        status=recording_as("task-2"),
        tasks={"task-1": RUNNING, "task-2": RUNNING},
        given=claimed_unsealed("task-1"),
        act=act_on(1, "task-1", "TaskRunning"),
        calls=[("stop", "task-1")],
        tasks_after={"task-1": STOPPED},
    ),
    Row(
        "adopt annotation: a task claimed without a seal may be adopted",
        annotations={ADOPT_ANNOTATION: "task-7"},
        tasks={"task-7": RUNNING},
        given=claimed_unsealed("task-7"),
        want={"taskId": "task-7", "phase": "Recording"},
        calls=[("describe", "task-7"), ("update", "task-7")],
    ),
    Row(
        "the Started write seals the task for this resource, attempt and account",
        then=lambda w: _assert(w.index.sealer.proven(w.body()) and w.index.owner("task-1").name == "rec"),
    ),
    Row(
        "Secret gone, its account known from before: stopped with it",
        status=recording_as(),
        spec=KEYS,
        given=account_known_then_secret_gone,
        act=secret_gone_after_use,
        calls=[("describe", "task-1"), ("stop", "task-1")],
        events=[("Normal", "Stopped")],
        tasks_after={"task-1": STOPPED},
    ),
    Row(
        "namespace being deleted, credentials Secret gone: stopped with the operator's own credentials",
        status=recording_as(),
        spec=KEYS,
        given=terminating_without_secret("cn-shanghai/operator"),
        act=delete(),
        want={"reason": "Stopped", "message": Has("operator's own credentials")},
        events=[],
        calls=[("stop", "task-1")],
        tasks_after={"task-1": STOPPED},
    ),
    Row(
        "namespace being deleted, Secret gone, the operator's credentials cannot stop it: given up, said in status",
        status=recording_as(),
        spec=KEYS,
        given=terminating_without_secret("cn-shanghai/AK1"),
        act=delete(),
        want={"reason": "StopAbandoned"},
        calls=[("stop", "task-1")],
        tasks_after={"task-1": RUNNING},
    ),
)


@pytest.mark.parametrize("row", OWNERSHIP)
async def test_ownership(row: Row) -> None:
    await run(row)


# -- crashes between steps: a new operator over the same apiserver and cloud ---------------------------


async def died(w: World, action: Callable[[World], Awaitable]) -> None:
    with pytest.raises(ProcessDied):
        await action(w)
    w.start_operator()


async def waits(w: World, lo: float, hi: float) -> None:
    with pytest.raises(RetryLater) as caught:
        await w.executor.reconcile(w.body())
    assert lo <= caught.value.delay <= hi, caught.value.delay


async def crash_after_start_then_callback(w: World) -> None:
    w.cloud.script("start", CRASH)
    await died(w, reconcile())
    assert w.status()["phase"] == "Starting" and "taskId" not in w.status()
    async with Callbacks(w) as callbacks:
        await waits(w, GRACE - 1, GRACE)  # the restarted operator waits for a callback, starts nothing
        assert await callbacks.send("task-1", "TaskRunning") == 200
        await callbacks.settled()
        await w.executor.reconcile(w.body())  # Kopf's next look: nothing left to do


async def crash_after_start_no_callback(w: World) -> None:
    w.cloud.script("start", CRASH)
    await died(w, reconcile())
    async with Callbacks(w) as callbacks:
        await waits(w, GRACE - 1, GRACE)
        w.clock.advance(GRACE + 1)
        await w.executor.reconcile(w.body())  # attempt 2
        assert await callbacks.send("task-1", "TaskRunning") == 200  # attempt 1's task, late
        await callbacks.settled()


async def crash_after_start_evidence_before_restart(w: World) -> None:
    w.cloud.script("start", CRASH)
    async with Callbacks(w) as callbacks:
        with pytest.raises(ProcessDied):
            await w.executor.reconcile(w.body())
        await callbacks._stop_worker()  # the operator is down: evidence waits in its ConfigMap
        assert await callbacks.send("task-1", "TaskRunning") == 200
        assert len(callbacks.evidence()) == 1
        w.clock.advance(GRACE * 10)  # however long the operator stays down
        w.start_operator()
        callbacks.restart()
        await callbacks.settled()
        await w.executor.reconcile(w.body())


async def crash_before_send(w: World) -> None:
    w.cloud.script("start", DIED_BEFORE_SEND)
    await died(w, reconcile())
    await waits(w, GRACE - 1, GRACE)  # it cannot know that nothing was sent
    w.clock.advance(GRACE + 1)
    await w.executor.reconcile(w.body())


async def crash_before_event(w: World) -> None:
    w.kube.fail("POST", "/events$", ProcessDied("before the Started Event"))
    await died(w, reconcile())
    assert w.status()["pendingEvent"]["reason"] == "Started"
    await w.executor.reconcile(w.body())


async def restart_after_event(w: World) -> None:
    await w.executor.reconcile(w.body())
    assert w.status()["pendingEvent"]["reason"] == "Started"
    w.executor.writes.slack = timedelta(0)  # the mark is not a second behind: the restart comes at once
    w.start_operator()
    await w.executor.reconcile(w.body())


async def crash_before_halt_stop(w: World) -> None:
    w.cloud.script("stop", DIED_BEFORE_SEND)
    await died(w, reconcile())
    assert (w.status()["phase"], w.status()["reason"]) == ("Stopping", "Suspended")
    await w.executor.reconcile(w.body())


async def crash_after_halt_stop(w: World) -> None:
    w.cloud.script("stop", CRASH)
    await died(w, reconcile())
    await w.executor.reconcile(w.body())


async def crash_during_delete_stop(w: World) -> None:
    w.cloud.script("stop", CRASH)
    await died(w, delete())
    await w.executor.delete(w.body())  # Kopf calls the delete handler again


async def test_a_deletion_begun_before_this_operator_whose_stop_was_recorded_sends_no_stop_again() -> None:
    """Killed after its Stop and the deletion record, before the finalizer went: the next operator
    knows the answer (the record) and calls nothing; a deletion without a record still stops."""
    w = World()
    before = {"deletionTimestamp": ts(NOW - timedelta(minutes=1)), "finalizers": ["x/y"]}
    for name in ("recorded", "unrecorded"):
        w.add(recording(name, status=recording_as(task=f"task-{name}")))
        w.kube.store[(PLURAL, NS, name)]["metadata"].update(before)
        w.cloud.add_task(RUNNING, task_id=f"task-{name}")
    await w.executor.ctx.deletions.record(w.kube.recording("recorded")["metadata"]["uid"], NS, "task-recorded", False)
    for name in ("recorded", "unrecorded"):
        await w.executor.delete(w.kube.recording(name))
    assert w.cloud.verbs() == [("stop", "task-unrecorded")]


async def crash_after_update_before_write(w: World) -> None:
    w.cloud.script("update", CRASH)
    await died(w, reconcile())
    await w.executor.reconcile(w.body())  # Update is idempotent: sent again, then written


async def crash_between_evidence_and_adoption(w: World) -> None:
    w.cloud.script("start", UNKNOWN)
    async with Callbacks(w) as callbacks:
        await waits(w, GRACE, GRACE)  # the answer is lost
        callbacks.kill_worker_at("PATCH", STATUS)  # the adoption's status write never arrives
        assert await callbacks.send("task-1", "TaskRunning") == 200
        await until(callbacks.worker_dead, what="the operator to die")
        assert len(callbacks.evidence()) == 1 and "taskId" not in w.status()
        w.start_operator()
        callbacks.restart()
        await callbacks.settled()


CRASHES = rows(
    Row(
        "died after Start was sent, before the status write: the restarted operator waits, then adopts via "
        "the evidence of its callback",
        act=crash_after_start_then_callback,
        want={"phase": "Recording", "taskId": "task-1", "attempt.number": 1},
        calls=[("start", None), ("describe", "task-1")],
        events=[("Normal", "Started")],
        tasks_after={"task-1": RUNNING},
    ),
    Row(
        "died after Start was sent, no callback within the grace: attempt 2; attempt 1's late callback reaps its task",
        act=crash_after_start_no_callback,
        want={
            "phase": "Recording",
            "taskId": "task-2",
            "attempt.number": 2,
            "strayTasks": 1,
            "strayTaskIds": ["task-1"],
        },
        calls=[("start", None), ("start", None), ("stop", "task-1")],
        events=[("Warning", "UnknownOutcome"), ("Normal", "Started"), ("Warning", "StrayTaskStopped")],
        tasks_after={"task-1": STOPPED, "task-2": RUNNING},
    ),
    Row(
        "died after Start; its callback came while the operator was down: evidence waits, then adopted",
        act=crash_after_start_evidence_before_restart,
        want={"phase": "Recording", "taskId": "task-1"},
        calls=[("start", None), ("describe", "task-1")],
        tasks_after={"task-1": RUNNING},
    ),
    Row(
        "died while adopting from evidence: the evidence is kept, and the next operator adopts",
        act=crash_between_evidence_and_adoption,
        want={"phase": "Recording", "taskId": "task-1", "attempt.number": 1},
        calls=[("start", None), ("describe", "task-1"), ("describe", "task-1")],
        events=[("Warning", "UnknownOutcome"), ("Normal", "Started")],
        tasks_after={"task-1": RUNNING},
    ),
    Row(
        "died between the write-ahead and the send: after the grace attempt 2, one task in all",
        act=crash_before_send,
        want={"phase": "Recording", "taskId": "task-1", "attempt.number": 2},
        calls=[("start", None)],
    ),
    Row(
        "died after the Started write, before its Event: posted by the next reconcile, once",
        act=crash_before_event,
        want={"phase": "Recording", "pendingEvent.reason": "Started"},
        calls=[("start", None)],
        events=[("Normal", "Started")],
    ),
    Row(
        "restarted after posting the Event: the Lease's mark says so, not posted again",
        act=restart_after_event,
        want={"phase": "Recording", "pendingEvent.reason": "Started"},
        calls=[("start", None)],
        events=[("Normal", "Started")],
        then=lambda w: _assert(w.kube.events_about("rec")[0]["count"] == 1 and posts(w) == 1),
    ),
    Row(
        "died after a halt's intent, before its Stop: the next one stops, once",
        status=recording_as(),
        spec={"suspend": True},
        act=crash_before_halt_stop,
        want={"phase": "Suspended", "taskId": ABSENT},
        calls=[("stop", "task-1")],
        events=[("Normal", "Suspended")],
        tasks_after={"task-1": STOPPED},
    ),
    Row(
        "died after a halt's Stop, before its outcome: Stop again (NotFound), Suspended",
        status=recording_as(),
        spec={"suspend": True},
        act=crash_after_halt_stop,
        want={"phase": "Suspended", "taskId": ABSENT},
        calls=[("stop", "task-1"), ("stop", "task-1")],
        events=[("Normal", "Suspended")],
    ),
    Row(
        "died during delete's Stop: the retried handler's Stop is NotFound, success",
        status=recording_as(),
        act=crash_during_delete_stop,
        calls=[("stop", "task-1"), ("stop", "task-1")],
        events=[("Normal", "Stopped")],
        tasks_after={"task-1": STOPPED},
    ),
    Row(
        "died after an Update, before its write: sent again, then written",
        status=recording_as(),
        generation=2,
        act=crash_after_update_before_write,
        want={"observedGeneration": 2, "reason": "Updated"},
        calls=[("update", "task-1"), ("update", "task-1")],
        events=[("Normal", "Updated")],
    ),
)


@pytest.mark.parametrize("row", CRASHES)
async def test_crashes(row: Row) -> None:
    await run(row)


async def test_deletion_records_replace_and_expire() -> None:
    from rtc_recording.controller.deletions import KEEP_SECONDS, Deletions

    w = World()
    now = [1_000_000.0]
    records = Deletions(w.kube, NS, clock=lambda: now[0])
    await records.record("uid-1", "tenant-a", "task-1", orphaned=True)
    await records.record("uid-2", "tenant-b", "task-2", orphaned=False)
    assert (await records.orphan("task-1")).namespace == "tenant-a"  # type: ignore[union-attr]
    assert await records.orphan("task-2") is None  # stopped, not orphaned
    await records.record("uid-1", "tenant-a", "task-1", orphaned=False)  # the deletion, retried, did otherwise
    assert await records.orphan("task-1") is None and (await records.get("uid-1")).orphaned is False  # type: ignore[union-attr]
    now[0] += KEEP_SECONDS
    assert await records.get("uid-2") is None  # no task of it can call back any more
    await records.sweep.once()
    assert [c["metadata"]["name"] for c in w.kube.all("configmaps", NS)] == []
