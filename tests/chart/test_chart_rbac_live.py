"""The chart's RBAC is sufficient: the operator and the receiver run as processes with the tokens
of the ServiceAccounts the chart creates (`kubectl create token`), against the real apiserver and
the emulator, and do their whole job without one 403.

Cloud credentials come from spec.credentialsSecretRef (the chart's `secrets: get`, and `patch`
for the finalizer that keeps it while in use), the callback auth key and the ownership key from
the Secrets the chart generated, and the receiver proves its own rules by adopting a task whose
Start answer the emulator drops. What they may not do is checked too.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from rtc_recording.cluster.launcher import free_port
from rtc_recording.cluster.processes import RtcrecProcess, local_env, wait_for
from rtc_recording.emulator import EmulatorConfig, run_in_thread

from .conftest import CHART

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

APP, BUCKET = "demo-app", "demo-recordings"
ACCESS_KEY = ("LTAI5tChartRbacTest", "chart-rbac-secret")


class Deployed:
    """A chart release whose pods are played by local processes using the release's identities."""

    def __init__(self, cluster, helm, tmp: Path, values: dict, chart: tuple[str, ...] = (str(CHART),)):
        """`chart`: what `helm install` takes after the release name (test_chart_oci.py: an oci:// reference)."""
        suffix = secrets.token_hex(3)
        self.cluster, self.helm, self.tmp = cluster, helm, tmp
        self.release, self.namespace = f"live-{suffix}", f"rtc-live-{suffix}"
        self.fullname = f"{self.release}-rtc-recording-operator"
        self.receiver_port, self.metrics_port = free_port(), free_port()
        values = {
            **values,
            "crds": {"enabled": False},  # applied by kubectl (the crds fixture)
            "callbacks": {"url": f"http://127.0.0.1:{self.receiver_port}", **values.get("callbacks", {})},
        }
        helm.run(
            "install",
            self.release,
            *chart,
            "--kubeconfig",
            str(cluster.kubeconfig),
            "-n",
            self.namespace,
            "--create-namespace",
            values=values,
        )
        self.procs: list[RtcrecProcess] = []

    def kubeconfig_for(self, sa: str) -> Path:
        token = self.cluster.kubectl("create", "token", sa, "-n", self.namespace, "--duration=1h").stdout.strip()
        config = json.loads(self.cluster.kubeconfig.read_text())
        config["users"] = [{"name": "admin", "user": {"token": token}}]
        path = self.tmp / f"{sa}.kubeconfig"
        path.write_text(json.dumps(config))
        return path

    def env(self, sa: str, emulator, metrics_port: int | None = None, **settings) -> dict:
        secret = json.loads(
            self.cluster.kubectl(
                "get", "secret", f"{self.fullname}-callback-auth", "-n", self.namespace, "-o", "json"
            ).stdout
        )
        # Only what the chart would give the pod (minus its cloud credentials, which come from
        # spec.credentialsSecretRef here); a pod's own namespace is where evidence goes.
        return local_env(
            self.kubeconfig_for(sa),
            emulator.url,
            receiver_port=self.receiver_port,
            metrics_port=metrics_port or self.metrics_port,
            auth_key=base64.b64decode(secret["data"]["authKey"]).decode(),
            **{
                "evidence_namespace": self.namespace,
                "unknown_outcome_grace_seconds": 20,
                "poll_interval_seconds": 0.5,
                "stuck_seconds": 3,
                "backoff_base_seconds": 0.2,
                "backoff_max_seconds": 1,
                **settings,
            },
        )

    def secret_value(self, name: str, key: str) -> str:
        secret = json.loads(self.cluster.kubectl("get", "secret", name, "-n", self.namespace, "-o", "json").stdout)
        return base64.b64decode(secret["data"][key]).decode()

    def start(self, emulator, **settings) -> None:
        self.start_receiver(emulator, **settings)
        self.start_operator(emulator, f"{self.release}-operator", **settings)

    def start_receiver(self, emulator, **settings) -> None:
        self.procs.append(
            RtcrecProcess(
                "receiver",
                self.env(f"{self.fullname}-receiver", emulator, **settings),
                self.tmp / f"{self.release}-receiver.log",
            ).start()
        )

    def start_operator(self, emulator, pod: str, metrics_port: int | None = None, **settings) -> None:
        """One operator pod (`pod`: its name, its log's too). The Lease the chart names (RTCREC_LEASE_NAME), in the
        pod's namespace; the ownership key is the operator's alone, as the chart mounts it."""
        ownership = self.secret_value(f"{self.fullname}-ownership", "ownershipKey")
        settings = {
            "lease_namespace": self.namespace,
            "lease_name": self.fullname,
            "ownership_key": ownership,
            **settings,
        }
        self.procs.append(
            RtcrecProcess(
                "run",
                self.env(self.fullname, emulator, metrics_port, **settings),
                self.tmp / f"{pod}.log",
            ).start()
        )

    def kubectl_as(self, sa: str, *args: str):
        return self.cluster.kubectl(f"--kubeconfig={self.kubeconfig_for(sa)}", *args, check=False)

    def logs(self) -> str:
        return "\n".join(f"--- {p.log.name}\n{p.output()}" for p in self.procs)

    def stop(self) -> None:
        for p in self.procs:
            p.stop()
        self.helm.run("uninstall", self.release, "--kubeconfig", str(self.cluster.kubeconfig), "-n", self.namespace)

    def healthz(self) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/healthz", timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode(errors="replace")

    def _serving(self) -> bool:
        try:
            self.healthz()
            return True
        except urllib.error.URLError:
            return False

    def assert_healthy_through_a_quiet_watch(self) -> None:
        """A watch quiet for RTCREC_STUCK_SECONDS (3 s) makes /healthz list RtcRecordings to compare."""
        wait_for(self._serving, what="the operator's health server", details=self.logs)
        for _ in range(10):
            code, body = self.healthz()
            assert code == 200, f"/healthz {code}: {body}\n{self.logs()[-3000:]}"
            time.sleep(0.5)


