"""Regenerate the tables of BENCHMARKS.md from benchmarks/results.json.

Only the text between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->` is replaced; the prose
around it is written by hand. `python -m benchmarks.report` re-renders without running anything.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from typing import Any

from .harness import ROOT

DOC = ROOT / "BENCHMARKS.md"
RESULTS = ROOT / "benchmarks" / "results.json"

# (key in the medians, label, format, target text, predicate on the median)
Row = tuple[str, str, str, str, Callable[[Any], bool] | None]
le = lambda bound: lambda v: v is not None and v <= bound  # noqa: E731
ge = lambda bound: lambda v: v is not None and v >= bound  # noqa: E731
zero = le(0)

SECTIONS: dict[str, tuple[str, list[Row]]] = {
    "a": (
        "ab",
        [
            (
                "precreated_seconds",
                "1000 created with operator and receiver stopped: seconds from their start until all are Recording",
                "{:.1f} s",
                "<= 21 s",
                le(21),
            ),
            ("precreated_ratio", "... ratio to the quota ceiling (1000 / 50 = 20 s)", "{:.2f}", ">= 0.95", ge(0.95)),
            ("precreated_throttled", "... Throttling.User answers (emulator)", "{:.0f}", "0", zero),
            ("precreated_writes_per_start", "... apiserver writes per Start", "{:.2f}", "<= 3", le(3)),
            (
                "precreated_evidence_per_100",
                "... evidence ConfigMaps per 100 Starts",
                "{:.2f}",
                "< 1",
                lambda v: v is not None and v < 1,
            ),
            ("precreated_cpu_ms_per_start", "... operator CPU-ms per Start", "{:.1f}", "<= 8", le(8)),
            ("precreated_starts", "... Starts sent", "{:.0f}", "", None),
            ("precreated_other_keys", "... cloud calls by any other process (the receiver)", "{:.0f}", "0", zero),
            (
                "precreated_evidence",
                "... callbacks the receiver recorded as evidence (ConfigMap creates tried)",
                "{:.0f}",
                "",
                None,
            ),
            ("precreated_callbacks_failed", "... callbacks that failed after the cloud's resend", "{:.0f}", "", None),
            (
                "precreated_api_writes",
                "... apiserver writes (RtcRecordings, status, Events, ConfigMaps)",
                "{:.0f}",
                "",
                None,
            ),
            ("precreated_apiserver_cpu_s", "... kube-apiserver CPU-s", "{:.1f}", "", None),
            ("precreated_operator_cpu_s", "... operator CPU-s", "{:.1f}", "", None),
            ("precreated_receiver_cpu_s", "... receiver CPU-s", "{:.1f}", "", None),
            (
                "precreated_others_cores",
                "... cores used meanwhile by other engineers' processes (not niced)",
                "{:.2f}",
                "",
                None,
            ),
            (
                "burst_seconds",
                "1000 applied at once, everything running: seconds from the first create until all are Recording",
                "{:.1f} s",
                "",
                None,
            ),
            ("burst_apply_seconds", "... of which creating them (32 in flight)", "{:.1f} s", "", None),
            ("burst_ratio", "... ratio to the quota ceiling", "{:.2f}", "", None),
            ("burst_throttled", "... Throttling.User answers", "{:.0f}", "0", zero),
            ("burst_evidence", "... callbacks recorded as evidence", "{:.0f}", "", None),
            (
                "burst_writes_per_start",
                "... apiserver writes per Start (the creates left out)",
                "{:.2f}",
                "<= 3",
                le(3),
            ),
            (
                "burst_evidence_per_100",
                "... evidence ConfigMaps per 100 Starts",
                "{:.2f}",
                "< 1",
                lambda v: v is not None and v < 1,
            ),
            ("burst_cpu_ms_per_start", "... operator CPU-ms per Start", "{:.1f}", "<= 8", le(8)),
            ("burst_api_writes", "... apiserver writes", "{:.0f}", "", None),
            ("burst_apiserver_cpu_s", "... kube-apiserver CPU-s", "{:.1f}", "", None),
            ("burst_operator_cpu_s", "... operator CPU-s", "{:.1f}", "", None),
            ("burst_others_cores", "... cores used meanwhile by other engineers' processes", "{:.2f}", "", None),
            (
                "anchor_seconds",
                "The Kopf anchor (benchmarks/anchor_operator.py), 1000 created with it stopped: seconds from its "
                "start until all are written",
                "{:.1f} s",
                "",
                None,
            ),
            ("anchor_writes_per_object", "... apiserver writes per object", "{:.2f}", "", None),
            ("anchor_cpu_ms_per_object", "... anchor CPU-ms per object", "{:.1f}", "", None),
            ("anchor_apiserver_cpu_s", "... kube-apiserver CPU-s", "{:.1f}", "", None),
        ],
    ),
    "b": (
        "ab",
        [
            (
                "single_p50",
                "create -> TaskId, single creates (50, one at a time): p50",
                "{:.3f} s",
                "< 0.050 s",
                lambda v: v is not None and v < 0.05,
            ),
            ("single_p99", "... p99", "{:.3f} s", "", None),
            ("burst_p50", "create -> TaskId during the burst of 1000: p50", "{:.1f} s", "", None),
            ("burst_p99", "... p99", "{:.1f} s", "<= 22 s (N/50 + 2: FIFO)", le(22)),
            ("burst_max", "... max", "{:.1f} s", "", None),
            (
                "burst_fifo",
                "... runs that were FIFO (p99 <= N/50 + 2 s)",
                "{}",
                "all",
                lambda v: isinstance(v, str) and v.split("/")[0] == v.split("/")[1],
            ),
        ],
    ),
    "c": (
        "c",
        [
            (
                "resumed_seconds_10000",
                "10 000 present: seconds from operator start until every one was handled (resumed)",
                "{:.1f} s",
                "<= 6 s",
                le(6),
            ),
            ("seen_seconds_10000", "... until every one was seen (index filled)", "{:.1f} s", "", None),
            ("first_handler_seconds_10000", "... until the first handler ran", "{:.1f} s", "", None),
            (
                "new_recording_max_10000",
                "... a new resource created 1, 3 and 5 s after the start: Recording after its create (slowest)",
                "{:.1f} s",
                "<= 2 s",
                le(2),
            ),
            ("operator_peak_mb_10000", "... operator RSS, peak (VmHWM)", "{:.0f} MB", "<= 100 MB", le(100)),
            ("operator_settled_mb_10000", "... operator RSS, settled (20 s later)", "{:.0f} MB", "<= 100 MB", le(100)),
            ("receiver_peak_mb_10000", "... receiver RSS, peak", "{:.0f} MB", "<= 60 MB", le(60)),
            ("receiver_settled_mb_10000", "... receiver RSS, settled", "{:.0f} MB", "<= 60 MB", le(60)),
            ("operator_cpu_s_10000", "... operator CPU-s until all were handled", "{:.1f}", "", None),
            ("receiver_cpu_s_10000", "... receiver CPU-s until then", "{:.1f}", "", None),
            ("cloud_calls_other_10000", "... cloud calls other than the new ones' Starts", "{:.0f}", "0", zero),
            ("apiserver_writes_10000", "... apiserver writes (all of them for the 3 new ones)", "{:.0f}", "", None),
            ("apiserver_peak_mb_10000", "... kube-apiserver RSS, peak", "{:.0f} MB", "", None),
            ("others_cores_10000", "... cores used meanwhile by other engineers' processes", "{:.2f}", "", None),
            ("resumed_seconds_1000", "1 000 present: all handled", "{:.1f} s", "", None),
            (
                "new_recording_max_1000",
                "... a new resource Recording after its create (slowest of 3)",
                "{:.1f} s",
                "",
                None,
            ),
            ("operator_peak_mb_1000", "... operator RSS, peak", "{:.0f} MB", "<= 100 MB", le(100)),
            ("operator_settled_mb_1000", "... operator RSS, settled", "{:.0f} MB", "", None),
            ("receiver_peak_mb_1000", "... receiver RSS, peak", "{:.0f} MB", "<= 60 MB", le(60)),
            ("receiver_settled_mb_1000", "... receiver RSS, settled", "{:.0f} MB", "", None),
            ("operator_cpu_s_1000", "... operator CPU-s", "{:.1f}", "", None),
            ("cloud_calls_other_1000", "... cloud calls other than the new ones' Starts", "{:.0f}", "0", zero),
            ("idle_operator_mb", "no resource: operator RSS", "{:.0f} MB", "", None),
            ("idle_receiver_mb", "no resource: receiver RSS", "{:.0f} MB", "", None),
        ],
    ),
    "d": (
        "d",
        [
            (
                "on_period_describes_per_rh",
                "callbacks on: Describes per resource-hour (over the whole 300 s: one poll period)",
                "{:.1f}",
                "",
                None,
            ),
            ("on_other_calls_per_rh", "... Start/Stop/Update per resource-hour", "{:.2f}", "", None),
            ("on_api_reads_per_rh", "... apiserver reads per resource-hour", "{:.2f}", "", None),
            ("on_api_writes_per_rh", "... apiserver writes per resource-hour", "{:.2f}", "", None),
            ("on_operator_cpu_s_per_rh", "... operator CPU-s per resource-hour", "{:.3f}", "", None),
            ("on_receiver_cpu_s_per_rh", "... receiver CPU-s per resource-hour", "{:.3f}", "", None),
            ("on_callbacks_per_rh", "... callbacks per resource-hour (HLS slices)", "{:.0f}", "", None),
            ("off_describes_per_rh", "callbacks off (no receiver): Describes per resource-hour", "{:.1f}", "", None),
            ("off_other_calls_per_rh", "... Start/Stop/Update per resource-hour", "{:.2f}", "", None),
            ("off_api_reads_per_rh", "... apiserver reads per resource-hour", "{:.2f}", "", None),
            ("off_api_writes_per_rh", "... apiserver writes per resource-hour", "{:.2f}", "", None),
            ("off_operator_cpu_s_per_rh", "... operator CPU-s per resource-hour", "{:.3f}", "", None),
            ("operator_rss_mb", "operator RSS with 1000 live", "{:.0f} MB", "", None),
        ],
    ),
    "e": (
        "e",
        [
            (
                "creates_settle_seconds",
                "300 creates, faults, 10 operator kills, receiver down 22 s and once more: settled after the last kill",
                "{:.1f} s",
                "",
                None,
            ),
            ("creates_lost_answers", "... Start answers lost (emulator)", "{:.0f}", "", None),
            ("creates_duplicates", "... duplicates at settle", "{:.0f}", "0", zero),
            ("creates_leaks", "... leaks", "{:.0f}", "0", zero),
            ("creates_stuck", "... stuck", "{:.0f}", "0", zero),
            ("creates_wrong", "... wrong", "{:.0f}", "0", zero),
            ("creates_extra_tasks", "... extra tasks (made, named by no resource)", "{:.0f}", "", None),
            ("creates_extra_max_lived", "... longest an extra task lived", "{:.1f} s", "", None),
            ("creates_extra_over_bound", "... extra tasks that outlived the documented bound", "{:.0f}", "0", zero),
            (
                "outage_recovery_seconds",
                "60 s outage (100% 5xx) with 50 creates: all Recording after the cloud came back",
                "{:.1f} s",
                "<= 30 s (issue 12)",
                le(30),
            ),
            ("outage_duplicates", "... duplicates / leaks / stuck / wrong at settle (sum)", "{:.0f}", "0", zero),
            ("outage_extra_tasks", "... extra tasks", "{:.0f}", "", None),
            (
                "apiserver_down_seconds",
                "kube-apiserver restart with 50 creates under way: seconds it was unavailable",
                "{:.1f} s",
                "",
                None,
            ),
            ("apiserver_settle_seconds", "... settled after it was back", "{:.1f} s", "", None),
            ("apiserver_duplicates", "... duplicates / leaks / stuck / wrong at settle (sum)", "{:.0f}", "0", zero),
            ("apiserver_extra_tasks", "... extra tasks", "{:.0f}", "", None),
            ("apiserver_extra_over_bound", "... extra tasks that outlived the documented bound", "{:.0f}", "0", zero),
            (
                "delete_seconds",
                "delete-all (400 resources) with 3 operator kills: seconds until none is left",
                "{:.1f} s",
                "",
                None,
            ),
            ("delete_resources_left", "... resources left", "{:.0f}", "0", zero),
            ("delete_live_tasks", "... live tasks left (leaks)", "{:.0f}", "0", zero),
        ],
    ),
    "f": (
        "f",
        [
            (
                "handled_seconds",
                "2000 Recording resources the operator never handled (unknown task ids, no seals): every one handled",
                "{:.1f} s",
                "",
                None,
            ),
            ("operator_exits", "... operator exits (the Lease lost while busy)", "{:.0f}", "0", zero),
            (
                "new_recording_max",
                "... a new resource created 1, 3 and 5 s after the start: Recording after",
                "{:.1f} s",
                "",
                None,
            ),
            ("operator_peak_mb", "... operator RSS, peak", "{:.0f} MB", "", None),
            ("operator_cpu_s", "... operator CPU-s", "{:.1f}", "", None),
            ("duplicates", "... duplicates", "{:.0f}", "0", zero),
            ("leaks", "... leaks", "{:.0f}", "0", zero),
            (
                "stall_handled_seconds",
                "the same, kube-apiserver frozen (SIGSTOP) for 8 s once the operator is at work: every one handled",
                "{:.1f} s",
                "",
                None,
            ),
            ("stall_operator_exits", "... operator exits (8 s > the 6 s renew deadline: one)", "{:.0f}", "<= 1", le(1)),
            ("stall_operator_peak_mb", "... operator RSS, peak", "{:.0f} MB", "", None),
            ("stall_duplicates", "... duplicates", "{:.0f}", "0", zero),
            ("stall_leaks", "... leaks", "{:.0f}", "0", zero),
        ],
    ),
    "g": (
        "g",
        [
            (
                "alone_max",
                "50 recordings of channels with people, created at once: the last Recording after",
                "{:.2f} s",
                "",
                None,
            ),
            ("beside_max", "... the same beside 1000 recordings waiting for participants", "{:.2f} s", "", None),
            (
                "beside_extra_max",
                "... how much later than alone (target: within 2 s)",
                "{:.2f} s",
                "<= 2 s",
                le(2),
            ),
            (
                "waiting_starts_per_s",
                "1000 waiting: Starts per second (the account's waiting share: 10)",
                "{:.1f}",
                "<= 10",
                le(10.5),
            ),
            ("waiting_starts_per_resource_hour", "... Starts per waiting recording per hour", "{:.0f}", "", None),
            ("waiting_api_writes_per_s", "... apiserver writes per second", "{:.1f}", "", None),
            ("waiting_api_reads_per_s", "... apiserver reads per second (a GET per try)", "{:.1f}", "", None),
            ("waiting_operator_cpu_cores", "... operator CPU (cores)", "{:.2f}", "", None),
            ("throttled", "Throttling.User answers (emulator)", "{:.0f}", "0", zero),
            ("operator_exits", "operator exits", "{:.0f}", "0", zero),
        ],
    ),
}


def _with_schedules(rows: list[Row]) -> list[Row]:
    """(c) with RtcRecordingSchedules present: the schedules, then c's rows for 10 000 and idle."""
    schedules: list[Row] = [
        ("schedules", "RtcRecordingSchedules in namespace c, with the 10 000", "{:.0f}", "", None),
        ("schedules_firing", "... of them due every minute (the others never during a run)", "{:.0f}", "", None),
        ("schedule_runs_at_restart_10000", "... their runs present at the restart (resources too)", "{:.0f}", "", None),
        (
            "schedules_undecided_10000",
            "... schedules without a nextScheduleTime after the restart settled (lost)",
            "{:.0f}",
            "0",
            zero,
        ),
        ("schedules_active_runs_10000", "... active runs the schedules list", "{:.0f}", "", None),
    ]
    idle = {
        "idle_operator_mb": "no recording, only the schedules: operator RSS",
        "idle_receiver_mb": "no recording, only the schedules: receiver RSS",
    }
    kept = [
        (key, idle.get(key, label.replace("10 000 present", "10 000 present and the schedules")), fmt, target, ok)
        for key, label, fmt, target, ok in rows
        if key.endswith("_10000") or key in idle
    ]
    return schedules + kept


