"""The receiver process: its watch of the RtcRecordings, its HTTP servers (callbacks and health; metrics
on a port of its own), and their start and stop."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from rtc_recording import metrics
from rtc_recording.api.names import recording_path
from rtc_recording.kube.client import Kube
from rtc_recording.kube.config import Connection
from rtc_recording.kube.reflector import Reflector
from rtc_recording.receiver.server import Receiver
from rtc_recording.settings import Settings


async def app(config: Settings, auth_key: str) -> web.Application:
    kube = Kube(Connection.load())
    receiver = Receiver(
        kube,
        auth_key,
        config.evidence_namespace,
        read_timeout=config.receiver_read_timeout_seconds,
        # A deferred start callback is decided well before the operator stops waiting for a lost answer.
        defer_seconds=config.unknown_outcome_grace_seconds / 3,
    )
    paths = [recording_path(ns) for ns in config.namespaces] or [recording_path(None)]
    # Pages of 25: the receiver's peak is the page it parses (full objects, managedFields and all). Its RSS at
    # 10 000, measured: 25 give 59.2 MB, 10 would give 58.2 MB for half again the CPU of the list (BENCHMARKS.md).
    reflectors = [Reflector(kube, path, receiver.on_change, page_size=25) for path in paths]
    receiver.ready = lambda: all(r.synced.is_set() for r in reflectors)
    watches = [asyncio.create_task(r.run()) for r in reflectors]
    application = receiver.app()
    scraped = await metrics.serve(config.receiver_metrics_port)

    async def close(_: web.Application) -> None:
        await receiver.drain()  # callbacks answered but still being decided: the watch still runs
        for watch in watches:
            watch.cancel()
        await asyncio.gather(*watches, return_exceptions=True)
        await kube.close()
        await scraped.cleanup()

    application.on_cleanup.append(close)
    return application


def run(config: Settings, auth_key: str) -> None:
    """Serve callbacks until SIGINT/SIGTERM (settings were validated by the caller, the key required)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # keepalive_timeout also bounds how long a connection may take to send its first request's
    # headers (aiohttp arms it when the connection opens): slow clients are dropped.
    web.run_app(
        app(config, auth_key),
        host="0.0.0.0",
        port=config.receiver_port,
        access_log=None,
        print=None,
        keepalive_timeout=config.receiver_read_timeout_seconds,
    )