@pytest.fixture(scope="module")
def emulator():
    config = EmulatorConfig(access_keys=dict([ACCESS_KEY]), apps={APP}, oss_buckets={BUCKET}, time_scale=30, seed=11)
    with run_in_thread(config) as handle:
        yield handle


@pytest.fixture(scope="module")
def crds(cluster):
    cluster.apply_crds()
    return cluster


def workspace(cluster, emulator, namespace: str | None = None, key: tuple[str, str] = ACCESS_KEY) -> str:
    """A namespace with a credentials Secret (of `key`)."""
    namespace = namespace or f"live-ws-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", namespace)
    cluster.kubectl(
        "create",
        "secret",
        "generic",
        "aliyun",
        "-n",
        namespace,
        f"--from-literal=accessKeyId={key[0]}",
        f"--from-literal=accessKeySecret={key[1]}",
    )
    cluster.kubectl("label", "secret", "aliyun", "-n", namespace, "rtc.recording.io/usage=credentials")
    return namespace


FINALIZER = "rtc.recording.io/credentials-in-use"


def secret_finalizers(cluster, namespace: str) -> list[str]:
    got = cluster.kubectl("get", "secret", "aliyun", "-n", namespace, "-o", "json")
    return json.loads(got.stdout)["metadata"].get("finalizers", [])


def apply_recording(cluster, emulator, namespace: str, name: str, class_name: str | None = None) -> str:
    """With `class_name`: storage and credentials are left to that RtcRecordingClass. Returns its channel."""
    channel = f"room-{secrets.token_hex(4)}"
    for user in ("alice", "bob"):
        emulator.control.join(APP, channel, user)
    obj = {
        "apiVersion": "rtc.recording.io/v1alpha1",
        "kind": "RtcRecording",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "appId": APP,
            "channelId": channel,
            "mode": "Individual",
            "maxIdleSeconds": 600,
            "subscribers": [{"userId": "alice"}],
            "storage": {"oss": {"endpoint": "oss-cn-shanghai.aliyuncs.com", "bucket": BUCKET}},
            "credentialsSecretRef": {"name": "aliyun"},
        },
    }
    if class_name:
        del obj["spec"]["storage"], obj["spec"]["credentialsSecretRef"]
        obj["spec"]["recordingClassName"] = class_name
    cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))
    return channel


def status(cluster, namespace: str, name: str) -> dict:
    got = cluster.kubectl("get", "rtcrec", name, "-n", namespace, "-o", "json", check=False)
    return (json.loads(got.stdout).get("status") or {}) if got.returncode == 0 else {}


def event_reasons(cluster, namespace: str, name: str) -> list[str]:
    got = cluster.kubectl(
        "get", "events", "-n", namespace, "-o", "json", f"--field-selector=involvedObject.name={name}"
    )
    return [e["reason"] for e in json.loads(got.stdout)["items"]]


def assert_no_forbidden(deployed: Deployed) -> None:
    logs = deployed.logs()
    assert "HTTP 403" not in logs and "forbidden" not in logs.lower(), logs[-4000:]


