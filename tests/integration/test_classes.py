"""RtcRecordingClass on the real apiserver and emulator: defaulting, the class's credentials from the
platform team's namespace, refusals (merged spec, namespace outside the selector, a missing class),
and a class change during a recording (no Update, no restart; status keeps the generation)."""

from __future__ import annotations

import base64
import http.server
import json
import threading
import uuid
from pathlib import Path

import pytest
import yaml

from .conftest import APP, BUCKET, apply_many, recording, wait_for

pytestmark = pytest.mark.cluster

PLATFORM_KEY = ("LTAI5tPlatformClass", "platform-class-secret")
TRANSCODE = {
    "audioBitrateKbps": 48,
    "audioChannels": 1,
    "audioSampleRateHz": 48000,
    "videoBitrateKbps": 900,
    "videoFramerate": 15,
    "videoGop": 30,
}
TENANT_LABEL = "rtc.recording.io/tenant"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EXAMPLE_KEY = ("LTAI-replace-me", "replace-me")  # what examples/notify-signed.yaml's Secret holds
PEOPLE = {"alice": ("audio", "camera", "screen"), "bob": ("audio", "camera"), "carol": ("audio", "camera")}


@pytest.fixture
def platform(stack):
    """A namespace the platform team controls, with the class's credentials Secret in it."""
    stack.emulator.control.credentials(access_keys=dict([PLATFORM_KEY]))
    name = f"platform-{uuid.uuid4().hex[:6]}"
    stack.cluster.kubectl("create", "namespace", name)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "aliyun", "labels": {"rtc.recording.io/usage": "credentials"}},
        "data": {
            "accessKeyId": base64.b64encode(PLATFORM_KEY[0].encode()).decode(),
            "accessKeySecret": base64.b64encode(PLATFORM_KEY[1].encode()).decode(),
        },
    }
    stack.apply(name, secret)
    return name


@pytest.fixture
def tenant(stack, namespace):
    stack.cluster.kubectl("label", "namespace", namespace, f"{TENANT_LABEL}=yes")
    return namespace


@pytest.fixture
def make_class(stack):
    made = []

    def make(platform: str, default: bool = False, **spec) -> str:
        name = f"class-{uuid.uuid4().hex[:6]}"
        body = {
            "apiVersion": "rtc.recording.io/v1alpha1",
            "kind": "RtcRecordingClass",
            "metadata": {"name": name},
            "spec": {
                "region": "cn-shanghai",
                "maxIdleSeconds": 120,
                "storage": {
                    "oss": {"endpoint": "oss-cn-shanghai.aliyuncs.com", "bucket": BUCKET},
                    "files": [{"format": "MP4", "pathPrefix": ["classes"]}],
                },
                "transcode": TRANSCODE,
                "layout": {"background": {"url": "https://example.com/gen1.png"}},
                "credentialsSecretRef": {"namespace": platform, "name": "aliyun"},
                "namespaceSelector": {"matchLabels": {TENANT_LABEL: "yes"}},
                **spec,
            },
        }
        if default:
            body["metadata"]["annotations"] = {"rtc.recording.io/is-default-class": "true"}
        stack.cluster.kubectl("apply", "-f", "-", input=json.dumps(body))
        made.append(name)
        return name

    yield make
    for name in made:
        stack.cluster.kubectl("delete", "rtcrecclass", name, "--wait=false", check=False)


def classed(name: str, channel: str, class_name: str | None, **spec) -> dict:
    """A recording that leaves storage and transcode to its class."""
    manifest = recording(name, channel)
    for key in ("storage", "transcode", "maxIdleSeconds"):
        manifest["spec"].pop(key)
    manifest["spec"].update(spec)
    if class_name:
        manifest["spec"]["recordingClassName"] = class_name
    return manifest


def class_generation(stack, name: str) -> int:
    return json.loads(stack.cluster.kubectl("get", "rtcrecclass", name, "-o", "json").stdout)["metadata"]["generation"]