SECTIONS["cs"] = ("cs", _with_schedules(SECTIONS["c"][1]))

SHARDS = ("shard-0", "shard-1", "shard-2")


def _per_shard(key: str, label: str, fmt: str) -> list[Row]:
    return [(f"{key}_{shard}", f"... {shard}: {label}", fmt, "", None) for shard in SHARDS]


def _rebalance(variant: str, what: str) -> list[Row]:
    return [
        (
            f"{variant}_expiry_after_kill",
            f"{what} SIGKILLed and left down: its Lease expired after the kill (renewTime + 10 s)",
            "{:.1f} s",
            "",
            None,
        ),
        (f"{variant}_moved_recordings", "... its account's recordings", "{:.0f}", "", None),
        (
            f"{variant}_moved_seconds",
            "... all of them labelled for a live shard",
            "{:.1f} s",
            "",
            None,
        ),
        (f"{variant}_moved_after_expiry", "... the same, after its Lease expired", "{:.1f} s", "", None),
        (
            f"{variant}_new_recording_seconds",
            "... a recording of that account created right after the kill: Recording after the kill",
            "{:.1f} s",
            "",
            None,
        ),
        (
            f"{variant}_new_recording_after_expiry",
            f"... {what.lower()} killed: that recording Recording after the Lease expired",
            "{:.1f} s",
            "<= 15 s (issue 29)",
            le(15),
        ),
        (
            f"{variant}_extra_starts",
            f"... {what.lower()} killed: Starts of its account besides that recording's",
            "{:.0f}",
            "0",
            zero,
        ),
        (
            f"{variant}_back_seconds",
            "... started again: an account drained to it after its start",
            "{:.1f} s",
            "",
            None,
        ),
    ]


