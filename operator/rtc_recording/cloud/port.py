"""The cloud port: the four verbs of the recording API, as the operator needs them.

No HTTP here. The real client (`aliyun.py`) and the tests' fakes implement `RecordingCloud`;
its answers and failures are the vocabulary of `api/task.py`, from whose error class the
executor decides what to do next.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from rtc_recording.api.task import TaskInfo


class RecordingCloud(Protocol):
    """The four verbs of the recording API. Blocking: run them in an executor.

    `params` use the vendor's top-level names (AppId, ChannelId, SubscribeParams,
    RecordParams, StorageParams, MixTranscodeParams, MixLayoutParams, NotifyUrl,
    NotifyAuthKey, NotifyFileUploadedFormat, MaxIdleTime) with plain dicts/lists
    as values; the implementation serialises them.
    """

    def start(self, params: Mapping[str, Any]) -> str:
        """Start a recording task and return its TaskId. Never retried internally."""
        ...

    def stop(self, task_id: str) -> None: ...

    def update(self, task_id: str, params: Mapping[str, Any]) -> None:
        """Change SubscribeParams and/or MixLayoutParams of a running task."""
        ...

    def describe(self, task_id: str) -> TaskInfo: ...
