"""Deletes the receiver's replay markers (api/replay.py) once their pair's timestamp is stale.

A marker is useless then: the signature it names no longer passes. A paged LIST by label every
`SWEEP_EVERY_SECONDS` and a DELETE per expired marker, so a marker lives at most about 10 minutes
(5 of validity and up to one sweep interval).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from urllib.parse import urlencode

from rtc_recording.api.evidence import collection
from rtc_recording.api.names import REPLAY_LABEL, segment
from rtc_recording.api.replay import expired
from rtc_recording.kube.client import Kube
from rtc_recording.kube.errors import KubeError, NotFound

SWEEP_EVERY_SECONDS = 300
log = logging.getLogger(__name__)


class Sweep:
    def __init__(self, kube: Kube, namespace: str, clock: Callable[[], float] = time.time):
        self.kube, self.clock = kube, clock
        self.collection = collection(namespace)

    async def expire(self) -> None:
        query: dict[str, str] = {"labelSelector": REPLAY_LABEL, "limit": "500"}
        while True:
            got = await self.kube.request("GET", f"{self.collection}?{urlencode(query)}")
            for item in got.get("items") or []:
                if expired(item, self.clock()):
                    try:
                        await self.kube.delete(f"{self.collection}/{segment(item['metadata']['name'])}")
                    except NotFound:
                        pass
            if not (token := (got.get("metadata") or {}).get("continue")):
                return
            query["continue"] = token

    async def run(self) -> None:
        while True:
            try:
                await self.expire()
            except KubeError as exc:
                log.warning("could not delete expired replay markers: %s", exc)
            await asyncio.sleep(SWEEP_EVERY_SECONDS)
