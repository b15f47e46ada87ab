"""Where the operator spends its CPU on Starts: scenario (a)'s 1000 pre-created resources, the
operator and the receiver started, the operator under py-spy until all are Recording
(`pip install py-spy`; not a dependency of the project).

    .venv/bin/python -m benchmarks.profile_starts [N]

Writes the collapsed stacks to build/profile-starts-N.txt and prints the functions with the most
samples (own and cumulative)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .harness import Stack
from .profile_restart import summarize
from .scenarios import channels_for, wait_recording

REPO = Path(__file__).resolve().parent.parent


def main(n: int) -> None:
    out = REPO / "build" / f"profile-starts-{n}.txt"
    out.parent.mkdir(exist_ok=True)
    stack = Stack(REPO / "build" / "profile-starts")
    try:
        stack.namespace("a")
        manifests = channels_for(stack, "pre", n)
        stack.tracker.start()
        stack.create("a", manifests)
        stack.start_operator()
        spy = subprocess.Popen(
            [
                str(REPO / ".venv/bin/py-spy"),
                *("record", "--format", "raw", "--rate", "200", "-o", str(out)),
                *("--pid", str(stack.operator.proc.pid)),
            ]
        )
        stack.receiver.start()
        wait_recording(stack, "a", n, timeout=600)
        spy.send_signal(2)  # SIGINT: py-spy writes what it sampled
        spy.wait(30)
    finally:
        stack.close()
    summarize(out)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
