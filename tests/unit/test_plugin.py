"""plugin.py: the tasks and files of a recording, as `kubectl rtcrec history|files` list them, and `files --url`'s
links (signed with a fake presigner, and once with the vendor's OSS SDK)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest

from rtc_recording.api.recording import status_of
from rtc_recording.api.task import RecordFiles
from rtc_recording.cloud import aliyun, links
from rtc_recording.cloud.credentials import Credentials, StaticCredentials
from rtc_recording.decide import patches
from rtc_recording.emulator.keys import KeyStore
from rtc_recording.emulator.oss import verify_presigned
from rtc_recording.kube import errors as k8s
from rtc_recording.plugin import Plugin, duration, file_rows, main, parser, tasks_of

from .fakes import NS, FakeKube

RUNNING = {"phase": "Recording", "taskId": "t2", "startTime": "2026-01-05T08:00:00Z", "files": {"hls": ["t2.m3u8"]}}
SUSPENDED_T1 = {
    "taskId": "t1",
    "startTime": "2026-01-05T07:00:00Z",
    "endTime": "2026-01-05T07:30:00Z",
    "reason": "Suspended",
    "files": {"hls": ["t1.m3u8"]},
}


def recording(**status) -> dict:
    return {"spec": {"storage": {"oss": {"bucket": "b"}}}, "status": status}


def test_a_recording_task_follows_its_history():
    tasks = tasks_of(recording(**RUNNING, history=[SUSPENDED_T1]))
    assert [(t["taskId"], t["current"]) for t in tasks] == [("t1", False), ("t2", True)]
    assert [r["url"] for r in file_rows(recording(**RUNNING, history=[SUSPENDED_T1]))] == [
        "oss://b/t1.m3u8",
        "oss://b/t2.m3u8",
    ]


def test_a_finished_task_is_listed_once():
    """Completed (or Failed after a task): status.history already holds the task that status.taskId names."""
    ended = {**SUSPENDED_T1, "taskId": "t2", "reason": "MaxDuration", "files": {"hls": ["t2.m3u8"]}}
    obj = recording(
        phase="Completed",
        reason="MaxDuration",
        taskId="t2",
        startTime="2026-01-05T08:00:00Z",
        completionTime="2026-01-05T09:00:00Z",
        files={"hls": ["t2.m3u8"]},
        history=[SUSPENDED_T1, ended],
    )
    tasks = tasks_of(obj)
    assert [(t["taskId"], t["current"], t["reason"]) for t in tasks] == [
        ("t1", False, "Suspended"),
        ("t2", True, "MaxDuration"),
    ]
    assert [r["object"] for r in file_rows(obj)] == ["t1.m3u8", "t2.m3u8"]


# -- files --url: links that play ------------------------------------------------------------------


class FakePresigner:
    """Records what it was asked to sign with; its links name the key."""

    def __init__(self) -> None:
        self.calls: list[tuple[Credentials, links.Bucket, timedelta]] = []

    def __call__(self, credentials: Credentials, target: links.Bucket, expires: timedelta) -> links.Presigner:
        self.calls.append((credentials, target, expires))
        return lambda key: links.Link(f"https://signed.example/{target.name}/{key}?by={credentials.access_key_id}", END)


END = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
SECRET_KEY = Credentials("LTAIsecret", "from-the-secret")
CHAIN_KEY = Credentials("LTAIchain", "from-the-chain")


def oss_recording(**spec: Any) -> dict:
    return {
        "metadata": {"name": "talk", "namespace": NS},
        "spec": {"storage": {"oss": {"endpoint": "oss-cn-shanghai-internal.aliyuncs.com", "bucket": "b"}}, **spec},
        "status": {**RUNNING, "files": {"hls": ["t2.m3u8"], "mp4": ["t2.mp4"]}, "history": [SUSPENDED_T1]},
    }


async def files_url(kube: FakeKube, capsys: Any, presigner: FakePresigner, **kwargs: Any) -> tuple[dict, str]:
    plugin = Plugin(kube, NS, "json", presigner=presigner, default_credentials=lambda: StaticCredentials(CHAIN_KEY))
    await plugin.files("talk", url=True, **kwargs)
    out = capsys.readouterr()
    return json.loads(out.out), out.err


async def test_links_are_signed_with_the_recordings_secret(capsys: Any) -> None:
    kube, presigner = FakeKube(), FakePresigner()
    kube.add_secret(NS, "aliyun", {"accessKeyId": "LTAIsecret", "accessKeySecret": "from-the-secret"}, "credentials")
    kube.add_recording(oss_recording(credentialsSecretRef={"name": "aliyun"}))
    shown, note = await files_url(kube, capsys, presigner, expires=timedelta(minutes=30))
    [(credentials, target, expires)] = presigner.calls
    assert credentials == SECRET_KEY and expires == timedelta(minutes=30)
    # the internal endpoint answers inside the region's VPC only: links use the public one
    assert target == links.Bucket("b", "cn-shanghai", "oss-cn-shanghai.aliyuncs.com")
    assert [(f["taskId"], f["kind"], f["url"]) for f in shown["files"]] == [
        ("t1", "HLS", "https://signed.example/b/t1.m3u8?by=LTAIsecret"),
        ("t2", "HLS", "https://signed.example/b/t2.m3u8?by=LTAIsecret"),
        ("t2", "MP4", "https://signed.example/b/t2.mp4?by=LTAIsecret"),
    ]
    assert {f["expires"] for f in shown["files"]} == {"2026-01-05T09:00:00Z"}
    assert "signed with the AccessKey of Secret ns/aliyun" in note and "from-the-secret" not in note
    await Plugin(kube, NS, None, presigner=presigner).files("talk", url=True)
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["TASK", "KIND", "URL"] and table[1].split() == ["t1", "HLS", shown["files"][0]["url"]]


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param("forbidden", id="the-caller-may-not-read-it"),
        pytest.param("unlabelled", id="not-opted-in"),
        pytest.param("missing", id="missing"),
    ],
)
async def test_without_the_secret_the_default_chain_signs(capsys: Any, secret: str) -> None:
    kube, presigner = FakeKube(), FakePresigner()
    if secret != "missing":
        kube.add_secret(NS, "aliyun", {"accessKeyId": "LTAIsecret", "accessKeySecret": "from-the-secret"})
    if secret == "forbidden":
        kube.fail("GET", "/secrets/", k8s.ApiError(403, "forbidden"), times=None)
    kube.add_recording(oss_recording(credentialsSecretRef={"name": "aliyun"}))
    shown, note = await files_url(kube, capsys, presigner, oss_endpoint="http://127.0.0.1:9")
    [(credentials, target, expires)] = presigner.calls
    assert credentials == CHAIN_KEY and expires == timedelta(hours=1)
    assert target == links.Bucket("b", "cn-shanghai", "http://127.0.0.1:9")  # signed for the bucket's region
    assert all(f["url"].endswith("?by=LTAIchain") for f in shown["files"])
    assert "default credential chain" in note and "Secret ns/aliyun" in note


async def test_a_class_recording_signs_with_the_pinned_bucket_and_secret(capsys: Any) -> None:
    kube, presigner = FakeKube(), FakePresigner()
    kube.add_secret(
        "platform", "gold-key", {"accessKeyId": "LTAIsecret", "accessKeySecret": "from-the-secret"}, "credentials"
    )
    obj = oss_recording()
    del obj["spec"]["storage"]
    obj["status"]["recordingClass"] = {
        "name": "gold",
        "credentialsSecretRef": {"namespace": "platform", "name": "gold-key"},
        "defaults": {"storage": {"oss": {"endpoint": "oss-ap-southeast-1.aliyuncs.com", "bucket": "gold"}}},
    }
    kube.add_recording(obj)
    await files_url(kube, capsys, presigner)
    [(credentials, target, _)] = presigner.calls
    assert credentials == SECRET_KEY and target == links.Bucket(
        "gold", "ap-southeast-1", "oss-ap-southeast-1.aliyuncs.com"
    )


async def test_vod_media_say_how_to_play_them_and_sign_nothing(capsys: Any) -> None:
    kube, presigner = FakeKube(), FakePresigner()
    vod = {"mediaIds": ["m1"], "mergedIds": ["m9"], "stream": "Mix"}
    kube.add_recording(
        {
            "metadata": {"name": "talk", "namespace": NS},
            "spec": {"storage": {"vod": {}}},
            "status": {**RUNNING, "files": {"vod": [vod]}},
        }
    )
    shown, note = await files_url(kube, capsys, presigner)
    assert presigner.calls == [] and note == ""  # no OSS object: no credentials needed, no SDK
    await Plugin(kube, NS, None, presigner=presigner).files("talk", url=True)
    assert capsys.readouterr().out.splitlines()[1].split() == [
        "t2",
        "VOD",
        "aliyun",
        "vod",
        "GetPlayInfo",
        "--VideoId",
        "m1",
    ]
    assert [(f["kind"], f["object"], f["url"], f["play"]) for f in shown["files"]] == [
        ("VOD", "m1", None, "aliyun vod GetPlayInfo --VideoId m1"),
        ("VOD-MERGED", "m9", None, "aliyun vod GetPlayInfo --VideoId m9"),
    ]


def test_durations_read_as_kubectl_writes_them() -> None:
    assert duration("90s") == timedelta(seconds=90) and duration("1h30m") == timedelta(minutes=90)
    assert duration("168h") == timedelta(days=7)
    for bad in ("", "1d", "h", "30", "-1h", "1.5h"):
        with pytest.raises(argparse.ArgumentTypeError):
            duration(bad)
    with pytest.raises(SystemExit):  # refused before any connection
        main(["files", "talk", "--expires", "1h"])


def test_an_endpoint_says_the_signing_region() -> None:
    assert links.bucket("b", "oss-us-east-1.aliyuncs.com") == links.Bucket(
        "b", "us-east-1", "oss-us-east-1.aliyuncs.com"
    )
    with pytest.raises(ValueError, match="oss-<region>"):
        links.bucket("b", "cdn.example.com")


def test_the_sdk_presigns_links_the_emulators_oss_accepts() -> None:
    """The real SDK: a path-style link to a test endpoint, which OSS's V4 check (the emulator's) accepts."""
    target = links.bucket("bkt", "oss-cn-shanghai.aliyuncs.com", "http://127.0.0.1:9")
    credentials = Credentials("AK1", "secret1", "token-1")
    link = links.oss_presigner(credentials, target, timedelta(minutes=5))("t1/a b:c.mp4")
    parts = urlsplit(link.url)
    assert (parts.scheme, parts.netloc, unquote(parts.path)) == ("http", "127.0.0.1:9", "/bkt/t1/a b:c.mp4")
    keys = KeyStore(sts_tokens={"AK1": ("secret1", "token-1")})
    query = parse_qsl(parts.query, keep_blank_values=True)
    now = time.time()
    verify_presigned("GET", "bkt", "t1/a b:c.mp4", query, {}, keys, "cn-shanghai", now, now)
    assert now + 240 < link.expires.timestamp() <= now + 300
    with pytest.raises(ValueError, match="7 days"):
        links.oss_presigner(credentials, target, timedelta(days=8))
    with pytest.raises(ValueError, match="cannot presign b/"):
        links.oss_presigner(credentials, links.bucket("b", "oss-cn-shanghai.aliyuncs.com"), timedelta(hours=1))("k")


def test_without_the_sdk_the_plugin_says_what_to_install(monkeypatch: Any) -> None:
    monkeypatch.setitem(sys.modules, "alibabacloud_oss_v2", None)  # import fails, as when not installed
    with pytest.raises(links.SdkMissing, match=r"rtc-recording-operator\[plugin\]"):
        links.oss_presigner(
            Credentials("AK1", "s"), links.bucket("b", "oss-cn-shanghai.aliyuncs.com"), timedelta(hours=1)
        )


def test_status_files_keep_what_describe_lists_for_each_file() -> None:
    """Describe lists names per format (OSS) and media ids per stream (VOD), nothing else per file: status.files
    keeps all of it, in the same shape as ever (so status written before reads the same), at the cost of each
    name and 3 bytes of JSON."""
    answer = {
        "TaskInfo": {
            "TaskId": "t2",
            "Status": "RUNNING",
            "RecordFileList": {
                "HlsFileList": ["rec/t2/a.m3u8"],
                "Mp4FileList": ["rec/t2/a.mp4"],
                "Mp3FileList": ["rec/t2/a.mp3"],
                "VodMediaList": [{"MediaIds": ["m1"], "MergedIds": ["m9"], "Stream": "Single::alice::AV::C"}],
            },
        }
    }
    status = {"phase": "Recording", "taskId": "t2", "startTime": "2026-01-05T08:00:00Z"}
    patch = patches.observed(status_of({"status": status}), aliyun.task_info(answer), 1, datetime.now(UTC))
    assert patch is not None
    rows = file_rows({"spec": {}, "status": {**status, **patch}})
    assert [(r["kind"], r["object"], r.get("stream")) for r in rows] == [
        ("HLS", "rec/t2/a.m3u8", None),
        ("MP4", "rec/t2/a.mp4", None),
        ("MP3", "rec/t2/a.mp3", None),
        ("VOD", "m1", "Single::alice::AV::C"),
        ("VOD-MERGED", "m9", "Single::alice::AV::C"),
    ]

    def size(names: int) -> int:
        listed = patches.files_status(RecordFiles(hls=("x" * 90,) * names))
        return len(json.dumps(listed, separators=(",", ":")))

    assert size(11) - size(10) == 90 + 3


def test_the_help_names_the_troubleshooting_page():
    assert "docs/troubleshooting.md" in " ".join(parser().format_help().split())
