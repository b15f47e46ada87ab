"""What the reconciler sees of the cloud: four verbs, their answers and their failures.

No HTTP and no kopf here. The real client (`aliyun.py`) and any fake implement
`RecordingCloud`; the reconciler decides from the error *class* what to do next:

- `Invalid`         the service refused the request for good: fix the spec or credentials.
- `NotFound`        no such (running) task: nothing to stop, nothing to update.
- `Throttled`       the quota refused the call; it was not carried out, retry later.
- `Transient`       the call failed and can be repeated (for Start: the service did not
                    create a task, or said so).
- `UnknownOutcome`  a Start was sent but its answer was lost: a task may be running that
                    nobody knows the id of. Never retried blindly; see docs/exactly-once.md.
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
