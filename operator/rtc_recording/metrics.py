"""Prometheus metrics of the operator and the receiver (default registry).

The RtcRecordings by phase and by Synced are not here: the active operator counts them when
scraped, over what its watch holds (controller/census.py), and a standby exports none.
"""

import platform
from importlib.metadata import version

import prometheus_client
from aiohttp import web
from prometheus_client import Counter, Gauge, Histogram, Info

BUILD = Info("rtcrec_build", "The running version of the operator or receiver, its Python and Kopf (value 1).")
BUILD.info({"version": version("rtc-recording-operator"), "python": platform.python_version(), "kopf": version("kopf")})

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
QUOTA_RATE = Gauge(
    "rtcrec_quota_calls_per_second",
    "The API quota of each cloud account, in calls per second (settings.quotaPerSecond): all verbs share it.",
)

# -- the operator ------------------------------------------------------------------------------
HANDLERS = Gauge(
    "rtcrec_handlers",
    "RtcRecordings whose handler waits for one of the dispatcher's slots (state=waiting), runs (running), "
    "or is to be run again after a delay (retrying).",
    ["state"],
)
RECONCILES = Counter(
    "rtcrec_reconciles",
    "Decisions carried out, by action (start, update, stop, awaitoutcome, nothing) and outcome (ok, retry; "
    "at_rest: a resume skipped because it would decide nothing).",
    ["action", "outcome"],
)
STRAY_TASKS = Counter(
    "rtcrec_stray_tasks_stopped",
    "Tasks stopped because they were not their resource's current task (lost Start answers).",
)
CALLBACKS = Counter(
    "rtcrec_callbacks",
    "Callbacks received, by event type and outcome (recorded, ignored, rejected, error; deferred: decided again "
    "in the background, then counted once more as recorded or ignored).",
    ["event", "outcome"],
)
RELAYS = Counter(
    "rtcrec_relays",
    "Callbacks relayed to a user's spec.notify.url, by outcome: delivered, rejected (the user's URL answered "
    "4xx), failed (no answer or 5xx, twice), refused (an internal address, a host not allowed, an unusable "
    "notify key), gone (the resource no longer exists), unconfirmed (a task's end or a file's upload that the "
    "operator's Describe did not show within 30 minutes).",
    ["outcome"],
)
RELAYS_DROPPED = Counter(
    "rtcrec_relays_dropped",
    "Callbacks not relayed because too many came: over the rate of one path (receiver), or beyond the relays "
    "pending for one resource or one namespace (operator).",
    ["reason"],
)
ABANDONED = Counter(
    "rtcrec_tasks_abandoned",
    "Tasks that could not be stopped when their namespace was deleted: their credentials Secret was gone and "
    "the operator's own credentials could not stop them (controller/pins.py). They end by themselves when idle.",
)
EVENTS = Counter(
    "rtcrec_events",
    "Kubernetes Events the operator recorded about its objects, by type (Normal, Warning) and reason.",
    ["type", "reason"],
)
# At 0 from the start: the RtcRecTasksLost alert takes its increase(), which misses the first step of a
# series that appears already at 1.
EVENTS.labels(type="Warning", reason="TaskLost")
EVIDENCE_PENDING = Gauge(
    "rtcrec_evidence_pending",
    "Callback evidence (ConfigMaps the receiver wrote) the active operator has not acted on yet.",
)
RECORDED_SECONDS = Counter(
    "rtcrec_recorded_seconds",
    "Seconds recorded by the tasks that ended, by the namespace of their RtcRecording: what the bill is "
    "made of (controller/usage.py says when a task counts).",
    ["namespace"],
)


async def metrics_response(_: web.Request) -> web.Response:
    return web.Response(
        body=prometheus_client.generate_latest(), headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST}
    )


async def serve(port: int) -> web.AppRunner:
    """/metrics alone on a port of its own: the receiver's callback port faces the internet."""
    app = web.Application()
    app.router.add_get("/metrics", metrics_response)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()
    return runner