def test_cluster_wide_release_runs_on_its_own_rbac(crds, helm, emulator, tmp_path):
    deployed = Deployed(crds, helm, tmp_path, {})
    try:
        deployed.start(emulator)
        ns = workspace(crds, emulator)

        # Operator: watch, finalizer patch, write-ahead status patch, Secret read, Event.
        apply_recording(crds, emulator, ns, "plain")
        wait_for(
            lambda: status(crds, ns, "plain").get("phase") == "Recording", what="plain Recording", details=deployed.logs
        )
        wait_for(lambda: "Started" in event_reasons(crds, ns, "plain"), what="Started event", details=deployed.logs)

        # Receiver: the Start answer is lost; only the receiver can adopt the task (get, status
        # patch, Secret read for the Describe that confirms it, Event).
        emulator.control.set_faults(drop_start_rate=1.0)
        try:
            apply_recording(crds, emulator, ns, "adopted")
            adopted = wait_for(
                lambda: (s := status(crds, ns, "adopted")).get("phase") == "Recording" and s,
                what="adopted Recording",
                details=deployed.logs,
            )
        finally:
            emulator.control.set_faults(drop_start_rate=0.0)
        assert "learned from its callback" in adopted.get("message", ""), adopted

        # The liveness probe's comparison with the apiserver (a quiet watch) is allowed too.
        deployed.assert_healthy_through_a_quiet_watch()

        # The credentials Secret is kept while they record (a finalizer, patch on Secrets).
        assert FINALIZER in secret_finalizers(crds, ns)

        # Delete: Stop, then the finalizers come off (patch), the Secret's once no recording needs it.
        crds.kubectl("delete", "rtcrec", "plain", "adopted", "-n", ns, "--wait=true", "--timeout=30s")
        wait_for(
            lambda: FINALIZER not in secret_finalizers(crds, ns), what="the Secret released", details=deployed.logs
        )
        assert_no_forbidden(deployed)
        assert "rtcrec-task-seals" in crds.kubectl("get", "configmap", "-n", deployed.namespace).stdout

        # What the identities may not do: the receiver reads no Secret; the operator may change
        # nothing of a Secret but its finalizers (the chart's ValidatingAdmissionPolicy).
        denied = deployed.kubectl_as(f"{deployed.fullname}-receiver", "get", "secret", "aliyun", "-n", ns)
        assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()

        def patched(patch: dict):
            args = ("patch", "secret", "aliyun", "-n", ns, "--type=merge", "-p", json.dumps(patch))
            return deployed.kubectl_as(deployed.fullname, *args)

        changed = patched({"data": {"accessKeyId": base64.b64encode(b"x").decode()}})
        assert changed.returncode != 0 and "may change only metadata.finalizers" in changed.stderr, changed.stderr
        relabelled = deployed.kubectl_as(deployed.fullname, "label", "secret", "aliyun", "-n", ns, "stolen=yes")
        assert relabelled.returncode != 0 and "may change only metadata.finalizers" in relabelled.stderr
        held = patched({"metadata": {"finalizers": ["example.com/hold"]}})
        assert held.returncode != 0 and "only its own finalizer" in held.stderr, held.stderr
    finally:
        deployed.stop()


PLATFORM_KEY = ("LTAI5tChartPlatformKey", "chart-platform-secret")  # a class's account, not the tenant's


@pytest.fixture(scope="module")
def scoped(crds, helm, emulator, tmp_path_factory):
    """A release with watchNamespaces: Roles in one namespace, RTCREC_NAMESPACES set; and the platform
    team's namespace, where RtcRecordingClasses keep their credentials, in classCredentialsNamespaces."""
    ns = workspace(crds, emulator)
    emulator.control.credentials(access_keys=dict([PLATFORM_KEY]))
    platform = workspace(crds, emulator, key=PLATFORM_KEY)
    deployed = Deployed(
        crds,
        helm,
        tmp_path_factory.mktemp("scoped"),
        {"watchNamespaces": [ns], "classCredentialsNamespaces": [platform]},
    )
    deployed.start(emulator, namespaces=ns)
    deployed.watched, deployed.platform = ns, platform
    yield deployed
    deployed.stop()


def test_namespaced_release_records_on_its_roles(crds, emulator, scoped):
    ns = scoped.watched
    apply_recording(crds, emulator, ns, "scoped")
    wait_for(
        lambda: status(crds, ns, "scoped").get("phase") == "Recording", what="scoped Recording", details=scoped.logs
    )
    crds.kubectl("delete", "rtcrec", "scoped", "-n", ns, "--wait=true", "--timeout=30s")
    assert_no_forbidden(scoped)