def test_a_class_fills_what_the_recording_leaves_out(stack, tenant, platform, make_class, channel, emulator):
    gold = make_class(platform)
    stack.apply(tenant, classed("classy", channel, gold))
    status = stack.wait_phase(tenant, "classy", "Recording")
    task = emulator.control.task(status["taskId"])
    assert task["accessKeyId"] == PLATFORM_KEY[0]  # the class's credentials, from the platform namespace
    params = task["params"]
    assert params["StorageParams"]["OSSParams"]["OSSBucket"] == BUCKET
    assert params["StorageParams"]["FileInfo"][0]["FilePathPrefix"] == ["classes"]
    assert params["MixTranscodeParams"]["VideoBitrate"] == 900
    assert int(params["MaxIdleTime"]) == 120
    assert params["MixLayoutParams"]["MixBackground"]["Url"] == "https://example.com/gen1.png"
    pin = status["recordingClass"]
    assert (pin["name"], pin["generation"]) == (gold, class_generation(stack, gold))
    assert pin["credentialsSecretRef"] == {"namespace": platform, "name": "aliyun"}
    # the tenant's own value wins over the class's
    stack.apply(tenant, classed("own-idle", channel, gold, maxIdleSeconds=30))
    own = stack.wait_phase(tenant, "own-idle", "Recording")
    assert emulator.control.task(own["taskId"])["params"]["MaxIdleTime"] == "30"
    # deleting stops the task with the class's credentials
    stack.cluster.kubectl("delete", "rtcrec", "classy", "own-idle", "-n", tenant, "--timeout=30s")
    assert emulator.control.task(status["taskId"])["status"] == "STOPPED"


def test_kubectl_wait_reads_a_class_and_a_recordings_ready_condition(stack, tenant, platform, make_class, channel):
    """A class is Ready, says whether it is the default and in use; an RtcRecording's READY and SYNCED
    columns; an annotation that is neither "true" nor "false" is a problem, and the class is not Ready."""
    kubectl = stack.cluster.kubectl
    gold = make_class(platform, default=True)
    kubectl("wait", f"rtcrecclass/{gold}", "--for=condition=Ready", "--timeout=30s")
    status = json.loads(kubectl("get", "rtcrecclass", gold, "-o", "json").stdout)["status"]
    assert (status["default"], status["inUse"], status.get("problems")) == (True, False, None)
    stack.apply(tenant, classed("classy", channel, gold))
    kubectl("wait", "rtcrec/classy", "-n", tenant, "--for=condition=Ready", "--timeout=30s")
    header, row = kubectl("get", "rtcrec", "classy", "-n", tenant).stdout.splitlines()
    assert header.split()[:7] == ["NAME", "CHANNEL", "MODE", "PHASE", "REASON", "READY", "SYNCED"]
    assert row.split()[3:6] == ["Recording", "Started", "True"]
    assert row[header.index("SYNCED") : header.index("TASKID")].strip() == ""  # no Update yet
    kubectl("delete", "rtcrec", "classy", "-n", tenant, "--timeout=30s")
    kubectl("annotate", "rtcrecclass", gold, "--overwrite", "rtc.recording.io/is-default-class=yes")
    kubectl("wait", f"rtcrecclass/{gold}", "--for=condition=Stalled", "--timeout=30s")
    ready = kubectl("get", "rtcrecclass", gold, "-o", 'jsonpath={.status.conditions[?(@.type=="Ready")]}').stdout
    assert json.loads(ready)["status"] == "False" and json.loads(ready)["reason"] == "InvalidClass"
    assert json.loads(ready)["message"] == (
        'annotation rtc.recording.io/is-default-class is "yes": only "true" makes a default class'
    )
    header, row = kubectl("get", "rtcrecclass", gold).stdout.splitlines()
    assert header.split()[:4] == ["NAME", "READY", "DEFAULT", "INUSE"] and row.split()[1:3] == ["False", "yes"]


