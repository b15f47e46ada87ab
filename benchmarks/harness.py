"""What every benchmark scenario runs on, and the tools it measures with.

- `Stack`: a fresh etcd + kube-apiserver (`LocalCluster`), the cloud emulator as its own
  process (`rtcrec emulator`: its CPU is not the driver's and not the operator's), and the
  operator and the receiver as processes (`rtcrec run`, `rtcrec receiver`), configured as
  in a pod through `local_env`. Everything lives in one work directory (logs included)
  and is thrown away after the run.
- `ShardedStack`: a Stack whose operator is several shards (RTCREC_SHARDING=true, each its
  pod name and metrics port), with cloud accounts of their own (`Account`: a namespace, its
  credentials Secret, an AccessKey with its own quota), for scenario (s).
- `Tracker`: one watch of all RtcRecordings in the driver, timing when each resource
  first had a task id and was first `Recording` (monotonic clock of this process), and
  keeping its labels (a shard's share).
- `Bulk`: many apiserver requests at once (creates, status patches, deletes) through the
  operator's own `Kube` client, from a loop in a background thread.
- `seed_tasks`: tasks really started in the emulator, with the parameters the operator
  would send, under a second AccessKey of the same account (so the operator can Describe
  and Stop them) and without the quota (the emulator's knob is lifted while seeding).
- `proc`: CPU seconds and RSS (now and peak, VmHWM) of a process from /proc.
- `restart_apiserver`: the launcher cannot restart kube-apiserver, so this stops it and
  starts it again with the very same command line (read from /proc), keeping etcd's data.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.metadata
import json
import os
import platform
import re
import signal
import ssl
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from rtc_recording.api.keys import derive_key
from rtc_recording.api.names import DRAIN_LABEL, GROUP, PLURAL, SHARD_LABEL, USAGE_LABEL, VERSION
from rtc_recording.api.recording import RtcRecordingSpec, status_of
from rtc_recording.api.task import TaskInfo, TaskStatus
from rtc_recording.cloud.aliyun import AliyunRecordingCloud
from rtc_recording.cloud.credentials import Credentials, StaticCredentials
from rtc_recording.cloud.params import start_params
from rtc_recording.cluster import binaries
from rtc_recording.cluster.launcher import ClusterError, LocalCluster, alive, free_port
from rtc_recording.cluster.processes import RTCREC, RtcrecProcess, local_env, wait_for
from rtc_recording.decide import patches
from rtc_recording.decide.ownership import Sealer
from rtc_recording.emulator import EmulatorControl
from rtc_recording.kube.client import Kube
from rtc_recording.kube.config import Connection
from rtc_recording.kube.errors import NotFound
from rtc_recording.kube.reflector import Reflector

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[1]
APP, BUCKET, REGION = "bench-app", "bench-recordings", "cn-shanghai"
OPERATOR_KEY = ("LTAI5tBenchOperator", "bench-operator-secret")
SEEDER_KEY = ("LTAI5tBenchSeeder", "bench-seeder-secret")  # same account ("default"), its own quota
AUTH_KEY = "benchReceiverKey0123456789"
FINALIZER = f"{GROUP}/stop-task"
LIVE = ("RUNNING", "RECOVERING")
COLLECTION = f"/apis/{GROUP}/{VERSION}/{PLURAL}"


def now_utc() -> datetime:
    return datetime.now(UTC)


# -- the machine -------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    kopf_version = importlib.metadata.version("kopf")
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "memoryGiB": round(mem_kb / 2**20, 1),
        "cpu": cpu,
        "python": platform.python_version(),
        "kubernetes": binaries.KUBERNETES_VERSION,
        "etcd": binaries.ETCD_VERSION,
        "kopf": kopf_version,
        "kernel": platform.release(),
        "date": now_utc().strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit,
        "loadavg": os.getloadavg()[0],
    }


# -- processes ---------------------------------------------------------------------------------
CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc(pid: int) -> dict[str, float]:
    """{rss, hwm} in MB and {cpu} in CPU-seconds (user + system) of one process."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return {"rss": 0.0, "hwm": 0.0, "cpu": 0.0}
    kb = lambda key: int(re.search(rf"{key}:\s+(\d+)", status).group(1)) if key in status else 0  # noqa: E731
    return {"rss": kb("VmRSS") / 1024, "hwm": kb("VmHWM") / 1024, "cpu": (int(stat[11]) + int(stat[12])) / CLK_TCK}