def test_namespaced_release_liveness_on_its_roles(scoped):
    scoped.assert_healthy_through_a_quiet_watch()


def test_namespaced_release_uses_a_class_credentials_secret_in_the_platform_namespace(crds, emulator, scoped):
    """classCredentialsNamespaces: the operator of a watchNamespaces release reads the class's Secret in
    the platform team's namespace (a Role there, `get` only), and Secrets nowhere else outside its own."""
    ns, platform = scoped.watched, scoped.platform
    klass = f"platform-{secrets.token_hex(3)}"
    crds.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "rtc.recording.io/v1alpha1",
                "kind": "RtcRecordingClass",
                "metadata": {"name": klass},
                "spec": {
                    "storage": {"oss": {"endpoint": "oss-cn-shanghai.aliyuncs.com", "bucket": BUCKET}},
                    "credentialsSecretRef": {"namespace": platform, "name": "aliyun"},
                    "namespaceSelector": {},
                },
            }
        ),
    )
    try:
        # The class's status is the operator's to write (rtcrecordingclasses/status patch in the ClusterRole).
        crds.kubectl("wait", f"rtcrecclass/{klass}", "--for=condition=Ready", "--timeout=30s")
        apply_recording(crds, emulator, ns, "classy", class_name=klass)
        got = wait_for(
            lambda: (s := status(crds, ns, "classy")).get("phase") == "Recording" and s,
            what="Recording with the class's credentials",
            details=scoped.logs,
        )
        assert got["recordingClass"]["credentialsSecretRef"] == {"namespace": platform, "name": "aliyun"}
        assert emulator.control.task(got["taskId"])["accessKeyId"] == PLATFORM_KEY[0]
        crds.kubectl("delete", "rtcrec", "classy", "-n", ns, "--wait=true", "--timeout=30s")
        assert emulator.control.task(got["taskId"])["status"] in ("STOPPING", "STOPPED")
        assert_no_forbidden(scoped)
    finally:
        crds.kubectl("delete", "rtcrecclass", klass, check=False)
    # What the Role there allows: reading Secrets; not changing them, and no Secret of another namespace.
    operator = scoped.fullname
    assert scoped.kubectl_as(operator, "get", "secret", "aliyun", "-n", platform).returncode == 0
    patched = scoped.kubectl_as(
        operator, "patch", "secret", "aliyun", "-n", platform, "--type=merge", "-p", '{"metadata":{"labels":{"x":"y"}}}'
    )
    assert patched.returncode != 0 and "forbidden" in patched.stderr.lower()
    elsewhere = workspace(crds, emulator)
    denied = scoped.kubectl_as(operator, "get", "secret", "aliyun", "-n", elsewhere)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()


# Three tenants, each billing its own cloud account (issue 29: an account's quota lives in one shard).
ACCOUNTS = {
    "tenant-a": ("LTAI5tChartShardA", "chart-shard-a"),
    "tenant-b": ("LTAI5tChartShardB", "chart-shard-b"),
    "tenant-c": ("LTAI5tChartShardC", "chart-shard-c"),
}