@pytest.mark.parametrize(
    "storage, refusal",
    [
        ({"files": [{"format": "MP4", "pathPrefix": ["classes"]}]}, None),  # part of storage, as a recording may
        (
            {"oss": {"endpoint": "oss-cn-shanghai.aliyuncs.com", "bucket": BUCKET}, "vod": {}},
            "spec.storage may set oss or vod, not both",
        ),
        ({"vod": {}, "files": [{"format": "MP4"}]}, "spec.storage.files is only valid with spec.storage.oss"),
    ],
    ids=["files-only", "oss-and-vod", "files-with-vod"],
)
def test_a_class_may_hold_part_of_storage_but_never_two(crds, storage, refusal):
    body = {
        "apiVersion": "rtc.recording.io/v1alpha1",
        "kind": "RtcRecordingClass",
        "metadata": {"name": f"class-{uuid.uuid4().hex[:6]}"},
        "spec": {"storage": storage, "transcode": {"videoCodec": "H.265"}, "namespaceSelector": {}},
    }
    applied = crds.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(body), check=False)
    if refusal is None:
        assert applied.returncode == 0, applied.stderr
    else:
        assert applied.returncode != 0 and refusal in applied.stderr, applied.stderr


def test_a_class_change_never_touches_a_running_task(stack, tenant, platform, make_class, channel, emulator):
    gold = make_class(platform)
    stack.apply(tenant, classed("steady", channel, gold))
    status = stack.wait_phase(tenant, "steady", "Recording")
    first_generation = status["recordingClass"]["generation"]
    patch = {"spec": {"maxIdleSeconds": 300, "layout": {"background": {"url": "https://example.com/gen2.png"}}}}
    stack.cluster.kubectl("patch", "rtcrecclass", gold, "--type=merge", "-p", json.dumps(patch))
    assert class_generation(stack, gold) == first_generation + 1
    # A subscriber change is an Update: it carries the background of the generation the task started from.
    stack.cluster.kubectl(
        "patch",
        "rtcrec",
        "steady",
        "-n",
        tenant,
        "--type=merge",
        "-p",
        json.dumps(
            {
                "spec": {
                    "subscribers": [{"userId": "alice"}],
                    "layout": {"panes": [{"userId": "alice", "left": "0", "top": "0", "width": "1", "height": "1"}]},
                }
            }
        ),
    )
    wait_for(lambda: stack.status(tenant, "steady").get("observedGeneration") == 2, timeout=30, what="the Update")
    task = emulator.control.task(status["taskId"])
    assert task["status"] == "RUNNING" and len(stack.tasks(channel)) == 1  # the same task, not restarted
    assert task["updates"] == 1
    assert "gen1.png" in json.dumps(task["layout"]) and "gen2.png" not in json.dumps(task["layout"])
    assert stack.status(tenant, "steady")["recordingClass"]["generation"] == first_generation
    # Suspend and resume start a new task: that one takes the class as it is now.
    stack.cluster.kubectl("patch", "rtcrec", "steady", "-n", tenant, "--type=merge", "-p", '{"spec":{"suspend":true}}')
    stack.wait_phase(tenant, "steady", "Suspended")
    stack.cluster.kubectl("patch", "rtcrec", "steady", "-n", tenant, "--type=merge", "-p", '{"spec":{"suspend":false}}')
    resumed = stack.wait_phase(tenant, "steady", "Recording")
    assert resumed["recordingClass"]["generation"] == first_generation + 1
    assert emulator.control.task(resumed["taskId"])["params"]["MaxIdleTime"] == "300"


def test_a_namespace_outside_the_selector_is_refused(stack, namespace, platform, make_class, channel):
    gold = make_class(platform)  # namespace has no tenant label
    stack.apply(namespace, classed("outsider", channel, gold))
    status = stack.wait_phase(namespace, "outsider", "Failed")
    assert status["reason"] == "ClassNotAllowed" and f"namespace {namespace}" in status["message"]
    assert stack.tasks(channel) == []
    stack.wait_events(namespace, "outsider", "ClassNotAllowed")


def test_a_merged_spec_that_breaks_a_rule_is_refused_naming_the_class(stack, tenant, platform, make_class, channel):
    gold = make_class(platform)  # its OSS endpoint is in cn-shanghai
    stack.apply(tenant, classed("wrong-region", channel, gold, region="ap-southeast-1"))
    status = stack.wait_phase(tenant, "wrong-region", "Failed")
    assert status["reason"] == "InvalidSpec"
    assert f"RtcRecordingClass {gold}" in status["message"]
    assert "spec.storage.oss.endpoint must be in spec.region (ap-southeast-1)" in status["message"]
    assert (
        f"spec.storage.oss.endpoint: set by RtcRecordingClass {gold}; spec.region: set by the RtcRecording"
        in status["message"]
    )
    assert stack.tasks(channel) == []


