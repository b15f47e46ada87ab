"""The command line, and the rule that the emulator imports nothing of the operator."""

from __future__ import annotations

import ast
import os
import pathlib
import signal
import subprocess
import sys

import pytest
from emulator_samples import individual

import rtc_recording.emulator as emulator_package
from conftest import Sdk, sdk_client
from rtc_recording.cluster.processes import RTCREC
from rtc_recording.emulator import EmulatorControl
from rtc_recording.emulator.cli import config_from, parser


def test_flags_make_a_config() -> None:
    args = parser().parse_args(
        [
            "--access-key",
            "AK:sec:ret",
            "--sts-token",
            "STS.1:s:tok",
            "--app",
            "a1",
            "--app",
            "a2",
            "--bucket",
            "b",
            "--open-channels",
            "--time-scale",
            "60",
            "--quota",
            "10",
            "--no-callbacks",
            "--error-rate",
            "0.1",
            "--error-rate",
            "StartRtcCloudRecording=0.5",
            "--drop-start-rate",
            "0.2",
            "--region",
            "us-east-1",
        ]
    )
    config = config_from(args)
    assert config.access_keys == {"AK": "sec:ret"} and config.sts_tokens == {"STS.1": ("s", "tok")}
    assert config.apps == {"a1", "a2"} and config.oss_buckets == {"b"} and config.open_channels
    assert (config.time_scale, config.quota_per_second, config.callbacks, config.region) == (60, 10, False, "us-east-1")
    assert config.error_rates == {"*": 0.1, "StartRtcCloudRecording": 0.5} and config.drop_start_rate == 0.2


@pytest.mark.parametrize("command", [[sys.executable, "-m", "rtc_recording.emulator"], [RTCREC, "emulator"]])
def test_command_serves_and_prints_its_url_first(command: list[str]) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [
            *command,
            "--port",
            "0",
            "--access-key",
            "AK1:secret1",
            "--app",
            "app1",
            "--bucket",
            "bucket1",
            "--open-channels",
            "--time-scale",
            "60",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        handle = type("Handle", (), {"url": url})()
        task_id = Sdk(sdk_client(handle)).start(individual(ChannelId="nobody-joined"))  # open channels
        assert [t["taskId"] for t in EmulatorControl(url).tasks()] == [task_id]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


def test_emulator_imports_nothing_of_the_operator() -> None:
    package = pathlib.Path(emulator_package.__file__).parent
    for source in package.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                assert not node.module.startswith("rtc_recording"), f"{source.name} imports {node.module}"
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 1, f"{source.name} reaches outside the emulator package"
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("rtc_recording") for a in node.names), source.name
