"""AliyunRecordingCloud over real HTTP against a scripted loopback server: one request per
call; the repeats of the idempotent verbs are `CloudClients.call`'s."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import pytest
from alibabacloud_tea_openapi.utils import Utils
from darabonba.request import DaraRequest

from rtc_recording import metrics
from rtc_recording.api.recording import VodMedia
from rtc_recording.api.task import (
    Invalid,
    NotFound,
    RecordFiles,
    TaskInfo,
    TaskStatus,
    Throttled,
    Transient,
    UnknownOutcome,
)
from rtc_recording.cloud import accounts as clients_module
from rtc_recording.cloud.accounts import CloudClients
from rtc_recording.cloud.aliyun import EMPTY_BODY_SHA256, AliyunRecordingCloud, endpoint_url
from rtc_recording.cloud.credentials import Credentials, CredentialsUnavailable, StaticCredentials
from rtc_recording.settings import Settings

AK = Credentials("LTAI5tKeyId", "the-secret-value")
STS = Credentials("STS.KeyId", "sts-secret-value", "sts-token-value")


class Scripted(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as against the real service

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        server: ScriptedServer = self.server  # type: ignore[assignment]
        server.received.append(
            (self.path, dict(self.headers.items()), self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        )
        action = server.script.popleft() if server.script else ("answer", 200, {"RequestId": "r"})
        if action[0] == "drop":  # read the request, then close without a word
            self.close_connection = True
            return
        if action[0] == "hang":
            time.sleep(action[1])
            action = ("answer", 200, {"RequestId": "r", "TaskId": "late"})
        _, status, body = action
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args) -> None:
        pass


class ScriptedServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Scripted)
        self.script: deque = deque()
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request, client_address) -> None:
        pass  # e.g. a broken pipe after the client timed out: expected here


@pytest.fixture
def server():
    srv = ScriptedServer()
    thread = threading.Thread(target=srv.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def cloud_for(server):
    clients = []

    def make(credentials=AK, endpoint=None, read_timeout=5.0, provider=None):
        client = AliyunRecordingCloud(
            "cn-shanghai", provider or StaticCredentials(credentials), endpoint or server.url, read_timeout=read_timeout
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def sleeps(monkeypatch) -> list[tuple[int, float, float]]:
    """CloudClients.call's pauses between tries (decisions.backoff's arguments): recorded, not slept."""
    drawn: list[tuple[int, float, float]] = []

    def backoff(retry: int, base: float, cap: float) -> float:
        drawn.append((retry, base, cap))
        return 0.0

    monkeypatch.setattr(clients_module, "backoff", backoff)
    return drawn


@pytest.fixture
def cloud_clients(server):
    """The operator's CloudClients, its default account pointed at the scripted server."""
    made = []

    def make(credentials=AK):
        clients = CloudClients(Settings(endpoint=server.url), kube=None, default=StaticCredentials(credentials))
        made.append(clients)
        return clients

    yield make
    for clients in made:
        clients.close()


def verify_signature(path: str, headers: dict[str, str], credentials: Credentials) -> None:
    """Check the request the way a verifier would, with the SDK's own signer."""
    lower = {name.lower(): value for name, value in headers.items()}
    auth = lower["authorization"]
    signed = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
    assert {
        "host",
        "x-acs-action",
        "x-acs-version",
        "x-acs-date",
        "x-acs-signature-nonce",
        "x-acs-content-sha256",
    } <= set(signed)
    request = DaraRequest()
    request.method, request.pathname = "POST", "/"
    request.query = dict(parse_qsl(urlsplit(path).query, keep_blank_values=True))
    request.headers = {name: lower[name] for name in signed}
    expected = Utils.get_authorization(
        request, "ACS3-HMAC-SHA256", EMPTY_BODY_SHA256, credentials.access_key_id, credentials.access_key_secret
    )
    assert auth == expected


