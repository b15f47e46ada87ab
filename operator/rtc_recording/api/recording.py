"""The RtcRecording resource: a pydantic mirror of crds/rtcrecordings.yaml, and its translation
into the parameters of StartRtcCloudRecording and UpdateRtcCloudRecording.

The CRD is the first guard: the apiserver refuses bad input at apply time. This model is the
second, independent one, for objects that got past the first (a cluster with an older CRD,
validation ratcheting, direct etcd writes). Its rules and messages follow the CRD's CEL rules
one for one; tests/api checks that the two agree and runs the same corpus through both.

Pure: no Kubernetes client, no kopf, no I/O.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from rtc_recording.api.fields import (
    Directory,
    DnsLabel,
    DnsName,
    FileNamePattern,
    Fraction,
    HttpUrl,
    Id,
    NotifyUrl,
    OssEndpoint,
    Region,
    SliceNamePattern,
    UploadFormat,
    joined_path_rule,
    one_rule,
    subscribed_once,
    unique,
    upload_formats_once,
)

Mode = Literal["Individual", "Mixed"]
# The spec fields an RtcRecordingClass sets (decide/classes.py): what spec.dropClassDefaults may name.
ClassDefault = Literal[
    "region",
    "maxIdleSeconds",
    "maxFileDurationSeconds",
    "maxDurationSeconds",
    "storage",
    "transcode",
    "layout",
    "notify",
]
Media = Literal["AudioVideo", "Audio", "Video"]
Source = Literal["Camera", "Screen"]
FileFormat = Literal["HLS", "MP4", "MP3"]
RenderMode = Literal["Crop", "Fit"]
LayoutPreset = Literal["Grid", "Speaker", "ScreenShare"]
LARGE_PRESETS = ("Speaker", "ScreenShare")  # the presets that show spec.layout.largeUserId large


class Phase(StrEnum):
    """status.phase. Which phase follows which is decided in decide/actions.py, and only there."""

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


START_DEADLINE_SECONDS = 900  # spec.startDeadlineSeconds unset: a meeting booked ahead
BACKOFF_LIMIT = 6  # spec.backoffLimit unset, as a Job's


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
        one_rule(
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
        one_rule(
            not self.auto_compose or self.compose_transcode_group_id is not None,
            "spec.storage.vod.composeTranscodeGroupId is required when spec.storage.vod.autoCompose is true",
        )
        return self


class FileSpec(_Spec):
    format: FileFormat
    file_name_pattern: FileNamePattern | None = None
    slice_name_pattern: SliceNamePattern | None = None
    path_prefix: Annotated[list[Directory], Field(max_length=5), AfterValidator(joined_path_rule)] | None = None
    slice_duration_seconds: Annotated[int, Field(ge=10, le=30)] | None = None

    @model_validator(mode="after")
    def _hls_only(self) -> FileSpec:
        problems = []
        if self.format != "HLS" and self.slice_name_pattern is not None:
            problems.append("sliceNamePattern is only valid for format HLS: only HLS is cut into .ts slices")
        if self.format != "HLS" and self.slice_duration_seconds is not None:
            problems.append("sliceDurationSeconds is only valid for format HLS: only HLS is cut into .ts slices")
        one_rule(not problems, "; ".join(problems))
        return self

    def patterns(self) -> list[str]:
        return [p for p in (self.file_name_pattern, self.slice_name_pattern) if p is not None]


class Storage(_Spec):
    """oss or vod, and files with oss: spec-level rules (api/rules.py), since a class may fill in oss."""

    oss: OssStorage | None = None
    vod: VodStorage | None = None
    files: Annotated[list[FileSpec], Field(max_length=3), unique(lambda f: f'format="{f.format}"')] | None = None


class Transcode(_Spec):
    """The audio settings are required by a spec-level rule (api/rules.py), since a class may fill them in."""

    frame_fill: Literal["LastFrame"] | None = None
    audio_bitrate_kbps: Annotated[int, Field(ge=8, le=500)] | None = None
    audio_channels: Literal[1, 2] | None = None
    audio_sample_rate_hz: Literal[8000, 16000, 32000, 44100, 48000] | None = None
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
        one_rule(
            self.user_id is not None or self.source is None,
            "source has no effect without userId: the service fills a pane without userId with subscribers in "
            "join order and ignores its SourceType; set userId too, or remove source",
        )
        return self


class Layout(_Spec):
    background: Background | None = None
    preset: LayoutPreset | None = None  # the panes computed from the subscribers: decide/presets.py
    large_user_id: Id | None = None
    # 1000: not the vendor's (it sets none), the CRD's bound on the cost of its panes rule.
    panes: Annotated[list[Pane], Field(min_length=1, max_length=1000)] | None = None

    @model_validator(mode="after")
    def _preset_or_panes(self) -> Layout:
        problems = []
        if self.preset is not None and self.panes is not None:
            problems.append(
                "spec.layout.preset and spec.layout.panes are mutually exclusive: the preset computes the panes "
                "from spec.subscribers; remove panes to use the preset, or preset to place the panes yourself"
            )
        if self.preset in LARGE_PRESETS and self.large_user_id is None:
            problems.append(
                "spec.layout.largeUserId is required with preset Speaker or ScreenShare: it names the user shown large"
            )
        if self.preset not in LARGE_PRESETS and self.large_user_id is not None:
            problems.append(
                "spec.layout.largeUserId has no effect without preset Speaker or ScreenShare (Grid shows everyone "
                "the same size, panes name their own users): remove it"
            )
        one_rule(not problems, "; ".join(problems))
        return self


class Notify(_Spec):
    url: NotifyUrl | None = None
    auth_key_secret_ref: SecretKeyRef | None = None
    file_uploaded_formats: (
        Annotated[
            list[UploadFormat], Field(max_length=4), unique(lambda f: f'"{f}"'), AfterValidator(upload_formats_once)
        ]
        | None
    ) = None

    @model_validator(mode="after")
    def _key_needs_url(self) -> Notify:
        one_rule(
            self.auth_key_secret_ref is None or self.url is not None,
            "spec.notify.authKeySecretRef is only valid together with spec.notify.url",
        )
        return self


class RtcRecordingSpec(_Spec):
    """spec of an RtcRecording; see `kubectl explain rtcrec.spec` for every field.

    With recording_class_name set, this is the resource as applied (the class fills the rest:
    decide/classes.py); the effective spec is the merge without recording_class_name and
    drop_class_defaults, validated by this same model with every rule in force."""

    recording_class_name: DnsName | None = None
    drop_class_defaults: Annotated[list[ClassDefault], Field(max_length=8), unique(lambda f: f'"{f}"')] | None = None
    app_id: Id
    channel_id: Id
    region: Region | None = None
    credentials_secret_ref: SecretRef | None = None
    mode: Mode
    media: Media = "AudioVideo"
    max_file_duration_seconds: Annotated[int, Field(ge=180, le=7200)] | None = None
    max_idle_seconds: Annotated[int, Field(ge=10, le=14400)] | None = None
    subscribers: Annotated[list[Subscriber], Field(min_length=1, max_length=17), AfterValidator(subscribed_once)]
    storage: Storage | None = None
    transcode: Transcode | None = None
    layout: Layout | None = None
    notify: Notify | None = None
    # Lifecycle controls: the operator's own, never sent to the cloud.
    suspend: bool = False
    max_duration_seconds: Annotated[int, Field(ge=60, le=259200)] | None = None
    deletion_policy: Literal["Stop", "Orphan"] = "Stop"
    ttl_seconds_after_finished: Annotated[int, Field(ge=0, le=2147483647)] | None = None
    start_deadline_seconds: Annotated[int, Field(ge=10, le=259200)] | None = None
    restart_policy: Literal["Never", "OnFailure"] = "Never"
    backoff_limit: Annotated[int, Field(ge=0, le=100)] | None = None

    @model_validator(mode="after")
    def _cross_field(self) -> RtcRecordingSpec:
        from rtc_recording.api.rules import violations  # rules.py reads these models

        problems = violations(self)
        one_rule(not problems, "; ".join(problems))
        return self


def spec_errors(error: ValidationError) -> str:
    """A ValidationError of RtcRecordingSpec as "spec.a.b[0].c: message" lines, as the apiserver words them."""

    def path(loc) -> str:
        return "spec" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)

    return "\n".join(f"{path(e['loc'])}: {e['msg'].removeprefix('Value error, ')}" for e in error.errors())


# -- the vendor's parameters -------------------------------------------------------------------
# -- status ------------------------------------------------------------------------------------


class _Status(BaseModel):
    # Tolerant: status is ours to write, but an older or newer operator may have written it.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


class Attempt(_Status):
    number: int
    started_at: datetime | None = None
    generation: int | None = None
    not_executed: bool | None = None
    answer_lost: bool | None = None


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
    """The Event of the last transition (a crash before it is posted is repaired), until the next one."""

    key: str
    type: str
    reason: str
    message: str = ""
    at: str | None = None  # when it was stamped (MicroTime), on the writer's clock


class ClassSecretRef(_Status):
    namespace: DnsLabel | None = None
    name: DnsName | None = None


class RecordingClassPin(_Status):
    """status.recordingClass: the class generation the current task was started from (decide/classes.py)."""

    name: DnsName | None = None
    generation: Annotated[int, Field(ge=1)] | None = None
    credentials_secret_ref: ClassSecretRef | None = None
    defaults: dict[str, Any] | None = None
    seal: Annotated[str, StringConstraints(max_length=128)] | None = None  # decide/ownership.py


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
    waiting_since: datetime | None = None
    restarts: int | None = None
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
