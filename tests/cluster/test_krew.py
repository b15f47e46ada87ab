"""kubectl rtcrec as a krew user gets it (README, "kubectl rtcrec"): krew, built from Go modules, installs the
plugin from the manifest and archive that tools/krew/build.py (`make krew`) writes, into a temporary KREW_ROOT;
kubectl then runs it with the python3 on PATH, against the local apiserver.

The archive carries the `kubernetes` package, so this is the plugin's kubeconfig path through kubernetes'
loader (kubeconfig.py), with KUBECONFIG listing two files as kubectl merges them: the first names the current
context, the second holds it, and itself names another (kubernetes' own merge would take that one; kubectl,
and so the plugin, the first file's). Both contexts go through `proxy-url` (a CONNECT proxy on loopback):
one logs in with the OIDC auth provider (its id-token a ServiceAccount token, a JWT the apiserver verifies as
it would an identity provider's; the operator's loader refuses auth providers), the other with an exec
credential plugin. Built for this machine's platform and python3 only: the other archives differ in wheels.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from connect_proxy import ConnectProxy

from rtc_recording.cluster import binaries

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
NAMESPACE = "krew-plugin"
HOST_PLATFORM = {"x86_64": "linux-amd64", "aarch64": "linux-arm64"}[platform.machine()]


@pytest.fixture(scope="module")
def python3() -> Path:
    """The machine's python3, not this venv's: what a krew user's PATH has."""
    found = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
    assert found, "no python3 on the system PATH"
    return Path(found)