def test_start_sends_a_signed_post_with_params_in_the_query(server, cloud_for):
    server.script.append(("answer", 200, {"RequestId": "r1", "TaskId": "task-1"}))
    params = {
        "AppId": "app",
        "ChannelId": "room 1/会",
        "MaxIdleTime": 60,
        "SubscribeParams": {"SubscribeUserIdList": [{"UserId": "a b"}]},
        "NotifyFileUploadedFormat": ["MP4"],
    }
    assert cloud_for().start(params) == "task-1"

    path, headers, body = server.received[0]
    assert path.startswith("/?") and body == b""
    query = dict(parse_qsl(urlsplit(path).query))
    assert query == {
        "AppId": "app",
        "ChannelId": "room 1/会",
        "MaxIdleTime": "60",
        "SubscribeParams": '{"SubscribeUserIdList":[{"UserId":"a b"}]}',
        "NotifyFileUploadedFormat.1": "MP4",
    }
    assert headers["x-acs-action"] == "StartRtcCloudRecording"
    assert headers["host"] == server.url.removeprefix("http://")
    verify_signature(path, headers, AK)


def test_sts_credentials_are_sent_and_signed(server, cloud_for):
    cloud_for(STS).stop("task-1")
    path, headers, _ = server.received[0]
    assert headers["x-acs-security-token"] == "sts-token-value"
    assert headers["x-acs-accesskey-id"] == "STS.KeyId"
    verify_signature(path, headers, STS)


def test_describe_parses_the_task(server, cloud_for):
    server.script.append(
        (
            "answer",
            200,
            {
                "RequestId": "r",
                "TaskInfo": {
                    "TaskId": "task-1",
                    "Status": "RECOVERING",
                    "RecordFileList": {
                        "HlsFileList": ["task-1/a.m3u8"],
                        "Mp4FileList": ["task-1/a.mp4", "task-1/b.mp4"],
                        "VodMediaList": [{"MediaIds": ["m1"], "MergedIds": [], "Stream": "Mix"}],
                    },
                },
            },
        )
    )
    assert cloud_for().describe("task-1") == TaskInfo(
        "task-1",
        TaskStatus.RECOVERING,
        RecordFiles(
            hls=("task-1/a.m3u8",),
            mp4=("task-1/a.mp4", "task-1/b.mp4"),
            mp3=(),
            vod=(VodMedia(media_ids=["m1"], merged_ids=[], stream="Mix"),),
        ),
    )
    assert dict(parse_qsl(urlsplit(server.received[0][0]).query)) == {"TaskId": "task-1"}


def test_describe_without_files(server, cloud_for):
    server.script.append(("answer", 200, {"TaskInfo": {"TaskId": "t", "Status": "STOPPED"}}))
    assert cloud_for().describe("t") == TaskInfo("t", TaskStatus.STOPPED, RecordFiles())


def test_update_sends_only_what_update_can_change(server, cloud_for):
    cloud = cloud_for()
    cloud.update("task-1", {"MixLayoutParams": {"UserPanes": []}})
    assert dict(parse_qsl(urlsplit(server.received[0][0]).query)) == {
        "TaskId": "task-1",
        "MixLayoutParams": '{"UserPanes":[]}',
    }
    with pytest.raises(ValueError, match="RecordParams"):
        cloud.update("task-1", {"RecordParams": {"RecordMode": 0}})


@pytest.mark.parametrize(
    ("verb", "args"),
    [
        ("stop", ("task-1",)),
        ("describe", ("task-1",)),
        ("update", ("task-1", {"MixLayoutParams": {}})),
        ("start", ({"AppId": "a"},)),
    ],
)
@pytest.mark.parametrize(
    ("status", "code", "error"), [(503, "ServiceUnavailable", Transient), (429, "Throttling.User", Throttled)]
)
def test_the_client_sends_one_request_per_call(server, cloud_for, verb, args, status, code, error):
    server.script.append(("answer", status, {"Code": code, "Message": "m", "RequestId": "rid"}))
    with pytest.raises(error) as caught:
        getattr(cloud_for(), verb)(*args)
    assert (caught.value.code, caught.value.request_id, caught.value.http_status) == (code, "rid", status)
    assert len(server.received) == 1


