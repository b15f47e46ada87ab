"""The objects recorders wrote to OSS, as the emulator's OSS endpoint serves them.

An object exists once Describe lists it (an HLS playlist, an MP4 or MP3 file) or, for an HLS
slice, once the slice is complete. Its body is a small deterministic stub of its kind that
carries its own key, so no two objects share a body: a playlist of its slices (relative names,
as a recorder writes them), an MP4 `ftyp` box and a `free` box, an ID3v2 tag, one MPEG-TS
packet. Objects outlive their task's 3 days in Describe: OSS keeps them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from .files import Track, file_path, slice_path
from .spec import OSS
from .tasks import FILE_LISTS, STOPPED, Engine, Task

CONTENT_TYPES = {"HLS": "application/x-mpegURL", "MP4": "video/mp4", "MP3": "audio/mpeg", "SLICE": "video/MP2T"}


@dataclass(frozen=True)
class StoredObject:
    format: str  # HLS | MP4 | MP3 | SLICE
    body: bytes

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]


def find(engine: Engine, bucket: str, key: str, now: float) -> StoredObject | None:
    """The object at `key` in `bucket`, if a task wrote it by `now`. Its key holds the task's id as a
    path segment (files.file_path), so only those tasks are looked at."""
    engine.advance(now)
    for segment in key.split("/")[:-1]:
        task = engine.tasks.get(segment)
        if task is not None and task.spec.storage_type == OSS and task.spec.oss_bucket == bucket:
            found = _written(engine, task).get(key)
            if found is not None:
                return found()
    return None


def _written(engine: Engine, task: Task) -> dict[str, Callable[[], StoredObject]]:
    """Every object of the task by key, each with the stub to make when it is asked for."""
    spec, final = task.spec, task.status == STOPPED
    progress = task.tracks  # brought up to the engine's time
    lists = engine.file_list(task)
    listed = {path for name in FILE_LISTS.values() for path in lists[name]}
    out: dict[str, Callable[[], StoredObject]] = {}
    for output in task.outputs:
        track = progress[output.stream]
        for file in spec.files:
            for k, start in enumerate(track.chunk_starts):
                path = file_path(spec, task.task_id, output, file, start)
                if path not in listed:
                    continue
                if file.format != "HLS":
                    out[path] = partial(_stub, file.format, path)
                    continue
                slices = _slices(track, k, spec.max_file_duration, file.slice_duration, final)
                names = [(n, slice_path(spec, task.task_id, output, file, start, n)) for n in slices]
                for _, name in names:
                    out[name] = partial(_stub, "SLICE", name)
                done = final or track.recorded >= (k + 1) * spec.max_file_duration
                out[path] = partial(_playlist, path, names, track, file.slice_duration, done)
    return out


def _slices(track: Track, chunk: int, chunk_seconds: float, slice_seconds: float, final: bool) -> range:
    """The complete slices (all of them, once the task ended) that belong to playlist `chunk`."""
    count = track.slices(slice_seconds, final)
    first = math.ceil(chunk * chunk_seconds / slice_seconds)
    last = math.ceil((chunk + 1) * chunk_seconds / slice_seconds)  # slice n is in chunk n*slice // chunk
    return range(first, min(last, count))


def _playlist(key: str, slices: list[tuple[int, str]], track: Track, slice_seconds: float, done: bool) -> StoredObject:
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        f"#EXT-X-TARGETDURATION:{math.ceil(slice_seconds)}",
        f"#EXT-X-MEDIA-SEQUENCE:{slices[0][0] if slices else 0}",
        f"# {key}",
    ]
    for n, name in slices:
        seconds = round(min(slice_seconds, track.recorded - n * slice_seconds), 3)
        lines += [f"#EXTINF:{seconds},", name.rsplit("/", 1)[-1]]
    if done:
        lines.append("#EXT-X-ENDLIST")
    return StoredObject("HLS", ("\n".join(lines) + "\n").encode())


def _stub(kind: str, key: str) -> StoredObject:
    name = key.encode()
    if kind == "MP4":  # ftyp (isom), then a free box holding the key
        body = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + (8 + len(name)).to_bytes(4, "big") + b"free" + name
    elif kind == "MP3":  # an ID3v2.4 tag with one TIT2 (title) frame: the key, UTF-8
        frame = b"\x03" + name
        body = b"ID3\x04\x00\x00" + _syncsafe(10 + len(frame)) + b"TIT2" + _syncsafe(len(frame)) + b"\x00\x00" + frame
    else:  # SLICE: one 188-byte MPEG-TS null packet (PID 0x1FFF) whose payload holds the key
        body = (b"\x47\x1f\xff\x10" + name[:184]).ljust(188, b"\xff")
    return StoredObject(kind, body)


def _syncsafe(n: int) -> bytes:
    return bytes((n >> shift) & 0x7F for shift in (21, 14, 7, 0))