SECTIONS["s"] = (
    "s",
    [
        (
            "assign_seconds",
            "10 000 recordings of 3 accounts at rest, unlabelled: the sharder had labelled every one after the "
            "shards' first start (first run only)",
            "{:.1f} s",
            "",
            None,
        ),
        ("assign_writes", "... apiserver writes on RtcRecordings meanwhile", "{:.0f}", "", None),
        (
            "assign_balanced_seconds",
            "... the accounts spread over the 3 shards after the start (a shard the sharder saw late: a drain)",
            "{:.1f} s",
            "",
            None,
        ),
        ("assign_handled_seconds", "... every shard had handled its share after the start", "{:.1f} s", "", None),
        (
            "restart_resumed_seconds",
            "the 3 shards SIGKILLed and started: every shard had handled its share (the slowest)",
            "{:.1f} s",
            "",
            None,
        ),
        *_per_shard("restart_share", "its share (recordings labelled for it)", "{:.0f}"),
        *_per_shard("restart_resumed_seconds", "its share handled", "{:.1f} s"),
        (
            "restart_new_recording_max",
            "... a new recording of each account created 1, 3 and 5 s after the start: Recording after its "
            "create (slowest of 9)",
            "{:.1f} s",
            "",
            None,
        ),
        *_per_shard("restart_peak_mb", "RSS, peak", "{:.0f} MB"),
        *_per_shard("restart_settled_mb", "RSS, settled (20 s later)", "{:.0f} MB"),
        *_per_shard("restart_cpu_s", "CPU-s until every share was handled", "{:.1f}"),
        ("restart_sharder_extra_mb", "... the sharder's RSS above the other shards' (median)", "{:.0f} MB", "", None),
        ("restart_others_cores", "... cores used meanwhile by other engineers' processes", "{:.2f}", "", None),
        ("restart_exits", "... shard exits by themselves (our kills not counted)", "{:.0f}", "0", zero),
        (
            "throughput_seconds",
            "300 of each of 3 accounts created with the shards down: all 900 Recording after the shards' start",
            "{:.1f} s",
            "",
            None,
        ),
        ("throughput_labelled_seconds", "... the sharder had labelled all 900 after", "{:.1f} s", "", None),
        ("throughput_first_task_seconds", "... the first TaskId after", "{:.1f} s", "", None),
        (
            "throughput_starts_per_s",
            "... aggregate Starts per second (900 / the time until all were Recording)",
            "{:.0f}",
            "150 (the 3 quotas)",
            None,
        ),
        ("throughput_ratio", "... ratio to the quotas' ceiling (150/s)", "{:.2f}", "", None),
        (
            "throughput_window_starts_per_s",
            "... Starts per second from the first TaskId to the last",
            "{:.0f}",
            "",
            None,
        ),
        ("throughput_starts", "... Starts sent", "{:.0f}", "", None),
        ("throughput_writes_per_start", "... apiserver writes per Start (the label's included)", "{:.2f}", "", None),
        ("throughput_throttled", "... Throttling.User answers to the 3 accounts' keys", "{:.0f}", "0", zero),
        *_per_shard(
            "throughput_cpu_ms_per_start",
            "CPU-ms per Start (its process CPU / the Starts of the accounts it has at the end)",
            "{:.1f}",
        ),
        *_per_shard("throughput_sharder", "ran the sharder (runs)", "{}"),
        (
            "throughput_cores_ours",
            "... cores used by the stack (shards, receiver, apiserver, etcd, emulator, driver): 2 on this machine",
            "{:.2f}",
            "",
            None,
        ),
        ("throughput_apiserver_cpu_s", "... kube-apiserver CPU-s", "{:.1f}", "", None),
        ("throughput_etcd_cpu_s", "... etcd CPU-s", "{:.1f}", "", None),
        ("throughput_emulator_cpu_s", "... emulator CPU-s", "{:.1f}", "", None),
        ("throughput_receiver_cpu_s", "... receiver CPU-s", "{:.1f}", "", None),
        ("throughput_others_cores", "... cores used meanwhile by other engineers' processes", "{:.2f}", "", None),
        *_rebalance("shard", "A shard that is not the sharder"),
        *_rebalance("sharder", "The sharder"),
        (
            "chaos_created",
            "60 s of creates (about 4/s) and deletes (every third) of the 3 accounts' recordings while a shard is "
            "restarted, one killed and started 30 s later, a 4th added and removed, the sharder restarted: created",
            "{:.0f}",
            "",
            None,
        ),
        ("chaos_deleted", "... deleted", "{:.0f}", "", None),
        ("chaos_drained", "... recordings moved by a handover (drain), as the driver's watch saw", "{:.0f}", "", None),
        ("chaos_reassigned", "... recordings moved off a dead shard (reassign)", "{:.0f}", "", None),
        ("chaos_stop_seconds", "... shard-3 exited after its SIGTERM (a scale-down's wait)", "{:.1f} s", "", None),
        ("chaos_settle_seconds", "... settled after the last event", "{:.1f} s", "", None),
        ("chaos_duplicates", "... duplicates at settle", "{:.0f}", "0", zero),
        ("chaos_leaks", "... leaks", "{:.0f}", "0", zero),
        ("chaos_lost", "... lost (created, not deleted, not Recording)", "{:.0f}", "0", zero),
        ("chaos_over_quota", "... over quota (Throttling.User answers)", "{:.0f}", "0", zero),
        ("chaos_wrong", "... wrong (Recording with a task that is not live)", "{:.0f}", "0", zero),
        ("chaos_off_live_shards", "... recordings labelled for a shard that is not running", "{:.0f}", "0", zero),
        ("chaos_draining", "... recordings still draining", "{:.0f}", "0", zero),
        ("chaos_deleted_left", "... recordings deleted in the chaos and still there", "{:.0f}", "0", zero),
        ("delete_seconds", "delete-all afterwards: every recording gone and no live task after", "{:.1f} s", "", None),
        ("delete_resources_left", "... recordings left", "{:.0f}", "0", zero),
        ("delete_live_tasks", "... live tasks left (leaks)", "{:.0f}", "0", zero),
        (
            "exits",
            "shard exits by themselves in throughput, rebalance and chaos (our kills not counted)",
            "{:.0f}",
            "",
            None,
        ),
    ],
)
# Figures that sum several counts in the table (the row shows the sum over the four).
SUMS = {
    f"{phase}_duplicates": [f"{phase}_{k}" for k in ("duplicates", "leaks", "stuck", "wrong")]
    for phase in ("outage", "apiserver")
}


