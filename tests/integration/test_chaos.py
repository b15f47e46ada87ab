"""A chaos run at 50 resources ends clean (issue 13, part 6: counts, never times; the timed
version with 300 is `make bench SCENARIOS=e`).

50 creates while the emulator answers 20% of all calls with a 5xx, loses 10% of the Start
answers (the task runs, the connection is closed) and adds latency; the operator is SIGKILLed
five times and the receiver twice (down during the Starts and for at least 6 s, so that the start
callbacks of lost answers are lost too and such a duplicate can only be found by its HLS slices).
Once the faults stop, the state must settle with 0 duplicates alive, 0 leaks, 0 stuck, 0 wrong;
then a delete-all with two more kills must leave no resource and no live task behind.

- duplicate: a resource whose channel has more than one live task (each has its own channel);
- leak: a live task in these channels that no resource's status names;
- stuck: a resource not Recording, Completed or Failed;
- wrong: a Recording resource whose status names a task that is not live.
"""

from __future__ import annotations

import random
import time
from collections import Counter

import pytest

from .conftest import APP, apply_many, items, one_user_recording, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

N = 50
LIVE = ("RUNNING", "RECOVERING")


def audit(stack, namespace: str, channels: list[str]) -> dict[str, int]:
    resources = items(stack, namespace)
    tasks = [t for c in channels for t in stack.tasks(c)]
    live = [t for t in tasks if t["status"] in LIVE]
    live_ids = {t["taskId"] for t in live}
    named = {(i.get("status") or {}).get("taskId") for i in resources} - {None}
    per_channel = Counter(t["channelId"] for t in live)
    phases = [(i.get("status") or {}).get("phase") for i in resources]
    return {
        "resources": len(resources),
        "live": len(live),
        "tasks": len(tasks),
        "duplicates": sum(1 for i in resources if per_channel[i["spec"]["channelId"]] > 1),
        "leaks": sum(1 for t in live if t["taskId"] not in named),
        "stuck": sum(1 for p in phases if p not in ("Recording", "Completed", "Failed")),
        "wrong": sum(
            1
            for i in resources
            if (i.get("status") or {}).get("phase") == "Recording" and i["status"].get("taskId") not in live_ids
        ),
        "failed": phases.count("Failed"),
    }


def clean(a: dict[str, int]) -> bool:
    return a["duplicates"] == a["leaks"] == a["stuck"] == a["wrong"] == 0


def test_faults_and_kills_settle_with_no_duplicate_leak_stuck_or_wrong(stack, namespace, emulator):
    rng = random.Random(13)
    channels = [f"chaos-{namespace}-{i}" for i in range(N)]
    for channel in channels:
        emulator.control.join(APP, channel, "alice")
    dropped_before = emulator.control.stats()["droppedStartAnswers"]
    emulator.control.set_faults(error_rates={"*": 0.2}, drop_start_rate=0.1, latency_seconds=0.3)
    # The receiver is down while the Starts go out: the start callbacks of a task whose answer was
    # lost go nowhere (their resends too), so after the grace period (3 s here) a second attempt is
    # made, and the first task is a duplicate that only its HLS slices can expose once the receiver
    # is back. Without the reaping of strays this run ends with leaks.
    stack.receiver.kill()
    try:
        apply_many(stack, namespace, [one_user_recording(f"c-{i}", c) for i, c in enumerate(channels)])
        applied = time.monotonic()
        recording_at_first_kill = None
        for kill in range(5):
            time.sleep(rng.uniform(1, 3))
            if kill == 0:
                recording_at_first_kill = [(i.get("status") or {}).get("phase") for i in items(stack, namespace)].count(
                    "Recording"
                )
            stack.operator.kill()
            stack.operator.start()
            if kill == 2:  # back after at least twice the grace period
                time.sleep(max(0.0, applied + 6 - time.monotonic()))
                stack.receiver.start()
        stack.receiver.kill()  # and once more, started again at once
        stack.receiver.start()
        time.sleep(rng.uniform(1, 3))
    finally:
        emulator.control.set_faults(error_rates={}, drop_start_rate=0, latency_seconds=0)
        if stack.receiver.proc is None or stack.receiver.proc.poll() is not None:
            stack.receiver.start()
    # The chaos bit: the kills came while the work was under way, and answers were lost.
    assert recording_at_first_kill is not None and recording_at_first_kill < N, recording_at_first_kill
    assert emulator.control.stats()["droppedStartAnswers"] > dropped_before

    try:
        wait_for(
            lambda: clean(audit(stack, namespace, channels)),
            timeout=90,
            interval=1,
            what="a clean state after the chaos",
            details=lambda: str(audit(stack, namespace, channels)),
        )
    finally:
        final = audit(stack, namespace, channels)
    assert final["resources"] == N
    assert (final["duplicates"], final["leaks"], final["stuck"], final["wrong"]) == (0, 0, 0, 0), final
    assert final["failed"] == 0, final  # nothing here is a permanent refusal
    assert final["live"] == N, final  # one live task per resource

    # Delete everything, with two more kills while the Stops go out.
    stack.cluster.kubectl("delete", "rtcrec", "--all", "-n", namespace, "--wait=false")
    for _ in range(2):
        time.sleep(rng.uniform(1, 3))
        stack.operator.kill()
        stack.operator.start()
    wait_for(
        lambda: (a := audit(stack, namespace, channels))["resources"] == 0 and a["live"] == 0,
        timeout=90,
        interval=1,
        what="every resource gone and every task stopped",
        details=lambda: str(audit(stack, namespace, channels)),
    )
