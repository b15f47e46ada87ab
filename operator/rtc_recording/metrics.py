"""Prometheus metrics of the cloud client and its quota limiter (default registry)."""

from prometheus_client import Counter, Gauge, Histogram

CLOUD_CALLS = Counter(
    "rtcrec_cloud_calls",
    "Cloud API requests sent, by verb and outcome (OK, the vendor's error code, or a transport failure).",
    ["verb", "code"],
)
CLOUD_CALL_SECONDS = Histogram(
    "rtcrec_cloud_call_seconds",
    "Duration of one cloud API request, quota wait excluded.",
    ["verb"],
)
QUOTA_WAIT_SECONDS = Histogram(
    "rtcrec_quota_wait_seconds",
    "Time a cloud call waited for the account's API quota.",
    buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
QUOTA_QUEUE_DEPTH = Gauge(
    "rtcrec_quota_queue_depth",
    "Cloud calls waiting for the account's API quota.",
)
