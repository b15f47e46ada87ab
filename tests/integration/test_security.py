"""Issue 14: what a tenant or an outsider can make the operator do, on the real apiserver and emulator.

Each test plays the attack of one finding and fails without the fix it covers.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager

import pytest

from rtc_recording.api.callback import callback_headers, path_key
from rtc_recording.api.names import troubleshooting

from .conftest import ACCESS_KEY, APP, AUTH_KEY, recording, wait_for

pytestmark = pytest.mark.cluster


def patch_status(stack, namespace: str, name: str, status: dict) -> None:
    """What a tenant with `patch rtcrecordings/status` can do."""
    stack.cluster.kubectl(
        "patch",
        "rtcrec",
        name,
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )


def synced(stack, namespace: str, name: str) -> dict:
    return next((c for c in stack.status(namespace, name).get("conditions", []) if c["type"] == "Synced"), {})


def test_a_forged_task_id_steers_nothing(stack, crds, namespace, channel, emulator):
    """Finding 1: a tenant points status.taskId of their resource at another namespace's task."""
    victim_ns = f"{namespace}-v"
    crds.kubectl("create", "namespace", victim_ns)
    stack.apply(victim_ns, recording("victim", channel))
    victim_task = stack.wait_phase(victim_ns, "victim", "Recording")["taskId"]
    other = f"{channel}-thief"
    for user in ("alice", "bob"):
        emulator.control.join(APP, other, user)
    stack.apply(namespace, recording("thief", other))
    own_task = stack.wait_phase(namespace, "thief", "Recording")["taskId"]

    patch_status(stack, namespace, "thief", {"taskId": victim_task})
    wait_for(
        lambda: synced(stack, namespace, "thief").get("reason") == "TaskNotProven",
        timeout=15,
        what="the forged task id refused",
        details=lambda: stack.operator.output()[-3000:],
    )
    stack.wait_events(namespace, "thief", "TaskNotProven")
    # A copied seal does not help: it is bound to the victim's uid.
    patch_status(stack, namespace, "thief", {"taskSeal": stack.status(victim_ns, "victim")["taskSeal"]})

    # An Update of the thief's subscribers must not reach the victim's task.
    stack.apply(
        namespace,
        recording(
            "thief",
            other,
            subscribers=[{"userId": "alice"}],
            layout={"panes": [{"userId": "alice", "left": "0", "top": "0", "width": "1", "height": "1"}]},
        ),
    )
    wait_for(
        lambda: synced(stack, namespace, "thief").get("observedGeneration") == 2,
        timeout=15,
        what="the Update of generation 2 refused",
    )
    assert synced(stack, namespace, "thief")["reason"] == "TaskNotProven"
    assert {s["userId"] for s in emulator.control.task(victim_task)["subscribers"]} == {"alice", "bob"}

    # Deleting the thief neither stops the victim's task nor hangs.
    stack.cluster.kubectl("delete", "rtcrec", "thief", "-n", namespace, "--wait=true", "--timeout=30s")
    assert emulator.control.task(victim_task)["status"] == "RUNNING"
    assert stack.status(victim_ns, "victim")["phase"] == "Recording"
    # The thief's own task, which its status no longer names, is found by its heartbeat and stopped.
    wait_for(
        lambda: emulator.control.task(own_task)["status"] == "STOPPED",
        timeout=30,
        what="the thief's untracked task reaped",
    )
    assert emulator.control.task(victim_task)["status"] == "RUNNING"


