"""The operator and its callback receiver as local child processes, for tests and the demo.

Real processes, not threads: they can be SIGKILLed like a pod, and they read their settings
from the environment exactly as they do in a cluster.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from rtc_recording.cluster.launcher import free_port

RTCREC = str(Path(sys.executable).with_name("rtcrec"))
T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 30,
    what: str = "condition",
    details: Callable[[], str] = lambda: "",
    interval: float = 0.2,
) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        if last := predicate():
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last value: {last!r}\n{details()}")


def local_env(
    kubeconfig: Path,
    endpoint: str,
    *,
    receiver_port: int,
    metrics_port: int,
    auth_key: str,
    access_key: tuple[str, str] | None = None,
    **settings: object,
) -> dict[str, str]:
    """What a pod would get, pointed at local parts; `settings` become RTCREC_<NAME> overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RTCREC_", "ALIBABA_CLOUD_", "KUBERNETES_"))}
    env.update(
        {
            # No ECS instance here: the vendor's credential chain must not try its metadata address.
            "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true",
            "KUBECONFIG": str(kubeconfig),
            "RTCREC_ENDPOINT": endpoint,
            "RTCREC_CALLBACK_URL": f"http://127.0.0.1:{receiver_port}",
            "RTCREC_CALLBACK_AUTH_KEY": auth_key,
            "RTCREC_RECEIVER_PORT": str(receiver_port),
            "RTCREC_RECEIVER_METRICS_PORT": str(free_port()),
            "RTCREC_METRICS_PORT": str(metrics_port),
        }
    )
    if access_key:
        env["ALIBABA_CLOUD_ACCESS_KEY_ID"], env["ALIBABA_CLOUD_ACCESS_KEY_SECRET"] = access_key
    env.update({f"RTCREC_{name.upper()}": str(value) for name, value in settings.items()})
    return env


class RtcrecProcess:
    """`rtcrec <command>` in its own session, so that a kill takes everything it started."""

    def __init__(self, command: str, env: dict[str, str], log: Path):
        self.command, self.env, self.log = command, env, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> RtcrecProcess:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [RTCREC, self.command],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    def kill(self) -> None:
        """SIGKILL: no cleanup and no final write, like an OOM kill or a lost node."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> None:
        self.kill()
        self.start()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
