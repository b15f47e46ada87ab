"""The CRD's cross-field CEL rules, mirrored: what no single field can say about a spec.

The API server enforces them on create and update; the operator checks them again on a spec
merged with its class (decide/classes.py), which the API server never sees.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from pydantic.alias_generators import to_camel

from rtc_recording.api.fields import first
from rtc_recording.api.recording import FileSpec, Pane, RtcRecordingSpec, Storage, Subscriber

Rules = list[tuple[bool, Callable[[], str]]]  # (holds, its message when it does not)


def violations(spec: RtcRecordingSpec) -> list[str]:
    """The CRD's spec-level CEL rules, in the same order and words (a messageExpression's words when it has one)."""
    classed = spec.recording_class_name is not None  # the class may fill what is missing: checked when merged
    storage = spec.storage or Storage.model_construct(oss=None, vod=None, files=None)
    rules = [
        *_mode_rules(spec, classed),
        *_storage_rules(spec.storage, classed),
        *_subscriber_rules(spec),
        *_file_name_rules(spec, storage.files or []),
        *region_rules(spec, spec.region),
        *_callback_rules(spec, storage, classed),
        *_layout_rules(spec),
    ]
    return [message() for ok, message in rules if not ok]


def _mode_rules(spec: RtcRecordingSpec, classed: bool) -> Rules:
    """What each mode needs and allows: transcoding and a layout belong to Mixed."""
    mixed, video_out = spec.mode == "Mixed", spec.media != "Audio"
    t, layout = spec.transcode, spec.layout
    return [
        (mixed or t is None, lambda: "spec.transcode is only valid when spec.mode is Mixed"),
        (mixed or layout is None, lambda: "spec.layout is only valid when spec.mode is Mixed"),
        (
            spec.storage is not None or classed,
            lambda: "spec.storage is required, unless spec.recordingClassName names a class that sets it",
        ),
        (not mixed or t is not None or classed, lambda: "spec.transcode is required when spec.mode is Mixed"),
        *[
            (
                t is None or getattr(t, attr) is not None or classed,
                lambda attr=attr: (
                    f"spec.transcode.{to_camel(attr)} is required, unless spec.recordingClassName names a class "
                    "that sets it"
                ),
            )
            for attr in ("audio_bitrate_kbps", "audio_channels", "audio_sample_rate_hz")
        ],
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
            not mixed
            or not video_out
            or (layout is not None and (layout.panes is not None or layout.preset is not None)),
            lambda: (
                "spec.layout.panes is required when spec.mode is Mixed and spec.media has video, unless "
                "spec.layout.preset computes them"
            ),
        ),
    ]


def _storage_rules(storage: Storage | None, classed: bool) -> Rules:
    """One storage, OSS or VOD (without storage: the rule of _mode_rules). A class may fill in oss or vod, but
    cannot mend both at once, nor files with VOD."""
    if storage is None:
        return []
    oss, vod = storage.oss is not None, storage.vod is not None
    return [
        (not (oss and vod), lambda: "spec.storage must set exactly one of oss or vod"),
        (
            oss or vod or classed,
            lambda: (
                "spec.storage must set exactly one of oss or vod, unless spec.recordingClassName names a class "
                "that sets one"
            ),
        ),
        (
            storage.files is None or oss or (classed and not vod),
            lambda: "spec.storage.files is only valid with spec.storage.oss (VOD chooses its own files)",
        ),
    ]


def _subscriber_rules(spec: RtcRecordingSpec) -> Rules:
    """Subscribers against the mode and media."""
    mixed, individual = spec.mode == "Mixed", spec.mode == "Individual"
    subscribers, medias = spec.subscribers, [s.media for s in spec.subscribers]
    return [
        (
            mixed or "Video" not in medias,
            lambda: first(
                ""
                if s.media != "Video"
                else f"subscriber {s.user_id} has media Video, which is only valid when "
                "spec.mode is Mixed: Individual mode cannot record a video-only stream"
                for s in subscribers
            ),
        ),
        (
            not individual or spec.media != "Video" or "Audio" not in medias,
            lambda: first(
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
    ]


def _file_name_rules(spec: RtcRecordingSpec, files: list[FileSpec]) -> Rules:
    """File and slice names against the mode and subscribers ({UserId} and {SourceType} are literal in Mixed)."""
    individual, subscribers = spec.mode == "Individual", spec.subscribers
    return [
        (
            not individual or all(_names_have(f, "{UserId}") for f in files),
            lambda: first(
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
            lambda: first(
                ""
                if _once(s, subscribers)
                else f"subscriber {s.user_id} is subscribed more than once, so with spec.mode "
                "Individual every fileNamePattern and sliceNamePattern must contain {SourceType}, or "
                f"{s.user_id}'s recordings would overwrite each other"
                for s in subscribers
            ),
        ),
    ]


def _callback_rules(spec: RtcRecordingSpec, storage: Storage, classed: bool) -> Rules:
    """Callbacks against storage."""
    notify, files = spec.notify, storage.files or []
    formats = [x.upper() for x in (notify.file_uploaded_formats or [])] if notify else []
    return [
        (
            notify is None or notify.file_uploaded_formats is None or storage.vod is None,
            lambda: "spec.notify.fileUploadedFormats is not supported with spec.storage.vod",
        ),
        # HLS (and so SLICE) is always recorded to OSS: the service adds a default HLS entry. (An unknown
        # format has its own message.)
        (
            storage.oss is None or classed or all(_recorded(x, files) for x in formats),
            lambda: first(
                ""
                if _recorded(x, files)
                else f"{x} is not recorded: spec.notify.fileUploadedFormats may name MP4 or MP3 "
                "only when spec.storage.files has that format"
                for x in formats
            ),
        ),
    ]


def _layout_rules(spec: RtcRecordingSpec) -> Rules:
    """The layout against the subscribers: every pane shows someone's video, and so does a preset."""
    panes = (spec.layout.panes if spec.layout else None) or []
    preset, large = (spec.layout.preset, spec.layout.large_user_id) if spec.layout else (None, None)
    large_source = "Screen" if preset == "ScreenShare" else "Camera"
    return [
        (
            all(_shows(p, spec.subscribers) for p in panes),
            lambda: first(
                ""
                if _shows(p, spec.subscribers)
                else f"the pane of {p.user_id} (source {p.source or 'Camera'}) shows nothing: "
                "spec.subscribers has no such (userId, source) with video "
                "(media AudioVideo or Video; Audio has no video to show)"
                for p in panes
            ),
        ),
        (
            preset in (None, "Grid")
            or large is None
            or any(s.user_id == large and s.media != "Audio" and s.source == large_source for s in spec.subscribers),
            lambda: (
                f"spec.layout.largeUserId {large} is not subscribed: preset {preset} shows that user's "
                f"{large_source} stream large, and spec.subscribers has no ({large}, {large_source}) with video "
                "(media AudioVideo or Video)"
            ),
        ),
        (
            preset is None or any(s.media != "Audio" for s in spec.subscribers),
            lambda: (
                "spec.layout.preset has nobody to show: a preset gives a pane to each subscriber with video "
                "(media AudioVideo or Video), and every subscriber in spec.subscribers is Audio-only"
            ),
        ),
    ]


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


def region_rules(spec: RtcRecordingSpec, region: str | None) -> Rules:
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
    "drop_class_defaults",
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


IMMUTABLE = "is immutable: create a new RtcRecording to record with different settings"
