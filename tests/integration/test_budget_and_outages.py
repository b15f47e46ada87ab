"""One budget per account, evidence that survives a brown-out, no pile-ups, fast recovery.

Each test here can fail without the design it checks: adoption that needs the cloud while
the cloud is down, a write-ahead made before the quota wait, retries that grow through an
outage, Stops of tasks already stopped, a second process spending the account's quota.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from contextlib import contextmanager

import pytest

from rtc_recording.cluster.launcher import free_port
from rtc_recording.cluster.processes import RtcrecProcess

from .conftest import APP, items, recording, wait_for

pytestmark = pytest.mark.cluster


@pytest.fixture(autouse=True)
def _delete_afterwards(stack, namespace):
    """Hundreds of live tasks left behind would slow the shared poller for the tests after these."""
    yield
    stack.cluster.kubectl("delete", "rtcrec", "--all", "-n", namespace, "--timeout=120s", check=False)


def metric(port: int, name: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include `labels` (0 when none). Waits for /metrics to
    listen: a test run alone may start before the operator has."""
    text = wait_for(lambda: _scrape(port), timeout=30, what=f"/metrics on port {port}")
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, value = line.rsplit(" ", 1)
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


def _scrape(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            return resp.read().decode()
    except (ConnectionRefusedError, urllib.error.URLError):
        return None


@contextmanager
def own_operator(stack, tmp_path, **settings):
    """The shared operator stopped, one with these settings in its place (same receiver)."""
    stack.operator.kill()
    port = free_port()
    env = {
        **stack.env,
        "RTCREC_METRICS_PORT": str(port),
        **{f"RTCREC_{k.upper()}": str(v) for k, v in settings.items()},
    }
    operator = RtcrecProcess("run", env, tmp_path / "operator.log").start()
    operator.port = port
    try:
        yield operator
    finally:
        operator.stop()
        stack.operator.start()


def channels(emulator, count: int, prefix: str) -> list[str]:
    names = [f"{prefix}-{i}" for i in range(count)]
    for name in names:
        emulator.control.join(APP, name, "alice")
    return names


def one_user(name: str, channel: str, **spec) -> dict:
    return recording(
        name,
        channel,
        subscribers=[{"userId": "alice"}],
        layout={"panes": [{"userId": "alice", "left": "0", "top": "0", "width": "1", "height": "1"}]},
        **spec,
    )


def apply_all(stack, namespace: str, manifests: list[dict]) -> None:
    stack.cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests})
    )


def phases(stack, namespace: str) -> dict[str, str]:
    return {i["metadata"]["name"]: (i.get("status") or {}).get("phase") for i in items(stack, namespace)}


def all_recording(stack, namespace: str, count: int, timeout: float) -> None:
    wait_for(
        lambda: list(phases(stack, namespace).values()).count("Recording") == count,
        timeout=timeout,
        what=f"{count} recordings in {namespace}",
        details=lambda: str(phases(stack, namespace)),
    )


def live(stack, channel: str) -> list[dict]:
    return [t for t in stack.tasks(channel) if t["status"] in ("RUNNING", "RECOVERING")]


def test_a_lost_answer_whose_task_calls_back_during_a_brown_out_is_adopted(stack, namespace, channel, emulator):
    # A Start's task starts but its answer is lost, and every other call fails (5xx): the
    # callbacks of that task are the only news, and Describe cannot confirm them for a while.
    emulator.control.set_faults(
        drop_start_rate=1.0,
        error_rates={
            "DescribeRtcCloudRecordingFiles": 1.0,
            "StopRtcCloudRecording": 1.0,
            "UpdateRtcCloudRecording": 1.0,
        },
    )
    try:
        stack.apply(namespace, recording("browned", channel))
        [task] = wait_for(lambda: stack.tasks(channel), what="the task of the lost answer")
        wait_for(
            lambda: [e for e in stack.evidence() if e["data"]["task_id"] == task["taskId"]],
            timeout=15,
            what="the callback's evidence",
        )
        # Well past the grace period (3 s here): no second Start, the evidence waits for the cloud.
        time.sleep(8)
        assert len(stack.tasks(channel)) == 1
        assert stack.status(namespace, "browned").get("taskId") is None
    finally:
        emulator.control.set_faults(drop_start_rate=0, error_rates={})
    status = stack.wait_phase(namespace, "browned", "Recording", timeout=30)
    assert status["taskId"] == task["taskId"] and status["attempt"]["number"] == 1
    assert [t["taskId"] for t in live(stack, channel)] == [task["taskId"]]


@pytest.mark.slow  # hundreds of Starts and Stops at the quota's pace, or a minute of outage
def test_a_hung_cloud_makes_no_extra_tasks_once_it_returns(stack, namespace, emulator):
    rooms = channels(emulator, 5, f"hung-{namespace}")
    emulator.control.hang(20)  # nothing answered for 20 s; what arrived meanwhile is executed then
    apply_all(stack, namespace, [one_user(f"hung-{i}", room) for i, room in enumerate(rooms)])
    wait_for(
        lambda: emulator.control.hang_state()["waiting"] >= len(rooms),
        timeout=15,
        what="the Starts to be held by the hung cloud",
    )
    wait_for(lambda: not emulator.control.hang_state()["active"], timeout=30, what="the hang to end")
    all_recording(stack, namespace, len(rooms), timeout=60)
    for i, room in enumerate(rooms):
        # Each Start that timed out was executed late, called back and was adopted: no extra task.
        assert len(stack.tasks(room)) == 1, stack.tasks(room)
        assert stack.status(namespace, f"hung-{i}")["taskId"] == stack.tasks(room)[0]["taskId"]