async def test_idempotent_verbs_retry_transient_and_throttled(server, cloud_clients, sleeps):
    server.script.extend(
        [
            ("answer", 503, {"Code": "ServiceUnavailable", "Message": "busy", "RequestId": "r1"}),
            ("answer", 429, {"Code": "Throttling.User", "Message": "slow down", "RequestId": "r2"}),
            ("answer", 200, {"RequestId": "r3"}),
        ]
    )
    clients = cloud_clients()
    await clients.stop(await clients.account_for({"spec": {}}), "task-1")
    assert len(server.received) == 3 and len(sleeps) == 2
    # Each attempt is signed afresh.
    assert len({headers["x-acs-signature-nonce"] for _, headers, _ in server.received}) == 3


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [
        (503, "ServiceUnavailable", Transient),
        (400, "Throttling.User", Throttled),
        (404, "InvalidParameter.AppId", Invalid),
    ],
)
async def test_start_is_never_retried(server, cloud_clients, sleeps, status, code, error):
    server.script.append(("answer", status, {"Code": code, "Message": "m", "RequestId": "rid"}))
    clients = cloud_clients()
    with pytest.raises(error) as caught:
        await clients.start(await clients.account_for({"spec": {}}), {"AppId": "a"})
    assert (caught.value.code, caught.value.request_id, caught.value.http_status) == (code, "rid", status)
    assert len(server.received) == 1 and sleeps == []


@pytest.mark.parametrize(
    ("verb", "code"), [("stop", "NotFound.Task"), ("stop", "InvalidParameter.TaskId"), ("describe", "NotFound.Task")]
)
def test_missing_task(server, cloud_for, verb, code):
    server.script.append(("answer", 400, {"Code": code, "Message": "m", "RequestId": "r"}))
    with pytest.raises(NotFound):
        getattr(cloud_for(), verb)("gone")
    assert len(server.received) == 1


def test_start_whose_connection_drops_has_an_unknown_outcome(server, cloud_for):
    server.script.append(("drop",))
    with pytest.raises(UnknownOutcome) as caught:
        cloud_for().start({"AppId": "a"})
    assert caught.value.code == "ConnectionLost"
    assert len(server.received) == 1


def test_describe_whose_connection_drops_is_transient(server, cloud_for):
    server.script.append(("drop",))
    with pytest.raises(Transient) as caught:
        cloud_for().describe("t")
    assert caught.value.code == "ConnectionLost"
    assert len(server.received) == 1


async def test_describe_whose_connection_drops_is_retried(server, cloud_clients, sleeps):
    server.script.extend([("drop",), ("answer", 200, {"TaskInfo": {"TaskId": "t", "Status": "RUNNING"}})])
    clients = cloud_clients()
    info = await clients.describe(await clients.account_for({"spec": {}}), "t")
    assert info.status is TaskStatus.RUNNING
    assert len(server.received) == 2


def test_start_that_times_out_has_an_unknown_outcome(server, cloud_for):
    server.script.append(("hang", 0.5))
    with pytest.raises(UnknownOutcome) as caught:
        cloud_for(read_timeout=0.1).start({"AppId": "a"})
    assert caught.value.code == "ReadTimeout"


def test_refused_connection_never_sent_anything():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    cloud = AliyunRecordingCloud("cn-shanghai", StaticCredentials(AK), url)
    with pytest.raises(Transient) as caught:
        cloud.start({"AppId": "a", "NotifyAuthKey": "NotifyKeyValue0123"})
    assert caught.value.code == "ConnectFailed"
    assert "NotifyKeyValue0123" not in str(caught.value)


def test_start_answered_without_task_id_has_an_unknown_outcome(server, cloud_for):
    server.script.append(("answer", 200, {"RequestId": "r"}))
    with pytest.raises(UnknownOutcome, match="MalformedAnswer"):
        cloud_for().start({"AppId": "a"})