def test_a_missing_class_is_waited_for(stack, tenant, platform, make_class, channel):
    name = f"later-{uuid.uuid4().hex[:6]}"
    stack.apply(tenant, classed("early", channel, name))
    status = stack.wait_phase(tenant, "early", "Pending")
    assert status["reason"] == "ClassNotFound"
    assert stack.tasks(channel) == []
    make_class(platform)  # another name: still pending
    body = {
        "apiVersion": "rtc.recording.io/v1alpha1",
        "kind": "RtcRecordingClass",
        "metadata": {"name": name},
        "spec": {
            "storage": {"oss": {"endpoint": "oss-cn-shanghai.aliyuncs.com", "bucket": BUCKET}},
            "transcode": TRANSCODE,
            "namespaceSelector": {},
        },
    }
    stack.cluster.kubectl("apply", "-f", "-", input=json.dumps(body))
    try:
        status = stack.wait_phase(tenant, "early", "Recording", timeout=60)
        assert stack.tasks(channel)[0]["accessKeyId"] != PLATFORM_KEY[0]  # no credentials in it: the operator's
    finally:
        stack.cluster.kubectl("delete", "rtcrec", "early", "-n", tenant, "--timeout=30s")
        stack.cluster.kubectl("delete", "rtcrecclass", name)


def test_the_default_class_fills_optional_fields(stack, tenant, platform, make_class, channel, emulator):
    default = make_class(platform, default=True, maxDurationSeconds=3600)
    try:
        stack.apply(tenant, recording("plain", channel))  # names no class, sets storage and transcode itself
        status = stack.wait_phase(tenant, "plain", "Recording")
        assert status["recordingClass"]["name"] == default
        task = emulator.control.task(status["taskId"])
        assert task["accessKeyId"] == PLATFORM_KEY[0]
        assert task["params"]["StorageParams"]["FileInfo"][0]["FilePathPrefix"] == ["classes"]
        assert task["params"]["MaxIdleTime"] == "60"  # the recording's own
        assert APP == task["appId"]
    finally:
        stack.cluster.kubectl("delete", "rtcrecclass", default)


