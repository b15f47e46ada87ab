"""The receiver (`callbacks.Receiver`, over HTTP on loopback), the operator's evidence worker
(`evidence.Worker`) and its relayer (`relay.Relayer`), over the fake apiserver: one row per branch.

Receiver rows: what its watch has listed, one callback (path, headers, body), and what must
hold after: the HTTP answer, the evidence and relay ConfigMaps written, how long the answer took
(the settle wait). Worker rows: evidence ConfigMaps and an `act` that may fail, and what was
acted on, kept or deleted. Relayer rows: a relay ConfigMap, the user's endpoint on loopback, and
what it received, signed how, and which Event says why not.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY

from rtc_recording import metrics
from rtc_recording.api.callback import callback_headers, path_key
from rtc_recording.api.evidence import Evidence, collection
from rtc_recording.api.names import EVIDENCE_LABEL, RELAY_LABEL, REPLAY_LABEL
from rtc_recording.api.relay import MAX_BODY_CHARS, PAYLOAD_FIELDS, Relay, relayed_body
from rtc_recording.api.replay import Marker
from rtc_recording.api.task import Transient
from rtc_recording.cloud.secrets import NOTIFY_KEY, SecretCache
from rtc_recording.controller import relay as relay_module
from rtc_recording.controller import replays
from rtc_recording.controller.evidence import Worker
from rtc_recording.controller.relay import Relayer
from rtc_recording.controller.ssrf import Guard
from rtc_recording.kube.errors import ApiError
from rtc_recording.receiver.server import Receiver

from .fakes import CALLBACK_KEY, EVIDENCE_NS, NS, FakeKube, callback_body, recording, until

UID = "0f8fad5b-d9cb-469f-a165-70867728950e"
NAMESAKE_UID = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
SETTLE = 0.05  # the receiver's settle wait in most rows; rows that time it set their own
TIMED = 1.0


def rec(status: dict | None = None, uid: str = UID, **spec: Any) -> dict:
    return recording(uid=uid, status=status, **spec)


RECORDING = {"phase": "Recording", "taskId": "task-1", "attempt": {"number": 1}}
PENDING = {"phase": "Starting", "attempt": {"number": 1}}
REPLACED = {"phase": "Recording", "taskId": "task-2", "attempt": {"number": 2}}
ENDED = {"phase": "Completed", "taskId": "task-1", "attempt": {"number": 1}}


@dataclass
class RRow:
    id: str
    known: list[dict] = field(default_factory=lambda: [rec(RECORDING)])  # listed by the receiver's watch
    deleted: list[dict] = field(default_factory=list)  # listed, then deleted (tombstones)
    uid: str = UID
    attempt: int | str = 1
    path: str | None = None
    body: Any = field(default_factory=lambda: callback_body("task-1", "TaskRunning"))
    headers: Callable[[str], dict] | None = None  # of the path; default: signed now with the path's key
    sends: int = 1  # the same callback, this many times
    ready: bool = True
    given: Callable[[Rig], Any] | None = None
    during_settle: Callable[[Rig], Any] | None = None  # the watch delivers this during the wait
    settle: float = SETTLE
    defer: float = SETTLE  # the deferral of a start callback whose task status does not show yet
    # what must hold after
    code: int = 200
    evidence: list[tuple[str, int, str, str]] | None = field(default_factory=list)  # (kind, attempt, task, event)
    elapsed: tuple[float, float] | None = None
    relayed: int | None = 0  # relay ConfigMaps written for the operator
    then: Callable[[Rig], Any] | None = None
    marks: tuple = ()


def _assert(condition: bool) -> None:
    assert condition


def rows(*table: RRow) -> list:
    return [pytest.param(row, id=row.id, marks=row.marks) for row in table]


class Rig:
    def __init__(self, row: RRow):
        self.row = row
        self.kube = FakeKube()
        self.receiver = Receiver(
            self.kube, CALLBACK_KEY, EVIDENCE_NS, settle_seconds=row.settle, defer_seconds=row.defer
        )
        self.kube.listeners.append(
            lambda kind, type_, obj: kind == "rtcrecordings" and self.receiver.on_change(type_, obj)
        )

    def labelled(self, label: str) -> list[dict]:
        return [c for c in self.kube.all("configmaps", EVIDENCE_NS) if label in c["metadata"].get("labels", {})]

    def evidence(self) -> list[tuple[str, int, str, str]]:
        found = [Evidence.from_configmap(c) for c in self.labelled(EVIDENCE_LABEL)]
        return [(e.kind, e.attempt, e.task_id, e.event) for e in found]

    def relays(self) -> list[Relay]:
        return [Relay.from_configmap(c) for c in self.labelled(RELAY_LABEL)]


def sign(path: str, now: float | None = None) -> dict[str, str]:
    """As the cloud signs a callback: with the NotifyAuthKey of the attempt the path names."""
    parts = path.split("/")
    key = (
        path_key(CALLBACK_KEY, parts[2], parts[3], parts[4], int(parts[5]))
        if len(parts) == 6 and parts[5].isdigit()
        else CALLBACK_KEY
    )
    return callback_headers(key, time.time() if now is None else now)


async def run(row: RRow) -> Rig:
    rig = Rig(row)
    async with TestClient(TestServer(rig.receiver.app())) as client:
        for obj in row.known + row.deleted:
            rig.kube.add_recording(obj)
        for obj in row.deleted:
            rig.kube.remove("rtcrecordings", NS, obj["metadata"]["name"])
        rig.receiver.ready = lambda: row.ready
        if row.given is not None:
            row.given(rig)
        path = row.path or f"/callbacks/{NS}/rec/{row.uid}/{row.attempt}"
        data = row.body if isinstance(row.body, bytes) else json.dumps(row.body).encode()
        if row.during_settle is not None:
            asyncio.get_running_loop().call_later(0.02, row.during_settle, rig)
        started = time.monotonic()
        for _ in range(row.sends):
            headers = row.headers(path) if row.headers else sign(path)
            resp = await client.post(path, data=data, headers={**headers, "Content-Type": "application/json"})
            assert resp.status == row.code, await resp.text()
        elapsed = time.monotonic() - started
        await rig.receiver.drain()
        if row.evidence is not None:
            assert sorted(rig.evidence()) == sorted(row.evidence)
        if row.elapsed is not None:
            lo, hi = row.elapsed
            assert lo <= elapsed <= hi, f"answered after {elapsed:.3f}s, want [{lo}, {hi}]"
        if row.relayed is not None:
            assert len(rig.relays()) == row.relayed, rig.relays()
        if row.then is not None:
            assert row.then(rig) is not False, "a `then` check returned False: it should assert"
    return rig


# -- the request: signature, path, body, readiness ---------------------------------------------------


def too_big() -> bytes:
    return json.dumps({**callback_body("task-1", "TaskRunning"), "pad": "x" * 70_000}).encode()


REQUESTS = rows(
    RRow("no signature: 403, nothing recorded", headers=lambda p: {}, code=403),
    RRow(
        "signed with another key: 403", headers=lambda p: callback_headers("another0key0000000", time.time()), code=403
    ),
    RRow(
        "signed with the receiver's own key, not the path's: 403",
        headers=lambda p: callback_headers(CALLBACK_KEY, time.time()),
        code=403,
    ),
    RRow("signed for another attempt's path: 403", headers=lambda p: sign(p[:-1] + "2"), code=403),
    RRow(
        "a stale timestamp (the signature does not cover the body): 403",
        headers=lambda p: sign(p, time.time() - 301),
        code=403,
    ),
    RRow("a timestamp from the future: 403", headers=lambda p: sign(p, time.time() + 301), code=403),
    RRow(
        "signature header names in any case: accepted",
        headers=lambda p: {k.lower(): v.upper() for k, v in sign(p).items()},
    ),
    RRow("a namespace that is no DNS label: 400", path=f"/callbacks/Kube-System/rec/{UID}/1", code=400),
    RRow("a uid that is no UUID: 400", path="/callbacks/ns/rec/not-a-uid/1", code=400),
    RRow("an attempt that is no number: no such route (404)", path=f"/callbacks/ns/rec/{UID}/one", code=404),
    RRow("a body that is no JSON: 400", body=b"{not json", code=400),
    RRow("a JSON body that is no object: 400", body=["TaskRunning"], code=400),
    RRow(
        "a body without taskId: 400",
        body={"appId": "demo-app", "channelId": "standup-42", "eventType": "TaskRunning"},
        code=400,
    ),
    RRow("a body over 64 KiB: 400", body=too_big(), code=400),
    RRow(
        "the watch has not listed everything yet: 503, the cloud sends it again",
        known=[rec(PENDING)],
        ready=False,
        code=503,
        evidence=[],
    ),
    RRow(
        "recording the evidence fails (apiserver): 500, the cloud sends it again",
        known=[rec(REPLACED)],
        given=lambda rig: rig.kube.fail("POST", "/configmaps$", ApiError(500, "etcd"), skip=1),  # after the marker
        code=500,
        evidence=[],
    ),
    RRow(
        "the replay marker cannot be written (apiserver): 503, nothing admitted unchecked, the cloud sends it again",
        known=[rec(REPLACED)],
        given=lambda rig: rig.kube.fail("POST", "/configmaps$", ApiError(500, "etcd")),
        code=503,
        evidence=[],
    ),
)


@pytest.mark.parametrize("row", REQUESTS)
async def test_requests(row: RRow) -> None:
    await run(row)


# -- what a verified callback becomes: decisions.on_callback's outcomes -------------------------------

QUICK = (0.0, TIMED * 0.7)  # with settle=TIMED: answered without a settle wait
SETTLED = (TIMED, TIMED * 5)  # with settle=TIMED: one settle wait, then recorded


def watch_shows(status: dict) -> Callable[[Rig], None]:
    return lambda rig: rig.kube.poke_status(NS, "rec", status)


OUTCOMES = rows(
    RRow(
        "the current task runs, as status says: ignored at once, nothing recorded",
        known=[rec(RECORDING)],
        settle=TIMED,
        evidence=[],
        elapsed=QUICK,
    ),
    RRow(
        "a file uploaded by the current task: ignored",
        body=callback_body("task-1", "RecordFileUploaded", format="SLICE"),
        settle=TIMED,
        evidence=[],
        elapsed=QUICK,
    ),
    RRow(
        "adopt: the task of the pending attempt: answered after the settle wait, recorded after the deferral",
        known=[rec(PENDING)],
        settle=TIMED,
        evidence=[("alive", 1, "task-1", "TaskRunning")],
        elapsed=SETTLED,
    ),
    RRow(
        "adopt: the operator wrote that the answer was lost: news, recorded at once (no settle, no deferral)",
        known=[rec({**PENDING, "reason": "UnknownOutcome", "attempt": {"number": 1, "answerLost": True}})],
        settle=TIMED,
        defer=4 * TIMED,
        evidence=[("alive", 1, "task-1", "TaskRunning")],
        elapsed=QUICK,
    ),
    RRow(
        "deferred: the watch shows the Start's answer after the settle wait: nothing recorded (no news)",
        known=[rec(PENDING)],
        settle=TIMED / 4,
        defer=4 * TIMED,
        during_settle=lambda rig: asyncio.get_running_loop().call_later(
            TIMED, watch_shows({"phase": "Recording", "taskId": "task-1"}), rig
        ),
        evidence=[],
        elapsed=(0.0, TIMED / 2),
        then=lambda rig: _assert(not rig.kube.all("configmaps", EVIDENCE_NS)),  # not even a replay marker
    ),
    RRow(
        "a callback of another attempt than the pending one: reap",
        known=[rec({"phase": "Starting", "attempt": {"number": 2}})],
        attempt=1,
        evidence=[("alive", 1, "task-1", "TaskRunning")],
    ),
    RRow(
        "reap: a task that is not the current one (a replaced attempt's)",
        known=[rec(REPLACED)],
        evidence=[("alive", 1, "task-1", "TaskRunning")],
    ),
    RRow(
        "reap: a duplicate found by its SLICE heartbeat",
        known=[rec(REPLACED)],
        body=callback_body("task-1", "RecordFileUploaded", format="SLICE"),
        evidence=[("alive", 1, "task-1", "RecordFileUploaded")],
    ),
    RRow(
        "observe: the current task stopped: recorded as 'ended'",
        body=callback_body("task-1", "TaskStopped"),
        evidence=[("ended", 1, "task-1", "TaskStopped")],
    ),
    RRow(
        "observe: the current task is recovering",
        body=callback_body("task-1", "TaskRecovering"),
        evidence=[("alive", 1, "task-1", "TaskRecovering")],
    ),
    RRow(
        "the current task recovering, as status says already: ignored",
        known=[rec({**RECORDING, "phase": "Recovering"})],
        body=callback_body("task-1", "TaskRecovering"),
        evidence=[],
    ),
    RRow(
        "a task that is not current has stopped: ignored",
        known=[rec(REPLACED)],
        body=callback_body("task-1", "TaskStopped"),
        evidence=[],
    ),
    RRow(
        "a stray stopped before (strayTaskIds): ignored",
        known=[rec({**REPLACED, "strayTaskIds": ["task-1"]})],
        evidence=[],
    ),
    RRow(
        "another channel than the resource's: ignored",
        known=[rec(PENDING)],
        body=callback_body("task-1", "TaskRunning", channel_id="elsewhere"),
        settle=TIMED,
        evidence=[],
        elapsed=QUICK,
    ),
    RRow("a resource the watch never saw: reap", known=[], evidence=[("alive", 1, "task-1", "TaskRunning")]),
    RRow("a deleted resource's last task, stopped with it: ignored", known=[], deleted=[rec(RECORDING)], evidence=[]),
    RRow(
        "a deleted resource's other task: reap",
        known=[],
        deleted=[rec(REPLACED)],
        evidence=[("alive", 1, "task-1", "TaskRunning")],
    ),
    RRow(
        "a namesake holds the name: the old uid's task is reaped",
        known=[rec(RECORDING, uid=NAMESAKE_UID)],
        evidence=[("alive", 1, "task-1", "TaskRunning")],
    ),
    RRow(
        "a namesake on another channel: still reaped (the channel check is for the same uid only)",
        known=[rec(RECORDING, uid=NAMESAKE_UID, channelId="other")],
        evidence=[("alive", 1, "task-1", "TaskRunning")],
    ),
    RRow(
        "the cloud's resend: one ConfigMap, 200 both times",
        known=[rec(REPLACED)],
        sends=2,
        evidence=[("alive", 1, "task-1", "TaskRunning")],
    ),
    RRow(
        "settle: the watch shows the Start's answer meanwhile: nothing recorded, answered at once",
        known=[rec(PENDING)],
        settle=4 * TIMED,
        during_settle=watch_shows({"phase": "Recording", "taskId": "task-1"}),
        evidence=[],
        elapsed=(0.0, 2 * TIMED),
    ),
    RRow(
        "settle: the watch shows an unrelated change, then the Start's answer: nothing recorded",
        known=[rec(PENDING)],
        settle=4 * TIMED,
        during_settle=lambda rig: (
            watch_shows({"message": "unrelated"})(rig),
            asyncio.get_running_loop().call_later(0.2, watch_shows({"phase": "Recording", "taskId": "task-1"}), rig),
        ),
        evidence=[],
        elapsed=(0.0, 2 * TIMED),
    ),
    RRow(
        "settle: the watch shows only an unrelated change: recorded once the wait is over",
        known=[rec(PENDING)],
        settle=2 * TIMED,
        during_settle=watch_shows({"message": "unrelated"}),
        evidence=[("alive", 1, "task-1", "TaskRunning")],
        elapsed=(2 * TIMED, 4 * TIMED),
    ),
    RRow(
        "settle: the watch shows another task won: recorded (a reap now)",
        known=[rec(PENDING)],
        settle=4 * TIMED,
        during_settle=watch_shows({"phase": "Recording", "taskId": "task-2", "attempt": {"number": 2}}),
        evidence=[("alive", 1, "task-1", "TaskRunning")],
        elapsed=(0.0, 2 * TIMED),
    ),
    RRow(
        "settle: the resource is deleted meanwhile: recorded (reap)",
        known=[rec(PENDING)],
        settle=4 * TIMED,
        during_settle=lambda rig: rig.kube.remove("rtcrecordings", NS, "rec"),
        evidence=[("alive", 1, "task-1", "TaskRunning")],
        elapsed=(0.0, 2 * TIMED),
    ),
)


@pytest.mark.parametrize("row", OUTCOMES)
async def test_outcomes(row: RRow) -> None:
    await run(row)


async def test_three_start_callbacks_of_one_task_are_one_piece_of_evidence() -> None:
    rig = Rig(RRow("", known=[rec(REPLACED)]))
    for obj in rig.row.known:
        rig.kube.add_recording(obj)
    async with TestClient(TestServer(rig.receiver.app())) as client:
        path = f"/callbacks/{NS}/rec/{UID}/1"
        headers = sign(path)  # within one second: one (timestamp, signature) pair for the three
        for event in ("TaskCreated", "TaskStarting", "TaskRunning"):
            resp = await client.post(path, json=callback_body("task-1", event), headers=headers)
            assert resp.status == 200
    assert rig.evidence() == [("alive", 1, "task-1", "TaskCreated")]
    evidence_posts = [r for r in rig.kube.writes("configmaps") if EVIDENCE_LABEL in r.body["metadata"]["labels"]]
    assert [r.code for r in evidence_posts] == [200]  # one POST, not three (beside one replay marker each)


# -- what the receiver hands the operator to relay to the user's own spec.notify.url ------------------

NOTIFY = {"notify": {"url": "https://hooks.example.com/rtc", "authKeySecretRef": {"name": "notify", "key": "k"}}}


# What a task started from a class with notify settings carries in status (classes.RecordingClass.pin).
CLASS_PIN = {
    "name": "standard",
    "generation": 1,
    "defaults": {
        "storage": {"files": [{"format": "MP4"}]},
        "notify": {"url": "https://hooks.example.com/class", "fileUploadedFormats": ["MP4"]},
    },
}


def relayed_as_received(rig: Rig) -> None:
    (relay,) = rig.relays()
    assert (relay.namespace, relay.name, relay.uid) == (NS, "rec", UID)
    assert json.loads(relay.body) == callback_body("task-1", "TaskRunning")


RELAYS = rows(
    RRow(
        "a task event of the user's current task: handed over as received",
        known=[rec(RECORDING, **NOTIFY)],
        relayed=1,
        then=relayed_as_received,
    ),
    RRow(
        "handed over also when it is recorded as evidence (the current task stopped)",
        known=[rec(RECORDING, **NOTIFY)],
        body=callback_body("task-1", "TaskStopped"),
        relayed=1,
        evidence=[("ended", 1, "task-1", "TaskStopped")],
    ),
    RRow(
        "the operator's own SLICE heartbeat: not relayed",
        known=[rec(RECORDING, **NOTIFY)],
        body=callback_body("task-1", "RecordFileUploaded", format="SLICE"),
        relayed=0,
    ),
    RRow(
        "an upload in a format the user asked for: relayed",
        known=[rec(RECORDING, notify={**NOTIFY["notify"], "fileUploadedFormats": ["MP4"]})],
        body=callback_body("task-1", "RecordFileUploaded", format="MP4"),
        relayed=1,
    ),
    RRow(
        "a duplicate's callback (reap): the user does not hear of it",
        known=[rec(REPLACED, **NOTIFY)],
        relayed=0,
        evidence=[("alive", 1, "task-1", "TaskRunning")],
    ),
    RRow(
        "a namesake's spec.notify: not told of the old resource's task",
        known=[rec(RECORDING, uid=NAMESAKE_UID, **NOTIFY)],
        relayed=0,
        evidence=[("alive", 1, "task-1", "TaskRunning")],
    ),
    RRow(
        "the class's notify.url (pinned in status), the resource sets none: handed over as received",
        known=[rec({**RECORDING, "recordingClass": CLASS_PIN})],
        relayed=1,
        then=relayed_as_received,
    ),
    RRow(
        "an upload in a format the class asked for: relayed",
        known=[rec({**RECORDING, "recordingClass": CLASS_PIN})],
        body=callback_body("task-1", "RecordFileUploaded", format="MP4"),
        relayed=1,
    ),
    RRow(
        "a format the class asks for that the recording does not record: not relayed, as its Start did not ask",
        known=[
            rec({**RECORDING, "recordingClass": {**CLASS_PIN, "defaults": {"notify": CLASS_PIN["defaults"]["notify"]}}})
        ],
        body=callback_body("task-1", "RecordFileUploaded", format="MP4"),
        relayed=0,
    ),
    RRow(
        "the resource's own fileUploadedFormats win over the class's (merged key by key)",
        known=[rec({**RECORDING, "recordingClass": CLASS_PIN}, notify={"fileUploadedFormats": ["MP3"]})],
        body=callback_body("task-1", "RecordFileUploaded", format="MP4"),
        relayed=0,
    ),
    RRow("no spec.notify.url: nothing relayed", known=[rec(RECORDING)], relayed=0),
    RRow(
        "spec.notify without a url (formats only): nothing relayed",
        known=[rec(RECORDING, notify={"fileUploadedFormats": ["MP4"]})],
        relayed=0,
    ),
    RRow("the cloud's resend: one relay", known=[rec(RECORDING, **NOTIFY)], sends=2, relayed=1),
    RRow(
        "a refused callback is never relayed",
        known=[rec(RECORDING, **NOTIFY)],
        headers=lambda p: {},
        code=403,
        relayed=0,
    ),
    RRow(
        "the relay cannot be written (apiserver): 500, the cloud sends it again",
        known=[rec(RECORDING, **NOTIFY)],
        given=lambda rig: rig.kube.fail("POST", "/configmaps$", ApiError(500, "x"), skip=1),  # after the marker
        code=500,
        relayed=0,
    ),
)


@pytest.mark.parametrize("row", RELAYS)
async def test_relays(row: RRow) -> None:
    await run(row)


async def test_a_replayed_signature_carries_only_its_own_task() -> None:
    rig = Rig(RRow("", known=[rec(REPLACED)]))
    for obj in rig.row.known:
        rig.kube.add_recording(obj)
    path = f"/callbacks/{NS}/rec/{UID}/1"
    headers = sign(path)
    async with TestClient(TestServer(rig.receiver.app())) as client:

        async def post(task: str, event: str = "TaskRunning") -> int:
            return (await client.post(path, json=callback_body(task, event), headers=headers)).status

        assert await post("task-1") == 200
        assert await post("task-1", "RecordFileUploaded") == 200  # another event of the same task: the same pair
        assert await post("task-9") == 403  # the captured pair with another task
    assert rig.evidence() == [("alive", 1, "task-1", "TaskRunning")]  # to reap task-1; nothing of task-9


async def test_evidence_of_one_path_never_takes_another_paths_name() -> None:
    """Evidence named by (uid, attempt, task) only: a callback on another path naming the same uid
    and task took the name first, and the resource's own evidence was dropped as a resend (409)."""
    rig = Rig(RRow("", known=[rec(REPLACED)]))
    rig.kube.add_recording(rec(REPLACED))
    async with TestClient(TestServer(rig.receiver.app())) as client:
        for path in (f"/callbacks/other/rec/{UID}/1", f"/callbacks/{NS}/rec/{UID}/1"):
            resp = await client.post(path, json=callback_body("task-1", "TaskRunning"), headers=sign(path))
            assert resp.status == 200
    found = {(e.namespace, e.name) for e in map(Evidence.from_configmap, rig.labelled(EVIDENCE_LABEL))}
    assert found == {("other", "rec"), (NS, "rec")}