def _value(runs_or_median: dict, key: str) -> Any:
    if key in SUMS:
        parts = [runs_or_median.get(k) for k in SUMS[key]]
        return None if any(p is None for p in parts) else sum(parts)
    return runs_or_median.get(key)


def _fmt(fmt: str, value: Any) -> str:
    if value is None:
        return "n/a"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def table(name: str, results: dict) -> str:
    unit, rows = SECTIONS[name]
    data = results.get("scenarios", {}).get(unit)
    if not data:
        return "_not run yet_"
    m = data["machine"]
    lines = [
        f"Command: `{data['command']}` ({len(data['runs'])} runs, {data['seconds']} s in all; "
        f"{m['date']}, commit {m['commit']}, load average {m['loadavg']:.1f} at the start).",
        "",
        "| Figure | Median | Runs | Target | Met |",
        "| --- | --- | --- | --- | --- |",
    ]
    for key, label, fmt, target, ok in rows:
        median = _value(data["median"], key)
        runs = ", ".join(_fmt(fmt, _value(run, key)).replace(" s", "").replace(" MB", "") for run in data["runs"])
        met = "" if ok is None else ("met" if ok(median) else "**not met**")
        lines.append(f"| {label} | {_fmt(fmt, median)} | {runs} | {target} | {met} |")
    return "\n".join(lines)