def machine_cpu() -> tuple[float, float]:
    """CPU-seconds spent by all processes of the machine at normal priority (user, system, irq,
    softirq, steal) and niced (nice: background work that yields to ours)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + system + irq + softirq + steal) / CLK_TCK, nice / CLK_TCK


def others_cores(a: dict[str, dict[str, float]], b: dict[str, dict[str, float]], seconds: float) -> float:
    """Cores used meanwhile at normal priority by processes that are not this stack's nor this
    driver's: the machine is shared, and they compete with ours on equal terms."""
    ours = sum(b[n]["cpu"] - a.get(n, {"cpu": 0.0})["cpu"] for n in b if n not in ("machine", "niced"))
    return max(0.0, (b["machine"]["cpu"] - a["machine"]["cpu"] - ours) / seconds)


@dataclass(frozen=True)
class Account:
    """A cloud account of its own (the emulator's accounts): recordings of namespace `name` bill
    `key` through their credentials Secret `SECRET` there; `seeder` is a second AccessKey of the
    same account (its own quota) that seeds tasks, as SEEDER_KEY does for the operator's."""

    name: str
    key: tuple[str, str]
    seeder: tuple[str, str]


SECRET = "aliyun"


def bench_accounts(n: int) -> tuple[Account, ...]:
    return tuple(
        Account(f"acct-{i}", (f"LTAI5tBenchAcct{i}", f"bench-acct-{i}-secret"), (f"LTAI5tBenchSeed{i}", f"seed-{i}"))
        for i in range(n)
    )


class EmulatorProcess:
    """`rtcrec emulator` on a free port; the control API through `.control`."""

    def __init__(self, workdir: Path, time_scale: float, seed: int = 0, extra: tuple[Account, ...] = ()):
        out = workdir / "emulator.url"
        args = [
            RTCREC,
            "emulator",
            "--port",
            "0",
            "--app",
            APP,
            "--bucket",
            BUCKET,
            "--time-scale",
            str(time_scale),
            "--seed",
            str(seed),
            "--access-key",
            ":".join(OPERATOR_KEY),
            "--access-key",
            ":".join(SEEDER_KEY),
        ]
        for account in extra:
            for key_id, secret in (account.key, account.seeder):
                args += ["--access-key", f"{key_id}:{secret}", "--account", f"{key_id}:{account.name}"]
        with open(out, "wb") as stdout, open(workdir / "emulator.log", "ab") as stderr:
            self.proc = subprocess.Popen(
                args, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, start_new_session=True
            )
        self.url = wait_for(
            lambda: out.read_text().strip() if out.read_text().endswith("\n") else None, 30, what="the emulator's URL"
        )
        self.control = EmulatorControl(self.url, timeout=60)
        self.time_scale = time_scale

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        self.control.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


class Kubelet(RtcrecProcess):
    """An RtcrecProcess that is started again when it exits by itself, as the kubelet restarts a
    container (restartPolicy Always): after 10 s, doubling up to 300 s, reset once it ran for
    10 minutes. Exits we cause (kill, stop) are ours; every other exit is counted in `exits`."""

    BACKOFF, CAP, RESET = 10.0, 300.0, 600.0

    def __init__(self, command: str, env: dict[str, str], log: Path):
        super().__init__(command, env, log)
        self.exits: list[tuple[float, int]] = []  # (monotonic time, exit code)
        self._lock = threading.RLock()
        self._started = 0.0
        self._delay = self.BACKOFF
        self._due: float | None = None  # when to start it again
        self._ours = False  # the process was stopped or killed by us: its exit is not a crash
        self._closed = False
        threading.Thread(target=self._watch, name=f"kubelet-{command}", daemon=True).start()

    def start(self) -> Kubelet:
        with self._lock:
            self._due, self._ours = None, False
            self._started = time.monotonic()
            return super().start()  # type: ignore[return-value]

    def kill(self) -> None:
        with self._lock:
            self._due, self._ours = None, True
            super().kill()

    def stop(self) -> None:
        """SIGTERM: the operator exits 0 or 1 as it shuts down, and stays down until started."""
        with self._lock:
            self._due, self._ours = None, True
            super().stop()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            super().kill()

    def _watch(self) -> None:
        while not self._closed:
            time.sleep(0.1)
            with self._lock:
                proc, now = self.proc, time.monotonic()
                if self._closed or proc is None:
                    continue
                if self._due is None and not self._ours and proc.poll() is not None:
                    if now - self._started > self.RESET:
                        self._delay = self.BACKOFF
                    self.exits.append((now, proc.returncode))
                    self._due = now + self._delay
                    self._delay = min(self._delay * 2, self.CAP)
                if self._due is not None and now >= self._due and proc.poll() is not None:
                    self._due = None
                    self._started = now
                    RtcrecProcess.start(self)


