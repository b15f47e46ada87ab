"""An operator restart with 200 resources Recording resumes every one of them without a cloud call
(issue 13, part 6: counts, never times; the timed version with 10 000 is `make bench SCENARIOS=c`).

The shared operator is replaced for the restart by one that watches only this module's namespace,
so that every call it makes and every decision it counts (`rtcrec_reconciles_total`) is for these
200 (the emulator counts calls for the whole session). The dispatcher and the handlers are the same; only
the watch is namespaced.

- With the chart's poll settings (60 s, 5 times less often with a receiver) the poller's first
  visit of a task comes 150-300 s after the operator has seen it (docs/scale.md), so during the
  resume not even a Describe is made, and no object is written.
- With the suite's poll settings (2 s, factor 1) the poller describes at once: each task 1-2 s
  after it was seen, within its own share of the quota (10/s). Those Describes are counted apart;
  a resume that described every task itself would spend 200 in one go at the full 50/s.
"""

from __future__ import annotations

import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

from rtc_recording.cluster.launcher import free_port
from rtc_recording.cluster.processes import RtcrecProcess

from .conftest import ACCESS_KEY, APP, apply_many, items, metric_total, one_user_recording, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

N = 200
CHANGING = ("StartRtcCloudRecording", "StopRtcCloudRecording", "UpdateRtcCloudRecording")
DESCRIBE = "DescribeRtcCloudRecordingFiles"


@pytest.fixture(scope="module")
def recorded(stack):
    """N resources in a namespace of their own, all Recording (started by the shared operator)."""
    namespace = f"scale-{uuid.uuid4().hex[:8]}"
    stack.cluster.kubectl("create", "namespace", namespace)
    channels = [f"{namespace}-{i}" for i in range(N)]
    for channel in channels:
        stack.emulator.control.join(APP, channel, "alice")
    apply_many(stack, namespace, [one_user_recording(f"r-{i}", c) for i, c in enumerate(channels)])
    wait_for(
        lambda: [(i.get("status") or {}).get("phase") for i in items(stack, namespace)].count("Recording") == N,
        timeout=120,
        what=f"{N} Recording",
    )
    yield namespace, channels
    stack.cluster.kubectl("delete", "rtcrec", "--all", "-n", namespace, "--timeout=120s", check=False)


def quiet(stack, namespace: str) -> bool:
    """All Recording (a status that says so was written, and its Event posted, by the same handler)."""
    statuses = [i.get("status") or {} for i in items(stack, namespace)]
    return len(statuses) == N and all(s.get("phase") == "Recording" for s in statuses)


@contextmanager
def namespaced_operator(stack, namespace: str, log: Path, before=lambda: None, **settings):
    """The shared operator stopped (`before` is called then), one watching only `namespace` in its
    place (None drops a setting: the default applies); the shared one is started again afterwards."""
    wait_for(lambda: quiet(stack, namespace), timeout=60, what="the shared operator done with them")
    stack.operator.kill()
    time.sleep(1)  # a request it had sent may still land
    before()
    env = {**stack.env, "RTCREC_NAMESPACES": namespace, "RTCREC_METRICS_PORT": str(free_port())}
    for name, value in settings.items():
        env.pop(f"RTCREC_{name.upper()}", None)
        if value is not None:
            env[f"RTCREC_{name.upper()}"] = str(value)
    operator = RtcrecProcess("run", env, log).start()
    operator.port = int(env["RTCREC_METRICS_PORT"])
    try:
        yield operator
    finally:
        operator.stop()
        stack.operator.start()


def resumed(operator) -> float:
    """Resumes the operator decided on: a Recording resource's resume decides "nothing". The
    operator watches only this namespace, so this counts these resources and no other."""
    try:
        return metric_total(operator.port, "rtcrec_reconciles_total", action="nothing")
    except OSError:  # not serving yet
        return 0


def calls(emulator) -> dict[str, int]:
    return dict(emulator.control.stats()["calls"]["byAccessKeyIdAndAction"].get(ACCESS_KEY[0], {}))


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {
        k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before) if after.get(k, 0) != before.get(k, 0)
    }


def test_a_restart_with_200_recording_resumes_every_one_without_a_call_or_a_write(stack, emulator, recorded, tmp_path):
    namespace, channels = recorded
    seen: dict = {}

    def snapshot() -> None:
        seen["versions"] = {i["metadata"]["name"]: i["metadata"]["resourceVersion"] for i in items(stack, namespace)}
        seen["tasks"] = {t["taskId"] for c in channels for t in stack.tasks(c)}
        seen["calls"] = calls(emulator)

    log = tmp_path / "operator.log"
    with namespaced_operator(
        stack, namespace, log, before=snapshot, poll_interval_seconds=None, poll_factor_with_callbacks=None
    ) as operator:
        versions, tasks, before = seen["versions"], seen["tasks"], seen["calls"]
        wait_for(
            lambda: resumed(operator) == N,
            timeout=60,
            what=f"{N} resumes",
            details=lambda: f"{resumed(operator)} resumed\n{log.read_text()[-3000:]}",
        )
        time.sleep(3)  # whatever a resume would do after it was decided
        made = delta(calls(emulator), before)
        assert made == {}, f"the resume called the cloud: {made}"
        assert len(versions) == N and resumed(operator) == N
        assert metric_total(operator.port, "rtcrec_reconciles_total") == N
        assert metric_total(operator.port, "rtcrec_recordings", phase="Recording") == N
        assert metric_total(operator.port, "rtcrec_cloud_calls_total") == 0
        # Not one object was written (no status, no finalizer), no task was made.
        assert {i["metadata"]["name"]: i["metadata"]["resourceVersion"] for i in items(stack, namespace)} == versions
        assert {t["taskId"] for c in channels for t in stack.tasks(c)} == tasks


def test_with_a_2_s_poll_interval_the_poller_describes_at_once_and_nothing_else_is_called(
    stack, emulator, recorded, tmp_path
):
    namespace, channels = recorded
    log = tmp_path / "operator.log"
    seen: dict = {}
    with namespaced_operator(stack, namespace, log, before=lambda: seen.update(calls=calls(emulator))) as operator:
        before, started = seen["calls"], time.monotonic()  # the suite's poll settings: 2 s, factor 1
        wait_for(lambda: resumed(operator) == N, timeout=60, what=f"{N} resumes")
        time.sleep(3)
        made = delta(calls(emulator), before)
        window = time.monotonic() - started
        assert {k: v for k, v in made.items() if k in CHANGING} == {}, f"the resume changed something: {made}"
        # The poller's Describes, counted apart: they come at once with this interval, but at the
        # poller's pace (10/s), never as one Describe per resumed task in a burst.
        describes = made.get(DESCRIBE, 0)
        assert 0 < describes <= 10 * window + 10, (describes, window)
        assert resumed(operator) == N
    assert all(t["status"] == "RUNNING" for c in channels for t in stack.tasks(c))
