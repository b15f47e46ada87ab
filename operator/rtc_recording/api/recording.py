"""The RtcRecording resource: a pydantic mirror of crds/rtcrecordings.yaml, and its translation
into the parameters of StartRtcCloudRecording and UpdateRtcCloudRecording.

The CRD is the first guard: the apiserver refuses bad input at apply time. This model is the
second, independent one, for objects that got past the first (a cluster with an older CRD,
validation ratcheting, direct etcd writes). Its rules and messages follow the CRD's CEL rules
one for one; tests/api checks that the two agree and runs the same corpus through both.

Pure: no Kubernetes client, no kopf, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator
from pydantic.alias_generators import to_camel

# The recording regions. The CRDs, the chart's values schema and aliyun.ENDPOINTS spell the same
# list (a unit test holds them to it); the emulator, the other side of the wire, has its own.
Region = Literal["cn-shanghai", "ap-southeast-1", "us-east-1"]
REGIONS: tuple[Region, ...] = get_args(Region)
Mode = Literal["Individual", "Mixed"]
Media = Literal["AudioVideo", "Audio", "Video"]
Source = Literal["Camera", "Screen"]
FileFormat = Literal["HLS", "MP4", "MP3"]
RenderMode = Literal["Crop", "Fit"]


class Phase(StrEnum):
    """status.phase. Which phase follows which is decided in decisions.py, and only there."""

    PENDING = "Pending"
    STARTING = "Starting"
    RECORDING = "Recording"
    RECOVERING = "Recovering"
    STOPPING = "Stopping"
    SUSPENDED = "Suspended"
    COMPLETED = "Completed"
    FAILED = "Failed"


TERMINAL = frozenset({Phase.COMPLETED, Phase.FAILED})
LIVE = frozenset({Phase.RECORDING, Phase.RECOVERING, Phase.STOPPING})
SETTLED = frozenset({Phase.SUSPENDED, *TERMINAL})  # no Start is pending, whatever status.attempt says
# Conditions that kstatus (Flux) and the Argo CD health script read (docs/gitops.md).
RECONCILING = frozenset({Phase.PENDING, Phase.STARTING, Phase.STOPPING, Phase.RECOVERING})
READY = frozenset({Phase.RECORDING, Phase.COMPLETED, Phase.SUSPENDED})


# The vendor's integer codes for our string enums (None, an unset optional field, has no code).
RECORD_MODE = {"Individual": 0, "Mixed": 1}
STREAM_TYPE = {"AudioVideo": 0, "Audio": 1, "Video": 2}
SOURCE_TYPE: dict[str | None, int] = {"Camera": 0, "Screen": 1}
RENDER_MODE: dict[str | None, int] = {"Crop": 0, "Fit": 1}
FRAME_FILL: dict[str | None, int] = {"LastFrame": 0}
STORAGE_TYPE_VOD, STORAGE_TYPE_OSS = 0, 1

_DNS_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_HTTP_URL = r"^https?://\S+$"
# spec.notify.url: the scheme in any case, no user information (the operator may relay to it).
_NOTIFY_URL = r"^[hH][tT][tT][pP][sS]?://[^/?#@\s]+([/?#]\S*)?$"
# The CRD's CEL regexes, written without backslashes so that CEL and Python read them alike.
_FRACTION = re.compile(r"^(0*[.][0-9]+|0+([.][0-9]*)?|0*1([.]0*)?)$")
_DIRECTORY = re.compile(r"^[A-Za-z0-9_-]+$")
_OSS_REGION_ENDPOINT = re.compile(rf"^oss-({'|'.join(REGIONS)})(-internal)?[.]aliyuncs[.]com$")
_REGION_NAMES = f"{', '.join(REGIONS[:-1])} or {REGIONS[-1]}"  # "cn-shanghai, ap-southeast-1 or us-east-1"
_NAME_VARIABLES = ("{AppId}", "{ChannelId}", "{UserId}", "{RecordMode}", "{SourceType}", "{StreamType}", "{StartTime}")
_SLICE_VARIABLES = (*_NAME_VARIABLES, "{Sequence}")
UPLOAD_FORMATS = ("SLICE", "HLS", "MP4", "MP3")


def _one_rule(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _first(messages) -> str:
    """The CRD's messageExpressions name the first offending element: list.map(...).filter(m, m != '')[0]."""
    return next(m for m in messages if m)


