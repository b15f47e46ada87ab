"""Operator settings: environment variables prefixed RTCREC_, validated once at start-up."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from rtc_recording.api.fields import Region

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
POD_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def _own_namespace() -> str:
    return POD_NAMESPACE_FILE.read_text().strip() if POD_NAMESPACE_FILE.exists() else "default"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RTCREC_", extra="ignore")

    # -- cloud ------------------------------------------------------------------------------
    default_region: Region = Field("cn-shanghai", description="Region of RtcRecordings that name none.")
    endpoint: str | None = Field(None, description="Override the regional endpoint (e.g. the emulator's URL).")
    quota_per_second: int = Field(50, gt=0, description="Calls per second per AccessKey, shared by all verbs.")
    connect_timeout_seconds: float = Field(3, gt=0)
    read_timeout_seconds: float = Field(10, gt=0)
    cloud_threads: int = Field(32, ge=1, description="Threads for blocking cloud calls.")

    # -- where to watch ------------------------------------------------------------------------
    namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated namespaces to watch; empty means all."
    )

    # -- exactly-once ----------------------------------------------------------------------------
    callback_url: str | None = Field(
        None,
        description="Public base URL of the callback receiver, as the cloud can reach it. Without it a "
        "Start whose answer is lost cannot be correlated (see README, exactly-once).",
    )
    callback_auth_key: SecretStr | None = Field(
        None, description="NotifyAuthKey for the receiver's callbacks: 16-64 letters and digits."
    )
    evidence_namespace: str = Field(
        default_factory=_own_namespace,
        description="Where the receiver records callback evidence for the operator (ConfigMaps); tenants must "
        "not be able to write here. Default: the pod's own namespace.",
    )
    ownership_key: SecretStr | None = Field(
        None,
        description="Key of the seals that tie each task to the resource that started it (status.taskSeal); "
        "the operator's alone: the receiver must not get it. At least 32 characters. Default: "
        "derived from the callback auth key.",
    )
    unknown_outcome_grace_seconds: float = Field(
        30,
        gt=0,
        description="How long to wait for a callback naming the task of a Start whose answer was lost. The "
        "receiver decides a start callback whose task status does not show yet within a third of it.",
    )

    # -- relays to spec.notify.url (controller/ssrf.py) ------------------------------------------------------
    relay_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated host names (hooks.example.com, *.example.com) and address ranges "
        "(10.20.0.0/16, 127.0.0.1) that callbacks may be relayed to although internal. Otherwise only "
        "hosts whose addresses are all public are.",
    )
    relay_only_allowed_hosts: bool = Field(
        False, description="Relay callbacks to the hosts of relay_allowed_hosts only, public or not."
    )
    relay_denied_ranges: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated address ranges never relayed to, in addition to loopback, link-local, private, "
        "CGNAT and multicast: the cluster's pod and service ranges where they are not private.",
    )

    # -- observation -----------------------------------------------------------------------------
    poll_interval_seconds: float = Field(
        60,
        gt=0,
        description="Describe each live task this often: the safety net under callbacks, and the only "
        "way to notice an ended task without them.",
    )
    poll_calls_per_second: float = Field(10, gt=0, description="The poller's share of the cloud quota.")
    poll_factor_with_callbacks: float = Field(
        5,
        ge=1,
        description="With a receiver, live tasks are polled this many times less often: callbacks "
        "report their ends within a second, and polling only catches lost ones.",
    )

    # -- retries ---------------------------------------------------------------------------------
    waiting_quota_share: float = Field(
        0.2, gt=0, le=1, description="Share of each account's quota for Starts into channels nobody had joined."
    )
    participant_retry_seconds: float = Field(
        10, gt=0, description="Longest pause between Starts of a recording waiting for participants."
    )
    backoff_base_seconds: float = Field(2, gt=0)
    backoff_max_seconds: float = Field(300, gt=0)

    # -- serving ---------------------------------------------------------------------------------
    receiver_port: int = Field(8081, ge=0, le=65535, description="Callback receiver (rtcrec receiver).")
    receiver_metrics_port: int = Field(
        8082, ge=0, le=65535, description="The receiver's /metrics, apart from its internet-facing callback port."
    )
    receiver_read_timeout_seconds: float = Field(
        10,
        gt=0,
        description="The receiver drops a connection that has not sent a request's headers, or its body, "
        "within this many seconds (and idle connections after it).",
    )
    metrics_port: int = Field(8080, ge=0, le=65535, description="/metrics and /healthz of the operator.")
    log_format: Literal["text", "json"] = Field("text", description="json: one object per line, for log pipelines.")
    stuck_seconds: float = Field(
        120, gt=0, description="Liveness fails when the watch or the quota queue makes no progress this long."
    )

    # -- active/standby (controller/leader.py, docs/ha.md) ------------------------------------------------------
    lease_name: str = Field("rtc-recording-operator", description="The Lease that makes one replica the active one.")
    lease_namespace: str = Field(default_factory=_own_namespace, description="Its namespace: the pod's own.")
    pod_name: str | None = Field(
        None,
        description="This replica's identity in the Lease (the pod's name, stable "
        "across container restarts); default: host name and a random part.",
    )
    lease_duration_seconds: float = Field(
        10, gt=0, description="A standby takes over when the Lease was not renewed for this long."
    )
    lease_renew_deadline_seconds: float = Field(
        6,
        gt=0,
        description="The active replica exits when it could not renew the Lease for this long; at least "
        "1 s less than the lease duration.",
    )
    lease_retry_period_seconds: float = Field(
        2, gt=0, description="How often the active replica renews the Lease and a standby looks at it."
    )

    sharding: bool = Field(
        False,
        description="Every replica acts, on the accounts the sharder gives it (docs/sharding.md); "
        "needs RTCREC_POD_NAME, the shard's name.",
    )

    @field_validator("namespaces", "relay_allowed_hosts", "relay_denied_ranges", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return [n.strip() for n in value.split(",") if n.strip()] if isinstance(value, str) else value

    @field_validator("callback_auth_key")
    @classmethod
    def _auth_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9]{16,64}", value.get_secret_value()):
            raise ValueError("must be 16 to 64 letters and digits (the vendor's NotifyAuthKey rule)")
        return value

    @field_validator("relay_denied_ranges")
    @classmethod
    def _ranges(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)  # a ValueError names the bad one
        return value

    @field_validator("ownership_key")
    @classmethod
    def _ownership_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters")
        return value

    def ownership_secret(self) -> bytes | None:
        """The key of the task seals (decide/ownership.py), or None when none can be had."""
        from rtc_recording.api.keys import derive_key

        if self.ownership_key is not None:
            return derive_key(self.ownership_key.get_secret_value())
        if self.callback_auth_key is not None:
            return derive_key(self.callback_auth_key.get_secret_value())
        return None

    @model_validator(mode="after")
    def _lease_timing(self) -> Settings:
        if not (self.lease_retry_period_seconds < self.lease_renew_deadline_seconds <= self.lease_duration_seconds - 1):
            raise ValueError(
                "the Lease needs retry period < renew deadline <= lease duration - 1 s: the active "
                "replica must have stopped before a standby may take over"
            )
        return self

    @model_validator(mode="after")
    def _shard_named(self) -> Settings:
        # The name is a label value on every object of the shard, and its Lease's name.
        if self.sharding and not (self.pod_name and DNS_LABEL.fullmatch(self.pod_name)):
            raise ValueError(
                "RTCREC_SHARDING needs RTCREC_POD_NAME, a DNS label (a pod's name): it names the shard, "
                f"got {self.pod_name!r}"
            )
        return self

    @model_validator(mode="after")
    def _callbacks_signed(self) -> Settings:
        if self.callback_url and not self.callback_auth_key:
            raise ValueError(
                "RTCREC_CALLBACK_AUTH_KEY is required with RTCREC_CALLBACK_URL: unsigned callbacks could be forged"
            )
        return self
