"""The scenarios of issue 13, part 5 (a-e). Each function is one run and returns flat figures.

Times are seconds on this process's monotonic clock; the watch that times resources is
`harness.Tracker`. Operator and receiver run with production settings (the chart's
defaults) unless a scenario says otherwise; only the endpoint, ports, keys and the
callback URL point at the local parts.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

from rtc_recording.api.names import GROUP, VERSION
from rtc_recording.api.names import SCHEDULE_PLURAL as SCHEDULES
from rtc_recording.cluster.processes import wait_for

from .harness import (
    LIVE,
    OPERATOR_KEY,
    SEEDER_KEY,
    Account,
    Stack,
    _bulk,
    etcd_get,
    etcd_key,
    etcd_put_all,
    manifest,
    now_utc,
    others_cores,
    percentile,
    proc,
    restart_apiserver,
    seed_tasks,
    seeded_status,
    stop_tasks,
    total,
)

ANCHOR = Path(__file__).with_name("anchor_operator.py")
QUOTA = 50  # calls per second per AccessKey: the vendor's, and the emulator's default
CLOUD_VERBS = (
    "StartRtcCloudRecording",
    "StopRtcCloudRecording",
    "UpdateRtcCloudRecording",
    "DescribeRtcCloudRecordingFiles",
)
# apiserver requests made on behalf of recordings: the resources, their status, Events, evidence
# ConfigMaps, credentials Secrets, the classes and namespaces a class lookup reads, schedules.
# Leases are left out (the apiserver renews its own every 10 s, the operator its Lease every 2 s
# whatever the number of recordings), and so are discovery and our scrapes of /metrics.
OURS = (
    "rtcrecordings",
    "rtcrecordings/status",
    "configmaps",
    "events",
    "secrets",
    "rtcrecordingclasses",
    "namespaces",
    "rtcrecordingschedules",
)
READS, WRITES = ("GET", "LIST", "WATCH"), ("POST", "PUT", "PATCH", "DELETE", "APPLY", "DELETECOLLECTION")


def api_sum(api: Counter, verbs: tuple[str, ...], resources: tuple[str, ...] = OURS) -> float:
    return sum(v for (verb, res, _), v in api.items() if verb in verbs and res in resources)


def api_detail(api: Counter) -> dict[str, float]:
    """Requests for recordings by "VERB resource code"; "slow VERB resource": those over 1 s."""
    out = {}
    for (verb, res, code), v in sorted(api.items()):
        if res in OURS and v:
            out[f"slow {code} {res}" if verb == "slow" else f"{verb} {res} {code}"] = v
    return out


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def operator_calls(stack: Stack) -> Counter:
    stats = stack.emulator.control.stats()
    return Counter(stats["calls"]["byAccessKeyIdAndAction"].get(OPERATOR_KEY[0], {}))


def throttled(stack: Stack) -> int:
    return int(stack.emulator.control.stats()["throttled"]["byAccessKeyId"].get(OPERATOR_KEY[0], 0))


def channels_for(stack: Stack, prefix: str, n: int) -> list[dict]:
    manifests = [manifest(f"{prefix}-{i}", f"{prefix}-{i}") for i in range(n)]
    stack.join([m["spec"]["channelId"] for m in manifests])
    return manifests


def wait_recording(stack: Stack, namespace: str, n: int, timeout: float) -> None:
    wait_for(
        lambda: stack.tracker.count(namespace, "Recording") >= n,
        timeout,
        interval=0.1,
        what=f"{n} Recording in {namespace}",
        details=lambda: (
            f"{Counter(p for (ns, _), p in stack.tracker.phase.items() if ns == namespace)}\n"
            + stack.operator.output()[-3000:]
        ),
    )


# -- (a) throughput and (b) latency ------------------------------------------------------------
def throughput(workdir: Path, run: int, n: int = 1000, singles: int = 50) -> dict[str, Any]:
    out: dict[str, Any] = {}
    log(f"a: {n} created with the operator and the receiver stopped")
    stack = Stack(workdir / "precreated", seed=run)
    try:
        stack.namespace("a")
        manifests = channels_for(stack, "pre", n)
        stack.tracker.start()
        stack.create("a", manifests)
        api_before, usage_before = stack.apiserver_requests(), stack.usage()
        started = stack.start_operator()
        stack.receiver.start()
        wait_recording(stack, "a", n, timeout=600)
        seconds = max(stack.tracker.recording_at[("a", m["metadata"]["name"])] for m in manifests) - started
        calls = operator_calls(stack)
        usage = stack.usage()
        api = stack.apiserver_requests()
        api.subtract(api_before)
        out.update(
            {
                "precreated_operator_exits": len(stack.operator.exits),
                "precreated_exit_codes": [code for _, code in stack.operator.exits],
                "precreated_api_detail": api_detail(api),
                "precreated_api_writes": api_sum(api, WRITES),
                "precreated_apiserver_cpu_s": usage["kube-apiserver"]["cpu"] - usage_before["kube-apiserver"]["cpu"],
                "precreated_others_cores": others_cores(usage_before, usage, time.monotonic() - started),
                "precreated_operator_cpu_s": usage["operator"]["cpu"],
                "precreated_receiver_cpu_s": usage["receiver"]["cpu"],
                "precreated_evidence": total(stack.receiver_metrics(), "rtcrec_callbacks_total", outcome="recorded"),
                "precreated_seconds": seconds,
                "precreated_ratio": (n / QUOTA) / seconds,
                "precreated_throttled": throttled(stack),
                "precreated_starts": calls["StartRtcCloudRecording"],
                "precreated_describes": calls["DescribeRtcCloudRecordingFiles"],
                "precreated_other_keys": sum(
                    v
                    for k, v in stack.emulator.control.stats()["calls"]["byAccessKeyId"].items()
                    if k != OPERATOR_KEY[0]
                ),
                "precreated_callbacks_failed": stack.emulator.control.callback_counts()["failed"],
            }
        )
        # To the table's precision: the operator's start-up writes once (its seals record, a ConfigMap), not per Start.
        out["precreated_writes_per_start"] = round(out["precreated_api_writes"] / n, 2)
        out["precreated_cpu_ms_per_start"] = out["precreated_operator_cpu_s"] * 1000 / n
        out["precreated_evidence_per_100"] = out["precreated_evidence"] * 100 / n
        log(f"a: all {n} Recording {seconds:.1f} s after the operator started")
    finally:
        stack.close()
    out.update(kopf_anchor(workdir, run, n))

    log(f"b: {singles} single creates, then a: {n} applied at once, everything running")
    stack = Stack(workdir / "burst", seed=run)
    try:
        stack.namespace("single")
        stack.namespace("burst")
        stack.tracker.start()
        stack.start_operator()
        stack.receiver.start()
        stack.wait_metrics()
        stack.wait_receiver()
        # One create first, not counted: right after a fresh start the apiserver may still answer 429
        # for a new CRD's collection (its watch cache initialising), and the retry would be the p99.
        warm = channels_for(stack, "warm", 1)[0]
        stack.create("single", [warm])
        wait_for(lambda: ("single", warm["metadata"]["name"]) in stack.tracker.task_at, 60, what="the warm-up")
        latencies = []
        for m in channels_for(stack, "one", singles):
            created_at = stack.create("single", [m])[m["metadata"]["name"]][0]
            key = ("single", m["metadata"]["name"])
            wait_for(lambda key=key: key in stack.tracker.task_at, 30, interval=0.005, what=f"{key} task id")
            latencies.append(stack.tracker.task_at[key] - created_at)
            time.sleep(0.2)
        out.update(
            {
                "single_p50": percentile(latencies, 50),
                "single_p99": percentile(latencies, 99),
                "single_latencies": latencies,
            }
        )
        manifests = channels_for(stack, "burst", n)
        calls_before, throttled_before = operator_calls(stack), throttled(stack)
        usage_before, api_before = stack.usage(), stack.apiserver_requests()
        evidence_before = total(stack.receiver_metrics(), "rtcrec_callbacks_total", outcome="recorded")
        began = time.monotonic()
        created = stack.create("burst", manifests)
        wait_recording(stack, "burst", n, timeout=600)
        keys = [("burst", m["metadata"]["name"]) for m in manifests]
        burst = [stack.tracker.task_at[k] - created[k[1]][0] for k in keys]
        seconds = max(stack.tracker.recording_at[k] for k in keys) - began
        calls = operator_calls(stack) - calls_before
        usage = stack.usage()
        api = stack.apiserver_requests()
        api.subtract(api_before)
        out.update(
            {
                "burst_operator_exits": len(stack.operator.exits),
                "burst_api_detail": api_detail(api),
                "burst_api_writes": api_sum(api, WRITES),
                "burst_operator_cpu_s": usage["operator"]["cpu"] - usage_before["operator"]["cpu"],
                "burst_receiver_cpu_s": usage["receiver"]["cpu"] - usage_before["receiver"]["cpu"],
                "burst_apiserver_cpu_s": usage["kube-apiserver"]["cpu"] - usage_before["kube-apiserver"]["cpu"],
                "burst_others_cores": others_cores(usage_before, usage, time.monotonic() - began),
                "burst_describes": calls["DescribeRtcCloudRecordingFiles"],
                "burst_evidence": total(stack.receiver_metrics(), "rtcrec_callbacks_total", outcome="recorded")
                - evidence_before,
                "burst_seconds": seconds,
                "burst_ratio": (n / QUOTA) / seconds,
                "burst_throttled": throttled(stack) - throttled_before,
                "burst_starts": calls["StartRtcCloudRecording"],
                "burst_apply_seconds": max(t for t, _ in created.values()) - began,
                "burst_p50": percentile(burst, 50),
                "burst_p99": percentile(burst, 99),
                "burst_max": max(burst),
                "burst_fifo_bound": n / QUOTA + 2,
            }
        )
        out["burst_fifo"] = out["burst_p99"] <= out["burst_fifo_bound"]
        out["burst_writes_per_start"] = (out["burst_api_writes"] - n) / n  # the driver's creates left out
        out["burst_cpu_ms_per_start"] = out["burst_operator_cpu_s"] * 1000 / n
        out["burst_evidence_per_100"] = out["burst_evidence"] * 100 / n
        log(f"a: burst all Recording in {seconds:.1f} s; p50 {out['burst_p50']:.2f} s p99 {out['burst_p99']:.2f} s")
    finally:
        stack.close()
    return out


def kopf_anchor(workdir: Path, run: int, n: int) -> dict[str, Any]:
    """(a) with a minimal Kopf operator in the operator's place (benchmarks/anchor_operator.py): its
    finalizer, one status patch and one Event per object. What Kopf itself costs on this machine."""
    log(f"k: the Kopf anchor, {n} created with it stopped")
    stack = Stack(workdir / "anchor", seed=run)
    anchor: subprocess.Popen | None = None
    try:
        stack.namespace("a")
        manifests = [manifest(f"pre-{i}", f"pre-{i}") for i in range(n)]
        stack.tracker.start()
        stack.create("a", manifests)
        api_before, usage_before = stack.apiserver_requests(), stack.usage()
        started = time.monotonic()
        with open(stack.workdir / "anchor.log", "ab") as log_file:
            anchor = subprocess.Popen(
                [str(Path(sys.executable).with_name("kopf")), "run", "--standalone", "--all-namespaces", str(ANCHOR)],
                env=stack.env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_recording(stack, "a", n, timeout=600)
        seconds = max(stack.tracker.recording_at[("a", m["metadata"]["name"])] for m in manifests) - started
        cpu = proc(anchor.pid)["cpu"]
        usage = stack.usage()
        api = stack.apiserver_requests()
        api.subtract(api_before)
        writes = api_sum(api, WRITES)
        log(f"k: all {n} written {seconds:.1f} s after the anchor started")
        return {
            "anchor_seconds": seconds,
            "anchor_api_detail": api_detail(api),
            "anchor_writes_per_object": writes / n,
            "anchor_cpu_ms_per_object": cpu * 1000 / n,
            "anchor_apiserver_cpu_s": usage["kube-apiserver"]["cpu"] - usage_before["kube-apiserver"]["cpu"],
        }
    finally:
        if anchor is not None and anchor.poll() is None:
            os.killpg(anchor.pid, signal.SIGKILL)
            anchor.wait()
        stack.close()


# -- (c) restart with 10 000 resources ---------------------------------------------------------
def seed_template(stack: Stack, namespace: str = "c", account: Account | None = None) -> dict:
    """The one resource in `namespace` created and status-patched through the apiserver (its task
    really started), as etcd stores it: what `_seed` clones. With `account`: billed to it (its
    namespace's credentials Secret), its task started with the account's seeder key."""
    template_manifest = manifest("template", f"{namespace}-template", finalizer=True, billed=account is not None)
    stack.join([f"{namespace}-template"])
    created = stack.create(namespace, [template_manifest])["template"][1]
    [task_id] = seed_tasks(stack, [template_manifest], key=account.seeder if account else SEEDER_KEY)
    stack.patch_statuses(namespace, {"template": seeded_status(created, task_id)})
    template = etcd_get(stack, etcd_key(namespace, "template"))
    assert template is not None
    return template


def _seed(
    stack: Stack, template: dict, first: int, count: int, completed_every: int, key: tuple[str, str] = SEEDER_KEY
) -> None:
    """`count` resources in the namespace of `template`, each with a task really started in the
    emulator (with `key`: its account's); every `completed_every`-th is Completed (its task
    stopped) and the rest Recording. Written to etcd as clones of `template` (created and
    status-patched through the apiserver)."""
    manifests = [manifest(f"r-{i}", f"c-{i}", finalizer=True) for i in range(first, first + count)]
    stack.join([m["spec"]["channelId"] for m in manifests])
    task_ids = seed_tasks(stack, manifests, key=key)
    done = [i for i in range(count) if (first + i) % completed_every == 0]
    if done:
        stop_tasks(stack, [task_ids[i] for i in done], key=key)
    objects = []
    done_set = set(done)
    for i, (m, task_id) in enumerate(zip(manifests, task_ids, strict=True)):
        obj = {
            **template,
            "metadata": {
                **template["metadata"],
                "name": m["metadata"]["name"],
                "uid": f"00000000-0000-4000-8000-{first + i:012d}",
            },
            "spec": {**template["spec"], "channelId": m["spec"]["channelId"]},
        }
        obj["status"] = seeded_status(obj, task_id, completed=i in done_set)
        objects.append(obj)
    etcd_put_all(stack, objects)


SCHEDULE_PREFIX = "sched"


def schedule_manifest(i: int, firing: bool) -> dict:
    """An RtcRecordingSchedule of namespace c (where the 10 000 are: its runs' LIST by label filters
    them all). One that is not `firing` is due once a year, on yesterday's date: never during a run.
    A firing one is due every minute, for an hour each run, concurrencyPolicy Forbid: it starts one
    run, then waits on it (deciding again every 30 s, as a meeting that runs long makes it)."""
    yesterday = now_utc() - timedelta(days=1)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RtcRecordingSchedule",
        "metadata": {"name": f"{SCHEDULE_PREFIX}-{i}"},
        "spec": {
            "schedule": "0 * * * * *" if firing else f"0 0 {yesterday.day} {yesterday.month} *",
            "timeZone": "UTC",
            "durationSeconds": 3600,
            "concurrencyPolicy": "Forbid",
            "template": {"spec": manifest("unused", f"c-{SCHEDULE_PREFIX}-{i}")["spec"]},
        },
    }


def schedule_figures(stack: Stack, ns: str) -> dict[str, int]:
    """Schedules in `ns`, those with a nextScheduleTime (decided: none lost by a restart), their
    active runs, and the runs (RtcRecordings labelled with a schedule) there."""
    listed = stack.loop.run(stack.kube.request("GET", f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/{SCHEDULES}"))
    items = listed.get("items", [])
    decided = sum(1 for i in items if (i.get("status") or {}).get("nextScheduleTime"))
    return {
        "schedules": len(items),
        "schedules_decided": decided,
        "schedules_undecided": len(items) - decided,
        "schedules_active_runs": sum(len((i.get("status") or {}).get("active") or []) for i in items),
        "schedule_runs": sum(1 for (n, name) in list(stack.tracker.phase) if n == ns and _is_run(name)),
    }


def _is_run(name: str) -> bool:
    return name.startswith(f"{SCHEDULE_PREFIX}-")


def _runs_at_rest(stack: Stack, ns: str) -> int:
    """Runs whose phase is Recording, Completed or Failed (as the driver's watch shows them): what a
    restart resumes with nothing to do. Read while the operator is stopped, so nothing moves."""
    return sum(
        1
        for (n, name), phase in list(stack.tracker.phase.items())
        if n == ns and _is_run(name) and phase in ("Recording", "Completed", "Failed")
    )


def _restart_once(stack: Stack, present: int, new: list[tuple[float, dict]], ns: str) -> dict[str, Any]:
    """Start the operator and the receiver with `present` resources; create `new` ones at the given
    offsets meanwhile; wait until every resource has been seen and handled, then settle."""
    calls_before, api_before, usage_before = operator_calls(stack), stack.apiserver_requests(), stack.usage()
    exits_before = len(stack.operator.exits)
    started = stack.start_operator()
    stack.receiver.start()
    peak_apiserver, first_handled, all_seen, all_handled = 0.0, None, None, None
    created: dict[str, float] = {}
    pending = sorted(new, key=lambda item: item[0])
    deadline = started + 600
    while time.monotonic() < deadline:
        now = time.monotonic() - started
        while pending and pending[0][0] <= now:
            _, m = pending.pop(0)
            created.update({name: at for name, (at, _) in stack.create(ns, [m]).items()})
        metrics = stack.operator_metrics()
        # Resumes of Recording and Completed resources decide "nothing"; the new ones "start".
        seen, handled = total(metrics, "rtcrec_recordings"), total(metrics, "rtcrec_reconciles_total", action="nothing")
        peak_apiserver = max(peak_apiserver, stack.usage()["kube-apiserver"]["rss"])
        t = time.monotonic() - started
        if handled and first_handled is None:
            first_handled = t
        if seen >= present and all_seen is None:
            all_seen = t
        if handled >= present and all_handled is None:
            all_handled = t
        new_done = all((ns, name) in stack.tracker.recording_at for name in created) and not pending
        if all_handled is not None and new_done:
            break
        time.sleep(0.25)
    else:
        raise AssertionError(f"restart with {present}: not settled in 600 s")
    at_settle = stack.usage()
    others = others_cores(usage_before, at_settle, time.monotonic() - started)
    time.sleep(20)  # settle: Kopf's idle workers exit, the poller's first visits are minutes away
    settled = stack.usage()
    calls = operator_calls(stack) - calls_before
    api = stack.apiserver_requests()
    api.subtract(api_before)
    new_latency = [stack.tracker.recording_at[(ns, name)] - at for name, at in created.items()]
    result = {
        "resumed_seconds": all_handled,
        "seen_seconds": all_seen,
        "first_handler_seconds": first_handled,
        "new_recording_max": max(new_latency) if new_latency else None,
        "operator_peak_mb": settled["operator"]["hwm"],
        "operator_settled_mb": settled["operator"]["rss"],
        "receiver_peak_mb": settled["receiver"]["hwm"],
        "receiver_settled_mb": settled["receiver"]["rss"],
        "operator_cpu_s": at_settle["operator"]["cpu"],
        "receiver_cpu_s": at_settle["receiver"]["cpu"],
        "apiserver_peak_mb": peak_apiserver,
        "cloud_calls_new": calls["StartRtcCloudRecording"],
        "cloud_calls_other": sum(v for k, v in calls.items() if k != "StartRtcCloudRecording"),
        "apiserver_writes": api_sum(api, WRITES),
        "apiserver_writes_rtcrecordings": api_sum(api, WRITES, ("rtcrecordings", "rtcrecordings/status")),
        "api_detail": api_detail(api),
        "new_resources": len(new),
        "others_cores": others,
        "operator_exits": len(stack.operator.exits) - exits_before,
    }
    stack.operator.stop()
    stack.receiver.stop()
    return result


def restart(
    workdir: Path,
    runs: int,
    sizes: tuple[int, ...] = (1000, 10000),
    completed_every: int = 20,
    schedules: int = 0,
    firing: int = 0,
) -> list[dict[str, Any]]:
    """One stack; for each size, `runs` restarts of operator and receiver (the runs of this
    scenario). Idle (no resource) is measured the same way first. With `schedules`, that many
    RtcRecordingSchedules are in namespace c from the start (idle then means: no recording but
    them), `firing` of them due every minute (schedule_manifest); their runs are resources too."""
    stack = Stack(workdir / "restart")
    results: list[dict[str, Any]] = [{} for _ in range(runs)]
    try:
        stack.namespace("c")
        stack.tracker.start()
        if schedules:
            log(f"c: {schedules} RtcRecordingSchedules, {firing} of them due every minute")
            made = [schedule_manifest(i, firing=i < firing) for i in range(schedules)]
            stack.join([m["spec"]["template"]["spec"]["channelId"] for m in made[:firing]])
            stack.loop.run(
                _bulk(
                    lambda m: stack.kube.create(f"/apis/{GROUP}/{VERSION}/namespaces/c/{SCHEDULES}", m),
                    made,
                    32,
                    key=lambda m: m["metadata"]["name"],
                )
            )
            for run in range(runs):
                results[run].update({"schedules": schedules, "schedules_firing": firing})
        for run in range(runs):
            log(f"c: idle, run {run + 1}")
            stack.start_operator()
            stack.receiver.start()
            stack.wait_metrics()
            stack.wait_receiver()
            time.sleep(15)
            idle = stack.usage()
            results[run].update(
                {"idle_operator_mb": idle["operator"]["rss"], "idle_receiver_mb": idle["receiver"]["rss"]}
            )
            stack.operator.stop()
            stack.receiver.stop()
        template = seed_template(stack)
        present, new_count = 1, 0
        for size in sizes:
            log(f"c: seeding up to {size} resources")
            _seed(stack, template, present, size - present, completed_every)
            wait_for(
                lambda size=size: sum(1 for (n, x) in list(stack.tracker.phase) if n == "c" and not _is_run(x)) >= size,
                120,
                what=f"{size} resources listed",
            )
            present = size
            for run in range(runs):
                ns = f"c-new-{size}-{run}"
                stack.namespace(ns)
                new = [(offset, manifest(f"new-{k}", f"{ns}-{k}")) for k, offset in enumerate((1.0, 3.0, 5.0))]
                stack.join([m["spec"]["channelId"] for _, m in new])
                # The schedules' runs at rest are resumed like the seeded ones ("handled" counts them); one
                # whose Start the previous operator did not finish is started now, like the new ones.
                runs_now = _runs_at_rest(stack, "c") if schedules else 0
                log(f"c: restart with {present + runs_now + new_count} resources, run {run + 1}")
                result = _restart_once(stack, present + runs_now + new_count, new, ns)
                if schedules:
                    # Read after the settle: every schedule still decided (its status survived the restart).
                    result.update(schedule_figures(stack, "c"))
                    result["schedule_runs_at_restart"] = runs_now
                new_count += len(new)
                results[run].update({f"{k}_{size}": v for k, v in result.items()})
                log(
                    f"c: {size}: resumed in {result['resumed_seconds']:.1f} s, new one Recording in "
                    f"{result['new_recording_max']:.1f} s, operator peak {result['operator_peak_mb']:.0f} MB"
                )
    finally:
        stack.close()
    return results


# -- (d) steady state --------------------------------------------------------------------------
def _sample(stack: Stack) -> dict[str, Any]:
    return {
        "at": time.monotonic(),
        "usage": stack.usage(),
        "api": stack.apiserver_requests(),
        "calls": operator_calls(stack),
        "callbacks": stack.emulator.control.callback_counts(),
    }


def _window(a: dict[str, Any], b: dict[str, Any], n: int) -> dict[str, float]:
    hours = n * (b["at"] - a["at"]) / 3600  # resource-hours in the window
    api = b["api"].copy()
    api.subtract(a["api"])
    calls = b["calls"] - a["calls"]
    cpu = {name: b["usage"][name]["cpu"] - a["usage"][name]["cpu"] for name in b["usage"] if name in a["usage"]}
    return {
        "seconds": b["at"] - a["at"],
        "describes_per_rh": calls["DescribeRtcCloudRecordingFiles"] / hours,
        "other_calls_per_rh": sum(calls[v] for v in CLOUD_VERBS if v != "DescribeRtcCloudRecordingFiles") / hours,
        "api_reads_per_rh": api_sum(api, READS) / hours,
        "api_writes_per_rh": api_sum(api, WRITES) / hours,
        "operator_cpu_s_per_rh": cpu.get("operator", 0) / hours,
        "receiver_cpu_s_per_rh": cpu.get("receiver", 0) / hours,
        "callbacks_per_rh": (b["callbacks"]["attempts"] - a["callbacks"]["attempts"]) / hours,
        "api_detail": api_detail(api),
        "others_cores": others_cores(a["usage"], b["usage"], b["at"] - a["at"]),
    }


def steady(workdir: Path, runs: int, n: int = 1000, on_window: float = 100, off_window: float = 60) -> list[dict]:
    """1000 live recordings; callbacks on: `runs` consecutive windows of `on_window` s (together one
    poll period, 300 s); then the operator without a receiver: `runs` windows of `off_window` s
    (each one poll period). The runs of this scenario are these windows of one run."""
    results: list[dict[str, Any]] = [{} for _ in range(runs)]
    stack = Stack(workdir / "steady")
    try:
        stack.namespace("d")
        stack.tracker.start()
        stack.start_operator()
        stack.receiver.start()
        stack.wait_metrics()
        stack.wait_receiver()
        manifests = channels_for(stack, "d", n)
        stack.create("d", manifests)
        wait_recording(stack, "d", n, timeout=600)
        stack.tracker.stop()  # its watch is not the operator's traffic
        time.sleep(30)
        log(f"d: callbacks on, {runs} windows of {on_window:.0f} s")
        samples = [_sample(stack)]
        for run in range(runs):
            time.sleep(on_window)
            samples.append(_sample(stack))
            results[run].update({f"on_{k}": v for k, v in _window(samples[-2], samples[-1], n).items()})
        whole = _window(samples[0], samples[-1], n)
        for run in range(runs):
            results[run]["on_period_describes_per_rh"] = whole["describes_per_rh"]
            results[run]["on_period_api_detail"] = whole["api_detail"]
        log("d: callbacks off (no receiver, no callback URL)")
        stack.receiver.stop()
        stack.emulator.control.set_faults(callbacks=False)
        stack.operator.stop()
        stack.start_operator(callback_url=None)
        wait_for(
            lambda: total(stack.operator_metrics(), "rtcrec_reconciles_total") >= n,
            120,
            what="the operator without callbacks resumed",
        )
        time.sleep(10)
        samples = [_sample(stack)]
        for run in range(runs):
            time.sleep(off_window)
            samples.append(_sample(stack))
            results[run].update({f"off_{k}": v for k, v in _window(samples[-2], samples[-1], n).items()})
        usage = stack.usage()
        for run in range(runs):
            results[run]["operator_rss_mb"] = usage["operator"]["rss"]
            results[run]["operator_exits"] = len(stack.operator.exits)
    finally:
        stack.close()
    return results


# -- (e) chaos ---------------------------------------------------------------------------------
CHAOS_TIME_SCALE = 5  # 30 s HLS slices (the heartbeat that exposes a duplicate) every 6 real seconds
SLICE_SECONDS = 30


def audit(stack: Stack, extra_since: float | None = None) -> dict[str, Any]:
    """duplicates: resources with more than one live task (one channel per resource); leaks: live
    tasks that no resource's status names; stuck: not Recording/Completed/Failed; wrong: Recording
    with a task that is not live; extra: tasks created since `extra_since` (emulated) that no
    resource names, with how long each lived (real seconds)."""
    items = stack.items()
    tasks = stack.tasks()
    live = [t for t in tasks if t["status"] in LIVE]
    live_ids = {t["taskId"] for t in live}
    named = {(i.get("status") or {}).get("taskId") for i in items} - {None}
    per_channel = Counter(t["channelId"] for t in live)
    channels = {i["spec"]["channelId"] for i in items}
    out: dict[str, Any] = {
        "resources": len(items),
        "live_tasks": len(live),
        "duplicates": sum(1 for c in channels if per_channel[c] > 1),
        "leaks": sum(1 for t in live if t["taskId"] not in named),
        "stuck": sum(
            1 for i in items if (i.get("status") or {}).get("phase") not in ("Recording", "Completed", "Failed")
        ),
        "wrong": sum(
            1
            for i in items
            if (i.get("status") or {}).get("phase") == "Recording" and i["status"].get("taskId") not in live_ids
        ),
        "failed": sum(1 for i in items if (i.get("status") or {}).get("phase") == "Failed"),
    }
    if extra_since is not None:
        now = stack.emulator.control.health()["now"]
        extra = [t for t in tasks if t["createdAt"] >= extra_since and t["taskId"] not in named]
        out["extra_tasks"] = [
            {
                "taskId": t["taskId"],
                "createdAt": t["createdAt"],
                "stoppedAt": t["stoppedAt"],
                "lived": ((t["stoppedAt"] or now) - t["createdAt"]) / stack.emulator.time_scale,
                "stopReason": t["stopReason"],
                "live": t["status"] in LIVE,
            }
            for t in extra
        ]
    return out


def clean(a: dict[str, Any]) -> bool:
    return a["duplicates"] == 0 and a["leaks"] == 0 and a["stuck"] == 0 and a["wrong"] == 0


def settle(stack: Stack, since: float, timeout: float, gone: bool = False) -> tuple[float | None, dict]:
    """Audit every 2 s until clean (and, with `gone`, no resource left); seconds from `since`."""
    deadline = time.monotonic() + timeout
    while True:
        a = audit(stack)
        if clean(a) and (not gone or a["resources"] == 0):
            return time.monotonic() - since, a
        if time.monotonic() > deadline:
            return None, a
        time.sleep(2)


def emulated_now(stack: Stack) -> float:
    return stack.emulator.control.health()["now"]


def chaos(workdir: Path, run: int, n: int = 300, phase_n: int = 50) -> dict[str, Any]:
    rng = random.Random(run)
    out: dict[str, Any] = {}
    stack = Stack(workdir / "chaos", time_scale=CHAOS_TIME_SCALE, seed=run)
    control = stack.emulator.control
    slice_real = SLICE_SECONDS / CHAOS_TIME_SCALE
    try:
        for ns in ("e", "e-outage", "e-apiserver"):
            stack.namespace(ns)
        stack.tracker.start()
        stack.start_operator()
        stack.receiver.start()
        stack.wait_metrics()
        stack.wait_receiver()
        manifests = channels_for(stack, "e", n)

        # e1: creates under faults, 10 operator kills, the receiver down twice (once for >= 20 s)
        log(f"e: {n} creates, 20% 5xx, 10% lost Start answers, 0.5 s latency, 10 + 2 kills")
        control.set_faults(error_rates={"*": 0.2}, drop_start_rate=0.1, latency_seconds=0.5)
        since = emulated_now(stack)
        began = time.monotonic()
        stack.create("e", manifests)
        kills = []
        t = 0.0
        for _ in range(10):
            t += rng.uniform(2, 8)
            kills.append(t)
        receiver_down = (rng.uniform(2, 6), 22.0)  # at, for how long
        receiver_second = kills[6] + 1.0
        events = sorted(
            [(k, "operator") for k in kills]
            + [
                (receiver_down[0], "receiver-down"),
                (receiver_down[0] + receiver_down[1], "receiver-up"),
                (receiver_second, "receiver-kill"),
            ]
        )
        receiver_back: list[float] = []
        for at, what in events:
            time.sleep(max(0.0, began + at - time.monotonic()))
            if what == "operator":
                stack.operator.kill()
                stack.operator.start()
            elif what == "receiver-down":
                stack.receiver.kill()
            elif what == "receiver-up":
                stack.receiver.start()
                receiver_back.append(time.monotonic())
            else:
                stack.receiver.kill()
                stack.receiver.start()
                receiver_back.append(time.monotonic())
        control.set_faults(error_rates={}, drop_start_rate=0, latency_seconds=0)
        chaos_end = time.monotonic()
        seconds, a = settle(stack, chaos_end, timeout=240)
        a = audit(stack, extra_since=since)
        stats = control.stats()
        bound(a, since, began, deaf=(began + receiver_down[0], began + receiver_down[0] + receiver_down[1]))
        out.update(_phase("creates", seconds, a, slice_real))
        out["creates_lost_answers"] = stats["droppedStartAnswers"]
        out["creates_chaos_seconds"] = chaos_end - began
        log(f"e: creates settled in {seconds} s: {_brief(a)}")

        # e2: a 60 s outage (100% 5xx) while 50 more are created
        log("e: 60 s cloud outage with 50 creates")
        outage = channels_for(stack, "out", phase_n)
        since = emulated_now(stack)
        control.set_faults(error_rates={"*": 1.0}, revert_after_seconds=60)
        began = time.monotonic()
        stack.create("e-outage", outage)
        time.sleep(max(0.0, began + 60 - time.monotonic()))
        wait_for(lambda: control.faults()["error_rates"] == {}, 10, what="the outage reverted")
        back = time.monotonic()
        wait_recording(stack, "e-outage", phase_n, timeout=300)
        out["outage_recovery_seconds"] = (
            max(stack.tracker.recording_at[("e-outage", m["metadata"]["name"])] for m in outage) - back
        )
        seconds, a = settle(stack, back, timeout=240)
        a = audit(stack, extra_since=since)
        bound(a, since, began, deaf=None)
        out.update(_phase("outage", seconds, a, slice_real))
        log(f"e: outage recovered in {out['outage_recovery_seconds']:.1f} s, settled in {seconds} s")

        # e3: kube-apiserver restarted while 50 more are created
        log("e: kube-apiserver restart with 50 creates")
        more = channels_for(stack, "api", phase_n)
        since = emulated_now(stack)
        began = time.monotonic()
        stack.create("e-apiserver", more)
        time.sleep(0.5)  # their Starts and status writes are under way
        stopped = time.monotonic()
        out["apiserver_down_seconds"] = restart_apiserver(stack.cluster, down_seconds=5)
        back = time.monotonic()
        seconds, a = settle(stack, back, timeout=240)
        if seconds is not None:  # every one of them must be there and Recording too
            wait_recording(stack, "e-apiserver", phase_n, timeout=120)
        a = audit(stack, extra_since=since)
        bound(a, since, began, deaf=(stopped, back))  # callbacks cannot be recorded meanwhile
        out.update(_phase("apiserver", seconds, a, slice_real))
        log(f"e: apiserver restart settled in {seconds} s")

        # e4: delete everything, 3 operator kills meanwhile
        log("e: delete-all with 3 kills")
        began = time.monotonic()
        for ns in ("e", "e-outage", "e-apiserver"):
            stack.delete_all(ns)
        t = 0.0
        for _ in range(3):
            t += rng.uniform(2, 8)
            time.sleep(max(0.0, began + t - time.monotonic()))
            stack.operator.kill()
            stack.operator.start()
        seconds, a = settle(stack, began, timeout=300, gone=True)
        out.update(
            {"delete_seconds": seconds, "delete_resources_left": a["resources"], "delete_live_tasks": a["live_tasks"]}
        )
        log(f"e: delete-all settled in {seconds} s: {a['resources']} left, {a['live_tasks']} live tasks")
        out["receiver_back"] = len(receiver_back)
        out["operator_exits"] = len(stack.operator.exits)  # by itself: our kills are not counted
    finally:
        stack.close()
    return out


BOUND_SLACK = 15  # seconds to act on evidence: an operator restart, the evidence worker, a Stop via the quota


def bound(a: dict[str, Any], since: float, began: float, deaf: tuple[float, float] | None) -> None:
    """The documented bound of each extra task (README, exactly once): it is stopped once the
    receiver can record its callbacks again and it uploads its next HLS slice, plus BOUND_SLACK.
    `deaf`: when callbacks could not be recorded (receiver or apiserver down), real times."""
    for e in a.get("extra_tasks", []):
        created = began + (e["createdAt"] - since) / CHAOS_TIME_SCALE
        heard = deaf[1] if deaf and deaf[0] - 3 <= created <= deaf[1] else created
        e["bound"] = heard - created + SLICE_SECONDS / CHAOS_TIME_SCALE + BOUND_SLACK


def _phase(name: str, seconds: float | None, a: dict[str, Any], slice_real: float) -> dict[str, Any]:
    extra = a.get("extra_tasks", [])
    lived = [e["lived"] for e in extra]
    return {
        f"{name}_settle_seconds": seconds,
        f"{name}_duplicates": a["duplicates"],
        f"{name}_leaks": a["leaks"],
        f"{name}_stuck": a["stuck"],
        f"{name}_wrong": a["wrong"],
        f"{name}_failed": a["failed"],
        f"{name}_extra_tasks": len(extra),
        f"{name}_extra_max_lived": max(lived) if lived else 0.0,
        f"{name}_extra_live": sum(1 for e in extra if e["live"]),
        f"{name}_extra_over_bound": sum(1 for e in extra if e["lived"] > e.get("bound", slice_real + 15)),
        f"{name}_extra_detail": extra,
    }


def _brief(a: dict[str, Any]) -> str:
    return ", ".join(f"{k} {a[k]}" for k in ("resources", "live_tasks", "duplicates", "leaks", "stuck", "wrong"))


# -- (f) a restart where every object needs action ---------------------------------------------
BUSY_NS = "f"


def _seed_unproven(stack: Stack, template: dict, n: int) -> None:
    """`n` Recording resources whose status the operator did not write: task ids the cloud does not
    know, no seal, no Kopf diff-base (as after an upgrade from 0.1.0, or after the cloud ended the
    tasks while the operator was down). Every one needs a handler at the restart."""
    status = {k: v for k, v in template["status"].items() if k not in ("taskSeal", "kopf")}
    objects = [
        {
            **template,
            "metadata": {**template["metadata"], "name": f"r-{i}", "uid": f"00000000-0000-4000-9000-{i:012d}"},
            "spec": {**template["spec"], "channelId": f"{BUSY_NS}-{i}"},
            "status": {**status, "taskId": f"{i:08x}{random.Random(i).getrandbits(96):024x}"},
        }
        for i in range(n)
    ]
    etcd_put_all(stack, objects)


def _handled(stack: Stack, n: int) -> int:
    """The seeded resources the operator is done with: all seen (its index), and no handler waiting,
    running or to be retried (`rtcrec_handlers`); 0 until then."""
    metrics = stack.operator_metrics()
    busy = sum(total(metrics, "rtcrec_handlers", state=state) for state in ("waiting", "running", "retrying"))
    return n if total(metrics, "rtcrec_recordings") >= n and not busy else 0


def busy_restart(workdir: Path, run: int, n: int = 2000, stall_seconds: float = 0.0) -> dict[str, Any]:
    """The operator starts with `n` resources that all need action (`_seed_unproven`); new
    resources are created 1, 3 and 5 s after its start. With `stall_seconds`, kube-apiserver is
    frozen (SIGSTOP) for that long once the operator serves its metrics (it is at work). Figures: exits, time
    until every object was handled, the new ones' latency, and the audit (duplicates, leaks)."""
    stack = Stack(workdir, seed=run)
    try:
        stack.namespace(BUSY_NS)
        stack.tracker.start()
        _seed_unproven(stack, seed_template(stack, BUSY_NS), n)
        wait_for(lambda: stack.tracker.present(BUSY_NS) >= n + 1, 120, what=f"{n} resources listed")
        stack.namespace("f-new")
        new = [(offset, manifest(f"new-{k}", f"f-new-{k}")) for k, offset in enumerate((1.0, 3.0, 5.0))]
        stack.join([m["spec"]["channelId"] for _, m in new])
        pid = stack.cluster.info()["pids"]["kube-apiserver"]
        started = stack.start_operator()
        stack.receiver.start()
        created_at: dict[str, float] = {}
        stalled = False
        handled_at = None
        deadline = started + 600
        while time.monotonic() < deadline:
            now = time.monotonic() - started
            try:
                done = _handled(stack, n)
            except Exception:  # the apiserver is still waking up
                done = 0
            if stall_seconds and not stalled and stack.operator_metrics():  # the operator is at work
                log(f"f: kube-apiserver stopped (SIGSTOP) for {stall_seconds:.0f} s")
                os.kill(pid, signal.SIGSTOP)
                time.sleep(stall_seconds)
                os.kill(pid, signal.SIGCONT)
                stalled = True
                continue
            while new and new[0][0] <= now:
                _, m = new.pop(0)
                created_at.update({name: at for name, (at, _) in stack.create("f-new", [m]).items()})
            if done >= n and handled_at is None:
                handled_at = time.monotonic() - started
            recorded = all(("f-new", k) in stack.tracker.recording_at for k in created_at)
            if handled_at is not None and not new and recorded:
                break
            time.sleep(0.5)
        operator = stack.usage().get("operator", {"hwm": 0.0, "cpu": 0.0})  # absent: it had exited
        latency = [stack.tracker.recording_at.get(("f-new", k), float("inf")) - at for k, at in created_at.items()]
        a = audit(stack)
        return {
            "resources": n,
            "stall_seconds": stall_seconds,
            "operator_exits": len(stack.operator.exits),
            "handled_seconds": handled_at,
            "new_recording_max": max(latency) if latency else None,
            "operator_peak_mb": operator["hwm"],
            "operator_cpu_s": operator["cpu"],
            "duplicates": a["duplicates"],
            "leaks": a["leaks"],
        }
    finally:
        stack.close()


# -- (g) recordings waiting for participants ------------------------------------------------------
def waiting(workdir: Path, run: int, n: int = 1000, people: int = 50, window: float = 60) -> dict[str, Any]:
    """`people` recordings of channels with people, alone; then `n` of empty channels, left waiting
    for `window` s (what they cost); then `people` more with people: do they wait behind them?"""
    stack = Stack(workdir, seed=run)
    try:
        for ns in ("alone", "waiting", "beside"):
            stack.namespace(ns)
        stack.tracker.start()
        stack.start_operator()
        stack.receiver.start()
        stack.wait_metrics()
        stack.wait_receiver()

        def burst(ns: str) -> list[float]:
            manifests = channels_for(stack, ns, people)
            created = stack.create(ns, manifests)
            wait_recording(stack, ns, people, timeout=120)
            return [stack.tracker.recording_at[(ns, name)] - t for name, (t, _) in created.items()]

        alone = burst("alone")
        empty = [manifest(f"empty-{i}", f"empty-{i}") for i in range(n)]  # nobody joins these
        stack.create("waiting", empty)
        wait_for(lambda: stack.tracker.count("waiting", "Pending") >= n, 300, interval=0.5, what=f"{n} waiting")
        calls_before, api_before, usage_before = operator_calls(stack), stack.apiserver_requests(), stack.usage()
        time.sleep(window)
        calls = operator_calls(stack) - calls_before
        api = stack.apiserver_requests()
        api.subtract(api_before)
        usage = stack.usage()
        beside = burst("beside")
        out = {
            "alone_p50": percentile(alone, 50),
            "alone_max": max(alone),
            "beside_p50": percentile(beside, 50),
            "beside_max": max(beside),
            "beside_extra_max": max(beside) - max(alone),
            "waiting_starts_per_s": calls["StartRtcCloudRecording"] / window,
            "waiting_starts_per_resource_hour": calls["StartRtcCloudRecording"] / window * 3600 / n,
            "waiting_api_writes_per_s": api_sum(api, WRITES) / window,
            "waiting_api_reads_per_s": api_sum(api, READS) / window,
            "waiting_api_detail": api_detail(api),
            "waiting_operator_cpu_cores": (usage["operator"]["cpu"] - usage_before["operator"]["cpu"]) / window,
            "waiting_still": stack.tracker.count("waiting", "Pending"),
            "throttled": throttled(stack),
            "operator_exits": len(stack.operator.exits),
        }
        log(
            f"g: {people} alone max {out['alone_max']:.2f} s; beside {n} waiting max {out['beside_max']:.2f} s; "
            f"waiting Starts {out['waiting_starts_per_s']:.1f}/s"
        )
        return out
    finally:
        stack.close()
