"""Per-call cost of the emulator's task engine at 1k and 10k live tasks (not a test).

    .venv/bin/python tests/emulator/bench_engine.py [--sizes 1000 10000] [--runs 3] [--server]

Each live task records its own channel (one user publishing audio and camera), OSS with
HLS and MP4, a NotifyUrl and MP4 upload callbacks: what the operator's recordings look
like. Measured per call, median of `--runs` runs (each the mean over many calls):

- tick: `advance()` by 20 ms of emulated time with nothing due (the server's background tick),
- describe: `describe()` of a random live task (what every API call pays besides its own work),
- start+stop: one more task started and stopped (rough: includes validation).

With --server, also the running emulator (aiohttp on loopback, callbacks off): the CPU
its background tick uses while nobody calls (process CPU seconds per wall second over
3 s), and a Describe through the vendor's SDK, wall time per call (the SDK's own work
included).

Only public Engine methods are used, so the same script measures any version of tasks.py.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from emulator_samples import APP, BUCKET, individual, oss  # noqa: E402

from rtc_recording.emulator import EmulatorConfig, create_app  # noqa: E402
from rtc_recording.emulator.server import EMULATOR  # noqa: E402
from rtc_recording.emulator.tasks import Engine  # noqa: E402
from rtc_recording.emulator.validation import Account, validate_start  # noqa: E402

ACCOUNT = Account("cn-shanghai", frozenset({APP}), frozenset({BUCKET}))
T0 = 1_700_000_000.0
TICK = 0.02


def raw(channel: str) -> dict:
    return individual(
        "alice",
        ChannelId=channel,
        StorageParams=oss(FileInfo=[{"Format": "HLS"}, {"Format": "MP4"}]),
        NotifyUrl="http://127.0.0.1:9/cb",
        NotifyFileUploadedFormat=["MP4"],
    )


def populate(size: int) -> tuple[Engine, list[str], float]:
    counter = itertools.count()
    engine = Engine(new_id=lambda: f"task-{next(counter)}")
    now = T0
    ids = []
    for i in range(size):
        channel = f"room-{i}"
        engine.join(APP, channel, "alice", ["audio", "camera"], now)
        ids.append(engine.start(validate_start(raw(channel), ACCOUNT), "AK1", now).task_id)
    engine.drain()
    return engine, ids, now


def per_call(seconds: float, calls: int) -> float:
    return seconds / calls * 1e3  # ms


def run(size: int, rng: random.Random) -> dict[str, float]:
    engine, ids, now = populate(size)
    calls = 2000 if size <= 1000 else 300
    began = time.perf_counter()
    for _ in range(calls):
        now += TICK
        engine.advance(now)
        engine.drain()
    tick = per_call(time.perf_counter() - began, calls)

    began = time.perf_counter()
    for _ in range(calls):
        now += TICK
        engine.describe(rng.choice(ids), now)
        engine.drain()
    describe = per_call(time.perf_counter() - began, calls)

    spec = validate_start(raw("room-0"), ACCOUNT)
    began = time.perf_counter()
    for _ in range(calls // 2):
        now += TICK
        task_id = engine.start(spec, "AK1", now).task_id
        engine.stop(task_id, now)
        engine.drain()
    start_stop = per_call(time.perf_counter() - began, calls // 2)
    return {"tick": tick, "describe": describe, "start+stop": start_stop}


def run_server(size: int, rng: random.Random) -> dict[str, float]:
    from aiohttp import web
    from alibabacloud_live20161101 import models as live_models
    from alibabacloud_live20161101.client import Client
    from alibabacloud_tea_openapi import models as openapi_models

    app = create_app(
        EmulatorConfig(
            access_keys={"AK1": "secret1"}, apps={APP}, oss_buckets={BUCKET}, quota_per_second=0, callbacks=False
        )
    )
    emulator = app[EMULATOR]
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    url: list[str] = []

    async def serve() -> web.AppRunner:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url.append(f"127.0.0.1:{runner.addresses[0][1]}")
        return runner

    async def populate() -> list[str]:
        engine, ids = emulator.engine, []
        for i in range(size):
            now = emulator.clock.now()
            engine.join(APP, f"room-{i}", "alice", ["audio", "camera"], now)
            ids.append(engine.start(validate_start(raw(f"room-{i}"), ACCOUNT), "AK1", now).task_id)
        emulator.dispatcher.submit(engine.drain())
        return ids

    def thread() -> None:
        asyncio.set_event_loop(loop)
        runner = loop.run_until_complete(serve())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())

    worker = threading.Thread(target=thread, daemon=True)
    worker.start()
    ready.wait()
    try:
        ids = asyncio.run_coroutine_threadsafe(populate(), loop).result()
        cpu, wall = time.process_time(), time.perf_counter()
        time.sleep(3)
        idle = (time.process_time() - cpu) / (time.perf_counter() - wall)
        client = Client(
            openapi_models.Config(access_key_id="AK1", access_key_secret="secret1", endpoint=url[0], protocol="http")
        )
        calls = 200
        began = time.perf_counter()
        for _ in range(calls):
            client.describe_rtc_cloud_recording_files(
                live_models.DescribeRtcCloudRecordingFilesRequest(task_id=rng.choice(ids))
            )
        describe = per_call(time.perf_counter() - began, calls)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        worker.join()
    return {"idle cores": idle, "sdk describe": describe}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--server", action="store_true", help="also measure the running emulator")
    args = parser.parse_args()
    rng = random.Random(1)
    print(f"{'live tasks':>10}  {'tick ms':>9}  {'describe ms':>11}  {'start+stop ms':>13}   (median of {args.runs})")
    for size in args.sizes:
        runs = [run(size, rng) for _ in range(args.runs)]
        median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(
            f"{size:>10}  {median['tick']:>9.4f}  {median['describe']:>11.4f}  {median['start+stop']:>13.4f}",
            flush=True,
        )
    if args.server:
        print(f"{'live tasks':>10}  {'idle cores':>10}  {'SDK describe ms':>15}   (server, median of {args.runs})")
        for size in args.sizes:
            runs = [run_server(size, rng) for _ in range(args.runs)]
            median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            print(f"{size:>10}  {median['idle cores']:>10.3f}  {median['sdk describe']:>15.3f}", flush=True)


if __name__ == "__main__":
    main()
