"""Build the control-plane binaries from Go modules once, and cache them by version.

Nothing can be downloaded here but modules from the package registries, so etcd,
kube-apiserver, kubectl, helm and promtool are compiled from the wrapper modules under
`tools/controlplane/` (each with a committed go.sum). The cache lives outside the
repository, keyed by version, so a warm machine never compiles twice. The project's own Go
tool, gitops-health (`tools/gitops-health/`), is keyed by a digest of its sources instead. Files
of an upstream module that the tests read, not build, come from Go's module cache (`go_module`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

KUBERNETES_VERSION = "v1.36.3"  # the default: kubectl, the demo and every test's control plane
# The oldest and the newest supported minor (README, "Kubernetes versions"): the API corpus and an
# integration smoke test also run against these. Each has its wrapper module tools/controlplane/kube-<minor>.
OTHER_KUBERNETES_VERSIONS = ("v1.34.4", "v1.37.2")
KUBERNETES_VERSIONS = tuple(
    sorted((KUBERNETES_VERSION, *OTHER_KUBERNETES_VERSIONS), key=lambda v: tuple(map(int, v.lstrip("v").split("."))))
)
ETCD_VERSION = "v3.6.16"
HELM_VERSION = "v3.22.0"
# helm's .Capabilities default follows the client-go it is built with (v0.37 for v3.22.0).
HELM_CLIENT_GO_MINOR = "37"
# The Go module of Prometheus v3.16.0: its promtool checks and unit-tests the chart's alert rules.
PROMETHEUS_VERSION = "v0.316.0"
# Distribution (tests/cluster/test_krew.py, tests/chart/test_chart_oci.py): krew installs `kubectl rtcrec` from
# its manifest; the CNCF distribution registry serves the chart as `oci://`. v0.4.3 is the newest krew the Go
# module proxy serves.
KREW_VERSION = "v0.4.3"
REGISTRY_VERSION = "v3.1.2"
# Not built, read: the ServiceMonitor and PrometheusRule CRDs of its example/prometheus-operator-crd/, which
# tests/chart/test_chart_prometheus_operator.py serves from the local apiserver so that the chart's objects are
# validated by their real schemas. v0.85.0 is the newest release the Go module proxy serves.
PROMETHEUS_OPERATOR = "github.com/prometheus-operator/prometheus-operator"
PROMETHEUS_OPERATOR_VERSION = "v0.85.0"

REPO_ROOT = Path(__file__).resolve().parents[3]
WRAPPERS = REPO_ROOT / "tools" / "controlplane"
GITOPS_HEALTH = REPO_ROOT / "tools" / "gitops-health"  # kstatus + Argo CD's Lua runtime (docs/gitops.md)


def cache_root() -> Path:
    base = os.environ.get("RTCREC_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "rtc-recording-operator"
    )
    return Path(base)


def _kube_ldflags(version: str) -> str:
    major, minor = version.lstrip("v").split(".")[:2]
    keys = {
        "gitVersion": version,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
    }
    parts = [
        f"-X {pkg}.{key}={value}"
        for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
        for key, value in keys.items()
    ]
    return "-s -w " + " ".join(parts)


def _helm_ldflags() -> str:
    return " ".join(
        [
            "-s -w",
            f"-X helm.sh/helm/v3/internal/version.version={HELM_VERSION}",
            "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1",
            f"-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor={HELM_CLIENT_GO_MINOR}",
            "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1",
            f"-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor={HELM_CLIENT_GO_MINOR}",
        ]
    )


@dataclass(frozen=True)
class Binary:
    name: str
    version: str
    wrapper: str  # directory under `root`
    package: str
    ldflags: str
    root: Path = WRAPPERS

    @property
    def path(self) -> Path:
        return cache_root() / "bin" / f"{self.name}-{self.version}" / self.name


def _kube(version: str) -> dict[str, Binary]:
    """kube-apiserver and kubectl of one Kubernetes version, keyed as `ensure` takes them: plain for
    the default version, `<name>-<version>` for the others (kubectl too: a client within one minor
    of the server is all kubectl's version skew policy promises)."""
    wrapper = "kube" if version == KUBERNETES_VERSION else "kube-" + ".".join(version.lstrip("v").split(".")[:2])
    suffix = "" if version == KUBERNETES_VERSION else f"-{version}"
    return {
        name + suffix: Binary(name, version, wrapper, f"k8s.io/kubernetes/cmd/{name}", _kube_ldflags(version))
        for name in ("kube-apiserver", "kubectl")
    }


def _source_version(directory: Path) -> str:
    """A version for a module of our own: a digest of go.mod, go.sum and the Go files, so a change
    to any of them builds anew (and a checkout of older sources finds its binary still cached)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.iterdir() if p.name in ("go.mod", "go.sum") or p.suffix == ".go"):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return "src-" + digest.hexdigest()[:12]


BINARIES = {
    "etcd": Binary("etcd", ETCD_VERSION, "etcd", "go.etcd.io/etcd/server/v3", "-s -w"),
    **_kube(KUBERNETES_VERSION),
    # The default version only: its namespace controller is what deletes a namespace's content, its
    # garbage collector a deleted schedule's runs (LocalCluster.start_controllers; the namespace-deletion
    # and schedule cascade tests).
    "kube-controller-manager": Binary(
        "kube-controller-manager",
        KUBERNETES_VERSION,
        "kube",
        "k8s.io/kubernetes/cmd/kube-controller-manager",
        _kube_ldflags(KUBERNETES_VERSION),
    ),
    "helm": Binary("helm", HELM_VERSION, "helm", "helm.sh/helm/v3/cmd/helm", _helm_ldflags()),
    "promtool": Binary(
        "promtool", PROMETHEUS_VERSION, "promtool", "github.com/prometheus/prometheus/cmd/promtool", "-s -w"
    ),
    "krew": Binary(
        "krew",
        KREW_VERSION,
        "krew",
        "sigs.k8s.io/krew/cmd/krew",
        f"-s -w -X sigs.k8s.io/krew/internal/version.gitTag={KREW_VERSION}",
    ),
    "registry": Binary(
        "registry",
        REGISTRY_VERSION,
        "registry",
        "github.com/distribution/distribution/v3/cmd/registry",
        f"-s -w -X github.com/distribution/distribution/v3/version.version={REGISTRY_VERSION}",
    ),
    **{key: binary for version in OTHER_KUBERNETES_VERSIONS for key, binary in _kube(version).items()},
    "gitops-health": Binary(
        "gitops-health", _source_version(GITOPS_HEALTH), ".", "rtcrec/gitops-health", "-s -w", root=GITOPS_HEALTH
    ),
}


def _go_env() -> dict[str, str]:
    """The Go toolchain on PATH, never one it would download, and static binaries."""
    return {**os.environ, "GOTOOLCHAIN": "local", "CGO_ENABLED": "0"}


def go_module(path: str, version: str) -> Path:
    """The directory of a module version in Go's module cache (read-only), downloaded through the module
    proxy the first time: the files of a pinned upstream release."""
    with tempfile.TemporaryDirectory() as outside:  # no go.mod around: the version asked for, not a main module's
        proc = subprocess.run(
            ["go", "mod", "download", "-json", f"{path}@{version}"],
            cwd=outside,
            env=_go_env(),
            capture_output=True,
            text=True,
            timeout=600,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"go mod download {path}@{version} failed:\n{proc.stdout}{proc.stderr}")
    return Path(json.loads(proc.stdout)["Dir"])


def build(binary: Binary, log=sys.stderr) -> Path:
    """Compile one binary into the cache unless it is already there."""
    if binary.path.exists():
        return binary.path
    if shutil.which("go") is None:
        raise RuntimeError(f"{binary.name} is not cached at {binary.path} and no Go toolchain is on PATH to build it")
    binary.path.parent.mkdir(parents=True, exist_ok=True)
    partial = binary.path.with_suffix(f".partial-{os.getpid()}")  # two builds at once must not share it
    env = _go_env()
    print(
        f"building {binary.name} {binary.version} from Go modules (first run only; kube-apiserver takes minutes)...",
        file=log,
        flush=True,
    )
    started = last = time.monotonic()
    # -v names each package as it is compiled: counting them is the progress shown.
    build = subprocess.Popen(
        ["go", "build", "-v", "-trimpath", "-ldflags", binary.ldflags, "-o", str(partial), binary.package],
        cwd=binary.root / binary.wrapper,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert build.stderr is not None  # stderr=PIPE
    packages, tail = 0, list[str]()
    for line in build.stderr:
        packages += 1
        tail = [*tail[-20:], line]
        if time.monotonic() - last > 15:
            last = time.monotonic()
            print(f"  ... {binary.name}: {packages} packages compiled, {last - started:.0f} s", file=log, flush=True)
    if build.wait() != 0:
        raise RuntimeError(f"building {binary.name} failed:\n{''.join(tail)}")
    partial.rename(binary.path)
    print(f"built {binary.name} in {time.monotonic() - started:.0f} s -> {binary.path}", file=log, flush=True)
    return binary.path


def ensure(*names: str, log=sys.stderr) -> dict[str, Path]:
    """Paths of the named binaries (all of them by default), building what is missing."""
    return {name: build(BINARIES[name], log=log) for name in (names or BINARIES)}


def control_plane(version: str = KUBERNETES_VERSION, log=sys.stderr) -> dict[str, Path]:
    """etcd, kube-apiserver and kubectl for a cluster of `version`, by plain name."""
    if version not in KUBERNETES_VERSIONS:
        raise ValueError(f"no wrapper module for Kubernetes {version}; supported: {', '.join(KUBERNETES_VERSIONS)}")
    kube = _kube(version)
    paths = ensure("etcd", *kube, log=log)
    return {"etcd": paths["etcd"], **{binary.name: paths[key] for key, binary in kube.items()}}
