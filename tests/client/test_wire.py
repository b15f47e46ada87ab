"""Our requests equal the vendor SDK's: same query, same headers, same signature.

The SDK (`alibabacloud-live20161101` on `alibabacloud-tea-openapi`) is run for real with
its clock, nonce and user agent pinned and its HTTP send replaced by a recorder.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from alibabacloud_credentials.client import Client as VendorCredentialsClient
from alibabacloud_credentials.provider.refreshable import Credentials as VendorCredentials
from alibabacloud_live20161101 import models as live_models
from alibabacloud_live20161101.client import Client as LiveClient
from alibabacloud_tea_openapi import utils_models as openapi_models
from alibabacloud_tea_openapi.utils import Utils
from darabonba.core import DaraCore
from darabonba.request import DaraRequest
from darabonba.response import DaraResponse
from darabonba.runtime import RuntimeOptions

from rtc_recording.cloud.aliyun import (
    ACTIONS,
    EMPTY_BODY_SHA256,
    USER_AGENT,
    authorization,
    canonical_query,
    query_for,
    signed_headers,
)
from rtc_recording.cloud.credentials import Credentials

DATE = "2026-03-20T08:09:10Z"
NONCE = "3f1c0a7e9b2d4c6f8a0b1c2d3e4f5a6b"
HOST = "live.aliyuncs.com"
AK = Credentials("LTAI5tExampleKeyId", "s3cr3t/with+odd=chars~")
STS = Credentials("STS.NTExampleStsKeyId", "stsSecret", "CAIS+token/with=padding==")

ODD = "a b*c~d/e+f=g&h?i#j%k 会议室 🎥 'q\"<>"

START = {
    "AppId": "app-7074 " + ODD,
    "ChannelId": "room 1024/🎥",
    "MaxIdleTime": 300,
    "NotifyUrl": "https://hooks.example.com/callbacks/ns/name/uid/1?x=1&y=a b",
    "NotifyAuthKey": "Abcdef0123456789Abcdef",
    "NotifyFileUploadedFormat": ["MP4", "HLS", "MP3"],
    "SubscribeParams": {
        "SubscribeUserIdList": [
            {"UserId": "alice " + ODD, "StreamType": 0, "SourceType": 0},
            {"UserId": "bob", "StreamType": 1},
        ]
    },
    "RecordParams": {"RecordMode": 1, "StreamType": 0, "MaxFileDuration": 1800},
    "StorageParams": {
        "StorageType": 1,
        "FileInfo": [
            {
                "Format": "MP4",
                "FileNamePattern": "{AppId}_{ChannelId}_{StartTime}",
                "FilePathPrefix": ["meetings", "会议"],
                "SliceDuration": 30,
                "SliceNamePattern": "{AppId}_{ChannelId}_{StartTime}_{Sequence}",
            }
        ],
        "OSSParams": {"OSSEndpoint": "oss-cn-shanghai.aliyuncs.com", "OSSBucket": "recordings"},
        "VodParams": {
            "StorageLocation": "outin.oss-cn-shanghai.aliyuncs.com",
            "VodTranscodeGroupId": "grp",
            "AutoCompose": 1,
            "ComposeVodTranscodeGroupId": "grp2",
        },
    },
    "MixTranscodeParams": {
        "AudioBitrate": 64,
        "AudioChannels": 2,
        "AudioSampleRate": 48000,
        "FrameFillType": 1,
        "VideoBitrate": 1200,
        "VideoCodec": "H264",
        "VideoFramerate": 25,
        "VideoGop": 50,
        "VideoHeight": 720,
        "VideoWidth": 1280,
    },
    "MixLayoutParams": {
        "MixBackground": {"RenderMode": 1, "Url": "https://img.example.com/bg.png?a=1&b= 2"},
        "UserPanes": [
            {
                "UserId": "alice",
                "SourceType": 0,
                "X": "0",
                "Y": "0",
                "Width": "0.5",
                "Height": "1",
                "ZOrder": 1,
                "SubBackground": {"RenderMode": 0, "Url": "https://img.example.com/大.png"},
            },
        ],
    },
}
UPDATE = {key: START[key] for key in ("SubscribeParams", "MixLayoutParams")}

SDK_REQUESTS = {
    "start": (live_models.StartRtcCloudRecordingRequest, "start_rtc_cloud_recording_with_options"),
    "stop": (live_models.StopRtcCloudRecordingRequest, "stop_rtc_cloud_recording_with_options"),
    "update": (live_models.UpdateRtcCloudRecordingRequest, "update_rtc_cloud_recording_with_options"),
    "describe": (live_models.DescribeRtcCloudRecordingFilesRequest, "describe_rtc_cloud_recording_files_with_options"),
}
CASES = {
    "start": START,
    "stop": {"TaskId": "task 1/2"},
    "update": {"TaskId": "task-1", **UPDATE},
    "describe": {"TaskId": "task-1"},
}


class _Provider:
    """Hands the SDK our credentials without a provider name (we send no x-acs-credentials-provider)."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials

    def get_credentials(self) -> VendorCredentials:
        c = self.credentials
        return VendorCredentials(
            access_key_id=c.access_key_id, access_key_secret=c.access_key_secret, security_token=c.security_token
        )

    def get_provider_name(self) -> str:
        return "test"