def test_malformed_describe_is_transient(server, cloud_for):
    server.script.extend([("answer", 200, {"TaskInfo": {"TaskId": "t", "Status": "EXPLODED"}})] * 4)
    with pytest.raises(Transient, match="MalformedAnswer"):
        cloud_for().describe("t")
    assert len(server.received) == 1


def test_gateway_error_without_body(server, cloud_for):
    server.script.append(("answer", 502, b"<html>bad gateway</html>"))
    with pytest.raises(UnknownOutcome, match="HTTP502"):
        cloud_for().start({"AppId": "a"})


def test_a_bare_400_from_a_proxy_has_a_message(server, cloud_for):
    """Issue 14.7: over the wire, an HTTP 400 without the vendor's fields is Invalid with a message."""
    server.script.append(("answer", 400, b"<html>400 Bad Request</html>"))
    with pytest.raises(Invalid) as refused:
        cloud_for().start({"AppId": "a"})
    assert refused.value.code == "HTTP400" and "a proxy or gateway" in refused.value.message


class Unavailable:
    def get(self) -> Credentials:
        raise CredentialsUnavailable("no credentials in the chain")


def test_missing_credentials_send_nothing(server, cloud_for):
    with pytest.raises(CredentialsUnavailable, match="no credentials in the chain"):
        cloud_for(provider=Unavailable()).start({"AppId": "a"})
    assert server.received == []


async def test_missing_credentials_are_not_retried_and_leave_the_cloud_up(server, cloud_clients, sleeps):
    clients = cloud_clients()
    clients.default = Unavailable()  # the pod's chain has nothing
    account = await clients.account_for({"spec": {}})
    for _ in range(4):  # more than the 3 unanswered calls that open the circuit
        with pytest.raises(CredentialsUnavailable):
            await clients.describe(account, "t")
    assert server.received == [] and sleeps == []
    assert clients.reachability.up


def test_calls_are_counted(server, cloud_for):
    counter = metrics.CLOUD_CALLS.labels(verb="stop", code="NotFound.Task")
    before = counter._value.get()
    server.script.append(("answer", 400, {"Code": "NotFound.Task"}))
    with pytest.raises(NotFound):
        cloud_for().stop("t")
    assert counter._value.get() == before + 1


async def test_no_secret_is_logged(server, cloud_clients, sleeps, caplog):
    caplog.set_level(logging.DEBUG)
    server.script.extend([("answer", 500, {"Code": "InternalError"}), ("answer", 200, {"RequestId": "r"})])
    clients = cloud_clients(STS)
    account = await clients.account_for({"spec": {}})
    await clients.stop(account, "t")  # fails once, logged, repeated
    assert len(server.received) == 2
    server.script.append(("answer", 200, {"RequestId": "r", "TaskId": "t"}))
    await clients.start(account, {"AppId": "a", "NotifyAuthKey": "NotifyKeyValue0123"})
    text = caplog.text + repr(STS) + repr(StaticCredentials(STS))
    assert "NotifyAuthKey=***" in caplog.text  # urllib3's request line, redacted
    assert "stop failed" in caplog.text  # the repeat's log line was written, too
    for secret in ("sts-secret-value", "sts-token-value", "NotifyKeyValue0123"):
        assert secret not in text


def test_endpoints():
    assert endpoint_url("cn-shanghai", None) == "https://live.aliyuncs.com"
    assert endpoint_url("ap-southeast-1", None) == "https://live.ap-southeast-1.aliyuncs.com"
    assert endpoint_url("us-east-1", None) == "https://live.us-east-1.aliyuncs.com"
    assert endpoint_url("cn-shanghai", "http://127.0.0.1:8080/") == "http://127.0.0.1:8080"
    assert endpoint_url("cn-shanghai", "live-vpc.example.com") == "https://live-vpc.example.com"
    with pytest.raises(ValueError, match="eu-west-9"):
        endpoint_url("eu-west-9", None)
