"""The running emulator: idle timeout in scaled time, quota, faults, introspection, control API."""

from __future__ import annotations

import concurrent.futures
import time
from typing import Any

import pytest
from alibabacloud_tea_openapi.exceptions import ClientException, ServerException
from emulator_samples import APP, CHANNEL, individual, mixed, wait_for

from conftest import Sdk, sdk_client, vendor_error
from rtc_recording.emulator import EmulatorError, EmulatorHandle


def test_idle_timeout_in_scaled_time(start_emulator: Any) -> None:
    emulator = start_emulator(time_scale=120, stopping_seconds=2)
    control = emulator.control
    control.join(APP, CHANNEL, "alice")
    control.join(APP, CHANNEL, "bob", publish=False)
    sdk = Sdk(sdk_client(emulator))
    task_id = sdk.start(mixed("alice", "bob", MaxIdleTime=60))
    control.unpublish(APP, CHANNEL, "alice")  # nobody publishes: 60 emulated s = 0.5 real s
    wait_for(lambda: sdk.describe(task_id).task_info.status == "STOPPED")
    task = control.task(task_id)
    assert task["stopReason"] == "IdleTimeout"
    assert task["stoppedAt"] - task["createdAt"] >= 60 + 2  # idle window, then STOPPING


def test_quota_throttles_beyond_the_limit(emulator: EmulatorHandle) -> None:
    sdk = Sdk(sdk_client(emulator))

    def call(_: int) -> str:
        try:
            sdk.describe("no-such-task")
        except ClientException as error:
            assert error.status_code == 400
            return error.code
        raise AssertionError("Describe of an unknown task cannot succeed")

    began = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(call, range(60)))
    elapsed = time.monotonic() - began
    assert set(codes) <= {"NotFound.Task", "Throttling.User"}
    accepted = codes.count("NotFound.Task")
    assert accepted <= 50 * (int(elapsed) + 1)
    if elapsed < 1:  # all 60 inside one window: exactly the quota passes
        assert accepted == 50
    other_key = Sdk(sdk_client(emulator, sts=True))
    with pytest.raises(ClientException, match="NotFound.Task|Throttling"):
        other_key.describe("no-such-task")


def test_throttle_status_and_quota_are_settable(emulator: EmulatorHandle) -> None:
    emulator.control.set_faults(quota_per_second=1, throttle_status=429)
    sdk = Sdk(sdk_client(emulator))
    errors = []
    for _ in range(3):
        errors.append(vendor_error(lambda: sdk.describe("no-such-task")))
    throttled = [e for e in errors if e.code == "Throttling.User"]
    assert throttled and all(e.status_code == 429 for e in throttled)


def test_injected_server_errors(emulator: EmulatorHandle) -> None:
    emulator.control.join(APP, CHANNEL, "alice")
    emulator.control.set_faults(error_rates={"DescribeRtcCloudRecordingFiles": 1.0})
    sdk = Sdk(sdk_client(emulator))
    task_id = sdk.start(individual())
    error = vendor_error(lambda: sdk.describe(task_id))
    assert isinstance(error, ServerException)
    assert (error.code, error.status_code) in {("InternalError", 500), ("ServiceUnavailable", 503)}


def test_injected_errors_replay_under_a_seed(start_emulator: Any) -> None:
    def outcomes(seed: int) -> list[str]:
        emulator = start_emulator(seed=seed, error_rates={"*": 0.5})
        sdk = Sdk(sdk_client(emulator))
        return [vendor_error(lambda: sdk.describe("t")).code for _ in range(20)]

    first = outcomes(3)
    assert first == outcomes(3)
    assert {"NotFound.Task", "InternalError", "ServiceUnavailable"} >= set(first) > {"NotFound.Task"}


def test_latency(start_emulator: Any) -> None:
    emulator = start_emulator(latency_seconds=0.2)
    began = time.monotonic()
    vendor_error(lambda: Sdk(sdk_client(emulator)).describe("t"))
    assert time.monotonic() - began >= 0.2


def test_start_committed_but_answer_dropped(emulator: EmulatorHandle) -> None:
    emulator.control.join(APP, CHANNEL, "alice")
    emulator.control.set_faults(drop_start_rate=1.0)
    error = vendor_error(lambda: Sdk(sdk_client(emulator)).start(individual()))
    assert not isinstance(error, ClientException | ServerException)  # no answer at all: unknown outcome
    assert "Connection aborted" in str(error) or "RemoteDisconnected" in str(error)
    tasks = emulator.control.tasks(app_id=APP, channel_id=CHANNEL)
    assert [t["status"] for t in tasks] == ["RUNNING"]


