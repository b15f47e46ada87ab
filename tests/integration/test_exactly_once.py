"""Exactly-once and honest expiry: lost answers, crashes, idle channels, RECOVERING, forged callbacks."""

import http.server
import json
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict

import pytest
from multidict import CIMultiDict

from rtc_recording.api.callback import callback_headers, path_key, signature_ok

from .conftest import APP, AUTH_KEY, recording, wait_for

pytestmark = pytest.mark.cluster


def live_tasks(stack, channel):
    return [t for t in stack.tasks(channel) if t["status"] in ("RUNNING", "RECOVERING")]


def test_lost_answers_and_sigkills_end_with_one_task_per_resource(stack, namespace, emulator):
    channels = []
    for _ in range(3):
        name = f"room-{len(channels)}-{namespace}"
        for user in ("alice", "bob"):
            emulator.control.join(APP, name, user)
        channels.append(name)
    emulator.control.set_faults(drop_start_rate=0.1)
    owners = {f"rec-{i}": channels[i % 3] for i in range(24)}
    for i, (name, channel) in enumerate(owners.items()):
        stack.apply(namespace, recording(name, channel))
        if i in (8, 16):  # kill mid-way: some Starts are in flight, some answers unwritten
            stack.operator.restart()

    for name in owners:
        stack.wait_phase(namespace, name, "Recording", timeout=90)
    emulator.control.set_faults(drop_start_rate=0)

    expected = defaultdict(set)
    for name, channel in owners.items():
        expected[channel].add(stack.status(namespace, name)["taskId"])
    assert sum(len(ids) for ids in expected.values()) == len(owners)  # no two resources share a task
    for channel, task_ids in expected.items():
        # Exactly one live task per live resource: every duplicate was stopped (or never made).
        wait_for(
            lambda channel=channel, task_ids=task_ids: {t["taskId"] for t in live_tasks(stack, channel)} == task_ids,
            timeout=30,
            what=f"one live task per resource in {channel}",
        )
    lost = [e for name in owners for e in stack.events(namespace, name) if e["reason"] == "UnknownOutcome"]
    assert lost, "the fault injection dropped no Start answer: this test proved nothing"


def test_a_duplicate_made_while_the_receiver_was_down_is_stopped(stack, namespace, channel, emulator):
    """The worst case: the answer is lost *and* every start callback of that task is lost."""
    stack.receiver.kill()
    emulator.control.set_faults(drop_start_rate=1.0)
    stack.apply(namespace, recording("orphaned", channel))
    wait_for(lambda: len(stack.tasks(channel)) == 1, what="the first, unanswered task")
    emulator.control.set_faults(drop_start_rate=0)
    # No callback can name it, so after the grace period the operator starts attempt 2.
    status = stack.wait_phase(namespace, "orphaned", "Recording", timeout=30)
    assert status["attempt"]["number"] == 2
    assert len(live_tasks(stack, channel)) == 2  # the orphan runs: nobody knows its id yet
    stack.receiver.start()
    # The orphan's next HLS slice upload is a callback for attempt 1: it gets stopped.
    wait_for(
        lambda: [t["taskId"] for t in live_tasks(stack, channel)] == [status["taskId"]],
        timeout=30,
        what="the orphan reaped",
    )
    wait_for(lambda: stack.status(namespace, "orphaned").get("strayTasks") == 1, what="strayTasks counted")
    stack.wait_events(namespace, "orphaned", "StrayTaskStopped")


