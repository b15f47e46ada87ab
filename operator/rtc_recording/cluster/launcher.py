"""Start etcd + kube-apiserver on free loopback ports, write a kubeconfig, tear down cleanly.

The same code serves the pytest session fixture, the demo and `rtcrec cluster up|down|env`.
Everything lives in one state directory: data, certificates, logs, pids and the kubeconfig,
so removing that directory after stopping the processes leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.request
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import yaml

from rtc_recording.api.names import STOP_FINALIZER, recording_path
from rtc_recording.kube.client import Kube
from rtc_recording.kube.config import Connection
from rtc_recording.kube.errors import KubeError, NotFound

from . import binaries

READY_TIMEOUT_S = 120  # a cold kube-apiserver on 2 cores takes ~15-30 s to be ready


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ClusterError(RuntimeError):
    pass


class LocalCluster:
    """A real control plane in `state_dir`: etcd and kube-apiserver, and on request some of
    kube-controller-manager's controllers (no scheduler, no kubelet)."""

    def __init__(self, state_dir: Path):
        self.state_dir = Path(state_dir)

    # -- paths -----------------------------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def _info_file(self) -> Path:
        return self.state_dir / "cluster.json"

    def info(self) -> dict:
        return json.loads(self._info_file.read_text())

    @property
    def server(self) -> str:
        return self.info()["server"]

    @property
    def ca_file(self) -> Path:
        return self.state_dir / "pki" / "apiserver.crt"

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def version(self) -> str:
        return self.info().get("version", binaries.KUBERNETES_VERSION)

    @classmethod
    def start(cls, state_dir: Path | None = None, version: str = binaries.KUBERNETES_VERSION) -> LocalCluster:
        """A control plane of Kubernetes `version` (one of binaries.KUBERNETES_VERSIONS)."""
        bins = binaries.control_plane(version)
        state = Path(state_dir) if state_dir else Path(tempfile.mkdtemp(prefix="rtcrec-cluster-"))
        state.mkdir(mode=0o700, parents=True, exist_ok=True)  # it holds an admin token
        cluster = cls(state)
        try:
            cluster._start(bins, version)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _start(self, bins: dict[str, Path], version: str) -> None:
        s = self.state_dir
        client, peer, secure = free_port(), free_port(), free_port()
        token = secrets.token_hex(16)
        info: dict[str, Any] = {
            "server": f"https://127.0.0.1:{secure}",
            "token": token,
            "etcd": f"http://127.0.0.1:{client}",
            "kubectl": str(bins["kubectl"]),
            "version": version,
            "pids": {},
        }
        self._info_file.write_text(json.dumps(info))

        self._spawn(
            "etcd",
            [
                str(bins["etcd"]),
                "--name",
                "default",
                "--data-dir",
                str(s / "etcd"),
                "--listen-client-urls",
                info["etcd"],
                "--advertise-client-urls",
                info["etcd"],
                "--listen-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-cluster",
                f"default=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync",
                "--log-level",
                "warn",
            ],
        )
        self._wait(lambda: _get(info["etcd"] + "/health"), "etcd")

        subprocess.run(["openssl", "genrsa", "-out", str(s / "sa.key"), "2048"], check=True, capture_output=True)
        _private(s / "tokens.csv", f'{token},admin,admin-uid,"system:masters"\n')
        self._spawn(
            "kube-apiserver",
            [
                str(bins["kube-apiserver"]),
                f"--etcd-servers={info['etcd']}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={secure}",
                f"--cert-dir={s / 'pki'}",
                "--service-cluster-ip-range=10.0.0.0/24",
                f"--service-account-issuer={info['server']}/",
                f"--service-account-key-file={s / 'sa.key'}",
                f"--service-account-signing-key-file={s / 'sa.key'}",
                "--authorization-mode=RBAC",
                f"--token-auth-file={s / 'tokens.csv'}",
                "--allow-privileged=true",
                # No controller-manager runs, so nothing would create the `default` ServiceAccount.
                "--disable-admission-plugins=ServiceAccount",
                # Loopback addresses are invalid in Endpoints; nothing needs the `kubernetes` Service here.
                "--endpoint-reconciler-type=none",
            ],
        )
        self._wait(
            lambda: _get(info["server"] + "/readyz", ca=self.ca_file if self.ca_file.exists() else None),
            "kube-apiserver",
        )
        _private(self.kubeconfig, _kubeconfig(info["server"], self.ca_file, token))

    def start_controllers(self, *controllers: str) -> None:
        """Run kube-controller-manager with only these controllers (e.g. namespace-controller, which
        deletes a namespace's content and then the namespace; garbagecollector, which deletes what
        ownerReferences name as owned by a deleted object), until `stop`. One runs at a time: asked
        for a controller it lacks, it is restarted with those it had and the new ones."""
        info = self.info()
        running = set(info.get("controllers") or [])
        pid = info["pids"].get("kube-controller-manager")
        alive_now = pid is not None and _runs(pid, "kube-controller-manager")
        if alive_now and set(controllers) <= running:
            return
        if alive_now:
            _terminate(pid)
        wanted = sorted((running if alive_now else set()) | set(controllers))
        binary = binaries.ensure("kube-controller-manager")["kube-controller-manager"]
        log = self.state_dir / "kube-controller-manager.log"
        offset = log.stat().st_size if log.exists() else 0  # the log is appended to: read this start's lines only
        self._spawn(
            "kube-controller-manager",
            [
                str(binary),
                f"--kubeconfig={self.kubeconfig}",
                f"--controllers={','.join(wanted)}",
                "--leader-elect=false",
                "--secure-port=0",
                "--use-service-account-credentials=false",
            ],
        )
        info = self.info()
        info["controllers"] = wanted
        self._info_file.write_text(json.dumps(info))
        markers = ["Caches are synced"]
        if {"garbagecollector", "garbage-collector-controller"} & set(wanted):
            markers.append("Proceeding to collect garbage")  # every resource's monitor (CRDs too) has synced

        def ready() -> bool:
            with open(log, "rb") as f:
                f.seek(offset)
                text = f.read().decode(errors="replace")
            return all(marker in text for marker in markers)

        self._wait(ready, "kube-controller-manager")

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.state_dir / f"{name}.log", "ab")
        # Own session: teardown signals the whole group, and Ctrl-C in a shell does not orphan it.
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        log.close()
        info = self.info()
        info["pids"][name] = proc.pid
        self._info_file.write_text(json.dumps(info))

    def _wait(self, probe, name: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        pid = self.info()["pids"][name]
        while time.monotonic() < deadline:
            if not alive(pid):
                raise ClusterError(
                    f"{name} exited during start-up; see {self.state_dir / (name + '.log')}:\n"
                    + _tail(self.state_dir / f"{name}.log")
                )
            if probe():
                return
            time.sleep(0.2)
        raise ClusterError(f"{name} not ready after {READY_TIMEOUT_S} s; see {self.state_dir / (name + '.log')}")

    def stop(self, remove: bool = True) -> None:
        """Stop the apiserver before etcd, wait for both, then delete the state directory."""
        try:
            pids = self.info()["pids"]
        except (FileNotFoundError, json.JSONDecodeError):
            pids = {}
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
            if name in pids and _runs(pids[name], name):  # a stale pid may belong to someone else now
                _terminate(pids[name])
        if remove:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    # -- helpers for callers ---------------------------------------------------------------
    @cached_property
    def api(self) -> Api:
        return Api(self.kubeconfig)

    def env(self) -> dict[str, str]:
        return {"KUBECONFIG": str(self.kubeconfig)}

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [self.info()["kubectl"], f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
        )
        if check and proc.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
        return proc

    def apply_crds(self) -> None:
        """Install the project's CRDs and wait until the apiserver serves them, with the admission policy
        that puts the operator's finalizer on each new RtcRecording where the apiserver has the API (1.36+)."""
        self.kubectl("apply", "--server-side", "-f", str(binaries.REPO_ROOT / "crds"))
        # A CRD just applied may have no conditions yet (kubectl wait then errors out), and its
        # OpenAPI (kubectl explain) is published a moment after it is Established.
        deadline = time.monotonic() + 60
        while (
            self.kubectl("wait", "--for=condition=Established", "--timeout=10s", "crd", "--all", check=False).returncode
            or self.kubectl("explain", "rtcrecordings.spec", check=False).returncode
        ):
            if time.monotonic() > deadline:
                raise ClusterError("the CRDs were not served within 60 s")
            time.sleep(0.2)
        served = self.api.get("/apis/admissionregistration.k8s.io/v1") or {}
        if any(r["name"] == "mutatingadmissionpolicies" for r in served.get("resources", [])):
            self.kubectl("apply", "--server-side", "-f", str(binaries.REPO_ROOT / "policies"))
            self._wait_for_the_finalizer_policy()

    def _wait_for_the_finalizer_policy(self) -> None:
        """A policy acts a moment after it is created: until a dry-run create comes back with the finalizer
        (the CRD's own handler may still answer 503 for a moment after `kubectl explain` worked)."""
        probe = yaml.safe_load((binaries.REPO_ROOT / "examples" / "mixed-oss-minimal.yaml").read_text())
        probe["metadata"] = {"generateName": "finalizer-probe-"}  # never a namesake's 409
        path = recording_path("default") + "?dryRun=All"
        deadline = time.monotonic() + 60
        while True:
            try:
                if STOP_FINALIZER in self.api.request("POST", path, probe)["metadata"].get("finalizers", []):
                    return
            except KubeError:
                pass
            if time.monotonic() > deadline:
                raise ClusterError("the finalizer policy did not act within 60 s")
            time.sleep(0.2)


class Api:
    """The project's own client (kube.Kube) for synchronous callers, on an event loop of its own:
    tests look and wait through it instead of starting a kubectl process per look (about 40 ms of
    CPU each, taken from the operator under test). `kubectl apply` stays where the user's path is
    what a test is about."""

    def __init__(self, kubeconfig: Path):
        self._kube = Kube(Connection.from_kubeconfig(str(kubeconfig)))
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name="cluster-api", daemon=True).start()

    def request(self, method: str, path: str, body: Any = None, content_type: str | None = None) -> dict:
        call = self._kube.request(method, path, json=body, content_type=content_type)
        return asyncio.run_coroutine_threadsafe(call, self._loop).result(timeout=60)

    def get(self, path: str) -> dict | None:
        """The object at `path`, or None where there is none."""
        try:
            return self.request("GET", path)
        except NotFound:
            return None

    def items(self, path: str, **selectors: str) -> list[dict]:
        """A list's items; `selectors` as the query takes them (labelSelector, fieldSelector)."""
        query = f"?{urlencode(selectors)}" if selectors else ""
        return self.request("GET", path + query).get("items") or []


def _kubeconfig(server: str, ca: Path, token: str) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "local", "cluster": {"server": server, "certificate-authority": str(ca)}}],
            "users": [{"name": "admin", "user": {"token": token}}],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": "admin"}}],
            "current-context": "local",
        },
        indent=2,
    )


def _get(url: str, ca: Path | None = None) -> bool:
    ctx = None
    if url.startswith("https"):
        ctx = ssl.create_default_context(cafile=str(ca)) if ca else ssl._create_unverified_context()
    try:
        with urllib.request.urlopen(url, timeout=2, context=ctx) as resp:
            return resp.status == 200
    except OSError:
        return False


def _private(path: Path, text: str) -> None:
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(text)


def _runs(pid: int, binary: str) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].endswith(binary.encode())
    except FileNotFoundError:
        return False


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child still answers kill(0); it is dead for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _terminate(pid: int, grace_s: float = 10) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and alive(pid):
        _reap(pid)
        time.sleep(0.1)
    if alive(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _reap(pid)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # not our child (started by `rtcrec cluster up` in another process)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""
