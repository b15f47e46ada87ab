"""The image runs as the chart deploys it.

`make image`'s archive is loaded into podman, and the operator and receiver Deployments that
`helm install` stored in the apiserver are run the way a kubelet runs their pods: the container's
image, args and environment (Secret references resolved), the pod's and the container's security
context (UID 10001, read-only root file system, no capabilities, no privilege escalation, the
runtime's default seccomp profile), the /tmp emptyDir, and the ServiceAccount's token where a pod
has it. Against the local apiserver and the emulator, examples/mixed-oss-minimal.yaml goes to
Recording and is deleted cleanly, and both containers stop cleanly on SIGTERM.

podman runs with the host's network (the apiserver and the emulator listen on loopback), runc and
cgroupfs, in a storage directory of its own. The module is skipped, saying why, only where podman
cannot run a container; `make test` installs podman with apt-get (tools/image/podman.sh).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import resource
import secrets
import shutil
import subprocess
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from rtc_recording.cluster import binaries
from rtc_recording.cluster.launcher import free_port
from rtc_recording.cluster.processes import wait_for
from rtc_recording.emulator import EmulatorConfig, run_in_thread

from .conftest import CHART

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

REPO = binaries.REPO_ROOT
VERSION = re.search(r'^version = "(.+)"$', (REPO / "pyproject.toml").read_text(), re.M)[1]
ARCHIVE = REPO / "build" / "image" / f"rtc-recording-operator-{VERSION}.oci.tar"
EXAMPLE = REPO / "examples" / "mixed-oss-minimal.yaml"
APP, BUCKET, CHANNEL = "demo-app", "demo-recordings", "standup-42"  # what the example names
ACCESS_KEY = ("LTAI5tImageTest", "image-test-secret")
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


@pytest.fixture(scope="module")
def archive() -> Path:
    """The image archive, (re)built by make when its inputs changed (a no-op under `make test`)."""
    made = subprocess.run(["make", "-s", "image"], cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
    return ARCHIVE


# -- the archive itself (no podman needed) ---------------------------------------------------------


def _layer_names(archive: Path) -> tuple[dict, list[str]]:
    with tarfile.open(archive) as outer:
        (manifest,) = json.load(outer.extractfile("manifest.json"))
        config = json.load(outer.extractfile(manifest["Config"]))
        (layer,) = manifest["Layers"]
        with tarfile.open(fileobj=outer.extractfile(layer), mode="r|gz") as inner:
            return config, [member.name.removeprefix("./") for member in inner]


def _entries(tar: tarfile.TarFile) -> dict[str, tuple]:
    """path -> what it is: type, mode, owner and content digest (bytecode by presence only: it
    records when it was compiled)."""
    out = {}
    for m in tar:
        name = m.name.removeprefix("./").rstrip("/")
        if not name:
            continue
        if m.isfile():
            data = tar.extractfile(m).read()
            digest = None if name.endswith(".pyc") else hashlib.sha256(data).hexdigest()
            out[name] = ("file", m.mode & 0o7777, m.uid, m.gid, digest)
        elif m.issym() or m.islnk():
            out[name] = ("link", m.linkname.removeprefix("./"))
        else:
            out[name] = ("dir" if m.isdir() else m.type, m.mode & 0o7777, m.uid, m.gid)
    return out


@pytest.fixture(scope="module")
def contents(archive):
    return _layer_names(archive)


def test_image_runs_as_a_numeric_non_root_user(contents):
    config, _ = contents
    user, _, group = config["config"]["User"].partition(":")
    assert user.isdigit() and int(user) != 0 and group.isdigit(), config["config"]  # runAsNonRoot can check it
    assert config["config"]["Entrypoint"] == ["rtcrec"] and config["config"]["Cmd"] == ["run"]


def test_image_is_the_runtime_only(contents):
    _, names = contents
    site = "opt/rtcrec/lib/python3.11/site-packages/"
    package = {n.removeprefix(site + "rtc_recording/") for n in names if n.startswith(site + "rtc_recording/")}
    assert "controller/handlers.py" in package and "receiver/server.py" in package
    dev = sorted(n for n in package if n.split("/")[0] in ("emulator", "cluster", "demo.py"))
    assert dev == [], "development tools in the image"
    assert not [n for n in names if n.startswith(site + "pip/")], "pip in the image"
    plugin_only = [n for n in names if n.startswith((site + "alibabacloud_oss_v2/", site + "kubernetes/"))]
    assert plugin_only == [], "kubectl rtcrec's own dependencies (pyproject's plugin group) in the image"
    assert not [n for n in names if n.startswith("dev/") and n != "dev/"], "device nodes in the image"
    assert "etc/resolv.conf" not in names and "etc/hostname" not in names, "the build host's network files"


# -- podman, playing the kubelet ------------------------------------------------------------------


class Podman:
    def __init__(self, store: Path):
        self.store = store
        runtime = shutil.which("runc") or "/usr/sbin/runc"
        self.base = [
            "podman",
            "--root",
            str(store / "root"),
            "--runroot",
            str(store / "run"),
            "--tmpdir",
            str(store / "tmp"),
            "--cgroup-manager=cgroupfs",
            "--events-backend=file",
            *(["--runtime", runtime] if Path(runtime).exists() else []),
        ]
        # podman's defaults exceed the hard limits of some sandboxes, and runc may not even set the
        # hard limit it runs under: ask for a modest 1024, or less if that is all there is.
        self.limits = [
            f"--ulimit={name}={value}:{value}"
            for name, limit in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC))
            for value in [min(1024, *(v for v in resource.getrlimit(limit) if v >= 0))]
        ]

    def __call__(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        proc = subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        return proc

    def run_args(self) -> list[str]:
        return ["run", "--network=host", *self.limits]


def _podman_problem(podman: Podman) -> str | None:
    if shutil.which("podman") is None:
        return "podman is not installed (`make test` installs it with apt-get when run as root)"
    info = podman("info", check=False)
    if info.returncode != 0:
        return f"podman cannot run here: {info.stderr.strip()[-500:]}"
    return None


@pytest.fixture(scope="module")
def podman(request, tmp_path_factory):
    store = tmp_path_factory.mktemp("podman")
    pm = Podman(store)
    if problem := _podman_problem(pm):
        pytest.skip(problem)
    try:
        loaded = pm("load", "-i", str(request.getfixturevalue("archive")), timeout=300)
        pm.image = re.search(r"Loaded image(?:\(s\))?: (\S+)", loaded.stdout + loaded.stderr)[1]
        probe = pm(*pm.run_args(), "--rm", "--entrypoint", "/bin/true", pm.image, check=False)
        if probe.returncode != 0:
            pytest.skip(f"podman cannot run a container here: {probe.stderr.strip()[-500:]}")
        yield pm
    finally:
        pm("rm", "--all", "--force", check=False)
        pm("rmi", "--all", "--force", check=False)
        shutil.rmtree(store, ignore_errors=True)


def _tmpfs_size(quantity: str) -> str:
    number, unit = re.fullmatch(r"(\d+)(Ki|Mi|Gi)?", quantity).groups()
    return number + {"Ki": "k", "Mi": "m", "Gi": "g", None: ""}[unit]


class Kubelet:
    """Runs a Deployment's pod template as one podman container, field by field. A field it does
    not know fails the test: a chart change must not run unexamined."""

    POD_FIELDS = {
        "containers",
        "securityContext",
        "serviceAccountName",
        "serviceAccount",
        "volumes",
        "enableServiceLinks",
        "automountServiceAccountToken",
        "restartPolicy",
        "dnsPolicy",
        "schedulerName",
        "terminationGracePeriodSeconds",
    }
    CONTAINER_FIELDS = {
        "name",
        "image",
        "imagePullPolicy",
        "args",
        "env",
        "ports",
        "livenessProbe",
        "readinessProbe",
        "resources",
        "securityContext",
        "volumeMounts",
        "terminationMessagePath",
        "terminationMessagePolicy",
    }

    def __init__(self, podman: Podman, cluster, namespace: str, tmp: Path):
        self.podman, self.cluster, self.namespace, self.tmp = podman, cluster, namespace, tmp

    def _secret_value(self, ref: dict) -> str | None:
        got = self.cluster.kubectl(
            "get", "secret", ref["name"], "-n", self.namespace, "-o", "json", check=not ref.get("optional")
        )
        data = json.loads(got.stdout).get("data", {}) if got.returncode == 0 else {}
        if ref["key"] not in data:
            assert ref.get("optional"), f"Secret {ref['name']} has no key {ref['key']}"
            return None
        return base64.b64decode(data[ref["key"]]).decode()

    def _service_account(self, name: str) -> Path:
        """What a pod gets at SA_DIR: a token of its ServiceAccount, the cluster CA, the namespace."""
        directory = self.tmp / f"sa-{name}"
        directory.mkdir(mode=0o755)
        token = self.cluster.kubectl("create", "token", name, "-n", self.namespace, "--duration=1h").stdout.strip()
        for file, text in (
            ("token", token),
            ("ca.crt", self.cluster.ca_file.read_text()),
            ("namespace", self.namespace),
        ):
            (directory / file).write_text(text)
            (directory / file).chmod(0o644)
        return directory

    def run(self, deployment: dict, image: str) -> Pod:
        spec = deployment["spec"]["template"]["spec"]
        assert set(spec) <= self.POD_FIELDS, f"unplayed pod fields: {set(spec) - self.POD_FIELDS}"
        (container,) = spec["containers"]
        assert set(container) <= self.CONTAINER_FIELDS, (
            f"unplayed container fields: {set(container) - self.CONTAINER_FIELDS}"
        )
        assert container["image"] == f"rtc-recording-operator:{VERSION}", (
            "the chart's default image is not what `make image` names"
        )
        args = self.podman.run_args() + [
            "--detach",
            "--name",
            f"{deployment['metadata']['name']}-{secrets.token_hex(2)}",
        ]

        pod_sc, sc = spec.get("securityContext", {}), container.get("securityContext", {})
        assert set(pod_sc) <= {"runAsNonRoot", "runAsUser", "runAsGroup", "fsGroup", "seccompProfile"}, pod_sc
        assert set(sc) <= {
            "allowPrivilegeEscalation",
            "readOnlyRootFilesystem",
            "capabilities",
            "runAsNonRoot",
            "runAsUser",
            "runAsGroup",
            "seccompProfile",
        }, sc
        merged = {**pod_sc, **sc}
        for profile in (pod_sc.get("seccompProfile"), sc.get("seccompProfile")):
            assert profile in (None, {"type": "RuntimeDefault"}), profile  # podman's default profile
        if "runAsUser" in merged:
            args += ["--user", f"{merged['runAsUser']}:{merged.get('runAsGroup', 0)}"]
        if merged.get("runAsNonRoot"):
            user = merged.get("runAsUser")
            if user is None:  # the kubelet checks the image's numeric user instead
                user = int(json.loads(self.podman("image", "inspect", image).stdout)[0]["Config"]["User"].split(":")[0])
            assert user != 0, "runAsNonRoot with user 0: the kubelet would refuse to start it"
        if "fsGroup" in pod_sc:
            args += ["--group-add", str(pod_sc["fsGroup"])]
        if sc.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        if sc.get("readOnlyRootFilesystem"):
            args += ["--read-only", "--read-only-tmpfs=false"]  # only the volumes below are writable
        capabilities = sc.get("capabilities", {})
        assert set(capabilities) <= {"drop", "add"}, capabilities
        args += [f"--cap-drop={c}" for c in capabilities.get("drop", [])]
        args += [f"--cap-add={c}" for c in capabilities.get("add", [])]

        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for mount in container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            assert set(volume) <= {"name", "emptyDir"}, f"unplayed volume {volume}"
            size = volume["emptyDir"].get("sizeLimit")
            args += ["--tmpfs", f"{mount['mountPath']}:rw,mode=1777" + (f",size={_tmpfs_size(size)}" if size else "")]

        if spec.get("automountServiceAccountToken", True):
            sa = self._service_account(spec["serviceAccountName"])
            args += ["--volume", f"{sa}:{SA_DIR}:ro"]
        host, port = self.cluster.server.removeprefix("https://").rsplit(":", 1)
        env = {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port}
        pod_name = f"{deployment['metadata']['name']}-{secrets.token_hex(5)}"
        for entry in container.get("env", []):
            if "value" in entry:
                env[entry["name"]] = entry["value"]
            elif "fieldRef" in entry["valueFrom"]:
                fields = {"metadata.name": pod_name, "metadata.namespace": self.namespace}
                env[entry["name"]] = fields[entry["valueFrom"]["fieldRef"]["fieldPath"]]
            else:
                assert set(entry["valueFrom"]) == {"secretKeyRef"}, entry
                if (value := self._secret_value(entry["valueFrom"]["secretKeyRef"])) is not None:
                    env[entry["name"]] = value
        for name, value in env.items():
            args += ["--env", f"{name}={value}"]

        proc = self.podman(*args, image, *container.get("args", []))
        return Pod(self.podman, proc.stdout.strip(), container)


class Pod:
    def __init__(self, podman: Podman, cid: str, container: dict):
        self.podman, self.cid, self.container = podman, cid, container

    def logs(self) -> str:
        got = self.podman("logs", self.cid, check=False)
        return got.stdout + got.stderr

    def state(self) -> dict:
        return json.loads(self.podman("inspect", self.cid).stdout)[0]["State"]

    def exec(self, *argv: str) -> subprocess.CompletedProcess:
        return self.podman("exec", self.cid, *argv, check=False)

    def probes(self) -> bool:
        """The container's probes pass, as the kubelet makes them (the pod shares the host's network)."""
        return all(
            self._get(self.container[kind]) for kind in ("livenessProbe", "readinessProbe") if kind in self.container
        )

    def _get(self, probe: dict) -> bool:
        assert set(probe) - {
            "initialDelaySeconds",
            "periodSeconds",
            "timeoutSeconds",
            "failureThreshold",
            "successThreshold",
        } == {"httpGet"}, probe
        probe = probe["httpGet"]
        port = (
            next(p["containerPort"] for p in self.container["ports"] if p["name"] == probe["port"])
            if isinstance(probe["port"], str)
            else probe["port"]
        )
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{probe['path']}", timeout=5) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):  # refused or timed out: a failed probe, as for a kubelet
            return False


@pytest.fixture(scope="module")
def emulator():
    config = EmulatorConfig(access_keys=dict([ACCESS_KEY]), apps={APP}, oss_buckets={BUCKET}, time_scale=30, seed=13)
    with run_in_thread(config) as handle:
        yield handle


@pytest.fixture(scope="module")
def deployed(cluster, helm, podman, emulator, tmp_path_factory):
    """A release watching one namespace, its two Deployments running as containers."""
    cluster.apply_crds()
    suffix = secrets.token_hex(3)
    release, namespace, watched = f"img-{suffix}", f"rtc-img-{suffix}", f"rec-img-{suffix}"
    cluster.kubectl("create", "namespace", namespace)
    cluster.kubectl("create", "namespace", watched)
    cluster.kubectl(
        "create",
        "secret",
        "generic",
        "aliyun-credentials",
        "-n",
        namespace,
        f"--from-literal=accessKeyId={ACCESS_KEY[0]}",
        f"--from-literal=accessKeySecret={ACCESS_KEY[1]}",
    )
    receiver_port, metrics_port, receiver_metrics_port = free_port(), free_port(), free_port()
    helm.run(
        "install",
        release,
        str(CHART),
        "--kubeconfig",
        str(cluster.kubeconfig),
        "-n",
        namespace,
        values={
            "crds": {"enabled": False},  # applied by kubectl, as for the other releases of this cluster
            "watchNamespaces": [watched],
            "credentials": {"secretName": "aliyun-credentials"},
            "callbacks": {"url": f"http://127.0.0.1:{receiver_port}"},
            "settings": {
                "endpoint": emulator.url,
                "receiverPort": receiver_port,
                "metricsPort": metrics_port,
                "receiverMetricsPort": receiver_metrics_port,
            },
        },
    )
    fullname = f"{release}-rtc-recording-operator"
    kubelet = Kubelet(podman, cluster, namespace, tmp_path_factory.mktemp("kubelet"))
    get = lambda name: json.loads(cluster.kubectl("get", "deployment", name, "-n", namespace, "-o", "json").stdout)  # noqa: E731
    pods = {}
    try:
        pods["receiver"] = kubelet.run(get(f"{fullname}-receiver"), podman.image)
        pods["operator"] = kubelet.run(get(fullname), podman.image)
        for name, pod in pods.items():
            wait_for(pod.probes, timeout=60, what=f"the {name}'s probes", details=pod.logs)
        yield cluster, watched, pods
    finally:
        for pod in pods.values():
            podman("rm", "--force", pod.cid, check=False)
        helm.run("uninstall", release, "--kubeconfig", str(cluster.kubeconfig), "-n", namespace, check=False)


def _logs(pods: dict) -> str:
    return "\n".join(f"--- {name}\n{pod.logs()[-3000:]}" for name, pod in pods.items())


def test_containers_have_the_charts_security_context(deployed):
    _, _, pods = deployed
    for name, pod in pods.items():
        assert pod.exec("id", "-u").stdout.strip() == "10001", name
        assert pod.exec("touch", "/opt/rtcrec/written").returncode != 0, f"{name}: root file system writable"
        assert pod.exec("touch", "/tmp/written").returncode == 0, f"{name}: /tmp (emptyDir) not writable"
        status = pod.exec("cat", "/proc/1/status").stdout
        assert re.search(r"^CapEff:\s+0+$", status, re.M), f"{name} has capabilities:\n{status}"
        assert re.search(r"^NoNewPrivs:\s+1$", status, re.M), f"{name} may gain privileges"


def test_example_records_and_is_deleted(deployed, emulator):
    cluster, watched, pods = deployed
    for user in ("alice", "bob"):
        emulator.control.join(APP, CHANNEL, user)
    name = yaml.safe_load(EXAMPLE.read_text())["metadata"]["name"]
    cluster.kubectl("apply", "-n", watched, "-f", str(EXAMPLE))

    def status() -> dict:
        got = cluster.kubectl("get", "rtcrec", name, "-n", watched, "-o", "json", check=False)
        return (json.loads(got.stdout).get("status") or {}) if got.returncode == 0 else {}

    recording = wait_for(
        lambda: (s := status()).get("phase") == "Recording" and s,
        timeout=60,
        what=f"{name} Recording",
        details=lambda: _logs(pods),
    )
    assert [(t["taskId"], t["status"]) for t in emulator.control.tasks(app_id=APP, channel_id=CHANNEL)] == [
        (recording["taskId"], "RUNNING")
    ]

    cluster.kubectl("delete", "rtcrec", name, "-n", watched, "--wait=true", "--timeout=60s")
    assert [t["status"] for t in emulator.control.tasks(app_id=APP, channel_id=CHANNEL)] == ["STOPPED"]
    logs = _logs(pods)
    assert "HTTP 403" not in logs and "forbidden" not in logs.lower(), logs


def test_containers_stop_cleanly(deployed):
    _, _, pods = deployed
    for name, pod in pods.items():
        assert pod.state()["Running"], f"{name} is not running:\n{pod.logs()[-3000:]}"
        pod.podman("stop", "--time", "30", pod.cid)
        state = pod.state()
        assert state["ExitCode"] == 0, f"{name} exited {state['ExitCode']} on SIGTERM:\n{pod.logs()[-3000:]}"


# What may differ between the two builds, and why.
NOT_COMPARED = re.compile(
    "|".join(
        [
            r"\.",
            r"dev",
            r"tmp/.+",  # the root, /dev (the runtime's), RUN --mount targets
            r"etc/(hostname|hosts|resolv\.conf)",  # written by podman into every container it exports
            r"etc/dpkg/dpkg\.cfg\.d/.+",  # the same slimming options, named by each tool
            r"var/(cache|log)/.+",  # apt's and dpkg's caches and logs (mmdebstrap removes them)
            r"var/lib/apt/.+",
            r"var/lib/dpkg/status-old",  # apt's bookkeeping, in install order
            r"etc/(shadow|gshadow)-?",  # the user's "last password change" is the build day
        ]
    )
)


def test_the_dockerfile_builds_the_same_image(podman, archive, tmp_path):
    """`docker build` of the Dockerfile makes the image `make image` makes: the same files (but
    for bookkeeping, NOT_COMPARED), the same Debian packages and the same runtime configuration.
    podman builds it, on a stand-in for debian:bookworm-slim made by `build.sh --base` (Docker
    Hub is not a registry this project builds from)."""
    base = tmp_path / "base.tar"
    made = subprocess.run(
        [str(REPO / "tools" / "image" / "build.sh"), "--base", str(base)], capture_output=True, text=True, timeout=900
    )
    assert made.returncode == 0, made.stderr[-3000:]
    podman("import", str(base), "localhost/debian:bookworm-slim-standin", timeout=300)
    # A TLS-intercepting proxy's CA may be in the host's bundle only: the build's pip gets it too.
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    ca = (
        ["--volume", f"{bundle}:/tmp/host-ca.crt:ro", "--build-arg", "PIP_CERT=/tmp/host-ca.crt"]
        if bundle.exists()
        else []
    )
    podman(
        "build",
        "--network=host",
        *podman.limits,
        *ca,
        "--build-arg",
        "DEBIAN=localhost/debian:bookworm-slim-standin",
        "--tag",
        "localhost/dockerfile-built:test",
        str(REPO),
        timeout=1200,
    )
    cid = podman("create", "localhost/dockerfile-built:test").stdout.strip()
    exported = tmp_path / "dockerfile-built.tar"
    podman("export", "--output", str(exported), cid)
    podman("rm", cid)

    with tarfile.open(exported) as tar:
        built = {k: v for k, v in _entries(tar).items() if not NOT_COMPARED.fullmatch(k)}
    with tarfile.open(archive) as outer:
        (manifest,) = json.load(outer.extractfile("manifest.json"))
        config = json.load(outer.extractfile(manifest["Config"]))["config"]
        with tarfile.open(fileobj=outer.extractfile(manifest["Layers"][0]), mode="r|gz") as layer:
            made = {k: v for k, v in _entries(layer).items() if not NOT_COMPARED.fullmatch(k)}
    differ = {k: (made.get(k), built.get(k)) for k in made.keys() | built.keys() if made.get(k) != built.get(k)}
    assert not differ, "make image vs Dockerfile:\n" + "\n".join(
        f"{k}: {a} / {b}" for k, (a, b) in sorted(differ.items())[:40]
    )

    docker = json.loads(podman("image", "inspect", "localhost/dockerfile-built:test").stdout)[0]["Config"]
    for key in ("User", "Env", "Entrypoint", "Cmd", "WorkingDir"):
        assert docker.get(key) == config.get(key), key
    labels = {k: v for k, v in docker.get("Labels", {}).items() if not k.startswith("io.buildah")}
    assert labels.items() <= config["Labels"].items()
