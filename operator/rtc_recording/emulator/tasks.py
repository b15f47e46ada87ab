"""Recording tasks and the channels they record: a state machine over emulated time.

Pure of I/O: every call takes `now` (emulated seconds) and first fires what fell due up
to that moment (idle timeouts, end of STOPPING, end of a forced RECOVERING, the 72 h
limit) at its exact due time. Callbacks come out as Events to drain; files are computed
from how long each output really recorded.

Cost: each live task sits in a heap at its next wake-up, the earliest of its state
machine's due time and (when files are announced by callback) the moment its next file
or HLS slice completes. `advance` pops only what is due, so a call costs O(log n) per
task that has something to do and nothing per task that has not; an idle tick costs
O(1). A task is brought up to date lazily: when it wakes, when the API or the control
API touches it, or when its channel's activity changes. A task is "visited" each time it
is brought up to date (`Engine.visits`), which tests count.

Channel activity: users join a channel and publish tracks (audio, camera, screen). A
subscribed stream is live while its user publishes what it needs (AV camera: audio or
camera; AV screen: screen; audio-only: audio; video-only: camera or screen). A task is
idle while none of its subscribed streams is live; after MaxIdleTime of that it stops
(reason IdleTimeout). In individual mode each stream's own idle window runs out, and the
task stops when all have, which is the same moment. An Update restarts the idle window.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .errors import ApiError
from .files import EPSILON, Output, Track, file_path, media_id, object_url, outputs, slice_path
from .spec import AUDIO, CAMERA, OSS, SCREEN, VIDEO, RecordingSpec, Subscriber

RUNNING, RECOVERING, STOPPING, STOPPED = "RUNNING", "RECOVERING", "STOPPING", "STOPPED"
TRACKS = frozenset({"audio", "camera", "screen"})
FILE_LISTS = {"HLS": "HlsFileList", "MP4": "Mp4FileList", "MP3": "Mp3FileList"}
DEFAULT_ACCOUNT = "default"


@dataclass(frozen=True)
class Event:
    """A callback to deliver to the task's NotifyUrl."""

    task_id: str
    app_id: str
    channel_id: str
    event_type: str
    at: float  # emulated time
    payload: dict[str, Any]
    notify_url: str
    auth_key: str | None


@dataclass
class Task:
    task_id: str
    spec: RecordingSpec
    access_key_id: str
    created_at: float
    settled_at: float  # files are accounted up to here
    outputs: list[Output]  # every output the task ever had (Updates add, never remove files)
    progress: dict[str, Track]  # by output stream, as of settled_at
    account: str = DEFAULT_ACCOUNT  # the account of the AccessKey that started it: only it sees the task
    status: str = RUNNING
    stop_reason: str | None = None
    stopping_at: float | None = None
    stopped_at: float | None = None
    recover_until: float | None = None
    idle_since: float | None = None
    vanished: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    wake: float | None = field(default=None, repr=False, compare=False)  # its live entry in the engine's heap
    sync: Callable[[Task], None] | None = field(default=None, repr=False, compare=False)

    @property
    def tracks(self) -> dict[str, Track]:
        """Progress by output stream, brought up to the engine's latest time first."""
        if self.sync is not None:
            self.sync(self)
        return self.progress


