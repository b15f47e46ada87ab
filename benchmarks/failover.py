"""Failover time of the operator: two replicas, the active one killed, until the other has acted.

    .venv/bin/python benchmarks/failover.py [--rounds 8] [--signal KILL|TERM]
    .venv/bin/python benchmarks/failover.py --mode peering [--lifetime 10]   # the alternative, for comparison

Each round, against a local kube-apiserver and the cloud emulator: wait until one replica leads
and the other stands by, wait a random part of a renewal period (so the kill lands anywhere in
the renewal cycle), kill the active replica (SIGKILL: no release, no cleanup; SIGTERM: a rolling
update), create an RtcRecording at once, and time how long until it is `Recording` (polled every
50 ms). That time is what a user sees: nothing reconciles in between. The killed replica is
started again as the new standby under a new name (a new pod).

Modes:
- lease (what the operator does): `rtcrec run` with the default Lease timing (duration 10 s,
  renew deadline 6 s, retry period 2 s) unless --lease-duration etc. say otherwise.
- peering: Kopf's peering instead (a ClusterKopfPeering, `settings.peering.lifetime = --lifetime`,
  a lower priority for the standby, since equal priorities pause both). Only to compare: the
  operator does not ship it (docs/ha.md says why).

Prints one line per round and a summary (min, median, max), and the summary as JSON last.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from rtc_recording.cluster.launcher import LocalCluster, free_port
from rtc_recording.cluster.processes import RtcrecProcess, local_env, wait_for
from rtc_recording.emulator import EmulatorConfig, run_in_thread
from rtc_recording.kube.client import Kube
from rtc_recording.kube.config import Connection
from rtc_recording.kube.errors import NotFound

APP, BUCKET = "bench-app", "bench-recordings"
ACCESS_KEY = ("LTAI5tFailoverBench", "failover-bench-secret")
NAMESPACE = "failover"
LEASE = "rtc-recording-operator"
PEERING = "rtcrec-failover"

PEERING_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "clusterkopfpeerings.kopf.dev"},
    "spec": {
        "scope": "Cluster",
        "group": "kopf.dev",
        "names": {"kind": "ClusterKopfPeering", "plural": "clusterkopfpeerings", "singular": "clusterkopfpeering"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {"status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                    }
                },
            }
        ],
    },
}
# `rtcrec run`, but with Kopf peering (a priority, a lifetime) instead of the Lease.
PEERING_RUNNER = f"""
import sys, logging, kopf
from rtc_recording.controller import handlers
from rtc_recording.settings import Settings
priority, lifetime = int(sys.argv[1]), int(sys.argv[2])

@kopf.on.startup()
def peering(settings, **_):
    settings.peering.lifetime = lifetime