async def test_one_captured_pair_carries_one_body_per_event_type() -> None:
    """R1: with one header pair seen on the wire, 4 forged TaskStopped and 5 forged
    RecordFileUploaded (file URL pointing elsewhere) were each accepted and relayed."""
    rig = Rig(RRow("", known=[rec(RECORDING, notify={**NOTIFY["notify"], "fileUploadedFormats": ["MP4"]})]))
    for obj in rig.row.known:
        rig.kube.add_recording(obj)
    path = f"/callbacks/{NS}/rec/{UID}/1"
    headers = sign(path)
    async with TestClient(TestServer(rig.receiver.app())) as client:

        async def post(body: dict) -> int:
            return (await client.post(path, json=body, headers=headers)).status

        assert await post(callback_body("task-1", "TaskCreated")) == 200
        assert await post(callback_body("task-1", "TaskRunning")) == 200  # the cloud's: one pair, several events
        assert await post(callback_body("task-1", "TaskRunning")) == 200  # its resend, as it was
        assert await post({**callback_body("task-1", "TaskRunning"), "callbackTs": 2}) == 200  # a newer callbackTs
        stops = [await post(callback_body("task-1", "TaskStopped", reason=f"r{n}")) for n in range(4)]
        uploads = [
            await post(callback_body("task-1", "RecordFileUploaded", format="MP4", url=f"https://evil/{n}"))
            for n in range(5)
        ]
    assert stops == [200, 403, 403, 403] and uploads == [200, 403, 403, 403, 403]
    assert len(rig.relays()) == 5  # created, running twice (its callbackTs), one stop, one upload: the last two wait


