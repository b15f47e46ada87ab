"""The Kopf wiring, and the only module that imports kopf. Kopf logs in, runs the start-up and the
cleanup, and watches the schedules. The RtcRecordings are the operator's own watch (operator.py):
which object needs a handler, and when, is the dispatcher's (dispatch.py). Kopf's create, resume,
update and delete handlers cost a status write per change handled and its per-object machinery for
every object, and its watch delivers what changes during a start-up only after the whole list
(docs/scale.md)."""

from __future__ import annotations

import asyncio
import ctypes
import logging

import kopf

from rtc_recording.api.names import GROUP, RING_LABEL, SCHEDULE_PLURAL, VERSION
from rtc_recording.controller import leader
from rtc_recording.controller.operator import Operator
from rtc_recording.kube.client import Kube
from rtc_recording.kube.config import Connection
from rtc_recording.settings import Settings

SCHEDULES = (GROUP, VERSION, SCHEDULE_PLURAL)
M_ARENA_MAX = -8  # mallopt(3)
log = logging.getLogger(__name__)


@kopf.on.login()
async def login(**_) -> kopf.ConnectionInfo:
    # Kopf's own session (the schedules' watch), whose pool has no limit.
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
    # No create, update or delete handlers: Kopf keeps no state in the objects and adds no
    # finalizer (its configured one, left at Kopf's default, is one no RtcRecording carries).
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.posting.level = logging.WARNING  # we post one Event per transition ourselves
    settings.scanning.disabled = True  # the CRD is installed up front: no RBAC on CRDs needed
    # The schedules' watch: an idle worker exits after half a second instead of five, and where the
    # apiserver streams lists (1.34+) the start-up needs no LIST of them.
    settings.queueing.idle_timeout = 0.5
    kube = Kube(Connection.load())
    settings.watching.initial_streaming = await kube.streams_lists(config.namespaces)
    if not settings.watching.initial_streaming:
        settings.watching.chunk_size = 500
    lease: leader.Lease = memo.lease
    memo.operator = await Operator.build(config, kube, lease.previous_mark)
    lease.mark = memo.operator.executor.writes.posted_before
    memo.operator.start()


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_) -> None:
    await memo.operator.close()


class NoDiffBase(kopf.DiffBaseStorage):
    """Kopf builds every object's diff-base essence (a deep copy of the whole body) at every watch
    event even where no handler compares one: a tenth of the operator's CPU on a Start. None is
    built, read or kept."""

    def build(self, *, body: kopf.Body, extra_fields=None) -> kopf.BodyEssence:  # type: ignore[no-untyped-def]
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        pass


@kopf.on.event(*SCHEDULES)
async def schedule_watched(event: kopf.RawEvent, memo: kopf.Memo, **_) -> None:
    """RtcRecordingSchedules: only a wake-up time each, in one heap (scheduler.py); no handler state.
    Sharded, a shard keeps only its own: a cluster has hundreds of schedules, not the recordings' 10 000s."""
    op: Operator = memo.operator
    obj: dict = event["object"]  # type: ignore[assignment]  # a RawBody is the object as the watch sent it
    gone = op.shard is not None and op.shard.leaving(obj)
    op.scheduler.saw("DELETED" if gone else event["type"], obj)


def run(config: Settings) -> None:
    """Run the operator until SIGINT/SIGTERM (settings were validated by the caller)."""
    _two_malloc_arenas()
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
    Kopf's peering, keeps the other replicas out; docs/ha.md). Sharded, the Lease is the shard's own,
    named after it: it acts at once, on its share (docs/sharding.md)."""
    kube = Kube(Connection.load())
    timing = leader.Timing.of(config)
    identity = leader.identity(config.pod_name)
    if config.sharding:
        ring = {RING_LABEL: config.lease_name}
        lease = leader.Lease(kube, config.lease_namespace, identity, identity, timing, labels=ring, gauge=None)
    else:
        lease = leader.Lease(kube, config.lease_namespace, config.lease_name, identity, timing)
    try:
        if not await leader.stand_by(lease, config.metrics_port, config.stuck_seconds):
            return
        # A thread of its own: a restart's thousands of handlers must not delay a renewal (leader.py).
        renewal = leader.Renewal(lease)
        memo = kopf.Memo(config=config, lease=lease)
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
            if not config.sharding:  # a shard keeps its Lease: its pod comes back under its name, nothing moves
                await lease.release()
    finally:
        await kube.close()


def _two_malloc_arenas() -> None:
    """glibc gives threads that allocate arenas of their own, up to 8 per core: the 32 cloud threads
    kept a fragmented heap each. Two serve them as well (the GIL lets one thread run at a time)."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, 2)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune
