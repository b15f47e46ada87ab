"""The Kopf wiring, and the only module that imports kopf. Each handler is a few lines:
parse, delegate to the Recorder (or the Poller), translate "retry later" for Kopf."""

from __future__ import annotations

import asyncio
import logging

import kopf

from . import health, metrics
from .clients import CloudClients
from .kube import GROUP, PLURAL, VERSION, Connection, Kube
from .poller import Poller
from .recorder import Recorder, RetryLater
from .settings import Settings

RESOURCE = (GROUP, VERSION, PLURAL)
FINALIZER = f"{GROUP}/stop-task"


@kopf.on.login()
def login(**_) -> kopf.ConnectionInfo:
    c = Connection.load()
    return kopf.ConnectionInfo(server=c.server, ca_path=c.ca_path, token=c.bearer(), insecure=c.insecure,
                               certificate_path=c.cert_path, private_key_path=c.key_path,
                               default_namespace=c.namespace)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_) -> None:
    config: Settings = memo.config
    # Kopf's progress and diff-base live in status: one atomic /status PATCH per cycle, and no
    # annotation writes on the object users own. Never change this: objects would look new.
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf.progress")
    settings.persistence.diffbase_storage = kopf.StatusDiffBaseStorage(field="status.kopf.lastHandled")
    settings.persistence.finalizer = FINALIZER
    settings.posting.level = logging.WARNING  # we post one Event per transition ourselves
    settings.scanning.disabled = True  # the CRD is installed up front: no RBAC on CRDs needed
    memo.kube = Kube(Connection.load())
    memo.clients = CloudClients(config, memo.kube)
    memo.recorder = Recorder(memo.kube, memo.clients.for_recording, memo.clients.run, config,
                             memo.clients.user_notify_key)
    interval = config.poll_interval_seconds * (config.poll_factor_with_callbacks if config.callback_url else 1)
    memo.poller = Poller(memo.recorder.observe, interval, config.poll_calls_per_second)
    memo.phases = metrics.PhaseCount()
    memo.health = health.Health(memo.kube, memo.poller, memo.clients.quotas, config.stuck_seconds,
                                config.namespaces)
    memo.tasks = [asyncio.create_task(memo.poller.run(), name="poller"),
                  asyncio.create_task(health.serve(memo.health, config.metrics_port), name="metrics")]


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_) -> None:
    for task in memo.tasks:
        task.cancel()
    await asyncio.gather(*memo.tasks, return_exceptions=True)
    memo.clients.close()
    await memo.kube.close()


@kopf.on.create(*RESOURCE)
@kopf.on.resume(*RESOURCE)
@kopf.on.update(*RESOURCE, field="spec")
async def reconcile(body: kopf.Body, retry: int, memo: kopf.Memo, **_) -> None:
    try:
        await memo.recorder.reconcile(_plain(body), retry)
    except RetryLater as exc:
        raise kopf.TemporaryError(str(exc), delay=exc.delay) from exc


@kopf.on.delete(*RESOURCE)
async def stop(body: kopf.Body, retry: int, memo: kopf.Memo, **_) -> None:
    try:
        await memo.recorder.delete(_plain(body), retry)
    except RetryLater as exc:
        raise kopf.TemporaryError(str(exc), delay=exc.delay) from exc


@kopf.index(*RESOURCE)
def watched(body: kopf.Body, memo: kopf.Memo, **_) -> None:
    """Feeds the poller and the liveness probe from every change. An indexer, not on.event:
    it sees the same changes without a log line per event, and Kopf starts the other
    handlers only once it has seen every object."""
    obj = _plain(body)
    memo.health.saw(obj)
    memo.poller.track(obj)
    meta = obj["metadata"]
    # An indexer never sees the final DELETED event: a deleting object counts as gone already.
    deleting = bool(meta.get("deletionTimestamp"))
    memo.phases.set((meta["namespace"], meta["name"]), None if deleting else (obj.get("status") or {}).get("phase"))
    return None  # nothing to index: the side effects are the point


def _plain(body: kopf.Body) -> dict:
    return {key: body[key] for key in body}


def run(config: Settings) -> None:
    """Run the operator until SIGINT/SIGTERM (settings were validated by the caller)."""
    # JSON lines carry the object reference on every line logged for an object.
    kopf.configure(log_format=kopf.LogFormat.JSON if config.log_format == "json" else kopf.LogFormat.FULL,
                   log_refkey="object")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # the vendor credentials chain's chatter
    # Standalone: one active replica (the chart's Deployment uses the Recreate strategy).
    kopf.run(standalone=True, clusterwide=not config.namespaces, namespaces=config.namespaces,
             memo=kopf.Memo(config=config))
