"""plugin.py's pure parts: the tasks and files of a recording, as `kubectl rtcrec history|files` list them."""

from __future__ import annotations

from rtc_recording.plugin import file_rows, tasks_of

RUNNING = {"phase": "Recording", "taskId": "t2", "startTime": "2026-01-05T08:00:00Z", "files": {"hls": ["t2.m3u8"]}}
SUSPENDED_T1 = {
    "taskId": "t1",
    "startTime": "2026-01-05T07:00:00Z",
    "endTime": "2026-01-05T07:30:00Z",
    "reason": "Suspended",
    "files": {"hls": ["t1.m3u8"]},
}


def recording(**status) -> dict:
    return {"spec": {"storage": {"oss": {"bucket": "b"}}}, "status": status}


def test_a_recording_task_follows_its_history():
    tasks = tasks_of(recording(**RUNNING, history=[SUSPENDED_T1]))
    assert [(t["taskId"], t["current"]) for t in tasks] == [("t1", False), ("t2", True)]
    assert [r["url"] for r in file_rows(recording(**RUNNING, history=[SUSPENDED_T1]))] == [
        "oss://b/t1.m3u8",
        "oss://b/t2.m3u8",
    ]


def test_a_finished_task_is_listed_once():
    """Completed (or Failed after a task): status.history already holds the task that status.taskId names."""
    ended = {**SUSPENDED_T1, "taskId": "t2", "reason": "MaxDuration", "files": {"hls": ["t2.m3u8"]}}
    obj = recording(
        phase="Completed",
        reason="MaxDuration",
        taskId="t2",
        startTime="2026-01-05T08:00:00Z",
        completionTime="2026-01-05T09:00:00Z",
        files={"hls": ["t2.m3u8"]},
        history=[SUSPENDED_T1, ended],
    )
    tasks = tasks_of(obj)
    assert [(t["taskId"], t["current"], t["reason"]) for t in tasks] == [
        ("t1", False, "Suspended"),
        ("t2", True, "MaxDuration"),
    ]
    assert [r["object"] for r in file_rows(obj)] == ["t1.m3u8", "t2.m3u8"]
