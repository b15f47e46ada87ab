"""kubeconfig credential plugins (`user.exec`), against the real apiserver: how managed
clusters authenticate a laptop, and so how `rtcrec run` and the receiver reach them from one."""

import asyncio
import stat
import sys

import pytest
import yaml

from rtc_recording.kube.client import Kube
from rtc_recording.kube.config import Connection
from rtc_recording.kube.errors import KubeError

pytestmark = pytest.mark.cluster


def exec_kubeconfig(cluster, tmp_path, token: str, expires: str | None = None, fail: bool = False):
    """The cluster's kubeconfig with its token replaced by a plugin that prints it and counts its runs."""
    calls = tmp_path / "calls"
    plugin = tmp_path / "plugin.py"
    status = {"token": token, **({"expirationTimestamp": expires} if expires else {})}
    plugin.write_text(f"""#!{sys.executable}
import json, os, sys
assert json.loads(os.environ["KUBERNETES_EXEC_INFO"])["kind"] == "ExecCredential"
assert os.environ["PLUGIN_ENV"] == "from-kubeconfig" and sys.argv[1:] == ["get-token", "--cluster", "local"]
with open({str(calls)!r}, "a") as f:
    f.write("x")
if {fail!r}:
    sys.exit("no session: run the login command first")
print(json.dumps({{"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential", "status": {status!r}}}))
""")
    plugin.chmod(plugin.stat().st_mode | stat.S_IEXEC)
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["users"][0]["user"] = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": str(plugin),
            "args": ["get-token", "--cluster", "local"],
            "env": [{"name": "PLUGIN_ENV", "value": "from-kubeconfig"}],
        }
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path, calls


def admin_token(cluster) -> str:
    return yaml.safe_load(cluster.kubeconfig.read_text())["users"][0]["user"]["token"]


def list_namespaces(path) -> list:
    async def go():
        async with Kube(Connection.from_kubeconfig(str(path))) as kube:
            first = await kube.request("GET", "/api/v1/namespaces")
            await kube.request("GET", "/api/v1/namespaces")
            return first["items"]

    return asyncio.run(go())


def test_a_plugin_token_is_used_and_cached_until_it_expires(cluster, tmp_path):
    path, calls = exec_kubeconfig(cluster, tmp_path, admin_token(cluster), expires="2999-01-01T00:00:00Z")
    assert list_namespaces(path)  # the apiserver accepted the plugin's token
    assert calls.read_text() == "x"  # two requests, one run of the plugin


def test_an_expired_token_is_fetched_again(cluster, tmp_path):
    path, calls = exec_kubeconfig(cluster, tmp_path, admin_token(cluster), expires="2000-01-01T00:00:00Z")
    list_namespaces(path)
    assert calls.read_text() == "xx"


def test_a_wrong_token_is_refused_and_a_failing_plugin_says_why(cluster, tmp_path):
    (tmp_path / "wrong").mkdir()
    (tmp_path / "failing").mkdir()
    path, _ = exec_kubeconfig(cluster, tmp_path / "wrong", "not-a-token")
    with pytest.raises(KubeError, match="HTTP 401"):
        list_namespaces(path)
    path, _ = exec_kubeconfig(cluster, tmp_path / "failing", "x", fail=True)
    with pytest.raises(KubeError, match="run the login command first"):
        list_namespaces(path)
