"""The engine touches only the tasks that have something to do (counted, never timed).

`Engine.visits` counts tasks brought up to date one by one; `_settle` calls are counted
too, so that an engine that walks every live task on each call fails here whatever it
reports about itself.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from typing import Any

import pytest
from emulator_samples import APP, BUCKET, individual, mixed, oss

from rtc_recording.emulator.spec import RecordingSpec
from rtc_recording.emulator.tasks import Engine
from rtc_recording.emulator.validation import Account, validate_start

ACCOUNT = Account("cn-shanghai", frozenset({APP}), frozenset({BUCKET}))
T0 = 1_700_000_000.0
URL = "http://127.0.0.1:9/cb"
LIVE = 1000


def spec(channel: str, **top: Any) -> RecordingSpec:
    return validate_start(individual("alice", ChannelId=channel, **top), ACCOUNT)


class Counted:
    """An engine whose per-task work is counted."""

    def __init__(self, **kwargs: Any):
        counter = itertools.count(1)
        self.engine = Engine(new_id=lambda: f"task-{next(counter)}", **kwargs)
        self.settles = 0
        settle = self.engine._settle

        def counting(task: Any, t: float) -> None:
            self.settles += 1
            settle(task, t)

        self.engine._settle = counting  # type: ignore[method-assign]

    def touched(self) -> tuple[int, int]:
        """(visits, settles) since the last call."""
        counts = (self.engine.visits, self.settles)
        self.engine.visits, self.settles = 0, 0
        return counts


@pytest.fixture
def busy() -> Counted:
    """LIVE tasks, each recording its own channel, MP4 uploads announced every 180 s."""
    counted = Counted()
    e = counted.engine
    for i in range(LIVE):
        e.join(APP, f"room-{i}", "alice", ["audio", "camera"], T0)
        e.start(
            spec(
                f"room-{i}",
                NotifyUrl=URL,
                RecordParams={"RecordMode": 0, "MaxFileDuration": 180},
                StorageParams=oss(FileInfo=[{"Format": "MP4"}]),
                NotifyFileUploadedFormat=["MP4"],
            ),
            "AK1",
            T0,
        )
    e.drain()
    counted.touched()
    return counted


def test_an_idle_tick_touches_no_task(busy: Counted) -> None:
    e = busy.engine
    for step in range(1, 501):  # 500 ticks of 20 ms: nothing falls due
        e.advance(T0 + step * 0.02)
    assert busy.touched() == (0, 0)
    assert e.drain() == []


def test_a_call_touches_only_its_task(busy: Counted) -> None:
    e = busy.engine
    e.describe("task-7", T0 + 5)
    e.update(
        "task-8",
        spec(
            "room-7",  # task-N records room-(N-1)
            StorageParams=oss(FileInfo=[{"Format": "MP4"}]),
            NotifyFileUploadedFormat=["MP4"],
        ),
        T0 + 6,
    )
    e.stop("task-9", T0 + 7)
    visits, settles = busy.touched()
    assert visits == 3 and settles <= 6
    e.advance(T0 + 8)  # task-9's STOPPING ends (stopping_seconds=1): only it wakes
    assert busy.touched()[0] == 1
    assert [ev.event_type for ev in e.drain()] == ["TaskStopping", "RecordFileUploaded", "TaskStopped"]


def test_channel_activity_touches_only_that_channels_tasks(busy: Counted) -> None:
    e = busy.engine
    e.start(spec("room-3"), "AK1", T0 + 1)  # a second task on room-3
    busy.touched()
    e.unpublish(APP, "room-3", "alice", ["audio", "camera"], T0 + 2)
    assert busy.touched()[0] == 2
    e.advance(T0 + 2 + 300)  # both idle out (default MaxIdleTime 300); no other task wakes before 180 s...
    visits, _ = busy.touched()
    # ...except that every recording task completes its first MP4 at T0 + 180: one visit each
    assert visits == 2 + (LIVE - 1)


def test_each_upload_wakes_its_task_once(busy: Counted) -> None:
    e = busy.engine
    for step in range(1, 21):  # 20 ticks of 10 s: one MP4 completes per task, at 180 s
        e.advance(T0 + step * 10)
    visits, settles = busy.touched()
    assert visits == LIVE and settles == LIVE
    uploads = [ev for ev in e.drain() if ev.event_type == "RecordFileUploaded"]
    assert len(uploads) == LIVE and {ev.payload["duration"] for ev in uploads} == {180}
    assert {ev.at for ev in uploads} == {T0 + 180}  # announced at the first call after the file completed


def test_a_task_without_callbacks_never_wakes_until_its_limits() -> None:
    counted = Counted()
    e = counted.engine
    for i in range(50):
        e.join(APP, f"room-{i}", "alice", ["audio"], T0)
        e.start(spec(f"room-{i}", RecordParams={"RecordMode": 0, "MaxFileDuration": 180}), "AK1", T0)
    counted.touched()
    for hour in range(1, 72):
        e.advance(T0 + hour * 3600)
    assert counted.touched() == (0, 0)
    e.advance(T0 + 72 * 3600 + 1)  # the 72 h limit, then the end of STOPPING
    assert counted.touched()[0] == 50
    assert all(e.tasks[f"task-{i}"].stop_reason == "MaxDuration" for i in range(1, 51))
    assert e.tasks["task-1"].tracks["Single::alice::AV::C"].recorded == pytest.approx(72 * 3600)


def scenario(tick: float, seed: int) -> tuple[dict[str, Any], Counter[tuple[str, str, str]]]:
    """A random mix of activity and calls; the engine driven by ticks of `tick` seconds."""
    rng = random.Random(seed)
    counter = itertools.count(1)
    e = Engine(new_id=lambda: f"task-{next(counter)}", stopping_seconds=2)
    users = ["alice", "bob", "carol"]
    channels = ["room-a", "room-b"]
    for channel in channels:
        for user in users:
            e.join(APP, channel, user, ["audio", "camera"], T0)
    raws = [
        individual(
            "alice",
            "bob",
            NotifyUrl=URL,
            MaxIdleTime=30,
            RecordParams={"RecordMode": 0, "MaxFileDuration": 180},
            StorageParams=oss(FileInfo=[{"Format": "MP4"}, {"Format": "HLS", "SliceDuration": 10}]),
            NotifyFileUploadedFormat=["MP4", "SLICE"],
        ),
        mixed(
            "alice",
            "carol",
            NotifyUrl=URL,
            MaxIdleTime=60,
            RecordParams={"RecordMode": 1, "MaxFileDuration": 180},
            StorageParams=oss(FileInfo=[{"Format": "MP3"}]),
            NotifyFileUploadedFormat=["MP3"],
        ),
    ]
    actions: list[tuple[float, Any]] = []
    t = T0
    for _ in range(60):
        t += rng.uniform(1, 40)
        channel, user = rng.choice(channels), rng.choice(users)
        kind = rng.choice(["start", "publish", "unpublish", "unpublish", "stop", "recover"])
        actions.append((t, (kind, channel, user, rng.choice(raws))))
    end = t + 400
    events: Counter[tuple[str, str, str]] = Counter()
    now = T0
    for at, (kind, channel, user, raw) in actions + [(end, ("end", "", "", None))]:
        while now + tick < at:
            now += tick
            e.advance(now)
        if kind == "start":
            e.start(validate_start(dict(raw, ChannelId=channel), ACCOUNT), "AK1", at)
        elif kind == "publish":
            e.publish(APP, channel, user, ["audio", "camera"], at)
        elif kind == "unpublish":
            e.unpublish(APP, channel, user, ["audio", "camera"], at)
        elif kind in ("stop", "recover"):
            e.advance(at)
            running = [task for task in e.live() if task.status in ("RUNNING", "RECOVERING")]
            if running:
                e.stop(running[0].task_id, at) if kind == "stop" else e.recover(running[0].task_id, 20, at)
        now = at
    e.advance(end)
    for ev in e.drain():
        events[(ev.task_id, ev.event_type, repr(sorted(ev.payload.items())))] += 1
    views = {task_id: e.task_view(task, end) for task_id, task in e.tasks.items()}
    outcome = {
        task_id: (
            view["status"],
            view["stopReason"],
            view["stoppedAt"],
            view["files"],
            {k: round(v.recorded, 6) for k, v in e.tasks[task_id].tracks.items()},
        )
        for task_id, view in views.items()
    }
    return outcome, events


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_how_often_it_is_driven_changes_nothing(seed: int) -> None:
    """Ticks every 0.5 s or only at the calls: the same tasks, files, stop times and callbacks."""
    fine = scenario(0.5, seed)
    coarse = scenario(10_000.0, seed)
    assert fine[0] == coarse[0]
    assert fine[1] == coarse[1]
    assert any(kind == "RecordFileUploaded" for _, kind, _ in fine[1])
