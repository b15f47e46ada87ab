"""One active operator among replicas: a coordination.k8s.io/v1 Lease, held before Kopf starts.

The argument is in docs/ha.md. In short, with D = lease duration, R = renew deadline and
P = retry period (R < D, by at least a second):

- A standby takes the Lease only when it is free (released), names this very replica (a
  container restarted in the same pod: the previous one is dead), or when the standby saw
  no change to it for D seconds of its *own* monotonic clock. No synchronised clocks are
  assumed, only clocks that run at about the same rate: `renewTime` is never compared with
  the local time.
- Every write of the Lease is a compare-and-swap on its resourceVersion: of two standbys
  that take an expired Lease at once, one wins.
- The leader renews every P seconds on a thread and event loop of its own, over a connection
  of its own (`Renewal`): at a restart the operator's loop may run thousands of handlers, and
  a renewal queued behind them would miss the deadline of a replica that is busy, not dead
  (client-go renews on a goroutine of its own for the same reason). A renewal waits for its
  answer up to the deadline: a late answer still renews from when the request was sent. A
  watchdog *thread* ends the process with `os._exit` once R seconds passed since the last
  successful renewal was sent. A standby observed that renewal after it was sent, so it waits
  at least D > R from then: the old leader is gone before the new one acts.
  Losing the Lease to another holder (a conflict on renewal) exits at once too.
- Each write of the Lease by the leader carries `EVENTS_MARK`: every Event pending in a status
  (controller/executor/writes.py) stamped before it was posted. The next leader reads it as it
  takes over and posts again only those stamped later.
- A standby runs nothing of the operator: no Kopf, no watch, no poller, no evidence worker.
  It serves /healthz and /metrics on the metrics port until it leads.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from aiohttp import web
from prometheus_client import Gauge

from rtc_recording.api import timestamps
from rtc_recording.api.names import EVENTS_MARK, segment
from rtc_recording.kube.client import Kube
from rtc_recording.kube.errors import Conflict, NotFound
from rtc_recording.metrics import metrics_response
from rtc_recording.settings import Settings

log = logging.getLogger(__name__)

LOST_EXIT_CODE = 3  # the container restarts, and stands by (or takes its own Lease back)
LEADER = Gauge(
    "rtcrec_leader",
    "1 while this replica holds the operator's Lease (it is the active one; sharded: it is the sharder), else 0.",
)


@dataclass(frozen=True)
class Timing:
    duration: float  # D: a standby takes over after seeing no renewal for this long
    renew_deadline: float  # R: the leader exits when it could not renew for this long
    retry_period: float  # P: how often the leader renews and a standby looks

    @classmethod
    def of(cls, config: Settings) -> Timing:
        return cls(
            config.lease_duration_seconds, config.lease_renew_deadline_seconds, config.lease_retry_period_seconds
        )

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline <= self.duration - 1:
            raise ValueError(f"need 0 < retry period < renew deadline <= lease duration - 1 s, got {self}")


def identity(pod_name: str | None) -> str:
    """The pod's name (stable across container restarts in the pod), else host and a random part."""
    return pod_name or f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def _exit(reason: str) -> NoReturn:
    """Stop acting at once: no cleanup, no handler finishing, no call leaving after this."""
    try:
        log.critical("leadership lost: %s; exiting", reason)
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stderr.flush()
    finally:
        os._exit(LOST_EXIT_CODE)


