"""/healthz that notices a stuck watch, poller or quota queue, and /metrics for Prometheus.

"The process is up" is not health: the probe fails when the watch has fallen behind the
apiserver, when the poller loop stopped ticking, or when calls wait for the quota while
none has been let through for `stuck_seconds`.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from .kube import Kube
from .metrics import metrics_response
from .poller import Poller
from .quota import QuotaRegistry


class Health:
    def __init__(self, kube: Kube, poller: Poller, quotas: QuotaRegistry, stuck_seconds: float,
                 namespaces: list[str], clock=time.monotonic):
        self.kube, self.poller, self.quotas, self.stuck, self.clock = kube, poller, quotas, stuck_seconds, clock
        self.namespaces = namespaces  # empty: cluster-wide; else a namespaced install may list only these
        self.last_event = clock()
        self._seen: dict[tuple[str, str], str] = {}

    def saw(self, obj: dict) -> None:
        self.last_event = self.clock()
        meta = obj["metadata"]
        key = (meta["namespace"], meta["name"])
        if meta.get("deletionTimestamp"):
            self._seen.pop(key, None)  # an indexer never sees the final DELETED event
        else:
            self._seen[key] = meta["resourceVersion"]

    async def problems(self) -> list[str]:
        now, found = self.clock(), []
        if now - self.poller.last_tick > self.stuck:
            found.append(f"poller has not ticked for {now - self.poller.last_tick:.0f} s")
        for account, limiter in self.quotas.limiters().items():
            if limiter.waiting and now - limiter.last_granted > self.stuck:
                found.append(f"{limiter.waiting} calls wait for the quota of {account!r}, none granted for "
                             f"{now - limiter.last_granted:.0f} s")
        if now - self.last_event > self.stuck:
            # A quiet watch is fine only if nothing changed: compare with the apiserver.
            items = await self.kube.list_recordings(self.namespaces)
            behind = [f"{i['metadata']['namespace']}/{i['metadata']['name']}" for i in items
                      if not i["metadata"].get("deletionTimestamp")  # not tracked once deleting
                      and self._seen.get((i["metadata"]["namespace"], i["metadata"]["name"]))
                      != i["metadata"]["resourceVersion"]]
            if behind:
                found.append(f"watch is behind the apiserver for {len(behind)} objects, e.g. {behind[0]}")
            else:
                self.last_event = now
        return found


async def serve(health: Health, port: int) -> None:
    async def healthz(_: web.Request) -> web.Response:
        problems = await health.problems()
        return web.json_response({"ok": not problems, "problems": problems}, status=500 if problems else 200)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_response)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()
    try:
        await asyncio.Event().wait()  # until cancelled at cleanup
    finally:
        await runner.cleanup()