def test_forced_recovering(emulator: EmulatorHandle) -> None:
    emulator.control.join(APP, CHANNEL, "alice")
    sdk = Sdk(sdk_client(emulator))
    task_id = sdk.start(individual())
    emulator.control.recover(task_id, 30)
    assert sdk.describe(task_id).task_info.status == "RECOVERING"
    sdk.update({"TaskId": task_id, "SubscribeParams": {"SubscribeUserIdList": [{"UserId": "bob"}]}})
    emulator.control.advance(30)
    assert sdk.describe(task_id).task_info.status == "RUNNING"
    sdk.stop(task_id)
    with pytest.raises(EmulatorError) as error:
        emulator.control.recover(task_id, 30)
    assert error.value.status == 409


def test_vanished_task(emulator: EmulatorHandle) -> None:
    emulator.control.join(APP, CHANNEL, "alice")
    sdk = Sdk(sdk_client(emulator))
    task_id = sdk.start(individual())
    emulator.control.vanish(task_id)
    assert vendor_error(lambda: sdk.describe(task_id)).code == "NotFound.Task"
    assert vendor_error(lambda: sdk.stop(task_id)).code == "NotFound.Task"
    task = emulator.control.task(task_id)
    assert (task["vanished"], task["status"], task["stopReason"]) == (True, "STOPPED", "Vanished")


def test_max_duration_and_retention(emulator: EmulatorHandle) -> None:
    emulator.control.join(APP, CHANNEL, "alice")
    sdk = Sdk(sdk_client(emulator))
    task_id = sdk.start(individual())  # alice keeps publishing: only the 72 h limit ends it
    emulator.control.advance(72 * 3600 + 2)
    task = emulator.control.task(task_id)
    assert (task["status"], task["stopReason"]) == ("STOPPED", "MaxDuration")
    assert sdk.describe(task_id).task_info.status == "STOPPED"
    emulator.control.advance(3 * 86400)
    assert vendor_error(lambda: sdk.describe(task_id)).code == "NotFound.Task"
    assert emulator.control.task(task_id)["expired"] is True


def test_introspection_filters_and_history(emulator: EmulatorHandle) -> None:
    control = emulator.control
    control.join(APP, CHANNEL, "alice")
    control.join(APP, "room2", "alice")
    sdk = Sdk(sdk_client(emulator))
    first = sdk.start(individual())
    second = sdk.start(individual())  # a duplicate: the vendor has no idempotency token
    other = sdk.start(individual(ChannelId="room2"))
    sdk.update({"TaskId": first, "SubscribeParams": {"SubscribeUserIdList": [{"UserId": "alice"}, {"UserId": "bob"}]}})
    sdk.update({"TaskId": first, "SubscribeParams": {"SubscribeUserIdList": [{"UserId": "bob"}]}})
    sdk.stop(second)
    assert {t["taskId"] for t in control.tasks(app_id=APP, channel_id=CHANNEL)} == {first, second}
    assert [t["taskId"] for t in control.tasks(status="RUNNING")] == [first, other]
    assert [t["taskId"] for t in control.tasks(status="STOPPING")] == [second]
    view = control.task(first)
    assert view["updates"] == 2 and [s["userId"] for s in view["subscribers"]] == ["bob"]
    assert view["params"]["RecordParams"] == {"RecordMode": 0}
    assert view["history"][0]["SubscribeParams"]["SubscribeUserIdList"][1] == {"UserId": "bob"}
    assert control.tasks(app_id="other-app") == []


def test_control_errors_and_reset(emulator: EmulatorHandle) -> None:
    control = emulator.control
    with pytest.raises(EmulatorError) as unknown_user:
        control.leave(APP, CHANNEL, "ghost")
    assert unknown_user.value.status == 404
    with pytest.raises(EmulatorError) as unknown_task:
        control.task("nope")
    assert unknown_task.value.status == 404
    with pytest.raises(EmulatorError) as bad_knob:
        control.set_faults(nonsense=1)
    assert bad_knob.value.status == 400
    control.join(APP, CHANNEL, "alice", screen=True)
    assert control.channels() == [
        {"appId": APP, "channelId": CHANNEL, "users": {"alice": ["audio", "camera", "screen"]}}
    ]
    control.unpublish(APP, CHANNEL, "alice", audio=False)
    control.publish(APP, CHANNEL, "alice", audio=False, camera=False, screen=True)
    assert control.channels()[0]["users"] == {"alice": ["audio", "screen"]}
    Sdk(sdk_client(emulator)).start(individual())
    control.set_faults(latency_seconds=0.01, error_rates={"StopRtcCloudRecording": 0.5})
    assert control.faults()["error_rates"] == {"StopRtcCloudRecording": 0.5}
    control.reset()
    assert control.tasks() == [] and control.channels() == []
    assert control.faults()["latency_seconds"] == 0 and control.faults()["error_rates"] == {}
    assert control.health()["ok"] is True
