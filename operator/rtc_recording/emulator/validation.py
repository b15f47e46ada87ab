"""The vendor's StartRtcCloudRecording page's parameter rules for Start (and Update, which is Start's rules over the
task's parameters with a new subscription and/or layout).

Pure: decoded parameters in, a RecordingSpec or an ApiError (vendor code + HTTP status)
out. Whether the channel has users is state, checked by the task engine.

Decisions where the page names no code: a nested field's problem takes its object's
code (e.g. a bad SubscribeUserIdList[i].StreamType is InvalidParameter.SubscribeParams.
SubscribeUserIdList); MixBackground problems take the only layout code (UserPanes).

Where the page calls a field "invalid" in a context, the service ignores it there (the page
says so for {UserId} and {SourceType} in mixed-mode names: "retained as the string"), so it is
accepted and ignored here: SourceType of an audio-only subscriber, VideoBitrate/VideoFramerate/
VideoGop of an audio-only mix, SourceType of a pane without UserId, NotifyAuthKey without
NotifyUrl. Fields whose presence in the wrong storage type or format is explicit (FileInfo,
OSSParams or VodParams in the other storage type, slice settings outside HLS) and what the
page says not to set (MixTranscodeParams, MixLayoutParams in individual mode) are refused, as
they were.

Channel and user ids: the page states no character set or length, so any non-empty string
is accepted. Account.strict_ids (the emulator's --strict-ids) refuses ids outside
[A-Za-z0-9_-]{1,64}, the rule of ARTC tokens, for callers that want that check.
"""

from __future__ import annotations

import builtins
import math
import re
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NoReturn, TypeGuard, overload
from urllib.parse import urlsplit

from .errors import ApiError
from .spec import AUDIO, AV, CAMERA, FORMAT_EXTENSIONS, INDIVIDUAL, OSS, VIDEO, VOD, FileSpec, RecordingSpec, Subscriber

STRICT_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # RTC channel and user ids, with strict_ids
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
AUTH_KEY_RE = re.compile(r"^[A-Za-z0-9]{16,64}$")
PREFIX_RE = re.compile(r"^[A-Za-z0-9_-]+$")
OSS_REGION_RE = re.compile(r"oss-([a-z0-9-]+?)(?:-internal)?\.aliyuncs\.com")
FILE_VARS = frozenset({"AppId", "ChannelId", "UserId", "RecordMode", "SourceType", "StreamType", "StartTime"})
SLICE_VARS = FILE_VARS | {"Sequence"}
SAMPLE_RATES = (8000, 16000, 32000, 44100, 48000)
NOTIFY_FORMATS = frozenset({"SLICE", "HLS", "MP4", "MP3"})
MAX_SUBSCRIBERS = 17
MAX_URL = 2048
MAX_PREFIX_LEVELS = 5
MAX_PREFIX_LENGTH = 128
REQUIRED = ("AppId", "ChannelId", "SubscribeParams", "RecordParams", "StorageParams")

SUBSCRIBE = "InvalidParameter.SubscribeParams.SubscribeUserIdList"
RECORD = "InvalidParameter.RecordParams"
STORAGE_TYPE = "InvalidParameter.StorageParams.StorageType"
FILE_INFO = "InvalidParameter.StorageParams.FileInfo"
OSS_PARAMS = "InvalidParameter.StorageParams.OSSParams"
VOD_PARAMS = "InvalidParameter.StorageParams.VodParams"
TRANSCODE = "InvalidParameter.MixTranscodeParams"
LAYOUT = "InvalidParameter.MixLayoutParams.UserPanes"
NOTIFY_FORMAT = "InvalidParameter.NotifyFileUploadedFormat"


@dataclass(frozen=True)
class Account:
    """What exists on the vendor's side for the caller, and where the call landed."""

    region: str
    apps: frozenset[str]
    buckets: frozenset[str]
    strict_ids: bool = False  # refuse channel and user ids outside STRICT_ID_RE (not a rule of the page)


def _valid_id(value: Any, account: Account) -> TypeGuard[str]:
    return isinstance(value, str) and bool(value) and (not account.strict_ids or bool(STRICT_ID_RE.fullmatch(value)))


