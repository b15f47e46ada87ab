"""The emulator's OSS endpoint: the objects tasks wrote, behind links presigned by the vendor's OSS SDK
(alibabacloud-oss-v2, the plugin's optional dependency): valid, expired, altered."""

from __future__ import annotations

import datetime
import time
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import alibabacloud_oss_v2 as oss_sdk
import pytest
import requests
from emulator_samples import ACCESS_KEY, APP, BUCKET, CHANNEL, STS_KEY, mixed, oss, wait_for
from test_tasks import T0, engine, spec

from conftest import Sdk, sdk_client
from rtc_recording.emulator import EmulatorHandle
from rtc_recording.emulator.keys import KeyStore
from rtc_recording.emulator.objects import find
from rtc_recording.emulator.oss import OssError, verify_presigned

HOUR = datetime.timedelta(hours=1)


def presign(
    endpoint: str,
    key: str,
    *,
    bucket: str = BUCKET,
    expires: datetime.timedelta = HOUR,
    credentials: tuple[str, ...] = ACCESS_KEY,
    region: str = "cn-shanghai",
) -> str:
    config = oss_sdk.config.load_default()
    config.credentials_provider = oss_sdk.credentials.StaticCredentialsProvider(*credentials)
    config.region, config.endpoint = region, endpoint
    return oss_sdk.Client(config).presign(oss_sdk.GetObjectRequest(bucket=bucket, key=key), expires=expires).url


def verify(url: str, *, now: float | None = None, region: str = "cn-shanghai", keys: KeyStore | None = None) -> Any:
    parts = urlsplit(url)
    if parts.hostname and parts.hostname.endswith(".aliyuncs.com"):  # virtual-hosted: the bucket in the name
        bucket, key = parts.hostname.split(".")[0], unquote(parts.path).lstrip("/")
    else:
        bucket, _, key = unquote(parts.path).lstrip("/").partition("/")
    query = parse_qsl(parts.query, keep_blank_values=True)
    store = keys or KeyStore({ACCESS_KEY[0]: ACCESS_KEY[1]}, {STS_KEY[0]: (STS_KEY[1], STS_KEY[2])})
    moment = time.time() if now is None else now
    return verify_presigned("GET", bucket, key, query, {}, store, region, moment, time.time())


def refusal(url: str, **kwargs: Any) -> OssError:
    with pytest.raises(OssError) as caught:
        verify(url, **kwargs)
    return caught.value


KEY = "records/task-1/app1_room1_2026-01-05-08:00:00.mp4"  # ":" and "/" as recorders name files
ENDPOINT = "http://127.0.0.1:9"


class TestPresignedSignature:
    def test_a_link_from_the_sdk_verifies(self) -> None:
        assert verify(presign(ENDPOINT, KEY)).access_key_id == "AK1"
        assert verify(presign("oss-cn-shanghai.aliyuncs.com", KEY)).access_key_id == "AK1"  # virtual-hosted
        assert verify(presign(ENDPOINT, KEY, credentials=STS_KEY)).access_key_id == STS_KEY[0]

    def test_an_expired_link_is_refused(self) -> None:
        url = presign(ENDPOINT, KEY, expires=datetime.timedelta(minutes=10))
        assert verify(url, now=time.time() + 9 * 60)
        error = refusal(url, now=time.time() + 11 * 60)
        assert (error.status, error.code, error.message) == (403, "AccessDenied", "Request has expired.")

    @pytest.mark.parametrize(
        "alter",
        [
            pytest.param(lambda u: u.replace("app1_room1", "app1_room2"), id="another-object"),
            pytest.param(lambda u: u.replace("x-oss-expires=3", "x-oss-expires=9"), id="longer-expiry"),
            pytest.param(lambda u: u[:-4] + ("0000" if not u.endswith("0000") else "1111"), id="signature"),
            pytest.param(lambda u: u + "&response-content-type=text%2Fhtml", id="an-added-parameter"),
        ],
    )
    def test_an_altered_link_is_refused(self, alter: Any) -> None:
        url = presign(ENDPOINT, KEY)
        altered = alter(url)
        assert altered != url
        error = refusal(altered)
        assert (error.status, error.code) == (403, "SignatureDoesNotMatch")

    def test_wrong_keys_tokens_and_regions(self) -> None:
        assert refusal(presign(ENDPOINT, KEY, credentials=("AK9", "x"))).code == "InvalidAccessKeyId"
        assert refusal(presign(ENDPOINT, KEY, credentials=("AK1", "wrong"))).code == "SignatureDoesNotMatch"
        forged = presign(ENDPOINT, KEY, credentials=(STS_KEY[0], STS_KEY[1], "token-2"))
        assert refusal(forged).code == "InvalidSecurityToken"
        assert refusal(presign(ENDPOINT, KEY, credentials=STS_KEY[:2])).code == "InvalidSecurityToken"
        error = refusal(presign(ENDPOINT, KEY, region="ap-southeast-1"))
        assert (error.status, error.code) == (400, "InvalidArgument") and "signing region" in error.message
        unsigned = refusal(f"{ENDPOINT}/{BUCKET}/{KEY}")
        assert (unsigned.status, unsigned.code) == (403, "AccessDenied")


