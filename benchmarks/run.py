"""`make bench`: run the scenarios, keep every run and the medians in benchmarks/results.json,
and regenerate the tables of BENCHMARKS.md.

    python -m benchmarks.run [--scenarios a,b,c,d,e] [--runs 3] [--quick] [--schedules 100 [--schedules-firing 5]]
    python -m benchmarks.run --scenarios s [--runs 3]    # three shards of three accounts (issue 29)

A selection updates only its scenarios in results.json; the others keep their last figures
(each scenario records the machine and date it ran on). --quick shrinks every size for a
smoke test of the harness and writes nothing. --schedules N runs scenario c with N
RtcRecordingSchedules present (K of them due every minute with --schedules-firing K), and keeps
its figures apart, as "cs" (BENCHMARKS.md, "(c) with schedules"): plain c's stay as they were.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

# Read when alibabacloud_credentials is imported: no metadata address is tried here either.
os.environ.setdefault("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")

from . import report, scenarios, sharded  # noqa: E402
from .harness import ROOT, machine, median  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results.json"
UNITS = {"ab": "a,b", "c": "c", "cs": "c SCHEDULES=", "d": "d", "e": "e", "f": "f", "g": "g", "s": "s"}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of every number over the runs; booleans: how many runs were true."""
    keys = {k for run in runs for k in run}
    out: dict[str, Any] = {}
    for key in sorted(keys):
        values = [run.get(key) for run in runs]
        if all(isinstance(v, bool) for v in values if v is not None) and any(isinstance(v, bool) for v in values):
            out[key] = f"{sum(1 for v in values if v)}/{len(values)}"
        elif all(isinstance(v, (int, float)) or v is None for v in values):
            out[key] = median(values)
    return out


def main(argv: list[str] | None = None) -> int:
    # Started in the background SIGINT may be ignored, and SIGTERM would skip every `finally`: both
    # stop the run by an exception, so the stacks under way are torn down.
    # The driver's own watch retries by itself (an apiserver restart, a 429 while it starts); its
    # warnings would only clutter the progress lines.
    logging.getLogger("rtc_recording").setLevel(logging.ERROR)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenarios", default="a,b,c,d,e,f")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small sizes, results not written")
    parser.add_argument("--workdir", default=str(ROOT / "build" / "bench"))
    parser.add_argument(
        "--schedules",
        type=int,
        default=int(os.environ.get("BENCH_SCHEDULES") or 0),
        help="scenario c with this many RtcRecordingSchedules present (recorded as cs); env BENCH_SCHEDULES",
    )
    parser.add_argument(
        "--schedules-firing",
        type=int,
        default=int(os.environ.get("BENCH_SCHEDULES_FIRING") or 0),
        help="of them, this many due every minute (the others never during a run); env BENCH_SCHEDULES_FIRING",
    )
    args = parser.parse_args(argv)
    if args.schedules_firing > args.schedules:
        parser.error("--schedules-firing cannot exceed --schedules")
    wanted = {s.strip() for s in args.scenarios.split(",") if s.strip()}
    unknown = wanted - set("abcdefgs")
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}; choose from a,b,c,d,e,f,g,s")
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() and not args.quick else {"scenarios": {}}
    workdir = Path(args.workdir)
    q = args.quick
    began = time.monotonic()
    failed: list[str] = []

    schedules = f"{args.schedules}" + (f" SCHEDULES_FIRING={args.schedules_firing}" if args.schedules_firing else "")

    def label(unit: str) -> str:
        return UNITS[unit] + (schedules if unit == "cs" else "")

    def record(unit: str, runs: list[dict[str, Any]], seconds: float) -> None:
        results["scenarios"][unit] = {
            "machine": machine(),
            "runs": runs,
            "median": summarise(runs),
            "seconds": round(seconds),
            "command": f"make bench SCENARIOS={label(unit)}",
        }
        if not q:
            RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True, default=str) + "\n")
            report.render(results)

    units = (("ab", {"a", "b"}), ("c", {"c"}), ("d", {"d"}), ("e", {"e"}), ("f", {"f"}), ("g", {"g"}), ("s", {"s"}))
    for unit, letters in units:
        if not wanted & letters:
            continue
        if unit == "c" and args.schedules:
            unit = "cs"
        t0 = time.monotonic()
        shutil.rmtree(workdir / unit, ignore_errors=True)
        try:
            runs = run_unit(unit, workdir, args.runs, q, args.schedules, args.schedules_firing)
        except Exception:  # the other scenarios still run; this one keeps its last figures
            scenarios.log(f"{label(unit)}: failed\n{traceback.format_exc()}")
            failed.append(unit)
            continue
        record(unit, runs, time.monotonic() - t0)
        scenarios.log(f"{label(unit)}: done in {time.monotonic() - t0:.0f} s")
    scenarios.log(f"all done in {time.monotonic() - began:.0f} s" + (f"; failed: {failed}" if failed else ""))
    if q:
        json.dump(results, sys.stdout, indent=1, default=str)
    return 1 if failed else 0


def run_unit(
    unit: str, workdir: Path, runs_wanted: int, q: bool, schedules: int = 0, firing: int = 0
) -> list[dict[str, Any]]:
    if unit == "ab":
        return [
            scenarios.throughput(workdir / unit / str(r), r, n=100 if q else 1000, singles=10 if q else 50)
            for r in range(runs_wanted)
        ]
    if unit in ("c", "cs"):
        sizes = (100, 300) if q else (1000, 10000)
        return scenarios.restart(workdir / unit, runs_wanted, sizes=sizes, schedules=schedules, firing=firing)
    if unit == "d":
        return scenarios.steady(
            workdir / unit, runs_wanted, n=100 if q else 1000, on_window=20 if q else 100, off_window=20 if q else 60
        )
    if unit == "g":
        return [
            scenarios.waiting(workdir / unit / str(r), r, n=100 if q else 1000, window=10 if q else 60)
            for r in range(runs_wanted)
        ]
    if unit == "s":
        return sharded.run(
            workdir / unit,
            runs_wanted,
            n=300 if q else 10000,
            per_account=50 if q else 300,
            chaos_seconds=40 if q else 60,  # 40: a killed shard's account is reassigned before shard-3 comes
        )
    if unit == "f":
        n = 200 if q else 2000
        return [
            {
                **scenarios.busy_restart(workdir / unit / str(r), r, n=n),
                **{
                    f"stall_{k}": v
                    for k, v in scenarios.busy_restart(workdir / unit / f"{r}-stall", r, n=n, stall_seconds=8).items()
                },
            }
            for r in range(runs_wanted)
        ]
    return [
        scenarios.chaos(workdir / unit / str(r), r, n=60 if q else 300, phase_n=10 if q else 50)
        for r in range(runs_wanted)
    ]


if __name__ == "__main__":
    sys.exit(main())
