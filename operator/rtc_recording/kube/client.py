"""A small async Kubernetes client for the writes that Kopf cannot make for us.

Kopf persists a handler's outcome only after the handler returns. Recording an attempt
*before* calling Start must therefore be our own PATCH of `/status`, carrying
`metadata.resourceVersion` so that a concurrent writer makes it fail (409) instead of
being overwritten. The receiver process uses the same client and knows nothing of Kopf.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import json as jsonlib
import logging
import os
import ssl
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import yaml

from rtc_recording.api import timestamps
from rtc_recording.api.names import GROUP, VERSION, recording_path, segment

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
log = logging.getLogger(__name__)


class Conflict(Exception):
    """The object changed since it was read (HTTP 409): re-read, never overwrite."""


class Gone(Exception):
    """The object no longer exists (HTTP 404)."""


class KubeError(Exception):
    def __init__(self, status: int, body: str):
        super().__init__(f"HTTP {status}: {body[:500]}")
        self.status = status


class NamespaceTerminating(KubeError):
    """The namespace is being deleted: nothing new (an Event) can be created in it."""


@dataclass(frozen=True)
class Connection:
    server: str
    ca_path: str | None = None
    token: str | None = None
    token_file: str | None = None  # re-read on every request: projected tokens rotate
    cert_path: str | None = None
    key_path: str | None = None
    insecure: bool = False
    namespace: str | None = None
    exec_plugin: ExecPlugin | None = None  # a kubeconfig `user.exec` credential plugin

    @classmethod
    def load(cls) -> Connection:
        """In a pod, the service account; elsewhere the current context of $KUBECONFIG."""
        if (SA_DIR / "token").exists():
            host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
            return cls(
                server=f"https://{host}:{port}",
                ca_path=str(SA_DIR / "ca.crt"),
                token_file=str(SA_DIR / "token"),
                namespace=(SA_DIR / "namespace").read_text().strip(),
            )
        return cls.from_kubeconfig(os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config"))

    @classmethod
    def from_kubeconfig(cls, path: str, context_name: str | None = None) -> Connection:
        """The current context of the kubeconfig at `path`, or the one named (kubectl's --context)."""
        config = yaml.safe_load(Path(path).read_text())
        by_name = lambda kind: {item["name"]: item.get(kind[:-1]) or {} for item in config.get(kind, [])}  # noqa: E731
        contexts = by_name("contexts")
        name = context_name or config.get("current-context")
        if name not in contexts:
            raise ValueError(f"context {name!r} is not in {path}" if name else f"{path} has no current context")
        context = contexts[name]
        cluster, user = by_name("clusters")[context["cluster"]], by_name("users")[context["user"]]
        return cls(
            server=cluster["server"],
            ca_path=cluster.get("certificate-authority") or _materialise(cluster.get("certificate-authority-data")),
            token=user.get("token"),
            token_file=user.get("tokenFile"),
            cert_path=user.get("client-certificate") or _materialise(user.get("client-certificate-data")),
            key_path=user.get("client-key") or _materialise(user.get("client-key-data")),
            insecure=bool(cluster.get("insecure-skip-tls-verify")),
            namespace=context.get("namespace"),
            exec_plugin=ExecPlugin.of(user["exec"]) if user.get("exec") else None,
        )

    def bearer(self) -> str | None:
        if self.token_file:
            return Path(self.token_file).read_text().strip()
        if self.exec_plugin:
            return self.exec_plugin.token()
        return self.token

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_path)
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert_path:
            ctx.load_cert_chain(self.cert_path, self.key_path)
        return ctx