def markers(rig: Rig) -> list[dict]:
    return rig.labelled(REPLAY_LABEL)


async def test_a_second_replica_refuses_a_pair_the_first_admitted_with_another_body() -> None:
    """Low (issue 27): a second receiver replica had its own replay cache and accepted the pair
    again, so with N replicas a captured pair carried N bodies per event type. Two replicas
    here share nothing but the apiserver."""
    rig = Rig(RRow("", known=[rec(RECORDING)]))
    second = Receiver(rig.kube, CALLBACK_KEY, EVIDENCE_NS, settle_seconds=SETTLE)
    rig.kube.listeners.append(lambda kind, type_, obj: kind == "rtcrecordings" and second.on_change(type_, obj))
    rig.kube.add_recording(rec(RECORDING))
    path = f"/callbacks/{NS}/rec/{UID}/1"
    headers = sign(path)
    sent, forged = (
        callback_body("task-1", "TaskStopped", reason="r0"),
        callback_body("task-1", "TaskStopped", reason="r1"),
    )
    async with TestClient(TestServer(rig.receiver.app())) as a, TestClient(TestServer(second.app())) as b:

        async def post(client: TestClient, body: dict) -> int:
            return (await client.post(path, json=body, headers=headers)).status

        assert await post(a, sent) == 200
        assert await post(b, forged) == 403  # the captured pair with another body, at the other replica
        assert await post(b, sent) == 200  # the cloud's resend reached the other replica
        assert await post(b, {**sent, "callbackTs": 2}) == 200  # ... with a newer callbackTs
        assert await post(a, forged) == 403
    assert rig.evidence() == [("ended", 1, "task-1", "TaskStopped")]
    assert len(markers(rig)) == 1