def _id_rule(account: Account) -> str:
    return "letters, digits, '_' and '-', at most 64" if account.strict_ids else "a non-empty string"


def validate_start(raw: Mapping[str, Any], account: Account) -> RecordingSpec:
    for name in REQUIRED:
        if raw.get(name) is None:
            raise ApiError("MissingParameter", f"{name} is mandatory for this action")
    app_id = raw["AppId"]
    if app_id not in account.apps:
        raise ApiError("InvalidParameter.AppId", f"AppId {app_id!r} does not exist")
    channel_id = raw["ChannelId"]
    if not _valid_id(channel_id, account):
        raise ApiError(
            "InvalidParameter.ChannelId", f"ChannelId {channel_id!r} is not a valid channel id ({_id_rule(account)})"
        )

    record = _Object(raw["RecordParams"], RECORD, "RecordParams")
    mode = record.int("RecordMode", required=True, choices=(0, 1))
    output = record.int("StreamType", default=AV, choices=(AV, AUDIO, VIDEO))
    max_file_duration = record.int("MaxFileDuration", default=7200, lo=180, hi=7200)

    subscribers = _subscribers(raw["SubscribeParams"], mode, output, account)
    storage = _Object(raw["StorageParams"], STORAGE_TYPE, "StorageParams")
    storage_type = storage.int("StorageType", required=True, choices=(VOD, OSS))
    auto_compose = False
    files: tuple[FileSpec, ...] = ()
    endpoint = bucket = None
    if storage_type == VOD:
        # the SDK always serialises FileInfo, as [] when unset: only a non-empty one is refused
        for key, code, present in (
            ("FileInfo", FILE_INFO, bool(storage.obj.get("FileInfo"))),
            ("OSSParams", OSS_PARAMS, storage.obj.get("OSSParams") is not None),
        ):
            if present:
                raise ApiError(code, f"StorageParams.{key} is only valid with OSS storage (StorageType 1)")
        auto_compose = _vod(storage.obj.get("VodParams"), account)
    else:
        if storage.obj.get("VodParams") is not None:
            raise ApiError(VOD_PARAMS, "StorageParams.VodParams is only valid with VOD storage (StorageType 0)")
        endpoint, bucket = _oss(storage.obj.get("OSSParams"), account)
        files = _file_info(storage.obj.get("FileInfo"), mode, subscribers)

    _transcode(raw.get("MixTranscodeParams"), mode, output)
    _layout(raw.get("MixLayoutParams"), mode, output, subscribers)
    notify_url, auth_key, notify_formats = _notify(raw, storage_type, files)
    max_idle = _Object(raw, "InvalidParameter.MaxIdleTime", "").int("MaxIdleTime", default=300, lo=10, hi=14400)
    # existence after syntax: a malformed request is refused as such even for a missing bucket
    if bucket is not None and bucket not in account.buckets:
        raise ApiError("NotFound.OSSBucket", f"Bucket {bucket!r} does not exist")

    return RecordingSpec(
        app_id=app_id,
        channel_id=channel_id,
        record_mode=mode,
        stream_type=output,
        max_file_duration=max_file_duration,
        subscribers=subscribers,
        storage_type=storage_type,
        files=files,
        oss_endpoint=endpoint,
        oss_bucket=bucket,
        auto_compose=auto_compose,
        max_idle_time=max_idle,
        notify_url=notify_url,
        notify_auth_key=auth_key,
        notify_formats=notify_formats,
        raw=dict(raw),
    )


def validate_update(raw: Mapping[str, Any], current: RecordingSpec, account: Account) -> RecordingSpec:
    """Update changes subscription and/or layout; the result must pass Start's rules."""
    changes = {k: raw[k] for k in ("SubscribeParams", "MixLayoutParams") if raw.get(k) is not None}
    if not changes:
        raise ApiError("MissingParameter", "SubscribeParams or MixLayoutParams is mandatory for this action")
    return validate_start({**current.raw, **changes}, account)


