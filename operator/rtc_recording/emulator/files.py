"""Recording outputs and their files: names from the seed's pattern variables, and how
files accumulate as a recorder runs (split every MaxFileDuration, HLS cut into slices).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from .spec import (
    AUDIO,
    AV,
    FORMAT_EXTENSIONS,
    INDIVIDUAL,
    SCREEN,
    SLICE_EXTENSION,
    VIDEO,
    FileSpec,
    RecordingSpec,
    Subscriber,
)

UTC8 = timezone(timedelta(hours=8))  # StartTime is rendered in UTC+8, per the seed
EPSILON = 1e-6  # float slack when counting whole files/slices of accumulated seconds


@dataclass(frozen=True)
class Output:
    """One recorder output: the mix, or one subscribed stream in individual mode."""

    stream: str  # VodMediaList's Stream: "Mix" or "Single::{UserId}::{Suffix}"
    subscriber: Subscriber | None = None


def outputs(spec: RecordingSpec) -> tuple[Output, ...]:
    if spec.record_mode == INDIVIDUAL:
        return tuple(Output(s.stream_label, s) for s in spec.subscribers)
    return (Output("Mix"),)


@dataclass
class Track:
    """Progress of one output: seconds recorded and when each file (MaxFileDuration chunk) began."""

    recorded: float = 0.0
    chunk_starts: list[float] = field(default_factory=list)
    files_uploaded: int = 0  # chunks whose files were announced
    slices_uploaded: int = 0

    def record(self, t0: float, t1: float, chunk_seconds: float) -> None:
        before, after = self.recorded, self.recorded + (t1 - t0)
        while len(self.chunk_starts) * chunk_seconds < after:
            # chunk k begins when the recording passes k * chunk_seconds
            self.chunk_starts.append(t0 + len(self.chunk_starts) * chunk_seconds - before)
        self.recorded = after

    def files(self, chunk_seconds: float, final: bool) -> int:
        """Files complete so far; a final count includes the last, partial one."""
        return _count(self.recorded, chunk_seconds, final)

    def slices(self, slice_seconds: float, final: bool) -> int:
        return _count(self.recorded, slice_seconds, final)

    def duration(self, index: int, chunk_seconds: float) -> float:
        return round(min(chunk_seconds, self.recorded - index * chunk_seconds), 3)


def _count(total: float, unit: float, final: bool) -> int:
    return math.ceil(total / unit - EPSILON) if final else math.floor(total / unit + EPSILON)


def start_time_label(t: float) -> str:
    return datetime.fromtimestamp(t, UTC8).strftime("%Y-%m-%d-%H:%M:%S")


def _variables(spec: RecordingSpec, output: Output, start: float) -> dict[str, str]:
    values = {
        "AppId": spec.app_id,
        "ChannelId": spec.channel_id,
        "RecordMode": "Single" if spec.record_mode == INDIVIDUAL else "Mix",
        "StreamType": {AV: "AV", AUDIO: "A", VIDEO: "V"}[spec.stream_type],
        "StartTime": start_time_label(start),
    }
    sub = output.subscriber
    if sub is not None:  # UserId and SourceType mean something in individual mode only
        values["UserId"] = sub.user_id
        screen = sub.source_type == SCREEN
        values["SourceType"] = (
            "A"
            if sub.stream_type == AUDIO
            else ("S" if screen else "C")
            if sub.stream_type == VIDEO
            else ("OS" if screen else "OC")
        )
    return values


def _render(pattern: str, values: dict[str, str]) -> str:
    # a variable without a value in this mode stays as its literal "{Name}"
    return "_".join(values.get(token[1:-1], token) for token in pattern.split("_"))


def _default_pattern(spec: RecordingSpec, output: Output) -> str:
    if output.subscriber is None:
        return "{AppId}_{ChannelId}_{StartTime}"
    user = output.subscriber.user_id
    if sum(s.user_id == user for s in spec.subscribers) > 1:
        return "{AppId}_{ChannelId}_{UserId}_{SourceType}_{StartTime}"
    return "{AppId}_{ChannelId}_{UserId}_{StartTime}"


def file_path(spec: RecordingSpec, task_id: str, output: Output, file: FileSpec, start: float) -> str:
    pattern = file.file_name_pattern or _default_pattern(spec, output)
    name = _render(pattern, _variables(spec, output, start)) + FORMAT_EXTENSIONS[file.format]
    return "/".join((*file.path_prefix, task_id, name))


def slice_path(spec: RecordingSpec, task_id: str, output: Output, file: FileSpec, start: float, sequence: int) -> str:
    pattern = file.slice_name_pattern or _default_pattern(spec, output) + "_{Sequence}"
    values = _variables(spec, output, start) | {"Sequence": str(sequence)}
    return "/".join((*file.path_prefix, task_id, _render(pattern, values) + SLICE_EXTENSION))


def object_url(spec: RecordingSpec, path: str) -> str:
    return f"https://{spec.oss_bucket}.{spec.oss_endpoint}/{path}"


def media_id(task_id: str, stream: str, index: int) -> str:
    """A VOD media id, stable for (task, stream, file)."""
    return hashlib.md5(f"{task_id}/{stream}/{index}".encode()).hexdigest()
