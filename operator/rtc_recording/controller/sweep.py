"""Deleting what has served its time: every `every` seconds, a paged LIST by label and a DELETE for each
object `doomed` picks. The receiver's replay markers (controller/replays.py) and the deletion records
(controller/deletions.py) go this way."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from urllib.parse import urlencode

from rtc_recording.api.names import segment
from rtc_recording.kube.client import Kube
from rtc_recording.kube.errors import KubeError

PAGE = 500
log = logging.getLogger(__name__)


class Sweep:
    def __init__(
        self, kube: Kube, collection: str, label: str, doomed: Callable[[dict], bool], every: float, what: str
    ):
        self.kube, self.collection, self.label, self.doomed = kube, collection, label, doomed
        self.every, self.what = every, what

    async def once(self) -> None:
        query = {"labelSelector": self.label, "limit": str(PAGE)}
        while True:
            got = await self.kube.request("GET", f"{self.collection}?{urlencode(query)}")
            for item in got.get("items") or []:
                if self.doomed(item):
                    await self.kube.delete(f"{self.collection}/{segment(item['metadata']['name'])}")
            if not (token := (got.get("metadata") or {}).get("continue")):
                return
            query["continue"] = token

    async def run(self) -> None:
        while True:
            try:
                await self.once()
            except KubeError as exc:
                log.warning("could not delete expired %s: %s", self.what, exc)
            await asyncio.sleep(self.every)