def require_task_id(raw: Mapping[str, Any]) -> str:
    task_id = raw.get("TaskId")
    if not isinstance(task_id, str) or not task_id:
        raise ApiError("MissingParameter", "TaskId is mandatory for this action")
    return task_id


class _Object:
    """Reads the fields of one JSON object; any problem is that object's error code."""

    def __init__(self, obj: Any, code: str, where: str):
        self.code = code
        self.where = where
        if not isinstance(obj, Mapping):
            self.fail(f"{where} must be an object")
        self.obj: Mapping[str, Any] = obj

    def fail(self, detail: str) -> NoReturn:
        raise ApiError(self.code, detail)

    def _name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def int(
        self,
        key: str,
        *,
        required: bool = False,
        default: int | None = None,
        lo: int | None = None,
        hi: int | None = None,
        choices: Collection[int] | None = None,
    ) -> Any:
        value = self.obj.get(key)
        if value is None:
            if required:
                self.fail(f"{self._name(key)} is required")
            return default
        number = _to_int(value)
        if number is None:
            self.fail(f"{self._name(key)} must be an integer, got {value!r}")
        if choices is not None and number not in choices:
            self.fail(f"{self._name(key)} must be one of {', '.join(map(str, choices))}, got {number}")
        if (lo is not None and number < lo) or (hi is not None and number > hi):
            bounds = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
            self.fail(f"{self._name(key)} must be {bounds}, got {number}")
        return number

    # builtins.str and builtins.int: in this class body, `str` and `int` are these readers
    @overload
    def str(
        self, key: builtins.str, *, required: Literal[True], max_len: builtins.int | None = None
    ) -> builtins.str: ...
    @overload
    def str(
        self, key: builtins.str, *, required: bool = False, max_len: builtins.int | None = None
    ) -> builtins.str | None: ...
    def str(
        self, key: builtins.str, *, required: bool = False, max_len: builtins.int | None = None
    ) -> builtins.str | None:
        value = self.obj.get(key)
        if value is None or value == "":
            if required:
                self.fail(f"{self._name(key)} is required")
            return None
        if not isinstance(value, str):
            self.fail(f"{self._name(key)} must be a string, got {value!r}")
        if max_len is not None and len(value) > max_len:
            self.fail(f"{self._name(key)} is longer than {max_len} characters")
        return value

    def fraction(self, key: builtins.str) -> None:
        """Pane geometry: strings in the vendor's model; numbers accepted like a JSON binder would."""
        value = self.obj.get(key)
        if value is None:
            return
        try:
            number = float(value) if isinstance(value, (str, int, float)) and not isinstance(value, bool) else None
        except ValueError:
            number = None
        if number is None or math.isnan(number) or not 0 <= number <= 1:
            self.fail(f"{self._name(key)} must be a number between 0 and 1, got {value!r}")


def _to_int(value: Any) -> int | None:
    # JSON ints, or digit strings as a lenient JSON binder (the service's) would coerce them
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d{1,10}", value.strip()):
        return int(value)
    return None