@pytest.fixture
def sdk_sent(monkeypatch) -> list[DaraRequest]:
    """Pin the SDK's date, nonce and user agent; record what it would send."""
    sent: list[DaraRequest] = []

    def do_action(request: DaraRequest, runtime: Any = None) -> DaraResponse:
        sent.append(request)
        response = DaraResponse()
        response.status_code, response.headers = 200, {}
        response.body = json.dumps({"RequestId": "r", "TaskId": "t"}).encode()
        return response

    monkeypatch.setattr(Utils, "get_timestamp", staticmethod(lambda: DATE))
    monkeypatch.setattr(Utils, "get_nonce", staticmethod(lambda: NONCE))
    monkeypatch.setattr(Utils, "get_user_agent", staticmethod(lambda user_agent: USER_AGENT))
    monkeypatch.setattr(DaraCore, "do_action", staticmethod(do_action))
    return sent


def _sdk_request(verb: str, params: dict, credentials: Credentials, sent: list[DaraRequest]) -> DaraRequest:
    config = openapi_models.Config(credential=VendorCredentialsClient(provider=_Provider(credentials)), endpoint=HOST)
    model, method = SDK_REQUESTS[verb]
    getattr(LiveClient(config), method)(model().from_map(params), RuntimeOptions())
    return sent[-1]


def _canonical(params: dict, verb: str) -> dict:
    # Round-trip through the SDK's model: the same key order the SDK serialises in.
    return SDK_REQUESTS[verb][0]().from_map(params).to_map()


@pytest.mark.parametrize("credentials", [AK, STS], ids=["access-key", "sts"])
@pytest.mark.parametrize("verb", list(CASES))
def test_request_equals_the_sdks(verb, credentials, sdk_sent):
    params = _canonical(CASES[verb], verb)
    sdk = _sdk_request(verb, params, credentials, sdk_sent)

    query = query_for(params)
    headers = signed_headers(ACTIONS[verb], HOST, query, credentials, date=DATE, nonce=NONCE)

    assert (sdk.method, sdk.pathname, sdk.body) == ("POST", "/", None)
    assert sdk.query == query
    assert sdk.headers == headers
    assert list(sdk.headers)[-1] == list(headers)[-1] == "Authorization"


def test_object_parameters_are_compact_json_and_lists_are_numbered(sdk_sent):
    query = query_for(_canonical(START, "start"))
    assert json.loads(query["SubscribeParams"]) == START["SubscribeParams"]
    assert "会议" in query["StorageParams"] and ", " not in query["RecordParams"]
    assert [query[f"NotifyFileUploadedFormat.{i}"] for i in (1, 2, 3)] == ["MP4", "HLS", "MP3"]
    assert query["MaxIdleTime"] == "300"


def test_sts_headers_carry_token_and_key_id():
    headers = signed_headers(ACTIONS["stop"], HOST, {"TaskId": "t"}, STS, date=DATE, nonce=NONCE)
    assert headers["x-acs-security-token"] == STS.security_token
    assert headers["x-acs-accesskey-id"] == STS.access_key_id
    signed = headers["Authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    assert {"host", "x-acs-date", "x-acs-signature-nonce", "x-acs-security-token"} <= set(signed)


@pytest.mark.parametrize("value", [ODD, "", "~-_.", "+/=", "空 格", "🎥"])
def test_signature_equals_the_sdk_signer(value):
    query = {"B": value, "A": "x", "TaskId": value + "1"}
    headers = {"host": HOST, "x-acs-date": DATE, "x-acs-action": "Stop", "user-agent": " padded ua "}
    request = DaraRequest()
    request.method, request.pathname, request.query, request.headers = "POST", "/", query, headers
    sdk = Utils.get_authorization(
        request, "ACS3-HMAC-SHA256", EMPTY_BODY_SHA256, AK.access_key_id, AK.access_key_secret
    )
    assert authorization(query, headers, AK) == sdk


def test_canonical_query_escapes_all_but_unreserved():
    assert canonical_query({"b": "a b*~/+=会", "a": "🎥"}) == ("a=%F0%9F%8E%A5&b=a%20b%2A~%2F%2B%3D%E4%BC%9A")