def _human(variables: tuple[str, ...]) -> str:
    return ", ".join(variables[:-1]) + " and " + variables[-1]


def _name_rules(*required: str, variables: tuple[str, ...], what: str):
    """fileNamePattern and sliceNamePattern: the CRD's three rules, every failing one reported."""

    def check(pattern: str) -> str:
        tokens = pattern.split("_")
        problems = []
        if not all(t in variables for t in tokens):
            problems.append(
                _first(
                    ""
                    if t in variables
                    else f'"{t}" is not a variable: a {what} is variables joined by "_", with no '
                    f"other text, from {_human(variables)}, each variable at most once"
                    for t in tokens
                )
            )
        if not all(pattern.find(v) == pattern.rfind(v) for v in variables):
            problems.append(
                _first(
                    ""
                    if pattern.find(v) == pattern.rfind(v)
                    else f"{v} appears more than once: each variable may appear at most once"
                    for v in variables
                )
            )
        if not all(v in pattern for v in required):
            problems.append(
                f"must contain {' and '.join(required)} (the page requires "
                f"{'both' if len(required) > 1 else 'it'} in a pattern of one's own)"
            )
        _one_rule(not problems, "; ".join(problems))
        return pattern

    return AfterValidator(check)


def _matching(regex: re.Pattern, message: str):
    def check(value: str) -> str:
        _one_rule(bool(regex.fullmatch(value)), message)
        return value

    return AfterValidator(check)


def _oss_endpoint_rule(endpoint: str) -> str:
    _one_rule(
        bool(_OSS_REGION_ENDPOINT.fullmatch(endpoint)),
        f"{endpoint} is not the OSS endpoint of a recording region: use oss-<region>.aliyuncs.com or "
        f"oss-<region>-internal.aliyuncs.com (region {_REGION_NAMES}), without scheme; "
        "the region of the endpoint must match the recording region, and a custom domain (CNAME) names no region",
    )
    return endpoint


def _upload_format_rule(value: str) -> str:
    _one_rule(value.upper() in UPLOAD_FORMATS, "must be SLICE, HLS, MP4 or MP3, in any case")
    return value


def _upload_formats_once(formats: list[str]) -> list[str]:
    upper = [f.upper() for f in formats]
    twice = [u for u in upper if upper.count(u) > 1]
    if twice:
        raise ValueError(f"{twice[0]} is named more than once (formats are case-insensitive)")
    return formats


def _joined_path_rule(dirs: list[str]) -> list[str]:
    _one_rule(
        sum(map(len, dirs)) + len(dirs) <= 128,
        "the joined path (directories plus one slash each) must be at most 128 characters",
    )
    return dirs


def _unique(key):
    """A list-type map or set: the apiserver (server-side apply) refuses duplicate keys."""

    def check(items: list) -> list:
        keys = [key(item) for item in items]
        for k in keys:
            _one_rule(keys.count(k) == 1, f"duplicate entries for key [{k}]")
        return items

    return AfterValidator(check)


def _subscribed_once(subscribers: list[Subscriber]) -> list[Subscriber]:
    """The CRD's rule on spec.subscribers (an atomic list: the rule, not a map key, says why)."""
    keys = [(s.user_id, s.media, s.source) for s in subscribers]
    twice = [k for k in keys if keys.count(k) > 1]
    if twice:
        user, media, source = twice[0]
        raise ValueError(
            f"{user} is subscribed twice with media {media} and source {source}: the second entry is the same stream, "
            "so it would record nothing new (in Individual mode it would write the same files); remove it, or change "
            "its media or source to record another of the user's streams"
        )
    return subscribers