@pytest.fixture(scope="module")
def krew_build(tmp_path_factory, python3) -> Path:
    """`make krew`'s script, for this platform and python3's version."""
    out = tmp_path_factory.mktemp("krew-build")
    version = subprocess.run(
        [python3, "-c", "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    build = [sys.executable, str(binaries.REPO_ROOT / "tools/krew/build.py"), "--out", str(out)]
    subprocess.run([*build, "--platform", HOST_PLATFORM, "--python", version], check=True, timeout=600)
    return out


@pytest.fixture(scope="module")
def proxy():
    running = ConnectProxy()
    yield running
    running.close()


@pytest.fixture(scope="module")
def user_env(cluster, krew_build, python3, tmp_path_factory) -> dict[str, str]:
    """A shell with kubectl, krew (as kubectl-krew) and python3 on PATH, and the plugin installed with krew."""
    home = tmp_path_factory.mktemp("krew-user")
    bin_dir = home / "path"
    bin_dir.mkdir()
    (bin_dir / "kubectl").symlink_to(cluster.info()["kubectl"])
    (bin_dir / "kubectl-krew").symlink_to(binaries.ensure("krew")["krew"])
    (bin_dir / "python3").symlink_to(python3)
    root = home / "krew"
    env = {
        "HOME": str(home),
        "PATH": f"{bin_dir}:{root / 'bin'}",
        "KREW_ROOT": str(root),
        "KREW_NO_UPGRADE_CHECK": "1",  # krew would ask GitHub for its latest release
    }
    install = subprocess.run(
        ["kubectl", "krew", "install", f"--manifest={krew_build / 'rtcrec.yaml'}"]
        + [f"--archive={krew_build / f'rtcrec-{HOST_PLATFORM}.tar.gz'}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert install.returncode == 0, install.stderr
    assert "Installed plugin: rtcrec" in install.stderr
    return env


def test_the_manifest_names_the_archive_by_its_sha256(krew_build):
    manifest = yaml.safe_load((krew_build / "rtcrec.yaml").read_text())
    (entry,) = manifest["spec"]["platforms"]
    archive = krew_build / f"rtcrec-{HOST_PLATFORM}.tar.gz"
    assert entry["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert entry["uri"].endswith(f"/releases/download/v0.1.0/rtcrec-{HOST_PLATFORM}.tar.gz")
    assert entry["bin"] == "kubectl-rtcrec" and manifest["spec"]["version"] == "v0.1.0"


def test_kubectl_runs_the_installed_plugin(user_env):
    out = subprocess.run(["kubectl", "rtcrec", "--help"], env=user_env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: kubectl rtcrec") and "history" in out.stdout


@pytest.fixture(scope="module")
def two_kubeconfigs(cluster, proxy, tmp_path_factory) -> str:
    """KUBECONFIG=first:second. first: current-context `oidc`. second: the cluster (through the proxy), the
    contexts `oidc` and `exec` (namespace krew-plugin) and `nowhere`, which is its own current-context."""
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    cluster.apply_crds()
    cluster.kubectl("create", "namespace", NAMESPACE)
    # A ServiceAccount that may read recordings there, and a token of it: the OIDC id-token.
    cluster.kubectl("create", "serviceaccount", "reader", "-n", NAMESPACE)
    cluster.kubectl("create", "role", "reader", "--verb=get,list", "--resource=rtcrecordings", "-n", NAMESPACE)
    cluster.kubectl(
        "create", "rolebinding", "reader", "--role=reader", f"--serviceaccount={NAMESPACE}:reader", "-n", NAMESPACE
    )
    id_token = cluster.kubectl("create", "token", "reader", "-n", NAMESPACE, "--duration=1h").stdout.strip()

    home = tmp_path_factory.mktemp("kubeconfigs")
    calls = home / "exec-calls"
    plugin = home / "get-token.py"
    credential = {"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential"}
    credential["status"] = {"token": admin["users"][0]["user"]["token"]}
    plugin.write_text(
        f"#!{sys.executable}\nopen({str(calls)!r}, 'a').write('x')\nprint({json.dumps(json.dumps(credential))})\n"
    )
    plugin.chmod(plugin.stat().st_mode | stat.S_IEXEC)

    local = {**admin["clusters"][0]["cluster"], "proxy-url": proxy.url}
    oidc = {
        "name": "oidc",
        "config": {"client-id": "kubectl", "idp-issuer-url": "https://127.0.0.1:9", "id-token": id_token},
    }
    second = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "local", "cluster": local},
            {"name": "nowhere", "cluster": {"server": "https://127.0.0.1:9"}},
        ],
        "users": [
            {"name": "oidc", "user": {"auth-provider": oidc}},
            {
                "name": "exec",
                "user": {
                    "exec": {"apiVersion": credential["apiVersion"], "command": str(plugin), "interactiveMode": "Never"}
                },
            },
        ],
        "contexts": [
            {"name": name, "context": {"cluster": cluster_name, "user": user, "namespace": NAMESPACE}}
            for name, cluster_name, user in (
                ("oidc", "local", "oidc"),
                ("exec", "local", "exec"),
                ("nowhere", "nowhere", "exec"),
            )
        ],
        "current-context": "nowhere",
    }
    first = {"apiVersion": "v1", "kind": "Config", "current-context": "oidc"}
    (home / "first").write_text(yaml.safe_dump(first))
    (home / "second").write_text(yaml.safe_dump(second))
    (home / "second").chmod(0o600)
    return f"{home / 'first'}:{home / 'second'}"


def test_a_command_reads_both_kubeconfig_files_as_kubectl_does(cluster, user_env, two_kubeconfigs, proxy):
    example = binaries.REPO_ROOT / "examples" / "mixed-oss-minimal.yaml"
    cluster.kubectl("apply", "-n", NAMESPACE, "-f", str(example))
    task = {
        "taskId": "t-1",
        "startTime": "2026-01-05T07:00:00Z",
        "endTime": "2026-01-05T07:30:00Z",
        "reason": "Suspended",
    }
    cluster.kubectl(
        "patch", "rtcrec", "standup-42", "-n", NAMESPACE, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"history": [task]}}),
    )  # fmt: skip
    env = {**user_env, "KUBECONFIG": two_kubeconfigs}

    def run(*args: str) -> subprocess.CompletedProcess:
        out = subprocess.run(["kubectl", *args], env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out

    # kubectl itself: the first file's current context, its namespace, the OIDC user, through the proxy.
    assert "standup-42" in run("get", "rtcrec").stdout
    tunnelled = len(proxy.targets)
    assert tunnelled >= 1
    table = run("rtcrec", "history", "standup-42").stdout
    assert table.splitlines()[0].split() == ["TASK", "START", "END", "STATE"]
    assert table.splitlines()[1].split() == ["t-1", task["startTime"], task["endTime"], "Suspended"]
    assert len(proxy.targets) > tunnelled
    calls = Path(two_kubeconfigs.split(":")[1]).parent / "exec-calls"
    assert not calls.exists()  # the OIDC user's context
    tasks = json.loads(run("rtcrec", "--context", "exec", "-o", "json", "history", "standup-42").stdout)["tasks"]
    assert [t["taskId"] for t in tasks] == ["t-1"] and calls.read_text() == "x"
