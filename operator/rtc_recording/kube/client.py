"""A small async Kubernetes client for the writes that Kopf cannot make for us.

Kopf persists a handler's outcome only after the handler returns. Recording an attempt
*before* calling Start must therefore be our own PATCH of `/status`, carrying
`metadata.resourceVersion` so that a concurrent writer makes it fail (409) instead of
being overwritten. The receiver process uses the same client and knows nothing of Kopf.
"""

from __future__ import annotations

import json as jsonlib
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import aiohttp

from rtc_recording.api.names import GROUP, recording_path, segment
from rtc_recording.kube.config import Connection
from rtc_recording.kube.errors import ApiError, Conflict, NamespaceTerminating, NotFound, Unreachable

log = logging.getLogger(__name__)


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
                proxy=self.connection.proxy,  # the session's default, for every request (aiohttp >= 3.10)
            )
        return self._session

    async def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if token := await self.connection.bearer():
            headers["Authorization"] = f"Bearer {token}"
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    async def request(self, method: str, path: str, *, json: Any = None, content_type: str | None = None) -> dict:
        try:
            async with self._http().request(
                method, self.connection.server + path, json=json, headers=await self._headers(content_type)
            ) as resp:
                body = await resp.text()
                if resp.status == 404:
                    raise NotFound(path)
                if resp.status == 409:
                    raise Conflict(path)
                if resp.status == 403 and '"NamespaceTerminating"' in body:  # metav1.NamespaceTerminatingCause
                    raise NamespaceTerminating(resp.status, body)
                if resp.status >= 400:
                    raise ApiError(resp.status, body)
                return await resp.json(content_type=None) if body else {}
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise Unreachable(f"{method} {path}: {exc!r}") from exc

    # -- RtcRecording ----------------------------------------------------------------------
    async def get_recording(self, namespace: str, name: str) -> dict:
        return await self.request("GET", recording_path(namespace, name))

    async def delete_recording(self, namespace: str, name: str, uid: str) -> None:
        """Delete this very object (a namesake created meanwhile is left alone)."""
        try:
            await self.request("DELETE", recording_path(namespace, name), json={"preconditions": {"uid": uid}})
        except (NotFound, Conflict):
            pass

    async def patch_finalizers(self, path: str, finalizers: list[str], resource_version: str) -> dict:
        """Set the finalizers of the object at `path`, nothing else, if it is still at `resource_version`."""
        return await self.request(
            "PATCH",
            path,
            json={"metadata": {"finalizers": finalizers, "resourceVersion": resource_version}},
            content_type="application/merge-patch+json",
        )

    async def patch_labels(
        self, path: str, labels: dict[str, str | None], resource_version: str, annotations: dict[str, str] | None = None
    ) -> dict:
        """Set (None: remove) `labels` of the object at `path`, if it is still at `resource_version`."""
        meta: dict = {"labels": labels, "resourceVersion": resource_version}
        if annotations:
            meta["annotations"] = annotations
        return await self.request("PATCH", path, json={"metadata": meta}, content_type="application/merge-patch+json")

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
        self,
        namespace: str,
        name: str,
        change: Callable[[dict], dict | None],
        attempts: int = 5,
        current: dict | None = None,
    ) -> tuple[dict, dict | None]:
        """Read, compute a status patch from the fresh object, compare-and-swap; repeat on conflict.
        `current`: the object as this process last wrote it, tried first without a read.

        Returns the object as last read and the patch applied (None: `change` wanted nothing).
        Raises NotFound when the object does not exist.
        """
        for _ in range(attempts):
            obj, current = current or await self.get_recording(namespace, name), None
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
                headers=await self._headers(),
                timeout=aiohttp.ClientTimeout(total=10),
            ) as resp:
                return resp.status == 200
        except (TimeoutError, aiohttp.ClientError):
            return False

    async def list_recordings(
        self, namespaces: list[str], task_id: str | None = None, label_selector: str | None = None
    ) -> list[dict]:
        """In these namespaces (none: all of them, which a namespaced install may not list)."""
        params = {"fieldSelector": f"status.taskId={task_id}"} if task_id else {}
        if label_selector:
            params["labelSelector"] = label_selector
        query = "?" + urlencode(params) if params else ""
        paths = [recording_path(ns) for ns in namespaces] or [recording_path(None)]
        return [item for path in paths for item in (await self.request("GET", path + query)).get("items", [])]

    # -- core ------------------------------------------------------------------------------
    async def get_secret(self, namespace: str, name: str) -> dict:
        """The whole Secret; `.data` values still base64-encoded as the API returns them."""
        return await self.request("GET", secret_path(namespace, name))

    async def create(self, path: str, obj: dict) -> dict:
        return await self.request("POST", path, json=obj)

    async def delete(self, path: str) -> None:
        try:
            await self.request("DELETE", path)
        except NotFound:
            pass

    async def watch(self, path: str, params: dict[str, str]) -> Any:
        """The raw events of one watch request, as parsed JSON, until the server ends it."""
        query = urlencode({**params, "watch": "true", "allowWatchBookmarks": "true", "timeoutSeconds": "300"})
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=330)
        try:
            async with self._http().get(
                f"{self.connection.server}{path}?{query}", headers=await self._headers(), timeout=timeout
            ) as resp:
                if resp.status >= 400:
                    raise ApiError(resp.status, await resp.text())
                buffer = b""
                async for chunk in resp.content.iter_any():
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        if line.strip():
                            yield jsonlib.loads(line)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise Unreachable(f"watch {path}: {exc!r}") from exc


def secret_path(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{segment(namespace)}/secrets/{segment(name)}"