@pytest.mark.slow  # hundreds of Starts and Stops at the quota's pace, or a minute of outage
def test_a_kill_with_queued_starts_leaves_attempts_only_for_starts_sent(stack, namespace, emulator, tmp_path):
    rooms = channels(emulator, 100, f"q-{namespace}")
    with own_operator(stack, tmp_path, quota_per_second=5) as operator:  # 100 Starts need 20 s
        apply_all(stack, namespace, [one_user(f"q-{i}", room) for i, room in enumerate(rooms)])
        wait_for(lambda: sum(len(stack.tasks(r)) for r in rooms) >= 10, timeout=30, what="some Starts sent")
        operator.kill()
        recorded = sum(1 for i in items(stack, namespace) if (i.get("status") or {}).get("attempt"))
        sent = sum(len(stack.tasks(r)) for r in rooms)
        # Written ahead only once the quota let the call go: at most the one in flight more.
        assert sent >= 10 and recorded <= sent + 1, (recorded, sent)
    all_recording(stack, namespace, len(rooms), timeout=120)
    assert all(len(live(stack, r)) == 1 for r in rooms)


def test_deleting_everything_stops_no_task_twice(stack, namespace, emulator):
    rooms = channels(emulator, 20, f"del-{namespace}")
    apply_all(stack, namespace, [one_user(f"del-{i}", room) for i, room in enumerate(rooms)])
    all_recording(stack, namespace, len(rooms), timeout=60)
    port = int(stack.env["RTCREC_METRICS_PORT"])
    before = metric(port, "rtcrec_cloud_calls_total", verb="stop")
    ok_before = metric(port, "rtcrec_cloud_calls_total", verb="stop", code="OK")
    stack.cluster.kubectl("delete", "rtcrec", "--all", "-n", namespace, "--wait=true", "--timeout=60s")
    assert all(not live(stack, r) for r in rooms)
    time.sleep(5)  # late callbacks (TaskStopping, TaskStopped, last slices) arrive
    stops = metric(port, "rtcrec_cloud_calls_total", verb="stop") - before
    assert stops == len(rooms)  # one Stop per task, no Stop of a task already stopped
    assert metric(port, "rtcrec_cloud_calls_total", verb="stop", code="OK") - ok_before == len(rooms)
    assert "Traceback" not in stack.receiver.output()


@pytest.mark.slow  # hundreds of Starts and Stops at the quota's pace, or a minute of outage
def test_recovery_after_an_outage_takes_seconds_not_backoff_minutes(stack, namespace, emulator, tmp_path):
    rooms = channels(emulator, 10, f"out-{namespace}")
    # Production backoff (2 s doubling to 300 s): through a 40 s outage it would grow past a minute.
    with own_operator(stack, tmp_path, backoff_base_seconds=2, backoff_max_seconds=300):
        emulator.control.set_faults(error_rates={"*": 1.0})
        try:
            apply_all(stack, namespace, [one_user(f"out-{i}", room) for i, room in enumerate(rooms)])
            time.sleep(40)
        finally:
            emulator.control.set_faults(error_rates={})
        all_recording(stack, namespace, len(rooms), timeout=30)  # the bound the issue sets
    assert all(len(live(stack, r)) == 1 for r in rooms)


@pytest.mark.slow  # hundreds of Starts and Stops at the quota's pace, or a minute of outage
def test_with_callbacks_300_starts_spend_one_budget_and_are_never_throttled(stack, namespace, emulator):
    rooms = channels(emulator, 300, f"b-{namespace}")
    port = int(stack.env["RTCREC_METRICS_PORT"])
    calls_before = metric(port, "rtcrec_cloud_calls_total")
    emulator.control.reset_stats()
    apply_all(stack, namespace, [one_user(f"b-{i}", room) for i, room in enumerate(rooms)])
    all_recording(stack, namespace, len(rooms), timeout=120)
    stats = emulator.control.stats()
    assert stats["throttled"]["total"] == 0
    # Every call the emulator answered for the account's key is one the operator made: the
    # receiver has no credentials and no cloud client at all. The poller keeps describing, and the
    # emulator counts a call when it arrives, the operator when its answer is back: wait for that.
    answered = stats["calls"]["byAccessKeyId"].get(stack.env["ALIBABA_CLOUD_ACCESS_KEY_ID"], 0)
    wait_for(
        lambda: metric(port, "rtcrec_cloud_calls_total") - calls_before >= answered,
        timeout=10,
        what=f"the operator to count the {answered} calls the emulator answered",
    )
    receiver_metrics = int(stack.env["RTCREC_RECEIVER_METRICS_PORT"])
    assert metric(receiver_metrics, "rtcrec_cloud_calls_total") == 0
    assert metric(receiver_metrics, "rtcrec_callbacks_total", outcome="ignored") > 0