class Engine:
    def __init__(
        self,
        *,
        new_id: Callable[[], str],
        open_channels: bool = False,
        stopping_seconds: float = 1.0,
        max_duration: float = 72 * 3600,
        retention: float = 3 * 86400,
    ):
        self._new_id = new_id
        self.open_channels = open_channels
        self.stopping_seconds = stopping_seconds
        self.max_duration = max_duration
        self.retention = retention
        self.channels: dict[tuple[str, str], dict[str, set[str]]] = {}
        self.tasks: dict[str, Task] = {}
        self._live: dict[str, Task] = {}
        self._by_channel: dict[tuple[str, str], dict[str, Task]] = {}  # live tasks of each channel
        self._events: list[Event] = []
        self._heap: list[tuple[float, int, Task]] = []  # (wake, tie-break, task); stale when task.wake differs
        self._order = itertools.count()
        self.now = -math.inf  # the latest time the engine was brought to
        self.visits = 0  # tasks brought up to date, one by one (for tests: an idle tick visits none)

    # ---- time

    def advance(self, now: float) -> None:
        """Fire everything due up to `now`, visiting only the tasks that have something due."""
        self.now = max(self.now, now)
        heap = self._heap
        while heap and heap[0][0] <= now:
            wake, _, task = heapq.heappop(heap)
            if task.wake != wake or task.status == STOPPED:
                continue  # superseded by a later schedule, or ended
            task.wake = None
            self._catch_up(task, now)

    def live(self) -> list[Task]:
        """Tasks not yet STOPPED, oldest first."""
        return list(self._live.values())

    def drain(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    # ---- the API's verbs

    def start(self, spec: RecordingSpec, access_key_id: str, now: float, *, account: str = DEFAULT_ACCOUNT) -> Task:
        self.advance(now)
        if not self.channels.get((spec.app_id, spec.channel_id)) and not self.open_channels:
            raise ApiError("InvalidParameter.ChannelId", f"Nobody is in channel {spec.channel_id!r}")
        outs = list(outputs(spec))
        task = Task(
            self._new_id(),
            spec,
            access_key_id,
            created_at=now,
            settled_at=now,
            outputs=outs,
            progress={o.stream: Track() for o in outs},
            account=account,
            sync=self._sync,
        )
        self.tasks[task.task_id] = task
        self._live[task.task_id] = task
        self._by_channel.setdefault((spec.app_id, spec.channel_id), {})[task.task_id] = task
        self._refresh_idle(task, now)
        for event_type in ("TaskCreated", "TaskStarting", "TaskRunning"):
            self._emit(task, event_type, now, {})
        self._schedule(task, now)
        return task

    def get(self, task_id: str, now: float, account: str | None = None) -> Task:
        """A task the API can see: not vanished, not forgotten after the retention period and, when
        `account` is given, started by that account (another account's task is as unknown as a
        made-up id). Brought up to `now`."""
        self.advance(now)
        task = self.tasks.get(task_id)
        if task is None or task.vanished or self._expired(task, now) or account not in (None, task.account):
            raise ApiError("NotFound.Task", f"TaskId {task_id!r}")
        self._catch_up(task, now)
        return task

    def running(self, task_id: str, now: float, account: str | None = None) -> Task:
        """A visible task that Stop/Update may act on."""
        task = self.get(task_id, now, account)
        if task.status not in (RUNNING, RECOVERING):
            raise ApiError("InvalidParameter.TaskId", f"Task {task_id!r} is {task.status}")
        return task

    def stop(self, task_id: str, now: float, account: str | None = None) -> None:
        task = self.running(task_id, now, account)
        self._begin_stop(task, now, "Stopped")
        self._schedule(task, now)

    def update(self, task_id: str, spec: RecordingSpec, now: float, account: str | None = None) -> None:
        task = self.running(task_id, now, account)
        task.spec = spec
        for output in outputs(spec):
            if output.stream not in task.progress:
                task.outputs.append(output)
                task.progress[output.stream] = Track()
        task.history.append(
            {
                "at": now,
                "SubscribeParams": spec.raw.get("SubscribeParams"),
                "MixLayoutParams": spec.raw.get("MixLayoutParams"),
            }
        )
        task.idle_since = None  # a new subscription gets a full idle window
        self._refresh_idle(task, now)
        self._schedule(task, now)

    def describe(self, task_id: str, now: float, account: str | None = None) -> dict[str, Any]:
        task = self.get(task_id, now, account)
        return {"TaskId": task.task_id, "Status": task.status, "RecordFileList": self.file_list(task)}

    # ---- channel activity (control API)

    def join(self, app_id: str, channel_id: str, user_id: str, tracks: Iterable[str], now: float) -> None:
        """The user enters the channel publishing exactly `tracks` (possibly none)."""
        chosen = _tracks(tracks)
        self._before_activity(app_id, channel_id, now)
        self.channels.setdefault((app_id, channel_id), {})[user_id] = chosen
        self._activity_changed(app_id, channel_id, now)

    def leave(self, app_id: str, channel_id: str, user_id: str, now: float) -> None:
        users = self._users(app_id, channel_id, user_id)
        self._before_activity(app_id, channel_id, now)
        del users[user_id]
        self._activity_changed(app_id, channel_id, now)

    def publish(self, app_id: str, channel_id: str, user_id: str, tracks: Iterable[str], now: float) -> None:
        chosen = _tracks(tracks)
        users = self._users(app_id, channel_id, user_id)
        self._before_activity(app_id, channel_id, now)
        users[user_id] |= chosen
        self._activity_changed(app_id, channel_id, now)

    def unpublish(self, app_id: str, channel_id: str, user_id: str, tracks: Iterable[str], now: float) -> None:
        chosen = _tracks(tracks)
        users = self._users(app_id, channel_id, user_id)
        self._before_activity(app_id, channel_id, now)
        users[user_id] -= chosen
        self._activity_changed(app_id, channel_id, now)

    # ---- faults (control API)

    def recover(self, task_id: str, seconds: float, now: float) -> None:
        """The service loses the recorder and spends `seconds` bringing it back."""
        task = self.running(task_id, now)
        task.status = RECOVERING
        task.recover_until = now + seconds
        self._emit(task, "TaskRecovering", now, {"reason": "RecorderLost"})
        self._schedule(task, now)

    def vanish(self, task_id: str, now: float) -> None:
        """The service forgets the task: the API no longer finds it, the recording ends."""
        task = self.get(task_id, now)
        if task.status != STOPPED:
            task.stop_reason = "Vanished"
            self._end(task, now)
        task.vanished = True

    # ---- views

    def file_list(self, task: Task) -> dict[str, Any]:
        spec = task.spec
        final = task.status == STOPPED
        lists: dict[str, Any] = {"HlsFileList": [], "Mp4FileList": [], "Mp3FileList": [], "VodMediaList": []}
        for output in task.outputs:
            track = task.progress[output.stream]
            count = track.files(spec.max_file_duration, final)
            if spec.storage_type == OSS:
                for file in spec.files:
                    shown = count
                    # a live HLS playlist is there as soon as its first slice is
                    if (
                        file.format == "HLS"
                        and not final
                        and track.recorded - count * spec.max_file_duration >= file.slice_duration
                    ):
                        shown += 1
                    lists[FILE_LISTS[file.format]].extend(
                        file_path(spec, task.task_id, output, file, track.chunk_starts[k]) for k in range(shown)
                    )
            else:
                ids = [media_id(task.task_id, output.stream, k) for k in range(count)]
                merged = (
                    [media_id(task.task_id, output.stream, -1)] if final and spec.auto_compose and len(ids) > 1 else []
                )
                lists["VodMediaList"].append({"MediaIds": ids, "MergedIds": merged, "Stream": output.stream})
        return lists

    def task_view(self, task: Task, now: float) -> dict[str, Any]:
        self._catch_up(task, now)
        return {
            "taskId": task.task_id,
            "appId": task.spec.app_id,
            "channelId": task.spec.channel_id,
            "status": task.status,
            "stopReason": task.stop_reason,
            "accessKeyId": task.access_key_id,
            "account": task.account,
            "createdAt": task.created_at,
            "stoppedAt": task.stopped_at,
            "vanished": task.vanished,
            "expired": self._expired(task, now),
            "params": task.spec.raw,
            "subscribers": [s.wire() for s in task.spec.subscribers],
            "layout": task.spec.raw.get("MixLayoutParams"),
            "updates": len(task.history),
            "history": task.history,
            "files": self.file_list(task),
        }

    def channel_view(self) -> list[dict[str, Any]]:
        return [
            {"appId": app, "channelId": channel, "users": {u: sorted(t) for u, t in users.items()}}
            for (app, channel), users in self.channels.items()
        ]

    # ---- internals

    def _expired(self, task: Task, now: float) -> bool:
        return task.stopped_at is not None and now - task.stopped_at >= self.retention

    def _users(self, app_id: str, channel_id: str, user_id: str) -> dict[str, set[str]]:
        users = self.channels.get((app_id, channel_id), {})
        if user_id not in users:
            raise KeyError(f"{user_id} is not in channel {app_id}/{channel_id}")
        return users

    def _before_activity(self, app_id: str, channel_id: str, now: float) -> None:
        """Account what the channel's tasks recorded under the old activity first."""
        self.advance(now)
        for task in list(self._by_channel.get((app_id, channel_id), {}).values()):
            self._catch_up(task, now)

    def _activity_changed(self, app_id: str, channel_id: str, now: float) -> None:
        if not self.channels[(app_id, channel_id)]:
            del self.channels[(app_id, channel_id)]
        for task in list(self._by_channel.get((app_id, channel_id), {}).values()):
            self._refresh_idle(task, now)
            self._schedule(task, now)

    def _live_stream(self, spec: RecordingSpec, sub: Subscriber) -> bool:
        published = self.channels.get((spec.app_id, spec.channel_id), {}).get(sub.user_id, set())
        video = "screen" if sub.source_type == SCREEN else "camera"
        if sub.stream_type == AUDIO:
            return "audio" in published
        if sub.stream_type == VIDEO:
            return video in published
        return video in published or (sub.source_type == CAMERA and "audio" in published)

    def _recording(self, task: Task, output: Output) -> bool:
        spec = task.spec
        if output.subscriber is None:
            return any(self._live_stream(spec, s) for s in spec.subscribers)
        return output.subscriber in spec.subscribers and self._live_stream(spec, output.subscriber)

    def _refresh_idle(self, task: Task, now: float) -> None:
        if any(self._live_stream(task.spec, s) for s in task.spec.subscribers):
            task.idle_since = None
        elif task.idle_since is None:
            task.idle_since = now

    def _due(self, task: Task) -> float | None:
        if task.status == STOPPED:
            return None
        if task.status == STOPPING:
            assert task.stopping_at is not None  # set with the status
            return task.stopping_at + self.stopping_seconds
        due = task.created_at + self.max_duration
        if task.idle_since is not None:
            due = min(due, task.idle_since + task.spec.max_idle_time)
        if task.status == RECOVERING:
            assert task.recover_until is not None  # set with the status
            due = min(due, task.recover_until)
        return due

    def _next_upload(self, task: Task) -> float | None:
        """When the next file or slice that a RecordFileUploaded announces completes, if one is on its way."""
        spec = task.spec
        if task.status != RUNNING or not spec.notify_url:
            return None
        units = []
        if spec.storage_type != OSS or any(f.format in spec.notify_formats for f in spec.files):
            units.append(spec.max_file_duration)
        if spec.storage_type == OSS and "SLICE" in spec.notify_formats:
            units.append(next(f for f in spec.files if f.format == "HLS").slice_duration)
        soonest = None
        for output in task.outputs:
            if units and self._recording(task, output):
                recorded = task.progress[output.stream].recorded
                for unit in units:
                    # the count of whole units (files.py's _count) goes up when recorded reaches this
                    goal = (math.floor(recorded / unit + EPSILON) + 1 - EPSILON) * unit
                    at = task.settled_at + (goal - recorded)
                    soonest = at if soonest is None else min(soonest, at)
        return soonest

    def _sync(self, task: Task) -> None:
        self._catch_up(task, self.now)

    def _catch_up(self, task: Task, now: float) -> None:
        """Bring one task up to `now`: fire what is due on the way, account what it recorded."""
        if task.status == STOPPED:
            return
        self.visits += 1
        while (due := self._due(task)) is not None and due <= now:
            self._settle(task, due)
            self._fire(task, due)
        self._settle(task, now)
        self._schedule(task, now)

    def _schedule(self, task: Task, now: float) -> None:
        """(Re)place the task in the heap at its next wake-up; call after every change to it."""
        if task.status == STOPPED:
            task.wake = None
            return
        wake = self._due(task)
        upload = self._next_upload(task)
        if upload is not None and upload <= now:  # a rounding error away from done: look again just after
            upload = math.nextafter(max(now, task.settled_at), math.inf)
        if wake is None or (upload is not None and upload < wake):
            wake = upload
        if wake is None:
            return
        if wake != task.wake:
            task.wake = wake
            heapq.heappush(self._heap, (wake, next(self._order), task))
            if len(self._heap) > 2 * len(self._live) + 64:
                self._heap = [(t.wake, next(self._order), t) for t in self._live.values() if t.wake is not None]
                heapq.heapify(self._heap)

    def _fire(self, task: Task, t: float) -> None:
        if task.status == STOPPING:
            self._end(task, t)
        elif t >= task.created_at + self.max_duration:
            self._begin_stop(task, t, "MaxDuration")
        elif task.idle_since is not None and t >= task.idle_since + task.spec.max_idle_time:
            self._begin_stop(task, t, "IdleTimeout")
        else:
            task.status = RUNNING
            task.recover_until = None
            self._emit(task, "TaskRunning", t, {})

    def _settle(self, task: Task, t: float) -> None:
        if t <= task.settled_at:
            return
        if task.status == RUNNING:  # a recovering or stopping recorder records nothing
            for output in task.outputs:
                if self._recording(task, output):
                    task.progress[output.stream].record(task.settled_at, t, task.spec.max_file_duration)
        task.settled_at = t
        self._announce_files(task, t, final=False)

    def _begin_stop(self, task: Task, t: float, reason: str) -> None:
        task.status = STOPPING
        task.stopping_at = t
        task.stop_reason = reason
        task.recover_until = None
        self._emit(task, "TaskStopping", t, {"reason": reason})

    def _end(self, task: Task, t: float) -> None:
        self._announce_files(task, t, final=True)
        task.status = STOPPED
        task.stopped_at = t
        task.wake = None
        del self._live[task.task_id]
        key = (task.spec.app_id, task.spec.channel_id)
        del self._by_channel[key][task.task_id]
        if not self._by_channel[key]:
            del self._by_channel[key]
        self._emit(task, "TaskStopped", t, {"reason": task.stop_reason})

    def _announce_files(self, task: Task, t: float, final: bool) -> None:
        """RecordFileUploaded for each file finished since the last call (OSS: the chosen formats)."""
        spec = task.spec
        for output in task.outputs:
            track = task.progress[output.stream]
            done = track.files(spec.max_file_duration, final)
            for k in range(track.files_uploaded, done):
                base = {"stream": output.stream, "duration": track.duration(k, spec.max_file_duration)}
                if spec.storage_type != OSS:
                    self._emit(
                        task,
                        "RecordFileUploaded",
                        t,
                        base | {"format": "MP4", "mediaId": media_id(task.task_id, output.stream, k)},
                    )
                    continue
                for file in spec.files:
                    if file.format in spec.notify_formats:
                        path = file_path(spec, task.task_id, output, file, track.chunk_starts[k])
                        self._emit(
                            task,
                            "RecordFileUploaded",
                            t,
                            base | {"format": file.format, "filePath": path, "url": object_url(spec, path)},
                        )
            track.files_uploaded = max(track.files_uploaded, done)
            if spec.storage_type == OSS and "SLICE" in spec.notify_formats:
                hls = next(f for f in spec.files if f.format == "HLS")
                slices = track.slices(hls.slice_duration, final)
                for n in range(track.slices_uploaded, slices):
                    chunk = int(n * hls.slice_duration // spec.max_file_duration)
                    path = slice_path(spec, task.task_id, output, hls, track.chunk_starts[chunk], n)
                    duration = round(min(hls.slice_duration, track.recorded - n * hls.slice_duration), 3)
                    self._emit(
                        task,
                        "RecordFileUploaded",
                        t,
                        {
                            "stream": output.stream,
                            "format": "SLICE",
                            "sequence": n,
                            "duration": duration,
                            "filePath": path,
                            "url": object_url(spec, path),
                        },
                    )
                track.slices_uploaded = max(track.slices_uploaded, slices)

    def _emit(self, task: Task, event_type: str, t: float, payload: dict[str, Any]) -> None:
        if task.spec.notify_url:
            self._events.append(
                Event(
                    task.task_id,
                    task.spec.app_id,
                    task.spec.channel_id,
                    event_type,
                    t,
                    payload,
                    task.spec.notify_url,
                    task.spec.notify_auth_key,
                )
            )


def _tracks(names: Iterable[str]) -> set[str]:
    chosen = set(names)
    if not chosen <= TRACKS:
        raise ValueError(f"tracks must be among {sorted(TRACKS)}, got {sorted(chosen - TRACKS)}")
    return chosen