class Lease:
    def __init__(
        self,
        kube: Kube,
        namespace: str,
        name: str,
        identity: str,
        timing: Timing,
        *,
        on_lost: Callable[[str], object] = _exit,
        clock: Callable[[], float] = time.monotonic,
        labels: dict[str, str] | None = None,
        gauge: Gauge | None = LEADER,
    ):
        self.kube, self.namespace, self.name, self.identity, self.timing = kube, namespace, name, identity, timing
        self.labels = labels or {}  # on the Lease as created (a shard's: its ring, docs/sharding.md)
        self.gauge = gauge  # set to 1 while held (a shard's own Lease: none, docs/sharding.md)
        self.on_lost, self.clock = on_lost, clock
        self.path = f"/apis/coordination.k8s.io/v1/namespaces/{segment(namespace)}/leases/{segment(name)}"
        self.holder: str | None = None  # as last read
        self.last_read = clock()  # when the Lease was last read or written successfully
        self.leading = False
        self.renewed_at = 0.0  # when the last successful renewal (or the acquisition) was sent
        self._lease: dict | None = None  # the object as last read or written
        self._observed: dict | None = None  # its spec, as a standby last saw it change
        self._observed_at = 0.0
        self._expires_in = timing.retry_period  # unless renewed meanwhile, as a standby saw it
        self._watchdog: threading.Thread | None = None
        self._stop = threading.Event()
        self.mark: Callable[[], str] | None = None  # this process's EVENTS_MARK, once it acts
        self.previous_mark = ""  # the EVENTS_MARK of the leader before, as this replica took over

    # -- requests ------------------------------------------------------------------------------
    async def _request(
        self, method: str, path: str, body: dict | None = None, kube: Kube | None = None, timeout: float = 0.0
    ) -> dict:
        # Looking: a request that outlives the retry period is of no use, the next one replaces it.
        timeout = max(timeout, self.timing.retry_period)
        return await asyncio.wait_for((kube or self.kube).request(method, path, json=body), timeout)

    async def _read(self, kube: Kube | None = None) -> dict | None:
        try:
            lease = await self._request("GET", self.path, kube=kube)
        except NotFound:
            lease = None
        self.last_read = self.clock()
        self._lease = lease
        self.holder = ((lease or {}).get("spec") or {}).get("holderIdentity") or None
        return lease

    def _spec(self, transitions: int) -> dict:
        now = timestamps.micro_now()
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": math.ceil(self.timing.duration),
            "acquireTime": now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    # -- standing by ---------------------------------------------------------------------------
    async def try_acquire(self) -> bool:
        """One look at the Lease; take it if it may be taken. True: this replica now leads."""
        lease = await self._read()
        now = self.clock()
        if lease is None:
            sent = self.clock()
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace, "labels": self.labels},
                "spec": self._spec(0),
            }
            try:
                self._lease = await self._request("POST", self.path.rsplit("/", 1)[0], body)
            except Conflict:  # created by another replica meanwhile
                return False
            return self._lead(sent, "created the Lease")
        spec = lease.get("spec") or {}
        self.previous_mark = ((lease.get("metadata") or {}).get("annotations") or {}).get(EVENTS_MARK, "")
        if spec != self._observed:
            self._observed, self._observed_at = spec, now
        holder = spec.get("holderIdentity")
        # Never trust a shorter duration than the holder itself announced (a rolling upgrade
        # may change the setting): its renew deadline is below its own duration.
        duration = max(self.timing.duration, spec.get("leaseDurationSeconds") or 0)
        if holder and holder != self.identity and now - self._observed_at < duration:
            self._expires_in = duration - (now - self._observed_at)
            return False
        why = (
            "took back its own Lease"
            if holder == self.identity
            else f"took over from {holder} (no renewal seen for {now - self._observed_at:.1f} s)"
            if holder
            else "took the released Lease"
        )
        transitions = int(spec.get("leaseTransitions") or 0) + (holder != self.identity)
        sent = self.clock()
        try:
            self._lease = await self._request("PUT", self.path, {**lease, "spec": {**spec, **self._spec(transitions)}})
        except Conflict:  # another replica wrote it first
            return False
        return self._lead(sent, why)

    def _lead(self, sent: float, why: str) -> bool:
        self.renewed_at, self.leading, self.holder = sent, True, self.identity
        self._show(1)
        self._start_watchdog()
        log.info("leading as %s: %s (Lease %s/%s)", self.identity, why, self.namespace, self.name)
        return True

    async def acquire(self) -> None:
        """Stand by until this replica leads."""
        announced = None
        while True:
            try:
                if await self.try_acquire():
                    return
                if self.holder != announced:
                    announced = self.holder
                    log.info(
                        "standing by as %s: the Lease %s/%s is held by %s",
                        self.identity,
                        self.namespace,
                        self.name,
                        self.holder,
                    )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the apiserver is unreachable: keep looking
                log.warning("could not read or take the Lease %s/%s: %s", self.namespace, self.name, exc)
            # Look again after a retry period, or right when the Lease would expire if sooner.
            await asyncio.sleep(min(self.timing.retry_period, max(self._expires_in, 0.01)))
            self._expires_in = self.timing.retry_period

    # -- leading -------------------------------------------------------------------------------
    async def renew(self, kube: Kube | None = None) -> None:
        """One renewal: a compare-and-swap of renewTime. Calls on_lost if another replica holds it."""
        assert self._lease is not None
        sent = self.clock()
        spec = {**self._lease["spec"], "renewTime": timestamps.micro_now(), "holderIdentity": self.identity}
        # A busy apiserver's late answer still renews from when the request was sent: wait for it
        # up to the deadline, as client-go does, rather than give up after a retry period.
        timeout = self.renewed_at + self.timing.renew_deadline - sent
        try:
            self._lease = await self._request(
                "PUT", self.path, self._marked({**self._lease, "spec": spec}), kube, timeout
            )
        except Conflict:  # our last write's answer was lost, or someone else wrote: look
            await self._read(kube)
            if self.holder != self.identity:
                self._lost(f"the Lease is now held by {self.holder}")
            return  # ours still: the next renewal carries the fresh resourceVersion
        except NotFound:
            self._lost("the Lease was deleted")
            return
        self.renewed_at, self.last_read = sent, self.clock()

    async def hold(self, kube: Kube) -> NoReturn:
        """Renew every retry period, for as long as the process leads (on the `Renewal` thread)."""
        while True:
            await asyncio.sleep(self.timing.retry_period)
            try:
                await self.renew(kube)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the watchdog decides when it has been too long
                log.warning(
                    "could not renew the Lease (%.1f s since the last renewal): %s", self.clock() - self.renewed_at, exc
                )

    def _marked(self, lease: dict) -> dict:
        if self.mark is None:
            return lease
        meta = lease.get("metadata") or {}
        annotations = {**(meta.get("annotations") or {}), EVENTS_MARK: self.mark()}
        return {**lease, "metadata": {**meta, "annotations": annotations}}

    def _lost(self, reason: str) -> None:
        if self.leading:
            self.leading = False
            self._show(0)
            self._stop.set()
            self.on_lost(reason)

    def _show(self, value: int) -> None:
        if self.gauge is not None:
            self.gauge.set(value)

    def _start_watchdog(self) -> None:
        self._stop.clear()

        def watch() -> None:
            while not self._stop.wait(0.05):
                late = self.clock() - self.renewed_at
                if self.leading and late > self.timing.renew_deadline:
                    self._lost(f"no renewal for {late:.1f} s (renew deadline {self.timing.renew_deadline} s)")
                    return

        self._watchdog = threading.Thread(target=watch, name="lease-watchdog", daemon=True)
        self._watchdog.start()

    async def release(self) -> None:
        """After the operator stopped acting: let a standby take over at once. Best effort: if it
        fails, the Lease expires."""
        if not self.leading:
            return
        self.leading = False
        self._stop.set()
        self._show(0)
        try:
            await self._read()
            if self._lease is not None and self.holder == self.identity:
                spec = {**self._lease["spec"], "holderIdentity": None, "renewTime": timestamps.micro_now()}
                await self._request("PUT", self.path, self._marked({**self._lease, "spec": spec}))
                log.info("released the Lease %s/%s", self.namespace, self.name)
        except Exception as exc:
            log.warning("could not release the Lease (it expires by itself): %s", exc)


