"""Where a restart with N resources spends the operator's time: scenario (c)'s seeding, then one
operator start under py-spy (`pip install py-spy`; not a dependency of the project).

    .venv/bin/python -m benchmarks.profile_restart [N] [seconds]

Writes the collapsed stacks to build/profile-restart-N.txt and prints the functions with the most
samples (own and cumulative)."""

from __future__ import annotations

import collections
import subprocess
import sys
import time
from pathlib import Path

from rtc_recording.cluster.processes import wait_for

from .harness import Stack
from .scenarios import _seed, log, seed_template

REPO = Path(__file__).resolve().parent.parent


def main(n: int, seconds: float) -> None:
    out = REPO / "build" / f"profile-restart-{n}.txt"
    out.parent.mkdir(exist_ok=True)
    stack = Stack(REPO / "build" / "profile-restart")
    try:
        stack.namespace("c")
        stack.tracker.start()
        stack.start_operator()  # once with no resource, as (c) does: the one-time sealing (ownership.py) is done
        stack.wait_metrics()
        stack.operator.stop()
        _seed(stack, seed_template(stack), 1, n - 1, 20)
        wait_for(lambda: stack.tracker.present("c") >= n, 120, what=f"{n} resources listed")
        stack.tracker.stop()
        log(f"profiling the operator's start with {n} resources for {seconds:.0f} s")
        stack.start_operator()
        time.sleep(0.3)
        subprocess.run(
            [
                str(REPO / ".venv/bin/py-spy"),
                "record",
                "--format",
                "raw",
                "--rate",
                "200",
                "-o",
                str(out),
                "--duration",
                str(int(seconds)),
                "--pid",
                str(stack.operator.proc.pid),
            ],
            check=True,
        )
    finally:
        stack.close()
    summarize(out)


def summarize(path: Path, top: int = 40) -> None:
    own: collections.Counter[str] = collections.Counter()
    cumulative: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [f.rsplit(" (", 1)[0] + " (" + f.rsplit(" (", 1)[-1].split(":")[0] + ")" for f in stack.split(";")]
        n = int(count)
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            cumulative[frame] += n
    print(f"{total} samples")
    for title, counter in (("own", own), ("cumulative", cumulative)):
        print(f"-- {title}")
        for frame, n in counter.most_common(top):
            print(f"{100 * n / total:5.1f}%  {frame}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000, float(sys.argv[2]) if len(sys.argv) > 2 else 30)