def test_task_ids_written_before_seals_are_sealed_once(stack, crds, namespace, emulator):
    """Finding 1, migration: objects an older operator wrote (a task id, no seal) are sealed at the first
    start of a sealing operator, unless two resources claim one task; afterwards never again."""
    channels = {}
    for name in ("legacy", "original", "copycat"):
        channels[name] = f"room-{name}-{namespace}"
        for user in ("alice", "bob"):
            emulator.control.join(APP, channels[name], user)
        stack.apply(namespace, recording(name, channels[name]))
    tasks = {name: stack.wait_phase(namespace, name, "Recording")["taskId"] for name in channels}

    stack.operator.kill()
    try:
        # As an older operator would have left them; the copycat claims the original's task.
        for name in ("legacy", "original"):
            patch_status(stack, namespace, name, {"taskSeal": None})
        patch_status(stack, namespace, "copycat", {"taskSeal": None, "taskId": tasks["original"]})
        crds.kubectl("delete", "configmap", "rtcrec-task-seals", "-n", "default", "--ignore-not-found")
    finally:
        stack.operator.start()
    wait_for(
        lambda: stack.status(namespace, "legacy").get("taskSeal"),
        timeout=30,
        what="the legacy task sealed",
        details=lambda: stack.operator.output()[-3000:],
    )
    for name in ("original", "copycat"):
        wait_for(
            lambda name=name: synced(stack, namespace, name).get("reason") == "TaskNotProven",
            timeout=15,
            what=f"{name}: a task claimed twice is not sealed",
        )
    assert crds.kubectl("get", "configmap", "rtcrec-task-seals", "-n", "default").returncode == 0

    # Once migrated, a seal removed later is never restored: the operator refuses that task id.
    patch_status(stack, namespace, "legacy", {"taskSeal": None})
    stack.operator.restart()
    wait_for(
        lambda: synced(stack, namespace, "legacy").get("reason") == "TaskNotProven",
        timeout=30,
        what="the unsealed task refused after the migration",
    )
    assert not stack.status(namespace, "legacy").get("taskSeal")
    assert emulator.control.task(tasks["legacy"])["status"] == "RUNNING"
    # Deleting what is not proven stops nothing and does not hang; the tasks end when their channels idle.
    stack.cluster.kubectl("delete", "rtcrec", "--all", "-n", namespace, "--wait=true", "--timeout=60s")
    assert emulator.control.task(tasks["legacy"])["status"] == "RUNNING"
    for room in channels.values():
        for user in ("alice", "bob"):
            emulator.control.leave(APP, room, user)


def metric(stack, name: str, **labels: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.env['RTCREC_METRICS_PORT']}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items())
    )


