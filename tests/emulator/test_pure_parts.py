"""Clock, quota and fault dice."""

from __future__ import annotations

import pytest

from rtc_recording.emulator.clock import Clock
from rtc_recording.emulator.config import EmulatorConfig, FaultKnobs
from rtc_recording.emulator.faults import Faults
from rtc_recording.emulator.quota import Quota


class FakeTime:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_clock_scales_and_advances() -> None:
    real = FakeTime()
    clock = Clock(60, wall=lambda: 5_000.0, monotonic=real)
    assert clock.now() == 5_000.0
    real.t += 2
    assert clock.now() == 5_120.0 and clock.monotonic() == 1002.0 and clock.wall() == 5_000.0
    assert clock.advance(3600) == 8_720.0
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        Clock(0)


def test_quota_is_an_exact_sliding_window() -> None:
    quota = Quota(50)
    assert all(quota.allow("AK", 0.5) for _ in range(50))
    assert not quota.allow("AK", 0.5)
    assert quota.allow("OTHER", 0.5)  # per key
    assert not quota.allow("AK", 1.4999)
    assert quota.allow("AK", 1.5)  # the 50 of t=0.5 left the window (0.5, 1.5]
    assert sum(quota.allow("AK", 1.6) for _ in range(60)) == 49


def test_quota_never_exceeds_the_limit_in_any_window() -> None:
    quota = Quota(5)
    times = [i * 0.07 for i in range(100)]
    accepted = [t for t in times if quota.allow("AK", t)]
    assert all(sum(1 for a in accepted if start <= a < start + 1) <= 5 for start in accepted)
    assert Quota(0).allow("AK", 0)  # 0 = unlimited


def test_fault_dice_are_deterministic_per_seed() -> None:
    def run(seed: int) -> list[object]:
        faults = Faults(FaultKnobs(error_rates={"*": 0.5}, drop_start_rate=0.5), seed)
        return [(faults.server_error("StopRtcCloudRecording"), faults.drop_start()) for _ in range(30)]

    assert run(7) == run(7) != run(8)
    outcomes = {code for code, _ in run(7)}
    assert outcomes == {None, "InternalError", "ServiceUnavailable"}


def test_fault_rates_per_action() -> None:
    faults = Faults(FaultKnobs(error_rates={"StartRtcCloudRecording": 1.0}), 0)
    assert faults.server_error("StartRtcCloudRecording") in ("InternalError", "ServiceUnavailable")
    assert faults.server_error("DescribeRtcCloudRecordingFiles") is None
    assert not faults.drop_start()


def test_config_refuses_unknown_actions_and_bad_rates() -> None:
    with pytest.raises(ValueError):
        EmulatorConfig(error_rates={"Describe": 0.1})
    with pytest.raises(ValueError):
        EmulatorConfig(error_rates={"*": 1.5})
    with pytest.raises(ValueError):
        EmulatorConfig(unknown_knob=1)