async def test_only_a_callback_that_writes_leaves_a_replay_marker() -> None:
    rig = Rig(RRow("", known=[rec(RECORDING)]))
    rig.kube.add_recording(rec(RECORDING))
    path = f"/callbacks/{NS}/rec/{UID}/1"
    async with TestClient(TestServer(rig.receiver.app())) as client:
        # the current task is running, nothing to relay: ignored, nothing written, no request
        resp = await client.post(path, json=callback_body("task-1", "TaskRunning"), headers=sign(path))
        assert resp.status == 200
        assert rig.kube.writes() == [] and markers(rig) == []
        resp = await client.post(path, json=callback_body("task-1", "TaskStopped"), headers=sign(path))
        assert resp.status == 200
    (marker,) = markers(rig)
    assert marker["metadata"]["name"].startswith("rtcrec-replay-") and set(marker["data"]) == {"digest", "expires"}
    assert int(marker["data"]["expires"]) > time.time()


async def test_the_sweep_deletes_expired_replay_markers_only() -> None:
    kube = FakeKube()
    now = 1_700_000_000
    for n, expires in enumerate((now - 1, now, now + 1, now + 300)):
        await kube.create(
            collection(EVIDENCE_NS), Marker("t", f"s{n}", "TaskStopped", "d", expires).to_configmap(EVIDENCE_NS)
        )
    await kube.create(collection(EVIDENCE_NS), item())  # evidence: not the sweep's
    junk = {"metadata": {"name": "rtcrec-replay-junk", "labels": {REPLAY_LABEL: "marker"}}}  # malformed: expired
    await kube.create(collection(EVIDENCE_NS), junk)
    await replays.sweep(kube, EVIDENCE_NS, clock=lambda: now).once()
    left = kube.all("configmaps", EVIDENCE_NS)
    assert sorted(c["data"].get("expires", "evidence") for c in left) == sorted(
        [str(now + 1), str(now + 300), "evidence"]
    )