def samples(port: int, name: str) -> list[tuple[dict[str, str], float]]:
    """The samples of one series name at an operator process's /metrics: (labels, value); none until it serves."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            families = text_string_to_metric_families(resp.read().decode())
    except urllib.error.URLError:
        return []
    return [(s.labels, s.value) for f in families for s in f.samples if s.name == name]


def test_sharded_release_puts_each_account_on_its_own_shard(crds, helm, emulator, tmp_path):
    """sharding.enabled with 3 replicas: the pods the real StatefulSet controller makes of the chart's StatefulSet,
    played by processes with the release's token and each pod's own environment, split three accounts' recordings
    over three shards; each Start is made by the shard the recording's label names, with its account's key, once."""
    crds.start_controllers("statefulset")  # creates the pods (no scheduler or kubelet runs them)
    emulator.control.credentials(
        access_keys=dict(ACCOUNTS.values()), accounts={key: tenant for tenant, (key, _) in ACCOUNTS.items()}
    )
    spaces = {
        tenant: workspace(crds, emulator, f"{tenant}-{secrets.token_hex(3)}", key) for tenant, key in ACCOUNTS.items()
    }
    # Watching the tenants' namespaces only: the sharder balances every account it sees, and other tests' leftovers
    # elsewhere in the cluster would be accounts too.
    values = {"sharding": {"enabled": True, "replicas": 3}, "watchNamespaces": list(spaces.values())}
    deployed = Deployed(crds, helm, tmp_path, values)
    watched = ",".join(spaces.values())
    try:
        selector = f"app.kubernetes.io/instance={deployed.release},app.kubernetes.io/component=operator"

        def operator_pods() -> list[dict]:
            got = crds.kubectl("get", "pods", "-n", deployed.namespace, "-l", selector, "-o", "json")
            return json.loads(got.stdout)["items"]

        pod_objects = wait_for(lambda: len(p := operator_pods()) == 3 and p, what="the StatefulSet's pods")
        pods = sorted(p["metadata"]["name"] for p in pod_objects)
        assert pods == [f"{deployed.fullname}-{i}" for i in range(3)]
        ports = {pod: free_port() for pod in pods}
        deployed.start_receiver(emulator, namespaces=watched)
        for pod in pod_objects:
            (container,) = pod["spec"]["containers"]
            chart_env = {e["name"]: e for e in container["env"]}
            assert chart_env["RTCREC_POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
            assert chart_env["RTCREC_LEASE_NAME"]["value"] == deployed.fullname  # the sharder's, and the ring
            name = pod["metadata"]["name"]
            deployed.start_operator(
                emulator,
                name,
                metrics_port=ports[name],
                sharding=chart_env["RTCREC_SHARDING"]["value"],
                lease_name=chart_env["RTCREC_LEASE_NAME"]["value"],
                pod_name=name,  # what the downward API gives it
                namespaces=watched,
            )

        def shard_leases() -> set[str]:
            ring = f"rtc.recording.io/ring={deployed.fullname}"
            got = crds.kubectl("get", "leases", "-n", deployed.namespace, "-l", ring, "-o", "name")
            return {name.removeprefix("lease.coordination.k8s.io/") for name in got.stdout.split()}

        wait_for(lambda: shard_leases() == set(pods), timeout=60, what="a Lease per shard", details=deployed.logs)
        # Before any recording: the sharder (one of them) counts the three live, so no account moves later.
        wait_for(
            lambda: [port for port in ports.values() if samples(port, "rtcrec_shard_members") == [({}, 3.0)]],
            timeout=30,
            what="the sharder seeing three live shards",
            details=deployed.logs,
        )

        recordings = {}  # (namespace, name) -> (tenant, channel)
        for tenant, ns in spaces.items():
            for n in range(2 if tenant != "tenant-b" else 1):
                recordings[ns, f"rec-{n}"] = tenant, apply_recording(crds, emulator, ns, f"rec-{n}")

        def recording(ns: str, name: str) -> dict:
            return json.loads(crds.kubectl("get", "rtcrec", name, "-n", ns, "-o", "json").stdout)

        def all_recording() -> bool:
            return all((recording(*r).get("status") or {}).get("phase") == "Recording" for r in recordings)

        wait_for(all_recording, timeout=60, what="every recording Recording", details=deployed.logs)
        shard_of = {r: recording(*r)["metadata"]["labels"].get("rtc.recording.io/shard") for r in recordings}
        assert set(shard_of.values()) <= set(pods), shard_of
        tenant_shards = {tenant: {shard_of[r] for r in recordings if recordings[r][0] == tenant} for tenant in ACCOUNTS}
        assert all(len(shards) == 1 for shards in tenant_shards.values()), tenant_shards  # an account on one shard
        assert {min(shards) for shards in tenant_shards.values()} == set(pods), tenant_shards  # three shards

        # Nothing moved, and each shard started exactly its own recordings (its own /metrics), each once, with its
        # account's key.
        assert sum(v for port in ports.values() for _, v in samples(port, "rtcrec_shard_moves_total")) == 0
        for pod in pods:
            starts = {
                labels["code"]: v
                for labels, v in samples(ports[pod], "rtcrec_cloud_calls_total")
                if labels["verb"] == "start"
            }
            assert starts == {"OK": list(shard_of.values()).count(pod)}, (pod, shard_of)
        for (ns, name), (tenant, channel) in recordings.items():
            (task,) = emulator.control.tasks(APP, channel)
            assert (task["taskId"], task["status"]) == (recording(ns, name)["status"]["taskId"], "RUNNING")
            assert task["accessKeyId"] == ACCOUNTS[tenant][0] and task["account"] == tenant

        # Deleting stops each task through its shard (its finalizer, on the owner's watch).
        for ns, name in recordings:
            crds.kubectl("delete", "rtcrec", name, "-n", ns, "--wait=true", "--timeout=30s")
        for _, channel in recordings.values():
            assert [t["status"] for t in emulator.control.tasks(APP, channel)] in (["STOPPING"], ["STOPPED"])
        assert_no_forbidden(deployed)
    finally:
        deployed.stop()
