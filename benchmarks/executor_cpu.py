"""The executor's own CPU per Start, without the apiserver or the cloud: `python -m benchmarks.executor_cpu`.

2000 RtcRecordings started one after another over the unit tests' in-memory apiserver and scripted cloud
(`tests/unit/fakes.World`): what a change to the executor costs, apart from the machine's other noise.
"""

import asyncio
import time

from tests.unit.fakes import NS, World, recording

N = 2000


async def main() -> None:
    world = World()
    executor = world.start_operator()
    names = [f"rec-{i}" for i in range(N)]
    for name in names:
        world.kube.add_recording(recording(name=name))
    started = time.process_time()
    for name in names:
        await executor.reconcile(await world.kube.get_recording(NS, name))
    spent = time.process_time() - started
    phases = [(await world.kube.get_recording(NS, name))["status"]["phase"] for name in names]
    print(f"{N} Starts ({phases.count('Recording')} Recording): {spent * 1000 / N:.2f} CPU-ms each")


if __name__ == "__main__":
    asyncio.run(main())
