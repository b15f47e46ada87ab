"""The Kopf wiring, and the only module that imports kopf. Each handler is a few lines:
parse, delegate to the executor (or the Poller), translate "retry later" for Kopf."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, cast

import kopf

from rtc_recording.api.names import GROUP, PLURAL, SCHEDULE_PLURAL, STOP_FINALIZER, VERSION
from rtc_recording.api.recording import TERMINAL
from rtc_recording.controller import gate, leader
from rtc_recording.controller.executor import RetryLater
from rtc_recording.controller.operator import Operator
from rtc_recording.decide.actions import at_rest
from rtc_recording.kube.client import Kube
from rtc_recording.kube.config import Connection
from rtc_recording.kube.errors import ApiError
from rtc_recording.settings import Settings

RESOURCE = (GROUP, VERSION, PLURAL)
SCHEDULES = (GROUP, VERSION, SCHEDULE_PLURAL)
log = logging.getLogger(__name__)


@kopf.on.login()
async def login(**_) -> kopf.ConnectionInfo:
    # Kopf's own session, whose pool has no limit. A bounded one (34) starved Kopf, for a cause not
    # yet found: 54 of 1000 pre-created resources never got their finalizer (BENCHMARKS.md (f)).
    c = Connection.load()
    return kopf.ConnectionInfo(
        server=c.server,
        ca_path=c.ca_path,
        token=await c.bearer(),
        insecure=c.insecure,
        certificate_path=c.cert_path,
        private_key_path=c.key_path,
        default_namespace=c.namespace,
    )


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_) -> None:
    config: Settings = memo.config
    # Kopf's progress and diff-base live in status: one atomic /status PATCH per cycle, and no
    # annotation writes on the object users own. Never change this: objects would look new.
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf.progress")
    settings.persistence.diffbase_storage = SlimDiffBase(field="status.kopf.lastHandled")
    settings.persistence.finalizer = STOP_FINALIZER
    settings.posting.level = logging.WARNING  # we post one Event per transition ourselves
    settings.scanning.disabled = True  # the CRD is installed up front: no RBAC on CRDs needed
    # Memory at 10 000 objects (docs/scale.md): an idle worker exits after half a second instead
    # of five, and where the apiserver streams lists (1.34+) the start-up needs no LIST at all.
    settings.queueing.idle_timeout = 0.5
    kube = Kube(Connection.load())
    settings.watching.initial_streaming = await kube.streams_lists(config.namespaces)
    if not settings.watching.initial_streaming:
        settings.watching.chunk_size = 500
    memo.operator = await Operator.build(config, kube)
    memo.operator.start()


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_) -> None:
    await memo.operator.close()


class SlimDiffBase(kopf.StatusDiffBaseStorage):
    """Kopf's diff-base in status, built from what it keeps (spec, labels, annotations): Kopf
    deep-copies the whole body, status and managedFields included, only to drop them, which was a
    fifth of a 10 000-object restart's CPU. The essence is the same: no handler names a status
    field or other metadata."""

    def build(self, *, body: kopf.Body, extra_fields=None) -> kopf.BodyEssence:  # type: ignore[no-untyped-def]
        meta = body.get("metadata", {})
        slim = {key: value for key, value in body.items() if key not in ("metadata", "status")}
        slim["metadata"] = {key: meta[key] for key in ("labels", "annotations") if key in meta}
        return super().build(body=slim, extra_fields=extra_fields)  # type: ignore[arg-type]


@kopf.on.event(*RESOURCE)
async def watched(event: kopf.RawEvent, memo: kopf.Memo, **_) -> None:
    """Every change feeds the index, the poller and the liveness probe. No handler state is
    kept for it, and no readiness gate: an index (`@kopf.index`) would hold every handler
    until all objects were listed, at a cost that grows with their square (docs/scale.md)."""
    op: Operator = memo.operator
    obj = cast(dict, event["object"])  # a dict on the wire already: no copy per watch event
    tracked = op.index.saw(event["type"], obj)
    meta = obj["metadata"]
    key = (meta["namespace"], meta["name"])
    op.health.saw(tracked, key, at_rest=tracked is not None and at_rest(obj))
    op.scheduler.poke(obj)  # a schedule's run: its schedule decides again
    if tracked is None:
        op.poller.forget(key)
        op.deadlines.set(key, None)
        op.refused.pop(meta["uid"], None)
        op.executor.ctx.waiting.forget(meta["uid"])
    elif tracked.task_id and not op.index.proven(tracked):
        op.poller.forget(key)  # not ours to describe (decide/ownership.py); said once, here
        op.deadlines.track(tracked)  # a TTL still deletes it; a halt refuses to stop that task
        if not tracked.deleting and op.refused.get(tracked.uid) != tracked.task_id:
            op.refused[tracked.uid] = tracked.task_id
            op.background(op.executor.refuse_unproven(_plain(obj)))
    else:
        op.poller.track(tracked)
        op.deadlines.track(tracked)
    # A credentials Secret whose last unfinished recording finished or went is released (pins.py).
    if unused := op.pins.saw(meta["uid"], tracked, op.index.tombstones.get(meta["uid"])):
        op.background(op.pins.release(*unused))


@kopf.on.event(*SCHEDULES)
async def schedule_watched(event: kopf.RawEvent, memo: kopf.Memo, **_) -> None:
    """RtcRecordingSchedules: only a wake-up time each, in one heap (scheduler.py); no handler state."""
    memo.operator.scheduler.saw(event["type"], event["object"])


@kopf.on.create(*RESOURCE)
@kopf.on.resume(*RESOURCE, when=lambda body, **_: not at_rest(body))  # a restart costs nothing for those
@kopf.on.update(*RESOURCE, field="spec")
async def reconcile(body: kopf.Body, retry: int, reason: str, memo: kopf.Memo, **_) -> None:
    op: Operator = memo.operator
    obj = _plain(body)
    op.health.handling(obj)
    async with op.gate.slot(gate.fresh(obj, op.started, updated=reason == kopf.Reason.UPDATE)):
        await _reconcile(obj, retry, op)


async def _reconcile(obj: dict, retry: int, op: Operator) -> None:
    try:
        if (obj.get("status") or {}).get("phase") not in TERMINAL:
            await op.pins.pin(obj)  # before any Start: the Stop will need these credentials (pins.py)
    except ApiError as exc:
        log.warning(
            "could not mark the credentials Secret of %s/%s in use: %s",
            obj["metadata"]["namespace"],
            obj["metadata"]["name"],
            exc,
        )
    try:
        await op.executor.reconcile(obj, retry)
    except RetryLater as exc:
        raise kopf.TemporaryError(str(exc), delay=exc.delay) from exc


@kopf.on.delete(*RESOURCE)
async def stop(body: kopf.Body, retry: int, memo: kopf.Memo, **_) -> None:
    op: Operator = memo.operator
    obj = _plain(body)
    op.health.handling(obj)
    try:
        async with op.gate.slot(gate.fresh(obj, op.started, updated=False)):
            await op.executor.delete(obj, retry)
    except RetryLater as exc:
        raise kopf.TemporaryError(str(exc), delay=exc.delay) from exc
    secret = ((obj.get("spec") or {}).get("credentialsSecretRef") or {}).get("name")
    await op.pins.release(obj["metadata"]["namespace"], secret, but=obj["metadata"]["uid"])


def _plain(body: Mapping[str, Any]) -> dict:
    return {key: body[key] for key in body}


def run(config: Settings) -> None:
    """Run the operator until SIGINT/SIGTERM (settings were validated by the caller)."""
    # JSON lines carry the object reference on every line logged for an object.
    kopf.configure(
        log_format=kopf.LogFormat.JSON if config.log_format == "json" else kopf.LogFormat.FULL, log_refkey="object"
    )
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # the vendor credentials chain's chatter
    # Kopf logs every handler call at INFO: one line per watch event at 10 000 objects. Our own
    # log line per transition (rtc_recording.*) tells the story; Kopf's warnings still show.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    try:
        asyncio.run(_run(config))
    except asyncio.CancelledError:
        pass


async def _run(config: Settings) -> None:
    """Stand by until this replica holds the Lease, then run Kopf (standalone: the Lease, not
    Kopf's peering, keeps the other replicas out; docs/ha.md)."""
    kube = Kube(Connection.load())
    lease = leader.Lease(
        kube,
        config.lease_namespace,
        config.lease_name,
        leader.identity(config.pod_name),
        leader.Timing(
            config.lease_duration_seconds, config.lease_renew_deadline_seconds, config.lease_retry_period_seconds
        ),
    )
    try:
        if not await leader.stand_by(lease, config.metrics_port, config.stuck_seconds):
            return
        # A thread of its own: a restart's thousands of handlers must not delay a renewal (leader.py).
        renewal = leader.Renewal(lease)
        memo = kopf.Memo(config=config)
        try:
            await kopf.operator(
                standalone=True, clusterwide=not config.namespaces, namespaces=config.namespaces, memo=memo
            )
        finally:
            # Kopf has stopped; cloud calls already handed to threads may still be sent. Only
            # when none can leave any more may a standby take over (the Lease is renewed meanwhile).
            if (op := getattr(memo, "operator", None)) is not None:
                await asyncio.to_thread(op.clients.threads.shutdown, wait=True, cancel_futures=True)
            await asyncio.to_thread(renewal.stop)
            await lease.release()
    finally:
        await kube.close()
