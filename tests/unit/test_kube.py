"""The Kubernetes client's edges without an apiserver: its one error tree (over real HTTP on 127.0.0.1),
$KUBECONFIG merged as kubectl merges it, an exec plugin that never blocks the event loop, relists that back off."""

import asyncio
import socket
import stat
import sys
import time

import aiohttp
import pytest
import yaml
from aiohttp import web

from rtc_recording.kube import errors as k8s
from rtc_recording.kube import reflector as reflector_module
from rtc_recording.kube.client import Kube
from rtc_recording.kube.config import Connection, ExecPlugin, merged_kubeconfig
from rtc_recording.kube.reflector import Reflector

from .fakes import FakeKube, until


@pytest.fixture
async def apiserver():
    """An HTTP server on 127.0.0.1 that answers each path with the status the path names."""

    async def answer(request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        if code == 0:
            await asyncio.sleep(1)  # longer than the client waits in the test
        terminating = '{"reason":"Forbidden","details":{"causes":[{"reason":"NamespaceTerminating"}]}}'
        body = terminating if code == 4030 else "{}"
        return web.Response(status=403 if code == 4030 else (code or 200), text=body)

    app = web.Application()
    app.router.add_route("*", "/{code}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.mark.parametrize(
    "code, error",
    [
        (404, k8s.NotFound),
        (409, k8s.Conflict),
        (500, k8s.ApiError),
        (422, k8s.ApiError),
        (4030, k8s.NamespaceTerminating),
    ],
)
async def test_every_error_status_is_one_class_of_the_tree(apiserver, code, error):
    async with Kube(Connection(server=apiserver)) as kube:
        with pytest.raises(error) as caught:
            await kube.request("GET", f"/{code}")
    assert isinstance(caught.value, k8s.KubeError)
    assert isinstance(caught.value, k8s.Failed) == (error not in (k8s.NotFound, k8s.Conflict))


async def test_a_refused_connection_and_a_timeout_are_unreachable_not_aiohttp_errors(apiserver):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    async with Kube(Connection(server=closed)) as kube:
        with pytest.raises(k8s.Unreachable):
            await kube.request("GET", "/200")
    async with Kube(Connection(server=apiserver)) as kube:
        kube._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.2))  # a slow apiserver
        with pytest.raises(k8s.Unreachable):
            await kube.request("GET", "/0")