class Hook(http.server.BaseHTTPRequestHandler):
    """The NotifyUrl a class names: what the operator relays to it."""

    received: list[dict] = []

    def do_POST(self):
        Hook.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_class_notify_url_gets_the_events_of_recordings_that_set_none(
    stack, tenant, platform, make_class, channel, emulator
):
    """The operator's receiver takes the callbacks (the Start names it), and relays the events the
    class's notify settings ask for, exactly as for a resource's own spec.notify."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        hooked = make_class(
            platform,
            notify={"url": f"http://127.0.0.1:{server.server_port}/class-hook", "fileUploadedFormats": ["MP4"]},
        )
        stack.apply(tenant, classed("hooked", channel, hooked))
        status = stack.wait_phase(tenant, "hooked", "Recording")
        params = emulator.control.task(status["taskId"])["params"]
        assert params["NotifyUrl"].startswith(stack.env["RTCREC_CALLBACK_URL"] + f"/callbacks/{tenant}/hooked/")
        assert sorted(params["NotifyFileUploadedFormat"]) == ["MP4", "SLICE"]
        assert status["recordingClass"]["defaults"]["notify"]["fileUploadedFormats"] == ["MP4"]
        wait_for(
            lambda: [
                b for b in Hook.received if b.get("taskId") == status["taskId"] and b["eventType"] == "TaskRunning"
            ],
            timeout=30,
            what="the class's notify url to get TaskRunning",
            details=lambda: stack.operator.output()[-3000:],
        )
    finally:
        server.shutdown()
        server.server_close()
    ours = [b for b in Hook.received if b.get("taskId") == status["taskId"]]
    # The operator's own SLICE heartbeats are not the class's business.
    assert not [b for b in ours if b["eventType"] == "RecordFileUploaded" and "SLICE" in json.dumps(b["payload"])]


def example_documents() -> list[dict]:
    return [doc for path in sorted(EXAMPLES.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc]


def credentials_secret(name: str, key: tuple[str, str]) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "labels": {"rtc.recording.io/usage": "credentials"}},
        "stringData": {"accessKeyId": key[0], "accessKeySecret": key[1]},
    }


@pytest.fixture
def example_class(stack):
    """The RtcRecordingClass of examples/ (the cluster's default class), its credentials in its own namespace."""
    (klass,) = [doc for doc in example_documents() if doc["kind"] == "RtcRecordingClass"]
    ref = klass["spec"]["credentialsSecretRef"]
    stack.emulator.control.credentials(access_keys=dict([PLATFORM_KEY]))
    stack.cluster.kubectl("create", "namespace", ref["namespace"], check=False)  # kept by an earlier test
    stack.apply(ref["namespace"], credentials_secret(ref["name"], PLATFORM_KEY))
    stack.cluster.kubectl("apply", "-f", "-", input=json.dumps(klass))
    yield klass
    stack.cluster.kubectl("delete", "rtcrecclass", klass["metadata"]["name"], "--wait=false", check=False)


def test_every_example_records_with_the_example_default_class(stack, namespace, example_class, emulator):
    """Issue 25: the default class filled transcode and a background into Individual and audio-only recordings
    that name no class, and their Start failed. Every RtcRecording of examples/, applied as it is (each on a
    channel of its own, with people publishing), in a namespace the class selects: each one records."""
    (label,) = example_class["spec"]["namespaceSelector"]["matchLabels"].items()
    stack.cluster.kubectl("label", "namespace", namespace, "=".join(label))
    emulator.control.credentials(access_keys=dict([EXAMPLE_KEY]))
    hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)  # for the example's own notify url
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    suffix = uuid.uuid4().hex[:6]
    documents = [doc for doc in example_documents() if doc["kind"] in ("RtcRecording", "Secret")]
    recordings = {doc["metadata"]["name"]: doc["spec"] for doc in documents if doc["kind"] == "RtcRecording"}
    for spec in recordings.values():
        spec["channelId"] += f"-{suffix}"
        if (spec.get("notify") or {}).get("url"):
            spec["notify"]["url"] = f"http://127.0.0.1:{hook.server_port}/rtc"
    channels = {spec["channelId"] for spec in recordings.values()}
    try:
        for channel in channels:
            for user, tracks in PEOPLE.items():
                emulator.control.join(APP, channel, user, **{t: True for t in tracks})
        apply_many(stack, namespace, documents)
        assert len(recordings) >= 8 and any(not s.get("recordingClassName") for s in recordings.values())
        started = {name: stack.wait_phase(namespace, name, "Recording") for name in recordings}
        assert {s["recordingClass"]["name"] for s in started.values()} == {example_class["metadata"]["name"]}
        params = {name: emulator.control.task(s["taskId"])["params"] for name, s in started.items()}
        # Individual: no transcode, no layout from the class; audio-only: no video settings, no layout
        assert not {"MixTranscodeParams", "MixLayoutParams"} & set(params["standup-42-voices"])
        assert not {"MixTranscodeParams", "MixLayoutParams"} & set(params["standup-42-streams"])
        assert params["standup-42-notified"]["MixTranscodeParams"] == {
            "AudioBitrate": 96,
            "AudioChannels": 2,
            "AudioSampleRate": 44100,
        }
        assert "MixLayoutParams" not in params["standup-42-notified"]
        # ... and where they are valid, the class's values still fill in
        background = example_class["spec"]["layout"]["background"]["url"]
        assert params["standup-42"]["MixLayoutParams"]["MixBackground"]["Url"] == background
        assert params["design-review"]["MixTranscodeParams"]["VideoBitrate"] == 1200
    finally:
        for channel in channels:  # the tasks end by their idle timeout
            for user in PEOPLE:
                emulator.control.leave(APP, channel, user)
        hook.shutdown()
        hook.server_close()
