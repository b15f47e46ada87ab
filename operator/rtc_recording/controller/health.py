"""/healthz that notices a stalled operator, and /metrics for Prometheus (with the census.py counts).

"The process is up" is not health. The probe fails when, for `stuck_seconds`:
- an object the watch has shown us waits for its handler (a new object, a spec change, a
  deletion, or the resume of every object at start-up: a start-up that has not finished
  in that time counts);
- the watch has fallen behind the apiserver (checked by a list, only after a quiet spell);
- the poller stopped ticking;
- calls wait for the quota while none is let through.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web
from prometheus_client import REGISTRY

from rtc_recording.cloud.budget import Budgets
from rtc_recording.controller.census import Census
from rtc_recording.controller.dispatch import Dispatcher
from rtc_recording.controller.index import Index
from rtc_recording.controller.poller import Poller
from rtc_recording.kube.client import Kube
from rtc_recording.metrics import metrics_response


class Health:
    def __init__(
        self,
        kube: Kube,
        index: Index,
        poller: Poller,
        dispatcher: Dispatcher,
        budgets: Budgets,
        stuck_seconds: float,
        namespaces: list[str],
        clock=time.monotonic,
        selector: str | None = None,
    ):
        self.kube, self.index, self.poller, self.dispatcher, self.budgets = kube, index, poller, dispatcher, budgets
        self.stuck, self.clock = stuck_seconds, clock
        self.namespaces = namespaces  # empty: cluster-wide; else a namespaced install may list only these
        self.selector = selector  # sharded: the shard's label (only its objects are in the index)
        self._listed = clock()

    async def problems(self) -> list[str]:
        now, found = self.clock(), []
        late = self.dispatcher.late(self.stuck)
        if late:
            found.append(
                f"{len(late)} objects wait for a handler for more than {self.stuck:.0f} s, "
                f"e.g. {late[0][0]}/{late[0][1]}"
            )
        if now - self.poller.last_tick > self.stuck:
            found.append(f"poller has not ticked for {now - self.poller.last_tick:.0f} s")
        for account, budget in self.budgets.all().items():
            if budget.waiting and now - budget.last_granted > self.stuck:
                found.append(
                    f"{budget.waiting} calls wait for the quota of {account!r}, none granted for "
                    f"{now - budget.last_granted:.0f} s"
                )
        if now - self.index.last_event > self.stuck and now - self._listed > self.stuck:
            # A quiet watch is fine only if nothing changed: compare with the apiserver, at most
            # once per stuck period (a list of 10 000 objects is not free).
            self._listed = now
            items = await self.kube.list_recordings(self.namespaces, label_selector=self.selector)
            behind = [
                f"{i['metadata']['namespace']}/{i['metadata']['name']}"
                for i in items
                if getattr(
                    self.index.objects.get((i["metadata"]["namespace"], i["metadata"]["name"])),
                    "resource_version",
                    None,
                )
                != i["metadata"]["resourceVersion"]
            ]
            if behind:
                found.append(f"watch is behind the apiserver for {len(behind)} objects, e.g. {behind[0]}")
            else:
                self.index.last_event = now
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
    census = Census(health.index)
    REGISTRY.register(census)
    try:
        await asyncio.Event().wait()  # until cancelled at cleanup
    finally:
        await runner.cleanup()
        REGISTRY.unregister(census)