def test_a_relayed_body_carries_the_vendors_known_fields_only_and_is_small() -> None:
    body = {
        **callback_body("task-1", "RecordFileUploaded"),
        "callbackTs": 1700000000000,
        "pad": "x" * 60_000,
        "taskId": "task-1",
        "appId": "\u00e9" * 60_000,  # too long once escaped: dropped
    }
    payload = {"format": "MP4", "filePath": "p/a.mp4", "secret": "y", "url": '"' * 250, "stream": ["no"]}
    text = relayed_body(body, payload)
    relayed = json.loads(text)
    assert set(relayed) == {"callbackTs", "channelId", "eventType", "payload", "taskId"}
    assert json.loads(relayed["payload"]) == {"format": "MP4", "filePath": "p/a.mp4"}
    worst = {k: '"' * 126 for k in ("appId", "channelId", "taskId", "eventType")}
    assert (
        len(relayed_body({**worst, "callbackTs": 10**30}, dict.fromkeys(PAYLOAD_FIELDS, '"' * 126))) <= MAX_BODY_CHARS
    )


# -- the operator's relayer: delivers what the receiver handed over -------------------------------------

USER_KEY = "userkey0123456789"


@dataclass
class LRow:
    id: str
    notify: dict | None = field(
        default_factory=lambda: {"url": "USER", "authKeySecretRef": {"name": "notify", "key": "k"}}
    )
    answers: tuple[int, ...] = ()  # the user's endpoint
    key: str | None = USER_KEY  # in the notify Secret (None: no Secret)
    uid: str = UID  # the relay's
    resource: bool = True
    pin: dict | None = None  # status.recordingClass ("USER" in its notify.url: the user's endpoint)
    status: dict = field(default_factory=lambda: dict(RECORDING))
    body: dict = field(default_factory=lambda: callback_body("task-1", "TaskRunning"))
    guard: Guard | None = None  # default: loopback allowed (the tests' user endpoint)
    # what must hold after
    received: int = 1
    outcome: str = "delivered"
    events: list[str] = field(default_factory=list)  # RelayFailed keys
    then: Callable[[User], Any] | None = None


def signed_for_user(user: User) -> None:
    path, headers, body = user.received[0]
    assert path == "/hook" and body == callback_body("task-1", "TaskRunning")
    expected = callback_headers(USER_KEY, int(headers["ALI-LIVE-TIMESTAMP"]))
    assert headers["ALI-LIVE-SIGNATURE"] == expected["ALI-LIVE-SIGNATURE"]


RELAYER = [
    pytest.param(r, id=r.id)
    for r in (
        LRow("delivered, signed with the user's key, the ConfigMap deleted", then=signed_for_user),
        LRow(
            "the endpoint fails (5xx): sent once more, like the cloud does; then an Event",
            answers=(500, 500),
            received=2,
            outcome="failed",
            events=["relay-failed"],
        ),
        LRow("the endpoint fails once: the second try delivers", answers=(503,), received=2),
        LRow(
            "the endpoint refuses (4xx): not resent, an Event",
            answers=(404,),
            outcome="rejected",
            events=["relay-rejected"],
        ),
        LRow(
            "the endpoint redirects: not followed",
            answers=(302,),
            outcome="delivered",
            then=lambda user: _assert([p for p, *_ in user.received] == ["/hook"]),
        ),
        LRow(
            "no key: relayed unsigned",
            notify={"url": "USER"},
            then=lambda user: _assert("ALI-LIVE-SIGNATURE" not in user.received[0][1]),
        ),
        LRow(
            "the key's Secret is gone: not relayed, an Event",
            key=None,
            received=0,
            outcome="refused",
            events=["relay-refused"],
        ),
        LRow(
            "an internal address (loopback) without being allowed: refused, an Event",
            guard=Guard(),
            received=0,
            outcome="refused",
            events=["relay-refused"],
        ),
        LRow(
            "the class's notify.url (pinned), the resource sets no notify: delivered there, unsigned",
            notify=None,
            pin={"name": "standard", "generation": 1, "defaults": {"notify": {"url": "USER"}}},
            then=lambda user: _assert(
                [p for p, *_ in user.received] == ["/hook"] and "ALI-LIVE-SIGNATURE" not in user.received[0][1]
            ),
        ),
        LRow(
            "the resource's own notify.url wins over the class's",
            pin={"name": "standard", "generation": 1, "defaults": {"notify": {"url": "CLASS"}}},
            then=signed_for_user,
        ),
        LRow("the resource is gone: dropped", resource=False, received=0, outcome="gone"),
        LRow("a namesake holds the name: dropped", uid=NAMESAKE_UID, received=0, outcome="gone"),
        # R1: a forged end or upload (one captured header pair) is relayed only once Describe shows it.
        LRow(
            "TaskStopped while status (Describe) says the task runs: never relayed",
            body=callback_body("task-1", "TaskStopped"),
            received=0,
            outcome="unconfirmed",
        ),
        LRow(
            "TaskStopped of a task status shows ended: delivered",
            body=callback_body("task-1", "TaskStopped"),
            status={**ENDED, "history": [{"taskId": "task-1", "endTime": "2026-01-01T00:00:00Z"}]},
        ),
        LRow(
            "an upload of a file Describe does not list (the URL points elsewhere): never relayed",
            body=callback_body("task-1", "RecordFileUploaded", format="MP4", filePath="p/a.mp4", url="https://evil/x"),
            status={**RECORDING, "files": {"mp4": ["p/b.mp4"]}},
            received=0,
            outcome="unconfirmed",
        ),
        LRow(
            "an upload of a listed file whose url is elsewhere: never relayed",
            body=callback_body(
                "task-1", "RecordFileUploaded", format="MP4", filePath="p/a.mp4", url="https://evil.example/p/a.mp4"
            ),
            status={**RECORDING, "files": {"mp4": ["p/a.mp4"]}},
            received=0,
            outcome="unconfirmed",
        ),
        LRow(
            "an upload of a listed file with its url in the resource's own bucket: delivered",
            body=callback_body(
                "task-1",
                "RecordFileUploaded",
                format="MP4",
                filePath="p/a.mp4",
                url="https://demo-recordings.oss-cn-shanghai.aliyuncs.com/p/a.mp4",
            ),
            status={**RECORDING, "files": {"mp4": ["p/a.mp4"]}},
        ),
        LRow(
            "an upload of a file Describe lists: delivered",
            body=callback_body("task-1", "RecordFileUploaded", format="MP4", filePath="p/a.mp4"),
            status={**RECORDING, "files": {"mp4": ["p/a.mp4"]}},
        ),
        LRow(
            "a slice beside a playlist Describe lists: delivered",
            body=callback_body("task-1", "RecordFileUploaded", format="SLICE", filePath="p/t/a_3.ts"),
            status={**RECORDING, "files": {"hls": ["p/t/a.m3u8"]}},
        ),
        LRow(
            "a slice anywhere else: never relayed",
            body=callback_body("task-1", "RecordFileUploaded", format="SLICE", filePath="q/a_3.ts"),
            status={**RECORDING, "files": {"hls": ["p/t/a.m3u8"]}},
            received=0,
            outcome="unconfirmed",
        ),
    )
]


