"""Fault knobs and counters that the operator's tests drive: a hung service, a timed
outage, call and callback counters (counted, never timed)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from typing import Any

import pytest
from alibabacloud_tea_openapi.exceptions import ClientException, ServerException
from emulator_samples import APP, CHANNEL, Receiver, individual, wait_for

from conftest import Sdk, make_config, sdk_client, vendor_error
from rtc_recording.emulator import EmulatorError, EmulatorHandle
from rtc_recording.emulator.server import Emulator

START = "StartRtcCloudRecording"
DESCRIBE = "DescribeRtcCloudRecordingFiles"


@pytest.fixture
def in_channel(emulator: EmulatorHandle) -> EmulatorHandle:
    emulator.control.join(APP, CHANNEL, "alice")
    emulator.control.join(APP, "room2", "alice")
    return emulator


class TestHang:
    def test_a_start_that_timed_out_runs_when_the_hang_ends(self, in_channel: EmulatorHandle) -> None:
        control = in_channel.control
        assert control.hang(60)["active"] is True
        impatient = Sdk(sdk_client(in_channel, read_timeout=300))
        error = vendor_error(lambda: impatient.start(individual()))
        assert not isinstance(error, ClientException | ServerException)  # no answer at all
        assert "timed out" in str(error).lower() or "timeout" in str(error).lower()
        assert control.hang_state()["waiting"] == 1 and control.tasks() == []
        assert control.stats()["calls"]["total"] == 0  # counted once answered

        state = control.hang(0)  # the service comes back: what it received runs now
        assert state["active"] is False
        [task] = wait_for(control.tasks)
        assert task["status"] == "RUNNING"
        stats = wait_for(lambda: (s := control.stats())["calls"]["total"] == 1 and s)
        assert stats["calls"]["byActionAndCode"] == {START: {"OK": 1}}
        assert stats["hang"] == {"active": False, "remainingSeconds": 0, "waiting": 0, "held": 1}

    def test_held_calls_run_in_arrival_order(self, in_channel: EmulatorHandle) -> None:
        control = in_channel.control
        control.hang(60)
        sdk = Sdk(sdk_client(in_channel))
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            futures = []
            for n, channel in enumerate([CHANNEL, "room2", CHANNEL]):
                futures.append(pool.submit(sdk.start, individual(ChannelId=channel)))
                wait_for(lambda n=n: control.hang_state()["waiting"] == n + 1)
            assert not any(f.done() for f in futures)
            control.hang(0)
            task_ids = [f.result(timeout=10) for f in futures]
        assert [t["taskId"] for t in control.tasks()] == task_ids
        assert [t["channelId"] for t in control.tasks()] == [CHANNEL, "room2", CHANNEL]

    def test_held_calls_meet_the_quota_as_they_arrived(self, in_channel: EmulatorHandle) -> None:
        """Admitted at 1 call per second as they came, so all run when the hang ends, at once."""
        control = in_channel.control
        control.set_faults(quota_per_second=1)
        control.hang(60)
        sdk = Sdk(sdk_client(in_channel))
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            futures = []
            for n in range(3):
                if n:
                    time.sleep(1.05)  # a new quota second for each
                futures.append(pool.submit(sdk.start, individual()))
                wait_for(lambda n=n: control.hang_state()["waiting"] == n + 1)
            control.hang(0)
            assert len({f.result(timeout=10) for f in futures}) == 3
        assert control.stats()["throttled"]["total"] == 0

    def test_a_hang_ends_by_itself_and_spares_the_control_api(self, in_channel: EmulatorHandle) -> None:
        control = in_channel.control
        control.hang(0.2)
        assert control.health()["ok"] is True  # the control API never hangs
        assert vendor_error(lambda: Sdk(sdk_client(in_channel)).describe("t")).code == "NotFound.Task"
        assert control.hang_state()["active"] is False

    def test_bad_input_and_reset(self, in_channel: EmulatorHandle) -> None:
        with pytest.raises(EmulatorError) as bad:
            in_channel.control.hang(-1)
        assert bad.value.status == 400
        in_channel.control.hang(60)
        in_channel.control.reset()
        assert in_channel.control.hang_state()["active"] is False


class TestOutage:
    def test_every_call_fails_until_the_knob_reverts(self, in_channel: EmulatorHandle) -> None:
        control = in_channel.control
        knobs = control.set_faults(error_rates={"*": 1.0}, revert_after_seconds=0.5)
        assert knobs["error_rates"] == {"*": 1.0}
        sdk = Sdk(sdk_client(in_channel))
        for call in (lambda: sdk.start(individual()), lambda: sdk.describe("t"), lambda: sdk.stop("t")):
            error = vendor_error(call)
            assert isinstance(error, ServerException) and error.status_code in (500, 503)
        assert control.tasks() == []  # a refused Start creates nothing
        wait_for(lambda: control.faults()["error_rates"] == {}, timeout=10)
        assert sdk.start(individual())
        codes = control.stats()["calls"]["byActionAndCode"]
        assert sum(codes[START].values()) == 2 and codes[START]["OK"] == 1

    async def test_a_revert_leaves_a_later_change_alone(self) -> None:
        emulator = Emulator(make_config())
        emulator.set_faults({"error_rates": {"*": 1.0}, "latency_seconds": 0.5}, revert_after=0.01)
        emulator.set_faults({"latency_seconds": 0.25})
        await asyncio.sleep(0.1)
        assert emulator.knobs.error_rates == {} and emulator.knobs.latency_seconds == 0.25

    def test_revert_must_be_positive(self, emulator: EmulatorHandle) -> None:
        with pytest.raises(EmulatorError) as bad:
            emulator.control.set_faults(latency_seconds=1, revert_after_seconds=0)
        assert bad.value.status == 400 and emulator.control.faults()["latency_seconds"] == 0


class TestStats:
    def test_calls_by_action_key_and_answer(self, start_emulator: Any) -> None:
        emulator = start_emulator(
            access_keys={"AK1": "secret1", "AK2": "secret2"}, accounts={"AK2": "acct-2"}, quota_per_second=1
        )
        control = emulator.control
        control.join(APP, CHANNEL, "alice")
        first, second = Sdk(sdk_client(emulator)), Sdk(sdk_client(emulator, key=("AK2", "secret2")))
        task_id = first.start(individual())
        describes = 0
        while describes < 100:  # until one falls in the same second as the call before it
            describes += 1
            try:
                first.describe(task_id)
            except ClientException as error:
                assert error.code == "Throttling.User"
                break
        vendor_error(lambda: second.stop(task_id))
        vendor_error(lambda: Sdk(sdk_client(emulator, key=("AK1", "wrong"))).describe(task_id))
        stats = control.stats()
        calls = stats["calls"]
        assert calls["total"] == describes + 3
        assert calls["byAction"] == {START: 1, DESCRIBE: describes + 1, "StopRtcCloudRecording": 1}
        assert calls["byAccessKeyId"] == {"AK1": describes + 1, "AK2": 1, "(unauthenticated)": 1}
        assert calls["byAccessKeyIdAndAction"]["AK1"] == {START: 1, DESCRIBE: describes}
        described_ok = {"OK": describes - 1} if describes > 1 else {}
        assert calls["byActionAndCode"] == {
            START: {"OK": 1},
            DESCRIBE: {**described_ok, "Throttling.User": 1, "SignatureDoesNotMatch": 1},
            "StopRtcCloudRecording": {"NotFound.Task": 1},
        }
        assert sum(calls["byUserAgent"].values()) == describes + 3
        assert stats["throttled"] == {"total": 1, "byAccessKeyId": {"AK1": 1}}
        assert stats["liveTasks"] == {"total": 1, "byAccount": {"default": [task_id]}}

        zeroed = control.reset_stats()
        assert zeroed["calls"]["total"] == 0 and zeroed["throttled"]["total"] == 0
        assert zeroed["liveTasks"]["total"] == 1  # tasks stay

    def test_dropped_start_answers(self, in_channel: EmulatorHandle) -> None:
        in_channel.control.set_faults(drop_start_rate=1.0)
        vendor_error(lambda: Sdk(sdk_client(in_channel)).start(individual()))
        stats = in_channel.control.stats()
        assert stats["droppedStartAnswers"] == 1 and stats["calls"]["byActionAndCode"] == {START: {"OK": 1}}

    def test_callback_counts(self, in_channel: EmulatorHandle, receiver: Receiver) -> None:
        receiver.respond = lambda body: 500 if body["eventType"] == "TaskStarting" else 200
        control = in_channel.control
        sdk = Sdk(sdk_client(in_channel))
        sdk.start(individual(NotifyUrl=f"{receiver.url}/cb"))
        counts = wait_for(lambda: (c := control.callback_counts())["pending"] == 0 and c["queued"] == 3 and c)
        assert {k: counts[k] for k in ("queued", "delivered", "failed", "suppressed", "attempts")} == {
            "queued": 3,
            "delivered": 2,
            "failed": 1,
            "suppressed": 0,
            "attempts": 4,
        }
        assert counts["byEventType"]["TaskStarting"] == {"queued": 1, "attempts": 2, "failed": 1}
        control.callbacks(False)
        sdk.start(individual(NotifyUrl=f"{receiver.url}/cb"))
        assert control.stats()["callbacks"]["suppressed"] == 3
        assert control.reset_stats()["callbacks"]["queued"] == 0
