"""The task engine over explicit emulated time: lifecycle, idle model, files, events."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from emulator_samples import APP, BUCKET, CHANNEL, ENDPOINT, individual, mixed, oss, vod

from rtc_recording.emulator.errors import ApiError
from rtc_recording.emulator.files import start_time_label
from rtc_recording.emulator.spec import RecordingSpec
from rtc_recording.emulator.tasks import Engine
from rtc_recording.emulator.validation import Account, validate_start

ACCOUNT = Account("cn-shanghai", frozenset({APP}), frozenset({BUCKET}))
T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC: 2023-11-15-06:13:20 in UTC+8
URL = "http://127.0.0.1:9/cb"


def spec(raw: dict[str, Any]) -> RecordingSpec:
    return validate_start(raw, ACCOUNT)


def engine(**kwargs: Any) -> Engine:
    counter = itertools.count(1)
    return Engine(new_id=lambda: f"task-{next(counter)}", **kwargs)


def kinds(e: Engine) -> list[tuple[str, dict[str, Any]]]:
    return [(ev.event_type, ev.payload) for ev in e.drain()]


def api_error(call: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call()
    return caught.value


class TestLifecycle:
    def test_start_stop_and_the_answers_around_it(self) -> None:
        e = engine(stopping_seconds=2)
        e.join(APP, CHANNEL, "alice", ["audio", "camera"], T0)
        task = e.start(spec(individual(NotifyUrl=URL)), "AK1", T0)
        assert [k for k, _ in kinds(e)] == ["TaskCreated", "TaskStarting", "TaskRunning"]
        assert e.describe(task.task_id, T0 + 1)["Status"] == "RUNNING"

        e.stop(task.task_id, T0 + 10)
        assert e.describe(task.task_id, T0 + 11)["Status"] == "STOPPING"
        assert api_error(lambda: e.stop(task.task_id, T0 + 11)).code == "InvalidParameter.TaskId"
        assert e.describe(task.task_id, T0 + 12)["Status"] == "STOPPED"
        assert kinds(e) == [("TaskStopping", {"reason": "Stopped"}), ("TaskStopped", {"reason": "Stopped"})]
        assert api_error(lambda: e.stop(task.task_id, T0 + 13)).code == "InvalidParameter.TaskId"
        assert api_error(lambda: e.update(task.task_id, task.spec, T0 + 13)).code == "InvalidParameter.TaskId"
        assert task.stop_reason == "Stopped" and task.stopped_at == T0 + 12

    def test_unknown_task(self) -> None:
        e = engine()
        for call in (lambda: e.stop("nope", T0), lambda: e.describe("nope", T0), lambda: e.running("nope", T0)):
            error = api_error(call)
            assert (error.code, error.status) == ("NotFound.Task", 400)

    def test_channel_needs_someone_in_it(self) -> None:
        e = engine()
        error = api_error(lambda: e.start(spec(individual()), "AK1", T0))
        assert (error.code, error.status) == ("InvalidParameter.ChannelId", 404)
        e.join(APP, CHANNEL, "bob", [], T0)  # present, not publishing: enough to start
        e.start(spec(individual()), "AK1", T0)
        e.leave(APP, CHANNEL, "bob", T0 + 1)
        assert api_error(lambda: e.start(spec(individual()), "AK1", T0 + 1)).code == "InvalidParameter.ChannelId"
        assert engine(open_channels=True).start(spec(individual()), "AK1", T0).status == "RUNNING"

    def test_max_duration(self) -> None:
        e = engine(stopping_seconds=1)
        e.join(APP, CHANNEL, "alice", ["audio"], T0)
        task = e.start(spec(individual(NotifyUrl=URL)), "AK1", T0)
        kinds(e)
        e.advance(T0 + 72 * 3600 - 1)
        assert task.status == "RUNNING"
        e.advance(T0 + 72 * 3600 + 1)
        assert (task.status, task.stop_reason) == ("STOPPED", "MaxDuration")
        assert [k for k, _ in kinds(e) if k.startswith("Task")] == ["TaskStopping", "TaskStopped"]

    def test_stopped_tasks_are_forgotten_after_three_days(self) -> None:
        e = engine(stopping_seconds=0)
        e.join(APP, CHANNEL, "alice", ["audio"], T0)
        task = e.start(spec(individual()), "AK1", T0)
        e.stop(task.task_id, T0 + 5)
        assert e.describe(task.task_id, T0 + 5 + 3 * 86400 - 1)["Status"] == "STOPPED"
        assert api_error(lambda: e.describe(task.task_id, T0 + 5 + 3 * 86400)).code == "NotFound.Task"
        assert e.task_view(task, T0 + 6 + 3 * 86400)["expired"] is True

    def test_recovering(self) -> None:
        e = engine()
        e.join(APP, CHANNEL, "alice", ["audio"], T0)
        task = e.start(spec(individual(NotifyUrl=URL)), "AK1", T0)
        kinds(e)
        e.recover(task.task_id, 60, T0 + 100)
        assert e.describe(task.task_id, T0 + 120)["Status"] == "RECOVERING"
        e.update(task.task_id, spec(individual("alice", "bob", NotifyUrl=URL)), T0 + 130)  # allowed while recovering
        assert e.describe(task.task_id, T0 + 160)["Status"] == "RUNNING"
        assert kinds(e) == [("TaskRecovering", {"reason": "RecorderLost"}), ("TaskRunning", {})]
        e.advance(T0 + 200)
        assert task.tracks["Single::alice::AV::C"].recorded == pytest.approx(140)  # nothing while recovering

    def test_vanish(self) -> None:
        e = engine()
        e.join(APP, CHANNEL, "alice", ["audio"], T0)
        task = e.start(spec(individual(NotifyUrl=URL)), "AK1", T0)
        kinds(e)
        e.vanish(task.task_id, T0 + 5)
        assert api_error(lambda: e.describe(task.task_id, T0 + 6)).code == "NotFound.Task"
        assert kinds(e) == [("TaskStopped", {"reason": "Vanished"})]
        view = e.task_view(task, T0 + 6)
        assert (view["status"], view["vanished"], view["stopReason"]) == ("STOPPED", True, "Vanished")

    def test_update_history_and_new_outputs(self) -> None:
        e = engine()
        e.join(APP, CHANNEL, "alice", ["audio"], T0)
        task = e.start(spec(individual()), "AK1", T0)
        e.update(task.task_id, spec(individual("alice", "bob")), T0 + 10)
        view = e.task_view(task, T0 + 10)
        assert view["updates"] == 1 and view["history"][0]["at"] == T0 + 10
        assert [s["userId"] for s in view["subscribers"]] == ["alice", "bob"]
        assert [o.stream for o in task.outputs] == ["Single::alice::AV::C", "Single::bob::AV::C"]


class TestIdle:
    @pytest.mark.parametrize("build", [individual, mixed], ids=["individual", "mixed"])
    def test_stops_after_the_last_stream_stopped_for_max_idle(self, build: Any) -> None:
        e = engine(stopping_seconds=1)
        e.join(APP, CHANNEL, "alice", ["audio", "camera"], T0)
        e.join(APP, CHANNEL, "bob", ["audio", "camera"], T0)
        task = e.start(spec(build("alice", "bob", MaxIdleTime=60, NotifyUrl=URL)), "AK1", T0)
        e.unpublish(APP, CHANNEL, "alice", ["audio", "camera"], T0 + 10)
        e.unpublish(APP, CHANNEL, "bob", ["audio"], T0 + 20)
        assert task.idle_since is None  # bob's camera still counts
        e.unpublish(APP, CHANNEL, "bob", ["camera"], T0 + 30)
        e.advance(T0 + 89.9)
        assert task.status == "RUNNING"
        e.advance(T0 + 90)
        assert (task.status, task.stop_reason, task.stopping_at) == ("STOPPING", "IdleTimeout", T0 + 90)
        assert ("TaskStopping", {"reason": "IdleTimeout"}) in kinds(e)

    def test_publishing_again_resets_the_window(self) -> None:
        e = engine()
        e.join(APP, CHANNEL, "alice", ["audio"], T0)
        task = e.start(spec(individual(MaxIdleTime=60)), "AK1", T0)
        e.leave(APP, CHANNEL, "alice", T0 + 10)
        e.join(APP, CHANNEL, "alice", ["camera"], T0 + 69)
        e.unpublish(APP, CHANNEL, "alice", ["camera"], T0 + 100)
        e.advance(T0 + 159)
        assert task.status == "RUNNING"
        e.advance(T0 + 160)
        assert task.stop_reason == "IdleTimeout"

    def test_idle_from_the_start_and_default_300(self) -> None:
        e = engine()
        e.join(APP, CHANNEL, "alice", [], T0)
        task = e.start(spec(individual()), "AK1", T0)
        e.advance(T0 + 299)
        assert task.status == "RUNNING"
        e.advance(T0 + 300)
        assert task.stop_reason == "IdleTimeout"

    @pytest.mark.parametrize(
        "subscription, tracks, live",
        [
            ({"UserId": "u"}, ["audio"], True),
            ({"UserId": "u"}, ["camera"], True),
            ({"UserId": "u"}, ["screen"], False),
            ({"UserId": "u", "SourceType": 1}, ["screen"], True),
            ({"UserId": "u", "SourceType": 1}, ["audio", "camera"], False),
            ({"UserId": "u", "StreamType": 1}, ["camera", "screen"], False),
            ({"UserId": "u", "StreamType": 1}, ["audio"], True),
        ],
    )
    def test_what_keeps_a_stream_live(self, subscription: dict[str, Any], tracks: list[str], live: bool) -> None:
        e = engine()
        e.join(APP, CHANNEL, "u", tracks, T0)
        task = e.start(spec(individual(SubscribeParams={"SubscribeUserIdList": [subscription]})), "AK1", T0)
        assert (task.idle_since is None) is live

    def test_update_restarts_the_window(self) -> None:
        e = engine()
        e.join(APP, CHANNEL, "alice", [], T0)
        task = e.start(spec(individual(MaxIdleTime=60)), "AK1", T0)
        e.update(task.task_id, spec(individual("alice", "bob", MaxIdleTime=60)), T0 + 50)
        e.advance(T0 + 109)
        assert task.status == "RUNNING"
        e.advance(T0 + 110)
        assert task.stop_reason == "IdleTimeout"


class TestFiles:
    def test_oss_files_split_by_max_file_duration(self) -> None:
        e = engine(stopping_seconds=0)
        e.join(APP, CHANNEL, "alice", ["audio", "camera"], T0)
        raw = individual(
            RecordParams={"RecordMode": 0, "MaxFileDuration": 180},
            StorageParams=oss(FileInfo=[{"Format": "MP4", "FilePathPrefix": ["rec", "day1"]}, {"Format": "MP3"}]),
        )
        task = e.start(spec(raw), "AK1", T0)
        files = e.describe(task.task_id, T0 + 400)["RecordFileList"]
        prefix = f"rec/day1/{task.task_id}/{APP}_{CHANNEL}_alice_"
        assert files["Mp4FileList"] == [
            prefix + start_time_label(T0) + ".mp4",
            prefix + start_time_label(T0 + 180) + ".mp4",
        ]
        assert start_time_label(T0) == "2023-11-15-06:13:20"
        assert len(files["Mp3FileList"]) == 2
        assert len(files["HlsFileList"]) == 3  # the third playlist is live: it has a slice
        assert files["VodMediaList"] == []
        e.stop(task.task_id, T0 + 400)
        files = e.describe(task.task_id, T0 + 401)["RecordFileList"]
        assert [len(files[k]) for k in ("HlsFileList", "Mp4FileList", "Mp3FileList")] == [3, 3, 3]

    def test_only_live_streams_record(self) -> None:
        e = engine()
        e.join(APP, CHANNEL, "alice", ["audio"], T0)
        e.join(APP, CHANNEL, "bob", [], T0)
        task = e.start(spec(individual("alice", "bob")), "AK1", T0)
        e.publish(APP, CHANNEL, "bob", ["camera"], T0 + 100)
        e.unpublish(APP, CHANNEL, "alice", ["audio"], T0 + 150)
        e.advance(T0 + 200)
        assert task.tracks["Single::alice::AV::C"].recorded == pytest.approx(150)
        assert task.tracks["Single::bob::AV::C"].recorded == pytest.approx(100)
        assert task.tracks["Single::bob::AV::C"].chunk_starts == [T0 + 100]

    def test_names_by_pattern_and_source(self) -> None:
        e = engine(stopping_seconds=0)
        e.join(APP, CHANNEL, "a", ["audio", "camera", "screen"], T0)
        raw = individual(
            SubscribeParams={
                "SubscribeUserIdList": [
                    {"UserId": "a"},
                    {"UserId": "a", "SourceType": 1},
                    {"UserId": "a", "StreamType": 1},
                ]
            },
            RecordParams={"RecordMode": 0, "StreamType": 0},
            StorageParams=oss(
                FileInfo=[
                    {"Format": "MP4", "FileNamePattern": "{UserId}_{SourceType}_{StreamType}_{RecordMode}_{StartTime}"}
                ]
            ),
        )
        task = e.start(spec(raw), "AK1", T0)
        e.stop(task.task_id, T0 + 10)
        names = [p.split("/")[-1] for p in e.describe(task.task_id, T0 + 10)["RecordFileList"]["Mp4FileList"]]
        stamp = start_time_label(T0)
        assert names == [f"a_OC_AV_Single_{stamp}.mp4", f"a_OS_AV_Single_{stamp}.mp4", f"a_A_AV_Single_{stamp}.mp4"]
        hls = [p.split("/")[-1] for p in e.describe(task.task_id, T0 + 10)["RecordFileList"]["HlsFileList"]]
        assert hls[0] == f"{APP}_{CHANNEL}_a_OC_{stamp}.m3u8"  # default pattern adds SourceType for a repeated user

    def test_mixed_keeps_user_variables_literal(self) -> None:
        e = engine(stopping_seconds=0)
        e.join(APP, CHANNEL, "alice", ["audio"], T0)
        raw = mixed(
            StorageParams=oss(
                FileInfo=[{"Format": "MP4", "FileNamePattern": "{ChannelId}_{UserId}_{SourceType}_{StartTime}"}]
            )
        )
        task = e.start(spec(raw), "AK1", T0)
        e.stop(task.task_id, T0 + 5)
        files = e.describe(task.task_id, T0 + 5)["RecordFileList"]
        assert files["Mp4FileList"] == [
            f"{task.task_id}/{CHANNEL}_{{UserId}}_{{SourceType}}_{start_time_label(T0)}.mp4"
        ]
        assert files["HlsFileList"] == [f"{task.task_id}/{APP}_{CHANNEL}_{start_time_label(T0)}.m3u8"]

    def test_vod_media(self) -> None:
        e = engine(stopping_seconds=0)
        e.join(APP, CHANNEL, "alice", ["audio"], T0)
        raw = mixed(
            RecordParams={"RecordMode": 1, "MaxFileDuration": 180},
            StorageParams=vod(AutoCompose=1, ComposeVodTranscodeGroupId="g"),
            NotifyUrl=URL,
        )
        task = e.start(spec(raw), "AK1", T0)
        media = e.describe(task.task_id, T0 + 200)["RecordFileList"]["VodMediaList"]
        assert len(media) == 1 and media[0]["Stream"] == "Mix" and len(media[0]["MediaIds"]) == 1
        assert media[0]["MergedIds"] == []
        e.stop(task.task_id, T0 + 200)
        media = e.describe(task.task_id, T0 + 200)["RecordFileList"]["VodMediaList"]
        assert len(media[0]["MediaIds"]) == 2 and len(media[0]["MergedIds"]) == 1
        uploads = [p for k, p in kinds(e) if k == "RecordFileUploaded"]
        assert [u["mediaId"] for u in uploads] == media[0]["MediaIds"]
        assert [u["duration"] for u in uploads] == [180, 20]

    def test_uploaded_events_for_chosen_formats_and_slices(self) -> None:
        e = engine(stopping_seconds=0)
        e.join(APP, CHANNEL, "alice", ["audio"], T0)
        raw = individual(
            RecordParams={"RecordMode": 0, "MaxFileDuration": 180},
            StorageParams=oss(FileInfo=[{"Format": "MP4"}, {"Format": "HLS", "SliceDuration": 20}, {"Format": "MP3"}]),
            NotifyUrl=URL,
            NotifyFileUploadedFormat=["MP4", "SLICE"],
        )
        task = e.start(spec(raw), "AK1", T0)
        kinds(e)
        e.advance(T0 + 190)
        uploads = [p for k, p in kinds(e) if k == "RecordFileUploaded"]
        assert [u["format"] for u in uploads] == ["MP4"] + ["SLICE"] * 9
        mp4 = uploads[0]
        assert mp4["duration"] == 180 and mp4["stream"] == "Single::alice::AV::C"
        assert mp4["url"] == f"https://{BUCKET}.{ENDPOINT}/{mp4['filePath']}"
        assert [u["sequence"] for u in uploads[1:]] == list(range(9))
        e.stop(task.task_id, T0 + 190)
        e.advance(T0 + 190)
        final = [(p["format"], p["duration"]) for k, p in kinds(e) if k == "RecordFileUploaded"]
        assert final == [("MP4", 10), ("SLICE", 10)]

    def test_without_notify_url_no_events(self) -> None:
        e = engine()
        e.join(APP, CHANNEL, "alice", ["audio"], T0)
        e.start(spec(individual()), "AK1", T0)
        assert e.drain() == []


class TestChannels:
    def test_membership_and_tracks(self) -> None:
        e = engine()
        e.join(APP, CHANNEL, "alice", ["audio"], T0)
        e.publish(APP, CHANNEL, "alice", ["screen"], T0)
        assert e.channel_view() == [{"appId": APP, "channelId": CHANNEL, "users": {"alice": ["audio", "screen"]}}]
        with pytest.raises(KeyError):
            e.publish(APP, CHANNEL, "bob", ["audio"], T0)
        with pytest.raises(ValueError):
            e.join(APP, CHANNEL, "bob", ["microphone"], T0)
        e.leave(APP, CHANNEL, "alice", T0)
        assert e.channel_view() == []