class Loop:
    """An asyncio loop on a thread: the tracker's watch and bulk requests run on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="bench-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Awaitable[T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def spawn(self, coro: Awaitable[Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class Stack:
    """A fresh control plane, emulator, operator and receiver in `workdir` (not started: see start)."""

    def __init__(
        self,
        workdir: Path,
        *,
        time_scale: float = 1.0,
        seed: int = 0,
        extra_accounts: tuple[Account, ...] = (),
        **settings: object,
    ):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.cluster = LocalCluster.start(workdir / "cluster")
        try:
            for attempt in range(3):  # `kubectl wait` right after the apply can see a CRD without status yet
                try:
                    self.cluster.apply_crds()
                    break
                except ClusterError:
                    if attempt == 2:
                        raise
                    time.sleep(1)
            self.emulator = EmulatorProcess(workdir, time_scale, seed, extra_accounts)
            # pod_name: a stable identity, as a pod's name is, so that a SIGKILLed operator started again
            # (a container restart) takes its own Lease back at once instead of waiting the lease out.
            settings.setdefault("pod_name", "operator")
            self.env = local_env(
                self.cluster.kubeconfig,
                self.emulator.url,
                receiver_port=free_port(),
                metrics_port=free_port(),
                auth_key=AUTH_KEY,
                access_key=OPERATOR_KEY,
                **settings,
            )
            self.kubelets = self._kubelets()
            # As the chart runs it: trusting the cluster's CA alone (templates/receiver-deployment.yaml).
            receiver_env = {**self.env, "SSL_CERT_FILE": str(self.cluster.state_dir / "pki" / "apiserver.crt")}
            self.receiver = RtcrecProcess("receiver", receiver_env, workdir / "receiver.log")
            self.loop = Loop()
            self.kube = Kube(Connection.from_kubeconfig(str(self.cluster.kubeconfig)))
            self.tracker = Tracker(self)
        except BaseException:
            self.cluster.stop()
            raise

    # -- life cycle ----------------------------------------------------------------------
    def _kubelets(self) -> dict[str, Kubelet]:
        """The operator's processes by name (their usage is reported under it): one here."""
        self.operator = Kubelet("run", self.env, self.workdir / "operator.log")
        return {"operator": self.operator}

    @property
    def metrics_port(self) -> int:
        return int(self.env["RTCREC_METRICS_PORT"])

    @property
    def receiver_port(self) -> int:
        return int(self.env["RTCREC_RECEIVER_PORT"])

    def start_operator(self, **overrides: object) -> float:
        """Start the operator (with RTCREC_* overrides; None removes a setting); returns its start time."""
        env = dict(self.env)
        for name, value in overrides.items():
            key = f"RTCREC_{name.upper()}"
            if value is None:
                env.pop(key, None)
            else:
                env[key] = str(value)
        self.operator.env = env
        started = time.monotonic()
        self.operator.start()
        return started

    def wait_metrics(self, timeout: float = 60) -> None:
        wait_for(
            lambda: self.operator_metrics() is not None,
            timeout,
            what="the operator's /metrics",
            details=lambda: self.operator.output()[-2000:],
        )

    def wait_receiver(self, timeout: float = 60) -> None:
        wait_for(
            lambda: _get_ok(f"http://127.0.0.1:{self.receiver_port}/healthz"),
            timeout,
            what="the receiver's /healthz",
            details=lambda: self.receiver.output()[-2000:],
        )

    def close(self) -> None:
        for kubelet in getattr(self, "kubelets", {}).values():
            kubelet.close()
        if hasattr(self, "receiver"):
            self.receiver.kill()
        if hasattr(self, "tracker"):
            self.tracker.stop()
        if hasattr(self, "loop"):
            try:
                self.loop.run(self.kube.close(), 10)
            except Exception:
                pass
            self.loop.stop()
        if hasattr(self, "emulator"):
            self.emulator.stop()
        self.cluster.stop()

    # -- reading -------------------------------------------------------------------------
    def operator_metrics(self) -> dict[str, list[tuple[dict[str, str], float]]] | None:
        return scrape(f"http://127.0.0.1:{self.metrics_port}/metrics")

    def receiver_metrics(self) -> dict[str, list[tuple[dict[str, str], float]]] | None:
        return scrape(f"http://127.0.0.1:{self.env['RTCREC_RECEIVER_METRICS_PORT']}/metrics")

    def apiserver_metrics(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        info = self.cluster.info()
        ctx = ssl.create_default_context(cafile=str(self.cluster.ca_file))
        request = urllib.request.Request(
            info["server"] + "/metrics", headers={"Authorization": f"Bearer {info['token']}"}
        )
        with urllib.request.urlopen(request, timeout=30, context=ctx) as resp:
            return parse_metrics(resp.read().decode())

    def apiserver_requests(self) -> Counter:
        """apiserver_request_total by (verb, resource[/subresource], code), plus ("slow", resource, "")
        for requests that took more than 1 s (apiserver_request_duration_seconds)."""
        metrics = self.apiserver_metrics()
        counts: Counter = Counter()

        def resource_of(labels: dict) -> str:
            subresource = labels.get("subresource")
            return labels.get("resource", "") + (f"/{subresource}" if subresource else "")

        for labels, value in metrics.get("apiserver_request_total", []):
            counts[(labels.get("verb", ""), resource_of(labels), labels.get("code", ""))] += value
        for labels, value in metrics.get("apiserver_request_duration_seconds_count", []):
            if labels.get("verb") not in ("WATCH", "CONNECT"):
                counts[("slow", resource_of(labels), labels.get("verb", ""))] += value
        for labels, value in metrics.get("apiserver_request_duration_seconds_bucket", []):
            if labels.get("le") == "1" and labels.get("verb") not in ("WATCH", "CONNECT"):
                counts[("slow", resource_of(labels), labels.get("verb", ""))] -= value
        return counts

    def items(self) -> list[dict]:
        return self.loop.run(self.kube.request("GET", COLLECTION))["items"]

    def tasks(self) -> list[dict]:
        return self.emulator.control.tasks(app_id=APP)

    def pids(self) -> dict[str, int]:
        info = self.cluster.info()["pids"]
        pids = {"kube-apiserver": info["kube-apiserver"], "etcd": info["etcd"], "emulator": self.emulator.pid}
        for name, rtcrec in {**self.kubelets, "receiver": self.receiver}.items():
            process = rtcrec.proc
            if process is not None and process.poll() is None:
                pids[name] = process.pid
        return pids

    def usage(self) -> dict[str, dict[str, float]]:
        """Per process; "machine": CPU-seconds of every process on this machine (other engineers'
        included: the machine is shared, and `machine - ours` says how much they took)."""
        usage = {name: proc(pid) for name, pid in self.pids().items()}
        usage["driver"] = proc(os.getpid())
        normal, niced = machine_cpu()
        usage["machine"] = {"cpu": normal, "rss": 0.0, "hwm": 0.0}
        usage["niced"] = {"cpu": niced, "rss": 0.0, "hwm": 0.0}
        return usage

    # -- writing -------------------------------------------------------------------------
    def namespace(self, name: str) -> None:
        self.loop.run(
            self.kube.create(
                "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
            )
        )

    def join(self, channels: Iterable[str], threads: int = 8) -> None:
        """Someone publishes in each channel (the emulator's Start wants someone there)."""
        control = self.emulator.control
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda c: control.join(APP, c, "alice"), channels))

    def create(self, namespace: str, manifests: list[dict], concurrency: int = 32) -> dict[str, tuple[float, dict]]:
        """POST them all at once (`concurrency` in flight); name -> (monotonic time answered, object)."""
        return self.loop.run(
            _bulk(
                lambda m: self.kube.create(f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}", m),
                manifests,
                concurrency,
                key=lambda m: m["metadata"]["name"],
            )
        )

    def patch_statuses(self, namespace: str, statuses: dict[str, dict], concurrency: int = 32) -> None:
        self.loop.run(
            _bulk(
                lambda item: self.kube.patch_status(namespace, item[0], item[1]),
                list(statuses.items()),
                concurrency,
                key=lambda item: item[0],
            )
        )

    def delete(self, namespace: str, name: str) -> None:
        self.loop.run(self.kube.request("DELETE", f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}"))

    def delete_all(self, namespace: str) -> None:
        """One DELETE of the collection (as `kubectl delete --all` does, without waiting)."""
        self.loop.run(self.kube.request("DELETE", f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"))


class ShardedStack(Stack):
    """A Stack whose operator is `shards` replicas with RTCREC_SHARDING=true (shard-0, shard-1, ...:
    each its pod name, its Lease and its /metrics port), and `accounts` cloud accounts of their own:
    each its namespace (its name), its credentials Secret there and its AccessKey (own quota)."""

    def __init__(self, workdir: Path, *, shards: int = 3, accounts: int = 3, **kwargs: Any):
        self.initial_shards = shards
        self.accounts = bench_accounts(accounts)
        super().__init__(
            workdir,
            extra_accounts=self.accounts,
            sharding="true",
            lease_namespace="default",
            lease_name="rtc-recording-operator",  # the sharder's
            **kwargs,
        )
        try:
            for account in self.accounts:
                self.namespace(account.name)
                self.loop.run(
                    self.kube.create(
                        f"/api/v1/namespaces/{account.name}/secrets",
                        {
                            "apiVersion": "v1",
                            "kind": "Secret",
                            "metadata": {"name": SECRET, "labels": {USAGE_LABEL: "credentials"}},
                            "stringData": {"accessKeyId": account.key[0], "accessKeySecret": account.key[1]},
                        },
                    )
                )
        except BaseException:
            self.close()
            raise

    def _kubelets(self) -> dict[str, Kubelet]:
        self.shards: dict[str, Kubelet] = {}
        for i in range(self.initial_shards):
            self.add_shard(f"shard-{i}")
        return self.shards

    def add_shard(self, name: str) -> Kubelet:
        """A new replica (not started), as a StatefulSet scaled up makes one: its own metrics port."""
        env = {**self.env, "RTCREC_POD_NAME": name, "RTCREC_METRICS_PORT": str(free_port())}
        self.shards[name] = Kubelet("run", env, self.workdir / f"{name}.log")
        return self.shards[name]

    def start_shards(self, names: Iterable[str] | None = None) -> float:
        started = time.monotonic()
        for name in list(names or self.shards):
            self.shards[name].start()
        return started

    def running(self) -> list[str]:
        """Shards whose process runs now."""
        return [n for n, k in self.shards.items() if k.proc is not None and k.proc.poll() is None]

    def shard_metrics(self, name: str) -> dict[str, list[tuple[dict[str, str], float]]] | None:
        return scrape(f"http://127.0.0.1:{self.shards[name].env['RTCREC_METRICS_PORT']}/metrics")

    def sharder(self) -> str | None:
        """The running shard that holds the sharder's Lease (RTCREC_LEASE_NAME), as the apiserver has it."""
        holder = (self.lease(self.env["RTCREC_LEASE_NAME"]) or {}).get("spec", {}).get("holderIdentity")
        return holder if holder in self.running() else None

    def lease(self, name: str) -> dict | None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/{self.env['RTCREC_LEASE_NAMESPACE']}/leases/{name}"
        try:
            return self.loop.run(self.kube.request("GET", path))
        except NotFound:
            return None

    def owners(self, namespace: str) -> Counter:
        """Objects of `namespace` by their shard label ("" unlabelled), as the driver's watch sees them."""
        return Counter(
            labels.get(SHARD_LABEL, "") for (ns, _), labels in self.tracker.labels.copy().items() if ns == namespace
        )

    def lease_expiry(self, name: str) -> float:
        """When the Lease of shard `name` expires unless renewed (renewTime + its duration), on this
        process's monotonic clock."""
        lease = self.lease(name)
        assert lease is not None, f"shard {name} has no Lease"
        renewed = datetime.fromisoformat(lease["spec"]["renewTime"].replace("Z", "+00:00"))
        wall = renewed.timestamp() + lease["spec"]["leaseDurationSeconds"]
        return time.monotonic() + wall - time.time()

    def calls(self, account: Account) -> Counter:
        """Cloud calls made with the account's operator key, by action."""
        stats = self.emulator.control.stats()
        return Counter(stats["calls"]["byAccessKeyIdAndAction"].get(account.key[0], {}))

    def throttled(self) -> int:
        """Throttling.User answers to the accounts' operator keys: a quota that two shards spent at once."""
        by_key = self.emulator.control.stats()["throttled"]["byAccessKeyId"]
        return sum(int(by_key.get(a.key[0], 0)) for a in self.accounts)


async def _bulk(
    call: Callable[[Any], Awaitable[dict]], items: list, concurrency: int, key: Callable[[Any], str]
) -> dict[str, tuple[float, dict]]:
    gate = asyncio.Semaphore(concurrency)
    done: dict[str, tuple[float, dict]] = {}

    async def one(item: Any) -> None:
        async with gate:
            for attempt in range(5):
                try:
                    answer = await call(item)
                    break
                except Exception:
                    if attempt == 4:
                        raise
                    await asyncio.sleep(0.5 * (attempt + 1))
            done[key(item)] = (time.monotonic(), answer)

    await asyncio.gather(*(one(item) for item in items))
    return done


def _get_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status == 200
    except OSError:
        return False


def parse_metrics(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Prometheus text format -> name -> [(labels, value)] (no escapes in our label values)."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name, _, rest = head.partition("{")
        labels = dict(re.findall(r'(\w+)="([^"]*)"', rest)) if rest else {}
        try:
            out.setdefault(name, []).append((labels, float(value)))
        except ValueError:
            pass
    return out


def scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]] | None:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return parse_metrics(resp.read().decode())
    except OSError:
        return None


def total(metrics: dict | None, name: str, **labels: str) -> float:
    if not metrics:
        return 0.0
    return sum(v for lab, v in metrics.get(name, []) if all(lab.get(k) == x for k, x in labels.items()))


# -- resources ---------------------------------------------------------------------------------
def manifest(name: str, channel: str, *, finalizer: bool = False, max_idle: int = 14400, billed: bool = False) -> dict:
    """One user's mixed recording to OSS (tests/integration's one_user), unique channel each;
    `billed`: to the account of its namespace's credentials Secret (an `Account`'s), not the operator's."""
    meta: dict[str, Any] = {"name": name}
    if finalizer:
        meta["finalizers"] = [FINALIZER]
    made = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RtcRecording",
        "metadata": meta,
        "spec": {
            "appId": APP,
            "channelId": channel,
            "mode": "Mixed",
            "maxIdleSeconds": max_idle,
            "subscribers": [{"userId": "alice"}],
            "storage": {"oss": {"endpoint": f"oss-{REGION}.aliyuncs.com", "bucket": BUCKET}},
            "transcode": {
                "audioBitrateKbps": 64,
                "audioChannels": 2,
                "audioSampleRateHz": 48000,
                "videoBitrateKbps": 1500,
                "videoFramerate": 25,
                "videoGop": 50,
                "videoWidth": 1280,
                "videoHeight": 720,
            },
            "layout": {"panes": [{"userId": "alice", "left": "0", "top": "0", "width": "1", "height": "1"}]},
        },
    }
    if billed:
        made["spec"]["credentialsSecretRef"] = {"name": SECRET}
    return made


def _merge(base: dict, patch: dict) -> dict:
    """JSON merge patch (RFC 7386)."""
    out = dict(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def seeded_status(created: dict, task_id: str, completed: bool = False) -> dict:
    """The status the operator would have written after starting `task_id` (attempt 1), built by
    its own pure functions, plus Kopf's diff-base of the object as created: Kopf then sees an
    object it has handled before (a resume, not a create) and has nothing to write."""
    now, generation = now_utc(), created["metadata"]["generation"]
    status = _merge({}, patches.attempt_recorded(status_of({}), 1, generation, now))
    status = _merge(status, patches.started(status_of({"status": status}), task_id, generation, now))
    if completed:
        info = TaskInfo(task_id, TaskStatus.STOPPED)
        status = _merge(status, patches.observed(status_of({"status": status}), info, generation, now))
    # Sealed as the operator seals what it writes (ownership.py): an unsealed task id is refused.
    status = Sealer(derive_key(AUTH_KEY)).sealed({**created, "status": {}}, status) or status
    essence = {"spec": created["spec"]}  # what Kopf keeps: the spec (no labels or annotations here)
    status["kopf"] = {"lastHandled": json.dumps(essence, separators=(",", ":"), sort_keys=True)}
    return status


def seed_tasks(stack: Stack, manifests: list[dict], threads: int = 16, key: tuple[str, str] = SEEDER_KEY) -> list[str]:
    """Start a task for each manifest in the emulator (no NotifyUrl: seeded tasks send no callbacks,
    which at 10 000 would be 333 slice callbacks a second), quota lifted meanwhile; `key`: an
    AccessKey of the account that will own them."""
    control = stack.emulator.control
    previous = control.faults()["quota_per_second"]
    control.set_faults(quota_per_second=0)
    cloud = AliyunRecordingCloud(
        REGION, StaticCredentials(Credentials(*key)), endpoint=stack.emulator.url, read_timeout=60
    )
    try:
        params = [
            start_params(
                RtcRecordingSpec.model_validate(m["spec"]), region_default=REGION, notify_url=None, notify_auth_key=None
            )
            for m in manifests
        ]
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(cloud.start, params))
    finally:
        cloud.close()
        control.set_faults(quota_per_second=previous)


def stop_tasks(stack: Stack, task_ids: list[str], threads: int = 16, key: tuple[str, str] = SEEDER_KEY) -> None:
    control = stack.emulator.control
    previous = control.faults()["quota_per_second"]
    control.set_faults(quota_per_second=0)
    cloud = AliyunRecordingCloud(
        REGION, StaticCredentials(Credentials(*key)), endpoint=stack.emulator.url, read_timeout=60
    )
    try:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(cloud.stop, task_ids))
    finally:
        cloud.close()
        control.set_faults(quota_per_second=previous)


# -- the tracker -------------------------------------------------------------------------------
class Tracker:
    """Times every resource's first task id and first Recording as this process's watch sees them."""

    def __init__(self, stack: Stack):
        self.stack = stack
        self.phase: dict[tuple[str, str], str | None] = {}
        self.task: dict[tuple[str, str], str | None] = {}
        self.task_at: dict[tuple[str, str], float] = {}
        self.recording_at: dict[tuple[str, str], float] = {}
        self.labels: dict[tuple[str, str], dict[str, str]] = {}
        self.moves: Counter = Counter()  # shard label changes: "drain" (to the drain label's shard), "reassign"
        self.deleted: set[tuple[str, str]] = set()
        self._future = None

    def start(self) -> None:
        reflector = Reflector(self.stack.kube, COLLECTION, self._on_change)
        self._future = self.stack.loop.spawn(reflector.run())
        wait_for(lambda: reflector.synced.is_set(), 120, what="the tracker's list")

    def stop(self) -> None:
        if self._future is not None:
            self._future.cancel()
            self._future = None

    def _on_change(self, type_: str, obj: dict) -> None:
        at = time.monotonic()
        meta, status = obj["metadata"], obj.get("status") or {}
        key = (meta["namespace"], meta["name"])
        if type_ == "DELETED":
            self.deleted.add(key)
            self.phase.pop(key, None)
            self.labels.pop(key, None)
            return
        self.deleted.discard(key)
        before, labels = self.labels.get(key) or {}, meta.get("labels") or {}
        if before.get(SHARD_LABEL) and labels.get(SHARD_LABEL) not in (None, before[SHARD_LABEL]):
            self.moves["drain" if before.get(DRAIN_LABEL) == labels[SHARD_LABEL] else "reassign"] += 1
        self.labels[key] = labels
        self.phase[key] = status.get("phase")
        self.task[key] = status.get("taskId")
        if status.get("taskId"):
            self.task_at.setdefault(key, at)
        if status.get("phase") == "Recording":
            self.recording_at.setdefault(key, at)

    def count(self, namespace: str, phase: str) -> int:
        return sum(1 for (ns, _), p in list(self.phase.items()) if ns == namespace and p == phase)

    def present(self, namespace: str) -> int:
        return sum(1 for (ns, _) in list(self.phase) if ns == namespace)


# -- the apiserver -----------------------------------------------------------------------------
def restart_apiserver(cluster: LocalCluster, down_seconds: float) -> float:
    """Stop kube-apiserver (SIGTERM, as a rolling restart does), keep it down `down_seconds`, start
    it again with the same command line; returns the seconds from the stop until it was ready."""
    info = cluster.info()
    pid = info["pids"]["kube-apiserver"]
    argv = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    stopped = time.monotonic()
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.1)
    if alive(pid):
        os.killpg(pid, signal.SIGKILL)
    _reap(pid)
    time.sleep(max(0.0, down_seconds - (time.monotonic() - stopped)))
    with open(cluster.state_dir / "kube-apiserver.log", "ab") as log:
        new = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    info["pids"]["kube-apiserver"] = new.pid
    (cluster.state_dir / "cluster.json").write_text(json.dumps(info))
    ctx = ssl.create_default_context(cafile=str(cluster.ca_file))

    def ready() -> bool:
        try:
            with urllib.request.urlopen(info["server"] + "/readyz", timeout=2, context=ctx) as resp:
                return resp.status == 200
        except OSError:
            return False

    wait_for(ready, 120, what="kube-apiserver back", interval=0.2)
    return time.monotonic() - stopped


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


