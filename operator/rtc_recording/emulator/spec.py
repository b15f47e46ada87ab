"""A validated recording request, in the emulator's own terms."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

INDIVIDUAL, MIXED = 0, 1  # RecordParams.RecordMode
AV, AUDIO, VIDEO = 0, 1, 2  # StreamType (subscriber and output)
CAMERA, SCREEN = 0, 1  # SourceType
VOD, OSS = 0, 1  # StorageParams.StorageType

FORMAT_EXTENSIONS = {"HLS": ".m3u8", "MP4": ".mp4", "MP3": ".mp3"}
SLICE_EXTENSION = ".ts"


@dataclass(frozen=True)
class Subscriber:
    user_id: str
    stream_type: int = AV
    source_type: int = CAMERA  # always CAMERA for audio-only streams, where it means nothing

    @property
    def stream_label(self) -> str:
        """VodMediaList's Stream for individual recording: Single::{UserId}::{Suffix}."""
        if self.stream_type == AUDIO:
            suffix = "A"
        else:
            suffix = ("AV" if self.stream_type == AV else "V") + ("::S" if self.source_type == SCREEN else "::C")
        return f"Single::{self.user_id}::{suffix}"

    def wire(self) -> dict[str, Any]:
        return {"userId": self.user_id, "streamType": self.stream_type, "sourceType": self.source_type}


@dataclass(frozen=True)
class FileSpec:
    format: str  # HLS | MP4 | MP3
    file_name_pattern: str | None = None
    slice_name_pattern: str | None = None
    path_prefix: tuple[str, ...] = ()
    slice_duration: int = 30


@dataclass(frozen=True)
class RecordingSpec:
    app_id: str
    channel_id: str
    record_mode: int
    stream_type: int
    max_file_duration: int
    subscribers: tuple[Subscriber, ...]
    storage_type: int
    files: tuple[FileSpec, ...]  # OSS only; always holds an HLS entry
    oss_endpoint: str | None
    oss_bucket: str | None
    auto_compose: bool  # VOD only
    max_idle_time: int
    notify_url: str | None
    notify_auth_key: str | None
    notify_formats: frozenset[str]  # upper-case
    # the decoded request as received, for introspection and as the base of Updates
    raw: dict[str, Any] = field(compare=False, repr=False, default_factory=dict)