class Renewal:
    """`Lease.hold` on a thread with its own event loop and its own connection to the apiserver,
    from the moment it starts until `stop`. Nothing the operator's loop does can delay it; the GIL
    is handed over every few milliseconds even while that loop computes."""

    def __init__(self, lease: Lease):
        self.kube = Kube(lease.kube.connection)
        self._loop = asyncio.new_event_loop()
        self._holding = self._loop.create_task(lease.hold(self.kube), name="lease renewal")
        self._thread = threading.Thread(target=self._run, name="lease-renewal", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(asyncio.gather(self._holding, return_exceptions=True))
            self._loop.run_until_complete(self.kube.close())
        finally:
            self._loop.close()

    def stop(self) -> None:
        """Stop renewing and wait until no renewal can be sent any more (it blocks: from a loop,
        call it with `asyncio.to_thread`)."""
        self._loop.call_soon_threadsafe(self._holding.cancel)
        self._thread.join()


async def stand_by(lease: Lease, port: int, stuck_seconds: float) -> bool:
    """Wait for leadership, serving /healthz and /metrics meanwhile. False: SIGTERM or SIGINT came
    first (the process should exit without having acted)."""

    async def healthz(_: web.Request) -> web.Response:
        quiet = lease.clock() - lease.last_read
        problems = [f"the Lease was not read for {quiet:.0f} s"] if quiet > stuck_seconds else []
        return web.json_response(
            {"ok": not problems, "problems": problems, "standby": True, "leader": lease.holder},
            status=500 if problems else 200,
        )

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_response)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()
    LEADER.set(0)
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stopped.set)
    acquiring = asyncio.create_task(lease.acquire(), name="lease")
    stopping = asyncio.create_task(stopped.wait())
    try:
        await asyncio.wait([acquiring, stopping], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        stopping.cancel()
        if not acquiring.done():
            acquiring.cancel()
        await asyncio.gather(acquiring, stopping, return_exceptions=True)
        await runner.cleanup()  # the operator's own server takes the port
    if stopped.is_set() or acquiring.cancelled() or acquiring.exception() is not None:
        await lease.release()  # acquired at the last moment? Then give it back unused.
        return False
    return True
