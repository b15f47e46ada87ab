"""An RtcRecording spec as the vendor's parameters: StartRtcCloudRecording and UpdateRtcCloudRecording."""

from __future__ import annotations

import re
from typing import Any

from rtc_recording.api.recording import (
    Background,
    InvalidSpec,
    Layout,
    RtcRecordingSpec,
    Storage,
    Subscriber,
    Transcode,
)
from rtc_recording.api.rules import region_rules
from rtc_recording.decide.presets import preset_panes

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


def _layout_params(layout: Layout, subscribers: list[Subscriber]) -> dict[str, Any]:
    """MixLayoutParams: the panes as written, or as the preset computes them for these subscribers (so an
    Update after a change of subscribers carries the new panes)."""
    panes = None
    chosen = preset_panes(layout, subscribers) if layout.preset is not None else layout.panes
    if chosen is not None:
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
            for p in chosen
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
    problems = [message() for ok, message in region_rules(spec, region) if not ok]
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
            "MixLayoutParams": _layout_params(spec.layout, spec.subscribers) if spec.layout else None,
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
            "MixLayoutParams": _layout_params(spec.layout, spec.subscribers) if spec.layout else None,
        }
    )


# The vendor's integer codes for our string enums (None, an unset optional field, has no code).
STORAGE_TYPE_VOD, STORAGE_TYPE_OSS = 0, 1
RECORD_MODE = {"Individual": 0, "Mixed": 1}
STREAM_TYPE = {"AudioVideo": 0, "Audio": 1, "Video": 2}
SOURCE_TYPE: dict[str | None, int] = {"Camera": 0, "Screen": 1}
RENDER_MODE: dict[str | None, int] = {"Crop": 0, "Fit": 1}
FRAME_FILL: dict[str | None, int] = {"LastFrame": 0}