class ExecPlugin:
    """A kubeconfig credential plugin (`users[].user.exec`, client.authentication.k8s.io): how
    most managed clusters authenticate a laptop. The token it prints is cached until shortly
    before its `expirationTimestamp` (or for EXEC_TTL_SECONDS if it gives none). Written here
    rather than taken from the `kubernetes` package, whose import alone costs about 35 MB."""

    EXEC_TTL_SECONDS = 300.0
    MARGIN_SECONDS = 30.0

    def __init__(self, command: str, args: list[str], env: dict[str, str], api_version: str):
        self.command, self.args, self.env, self.api_version = command, args, env, api_version
        self._token: str | None = None
        self._valid_until = 0.0

    @classmethod
    def of(cls, config: dict) -> ExecPlugin:
        return cls(
            config["command"],
            list(config.get("args") or []),
            {e["name"]: e["value"] for e in config.get("env") or []},
            config.get("apiVersion", "client.authentication.k8s.io/v1"),
        )

    def token(self) -> str:
        if self._token is None or time.time() >= self._valid_until:
            self._token, self._valid_until = self._run()
        return self._token

    def _run(self) -> tuple[str, float]:
        info = {"apiVersion": self.api_version, "kind": "ExecCredential", "spec": {"interactive": False}}
        proc = subprocess.run(
            [self.command, *self.args],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **self.env, "KUBERNETES_EXEC_INFO": jsonlib.dumps(info)},
        )
        if proc.returncode != 0:
            raise KubeError(401, f"credential plugin {self.command} failed: {proc.stderr.strip()[:300]}")
        status = jsonlib.loads(proc.stdout).get("status") or {}
        if not status.get("token"):
            raise KubeError(
                401,
                f"credential plugin {self.command} returned no token (client certificates from "
                "a plugin are not supported)",
            )
        expiry = status.get("expirationTimestamp")
        until = (
            timestamps.parse(expiry).timestamp() - self.MARGIN_SECONDS
            if expiry
            else time.time() + self.EXEC_TTL_SECONDS
        )
        return status["token"], until


_MATERIALISED: dict[str, str] = {}


def _materialise(data_b64: str | None) -> str | None:
    """Kubeconfigs may embed certificates and keys; ssl wants files. One private file per
    content for the life of the process, removed at exit."""
    if not data_b64:
        return None
    if data_b64 not in _MATERIALISED:
        if not _MATERIALISED:

            def remove() -> None:
                for path in _MATERIALISED.values():
                    if os.path.exists(path):
                        os.unlink(path)

            atexit.register(remove)
        f = tempfile.NamedTemporaryFile(prefix="rtcrec-kube-", delete=False)  # mode 0600
        f.write(base64.b64decode(data_b64))
        f.close()
        _MATERIALISED[data_b64] = f.name
    return _MATERIALISED[data_b64]