class TestObjects:
    def test_what_describe_lists_is_there_with_its_slices(self) -> None:
        e = engine()
        e.join(APP, CHANNEL, "alice", ["audio", "camera"], T0)
        files = [{"Format": "HLS", "SliceDuration": 10}, {"Format": "MP4"}, {"Format": "MP3"}]
        raw = mixed("alice", StorageParams=oss(FileInfo=files), RecordParams={"RecordMode": 1, "MaxFileDuration": 180})
        task = e.start(spec(raw), "AK1", T0)
        lists = e.describe(task.task_id, T0 + 200)["RecordFileList"]
        (playlist, live) = lists["HlsFileList"]
        (mp4,) = lists["Mp4FileList"]
        (mp3,) = lists["Mp3FileList"]
        first = find(e, BUCKET, playlist, T0 + 200)
        assert first is not None and first.content_type == "application/x-mpegURL"
        lines = first.body.decode().splitlines()
        assert lines[0] == "#EXTM3U" and lines[-1] == "#EXT-X-ENDLIST"  # 180 s, complete
        slices = [line for line in lines if line.endswith(".ts")]
        assert len(slices) == 18 and "#EXT-X-ENDLIST" not in find(e, BUCKET, live, T0 + 200).body.decode()
        folder = playlist.rsplit("/", 1)[0]
        ts = find(e, BUCKET, f"{folder}/{slices[0]}", T0 + 200)
        assert ts is not None and ts.format == "SLICE" and ts.body[0] == 0x47 and len(ts.body) == 188
        video = find(e, BUCKET, mp4, T0 + 200)
        assert video is not None and video.body[4:8] == b"ftyp" and mp4.encode() in video.body
        audio = find(e, BUCKET, mp3, T0 + 200)
        assert audio is not None and audio.content_type == "audio/mpeg" and audio.body[:3] == b"ID3"
        assert find(e, BUCKET, mp4.replace(".mp4", ".flv"), T0 + 200) is None
        assert find(e, "another-bucket", mp4, T0 + 200) is None
        assert find(e, BUCKET, f"{folder}/{slices[0]}".replace("_0.ts", "_99.ts"), T0 + 200) is None  # not yet


def test_links_are_served_until_they_expire(emulator: EmulatorHandle) -> None:
    emulator.control.join(APP, CHANNEL, "alice")
    emulator.control.join(APP, CHANNEL, "bob")
    sdk = Sdk(sdk_client(emulator))
    files = oss(FileInfo=[{"Format": "HLS"}, {"Format": "MP4"}])
    task_id = sdk.start(mixed(StorageParams=files, RecordParams={"RecordMode": 1, "MaxFileDuration": 180}))
    emulator.control.advance(200)  # links signed now have 200 s less: the link clock moved too
    sdk.stop(task_id)
    emulator.control.advance(5)
    lists = wait_for(lambda: (d := sdk.describe(task_id).task_info).status == "STOPPED" and d.record_file_list)
    mp4 = lists.mp_4file_list[0]
    session = requests.Session()
    session.trust_env = False
    url = presign(emulator.url, mp4)
    got = session.get(url, timeout=10)
    assert got.status_code == 200, got.text
    assert got.headers["Content-Type"] == "video/mp4" and got.content[4:8] == b"ftyp"
    missing = session.get(presign(emulator.url, mp4 + ".nothing"), timeout=10)
    assert missing.status_code == 404 and "<Code>NoSuchKey</Code>" in missing.text
    altered = session.get(url.replace("x-oss-expires=", "x-oss-expires=1"), timeout=10)
    assert altered.status_code == 403 and "<Code>SignatureDoesNotMatch</Code>" in altered.text
    emulator.control.advance(2 * 3600)  # the link clock moves with emulated time's advances
    expired = session.get(url, timeout=10)
    assert expired.status_code == 403 and expired.headers["Content-Type"].startswith("application/xml")
    assert "<Code>AccessDenied</Code>" in expired.text and "<Message>Request has expired.</Message>" in expired.text