Id = Annotated[str, StringConstraints(min_length=1, max_length=64)]
DnsName = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=_DNS_NAME)]
HttpUrl = Annotated[str, StringConstraints(max_length=2048, pattern=_HTTP_URL)]
NotifyUrl = Annotated[str, StringConstraints(max_length=2048, pattern=_NOTIFY_URL)]
Fraction = Annotated[
    str,
    StringConstraints(max_length=32),
    _matching(
        _FRACTION, 'must be a decimal number from 0 to 1 written as a string, e.g. "0", "0.5", ".5", "0.3333333" or "1"'
    ),
]
Directory = Annotated[
    str,
    StringConstraints(min_length=1, max_length=127),
    _matching(
        _DIRECTORY,
        'a directory name may contain only letters (a-z, A-Z), digits, "-" and "_": '
        'no "/", "." or spaces (give each level as its own element)',
    ),
]
# 79 and 90: the longest valid patterns (every variable once).
FileNamePattern = Annotated[
    str,
    StringConstraints(max_length=79),
    _name_rules("{StartTime}", variables=_NAME_VARIABLES, what="file name pattern"),
]
SliceNamePattern = Annotated[
    str,
    StringConstraints(max_length=90),
    _name_rules("{StartTime}", "{Sequence}", variables=_SLICE_VARIABLES, what="slice name pattern"),
]
OssEndpoint = Annotated[str, StringConstraints(min_length=1, max_length=253), AfterValidator(_oss_endpoint_rule)]
UploadFormat = Annotated[str, StringConstraints(max_length=16), AfterValidator(_upload_format_rule)]

IMMUTABLE = "is immutable: create a new RtcRecording to record with different settings"


class InvalidSpec(ValueError):
    """The spec cannot be recorded as it is; the message names the field(s)."""


class _Spec(BaseModel):
    # strict: "30" is not 30 for the apiserver either; extra=forbid: unknown fields fail as they do there.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", strict=True, frozen=True)


class SecretRef(_Spec):
    name: DnsName


class SecretKeyRef(_Spec):
    name: DnsName
    key: Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")]


class Subscriber(_Spec):
    user_id: Id
    media: Media = "AudioVideo"
    source: Source = "Camera"

    @model_validator(mode="after")
    def _source_needs_video(self) -> Subscriber:
        _one_rule(
            self.media != "Audio" or self.source == "Camera",
            "source Screen has no effect on an Audio subscriber: the service ignores SourceType for an "
            "audio-only stream; leave source unset (Camera), or subscribe the screen with media AudioVideo "
            "or Video",
        )
        return self