def test_idle_channel_completes_through_the_poller_with_callbacks_off(stack, namespace, channel, emulator):
    emulator.control.set_faults(callbacks=False)
    stack.apply(namespace, recording("quiet", channel, maxIdleSeconds=30))
    task_id = stack.wait_phase(namespace, "quiet", "Recording")["taskId"]
    for user in ("alice", "bob"):
        emulator.control.leave(APP, channel, user)
    wait_for(lambda: emulator.control.task(task_id)["status"] == "STOPPED", what="the cloud's idle stop")
    status = stack.wait_phase(namespace, "quiet", "Completed", timeout=15)  # poll interval is 2 s
    assert status["reason"] == "IdleTimeout" and status["completionTime"]
    assert status["taskId"] == task_id
    # Terminal means terminal: a restart does not start a new task for it.
    stack.operator.restart()
    time.sleep(3)
    assert len(stack.tasks(channel)) == 1
    assert stack.status(namespace, "quiet")["phase"] == "Completed"


def test_the_end_callback_is_kept_as_evidence_while_the_operator_is_down(stack, namespace, channel, emulator):
    stack.apply(namespace, recording("quiet-cb", channel, maxIdleSeconds=30))
    task_id = stack.wait_phase(namespace, "quiet-cb", "Recording")["taskId"]
    stack.operator.kill()  # the receiver alone: it records, it does not act
    try:
        for user in ("alice", "bob"):
            emulator.control.leave(APP, channel, user)
        ended = wait_for(
            lambda: [
                e for e in stack.evidence() if e["data"]["task_id"] == task_id and e["data"]["event"] == "TaskStopped"
            ],
            timeout=15,
            what="TaskStopped evidence",
        )
        assert ended[0]["data"]["uid"] == stack.get(namespace, "quiet-cb")["metadata"]["uid"]
        assert stack.status(namespace, "quiet-cb")["phase"] == "Recording"
    finally:
        stack.operator.start()
    status = stack.wait_phase(namespace, "quiet-cb", "Completed", timeout=15)
    assert (status["reason"], status["taskId"]) == ("IdleTimeout", task_id)
    stack.wait_events(namespace, "quiet-cb", "IdleTimeout")
    wait_for(
        lambda: not [e for e in stack.evidence() if e["data"]["task_id"] == task_id],
        timeout=15,
        what="the evidence to be deleted once acted on",
    )


def test_recovering_is_shown_and_recovered(stack, namespace, channel, emulator):
    stack.apply(namespace, recording("shaky", channel))
    task_id = stack.wait_phase(namespace, "shaky", "Recording")["taskId"]
    emulator.control.recover(task_id, seconds=120)  # emulated: 4 s real
    status = stack.wait_phase(namespace, "shaky", "Recovering", timeout=15)
    assert next(c for c in status["conditions"] if c["type"] == "Ready")["status"] == "False"
    status = stack.wait_phase(namespace, "shaky", "Recording", timeout=20)
    assert status["taskId"] == task_id and len(stack.tasks(channel)) == 1