def _is_http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _subscribers(obj: Any, mode: int, output: int, account: Account) -> tuple[Subscriber, ...]:
    params = _Object(obj, SUBSCRIBE, "SubscribeParams")
    entries = params.obj.get("SubscribeUserIdList")
    if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_SUBSCRIBERS:
        params.fail(f"SubscribeUserIdList must hold 1 to {MAX_SUBSCRIBERS} entries")
    subscribers: list[Subscriber] = []
    for i, item in enumerate(entries):
        entry = _Object(item, SUBSCRIBE, f"SubscribeUserIdList[{i}]")
        user_id = entry.obj.get("UserId")
        if not _valid_id(user_id, account):
            raise ApiError(
                "InvalidParameter.UserId",
                f"SubscribeUserIdList[{i}].UserId {user_id!r} is not a valid user id ({_id_rule(account)})",
            )
        stream = entry.int("StreamType", default=AV, choices=(AV, AUDIO, VIDEO))
        source = entry.int("SourceType", default=CAMERA, choices=(0, 1))
        # SourceType is invalid (ignored) for an audio-only stream
        subscriber = Subscriber(user_id, stream, CAMERA if stream == AUDIO else source)
        if subscriber in subscribers:
            entry.fail(
                f"SubscribeUserIdList[{i}] subscribes {user_id!r} with StreamType {stream} and SourceType "
                f"{subscriber.source_type} again: it is the same stream as SubscribeUserIdList"
                f"[{subscribers.index(subscriber)}], and a stream is subscribed once"
            )
        subscribers.append(subscriber)
    streams = {s.stream_type for s in subscribers}
    if mode == INDIVIDUAL:
        # also covers "audio-only output cannot subscribe video-only streams"
        if VIDEO in streams:
            params.fail("a video-only stream (StreamType 2) cannot be subscribed in individual mode")
        if output == VIDEO and AUDIO in streams:
            params.fail("a video-only recording cannot subscribe audio-only streams (StreamType 1)")
    else:
        if output == AUDIO and streams == {VIDEO}:
            params.fail("an audio-only recording cannot subscribe only video-only streams")
        if output == VIDEO and streams == {AUDIO}:
            params.fail("a video-only recording cannot subscribe only audio-only streams")
    return tuple(subscribers)


def _vod(obj: Any, account: Account) -> bool:
    if obj is None:
        raise ApiError(VOD_PARAMS, "StorageParams.VodParams is required for VOD storage")
    if account.region == "us-east-1":
        raise ApiError(VOD_PARAMS, "VOD storage is not available in us-east-1")
    vod = _Object(obj, VOD_PARAMS, "VodParams")
    auto_compose = vod.int("AutoCompose", default=0, choices=(0, 1))
    if auto_compose == 1 and not vod.str("ComposeVodTranscodeGroupId"):
        vod.fail("VodParams.ComposeVodTranscodeGroupId is required when AutoCompose is 1")
    vod.str("VodTranscodeGroupId")
    location = vod.str("StorageLocation")
    if location and (match := OSS_REGION_RE.search(location)) and match.group(1) != account.region:
        vod.fail(f"VodParams.StorageLocation {location!r} is not in region {account.region}")
    return auto_compose == 1


def _oss(obj: Any, account: Account) -> tuple[str, str]:
    if obj is None:
        raise ApiError(OSS_PARAMS, "StorageParams.OSSParams is required for OSS storage")
    oss = _Object(obj, OSS_PARAMS, "OSSParams")
    endpoint = oss.str("OSSEndpoint", required=True)
    bucket = oss.str("OSSBucket", required=True)
    region = account.region
    if endpoint not in (f"oss-{region}.aliyuncs.com", f"oss-{region}-internal.aliyuncs.com"):
        oss.fail(
            f"OSSParams.OSSEndpoint {endpoint!r} is not the OSS endpoint of region {region} "
            f"(oss-{region}.aliyuncs.com or oss-{region}-internal.aliyuncs.com)"
        )
    if not BUCKET_RE.match(bucket):
        oss.fail(f"OSSParams.OSSBucket {bucket!r} is not a valid bucket name")
    return endpoint, bucket


def _file_info(obj: Any, mode: int, subscribers: tuple[Subscriber, ...]) -> tuple[FileSpec, ...]:
    if obj is None:
        obj = []
    if not isinstance(obj, list):
        raise ApiError(FILE_INFO, "StorageParams.FileInfo must be an array")
    # one user's camera and screen (or AV and audio) must not write over each other's files
    needs_source = mode == INDIVIDUAL and any(n > 1 for n in Counter(s.user_id for s in subscribers).values())
    specs: list[FileSpec] = []
    for i, item in enumerate(obj):
        info = _Object(item, FILE_INFO, f"FileInfo[{i}]")
        fmt = info.str("Format", required=True)
        if fmt not in FORMAT_EXTENSIONS:
            info.fail(f"FileInfo[{i}].Format must be one of HLS, MP4, MP3, got {fmt!r}")
        if any(s.format == fmt for s in specs):
            info.fail(f"FileInfo[{i}] repeats format {fmt}")
        if fmt != "HLS":
            for key in ("SliceNamePattern", "SliceDuration"):
                if info.obj.get(key) is not None:
                    info.fail(f"FileInfo[{i}].{key} is only valid for the HLS format")
        slice_duration = info.int("SliceDuration", default=30, lo=10, hi=30)
        file_pattern = info.str("FileNamePattern")
        slice_pattern = info.str("SliceNamePattern")
        if file_pattern is not None:
            _pattern(info, f"FileInfo[{i}].FileNamePattern", file_pattern, FILE_VARS, mode, needs_source)
        if slice_pattern is not None:
            _pattern(info, f"FileInfo[{i}].SliceNamePattern", slice_pattern, SLICE_VARS, mode, needs_source)
        prefix = _path_prefix(info, i)
        specs.append(FileSpec(fmt, file_pattern, slice_pattern, prefix, slice_duration))
    if not any(s.format == "HLS" for s in specs):
        specs.append(FileSpec("HLS"))  # the service always writes HLS
    return tuple(specs)