class User:
    """The user's own NotifyUrl: records what it gets, answers as scripted."""

    def __init__(self, answers: tuple[int, ...] = ()):
        self.answers = list(answers)
        self.received: list[tuple[str, dict, dict]] = []  # path, headers, body

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((request.path, dict(request.headers), await request.json()))
        status = self.answers.pop(0) if self.answers else 200
        if status == 302:
            raise web.HTTPFound("/elsewhere")
        return web.json_response({}, status=status)


@pytest.mark.parametrize("row", RELAYER)
async def test_relayer(row: LRow) -> None:
    kube, user = FakeKube(), User(row.answers)
    async with TestServer(user.app()) as server:
        notify = dict(row.notify or {})
        if notify.get("url") == "USER":
            notify["url"] = str(server.make_url("/hook"))
        status = dict(row.status)
        if row.pin is not None:
            pin = json.loads(json.dumps(row.pin))
            urls = {"USER": str(server.make_url("/hook")), "CLASS": str(server.make_url("/class"))}
            pinned = pin["defaults"]["notify"]
            pinned["url"] = urls.get(pinned["url"], pinned["url"])
            status["recordingClass"] = pin
        if row.resource:
            kube.add_recording(rec(status, notify=notify or None))
        if row.key is not None:
            kube.add_secret(NS, "notify", {"k": row.key}, NOTIFY_KEY)
        relay = Relay(NS, "rec", row.uid, json.dumps(row.body, sort_keys=True))  # received long ago
        await kube.create(collection(EVIDENCE_NS), relay.to_configmap(EVIDENCE_NS))
        relayer = Relayer(kube, SecretCache(kube), row.guard or Guard(allowed_hosts=["127.0.0.1"]), EVIDENCE_NS)
        outcomes: list[str] = []
        deliver = relayer.deliver

        async def counted(item: Relay) -> str:
            outcomes.append(await deliver(item))
            return outcomes[-1]

        relayer.deliver = counted  # type: ignore[method-assign]
        task = asyncio.create_task(relayer.run())
        try:
            await until(lambda: not kube.all("configmaps", EVIDENCE_NS), what="the relay to be done")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert outcomes == [row.outcome]
    assert len(user.received) == row.received
    assert [e["metadata"]["name"].split(".", 1)[1] for e in kube.all("events")] == row.events
    if row.then is not None:
        assert row.then(user) is not False


async def test_a_70_kb_request_line_is_refused_in_one_line_without_a_traceback(caplog) -> None:
    rig = Rig(RRow(""))
    async with TestServer(rig.receiver.app()) as server:
        for _ in range(2):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"POST /callbacks/" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            status_line = await reader.readline()
            writer.close()
            assert status_line.split()[1] == b"400"
    records = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert len(records) == 2 and all(r.exc_info is None and r.levelname == "INFO" for r in records)
    assert all("\n" not in r.getMessage() and len(r.getMessage()) < 200 for r in records)


async def test_a_relayed_end_waits_for_describe_then_is_delivered(monkeypatch) -> None:
    monkeypatch.setattr(relay_module, "CONFIRM_RECHECK_SECONDS", (0.02, 0.05))
    kube, user = FakeKube(), User()
    async with TestServer(user.app()) as server:
        kube.add_recording(rec(dict(RECORDING), notify={"url": str(server.make_url("/hook"))}))
        body = json.dumps(callback_body("task-1", "TaskStopped"), sort_keys=True)
        relay = Relay(NS, "rec", UID, body, int(time.time()))
        await kube.create(collection(EVIDENCE_NS), relay.to_configmap(EVIDENCE_NS))
        relayer = Relayer(kube, SecretCache(kube), Guard(allowed_hosts=["127.0.0.1"]), EVIDENCE_NS)
        task = asyncio.create_task(relayer.run())
        try:
            await until(lambda: relayer._looks, what="a first look that finds the task running")
            await asyncio.sleep(0.2)
            assert not user.received and kube.all("configmaps", EVIDENCE_NS)
            ended = {**ENDED, "history": [{"taskId": "task-1", "endTime": "2026-01-01T00:00:00Z"}]}
            kube.add_recording(rec(ended, notify={"url": str(server.make_url("/hook"))}))  # the operator's Describe
            await until(lambda: not kube.all("configmaps", EVIDENCE_NS), what="the relay delivered")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert len(user.received) == 1