class Kube:
    def __init__(self, connection: Connection):
        self.connection = connection
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Kube:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session:
            await self._session.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self.connection.ssl_context(), limit=64),
                timeout=aiohttp.ClientTimeout(total=30),
            )
        return self._session

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if token := self.connection.bearer():
            headers["Authorization"] = f"Bearer {token}"
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    async def request(self, method: str, path: str, *, json: Any = None, content_type: str | None = None) -> dict:
        async with self._http().request(
            method, self.connection.server + path, json=json, headers=self._headers(content_type)
        ) as resp:
            body = await resp.text()
            if resp.status == 404:
                raise Gone(path)
            if resp.status == 409:
                raise Conflict(path)
            if resp.status == 403 and '"NamespaceTerminating"' in body:  # metav1.NamespaceTerminatingCause
                raise NamespaceTerminating(resp.status, body)
            if resp.status >= 400:
                raise KubeError(resp.status, body)
            return await resp.json(content_type=None) if body else {}

    # -- RtcRecording ----------------------------------------------------------------------
    async def get_recording(self, namespace: str, name: str) -> dict:
        return await self.request("GET", recording_path(namespace, name))

    async def delete_recording(self, namespace: str, name: str, uid: str) -> None:
        """Delete this very object (a namesake created meanwhile is left alone)."""
        try:
            await self.request("DELETE", recording_path(namespace, name), json={"preconditions": {"uid": uid}})
        except (Gone, Conflict):
            pass

    async def patch_status(
        self, namespace: str, name: str, status: dict, *, resource_version: str | None = None, uid: str | None = None
    ) -> dict:
        """Merge-patch `/status`; with resource_version (and uid) it is a compare-and-swap."""
        metadata = {k: v for k, v in (("resourceVersion", resource_version), ("uid", uid)) if v}
        body = {"status": status, **({"metadata": metadata} if metadata else {})}
        return await self.request(
            "PATCH", recording_path(namespace, name, "status"), json=body, content_type="application/merge-patch+json"
        )

    async def mutate_status(
        self, namespace: str, name: str, change: Callable[[dict], dict | None], attempts: int = 5
    ) -> tuple[dict, dict | None]:
        """Read, compute a status patch from the fresh object, compare-and-swap; repeat on conflict.

        Returns the object as last read and the patch applied (None: `change` wanted nothing).
        Raises Gone when the object does not exist.
        """
        for _ in range(attempts):
            obj = await self.get_recording(namespace, name)
            patch = change(obj)
            if patch is None:
                return obj, None
            try:
                meta = obj["metadata"]
                return await self.patch_status(
                    namespace, name, patch, resource_version=meta["resourceVersion"], uid=meta["uid"]
                ), patch
            except Conflict:
                continue
        raise Conflict(f"{namespace}/{name}: still changing after {attempts} attempts")

    async def post_event(
        self,
        obj: dict,
        type_: str,
        reason: str,
        message: str,
        component: str,
        key: str | None = None,
        repeat: bool = False,
    ) -> None:
        """A core/v1 Event about `obj`. With `key` its name is fixed: posting the same key again
        is a no-op (a retry after a crash), or with `repeat` counts one more occurrence."""
        meta = obj["metadata"]
        now = timestamps.now()
        name = f"{meta['name']}.{key or uuid.uuid4().hex[:12]}"
        events = f"/api/v1/namespaces/{segment(meta['namespace'])}/events"
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion", f"{GROUP}/{VERSION}"),
                "kind": obj.get("kind", "RtcRecording"),
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "source": {"component": component},
            "reportingComponent": component,
        }
        try:
            await self.request("POST", events, json=event)
        except Conflict:
            if key is None:
                raise
            if not repeat:
                return
            old = await self.request("GET", f"{events}/{segment(name)}")
            await self.request(
                "PATCH",
                f"{events}/{segment(name)}",
                content_type="application/merge-patch+json",
                json={"count": int(old.get("count") or 1) + 1, "lastTimestamp": now, "message": message[:1024]},
            )

    async def streams_lists(self, namespaces: list[str]) -> bool:
        """Does the apiserver stream the initial state of a watch (WatchList: on by default in
        1.34 and later, off in 1.33)? An apiserver without it refuses the request."""
        path = recording_path(namespaces[0]) if namespaces else recording_path(None)
        query = urlencode(
            {
                "watch": "true",
                "sendInitialEvents": "true",
                "resourceVersionMatch": "NotOlderThan",
                "allowWatchBookmarks": "true",
                "labelSelector": f"{GROUP}/none=none",
                "timeoutSeconds": "1",
            }
        )
        try:
            async with self._http().get(
                f"{self.connection.server}{path}?{query}",
                headers=self._headers(),
                timeout=aiohttp.ClientTimeout(total=10),
            ) as resp:
                return resp.status == 200
        except (TimeoutError, aiohttp.ClientError):
            return False

    async def list_recordings(self, namespaces: list[str], task_id: str | None = None) -> list[dict]:
        """In these namespaces (none: all of them, which a namespaced install may not list)."""
        query = "?" + urlencode({"fieldSelector": f"status.taskId={task_id}"}) if task_id else ""
        paths = [recording_path(ns) for ns in namespaces] or [recording_path(None)]
        return [item for path in paths for item in (await self.request("GET", path + query)).get("items", [])]

    # -- core ------------------------------------------------------------------------------
    async def get_secret(self, namespace: str, name: str) -> dict:
        """The whole Secret; `.data` values still base64-encoded as the API returns them."""
        return await self.request("GET", f"/api/v1/namespaces/{segment(namespace)}/secrets/{segment(name)}")

    async def patch_secret_finalizers(
        self, namespace: str, name: str, finalizers: list[str], resource_version: str
    ) -> dict:
        """Set a Secret's finalizers, nothing else, if it is still at `resource_version`."""
        return await self.request(
            "PATCH",
            f"/api/v1/namespaces/{segment(namespace)}/secrets/{segment(name)}",
            json={"metadata": {"finalizers": finalizers, "resourceVersion": resource_version}},
            content_type="application/merge-patch+json",
        )

    async def create(self, path: str, obj: dict) -> dict:
        return await self.request("POST", path, json=obj)

    async def delete(self, path: str) -> None:
        try:
            await self.request("DELETE", path)
        except Gone:
            pass

    async def watch(self, path: str, params: dict[str, str]) -> Any:
        """The raw events of one watch request, as parsed JSON, until the server ends it."""
        query = urlencode({**params, "watch": "true", "allowWatchBookmarks": "true", "timeoutSeconds": "300"})
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=330)
        async with self._http().get(
            f"{self.connection.server}{path}?{query}", headers=self._headers(), timeout=timeout
        ) as resp:
            if resp.status >= 400:
                raise KubeError(resp.status, await resp.text())
            buffer = b""
            async for chunk in resp.content.iter_any():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield jsonlib.loads(line)


