"""List, then watch, one collection: the informer of this operator, without a cache of whole objects."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

from rtc_recording.decide.backoff import backoff
from rtc_recording.kube.client import Kube

log = logging.getLogger(__name__)
RELIST_BASE_SECONDS = 1.0
RELIST_MAX_SECONDS = 30.0


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
        failures = 0  # in a row: the relist backs off, so a sick apiserver is not listed in full every second
        while True:
            try:
                if version is None:
                    version = await self._list()
                    self.synced.set()
                    failures = 0
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
                log.warning("watch of %s failed; listing again", self.path, exc_info=True)
                version = None
                await asyncio.sleep(backoff(failures, RELIST_BASE_SECONDS, RELIST_MAX_SECONDS))
                failures += 1