def targets(results: dict) -> str:
    lines = ["| Target | Figure | Median | Met |", "| --- | --- | --- | --- |"]
    for name, (unit, rows) in SECTIONS.items():
        data = results.get("scenarios", {}).get(unit)
        for key, label, fmt, target, ok in rows:
            if ok is None or not target:
                continue
            median = _value(data["median"], key) if data else None
            met = "not run" if not data else ("met" if ok(median) else "**not met**")
            lines.append(f"| ({name}) {target} | {label.lstrip('. ')} | {_fmt(fmt, median)} | {met} |")
    return "\n".join(lines)


def machine(results: dict) -> str:
    seen = {}
    for unit, data in sorted(results.get("scenarios", {}).items()):
        m = data["machine"]
        seen.setdefault((m["nproc"], m["memoryGiB"], m["cpu"], m["python"], m["kubernetes"], m["kopf"]), []).append(
            f"{unit} ({m['date']})"
        )
    lines = [
        "| nproc | memory | CPU | Python | Kubernetes | Kopf | scenarios (date) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (nproc, mem, cpu, python, kube, kopf), units in seen.items():
        lines.append(f"| {nproc} | {mem} GiB | {cpu} | {python} | {kube} | {kopf} | {', '.join(units)} |")
    return "\n".join(lines)


def render(results: dict) -> None:
    text = DOC.read_text()
    blocks = {
        "machine": machine(results),
        "targets": targets(results),
        **{name: table(name, results) for name in SECTIONS},
    }
    for name, body in blocks.items():
        pattern = re.compile(rf"(<!-- bench:{name} -->\n)(?:.*?\n)?(<!-- /bench:{name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"BENCHMARKS.md has no <!-- bench:{name} --> block")
        text = pattern.sub(lambda match, body=body: match.group(1) + body + "\n" + match.group(2), text)
    DOC.write_text(text)


if __name__ == "__main__":
    render(json.loads(RESULTS.read_text()))
    sys.exit(0)
