from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from alibabacloud_live20161101 import models as live_models
from alibabacloud_live20161101.client import Client
from alibabacloud_tea_openapi import models as openapi_models
from emulator_samples import ACCESS_KEY, APP, BUCKET, STS_KEY, Receiver

from rtc_recording.emulator import EmulatorConfig, EmulatorHandle, run_in_thread

SIGNATURES = [pytest.param(None, id="acs3"), pytest.param("v2", id="v2")]


def make_config(**overrides: Any) -> EmulatorConfig:
    values: dict[str, Any] = dict(
        access_keys={ACCESS_KEY[0]: ACCESS_KEY[1]},
        sts_tokens={STS_KEY[0]: (STS_KEY[1], STS_KEY[2])},
        apps={APP},
        oss_buckets={BUCKET},
        time_scale=1.0,
        stopping_seconds=1.0,
        callback_timeout_seconds=0.5,
        callback_retry_delay_seconds=0.01,
    )
    values.update(overrides)
    return EmulatorConfig(**values)


@pytest.fixture
def start_emulator() -> Iterator[Callable[..., EmulatorHandle]]:
    handles: list[EmulatorHandle] = []

    def start(**overrides: Any) -> EmulatorHandle:
        handle = run_in_thread(make_config(**overrides))
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        handle.stop()


@pytest.fixture
def emulator(start_emulator: Callable[..., EmulatorHandle]) -> EmulatorHandle:
    return start_emulator()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def sdk_client(
    emulator: EmulatorHandle,
    algorithm: str | None = None,
    *,
    sts: bool = False,
    key: tuple[str, str] = ACCESS_KEY,
    token: str | None = None,
    read_timeout: int | None = None,
) -> Client:
    key_id, secret = (STS_KEY[0], STS_KEY[1]) if sts else key
    return Client(
        openapi_models.Config(
            access_key_id=key_id,
            access_key_secret=secret,
            security_token=(STS_KEY[2] if sts else token),
            endpoint=emulator.url.removeprefix("http://"),
            protocol="http",
            signature_algorithm=algorithm,
            read_timeout=read_timeout,
        )
    )


class Sdk:
    """The vendor's SDK client with vendor-shaped dicts in, parsed bodies (as dicts) out."""

    def __init__(self, client: Client):
        self.client = client

    def start(self, raw: dict[str, Any]) -> str:
        return self.client.start_rtc_cloud_recording(
            live_models.StartRtcCloudRecordingRequest().from_map(raw)
        ).body.task_id

    def stop(self, task_id: str) -> dict[str, Any]:
        return self.client.stop_rtc_cloud_recording(
            live_models.StopRtcCloudRecordingRequest(task_id=task_id)
        ).body.to_map()

    def update(self, raw: dict[str, Any]) -> dict[str, Any]:
        return self.client.update_rtc_cloud_recording(
            live_models.UpdateRtcCloudRecordingRequest().from_map(raw)
        ).body.to_map()

    def describe(self, task_id: str) -> live_models.DescribeRtcCloudRecordingFilesResponseBody:
        return self.client.describe_rtc_cloud_recording_files(
            live_models.DescribeRtcCloudRecordingFilesRequest(task_id=task_id)
        ).body


@pytest.fixture
def sdk(emulator: EmulatorHandle) -> Sdk:
    return Sdk(sdk_client(emulator))


def vendor_error(call: Callable[[], Any]) -> Any:
    """The SDK's exception for a call that must fail (has .code, .status_code, .data)."""
    with pytest.raises(Exception) as caught:
        call()
    return caught.value
