"""Configuration of an emulator instance (also what the CLI flags fill in)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

# The region of live.aliyuncs.com, the endpoint without a region in its name. (The operator's copy
# of the regions is resource.REGIONS: the emulator is the other side of the wire and imports none.)
DEFAULT_REGION = "cn-shanghai"
ACTIONS = (
    "StartRtcCloudRecording",
    "StopRtcCloudRecording",
    "UpdateRtcCloudRecording",
    "DescribeRtcCloudRecordingFiles",
)


class FaultKnobs(BaseModel):
    """What can be changed at run time through `POST /_emulator/faults`."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    latency_seconds: float = Field(0.0, ge=0, description="real delay added before every API answer")
    error_rates: dict[str, float] = Field(
        default_factory=dict,
        description="action name (or '*') -> share of calls answered InternalError/ServiceUnavailable",
    )
    drop_start_rate: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of Starts that create the task and then drop the connection unanswered",
    )
    callbacks: bool = True
    quota_per_second: int = Field(50, ge=0, description="calls per AccessKey per second, all actions; 0 = no limit")
    throttle_status: int = Field(
        400, ge=400, le=599, description="HTTP status of Throttling.User (classic 400, newer 429)"
    )

    @field_validator("error_rates")
    @classmethod
    def _known_actions(cls, rates: dict[str, float]) -> dict[str, float]:
        for action, rate in rates.items():
            if action != "*" and action not in ACTIONS:
                raise ValueError(f"unknown action {action!r}; use one of {ACTIONS} or '*'")
            if not 0 <= rate <= 1:
                raise ValueError(f"rate for {action} must be between 0 and 1")
        return rates


class EmulatorConfig(FaultKnobs):
    access_keys: dict[str, str] = Field(default_factory=dict, description="AccessKeyId -> secret")
    accounts: dict[str, str] = Field(
        default_factory=dict,
        description="AccessKeyId (plain or STS) -> the account it belongs to; keys not listed belong to "
        "account 'default'. A task is visible (Describe, Update, Stop) only to keys of the account "
        "that started it.",
    )
    sts_tokens: dict[str, tuple[str, str]] = Field(
        default_factory=dict, description="STS AccessKeyId -> (secret, security token)"
    )
    sts_expires_at: dict[str, float] = Field(
        default_factory=dict, description="STS AccessKeyId -> real Unix time it expires"
    )
    apps: set[str] = Field(default_factory=set, description="AppIds that exist in the account")
    oss_buckets: set[str] = Field(default_factory=set, description="OSS buckets that exist in the account")
    open_channels: bool = Field(False, description="accept Start on channels nobody joined")
    strict_ids: bool = Field(
        False,
        description="refuse channel and user ids outside [A-Za-z0-9_-]{1,64} (the ARTC token rule; the "
        "StartRtcCloudRecording page states no rule for ids, so off by default)",
    )
    region: str = Field(DEFAULT_REGION, description="region when the Host is not a vendor endpoint")
    time_scale: float = Field(1.0, gt=0, description="emulated seconds per real second")
    seed: int = 0
    stopping_seconds: float = Field(1.0, ge=0, description="emulated time a task spends in STOPPING")
    max_duration_seconds: float = Field(72 * 3600, gt=0)
    retention_seconds: float = Field(3 * 86400, gt=0, description="how long a stopped task stays visible")
    callback_timeout_seconds: float = Field(2.0, gt=0)
    callback_retry_delay_seconds: float = Field(0.1, ge=0)
    callback_payload_as_string: bool = Field(
        True, description="payload as a JSON string (as documented) rather than a nested object"
    )
    tick_seconds: float = Field(0.02, gt=0, description="real interval of the background clock tick")