kopf.configure(verbose=True)
kopf.run(clusterwide=True, peering_name={PEERING!r}, priority=priority, memo=kopf.Memo(config=Settings()))
"""


def recording(name: str, channel: str) -> dict:
    return {
        "apiVersion": "rtc.recording.io/v1alpha1",
        "kind": "RtcRecording",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "appId": APP,
            "channelId": channel,
            "mode": "Individual",
            "maxIdleSeconds": 600,
            "subscribers": [{"userId": "alice"}],
            "storage": {"oss": {"endpoint": "oss-cn-shanghai.aliyuncs.com", "bucket": BUCKET}},
        },
    }


class Replica(RtcrecProcess):
    def __init__(self, env: dict[str, str], work: Path, name: str, mode: str, priority: int, lifetime: int):
        self.name, self.priority = name, priority
        # POD_ID: Kopf's name for this replica in the peering object.
        super().__init__(
            "run",
            {**env, "RTCREC_POD_NAME": name, "POD_ID": name, "RTCREC_METRICS_PORT": str(free_port())},
            work / f"{name}.log",
        )
        self.argv = [sys.executable, "-c", PEERING_RUNNER, str(priority), str(lifetime)] if mode == "peering" else None

    def start(self) -> Replica:
        if self.argv is None:
            return super().start()
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self


async def until_recording(kube: Kube, name: str, timeout: float = 120) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            obj = await kube.get_recording(NAMESPACE, name)
            if (obj.get("status") or {}).get("phase") == "Recording":
                return time.monotonic()
        except NotFound:
            pass
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{name} not Recording after {timeout} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--mode", choices=["lease", "peering"], default="lease")
    parser.add_argument("--signal", choices=["KILL", "TERM"], default="KILL")
    parser.add_argument("--lifetime", type=int, default=10, help="peering: settings.peering.lifetime (s)")
    parser.add_argument("--lease-duration", type=float, help="lease: RTCREC_LEASE_DURATION_SECONDS")
    parser.add_argument("--renew-deadline", type=float, help="lease: RTCREC_LEASE_RENEW_DEADLINE_SECONDS")
    parser.add_argument("--retry-period", type=float, help="lease: RTCREC_LEASE_RETRY_PERIOD_SECONDS")
    args = parser.parse_args()
    os.environ["ALIBABA_CLOUD_ECS_METADATA_DISABLED"] = "true"

    work = Path(tempfile.mkdtemp(prefix="rtcrec-failover-"))
    cluster = LocalCluster.start(work / "cluster")
    config = EmulatorConfig(access_keys=dict([ACCESS_KEY]), apps={APP}, oss_buckets={BUCKET}, time_scale=30, seed=5)
    replicas: list[Replica] = []
    try:
        cluster.apply_crds()
        cluster.kubectl("create", "namespace", NAMESPACE)
        if args.mode == "peering":
            cluster.kubectl("apply", "-f", "-", input=json.dumps(PEERING_CRD))
            cluster.kubectl(
                "wait", "--for=condition=Established", "--timeout=60s", "crd", "clusterkopfpeerings.kopf.dev"
            )
            cluster.kubectl(
                "apply",
                "-f",
                "-",
                input=json.dumps(
                    {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": PEERING}}
                ),
            )
        with run_in_thread(config) as emulator:
            lease = {
                k: v
                for k, v in (
                    ("lease_duration_seconds", args.lease_duration),
                    ("lease_renew_deadline_seconds", args.renew_deadline),
                    ("lease_retry_period_seconds", args.retry_period),
                )
                if v is not None
            }
            env = local_env(
                cluster.kubeconfig,
                emulator.url,
                receiver_port=free_port(),
                metrics_port=0,
                auth_key="unused" * 4,
                access_key=ACCESS_KEY,
                **lease,
            )
            for key in ("RTCREC_CALLBACK_URL", "RTCREC_CALLBACK_AUTH_KEY"):  # no receiver: not measured here
                env.pop(key)
            times = asyncio.run(rounds(args, cluster, emulator, env, work, replicas))
    finally:
        for replica in replicas:
            replica.kill()
        cluster.stop()

    summary = {
        "mode": args.mode,
        "signal": args.signal,
        "rounds": len(times),
        "min": round(min(times), 2),
        "median": round(statistics.median(times), 2),
        "max": round(max(times), 2),
    }
    if args.mode == "peering":
        summary["lifetime"] = args.lifetime
    print(
        f"failover ({args.mode}, SIG{args.signal}): min {summary['min']} s, median {summary['median']} s, "
        f"max {summary['max']} s over {len(times)} rounds"
    )
    print(json.dumps(summary))
    return 0


async def rounds(args, cluster: LocalCluster, emulator, env: dict, work: Path, replicas: list) -> list[float]:
    kube = Kube(Connection.from_kubeconfig(str(cluster.kubeconfig)))
    priority = 1000

    def start(n: int) -> Replica:
        nonlocal priority
        priority -= 10  # peering: each new replica ranks below the running ones, so it stands by
        replicas.append(Replica(env, work, f"replica-{n}", args.mode, priority, args.lifetime).start())
        return replicas[-1]

    def holder() -> str | None:
        if args.mode == "lease":
            got = cluster.kubectl("get", "lease", LEASE, "-n", "default", "-o", "json", check=False)
            return json.loads(got.stdout)["spec"].get("holderIdentity") if got.returncode == 0 else None
        live = [r for r in replicas if r.proc.poll() is None]
        return max(live, key=lambda r: r.priority).name if live else None

    def standing_by(replica: Replica) -> bool:
        if args.mode == "lease":
            return "standing by as" in replica.output()
        got = cluster.kubectl("get", "clusterkopfpeering", PEERING, "-o", "json")
        return replica.name in (json.loads(got.stdout).get("status") or {})  # its keep-alives arrive

    start(0)
    wait_for(lambda: holder() == "replica-0", timeout=60, what="replica-0 leading")
    standby = start(1)
    times = []
    try:
        for n in range(args.rounds):
            wait_for(
                lambda standby=standby: standing_by(standby),
                timeout=60,
                what=f"{standby.name} standing by",
                details=standby.output,
            )
            active = next(r for r in replicas if r.name == holder())
            # Let the standby see a few renewals, then kill at a random point of the cycle.
            await asyncio.sleep(3 + random.uniform(0, 2))
            channel = f"room-{uuid.uuid4().hex[:8]}"
            emulator.control.join(APP, channel, "alice")
            killed = time.monotonic()
            if args.signal == "KILL":
                active.kill()
            else:
                active.stop()
            await kube.create(
                f"/apis/rtc.recording.io/v1alpha1/namespaces/{NAMESPACE}/rtcrecordings",
                recording(f"probe-{n}", channel),
            )
            took = await until_recording(kube, f"probe-{n}") - killed
            times.append(took)
            tasks = [t for t in emulator.control.tasks(app_id=APP, channel_id=channel) if t["status"] == "RUNNING"]
            assert len(tasks) == 1, f"round {n}: {len(tasks)} tasks for one resource"
            print(
                f"round {n + 1}: {active.name} SIG{args.signal}ed, {standby.name} had probe-{n} Recording "
                f"after {took:.2f} s",
                flush=True,
            )
            standby = start(n + 2)
    finally:
        await kube.close()
    return times


if __name__ == "__main__":
    sys.exit(main())
