"""All four operations through the vendor's own SDK, unmodified, with both signatures."""

from __future__ import annotations

from typing import Any

import pytest
from alibabacloud_tea_openapi.exceptions import ClientException
from emulator_samples import APP, CHANNEL, individual, mixed, oss, vod

from conftest import SIGNATURES, Sdk, sdk_client, vendor_error
from rtc_recording.emulator import EmulatorHandle


@pytest.fixture
def in_channel(emulator: EmulatorHandle) -> EmulatorHandle:
    emulator.control.join(APP, CHANNEL, "alice")
    emulator.control.join(APP, CHANNEL, "bob")
    return emulator


@pytest.mark.parametrize("algorithm", SIGNATURES)
@pytest.mark.parametrize("sts", [False, True], ids=["ak", "sts"])
def test_four_operations(in_channel: EmulatorHandle, algorithm: str | None, sts: bool) -> None:
    sdk = Sdk(sdk_client(in_channel, algorithm, sts=sts))
    task_id = sdk.start(
        mixed(
            RecordParams={"RecordMode": 1, "MaxFileDuration": 180},
            StorageParams=oss(FileInfo=[{"Format": "MP4"}]),
            NotifyFileUploadedFormat=["MP4"],
        )
    )
    body = sdk.describe(task_id)
    assert (body.task_info.task_id, body.task_info.status) == (task_id, "RUNNING")
    assert body.request_id

    update = sdk.update({"TaskId": task_id, "MixLayoutParams": {"UserPanes": [{"UserId": "alice", "Width": "1"}]}})
    assert set(update) == {"RequestId"}
    assert in_channel.control.task(task_id)["updates"] == 1

    in_channel.control.advance(400)
    files = sdk.describe(task_id).task_info.record_file_list
    assert len(files.mp_4file_list) == 2 and all(f.startswith(f"{task_id}/") for f in files.mp_4file_list)
    assert len(files.hls_file_list) == 3 and files.mp_3file_list == [] and files.vod_media_list == []

    assert set(sdk.stop(task_id)) == {"RequestId"}
    assert sdk.describe(task_id).task_info.status == "STOPPING"
    in_channel.control.advance(1)
    assert sdk.describe(task_id).task_info.status == "STOPPED"
    task = in_channel.control.task(task_id)
    assert task["stopReason"] == "Stopped" and task["accessKeyId"] == ("STS.K1" if sts else "AK1")


def test_vod_media_list_parses(in_channel: EmulatorHandle, sdk: Sdk) -> None:
    task_id = sdk.start(
        individual("alice", "bob", RecordParams={"RecordMode": 0, "MaxFileDuration": 180}, StorageParams=vod())
    )
    in_channel.control.advance(200)
    media = sdk.describe(task_id).task_info.record_file_list.vod_media_list
    assert [m.stream for m in media] == ["Single::alice::AV::C", "Single::bob::AV::C"]
    assert all(len(m.media_ids) == 1 and m.merged_ids == [] for m in media)


def error_of(call: Any) -> tuple[str, int]:
    error = vendor_error(call)
    assert isinstance(error, ClientException)
    assert set(error.data) >= {"RequestId", "HostId", "Code", "Message", "Recommend"}
    assert error.data["Code"] == error.code
    return error.code, error.status_code


START_ERRORS = {
    "missing": (lambda: {k: v for k, v in individual().items() if k != "RecordParams"}, "MissingParameter", 400),
    "app": (lambda: individual(AppId="nope"), "InvalidParameter.AppId", 404),
    "channel empty": (lambda: individual(ChannelId="empty-room"), "InvalidParameter.ChannelId", 404),
    "user": (lambda: individual(""), "InvalidParameter.UserId", 403),
    "record": (
        lambda: individual(RecordParams={"RecordMode": 0, "MaxFileDuration": 100}),
        "InvalidParameter.RecordParams",
        405,
    ),
    "idle": (lambda: individual(MaxIdleTime=5), "InvalidParameter.MaxIdleTime", 405),
    "auth key": (lambda: individual(NotifyAuthKey="short"), "InvalidParameter.NotifyAuthKey", 405),
    "storage type": (
        lambda: individual(StorageParams={"StorageType": 3}),
        "InvalidParameter.StorageParams.StorageType",
        405,
    ),
    "vod": (lambda: individual(StorageParams={"StorageType": 0}), "InvalidParameter.StorageParams.VodParams", 405),
    "file info": (
        lambda: individual(StorageParams=oss(FileInfo=[{"Format": "AVI"}])),
        "InvalidParameter.StorageParams.FileInfo",
        400,
    ),
    "oss params": (
        lambda: individual(StorageParams={"StorageType": 1}),
        "InvalidParameter.StorageParams.OSSParams",
        400,
    ),
    "bucket": (
        lambda: individual(
            StorageParams={
                "StorageType": 1,
                "OSSParams": {"OSSEndpoint": "oss-cn-shanghai.aliyuncs.com", "OSSBucket": "not-mine"},
            }
        ),
        "NotFound.OSSBucket",
        400,
    ),
    "subscribers": (
        lambda: individual(SubscribeParams={"SubscribeUserIdList": []}),
        "InvalidParameter.SubscribeParams.SubscribeUserIdList",
        400,
    ),
    "transcode": (
        lambda: individual(MixTranscodeParams={"AudioBitrate": 64}),
        "InvalidParameter.MixTranscodeParams",
        400,
    ),
    "layout": (
        lambda: {k: v for k, v in mixed().items() if k != "MixLayoutParams"},
        "InvalidParameter.MixLayoutParams.UserPanes",
        400,
    ),
    "notify url": (lambda: individual(NotifyUrl="notaurl"), "InvalidParameter.NotifyUrl", 400),
    "notify format": (
        lambda: individual(NotifyFileUploadedFormat=["MP4"]),
        "InvalidParameter.NotifyFileUploadedFormat",
        405,
    ),
}


