"""The README's first command, end to end, as a newcomer runs it."""

import re
import subprocess

import pytest

from rtc_recording.cluster.processes import RTCREC

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def test_demo_runs_end_to_end_and_leaves_nothing_running():
    demo = subprocess.run([RTCREC, "demo"], capture_output=True, text=True, timeout=420)
    assert demo.returncode == 0, demo.stdout[-4000:] + demo.stderr[-4000:]
    out = demo.stdout
    assert "Summary: 7 recordings, 7 cloud tasks, 0 left running" in out
    table = [line.split() for line in out.splitlines() if line.lstrip().startswith("+")]
    # Applied before the meeting, every recording first waits for participants, then records once they join.
    waited = {row[1] for row in table if row[-3:-1] == ["Pending", "WaitingForParticipants"]}
    recorded = {row[1] for row in table if row[-3] == "Recording"}
    assert len(waited) == 7 and waited <= recorded, out[-6000:]
    # Everyone left: each of the six that were not deleted ended by its own idle timer.
    assert sorted(row[1] for row in table if row[-3:-1] == ["Completed", "IdleTimeout"]) == [
        "design-review",  # the class's recording, once Alice and Bob left: the class's maxIdleSeconds
        "standup-42",
        "standup-42-bounded",
        "standup-42-grid",
        "standup-42-notified",
        "standup-42-streams",
        "standup-42-voices",
    ]
    assert "Updated" in out and "(deleted)" in out
    # Carol added to standup-42, whose layout is the Grid preset: one Update, a pane each for three.
    grid = re.search(r"task \S+: 1 update, still RUNNING\n\s+its layout now: (.*)\n", out)
    assert grid and re.findall(r"(\w+) at \(", grid.group(1)) == ["alice", "bob", "carol"], out[-6000:]
    assert "STOPPED   Stopped" in out  # the deleted one was stopped by the operator

    # The classes and schedules act: the default class of examples/, listed as such ...
    klass = re.search(r"\$ kubectl get rtcrecclass\n\s+(NAME .*)\n\s+(.*)\n", out)
    assert klass, out[-6000:]
    row = dict(zip(klass.group(1).split(), klass.group(2).split(), strict=False))
    assert (row["NAME"], row["READY"], row["DEFAULT"], row["REGION"]) == ("standard", "True", "true", "cn-shanghai")
    # ... fills design-review, which names it: status says which class and generation, the task has its settings.
    assert "status.recordingClass: standard, generation 1, credentials rtc-platform/aliyun-recording" in out
    assert (
        "bucket demo-recordings, files HLS under meetings, MP4 under meetings, 1200 kbps video, MaxIdleTime 120, "
        "AccessKey LTAIdemoPlatformKey: all from the class" in out
    )
    # The schedule, run now with the plugin: one run, listed active, Recording, then Completed by its
    # durationSeconds (the operator's MaxDuration), one task of its own.
    (run,) = set(re.findall(r"rtcrecording\.rtc\.recording\.io/(all-hands-\d+) created \(a run of", out))
    assert re.search(rf"all-hands\s+True\s+0 9 \* \* 1\s+Europe/Berlin\s+false\s+{run}\s", out), out[-6000:]
    # Stopping shows only when the watch happens to see the Stop before its answer is written.
    run_rows = [row[-3:-1] for row in table if row[1] == run and row[-3] != "Stopping"]
    assert run_rows == [["Recording", "Started"], ["Completed", "MaxDuration"]]
    history = re.search(rf"\$ kubectl rtcrec history {run}\n\s+TASK .*\n((?:\s+\S.*\n)+?)\s+\$", out)
    rows = history.group(1).splitlines() if history else []
    assert [line.split()[-1] for line in rows] == ["MaxDuration", "docs/troubleshooting.md#maxduration"], out[-6000:]
    assert "with the class and the schedule: 2 recordings, 2 cloud tasks, 0 left running" in out
    assert "<invalid>" not in out  # kubectl get rtcrecsched shows the next run's time as it is
