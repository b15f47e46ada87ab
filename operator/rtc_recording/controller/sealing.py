"""Sealing at start-up: task ids written before seals existed get one, once per cluster (decide/ownership.py)."""

from __future__ import annotations

import logging
from collections import Counter

from rtc_recording.api import timestamps
from rtc_recording.api.names import segment
from rtc_recording.decide.ownership import VERSION, Sealer
from rtc_recording.kube.client import Kube
from rtc_recording.kube.errors import ApiError, Conflict, NotFound

log = logging.getLogger(__name__)
MARKER = "rtcrec-task-seals"  # ConfigMap in the operator's namespace: legacy objects were sealed


async def migrate(kube: Kube, sealer: Sealer, namespaces: list[str], marker_namespace: str) -> None:
    """Seal the task ids written before seals existed, once per cluster (see decide/ownership.py)."""
    if await _first_start(kube, marker_namespace):
        await _seal(kube, sealer, await kube.list_recordings(namespaces))


async def _first_start(kube: Kube, namespace: str) -> bool:
    """Is this the first start since seals exist? The marker is created first: sealing happens during
    one start-up at most, even if this one dies half-way."""
    marker = f"/api/v1/namespaces/{segment(namespace)}/configmaps"
    try:
        await kube.request("GET", f"{marker}/{MARKER}")
        return False
    except NotFound:
        pass
    try:
        await kube.create(
            marker,
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": MARKER, "namespace": namespace},
                "data": {"version": VERSION, "at": timestamps.now()},
            },
        )
    except Conflict:
        return False
    except ApiError:  # an answer; no answer at all fails the start-up, which then tries again
        log.error(
            "cannot create ConfigMap %s/%s, so task ids written before seals existed are not sealed "
            "(the operator refuses to act on them)",
            namespace,
            MARKER,
            exc_info=True,
        )
        return False
    return True


async def _seal(kube: Kube, sealer: Sealer, items: list[dict]) -> None:
    """Seal every unsealed task id that exactly one resource claims."""
    claims = Counter((i.get("status") or {}).get("taskId") for i in items)
    sealed = twice = 0
    for item in items:
        status, meta = item.get("status") or {}, item["metadata"]
        task_id = status.get("taskId")
        if not task_id or status.get("taskSeal"):
            continue
        if claims[task_id] > 1:
            twice += 1
            log.warning(
                "%s/%s: task %s is claimed by %d resources; not sealed",
                meta["namespace"],
                meta["name"],
                task_id,
                claims[task_id],
            )
            continue
        try:
            await kube.patch_status(
                meta["namespace"],
                meta["name"],
                sealer.sealed(item, {"taskId": task_id}),
                resource_version=meta["resourceVersion"],
                uid=meta["uid"],
            )
            sealed += 1
        except (Conflict, NotFound):
            log.warning("%s/%s changed while sealing its task; not sealed", meta["namespace"], meta["name"])
    log.info("sealed %d task ids written before seals existed; %d claimed twice were not", sealed, twice)