def _pattern(info: _Object, name: str, pattern: str, allowed: frozenset[str], mode: int, needs_source: bool) -> None:
    used: list[str] = []
    for token in pattern.split("_"):
        var = token[1:-1] if token.startswith("{") and token.endswith("}") else None
        if var not in allowed:
            info.fail(
                f"{name} {pattern!r}: {token!r} is not a variable; the pattern is variables joined by '_' "
                f"from {{{'}, {'.join(sorted(allowed))}}}, each variable at most once"
            )
        if var in used:
            info.fail(f"{name} {pattern!r} uses {{{var}}} more than once: each variable at most once")
        used.append(var)
    required = {"StartTime"}
    if "Sequence" in allowed:
        required.add("Sequence")
    if mode == INDIVIDUAL:
        required.add("UserId")
    if needs_source:
        required.add("SourceType")
    missing = sorted(required - set(used))
    if missing:
        info.fail(f"{name} {pattern!r} must contain {', '.join('{' + v + '}' for v in missing)}")


def _path_prefix(info: _Object, i: int) -> tuple[str, ...]:
    value = info.obj.get("FilePathPrefix")
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_PREFIX_LEVELS:
        info.fail(f"FileInfo[{i}].FilePathPrefix must be an array of at most {MAX_PREFIX_LEVELS} names")
    for part in value:
        if not isinstance(part, str) or not PREFIX_RE.match(part):
            info.fail(f"FileInfo[{i}].FilePathPrefix element {part!r} must be letters, digits, '-' or '_'")
    if sum(len(p) for p in value) + len(value) > MAX_PREFIX_LENGTH:
        info.fail(f"FileInfo[{i}].FilePathPrefix is longer than {MAX_PREFIX_LENGTH} characters with slashes")
    return tuple(value)


def _transcode(obj: Any, mode: int, output: int) -> None:
    if mode == INDIVIDUAL:
        if obj is not None:
            raise ApiError(TRANSCODE, "MixTranscodeParams must not be set in individual mode")
        return
    if obj is None:
        raise ApiError(TRANSCODE, "MixTranscodeParams is required in mixed mode")
    params = _Object(obj, TRANSCODE, "MixTranscodeParams")
    params.int("AudioBitrate", required=True, lo=8, hi=500)
    params.int("AudioChannels", required=True, choices=(1, 2))
    params.int("AudioSampleRate", required=True, choices=SAMPLE_RATES)
    params.int("FrameFillType", default=0, choices=(0,))
    codec = params.str("VideoCodec")
    if codec is not None and codec not in ("H.264", "H.265"):
        params.fail(f"MixTranscodeParams.VideoCodec must be H.264 or H.265, got {codec!r}")
    has_video = output != AUDIO
    for key, lo, hi in (("VideoBitrate", 1, 10000), ("VideoFramerate", 1, 60), ("VideoGop", 1, 60)):
        params.int(key, required=has_video, lo=lo, hi=hi)
    for key in ("VideoWidth", "VideoHeight"):
        params.int(key, default=0, lo=0, hi=1920)