class Reflector:
    """List, then watch, one collection; every change goes to `on_change(type, obj)`.

    The list comes in pages, so start-up never holds the whole collection at once; the
    caller keeps only what it needs of each object. A watch that expired (410) is followed
    by a new list, and objects that vanished meanwhile are reported as DELETED.
    """

    def __init__(
        self,
        kube: Kube,
        path: str,
        on_change: Callable[[str, dict], Awaitable[None] | None],
        label_selector: str | None = None,
        page_size: int = 500,
    ):
        self.kube, self.path, self.on_change = kube, path, on_change
        self.params = {"labelSelector": label_selector} if label_selector else {}
        self.page_size = page_size
        self.synced = asyncio.Event()
        self._keys: dict[tuple[str, str], str] = {}  # (namespace, name) -> uid, for DELETED on relist

    async def _deliver(self, type_: str, obj: dict) -> None:
        meta = obj["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        if type_ == "DELETED":
            self._keys.pop(key, None)
        else:
            self._keys[key] = meta.get("uid", "")
        outcome = self.on_change(type_, obj)
        if outcome is not None:
            await outcome

    async def _list(self) -> str:
        seen: set[tuple[str, str]] = set()
        cont, version = None, ""
        while True:
            query = urlencode({**self.params, "limit": str(self.page_size), **({"continue": cont} if cont else {})})
            page = await self.kube.request("GET", f"{self.path}?{query}")
            for obj in page.get("items", []):
                meta = obj["metadata"]
                seen.add((meta.get("namespace", ""), meta["name"]))
                await self._deliver("ADDED", obj)
            cont, version = page["metadata"].get("continue"), page["metadata"]["resourceVersion"]
            if not cont:
                break
        for key in [k for k in self._keys if k not in seen]:
            await self._deliver("DELETED", {"metadata": {"namespace": key[0], "name": key[1], "uid": self._keys[key]}})
        return version

    async def run(self) -> None:
        version: str | None = None
        while True:
            try:
                if version is None:
                    version = await self._list()
                    self.synced.set()
                async for event in self.kube.watch(self.path, {**self.params, "resourceVersion": version}):
                    obj = event.get("object") or {}
                    if event.get("type") == "ERROR":
                        version = None if obj.get("code") == 410 else version  # expired: list again
                        break
                    version = obj.get("metadata", {}).get("resourceVersion", version)
                    if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        await self._deliver(event["type"], obj)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("watch of %s failed; starting again", self.path, exc_info=True)
                version = None
                await asyncio.sleep(1)
