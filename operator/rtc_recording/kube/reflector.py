"""List, then watch, one collection: the informer of this operator, without a cache of whole objects."""

from __future__ import annotations

import asyncio
import itertools
import logging
import sys
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

from rtc_recording.decide.backoff import backoff
from rtc_recording.kube.client import Kube
from rtc_recording.kube.errors import KubeError

log = logging.getLogger(__name__)
RELIST_BASE_SECONDS = 1.0
RELIST_MAX_SECONDS = 30.0


class Reflector:
    """List, then watch, one collection; every change goes to `on_change(type, obj)`.

    The list comes in pages, so start-up never holds the whole collection at once; the
    caller keeps only what it needs of each object. A watch that expired (410) is followed
    by a new list, and objects that vanished meanwhile are reported as DELETED.

    `watch_while_listing`: the first list is a snapshot at a resourceVersion read first, and the
    watch from that version runs beside it, so what changes during a long start-up list (10 000
    objects take seconds) is delivered at once, not after the whole list. The two never overlap
    in time: the list says how each object was at that version, the watch only what came after,
    so an object the watch delivered already is skipped when its (older) listed state comes.
    """

    def __init__(
        self,
        kube: Kube,
        path: str,
        on_change: Callable[[str, dict], Awaitable[None] | None],
        label_selector: str | None = None,
        page_size: int = 500,
        watch_while_listing: bool = False,
    ):
        self.kube, self.path, self.on_change = kube, path, on_change
        self.params = {"labelSelector": label_selector} if label_selector else {}
        self.page_size = page_size
        self.watch_while_listing = watch_while_listing
        self.synced = asyncio.Event()
        self._keys: dict[tuple[str, str], str] = {}  # (namespace, name) -> uid, for DELETED on relist
        self._watched: set[tuple[str, str]] | None = None  # while a list runs beside the watch: what it delivered
        self._listing: asyncio.Task | None = None

    async def _deliver(self, type_: str, obj: dict, listed: bool = False) -> tuple[str, str]:
        meta = obj["metadata"]
        # One namespace string for all its objects (a parsed one each would cost 50 bytes an object).
        key = (sys.intern(meta.get("namespace", "")), meta["name"])
        if self._watched is not None:
            if listed and key in self._watched:
                return key  # the watch delivered something newer already
            if not listed:
                self._watched.add(key)
        if type_ == "DELETED":
            self._keys.pop(key, None)
        else:
            self._keys[key] = meta.get("uid", "")
        outcome = self.on_change(type_, obj)
        if outcome is not None:
            await outcome
        return key

    async def _list(self, at: str | None = None) -> str:
        """Every object, page by page (`at`: as it was at that resourceVersion exactly)."""
        seen: set[tuple[str, str]] = set()
        cont, version = None, ""
        exact = {"resourceVersion": at, "resourceVersionMatch": "Exact"} if at else {}
        while True:
            paging = {"continue": cont} if cont else exact  # a continue token carries the version
            query = urlencode({**self.params, "limit": str(self.page_size), **paging})
            page = await self.kube.request("GET", f"{self.path}?{query}")
            for obj in page.get("items", []):
                seen.add(await self._deliver("ADDED", obj, listed=True))  # the key _deliver built: no second tuple
            cont, version = page["metadata"].get("continue"), page["metadata"]["resourceVersion"]
            if not cont:
                break
        seen |= self._watched or set()
        for key in [k for k in self._keys if k not in seen]:
            await self._deliver("DELETED", {"metadata": {"namespace": key[0], "name": key[1], "uid": self._keys[key]}})
        return version

    async def _list_beside_the_watch(self) -> str:
        """The version the first list is a snapshot of; that list goes on in the background."""
        if self._listing is not None:
            self._listing.cancel()
        query = urlencode({**self.params, "limit": "1"})
        version: str = (await self.kube.request("GET", f"{self.path}?{query}"))["metadata"]["resourceVersion"]
        watched: set[tuple[str, str]] = set()
        self._watched = watched

        async def listing() -> None:
            at: str | None = version
            try:
                for failures in itertools.count():
                    try:
                        await self._list(at=at)
                        break
                    except Exception as exc:
                        _failed("list", self.path, exc)
                        at = None  # the version may be compacted by now: the newest, the watch's keys still skipped
                        await asyncio.sleep(backoff(failures, RELIST_BASE_SECONDS, RELIST_MAX_SECONDS))
                self.synced.set()
            finally:
                if self._watched is watched:
                    self._watched = None

        self._listing = asyncio.create_task(listing())
        return version

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            if self._listing is not None:
                self._listing.cancel()

    async def _run(self) -> None:
        version: str | None = None
        failures = 0  # in a row: the relist backs off, so a sick apiserver is not listed in full every second
        while True:
            try:
                if version is None and self.watch_while_listing and not self.synced.is_set():
                    version = await self._list_beside_the_watch()
                elif version is None:
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
            except Exception as exc:
                _failed("watch", self.path, exc)
                version = None
                await asyncio.sleep(backoff(failures, RELIST_BASE_SECONDS, RELIST_MAX_SECONDS))
                failures += 1


def _failed(what: str, path: str, exc: Exception) -> None:
    """One line when the apiserver failed (it restarts, it is overloaded); a traceback for anything else."""
    log.warning("%s of %s failed: %s; listing again", what, path, exc, exc_info=not isinstance(exc, KubeError))
