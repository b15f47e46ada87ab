"""A cloud recording task as the operator sees it: its status, its files, and how a call about it failed.

The vocabulary the decisions speak (decide/) and the cloud port answers in (cloud/port.py).
The failures, by class, tell what to do next:

- `Invalid`         the service refused the request for good: fix the spec or credentials.
- `NotFound`        no such (running) task: nothing to stop, nothing to update.
- `Throttled`       the quota refused the call; it was not carried out, retry later.
- `Transient`       the call failed and can be repeated (for Start: the service did not
                    create a task, or said so).
- `UnknownOutcome`  a Start was sent but its answer was lost: a task may be running that
                    nobody knows the id of. Never retried blindly; see docs/exactly-once.md.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from rtc_recording.api.recording import VodMedia


class TaskStatus(enum.StrEnum):
    RUNNING = "RUNNING"
    RECOVERING = "RECOVERING"  # the service lost the recorder and is bringing it back
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"


@dataclass(frozen=True)
class RecordFiles:
    """File names per format (OSS storage) and VOD media (VOD storage), as the service lists them."""

    hls: tuple[str, ...] = ()
    mp4: tuple[str, ...] = ()
    mp3: tuple[str, ...] = ()
    vod: tuple[VodMedia, ...] = ()  # the status's own type: status.files.vod is what the service listed


@dataclass(frozen=True)
class TaskInfo:
    task_id: str
    status: TaskStatus
    files: RecordFiles = field(default_factory=RecordFiles)


class CloudError(Exception):
    """A failed cloud call. `code` is the vendor's error code, or a transport condition
    such as `ReadTimeout` when the service never answered."""

    def __init__(
        self,
        code: str,
        message: str = "",
        *,
        request_id: str | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.request_id = request_id
        self.http_status = http_status

    def __str__(self) -> str:
        where = ", ".join(
            part
            for part in (
                f"HTTP {self.http_status}" if self.http_status is not None else "",
                f"RequestId {self.request_id}" if self.request_id else "",
            )
            if part
        )
        text = f"{self.code}: {self.message}" if self.message else self.code
        return f"{text} ({where})" if where else text


class Invalid(CloudError):
    """Permanent refusal: bad parameters, unknown app/channel/bucket, bad credentials."""


class ChannelEmpty(Invalid):
    """A Start refused because nobody is in the channel yet (the vendor's 404 InvalidParameter.ChannelId:
    the CRD already checked the id's form). Nothing was started; it may work once someone joins."""


class NotFound(CloudError):
    """No such task, or (Stop/Update) the task is no longer running."""


class Throttled(CloudError):
    """Refused by the quota. The service did not act on it, so even a Start may be repeated."""


class Transient(CloudError):
    """A failure worth repeating: server error, or the request never left this process."""


class UnknownOutcome(CloudError):
    """A Start went out and no answer came back: the task may or may not exist."""
