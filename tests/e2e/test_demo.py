"""The README's first command, end to end, as a newcomer runs it."""

import subprocess

import pytest

from rtc_recording.cluster.processes import RTCREC

pytestmark = pytest.mark.cluster


def test_demo_runs_end_to_end_and_leaves_nothing_running():
    demo = subprocess.run([RTCREC, "demo"], capture_output=True, text=True, timeout=300)
    assert demo.returncode == 0, demo.stdout[-4000:] + demo.stderr[-4000:]
    out = demo.stdout
    assert "Summary: 7 recordings, 7 cloud tasks, 0 left running" in out
    table = [line.split() for line in out.splitlines() if line.lstrip().startswith("+")]
    # Everyone left: each of the six that were not deleted ended by its own idle timer.
    assert sorted(row[1] for row in table if row[-3:-1] == ["Completed", "IdleTimeout"]) == [
        "standup-42",
        "standup-42-bounded",
        "standup-42-grid",
        "standup-42-notified",
        "standup-42-streams",
        "standup-42-voices",
    ]
    assert "Updated" in out and "(deleted)" in out
    assert "STOPPED   Stopped" in out  # the deleted one was stopped by the operator