async def test_one_tenants_hanging_url_delays_its_own_relays_only() -> None:
    """R2: relays shared 4 workers, so one tenant's hanging notify URL delayed another's by 67 s."""
    kube, release = FakeKube(), asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/hang", hang)
    async with TestServer(app) as slow, TestServer(User().app()) as fast:
        for ns, url in (("slow", slow.make_url("/hang")), ("fast", fast.make_url("/hook"))):
            obj = recording(uid=UID if ns == "slow" else NAMESAKE_UID, status=dict(RECORDING), notify={"url": str(url)})
            obj["metadata"]["namespace"] = ns
            kube.add_recording(obj)
        for n in range(6):
            body = json.dumps(callback_body("task-1", "TaskRunning", n=n))
            await kube.create(collection(EVIDENCE_NS), Relay("slow", "rec", UID, body).to_configmap(EVIDENCE_NS))
        body = json.dumps(callback_body("task-1", "TaskRunning"))
        await kube.create(collection(EVIDENCE_NS), Relay("fast", "rec", NAMESAKE_UID, body).to_configmap(EVIDENCE_NS))
        relayer = Relayer(kube, SecretCache(kube), Guard(allowed_hosts=["127.0.0.1"]), EVIDENCE_NS)
        done: list[str] = []
        deliver = relayer.deliver

        async def noted(item: Relay) -> str:
            outcome = await deliver(item)
            done.append(item.namespace)
            return outcome

        relayer.deliver = noted  # type: ignore[method-assign]
        task = asyncio.create_task(relayer.run())
        try:
            await until(lambda: done, what="a first relay done")
            assert done == ["fast"]  # while every one of the slow tenant's waits on its URL
        finally:
            release.set()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_pending_relays_are_capped_per_resource_and_per_namespace(monkeypatch) -> None:
    monkeypatch.setattr(relay_module, "MAX_PENDING_PER_RESOURCE", 3)
    monkeypatch.setattr(relay_module, "MAX_PENDING_PER_NAMESPACE", 5)
    relayer = Relayer(FakeKube(), SecretCache(FakeKube()), Guard(), EVIDENCE_NS)
    dropped = {r: metrics.RELAYS_DROPPED.labels(reason=r)._value.get() for r in ("resource", "namespace")}
    try:
        for uid in (UID, NAMESAKE_UID, "9c9e6679-7425-40de-944b-e07fc1f90ae7"):
            for n in range(4):  # a flood from one pair of each resource
                body = json.dumps(callback_body("task-1", "TaskRunning", n=n))
                relayer._on_change("ADDED", Relay(NS, "rec", uid, body).to_configmap(EVIDENCE_NS))
    finally:
        for worker in relayer._workers:
            worker.cancel()
        await asyncio.gather(*relayer._workers, return_exceptions=True)
    assert sum(item is not None for item in relayer.items.values()) == 5
    assert metrics.RELAYS_DROPPED.labels(reason="resource")._value.get() - dropped["resource"] == 1
    assert metrics.RELAYS_DROPPED.labels(reason="namespace")._value.get() - dropped["namespace"] == 6


async def test_relays_of_one_path_are_rate_limited() -> None:
    """R2: 1500 requests in 4.4 s with one pair became relay ConfigMaps; with many pairs, one path
    still writes at most a burst, then one a second."""
    notify = {**NOTIFY["notify"], "fileUploadedFormats": ["MP4"]}
    rig = Rig(RRow("", known=[rec(RECORDING, notify=notify)]))
    rig.kube.add_recording(rec(RECORDING, notify=notify))
    rig.receiver.clock = lambda: 1_700_000_000.0
    path = f"/callbacks/{NS}/rec/{UID}/1"
    async with TestClient(TestServer(rig.receiver.app())) as client:
        for n in range(40):
            body = callback_body("task-1", "RecordFileUploaded", format="MP4", filePath=f"p/{n}.mp4")
            resp = await client.post(path, json=body, headers=sign(path, 1_700_000_000 - n))
            assert resp.status == 200
    assert len(rig.relays()) == 20


async def test_healthz_follows_readiness() -> None:
    rig = Rig(RRow(""))
    ready = [False]
    rig.receiver.ready = lambda: ready[0]
    async with TestClient(TestServer(rig.receiver.app())) as client:
        assert (await client.get("/healthz")).status == 503
        ready[0] = True
        assert (await client.get("/healthz")).status == 200


# -- the operator's evidence worker ---------------------------------------------------------------------


def item(task: str = "task-1", event: str = "TaskRunning", attempt: int = 1, uid: str = UID) -> dict:
    return Evidence(NS, "rec", uid, attempt, task, event).to_configmap(EVIDENCE_NS)


@dataclass
class WRow:
    id: str
    configmaps: list[dict] = field(default_factory=lambda: [item()])
    failures: list[BaseException] = field(default_factory=list)  # what act raises, call by call
    given: Callable[[FakeKube], Any] | None = None
    later: Callable[[FakeKube], Awaitable] | None = None  # once the worker runs
    # what must hold after
    acted: list[tuple] = field(default_factory=lambda: [(NS, "rec", UID, 1, "task-1", "TaskRunning")])
    kept: int = 0  # ConfigMaps left
    marks: tuple = ()


def malformed(**data: str | None) -> dict:
    cm = item()
    cm["metadata"]["name"] = "rtcrec-evidence-bad"
    cm["data"] = {k: v for k, v in {**cm["data"], **data}.items() if v is not None}
    return cm


async def deleted_before_acting(kube: FakeKube) -> None:
    await kube.delete(f"{collection(EVIDENCE_NS)}/{item()['metadata']['name']}")


WORKER = rows(
    WRow("evidence: acted on once, then deleted"),
    WRow(
        "act fails (apiserver, a bug): kept, tried again, deleted once done",
        failures=[ApiError(500, "etcd")],
        acted=[(NS, "rec", UID, 1, "task-1", "TaskRunning")] * 2,
    ),
    WRow(
        "act fails (cloud brown-out): kept, tried again until done",
        failures=[Transient("ServiceUnavailable"), Transient("ServiceUnavailable")],
        acted=[(NS, "rec", UID, 1, "task-1", "TaskRunning")] * 3,
    ),
    WRow(
        "its deletion fails: kept, and acted on again (deciding again from fresh state is idempotent)",
        given=lambda kube: kube.fail("DELETE", "/configmaps/", ApiError(500, "etcd")),
        acted=[(NS, "rec", UID, 1, "task-1", "TaskRunning")] * 2,
    ),
    WRow(
        "evidence with an attempt that is no number: not acted on, deleted",
        configmaps=[malformed(attempt="zero")],
        acted=[],
    ),
    WRow("evidence without a task: not acted on, deleted", configmaps=[malformed(task_id=None)], acted=[]),
    WRow("evidence of attempt 0: not acted on, deleted", configmaps=[malformed(attempt="0")], acted=[]),
    WRow("evidence whose uid is no uid: not acted on, deleted", configmaps=[malformed(uid="../x")], acted=[]),
    WRow(
        "ConfigMaps without the evidence label: not its business",
        configmaps=[{**item(), "metadata": {"name": "other", "namespace": EVIDENCE_NS}}],
        acted=[],
        kept=1,
    ),
    WRow(
        "several pieces: each acted on once",
        configmaps=[item(), item("task-2", "TaskStopped"), item("task-3", attempt=2)],
        acted=[
            (NS, "rec", UID, 1, "task-1", "TaskRunning"),
            (NS, "rec", UID, 1, "task-2", "TaskStopped"),
            (NS, "rec", UID, 2, "task-3", "TaskRunning"),
        ],
    ),
)