class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.received.append((dict(self.headers), body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@contextmanager
def hook(host: str = "127.0.0.1"):
    """A user's own notify URL on loopback: `host` 127.0.0.1 is allowed by the stack's settings,
    any other loopback address is refused like every internal address."""
    server = http.server.ThreadingHTTPServer((host, 0), Hook)
    server.received = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server, f"http://{host}:{server.server_port}/hook"
    finally:
        server.shutdown()
        server.server_close()


def secret(stack, namespace: str, name: str, usage: str | None = None, **data: str) -> None:
    stack.cluster.kubectl(
        "create", "secret", "generic", name, "-n", namespace, *(f"--from-literal={k}={v}" for k, v in data.items())
    )
    if usage:
        stack.cluster.kubectl("label", "secret", name, "-n", namespace, f"rtc.recording.io/usage={usage}")


def events(stack, namespace: str, name: str, reason: str) -> list[dict]:
    return [e for e in stack.events(namespace, name) if e["reason"] == reason]


def test_only_secrets_that_opt_in_sign_relays(stack, namespace, channel):
    """Finding 2: a user who may not read Secrets names one as their notify key: relayed callbacks
    signed md5("<ts>|<value>") would give its value away offline."""
    password = "databasePassword0123"  # letters and digits: a valid NotifyAuthKey, were it one
    secret(stack, namespace, "db", password=password)
    secret(stack, namespace, "bad-key", "notify-key", key="not a key")
    with hook() as (server, url):
        stack.apply(
            namespace,
            recording("oracle", channel, notify={"url": url, "authKeySecretRef": {"name": "db", "key": "password"}}),
        )
        stack.apply(
            namespace,
            recording("malformed", channel, notify={"url": url, "authKeySecretRef": {"name": "bad-key", "key": "key"}}),
        )
        stack.apply(
            namespace,
            recording(
                "missing", channel, notify={"url": url, "authKeySecretRef": {"name": "nothing-here", "key": "key"}}
            ),
        )
        for name in ("oracle", "malformed", "missing"):
            stack.wait_phase(namespace, name, "Recording")
            wait_for(
                lambda name=name: events(stack, namespace, name, "RelayFailed"),
                timeout=15,
                what=f"{name}: the relay refused",
                details=lambda: stack.operator.output()[-3000:],
            )
        assert server.received == []  # nothing signed with the password, nor sent unsigned
    # Each message starts with the callback refused first, which races (TaskStarting for one resource,
    # TaskRunning for another): the words after it are what must not tell the two apart.
    said = {
        name: events(stack, namespace, name, "RelayFailed")[0]["message"].split(" not relayed ", 1)[1]
        for name in ("oracle", "missing")
    }
    # A Secret that did not opt in and one that does not exist are refused in the same words.
    assert said["oracle"].replace("'db'", "X") == said["missing"].replace("'nothing-here'", "X")
    assert "rtc.recording.io/usage=notify-key" in said["oracle"] and "password" not in said["oracle"]
    malformed = events(stack, namespace, "malformed", "RelayFailed")[0]["message"]
    assert "16 to 64 letters and digits" in malformed and "not a key" not in malformed


def test_only_secrets_that_opt_in_are_billed(stack, namespace, channel, emulator):
    """Finding 2: credentialsSecretRef may name only a Secret labelled for credentials; a missing one
    gets a clear message and an Event (finding 7)."""
    secret(stack, namespace, "someone-elses", accessKeyId=ACCESS_KEY[0], accessKeySecret=ACCESS_KEY[1])
    stack.apply(namespace, recording("billed", channel, credentialsSecretRef={"name": "someone-elses"}))
    stack.apply(namespace, recording("nothing", channel, credentialsSecretRef={"name": "not-there"}))
    said = {}
    for name, secret_name in (("billed", "someone-elses"), ("nothing", "not-there")):
        status = wait_for(
            lambda name=name: (s := stack.status(namespace, name)).get("reason") == "CredentialsUnavailable" and s,
            timeout=15,
            what=f"{name}: refused credentials",
        )
        assert status["phase"] == "Pending"
        (event,) = stack.wait_events(namespace, name, "CredentialsUnavailable")  # one, however often it retries
        assert event["message"] == f"{status['message']} (see {troubleshooting('CredentialsUnavailable')})"
        said[name] = status["message"].replace(repr(secret_name), "X")
    assert said["billed"] == said["nothing"]
    assert "rtc.recording.io/usage=credentials" in said["billed"] and "/api/v1" not in said["billed"]
    assert stack.tasks(channel) == []
    # Consent given: the same resource records, billed to that Secret's key.
    stack.cluster.kubectl("label", "secret", "someone-elses", "-n", namespace, "rtc.recording.io/usage=credentials")
    stack.wait_phase(namespace, "billed", "Recording", timeout=30)


def test_relays_reach_public_addresses_only(stack, namespace, channel):
    """Finding 5: spec.notify.url at an internal address (here 127.0.0.2: loopback, not allowed)
    receives nothing, checked where the connection is made; 127.0.0.1 is allowed by the stack's
    RTCREC_RELAY_ALLOWED_HOSTS and proves the relay works."""
    refused_before = metric(stack, "rtcrec_relays_total", outcome="refused")
    with hook("127.0.0.2") as (internal, internal_url), hook() as (allowed, allowed_url):
        stack.apply(namespace, recording("internal", channel, notify={"url": internal_url}))
        stack.apply(namespace, recording("allowed", channel, notify={"url": allowed_url}))
        wait_for(
            lambda: any(b["eventType"] == "TaskRunning" for _, b in allowed.received),
            timeout=20,
            what="the allowed relay",
        )
        wait_for(lambda: events(stack, namespace, "internal", "RelayFailed"), timeout=20, what="the refused relay")
        assert metric(stack, "rtcrec_relays_total", outcome="refused") > refused_before
        assert internal.received == []
    (event,) = events(stack, namespace, "internal", "RelayFailed")
    assert "internal address (loopback)" in event["message"]
    # The CRD takes the scheme in any case, and refuses user information.
    stack.apply(namespace, recording("shouting", channel, notify={"url": allowed_url.replace("http", "HTTP")}))
    refused = stack.cluster.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        check=False,
        input=json.dumps(recording("userinfo", channel, notify={"url": "https://user:password@hooks.example.com/x"})),
    )
    assert refused.returncode != 0 and "spec.notify.url" in refused.stderr


def post_callback(stack, path: str, body: dict, headers: dict) -> int:
    request = urllib.request.Request(
        f"{stack.env['RTCREC_CALLBACK_URL']}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_captured_signature_is_worth_nothing_elsewhere(stack, namespace, channel):
    """Finding 4: the vendor signs the timestamp only. A header pair captured from one callback,
    replayed within 5 minutes on another path or naming another task, is refused."""
    stack.apply(namespace, recording("watched", channel))
    stack.apply(namespace, recording("bystander", channel))
    task = stack.wait_phase(namespace, "watched", "Recording")["taskId"]
    other = stack.wait_phase(namespace, "bystander", "Recording")["taskId"]
    uid = stack.get(namespace, "watched")["metadata"]["uid"]
    other_uid = stack.get(namespace, "bystander")["metadata"]["uid"]
    path = f"/callbacks/{namespace}/watched/{uid}/1"
    # What the cloud sends to this path in this second (its key is the path's own, callbacks.path_key).
    captured = callback_headers(path_key(AUTH_KEY, namespace, "watched", uid, 1), time.time())
    running = {
        "appId": APP,
        "channelId": channel,
        "taskId": task,
        "eventType": "TaskRunning",
        "callbackTs": int(time.time() * 1000),
        "payload": "{}",
    }
    assert post_callback(stack, path, running, captured) == 200
    # The same task's next event in the same second shares the pair: still fine.
    assert post_callback(stack, path, {**running, "eventType": "TaskStarting"}, captured) == 200
    # Replayed on another resource's path, or naming another task (a "stray" to stop): refused.
    assert post_callback(stack, f"/callbacks/{namespace}/bystander/{other_uid}/1", running, captured) == 403
    for task_id in (other, "forged-task-1", "forged-task-2"):
        assert post_callback(stack, path, {**running, "taskId": task_id}, captured) == 403
    assert post_callback(stack, path, {**running, "channelId": "another"}, captured) == 403
    assert stack.status(namespace, "bystander")["phase"] == "Recording"
    assert stack.status(namespace, "watched").get("strayTasks") is None


def test_slow_clients_are_dropped(stack, namespace):
    """Finding 7: a connection that sends its headers, or its body, too slowly is not held open
    (the stack's receiver allows 2 s for each; the bound below is generous)."""
    host, port = stack.env["RTCREC_CALLBACK_URL"].removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as slow:
        slow.sendall(b"POST /callbacks/a/b/0f8fad5b-d9cb-469f-a165-70867728950e/1 HTTP/1.1\r\nHost: x\r\n")
        assert slow.recv(1024) == b""  # closed by the receiver; socket.timeout fails the test
    uid = "0f8fad5b-d9cb-469f-a165-70867728950e"
    headers = callback_headers(path_key(AUTH_KEY, namespace, "r", uid, 1), time.time())
    with socket.create_connection((host, int(port)), timeout=30) as slow:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        slow.sendall(
            f"POST /callbacks/{namespace}/r/{uid}/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
            f'Content-Type: application/json\r\n{head}\r\n{{"appId"'.encode()
        )
        answer = slow.recv(1024)
        assert answer.startswith(b"HTTP/1.1 408"), answer


def test_receiver_input_of_any_shape_is_refused_cheaply(stack, namespace, channel):
    """Findings 3 and 7 (fixed before this file; kept covered here on the real stack): paths that
    would reach another namespace's objects, JSON too deep to parse and made-up event types."""
    stack.apply(namespace, recording("target", channel))
    task = stack.wait_phase(namespace, "target", "Recording")["taskId"]
    uid = stack.get(namespace, "target")["metadata"]["uid"]
    body = {"appId": APP, "channelId": channel, "taskId": task, "eventType": "TaskRunning", "payload": "{}"}
    for ns, name in (
        ("..%2Fkube-system", "target"),
        (f"{namespace}%2F..%2Fdefault", "target"),
        (namespace, "target%2F..%2F..%2Fsecrets"),
        ("KUBE-SYSTEM", "target"),
    ):
        path = f"/callbacks/{ns}/{name}/{uid}/1"
        headers = callback_headers(
            path_key(AUTH_KEY, urllib.parse.unquote(ns), urllib.parse.unquote(name), uid, 1), time.time()
        )
        assert post_callback(stack, path, body, headers) == 400, path
    path, key = f"/callbacks/{namespace}/target/{uid}/1", path_key(AUTH_KEY, namespace, "target", uid, 1)
    request = urllib.request.Request(
        f"{stack.env['RTCREC_CALLBACK_URL']}{path}",
        data=b"[" * 50_000,
        headers=callback_headers(key, time.time()),
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as deep:
        urllib.request.urlopen(request, timeout=10)
    assert deep.value.code == 400
    for i in range(30):  # each a new label value, were the label taken from the body
        assert (
            post_callback(stack, path, {**body, "eventType": f"Made-up-{i}"}, callback_headers(key, time.time())) == 200
        )
    scraped = f"http://127.0.0.1:{stack.env['RTCREC_RECEIVER_METRICS_PORT']}/metrics"
    with urllib.request.urlopen(scraped, timeout=5) as resp:
        labels = {
            line.split('event="', 1)[1].split('"', 1)[0]
            for line in resp.read().decode().splitlines()
            if line.startswith("rtcrec_callbacks_total{")
        }
    assert not [label for label in labels if label.startswith("Made-up")] and "other" in labels
    with urllib.request.urlopen(f"{stack.env['RTCREC_CALLBACK_URL']}/healthz", timeout=5) as resp:
        assert resp.status == 200  # its watch has listed every resource (503 before)
    assert stack.status(namespace, "target")["phase"] == "Recording"


def test_a_forged_class_pin_spends_no_other_accounts_credentials(stack, crds, namespace, channel, emulator):
    """Finding 1, with classes: status.recordingClass names the credentials Secret a task's later
    calls use. A tenant who points it at another namespace's credentials Secret (labelled, since
    its owner uses it) would have the operator Describe, Update and Stop with that account; the
    seal covers the account too, so nothing is called with it."""
    own, victim = ("LTAI5tClassOwnKey", "class-own-secret"), ("LTAI5tVictimOwnKey", "victim-own-secret")
    emulator.control.credentials(access_keys=dict([own, victim]), accounts={victim[0]: "victim"})
    platform, victim_ns = f"{namespace}-p", f"{namespace}-v"
    for ns, key in ((platform, own), (victim_ns, victim)):
        crds.kubectl("create", "namespace", ns)
        secret(stack, ns, "aliyun", "credentials", accessKeyId=key[0], accessKeySecret=key[1])
    klass = f"class-{namespace}"
    crds.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "rtc.recording.io/v1alpha1",
                "kind": "RtcRecordingClass",
                "metadata": {"name": klass},
                "spec": {"credentialsSecretRef": {"namespace": platform, "name": "aliyun"}, "namespaceSelector": {}},
            }
        ),
    )
    try:
        stack.apply(namespace, recording("classy", channel, recordingClassName=klass))
        status = stack.wait_phase(namespace, "classy", "Recording")
        assert emulator.control.task(status["taskId"])["accessKeyId"] == own[0]
        emulator.control.reset_stats()
        patch_status(
            stack,
            namespace,
            "classy",
            {"recordingClass": {"credentialsSecretRef": {"namespace": victim_ns, "name": "aliyun"}}},
        )
        wait_for(
            lambda: synced(stack, namespace, "classy").get("reason") == "TaskNotProven",
            timeout=15,
            what="the forged pin refused",
            details=lambda: stack.operator.output()[-3000:],
        )
        stack.cluster.kubectl("delete", "rtcrec", "classy", "-n", namespace, "--wait=true", "--timeout=30s")
        assert victim[0] not in emulator.control.stats()["calls"]["byAccessKeyId"]
    finally:
        crds.kubectl("delete", "rtcrecclass", klass, "--wait=false", check=False)
        for user in ("alice", "bob"):
            emulator.control.leave(APP, channel, user)