# -- statistics --------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def median(values: list[float | None]) -> float | None:
    present = sorted(v for v in values if v is not None)
    if not present:
        return None
    mid = len(present) // 2
    return present[mid] if len(present) % 2 else (present[mid - 1] + present[mid]) / 2


# -- seeding through etcd ----------------------------------------------------------------------
def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def etcd_key(namespace: str, name: str) -> str:
    return f"/registry/{GROUP}/{PLURAL}/{namespace}/{name}"


def etcd_get(stack: Stack, key: str) -> dict | None:
    request = urllib.request.Request(
        stack.cluster.info()["etcd"] + "/v3/kv/range", data=json.dumps({"key": _b64(key)}).encode()
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        kvs = json.load(resp).get("kvs") or []
    return json.loads(base64.b64decode(kvs[0]["value"])) if kvs else None


def etcd_put_all(stack: Stack, objects: list[dict], concurrency: int = 32) -> None:
    """Store objects as kube-apiserver stores a custom resource (JSON, no resourceVersion) through
    etcd's JSON gateway; the apiserver's watch cache, fed by etcd, serves them like any other."""
    url = stack.cluster.info()["etcd"] + "/v3/kv/put"

    async def put_all() -> None:
        gate = asyncio.Semaphore(concurrency)
        async with aiohttp.ClientSession() as session:

            async def put(obj: dict) -> None:
                meta = obj["metadata"]
                body = {
                    "key": _b64(etcd_key(meta["namespace"], meta["name"])),
                    "value": _b64(json.dumps(obj, separators=(",", ":"))),
                }
                async with gate, session.post(url, json=body) as resp:
                    resp.raise_for_status()
                    await resp.read()

            await asyncio.gather(*(put(obj) for obj in objects))

    stack.loop.run(put_all())