def _write(path, config) -> str:
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_kubeconfig_files_merge_as_kubectl_merges_them(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = _write(
        tmp_path / "a" / "config",
        {
            "current-context": "work",
            "clusters": [{"name": "prod", "cluster": {"server": "https://first", "certificate-authority": "ca.crt"}}],
            "contexts": [{"name": "work", "context": {"cluster": "prod", "user": "me", "namespace": "team"}}],
        },
    )
    second = _write(
        tmp_path / "b" / "config",
        {
            "current-context": "other",  # the first file set one: it wins
            "clusters": [{"name": "prod", "cluster": {"server": "https://second"}}],  # so does its cluster
            "users": [{"name": "me", "user": {"client-certificate": "me.crt", "client-key": "/abs/me.key"}}],
            "contexts": [{"name": "other", "context": {"cluster": "prod", "user": "me"}}],
        },
    )
    missing = str(tmp_path / "nowhere")
    connection = Connection.from_kubeconfig(":".join([missing, first, second]))
    assert connection.server == "https://first" and connection.namespace == "team"
    assert connection.ca_path == str(tmp_path / "a" / "ca.crt")  # relative to the file that names it
    assert (connection.cert_path, connection.key_path) == (str(tmp_path / "b" / "me.crt"), "/abs/me.key")
    assert Connection.from_kubeconfig(":".join([first, second]), "other").namespace is None
    config, _ = merged_kubeconfig(":".join([second, first]))
    assert config["current-context"] == "other" and config["clusters"]["prod"]["server"] == "https://second"
    with pytest.raises(ValueError, match="no kubeconfig"):
        merged_kubeconfig(missing)


async def test_an_exec_plugin_runs_off_the_event_loop_and_once_for_concurrent_requests(tmp_path):
    calls = tmp_path / "calls"
    plugin = tmp_path / "plugin.py"
    plugin.write_text(f"""#!{sys.executable}
import json, time
open({str(calls)!r}, "a").write("x")
time.sleep(0.5)
print(json.dumps({{"status": {{"token": "t0ken"}}}}))
""")
    plugin.chmod(plugin.stat().st_mode | stat.S_IEXEC)
    exec_plugin = ExecPlugin(str(plugin), [], {}, "client.authentication.k8s.io/v1")
    ticks = 0

    async def tick():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    started = time.monotonic()
    tokens = await asyncio.gather(*(exec_plugin.token() for _ in range(5)))
    ticker.cancel()
    assert tokens == ["t0ken"] * 5 and calls.read_text() == "x"
    assert ticks >= (time.monotonic() - started) / 0.01 / 4  # the loop kept turning while the plugin ran


async def test_an_exec_plugin_that_fails_is_a_401_with_its_words(tmp_path):
    plugin = tmp_path / "plugin.py"
    plugin.write_text(f"#!{sys.executable}\nimport sys\nsys.exit('log in first')\n")
    plugin.chmod(plugin.stat().st_mode | stat.S_IEXEC)
    with pytest.raises(k8s.ApiError, match="log in first") as caught:
        await ExecPlugin(str(plugin), [], {}, "client.authentication.k8s.io/v1").token()
    assert caught.value.status == 401


async def test_a_failing_list_is_retried_with_a_growing_backoff(monkeypatch):
    kube = FakeKube()
    path = "/api/v1/namespaces/x/configmaps"
    await kube.create(path, {"metadata": {"name": "a"}})
    kube.fail("GET", "/configmaps$", k8s.Unreachable("connection refused"), times=3)
    waits = []
    monkeypatch.setattr(reflector_module, "backoff", lambda retry, base, cap: waits.append(retry) or 0)
    reflector = Reflector(kube, path, lambda t, o: None)
    task = asyncio.create_task(reflector.run())
    try:
        await until(reflector.synced.is_set, what="synced after the failures")
    finally:
        task.cancel()
    assert waits == [0, 1, 2]


class SnapshotKube:
    """A collection listed at a version while the watch from that version already delivers newer changes."""

    def __init__(self):
        self.queries: list[str] = []
        self.events: asyncio.Queue = asyncio.Queue()
        self.pages = [
            {"items": [_cm("a", "5")], "metadata": {"resourceVersion": "10", "continue": "p2"}},
            {"items": [_cm("b", "6")], "metadata": {"resourceVersion": "10"}},
        ]

    async def request(self, method, path, **_):
        self.queries.append(path.partition("?")[2])
        if path.endswith("?limit=1"):  # the version the list is a snapshot of
            return {"items": [], "metadata": {"resourceVersion": "10"}}
        if len(self.queries) == 2:  # while the first page is on its way, b changes and c is created
            self.events.put_nowait({"type": "MODIFIED", "object": _cm("b", "11")})
            self.events.put_nowait({"type": "ADDED", "object": _cm("c", "12")})
            await asyncio.sleep(0.05)
        return self.pages.pop(0)

    async def watch(self, path, params):
        assert params["resourceVersion"] == "10"
        while True:
            yield await self.events.get()


def _cm(name: str, rv: str) -> dict:
    return {"metadata": {"namespace": "x", "name": name, "resourceVersion": rv}}


async def test_the_first_list_runs_beside_the_watch_and_never_goes_back_in_time():
    """What changes during a long start-up list is delivered at once; a listed state older than what
    the watch delivered is skipped."""
    kube = SnapshotKube()
    seen: list[tuple[str, str, str, bool]] = []
    reflector = Reflector(kube, "/p", lambda t, o: None, page_size=2, watch_while_listing=True)
    reflector.on_change = lambda t, o: seen.append(
        (t, o["metadata"]["name"], o["metadata"]["resourceVersion"], reflector.synced.is_set())
    )
    task = asyncio.create_task(reflector.run())
    try:
        await until(reflector.synced.is_set, what="synced")
    finally:
        task.cancel()
    assert ("MODIFIED", "b", "11", False) in seen and ("ADDED", "c", "12", False) in seen  # before the list ended
    assert ("ADDED", "b", "6", False) not in seen and ("ADDED", "a", "5", False) in seen
    assert "resourceVersion=10&resourceVersionMatch=Exact" in kube.queries[1]