def post_callback(stack, path, body, headers):
    request = urllib.request.Request(
        f"{stack.env['RTCREC_CALLBACK_URL']}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_forged_and_stale_callbacks_are_rejected(stack, namespace, channel):
    stack.apply(namespace, recording("guarded", channel))
    status = stack.wait_phase(namespace, "guarded", "Recording")
    uid = stack.get(namespace, "guarded")["metadata"]["uid"]
    path = f"/callbacks/{namespace}/guarded/{uid}/1"
    stop = {
        "appId": APP,
        "channelId": channel,
        "taskId": status["taskId"],
        "eventType": "TaskStopped",
        "callbackTs": int(time.time() * 1000),
        "payload": json.dumps({"reason": "IdleTimeout"}),
    }

    key = path_key(AUTH_KEY, namespace, "guarded", uid, 1)  # the key the task was started with
    assert post_callback(stack, path, stop, {}) == 403  # unsigned
    assert post_callback(stack, path, stop, callback_headers("x" * 16, time.time())) == 403  # wrong key
    assert post_callback(stack, path, stop, callback_headers(AUTH_KEY, time.time())) == 403  # not this path's
    assert post_callback(stack, path, stop, callback_headers(key, time.time() - 3600)) == 403  # stale
    # Correctly signed but false: the task still runs, so Describe contradicts it.
    assert post_callback(stack, path, stop, callback_headers(key, time.time())) == 200
    # The signature does not cover the body: a replayed one naming another resource's task as
    # a stray of this one must not get that task stopped.
    stack.apply(namespace, recording("bystander", channel))
    other = stack.wait_phase(namespace, "bystander", "Recording")["taskId"]
    forged = {**stop, "taskId": other, "eventType": "TaskRunning"}
    assert (
        post_callback(
            stack,
            f"/callbacks/{namespace}/guarded/{uid}/7",
            forged,
            callback_headers(path_key(AUTH_KEY, namespace, "guarded", uid, 7), time.time()),
        )
        == 200
    )
    time.sleep(1)
    assert stack.status(namespace, "guarded")["phase"] == "Recording"
    assert [t["status"] for t in stack.tasks(channel)] == ["RUNNING", "RUNNING"]
    assert stack.status(namespace, "guarded").get("strayTasks") is None


class Captured(http.server.BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Captured.received.append((dict(self.headers), body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_the_users_own_notify_url_still_gets_its_events(stack, namespace, channel, emulator):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Captured)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    user_key = "userKey0123456789abc"
    stack.cluster.kubectl("create", "secret", "generic", "hook", "-n", namespace, f"--from-literal=key={user_key}")
    stack.cluster.kubectl("label", "secret", "hook", "-n", namespace, "rtc.recording.io/usage=notify-key")
    try:
        storage = {
            "oss": {"endpoint": "oss-cn-shanghai.aliyuncs.com", "bucket": "demo-recordings"},
            "files": [{"format": "MP4"}],
        }
        stack.apply(
            namespace,
            recording(
                "relayed",
                channel,
                storage=storage,
                notify={
                    "url": f"http://127.0.0.1:{server.server_port}/hook",
                    "authKeySecretRef": {"name": "hook", "key": "key"},
                    "fileUploadedFormats": ["MP4"],
                },
            ),
        )
        task_id = stack.wait_phase(namespace, "relayed", "Recording")["taskId"]
        wait_for(lambda: any(b["eventType"] == "TaskRunning" for _, b in Captured.received), what="relayed event")
    finally:
        server.shutdown()
    headers, body = next((h, b) for h, b in Captured.received if b["eventType"] == "TaskRunning")
    assert body["taskId"] == task_id
    assert signature_ok(CIMultiDict(headers), user_key, time.time())  # signed with the user's key, not ours
    # The operator's SLICE heartbeat is its own business.
    assert not any(
        b.get("eventType") == "RecordFileUploaded" and "SLICE" in json.dumps(b["payload"]) for _, b in Captured.received
    )


def test_an_adopted_task_gets_the_spec_changes_made_while_its_answer_was_lost(stack, namespace, channel, emulator):
    emulator.control.join(APP, channel, "carol")
    emulator.control.set_faults(drop_start_rate=1.0, latency_seconds=1.0)
    stack.apply(namespace, recording("moving", channel))
    wait_for(lambda: stack.status(namespace, "moving").get("attempt"), what="the write-ahead attempt")
    # While Start (generation 1) is on the wire, the user adds a subscriber (generation 2).
    stack.apply(
        namespace,
        recording("moving", channel, subscribers=[{"userId": "alice"}, {"userId": "bob"}, {"userId": "carol"}]),
    )
    wait_for(lambda: len(stack.tasks(channel)) == 1, what="the task whose answer is lost")
    emulator.control.set_faults(drop_start_rate=0, latency_seconds=0)

    wait_for(
        lambda: stack.status(namespace, "moving").get("observedGeneration") == 2,
        timeout=30,
        what="generation 2 applied to the adopted task",
    )
    (task,) = stack.tasks(channel)
    assert stack.status(namespace, "moving")["taskId"] == task["taskId"]
    assert {s["userId"] for s in task["subscribers"]} == {"alice", "bob", "carol"}