@pytest.mark.parametrize("algorithm", SIGNATURES)
@pytest.mark.parametrize("build, code, status", START_ERRORS.values(), ids=START_ERRORS.keys())
def test_start_errors(in_channel: EmulatorHandle, algorithm: str | None, build: Any, code: str, status: int) -> None:
    sdk = Sdk(sdk_client(in_channel, algorithm))
    assert error_of(lambda: sdk.start(build())) == (code, status)


def test_notify_formats_arrive_flattened_and_case_insensitive(in_channel: EmulatorHandle, sdk: Sdk) -> None:
    task_id = sdk.start(
        individual(StorageParams=oss(FileInfo=[{"Format": "MP4"}]), NotifyFileUploadedFormat=["mp4", "Hls"])
    )
    assert in_channel.control.task(task_id)["params"]["NotifyFileUploadedFormat"] == ["mp4", "Hls"]


def test_task_errors(in_channel: EmulatorHandle, sdk: Sdk) -> None:
    assert error_of(lambda: sdk.stop("no-such-task")) == ("NotFound.Task", 400)
    assert error_of(lambda: sdk.describe("no-such-task")) == ("NotFound.Task", 400)
    assert error_of(
        lambda: sdk.update(
            {"TaskId": "no-such-task", "SubscribeParams": {"SubscribeUserIdList": [{"UserId": "alice"}]}}
        )
    ) == ("NotFound.Task", 400)
    task_id = sdk.start(individual())
    assert error_of(lambda: sdk.update({"TaskId": task_id})) == ("MissingParameter", 400)
    assert error_of(lambda: sdk.update({"TaskId": task_id, "MixLayoutParams": {"UserPanes": []}})) == (
        "InvalidParameter.MixLayoutParams.UserPanes",
        400,
    )
    sdk.stop(task_id)
    assert error_of(lambda: sdk.stop(task_id)) == ("InvalidParameter.TaskId", 400)
    assert error_of(
        lambda: sdk.update({"TaskId": task_id, "SubscribeParams": {"SubscribeUserIdList": [{"UserId": "bob"}]}})
    ) == ("InvalidParameter.TaskId", 400)


@pytest.mark.parametrize("algorithm", SIGNATURES)
def test_signature_errors(in_channel: EmulatorHandle, algorithm: str | None) -> None:
    wrong_secret = Sdk(sdk_client(in_channel, algorithm, key=("AK1", "guess")))
    assert error_of(lambda: wrong_secret.describe("t")) == ("SignatureDoesNotMatch", 400)
    unknown = Sdk(sdk_client(in_channel, algorithm, key=("NOPE", "x")))
    assert error_of(lambda: unknown.describe("t")) == ("InvalidAccessKeyId.NotFound", 404)
    bad_token = Sdk(sdk_client(in_channel, algorithm, key=("STS.K1", "stssecret1"), token="forged"))
    assert error_of(lambda: bad_token.describe("t")) == ("InvalidSecurityToken.Malformed", 400)
    in_channel.control.credentials(sts_expires_at={"STS.K1": 0})
    expired = Sdk(sdk_client(in_channel, algorithm, sts=True))
    assert error_of(lambda: expired.describe("t")) == ("InvalidSecurityToken.Expired", 400)


def test_vod_refused_in_us_east_1(start_emulator: Any) -> None:
    us = start_emulator(region="us-east-1")
    us.control.join(APP, CHANNEL, "alice")
    sdk = Sdk(sdk_client(us))
    assert error_of(lambda: sdk.start(individual(StorageParams=vod()))) == (
        "InvalidParameter.StorageParams.VodParams",
        405,
    )
    us_oss = {"StorageType": 1, "OSSParams": {"OSSEndpoint": "oss-us-east-1.aliyuncs.com", "OSSBucket": "bucket1"}}
    assert sdk.start(individual(StorageParams=us_oss))


def test_region_follows_a_vendor_host() -> None:
    from rtc_recording.emulator.config import EmulatorConfig
    from rtc_recording.emulator.server import Emulator

    emulator = Emulator(EmulatorConfig(region="ap-southeast-1"))
    assert emulator.account("live.aliyuncs.com").region == "cn-shanghai"
    assert emulator.account("live.us-east-1.aliyuncs.com").region == "us-east-1"
    assert emulator.account("127.0.0.1:8080").region == "ap-southeast-1"


@pytest.mark.parametrize("algorithm", SIGNATURES)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_generic_calls_action_version_and_method(emulator: EmulatorHandle, algorithm: str | None, method: str) -> None:
    from alibabacloud_tea_openapi import utils_models
    from darabonba.runtime import RuntimeOptions

    client = sdk_client(emulator, algorithm)

    def call(action: str, version: str = "2016-11-01") -> Any:
        params = utils_models.Params(
            action=action,
            version=version,
            protocol="HTTP",
            pathname="/",
            method=method,
            auth_type="AK",
            style="RPC",
            req_body_type="formData",
            body_type="json",
        )
        return client.call_api(params, utils_models.OpenApiRequest(query={"TaskId": "t"}), RuntimeOptions())

    assert error_of(lambda: call("DescribeRtcCloudRecordingFiles")) == ("NotFound.Task", 400)
    assert error_of(lambda: call("DescribeLiveStreams")) == ("InvalidAction.NotFound", 404)
    assert error_of(lambda: call("DescribeRtcCloudRecordingFiles", "2020-01-01")) == ("InvalidVersion", 400)