class OssStorage(_Spec):
    endpoint: OssEndpoint
    bucket: Annotated[str, StringConstraints(min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9-]*[a-z0-9]$")]


class VodStorage(_Spec):
    storage_location: DnsName | None = None
    transcode_group_id: Id | None = None
    auto_compose: bool = False
    compose_transcode_group_id: Id | None = None

    @model_validator(mode="after")
    def _compose_needs_group(self) -> VodStorage:
        _one_rule(
            not self.auto_compose or self.compose_transcode_group_id is not None,
            "spec.storage.vod.composeTranscodeGroupId is required when spec.storage.vod.autoCompose is true",
        )
        return self


class FileSpec(_Spec):
    format: FileFormat
    file_name_pattern: FileNamePattern | None = None
    slice_name_pattern: SliceNamePattern | None = None
    path_prefix: Annotated[list[Directory], Field(max_length=5), AfterValidator(_joined_path_rule)] | None = None
    slice_duration_seconds: Annotated[int, Field(ge=10, le=30)] | None = None

    @model_validator(mode="after")
    def _hls_only(self) -> FileSpec:
        problems = []
        if self.format != "HLS" and self.slice_name_pattern is not None:
            problems.append("sliceNamePattern is only valid for format HLS: only HLS is cut into .ts slices")
        if self.format != "HLS" and self.slice_duration_seconds is not None:
            problems.append("sliceDurationSeconds is only valid for format HLS: only HLS is cut into .ts slices")
        _one_rule(not problems, "; ".join(problems))
        return self

    def patterns(self) -> list[str]:
        return [p for p in (self.file_name_pattern, self.slice_name_pattern) if p is not None]


class Storage(_Spec):
    oss: OssStorage | None = None
    vod: VodStorage | None = None
    files: Annotated[list[FileSpec], Field(max_length=3), _unique(lambda f: f'format="{f.format}"')] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Storage:
        problems = []
        if (self.oss is None) == (self.vod is None):
            problems.append("spec.storage must set exactly one of oss or vod")
        if self.files is not None and self.oss is None:
            problems.append("spec.storage.files is only valid with spec.storage.oss (VOD chooses its own files)")
        _one_rule(not problems, "; ".join(problems))
        return self


class Transcode(_Spec):
    frame_fill: Literal["LastFrame"] | None = None
    audio_bitrate_kbps: Annotated[int, Field(ge=8, le=500)]
    audio_channels: Literal[1, 2]
    audio_sample_rate_hz: Literal[8000, 16000, 32000, 44100, 48000]
    video_codec: Literal["H.264", "H.265"] | None = None
    video_bitrate_kbps: Annotated[int, Field(ge=1, le=10000)] | None = None
    video_framerate: Annotated[int, Field(ge=1, le=60)] | None = None
    video_gop: Annotated[int, Field(ge=1, le=60)] | None = None
    video_width: Annotated[int, Field(ge=0, le=1920)] | None = None
    video_height: Annotated[int, Field(ge=0, le=1920)] | None = None


class Background(_Spec):
    url: HttpUrl | None = None
    render_mode: RenderMode | None = None


class Pane(_Spec):
    user_id: Id | None = None
    source: Source | None = None
    left: Fraction | None = None
    top: Fraction | None = None
    width: Fraction | None = None
    height: Fraction | None = None
    z_order: Annotated[int, Field(ge=0)] | None = None
    background: Background | None = None

    @model_validator(mode="after")
    def _source_needs_user(self) -> Pane:
        _one_rule(
            self.user_id is not None or self.source is None,
            "source has no effect without userId: the service fills a pane without userId with subscribers in "
            "join order and ignores its SourceType; set userId too, or remove source",
        )
        return self


class Layout(_Spec):
    background: Background | None = None
    # 1000: not the vendor's (it sets none), the CRD's bound on the cost of its panes rule.
    panes: Annotated[list[Pane], Field(min_length=1, max_length=1000)] | None = None


class Notify(_Spec):
    url: NotifyUrl | None = None
    auth_key_secret_ref: SecretKeyRef | None = None
    file_uploaded_formats: (
        Annotated[
            list[UploadFormat], Field(max_length=4), _unique(lambda f: f'"{f}"'), AfterValidator(_upload_formats_once)
        ]
        | None
    ) = None

    @model_validator(mode="after")
    def _key_needs_url(self) -> Notify:
        _one_rule(
            self.auth_key_secret_ref is None or self.url is not None,
            "spec.notify.authKeySecretRef is only valid together with spec.notify.url",
        )
        return self


class RtcRecordingSpec(_Spec):
    """spec of an RtcRecording; see `kubectl explain rtcrec.spec` for every field.

    With recording_class_name set, this is the resource as applied (the class fills the rest:
    classes.py); the effective spec is the merge without recording_class_name, validated by this
    same model with every rule in force."""

    recording_class_name: DnsName | None = None
    app_id: Id
    channel_id: Id
    region: Region | None = None
    credentials_secret_ref: SecretRef | None = None
    mode: Mode
    media: Media = "AudioVideo"
    max_file_duration_seconds: Annotated[int, Field(ge=180, le=7200)] | None = None
    max_idle_seconds: Annotated[int, Field(ge=10, le=14400)] | None = None
    subscribers: Annotated[list[Subscriber], Field(min_length=1, max_length=17), AfterValidator(_subscribed_once)]
    storage: Storage | None = None
    transcode: Transcode | None = None
    layout: Layout | None = None
    notify: Notify | None = None
    # Lifecycle controls: the operator's own, never sent to the cloud.
    suspend: bool = False
    max_duration_seconds: Annotated[int, Field(ge=60, le=259200)] | None = None
    deletion_policy: Literal["Stop", "Orphan"] = "Stop"
    ttl_seconds_after_finished: Annotated[int, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _cross_field(self) -> RtcRecordingSpec:
        problems = _violations(self)
        _one_rule(not problems, "; ".join(problems))
        return self


def spec_errors(error: ValidationError) -> str:
    """A ValidationError of RtcRecordingSpec as "spec.a.b[0].c: message" lines, as the apiserver words them."""

    def path(loc) -> str:
        return "spec" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)

    return "\n".join(f"{path(e['loc'])}: {e['msg'].removeprefix('Value error, ')}" for e in error.errors())


def _violations(spec: RtcRecordingSpec) -> list[str]:
    """The CRD's spec-level CEL rules, in the same order and words (a messageExpression's words when it has one)."""
    mixed, individual = spec.mode == "Mixed", spec.mode == "Individual"
    video_out = spec.media != "Audio"
    t, layout, notify = spec.transcode, spec.layout, spec.notify
    subscribers = spec.subscribers
    classed = spec.recording_class_name is not None  # the class may fill what is missing: checked when merged
    storage = spec.storage or Storage.model_construct(oss=None, vod=None, files=None)
    files = storage.files or []
    medias = [s.media for s in subscribers]
    formats = [x.upper() for x in (notify.file_uploaded_formats or [])] if notify else []
    panes = (layout.panes if layout else None) or []
    rules: list[tuple[bool, Callable[[], str]]] = [
        # mode-specific parts
        (mixed or t is None, lambda: "spec.transcode is only valid when spec.mode is Mixed"),
        (mixed or layout is None, lambda: "spec.layout is only valid when spec.mode is Mixed"),
        (
            spec.storage is not None or classed,
            lambda: "spec.storage is required, unless spec.recordingClassName names a class that sets it",
        ),
        (not mixed or t is not None or classed, lambda: "spec.transcode is required when spec.mode is Mixed"),
        *[
            (
                not mixed or not video_out or t is None or getattr(t, attr) is not None or classed,
                lambda attr=attr: f"spec.transcode.{to_camel(attr)} is required when spec.media has video",
            )
            for attr in ("video_bitrate_kbps", "video_framerate", "video_gop")
        ],
        (
            t is None or video_out or (t.video_bitrate_kbps, t.video_framerate, t.video_gop) == (None, None, None),
            lambda: (
                "spec.transcode.videoBitrateKbps, videoFramerate and videoGop have no effect when spec.media is "
                "Audio: the page calls them invalid without video output (the service ignores them); remove them"
            ),
        ),
        (
            not mixed or not video_out or (layout is not None and layout.panes is not None),
            lambda: "spec.layout.panes is required when spec.mode is Mixed and spec.media has video",
        ),
        # subscribers against the mode and media
        (
            mixed or "Video" not in medias,
            lambda: _first(
                ""
                if s.media != "Video"
                else f"subscriber {s.user_id} has media Video, which is only valid when "
                "spec.mode is Mixed: Individual mode cannot record a video-only stream"
                for s in subscribers
            ),
        ),
        (
            not individual or spec.media != "Video" or "Audio" not in medias,
            lambda: _first(
                ""
                if s.media != "Audio"
                else f"subscriber {s.user_id} has media Audio, which is not valid when spec.mode "
                "is Individual and spec.media is Video: a video-only recording of an audio-only stream"
                for s in subscribers
            ),
        ),
        (
            not mixed or spec.media != "Audio" or any(m != "Video" for m in medias),
            lambda: (
                "spec.subscribers[*].media: not all subscribers may be Video when spec.mode is Mixed and spec.media "
                "is Audio"
            ),
        ),
        (
            not mixed or spec.media != "Video" or any(m != "Audio" for m in medias),
            lambda: (
                "spec.subscribers[*].media: not all subscribers may be Audio when spec.mode is Mixed and spec.media "
                "is Video"
            ),
        ),
        # file and slice names against the mode and subscribers ({UserId} and {SourceType} are literal in Mixed)
        (
            not individual or all(_names_have(f, "{UserId}") for f in files),
            lambda: _first(
                ""
                if _names_have(f, "{UserId}")
                else f"the {f.format} entry: fileNamePattern and sliceNamePattern must "
                "contain {UserId} when spec.mode is Individual, or the subscribers would write the same files"
                for f in files
            ),
        ),
        (
            not individual
            or not files
            or all(_once(s, subscribers) for s in subscribers)
            or all(_names_have(f, "{SourceType}") for f in files),
            lambda: _first(
                ""
                if _once(s, subscribers)
                else f"subscriber {s.user_id} is subscribed more than once, so with spec.mode "
                "Individual every fileNamePattern and sliceNamePattern must contain {SourceType}, or "
                f"{s.user_id}'s recordings would overwrite each other"
                for s in subscribers
            ),
        ),
        # storage against the region
        *_region_rules(spec, spec.region),
        # callbacks against storage
        (
            notify is None or notify.file_uploaded_formats is None or storage.vod is None,
            lambda: "spec.notify.fileUploadedFormats is not supported with spec.storage.vod",
        ),
        # HLS (and so SLICE) is always recorded to OSS: the service adds a default HLS entry. (An unknown
        # format has its own message.)
        (
            storage.oss is None or classed or all(_recorded(x, files) for x in formats),
            lambda: _first(
                ""
                if _recorded(x, files)
                else f"{x} is not recorded: spec.notify.fileUploadedFormats may name MP4 or MP3 "
                "only when spec.storage.files has that format"
                for x in formats
            ),
        ),
        # layout against subscribers
        (
            all(_shows(p, subscribers) for p in panes),
            lambda: _first(
                ""
                if _shows(p, subscribers)
                else f"the pane of {p.user_id} (source {p.source or 'Camera'}) shows nothing: "
                "spec.subscribers has no such (userId, source) with video "
                "(media AudioVideo or Video; Audio has no video to show)"
                for p in panes
            ),
        ),
    ]
    return [message() for ok, message in rules if not ok]


def _names_have(f: FileSpec, variable: str) -> bool:
    return all(variable in p for p in f.patterns())


def _once(s: Subscriber, subscribers: list[Subscriber]) -> bool:
    return sum(o.user_id == s.user_id for o in subscribers) == 1


def _recorded(upload_format: str, files: list[FileSpec]) -> bool:
    return upload_format not in ("MP4", "MP3") or any(f.format == upload_format for f in files)


def _shows(p: Pane, subscribers: list[Subscriber]) -> bool:
    return p.user_id is None or any(
        s.media != "Audio" and s.source == (p.source or "Camera") and s.user_id == p.user_id for s in subscribers
    )


_OSS_ENDPOINT = re.compile(r"^oss-[a-z0-9-]+[.]aliyuncs[.]com$")
_OSS_HOSTED = re.compile(r"[.]oss-[a-z0-9-]+[.]aliyuncs[.]com$")


def _region_rules(spec: RtcRecordingSpec, region: str | None) -> list[tuple[bool, Callable[[], str]]]:
    if region is None:  # the operator's default applies: checked by start_params
        return []
    if spec.storage is None:
        return []
    vod = spec.storage.vod
    endpoint = spec.storage.oss.endpoint if spec.storage.oss else None
    location = vod.storage_location if vod else None
    return [
        (
            vod is None or region != "us-east-1",
            lambda: "spec.storage.vod is not offered in region us-east-1: use spec.storage.oss",
        ),
        # A malformed endpoint has its own message (spec.storage.oss.endpoint).
        (
            endpoint is None
            or not _OSS_ENDPOINT.fullmatch(endpoint)
            or endpoint in (f"oss-{region}.aliyuncs.com", f"oss-{region}-internal.aliyuncs.com"),
            lambda: (
                f"spec.storage.oss.endpoint must be in spec.region ({region}): use oss-{region}.aliyuncs.com or "
                f"oss-{region}-internal.aliyuncs.com, not {endpoint}"
            ),
        ),
        (
            location is None or not _OSS_HOSTED.search(location) or location.endswith(f".oss-{region}.aliyuncs.com"),
            lambda: (
                f"spec.storage.vod.storageLocation must be in spec.region ({region}): ...oss-{region}.aliyuncs.com, "
                f"not {location}"
            ),
        ),
    ]


_IMMUTABLE_FIELDS = (
    "recording_class_name",
    "app_id",
    "channel_id",
    "region",
    "credentials_secret_ref",
    "mode",
    "media",
    "max_file_duration_seconds",
    "max_idle_seconds",
    "storage",
    "transcode",
    "notify",
)


def immutable_changes(old: RtcRecordingSpec, new: RtcRecordingSpec) -> list[str]:
    """The CRD's transition rules: what changed that a running task cannot take (all but subscribers, layout)."""
    return [
        f"spec.{to_camel(name)} {IMMUTABLE}" for name in _IMMUTABLE_FIELDS if getattr(old, name) != getattr(new, name)
    ]


# -- the vendor's parameters -------------------------------------------------------------------

_NOTIFY_AUTH_KEY = re.compile(r"^[A-Za-z0-9]{16,64}$")


def _compact(d: dict[str, Any]) -> dict[str, Any]:
    """Drop unset optional parameters: the service applies its defaults to absent ones only."""
    return {k: v for k, v in d.items() if v is not None}


def _subscribe_params(spec: RtcRecordingSpec) -> dict[str, Any]:
    return {
        "SubscribeUserIdList": [
            _compact(
                {
                    "UserId": s.user_id,
                    "StreamType": STREAM_TYPE[s.media],
                    # SourceType is only valid for a stream with video.
                    "SourceType": SOURCE_TYPE[s.source] if s.media != "Audio" else None,
                }
            )
            for s in spec.subscribers
        ]
    }


def _background(b: Background | None) -> dict[str, Any] | None:
    if b is None:
        return None
    return _compact({"RenderMode": RENDER_MODE.get(b.render_mode), "Url": b.url})


def _layout_params(layout: Layout) -> dict[str, Any]:
    panes = None
    if layout.panes is not None:
        panes = [
            _compact(
                {
                    "UserId": p.user_id,
                    "SourceType": SOURCE_TYPE.get(p.source),
                    "Height": p.height,
                    "Width": p.width,
                    "X": p.left,
                    "Y": p.top,
                    "ZOrder": p.z_order,
                    "SubBackground": _background(p.background),
                }
            )
            for p in layout.panes
        ]
    return _compact({"MixBackground": _background(layout.background), "UserPanes": panes})


def _storage_params(storage: Storage) -> dict[str, Any]:
    if storage.vod is not None:
        v = storage.vod
        return {
            "StorageType": STORAGE_TYPE_VOD,
            "VodParams": _compact(
                {
                    "StorageLocation": v.storage_location,
                    "VodTranscodeGroupId": v.transcode_group_id,
                    "AutoCompose": int(v.auto_compose),
                    "ComposeVodTranscodeGroupId": v.compose_transcode_group_id,
                }
            ),
        }
    if storage.oss is None:  # not after Storage's validator: exactly one of oss and vod
        raise InvalidSpec("spec.storage must set exactly one of oss or vod")
    params: dict[str, Any] = {
        "StorageType": STORAGE_TYPE_OSS,
        "OSSParams": {"OSSEndpoint": storage.oss.endpoint, "OSSBucket": storage.oss.bucket},
    }
    if storage.files is not None:
        params["FileInfo"] = [
            _compact(
                {
                    "Format": f.format,
                    "FileNamePattern": f.file_name_pattern,
                    "SliceNamePattern": f.slice_name_pattern,
                    "FilePathPrefix": f.path_prefix or None,
                    "SliceDuration": f.slice_duration_seconds,
                }
            )
            for f in storage.files
        ]
    return params


def _transcode_params(t: Transcode) -> dict[str, Any]:
    return _compact(
        {
            "FrameFillType": FRAME_FILL.get(t.frame_fill),
            "AudioBitrate": t.audio_bitrate_kbps,
            "AudioChannels": t.audio_channels,
            "AudioSampleRate": t.audio_sample_rate_hz,
            "VideoCodec": t.video_codec,
            "VideoBitrate": t.video_bitrate_kbps,
            "VideoFramerate": t.video_framerate,
            "VideoGop": t.video_gop,
            "VideoWidth": t.video_width,
            "VideoHeight": t.video_height,
        }
    )


def start_params(
    spec: RtcRecordingSpec, *, region_default: str, notify_url: str | None, notify_auth_key: str | None
) -> dict[str, Any]:
    """The parameters of StartRtcCloudRecording (vendor names and codes, objects not yet serialised).

    `notify_url` is where the operator wants the callbacks (its receiver); without one,
    spec.notify.url is used. `notify_auth_key` is the resolved value of
    spec.notify.authKeySecretRef (or the operator's own key); it is sent only with a NotifyUrl,
    since the service ignores it otherwise. Raises InvalidSpec for what only the runtime can
    check: rules that depend on the operator's default region, and the key's format.
    """
    if spec.storage is None or spec.recording_class_name is not None:
        raise InvalidSpec("spec.storage: Required value: start_params takes an effective spec (classes.effective_spec)")
    region = spec.region or region_default
    problems = [message() for ok, message in _region_rules(spec, region) if not ok]
    if problems and not spec.region:
        problems = [f"with the operator's default region {region}: " + "; ".join(problems)]
    if notify_auth_key is not None and not _NOTIFY_AUTH_KEY.match(notify_auth_key):
        problems.append(
            "NotifyAuthKey (the value of spec.notify.authKeySecretRef, or the operator's own callback "
            "key) must be 16 to 64 letters and digits"
        )
    if problems:
        raise InvalidSpec("; ".join(problems))

    url = notify_url or (spec.notify.url if spec.notify else None)
    return _compact(
        {
            "AppId": spec.app_id,
            "ChannelId": spec.channel_id,
            "SubscribeParams": _subscribe_params(spec),
            "RecordParams": _compact(
                {
                    "RecordMode": RECORD_MODE[spec.mode],
                    "StreamType": STREAM_TYPE[spec.media],
                    "MaxFileDuration": spec.max_file_duration_seconds,
                }
            ),
            "StorageParams": _storage_params(spec.storage),
            "MixTranscodeParams": _transcode_params(spec.transcode) if spec.transcode else None,
            "MixLayoutParams": _layout_params(spec.layout) if spec.layout else None,
            "NotifyUrl": url,
            "NotifyAuthKey": notify_auth_key if url else None,
            # case-insensitive for the service (the page); sent upper-cased, as the operator adds SLICE so
            "NotifyFileUploadedFormat": list(dict.fromkeys(x.upper() for x in spec.notify.file_uploaded_formats))
            if spec.notify and spec.notify.file_uploaded_formats
            else None,
            "MaxIdleTime": spec.max_idle_seconds,
        }
    )


def update_params(spec: RtcRecordingSpec) -> dict[str, Any]:
    """The parameters of UpdateRtcCloudRecording besides TaskId: the mutable part of the spec."""
    return _compact(
        {
            "SubscribeParams": _subscribe_params(spec),
            "MixLayoutParams": _layout_params(spec.layout) if spec.layout else None,
        }
    )


# -- status ------------------------------------------------------------------------------------


class _Status(BaseModel):
    # Tolerant: status is ours to write, but an older or newer operator may have written it.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


class Attempt(_Status):
    number: int
    started_at: datetime | None = None
    generation: int | None = None
    not_executed: bool | None = None


class VodMedia(_Status):
    """One subscribed stream recorded to VOD, as the service lists it (`stream` is `Mix` or
    `Single::<UserId>::<Suffix>`) and as status.files.vod keeps it."""

    media_ids: list[str] = []
    merged_ids: list[str] = []
    stream: str | None = None


class Files(_Status):
    hls: list[str] = []
    mp4: list[str] = []
    mp3: list[str] = []
    vod: list[VodMedia] = []


class Condition(_Status):
    type: str
    status: Literal["True", "False", "Unknown"]
    observed_generation: int | None = None
    last_transition_time: datetime
    reason: str
    message: str = ""


class HistoryEntry(_Status):
    task_id: str
    start_time: datetime | None = None
    end_time: datetime | None = None
    reason: str | None = None
    files: dict[str, Any] | None = None


class PendingEvent(_Status):
    """The Event of the last transition, until it is posted (a crash in between is repaired)."""

    key: str
    type: str
    reason: str
    message: str = ""


class ClassSecretRef(_Status):
    namespace: str | None = None
    name: str | None = None


class RecordingClassPin(_Status):
    """status.recordingClass: the class generation the current task was started from (classes.py)."""

    name: str | None = None
    generation: int | None = None
    credentials_secret_ref: ClassSecretRef | None = None
    defaults: dict[str, Any] | None = None


class RtcRecordingStatus(_Status):
    phase: Phase | None = None
    reason: str | None = None
    message: str | None = None
    task_id: str | None = None
    task_seal: str | None = None
    start_time: datetime | None = None
    completion_time: datetime | None = None
    observed_generation: int | None = None
    recording_class: RecordingClassPin | None = None
    attempt: Attempt | None = None
    stray_tasks: int | None = None
    stray_task_ids: list[str] = []
    history: list[HistoryEntry] = []
    pending_event: PendingEvent | None = None
    files: Files | None = None
    conditions: list[Condition] = []
    kopf: dict[str, Any] | None = None


def status_of(obj: dict) -> RtcRecordingStatus:
    """The status of an RtcRecording object as read from the API (none yet: an empty one)."""
    return RtcRecordingStatus.model_validate(obj.get("status") or {})
