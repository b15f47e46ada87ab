"""The vendor's StartRtcCloudRecording page's rules, table-tested at the pure-function level."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from emulator_samples import APP, BUCKET, DELETE, individual, mixed, oss, set_path, vod

from rtc_recording.emulator.cli import config_from, parser
from rtc_recording.emulator.errors import ApiError
from rtc_recording.emulator.spec import AUDIO, CAMERA, INDIVIDUAL, MIXED, SCREEN
from rtc_recording.emulator.validation import Account, validate_start, validate_update
from rtc_recording.emulator.wire import decode_params

ACCOUNT = Account("cn-shanghai", frozenset({APP}), frozenset({BUCKET}))
STRICT_IDS = Account("cn-shanghai", frozenset({APP}), frozenset({BUCKET}), strict_ids=True)
US_ACCOUNT = Account("us-east-1", frozenset({APP}), frozenset({BUCKET}))

SUB = "InvalidParameter.SubscribeParams.SubscribeUserIdList"
REC = "InvalidParameter.RecordParams"
STYPE = "InvalidParameter.StorageParams.StorageType"
FILE = "InvalidParameter.StorageParams.FileInfo"
OSSP = "InvalidParameter.StorageParams.OSSParams"
VODP = "InvalidParameter.StorageParams.VodParams"
TRANS = "InvalidParameter.MixTranscodeParams"
PANES = "InvalidParameter.MixLayoutParams.UserPanes"
NFMT = "InvalidParameter.NotifyFileUploadedFormat"
IDLE = "InvalidParameter.MaxIdleTime"
STATUS = {
    "MissingParameter": 400,
    "InvalidParameter.AppId": 404,
    "InvalidParameter.ChannelId": 404,
    "InvalidParameter.UserId": 403,
    REC: 405,
    IDLE: 405,
    "InvalidParameter.NotifyAuthKey": 405,
    STYPE: 405,
    VODP: 405,
    NFMT: 405,
    FILE: 400,
    OSSP: 400,
    "NotFound.OSSBucket": 400,
    TRANS: 400,
    PANES: 400,
    SUB: 400,
    "InvalidParameter.NotifyUrl": 400,
}


def subs(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"SubscribeUserIdList": list(entries)}


def file_info(*entries: dict[str, Any]) -> dict[str, Any]:
    return oss(FileInfo=list(entries))


Case = tuple[Callable[[], dict[str, Any]], str | None]

# (request builder, expected code or None for accepted), by rule
CASES: dict[str, Case] = {
    # required parameters
    **{
        f"missing {name}": (lambda name=name: set_path(individual(), name, DELETE), "MissingParameter")
        for name in ("AppId", "ChannelId", "SubscribeParams", "RecordParams", "StorageParams")
    },
    "unknown app": (lambda: individual(AppId="nope"), "InvalidParameter.AppId"),
    # ids: the page states no rule; see IDS for the strict_ids knob
    "channel empty": (lambda: individual(ChannelId=""), "InvalidParameter.ChannelId"),
    "channel not a string": (lambda: individual(ChannelId=7), "InvalidParameter.ChannelId"),
    "channel with dot": (lambda: individual(ChannelId="room.1"), None),
    "channel of 65": (lambda: individual(ChannelId="c" * 65), None),
    # subscriptions
    "no subscribers": (lambda: individual(SubscribeParams=subs()), SUB),
    "list missing": (lambda: individual(SubscribeParams={}), SUB),
    "list not array": (lambda: individual(SubscribeParams={"SubscribeUserIdList": "alice"}), SUB),
    "17 subscribers": (lambda: individual(*[f"u{i}" for i in range(17)]), None),
    "18 subscribers": (lambda: individual(*[f"u{i}" for i in range(18)]), SUB),
    "entry not object": (lambda: individual(SubscribeParams=subs("alice")), SUB),
    "user id missing": (lambda: individual(SubscribeParams=subs({"StreamType": 0})), "InvalidParameter.UserId"),
    "user id empty": (lambda: individual(""), "InvalidParameter.UserId"),
    "user id with at sign": (lambda: individual("a@b"), None),
    "user id of 65": (lambda: individual("u" * 65), None),
    "stream type 3": (lambda: individual(SubscribeParams=subs({"UserId": "a", "StreamType": 3})), SUB),
    "stream type -1": (lambda: individual(SubscribeParams=subs({"UserId": "a", "StreamType": -1})), SUB),
    "stream type text": (lambda: individual(SubscribeParams=subs({"UserId": "a", "StreamType": "av"})), SUB),
    "stream type digits": (lambda: individual(SubscribeParams=subs({"UserId": "a", "StreamType": "1"})), None),
    "stream type bool": (lambda: individual(SubscribeParams=subs({"UserId": "a", "StreamType": True})), SUB),
    "source type 2": (lambda: individual(SubscribeParams=subs({"UserId": "a", "SourceType": 2})), SUB),
    "duplicate subscription": (lambda: individual("alice", "alice"), SUB),
    "audio sub ignores source": (
        lambda: individual(
            SubscribeParams=subs(
                {"UserId": "a", "StreamType": 1, "SourceType": 0}, {"UserId": "a", "StreamType": 1, "SourceType": 1}
            )
        ),
        SUB,
    ),
    "individual video-only sub": (lambda: individual(SubscribeParams=subs({"UserId": "a", "StreamType": 2})), SUB),
    "individual audio output, video sub": (
        lambda: individual(
            SubscribeParams=subs({"UserId": "a", "StreamType": 2}), RecordParams={"RecordMode": 0, "StreamType": 1}
        ),
        SUB,
    ),
    "individual video output, audio sub": (
        lambda: individual(
            SubscribeParams=subs({"UserId": "a"}, {"UserId": "b", "StreamType": 1}),
            RecordParams={"RecordMode": 0, "StreamType": 2},
        ),
        SUB,
    ),
    "individual audio output, AV sub": (lambda: individual(RecordParams={"RecordMode": 0, "StreamType": 1}), None),
    "mixed audio output, only video subs": (
        lambda: set_path(
            set_path(mixed("a"), "RecordParams.StreamType", 1), "SubscribeParams.SubscribeUserIdList.0.StreamType", 2
        ),
        SUB,
    ),
    "mixed audio output, some video subs": (
        lambda: mixed(
            SubscribeParams=subs({"UserId": "alice", "StreamType": 2}, {"UserId": "bob"}),
            RecordParams={"RecordMode": 1, "StreamType": 1},
        ),
        None,
    ),
    "mixed video output, only audio subs": (
        lambda: mixed(
            SubscribeParams=subs({"UserId": "alice", "StreamType": 1}, {"UserId": "bob", "StreamType": 1}),
            RecordParams={"RecordMode": 1, "StreamType": 2},
            MixLayoutParams={"UserPanes": [{"X": "0"}]},
        ),
        SUB,
    ),
    "mixed video-only sub": (
        lambda: mixed(SubscribeParams=subs({"UserId": "alice", "StreamType": 2}, {"UserId": "bob"})),
        None,
    ),
    # one user with different StreamType or SourceType values (the page's own case)
    "individual AV and audio of one user, names with SourceType": (
        lambda: individual(
            SubscribeParams=subs({"UserId": "a"}, {"UserId": "a", "StreamType": 1}),
            StorageParams=file_info({"Format": "MP4", "FileNamePattern": "{UserId}_{SourceType}_{StartTime}"}),
        ),
        None,
    ),
    "individual AV and audio of one user, default names": (
        lambda: individual(SubscribeParams=subs({"UserId": "a"}, {"UserId": "a", "StreamType": 1})),
        None,
    ),
    "mixed video and audio of one user": (
        lambda: mixed(
            SubscribeParams=subs({"UserId": "alice", "StreamType": 2}, {"UserId": "alice", "StreamType": 1}),
            MixLayoutParams={"UserPanes": [{"UserId": "alice"}]},
        ),
        None,
    ),
    "mixed camera, screen and audio of one user": (
        lambda: mixed(
            SubscribeParams=subs(
                {"UserId": "alice", "StreamType": 2},
                {"UserId": "alice", "StreamType": 2, "SourceType": 1},
                {"UserId": "alice", "StreamType": 1},
            ),
            MixLayoutParams={"UserPanes": [{"UserId": "alice"}, {"UserId": "alice", "SourceType": 1}]},
        ),
        None,
    ),
    # "invalid" in the page's sense: accepted and ignored
    "audio sub with SourceType 1 (ignored)": (
        lambda: individual(SubscribeParams=subs({"UserId": "a", "StreamType": 1, "SourceType": 1})),
        None,
    ),
    # recording parameters
    "record not object": (lambda: individual(RecordParams=[0]), REC),
    "record mode missing": (lambda: individual(RecordParams={}), REC),
    "record mode 2": (lambda: individual(RecordParams={"RecordMode": 2}), REC),
    "record stream type 3": (lambda: individual(RecordParams={"RecordMode": 0, "StreamType": 3}), REC),
    # storage
    "storage not object": (lambda: individual(StorageParams="oss"), STYPE),
    "storage type missing": (lambda: individual(StorageParams={"OSSParams": oss()["OSSParams"]}), STYPE),
    "storage type 2": (lambda: individual(StorageParams=oss(StorageType=2)), STYPE),
    "oss without OSSParams": (lambda: individual(StorageParams={"StorageType": 1}), OSSP),
    "oss endpoint missing": (lambda: set_path(individual(), "StorageParams.OSSParams.OSSEndpoint", DELETE), OSSP),
    "oss endpoint other region": (
        lambda: set_path(individual(), "StorageParams.OSSParams.OSSEndpoint", "oss-cn-beijing.aliyuncs.com"),
        OSSP,
    ),
    "oss endpoint internal": (
        lambda: set_path(individual(), "StorageParams.OSSParams.OSSEndpoint", "oss-cn-shanghai-internal.aliyuncs.com"),
        None,
    ),
    "oss endpoint CNAME": (
        lambda: set_path(individual(), "StorageParams.OSSParams.OSSEndpoint", "rec.example.com"),
        OSSP,
    ),
    "oss endpoint with scheme": (
        lambda: set_path(individual(), "StorageParams.OSSParams.OSSEndpoint", "https://oss-cn-shanghai.aliyuncs.com"),
        OSSP,
    ),
    "oss bucket missing": (lambda: set_path(individual(), "StorageParams.OSSParams.OSSBucket", DELETE), OSSP),
    "oss bucket bad name": (lambda: set_path(individual(), "StorageParams.OSSParams.OSSBucket", "Bad_Bucket"), OSSP),
    "oss bucket unknown": (
        lambda: set_path(individual(), "StorageParams.OSSParams.OSSBucket", "other-bucket"),
        "NotFound.OSSBucket",
    ),
    "oss with VodParams": (lambda: individual(StorageParams=oss(VodParams={})), VODP),
    "vod": (lambda: individual(StorageParams=vod()), None),
    "vod without VodParams": (lambda: individual(StorageParams={"StorageType": 0}), VODP),
    "vod with FileInfo": (lambda: individual(StorageParams={**vod(), "FileInfo": [{"Format": "MP4"}]}), FILE),
    "vod with empty FileInfo (as the SDK sends)": (lambda: individual(StorageParams={**vod(), "FileInfo": []}), None),
    "vod with OSSParams": (lambda: individual(StorageParams={**vod(), "OSSParams": oss()["OSSParams"]}), OSSP),
    "vod auto compose without group": (lambda: individual(StorageParams=vod(AutoCompose=1)), VODP),
    "vod auto compose with group": (
        lambda: individual(StorageParams=vod(AutoCompose=1, ComposeVodTranscodeGroupId="g")),
        None,
    ),
    "vod auto compose 2": (lambda: individual(StorageParams=vod(AutoCompose=2)), VODP),
    "vod location other region": (
        lambda: individual(StorageParams=vod(StorageLocation="x.oss-cn-shenzhen.aliyuncs.com")),
        VODP,
    ),
    "vod location this region": (
        lambda: individual(StorageParams=vod(StorageLocation="x.oss-cn-shanghai.aliyuncs.com")),
        None,
    ),
    # files
    "file info not array": (lambda: individual(StorageParams=oss(FileInfo={"Format": "MP4"})), FILE),
    "file info entry not object": (lambda: individual(StorageParams=file_info("MP4")), FILE),
    "format missing": (lambda: individual(StorageParams=file_info({})), FILE),
    "format FLV": (lambda: individual(StorageParams=file_info({"Format": "FLV"})), FILE),
    "format lower case": (lambda: individual(StorageParams=file_info({"Format": "mp4"})), FILE),
    "format twice": (lambda: individual(StorageParams=file_info({"Format": "MP4"}, {"Format": "MP4"})), FILE),
    "all formats": (
        lambda: individual(StorageParams=file_info({"Format": "MP4"}, {"Format": "MP3"}, {"Format": "HLS"})),
        None,
    ),
    "slice pattern on MP4": (
        lambda: individual(
            StorageParams=file_info({"Format": "MP4", "SliceNamePattern": "{AppId}_{UserId}_{StartTime}_{Sequence}"})
        ),
        FILE,
    ),
    "slice duration on MP3": (
        lambda: individual(StorageParams=file_info({"Format": "MP3", "SliceDuration": 20})),
        FILE,
    ),
    "prefix not array": (lambda: individual(StorageParams=file_info({"Format": "MP4", "FilePathPrefix": "a/b"})), FILE),
    "prefix 5 levels": (
        lambda: individual(StorageParams=file_info({"Format": "MP4", "FilePathPrefix": list("abcde")})),
        None,
    ),
    "prefix 6 levels": (
        lambda: individual(StorageParams=file_info({"Format": "MP4", "FilePathPrefix": list("abcdef")})),
        FILE,
    ),
    "prefix empty level": (
        lambda: individual(StorageParams=file_info({"Format": "MP4", "FilePathPrefix": ["a", ""]})),
        FILE,
    ),
    "prefix with slash": (
        lambda: individual(StorageParams=file_info({"Format": "MP4", "FilePathPrefix": ["a/b"]})),
        FILE,
    ),
    "prefix with dot": (
        lambda: individual(StorageParams=file_info({"Format": "MP4", "FilePathPrefix": ["a.b"]})),
        FILE,
    ),
    "prefix 128 with slashes": (
        lambda: individual(StorageParams=file_info({"Format": "MP4", "FilePathPrefix": ["a" * 60, "b" * 66]})),
        None,
    ),
    "prefix 129 with slashes": (
        lambda: individual(StorageParams=file_info({"Format": "MP4", "FilePathPrefix": ["a" * 60, "b" * 67]})),
        FILE,
    ),
    "prefix -_ allowed": (
        lambda: individual(StorageParams=file_info({"Format": "MP4", "FilePathPrefix": ["a-b_C9"]})),
        None,
    ),
    # name patterns
    "pattern ok": (
        lambda: individual(
            StorageParams=file_info(
                {
                    "Format": "MP4",
                    "FileNamePattern": (
                        "{AppId}_{ChannelId}_{UserId}_{RecordMode}_{SourceType}_{StreamType}_{StartTime}"
                    ),
                }
            )
        ),
        None,
    ),
    "pattern without StartTime": (
        lambda: individual(StorageParams=file_info({"Format": "MP4", "FileNamePattern": "{AppId}_{UserId}"})),
        FILE,
    ),
    "individual pattern without UserId": (
        lambda: individual(StorageParams=file_info({"Format": "MP4", "FileNamePattern": "{AppId}_{StartTime}"})),
        FILE,
    ),
    "mixed pattern without UserId": (
        lambda: mixed(StorageParams=file_info({"Format": "MP4", "FileNamePattern": "{AppId}_{StartTime}"})),
        None,
    ),
    "pattern unknown variable": (
        lambda: individual(
            StorageParams=file_info({"Format": "MP4", "FileNamePattern": "{UserId}_{Date}_{StartTime}"})
        ),
        FILE,
    ),
    "pattern literal text": (
        lambda: individual(StorageParams=file_info({"Format": "MP4", "FileNamePattern": "rec_{UserId}_{StartTime}"})),
        FILE,
    ),
    "pattern dash separated": (
        lambda: individual(StorageParams=file_info({"Format": "MP4", "FileNamePattern": "{UserId}-{StartTime}"})),
        FILE,
    ),
    "pattern variable twice": (
        lambda: individual(
            StorageParams=file_info({"Format": "MP4", "FileNamePattern": "{UserId}_{StartTime}_{UserId}"})
        ),
        FILE,
    ),
    "file pattern with Sequence": (
        lambda: individual(
            StorageParams=file_info({"Format": "MP4", "FileNamePattern": "{UserId}_{StartTime}_{Sequence}"})
        ),
        FILE,
    ),
    "slice pattern ok": (
        lambda: individual(
            StorageParams=file_info({"Format": "HLS", "SliceNamePattern": "{UserId}_{StartTime}_{Sequence}"})
        ),
        None,
    ),
    "slice pattern without Sequence": (
        lambda: individual(StorageParams=file_info({"Format": "HLS", "SliceNamePattern": "{UserId}_{StartTime}"})),
        FILE,
    ),
    "slice pattern without StartTime": (
        lambda: individual(StorageParams=file_info({"Format": "HLS", "SliceNamePattern": "{UserId}_{Sequence}"})),
        FILE,
    ),
    "camera and screen, pattern without SourceType": (
        lambda: individual(
            SubscribeParams=subs({"UserId": "a"}, {"UserId": "a", "SourceType": 1}),
            StorageParams=file_info({"Format": "MP4", "FileNamePattern": "{UserId}_{StartTime}"}),
        ),
        FILE,
    ),
    "camera and screen, slice pattern without SourceType": (
        lambda: individual(
            SubscribeParams=subs({"UserId": "a"}, {"UserId": "a", "SourceType": 1}),
            StorageParams=file_info({"Format": "HLS", "SliceNamePattern": "{UserId}_{StartTime}_{Sequence}"}),
        ),
        FILE,
    ),
    "camera and screen, pattern with SourceType": (
        lambda: individual(
            SubscribeParams=subs({"UserId": "a"}, {"UserId": "a", "SourceType": 1}),
            StorageParams=file_info({"Format": "MP4", "FileNamePattern": "{UserId}_{SourceType}_{StartTime}"}),
        ),
        None,
    ),
    "camera and screen, default patterns": (
        lambda: individual(SubscribeParams=subs({"UserId": "a"}, {"UserId": "a", "SourceType": 1})),
        None,
    ),
    "AV and audio of one user, pattern without SourceType": (
        lambda: individual(
            SubscribeParams=subs({"UserId": "a"}, {"UserId": "a", "StreamType": 1}),
            StorageParams=file_info({"Format": "MP4", "FileNamePattern": "{UserId}_{StartTime}"}),
        ),
        FILE,
    ),
    # in mixed mode UserId and SourceType have no value: kept as the literal "{UserId}"/"{SourceType}"
    "mixed pattern with UserId": (
        lambda: mixed(StorageParams=file_info({"Format": "MP4", "FileNamePattern": "{UserId}_{StartTime}"})),
        None,
    ),
    "mixed slice pattern with SourceType": (
        lambda: mixed(
            StorageParams=file_info({"Format": "HLS", "SliceNamePattern": "{SourceType}_{StartTime}_{Sequence}"})
        ),
        None,
    ),
    # transcoding
    "individual with transcode": (lambda: individual(MixTranscodeParams=mixed()["MixTranscodeParams"]), TRANS),
    "mixed without transcode": (lambda: set_path(mixed(), "MixTranscodeParams", DELETE), TRANS),
    "transcode not object": (lambda: mixed(MixTranscodeParams=[1]), TRANS),
    **{
        f"transcode {key} missing": (lambda key=key: set_path(mixed(), f"MixTranscodeParams.{key}", DELETE), TRANS)
        for key in ("AudioBitrate", "AudioChannels", "AudioSampleRate", "VideoBitrate", "VideoFramerate", "VideoGop")
    },
    "audio-only mix with video fields (ignored)": (
        lambda: mixed(RecordParams={"RecordMode": 1, "StreamType": 1}),
        None,
    ),
    "audio-only mix without video fields": (
        lambda: mixed(
            RecordParams={"RecordMode": 1, "StreamType": 1},
            MixTranscodeParams={"AudioBitrate": 64, "AudioChannels": 1, "AudioSampleRate": 16000},
        ),
        None,
    ),
    "sample rate 22050": (lambda: set_path(mixed(), "MixTranscodeParams.AudioSampleRate", 22050), TRANS),
    "audio channels 3": (lambda: set_path(mixed(), "MixTranscodeParams.AudioChannels", 3), TRANS),
    "codec VP8": (lambda: set_path(mixed(), "MixTranscodeParams.VideoCodec", "VP8"), TRANS),
    "codec H.265": (lambda: set_path(mixed(), "MixTranscodeParams.VideoCodec", "H.265"), None),
    "frame fill 1": (lambda: set_path(mixed(), "MixTranscodeParams.FrameFillType", 1), TRANS),
    # layout
    "individual with layout": (lambda: individual(MixLayoutParams={"UserPanes": [{"UserId": "alice"}]}), PANES),
    "mixed without layout": (lambda: set_path(mixed(), "MixLayoutParams", DELETE), PANES),
    "audio-only mix without layout": (
        lambda: set_path(mixed(RecordParams={"RecordMode": 1, "StreamType": 1}), "MixLayoutParams", DELETE),
        None,
    ),
    "layout not object": (lambda: mixed(MixLayoutParams=[]), PANES),
    "panes empty": (lambda: mixed(MixLayoutParams={"UserPanes": []}), PANES),
    "panes not array": (lambda: mixed(MixLayoutParams={"UserPanes": {"UserId": "alice"}}), PANES),
    "pane of unsubscribed user": (lambda: set_path(mixed(), "MixLayoutParams.UserPanes.0.UserId", "carol"), PANES),
    "pane of unsubscribed screen": (lambda: set_path(mixed(), "MixLayoutParams.UserPanes.0.SourceType", 1), PANES),
    "pane of subscribed screen": (
        lambda: mixed(
            SubscribeParams=subs({"UserId": "alice", "SourceType": 1}, {"UserId": "bob"}),
            MixLayoutParams={"UserPanes": [{"UserId": "alice", "SourceType": 1}, {"UserId": "bob"}]},
        ),
        None,
    ),
    "pane of audio-only sub": (
        lambda: mixed(SubscribeParams=subs({"UserId": "alice", "StreamType": 1}, {"UserId": "bob"})),
        PANES,
    ),
    "pane without user": (
        lambda: mixed(MixLayoutParams={"UserPanes": [{"Width": "0.5"}, {"Width": "0.5", "X": "0.5"}]}),
        None,
    ),
    "pane source 2": (lambda: set_path(mixed(), "MixLayoutParams.UserPanes.0.SourceType", 2), PANES),
    "pane SourceType without user (ignored)": (lambda: mixed(MixLayoutParams={"UserPanes": [{"SourceType": 1}]}), None),
    "18 panes": (lambda: mixed(MixLayoutParams={"UserPanes": [{"Width": "0.05"}] * 18}), None),
    "1001 panes": (lambda: mixed(MixLayoutParams={"UserPanes": [{"Width": "0.001"}] * 1001}), None),
    "pane X with 7 decimals": (lambda: set_path(mixed(), "MixLayoutParams.UserPanes.0.X", "0.3333333"), None),
    "pane X without leading zero": (lambda: set_path(mixed(), "MixLayoutParams.UserPanes.0.X", ".5"), None),
    "pane X 1.0000001": (lambda: set_path(mixed(), "MixLayoutParams.UserPanes.0.X", "1.0000001"), PANES),
    "pane zorder -1": (lambda: set_path(mixed(), "MixLayoutParams.UserPanes.0.ZOrder", -1), PANES),
    "pane zorder 5": (lambda: set_path(mixed(), "MixLayoutParams.UserPanes.0.ZOrder", 5), None),
    "pane width as number": (lambda: set_path(mixed(), "MixLayoutParams.UserPanes.0.Width", 0.5), None),
    "pane width not a number": (lambda: set_path(mixed(), "MixLayoutParams.UserPanes.0.Width", "half"), PANES),
    "pane width NaN": (lambda: set_path(mixed(), "MixLayoutParams.UserPanes.0.Width", "nan"), PANES),
    "sub background render 2": (
        lambda: set_path(mixed(), "MixLayoutParams.UserPanes.0.SubBackground", {"RenderMode": 2}),
        PANES,
    ),
    "sub background bad url": (
        lambda: set_path(mixed(), "MixLayoutParams.UserPanes.0.SubBackground", {"Url": "file:///x.png"}),
        PANES,
    ),
    "background render 1": (
        lambda: set_path(
            mixed(), "MixLayoutParams.MixBackground", {"RenderMode": 1, "Url": "https://example.com/bg.png"}
        ),
        None,
    ),
    "background render 2": (lambda: set_path(mixed(), "MixLayoutParams.MixBackground", {"RenderMode": 2}), PANES),
    "background url 2048": (
        lambda: set_path(mixed(), "MixLayoutParams.MixBackground", {"Url": "https://e.com/" + "a" * (2048 - 14)}),
        None,
    ),
    "background url 2049": (
        lambda: set_path(mixed(), "MixLayoutParams.MixBackground", {"Url": "https://e.com/" + "a" * (2049 - 14)}),
        PANES,
    ),
    # callbacks
    "notify url": (lambda: individual(NotifyUrl="http://127.0.0.1:1/cb/a"), None),
    "notify url ftp": (lambda: individual(NotifyUrl="ftp://127.0.0.1/cb"), "InvalidParameter.NotifyUrl"),
    "notify url no host": (lambda: individual(NotifyUrl="http:///cb"), "InvalidParameter.NotifyUrl"),
    "notify url 2048": (lambda: individual(NotifyUrl="https://e.com/" + "a" * (2048 - 14)), None),
    "notify url 2049": (
        lambda: individual(NotifyUrl="https://e.com/" + "a" * (2049 - 14)),
        "InvalidParameter.NotifyUrl",
    ),
    "auth key 15": (lambda: individual(NotifyAuthKey="k" * 15), "InvalidParameter.NotifyAuthKey"),
    "auth key 16": (lambda: individual(NotifyAuthKey="k" * 16), None),
    "auth key 64": (lambda: individual(NotifyAuthKey="K9" * 32), None),
    "auth key 65": (lambda: individual(NotifyAuthKey="k" * 65), "InvalidParameter.NotifyAuthKey"),
    "auth key dash": (lambda: individual(NotifyAuthKey="abcdefgh-ijklmnop"), "InvalidParameter.NotifyAuthKey"),
    "notify FLV": (lambda: individual(NotifyFileUploadedFormat=["FLV"]), NFMT),
    "notify not array": (lambda: individual(NotifyFileUploadedFormat="MP4"), NFMT),
    "notify mp4 lower case": (
        lambda: individual(StorageParams=file_info({"Format": "MP4"}), NotifyFileUploadedFormat=["mp4", "Slice"]),
        None,
    ),
    "notify MP4 and mp4": (
        lambda: individual(StorageParams=file_info({"Format": "MP4"}), NotifyFileUploadedFormat=["MP4", "mp4"]),
        None,
    ),
    "notify ts": (lambda: individual(NotifyFileUploadedFormat=["ts"]), NFMT),
    "auth key without url (ignored)": (lambda: individual(NotifyAuthKey="k" * 16), None),
    "notify MP4 not written": (lambda: individual(NotifyFileUploadedFormat=["MP4"]), NFMT),
    "notify MP3 not written": (
        lambda: individual(StorageParams=file_info({"Format": "MP4"}), NotifyFileUploadedFormat=["MP3"]),
        NFMT,
    ),
    "notify HLS by default": (lambda: individual(NotifyFileUploadedFormat=["HLS", "SLICE"]), None),
    "notify with VOD": (lambda: individual(StorageParams=vod(), NotifyFileUploadedFormat=["MP4"]), NFMT),
    "idle not a number": (lambda: individual(MaxIdleTime="soon"), IDLE),
}

# (field path, lowest valid, highest valid, code, base)
RANGES = [
    ("RecordParams.MaxFileDuration", 180, 7200, REC, individual),
    ("MaxIdleTime", 10, 14400, IDLE, individual),
    (
        "StorageParams.FileInfo.0.SliceDuration",
        10,
        30,
        FILE,
        lambda: individual(StorageParams=file_info({"Format": "HLS"})),
    ),
    ("MixTranscodeParams.AudioBitrate", 8, 500, TRANS, mixed),
    ("MixTranscodeParams.AudioChannels", 1, 2, TRANS, mixed),
    ("MixTranscodeParams.VideoBitrate", 1, 10000, TRANS, mixed),
    ("MixTranscodeParams.VideoFramerate", 1, 60, TRANS, mixed),
    ("MixTranscodeParams.VideoGop", 1, 60, TRANS, mixed),
    ("MixTranscodeParams.VideoWidth", 0, 1920, TRANS, mixed),
    ("MixTranscodeParams.VideoHeight", 0, 1920, TRANS, mixed),
    ("MixLayoutParams.UserPanes.0.X", "0", "1", PANES, mixed),
    ("MixLayoutParams.UserPanes.0.Y", "0", "1", PANES, mixed),
    ("MixLayoutParams.UserPanes.0.Width", "0", "1", PANES, mixed),
    ("MixLayoutParams.UserPanes.0.Height", "0", "1", PANES, mixed),
]


def outcome(raw: dict[str, Any], account: Account = ACCOUNT) -> str | None:
    try:
        validate_start(raw, account)
    except ApiError as error:
        assert error.status == STATUS[error.code], error
        return error.code
    return None


@pytest.mark.parametrize("build, expected", CASES.values(), ids=CASES.keys())
def test_rule(build: Callable[[], dict[str, Any]], expected: str | None) -> None:
    assert outcome(build()) == expected


def _step(value: Any, delta: int) -> Any:
    return str(float(value) + delta / 1000) if isinstance(value, str) else value + delta


@pytest.mark.parametrize("path, lo, hi, code, base", RANGES, ids=[r[0] for r in RANGES])
def test_range_ends(path: str, lo: Any, hi: Any, code: str, base: Callable[[], dict[str, Any]]) -> None:
    assert outcome(set_path(base(), path, lo)) is None
    assert outcome(set_path(base(), path, hi)) is None
    assert outcome(set_path(base(), path, _step(lo, -1))) == code
    assert outcome(set_path(base(), path, _step(hi, +1))) == code


# Channel and user ids with Account.strict_ids (the emulator's --strict-ids), off by default.
IDS = {
    "channel with space": (lambda: individual(ChannelId="room 1"), "InvalidParameter.ChannelId"),
    "channel with dot": (lambda: individual(ChannelId="room.1"), "InvalidParameter.ChannelId"),
    "channel of 65": (lambda: individual(ChannelId="c" * 65), "InvalidParameter.ChannelId"),
    "channel trailing newline": (lambda: individual(ChannelId="room1\n"), "InvalidParameter.ChannelId"),
    "channel of 64": (lambda: individual(ChannelId="c" * 64), None),
    "user id with space": (lambda: individual("al ice"), "InvalidParameter.UserId"),
    "user id with at sign": (lambda: individual("a@b"), "InvalidParameter.UserId"),
    "user id of 65": (lambda: individual("u" * 65), "InvalidParameter.UserId"),
    "user id of 64, -_ allowed": (lambda: individual("u-_" + "u" * 61), None),
}


@pytest.mark.parametrize("build, expected", IDS.values(), ids=IDS.keys())
def test_strict_ids(build: Callable[[], dict[str, Any]], expected: str | None) -> None:
    assert outcome(build(), STRICT_IDS) == expected


def test_strict_ids_is_a_flag_off_by_default() -> None:
    assert config_from(parser().parse_args(["--strict-ids"])).strict_ids
    assert not config_from(parser().parse_args([])).strict_ids


def _refusal(raw: dict[str, Any]) -> str:
    with pytest.raises(ApiError) as refused:
        validate_start(raw, ACCOUNT)
    return refused.value.message


def test_messages_say_how_to_fix() -> None:
    literal = _refusal(
        individual(StorageParams=file_info({"Format": "MP4", "FileNamePattern": "rec_{UserId}_{StartTime}"}))
    )
    assert "'rec' is not a variable" in literal and "{AppId}, {ChannelId}" in literal
    assert "each variable at most once" in literal
    twice = _refusal(
        individual(StorageParams=file_info({"Format": "MP4", "FileNamePattern": "{UserId}_{StartTime}_{UserId}"}))
    )
    assert "uses {UserId} more than once: each variable at most once" in twice
    duplicate = _refusal(individual("alice", "bob", "alice"))
    assert "it is the same stream as SubscribeUserIdList[0]" in duplicate
    cname = _refusal(set_path(individual(), "StorageParams.OSSParams.OSSEndpoint", "rec.example.com"))
    assert "oss-cn-shanghai.aliyuncs.com or oss-cn-shanghai-internal.aliyuncs.com" in cname


@pytest.mark.parametrize("rate", [8000, 16000, 32000, 44100, 48000])
def test_every_sample_rate(rate: int) -> None:
    assert outcome(set_path(mixed(), "MixTranscodeParams.AudioSampleRate", rate)) is None


def test_vod_is_not_offered_in_us_east_1() -> None:
    assert outcome(individual(StorageParams=vod()), US_ACCOUNT) == VODP
    us_oss = individual(
        StorageParams={
            "StorageType": 1,
            "OSSParams": {"OSSEndpoint": "oss-us-east-1.aliyuncs.com", "OSSBucket": BUCKET},
        }
    )
    assert outcome(us_oss, US_ACCOUNT) is None


def test_spec_defaults_and_normalisation() -> None:
    spec = validate_start(
        individual(
            SubscribeParams=subs({"UserId": "a", "StreamType": 1, "SourceType": 1}, {"UserId": "b", "SourceType": 1}),
            StorageParams=file_info({"Format": "MP4", "FilePathPrefix": ["x"]}),
            NotifyFileUploadedFormat=["mp4", "slice"],
            NotifyUrl="http://127.0.0.1/cb",
        ),
        ACCOUNT,
    )
    assert spec.record_mode == INDIVIDUAL and spec.max_file_duration == 7200 and spec.max_idle_time == 300
    assert [(s.user_id, s.stream_type, s.source_type) for s in spec.subscribers] == [
        ("a", AUDIO, CAMERA),
        ("b", 0, SCREEN),
    ]
    assert [f.format for f in spec.files] == ["MP4", "HLS"]  # HLS always added
    assert spec.files[0].path_prefix == ("x",) and spec.files[1].slice_duration == 30
    assert spec.notify_formats == {"MP4", "SLICE"}
    assert validate_start(mixed(), ACCOUNT).record_mode == MIXED


def test_update_revalidates_over_the_task() -> None:
    current = validate_start(mixed(), ACCOUNT)
    with pytest.raises(ApiError) as missing:
        validate_update({"TaskId": "t"}, current, ACCOUNT)
    assert missing.value.code == "MissingParameter"
    # dropping bob from the subscription leaves his pane dangling
    with pytest.raises(ApiError) as dangling:
        validate_update({"SubscribeParams": subs({"UserId": "alice"})}, current, ACCOUNT)
    assert dangling.value.code == PANES
    updated = validate_update(
        {"SubscribeParams": subs({"UserId": "alice"}), "MixLayoutParams": {"UserPanes": [{"UserId": "alice"}]}},
        current,
        ACCOUNT,
    )
    assert [s.user_id for s in updated.subscribers] == ["alice"]
    assert updated.raw["MixTranscodeParams"] == current.raw["MixTranscodeParams"]

    single = validate_start(
        individual(StorageParams=file_info({"Format": "MP4", "FileNamePattern": "{UserId}_{StartTime}"})), ACCOUNT
    )
    with pytest.raises(ApiError) as layout:
        validate_update({"MixLayoutParams": {"UserPanes": [{"UserId": "alice"}]}}, single, ACCOUNT)
    assert layout.value.code == PANES
    with pytest.raises(ApiError) as screen:  # the same user's screen would overwrite the camera's files
        validate_update(
            {"SubscribeParams": subs({"UserId": "alice"}, {"UserId": "alice", "SourceType": 1})}, single, ACCOUNT
        )
    assert screen.value.code == FILE


class TestWire:
    def test_flattened_array_and_json_objects(self) -> None:
        params = decode_params(
            [
                ("Action", "StartRtcCloudRecording"),
                ("AppId", "a"),
                ("RecordParams", '{"RecordMode":1}'),
                ("NotifyFileUploadedFormat.2", "MP3"),
                ("NotifyFileUploadedFormat.1", "MP4"),
                ("MaxIdleTime", ""),
            ]
        )
        assert params == {"AppId": "a", "RecordParams": {"RecordMode": 1}, "NotifyFileUploadedFormat": ["MP4", "MP3"]}

    def test_array_as_json_or_bare(self) -> None:
        assert decode_params([("NotifyFileUploadedFormat", '["MP4","HLS"]')])["NotifyFileUploadedFormat"] == [
            "MP4",
            "HLS",
        ]
        assert decode_params([("NotifyFileUploadedFormat", "MP4")])["NotifyFileUploadedFormat"] == ["MP4"]
        with pytest.raises(ApiError) as error:
            decode_params([("NotifyFileUploadedFormat", '{"a":1}')])
        assert error.value.code == NFMT

    @pytest.mark.parametrize(
        "name, code",
        [
            ("SubscribeParams", SUB),
            ("RecordParams", REC),
            ("StorageParams", STYPE),
            ("MixTranscodeParams", TRANS),
            ("MixLayoutParams", PANES),
        ],
    )
    @pytest.mark.parametrize("value", ["{not json", "[1,2]", "7"])
    def test_malformed_objects(self, name: str, code: str, value: str) -> None:
        with pytest.raises(ApiError) as error:
            decode_params([(name, value)])
        assert error.value.code == code