async def run_worker(row: WRow) -> tuple[FakeKube, list[tuple]]:
    kube = FakeKube()
    for cm in row.configmaps:
        await kube.create(collection(EVIDENCE_NS), cm)
    if row.given is not None:
        row.given(kube)
    acted: list[tuple] = []
    failures = list(row.failures)

    async def act(*args: Any) -> None:
        acted.append(args)
        if failures:
            raise failures.pop(0)

    worker = Worker(kube, EVIDENCE_NS, act, workers=2, retry_seconds=0.01)
    task = asyncio.create_task(worker.run())
    try:
        await until(
            lambda: (
                len(acted) >= len(row.acted)
                and not worker.items
                and len(kube.all("configmaps", EVIDENCE_NS)) == row.kept
            ),
            what="the worker",
        )
        await asyncio.sleep(0.05)  # and nothing more happens
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert sorted(acted) == sorted(row.acted)
    assert len(kube.all("configmaps", EVIDENCE_NS)) == row.kept
    return kube, acted


@pytest.mark.parametrize("row", WORKER)
async def test_worker(row: WRow) -> None:
    await run_worker(row)


async def test_worker_says_which_attempts_have_evidence_waiting() -> None:
    kube = FakeKube()
    for cm in (item(), item("task-9", "TaskStopped", attempt=2)):
        await kube.create(collection(EVIDENCE_NS), cm)
    release = asyncio.Event()
    seen: list[tuple[bool, bool, bool]] = []
    worker: Worker

    async def act(*args: Any) -> None:
        seen.append((worker.waiting(UID, 1), worker.waiting(UID, 2), worker.waiting(NAMESAKE_UID, 1)))
        await release.wait()

    worker = Worker(kube, EVIDENCE_NS, act, workers=1, retry_seconds=0.01)
    task = asyncio.create_task(worker.run())
    try:
        await until(lambda: seen)
        # alive evidence of attempt 1 waits; attempt 2 has only an 'ended' one; another uid none
        assert seen[0] == (True, False, False)
        release.set()
        await until(lambda: not worker.items)
        assert not worker.waiting(UID, 1)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_evidence_deleted_by_someone_else_is_forgotten() -> None:
    kube = FakeKube()
    gate = asyncio.Event()
    acted = []

    async def act(*args: Any) -> None:
        acted.append(args)
        await gate.wait()

    worker = Worker(kube, EVIDENCE_NS, act, workers=1, retry_seconds=0.01)
    task = asyncio.create_task(worker.run())
    try:
        await until(lambda: worker.reflector.synced.is_set())
        await kube.create(collection(EVIDENCE_NS), item())
        await kube.create(collection(EVIDENCE_NS), item("task-2"))
        await until(lambda: len(acted) == 1 and len(worker.items) == 2)
        await deleted_before_acting(kube)  # the first one, while it is being acted on: harmless
        await kube.delete(f"{collection(EVIDENCE_NS)}/{item('task-2')['metadata']['name']}")
        await until(lambda: len(worker.items) == 0)
        gate.set()
        await asyncio.sleep(0.05)
        assert [a[4] for a in acted] == ["task-1"]  # task-2's was gone before its turn
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_evidence_delivered_again_by_a_relist_is_acted_on_once() -> None:
    """A relist hands the worker every evidence ConfigMap again: the Describe or Stop it costs is spent once."""
    kube = FakeKube()
    await kube.create(collection(EVIDENCE_NS), item())
    release, acted = asyncio.Event(), []

    async def act(*args: Any) -> None:
        acted.append(args)
        await release.wait()

    worker = Worker(kube, EVIDENCE_NS, act, workers=4, retry_seconds=0.01)
    task = asyncio.create_task(worker.run())
    try:
        await until(lambda: acted)
        (configmap,) = kube.all("configmaps", EVIDENCE_NS)
        worker._on_change("ADDED", configmap)  # the relist, while the first act is still at work
        await asyncio.sleep(0.05)
        release.set()
        await until(lambda: not worker.items and not kube.all("configmaps", EVIDENCE_NS))
        await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert len(acted) == 1


async def test_a_relay_whose_delete_fails_is_not_sent_twice(monkeypatch) -> None:
    monkeypatch.setattr(relay_module, "RETRY_SECONDS", 0.01)
    kube, user = FakeKube(), User()
    async with TestServer(user.app()) as server:
        kube.add_recording(rec(dict(RECORDING), notify={"url": str(server.make_url("/hook"))}))
        relay = Relay(NS, "rec", UID, json.dumps(callback_body("task-1", "TaskRunning"), sort_keys=True))
        await kube.create(collection(EVIDENCE_NS), relay.to_configmap(EVIDENCE_NS))
        kube.fail("DELETE", "/configmaps/", ApiError(500, "etcd"))
        relayer = Relayer(kube, SecretCache(kube), Guard(allowed_hosts=["127.0.0.1"]), EVIDENCE_NS)
        task = asyncio.create_task(relayer.run())
        try:
            await until(lambda: not kube.all("configmaps", EVIDENCE_NS), what="the relay deleted on the second try")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert len(user.received) == 1


async def test_a_deferred_callback_whose_replay_marker_cannot_be_written_is_counted_as_an_error(caplog):
    """Said as a refused callback is said (a counter, one line), not as a bug with its traceback."""

    def errors() -> float:
        return REGISTRY.get_sample_value("rtcrec_callbacks_total", {"event": "TaskRunning", "outcome": "error"}) or 0

    before = errors()
    row = RRow(
        "deferred, its marker refused",
        known=[rec(PENDING)],
        given=lambda rig: rig.kube.fail("POST", "/configmaps$", ApiError(500, "etcd"), times=None),
        evidence=[],
    )
    await run(row)
    assert errors() == before + 1 and "Traceback" not in caplog.text and "not recorded" in caplog.text


async def test_the_callback_port_answers_callbacks_and_health_only() -> None:
    """/metrics is served on a port of its own (receiver/main.py): this one faces the internet."""
    rig = Rig(RRow(""))
    rig.receiver.ready = lambda: True
    async with TestClient(TestServer(rig.receiver.app())) as client:
        assert (await client.get("/healthz")).status == 200
        assert (await client.get("/metrics")).status == 404