def _layout(obj: Any, mode: int, output: int, subscribers: tuple[Subscriber, ...]) -> None:
    if mode == INDIVIDUAL:
        if obj is not None:
            raise ApiError(LAYOUT, "MixLayoutParams must not be set in individual mode")
        return
    needed = output != AUDIO
    if obj is None:
        if needed:
            raise ApiError(LAYOUT, "MixLayoutParams is required in mixed mode unless the recording is audio-only")
        return
    layout = _Object(obj, LAYOUT, "MixLayoutParams")
    if layout.obj.get("MixBackground") is not None:
        _background(layout.obj["MixBackground"], "MixLayoutParams.MixBackground")
    panes = layout.obj.get("UserPanes")
    if panes is None:
        panes = []
    if not isinstance(panes, list):
        layout.fail("MixLayoutParams.UserPanes must be an array")
    if needed and not panes:
        layout.fail("MixLayoutParams.UserPanes is required unless the recording is audio-only")
    video_streams = {(s.user_id, s.source_type) for s in subscribers if s.stream_type != AUDIO}
    audio_users = {s.user_id for s in subscribers if s.stream_type == AUDIO}
    for i, item in enumerate(panes):
        pane = _Object(item, LAYOUT, f"UserPanes[{i}]")
        user_id = pane.str("UserId")
        source = pane.int("SourceType", default=CAMERA, choices=(0, 1))
        for key in ("Height", "Width", "X", "Y"):
            pane.fraction(key)
        pane.int("ZOrder", default=0, lo=0)
        if pane.obj.get("SubBackground") is not None:
            _background(pane.obj["SubBackground"], f"UserPanes[{i}].SubBackground")
        if user_id is not None and (user_id, source) not in video_streams:
            if user_id in audio_users:
                pane.fail(f"UserPanes[{i}]: {user_id!r} is subscribed audio-only, which has no place in a layout")
            pane.fail(f"UserPanes[{i}]: ({user_id!r}, SourceType {source}) is not in SubscribeUserIdList")


def _background(obj: Any, where: str) -> None:
    background = _Object(obj, LAYOUT, where)
    background.int("RenderMode", default=0, choices=(0, 1))
    url = background.str("Url", max_len=MAX_URL)
    if url is not None and not _is_http_url(url):
        background.fail(f"{where}.Url {url!r} is not an http(s) URL")


def _notify(
    raw: Mapping[str, Any], storage_type: int, files: tuple[FileSpec, ...]
) -> tuple[str | None, str | None, frozenset[str]]:
    url = raw.get("NotifyUrl")
    if url is not None and (not isinstance(url, str) or len(url) > MAX_URL or not _is_http_url(url)):
        raise ApiError(
            "InvalidParameter.NotifyUrl",
            f"NotifyUrl {str(url)[:80]!r} is not an http(s) URL of at most {MAX_URL} characters",
        )
    key = raw.get("NotifyAuthKey")
    if key is not None and (not isinstance(key, str) or not AUTH_KEY_RE.match(key)):
        raise ApiError("InvalidParameter.NotifyAuthKey", "NotifyAuthKey must be 16 to 64 letters and digits")
    requested = raw.get("NotifyFileUploadedFormat") or []
    if not isinstance(requested, list):
        raise ApiError(NOTIFY_FORMAT, "NotifyFileUploadedFormat must be an array")
    formats: set[str] = set()
    for value in requested:
        if not isinstance(value, str) or value.upper() not in NOTIFY_FORMATS:
            raise ApiError(NOTIFY_FORMAT, f"{value!r} is not one of SLICE, HLS, MP4, MP3")
        formats.add(value.upper())
    if formats and storage_type == VOD:
        raise ApiError(NOTIFY_FORMAT, "NotifyFileUploadedFormat is not supported with VOD storage")
    written = {s.format for s in files}
    notifiable = written | ({"SLICE"} if "HLS" in written else set())  # slices are HLS's
    if formats - notifiable:
        raise ApiError(
            NOTIFY_FORMAT,
            f"{', '.join(sorted(formats - notifiable))} not among the formats written (StorageParams.FileInfo)",
        )
    return url, key, frozenset(formats)
