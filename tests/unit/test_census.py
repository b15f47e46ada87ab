"""RtcRecordings by phase and by Synced (controller/census.py): counted at scrape time over the index, and
exported only while the active operator serves /metrics."""

from __future__ import annotations

import asyncio
import urllib.request

from prometheus_client import REGISTRY

from rtc_recording.cluster.launcher import free_port
from rtc_recording.controller import health
from rtc_recording.controller.census import Census
from rtc_recording.controller.index import Index
from rtc_recording.decide.ownership import Sealer


def obj(name: str, phase: str | None = None, synced: str | None = None, deleting: bool = False) -> dict:
    meta = {"namespace": "a", "name": name, "uid": f"uid-{name}", "resourceVersion": "1", "generation": 1}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    status: dict = {"phase": phase} if phase else {}
    if synced:
        status["conditions"] = [
            {"type": "Ready", "status": "True", "reason": "Started", "lastTransitionTime": "2026-01-01T00:00:00Z"},
            {"type": "Synced", "status": synced, "reason": "Updated", "lastTransitionTime": "2026-01-01T00:00:00Z"},
        ]
    return {"metadata": meta, "spec": {}, "status": status}


def samples(census: Census) -> dict[tuple[str, str], float]:
    return {(s.name, next(iter(s.labels.values()))): s.value for family in census.collect() for s in family.samples}


def test_counts_what_the_watch_holds_now():
    index = Index(Sealer(b"k" * 32))
    census = Census(index)
    for o in (
        obj("a", "Recording", "True"),
        obj("b", "Recording", "False"),
        obj("c", "Pending"),
        obj("d"),  # no status yet: no phase, Synced unknown
        obj("e", "Recording", "True", deleting=True),  # going: not counted
        obj("f", "Completed", "Unknown"),
    ):
        index.saw("ADDED", o)
    index.saw("MODIFIED", obj("c", "Recording"))
    index.saw("ADDED", obj("g", "Failed", "False"))
    index.saw("DELETED", obj("g", "Failed", "False"))
    got = samples(census)
    assert got[("rtcrec_recordings", "Recording")] == 3
    assert got[("rtcrec_recordings", "Completed")] == 1
    assert got[("rtcrec_recordings", "Pending")] == 0  # every phase is there, at 0 when none is in it
    assert got[("rtcrec_recordings", "Failed")] == 0
    assert sum(v for (name, _), v in got.items() if name == "rtcrec_recordings") == 4
    assert got[("rtcrec_recordings_synced", "True")] == 1
    assert got[("rtcrec_recordings_synced", "False")] == 1
    assert got[("rtcrec_recordings_synced", "Unknown")] == 3


async def test_exported_while_the_active_operator_serves_metrics_and_not_after():
    index = Index(Sealer(b"k" * 32))
    index.saw("ADDED", obj("a", "Recording"))
    port = free_port()
    probe = health.Health(None, index, None, None, None, 120, [])  # /metrics needs only the index
    serving = asyncio.create_task(health.serve(probe, port))

    def scrape() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            return resp.read().decode()

    text = ""
    for _ in range(100):  # until it listens
        await asyncio.sleep(0.02)
        try:
            text = await asyncio.to_thread(scrape)
            break
        except OSError:
            continue
    assert 'rtcrec_recordings{phase="Recording"} 1.0' in text
    serving.cancel()
    await asyncio.gather(serving, return_exceptions=True)
    assert REGISTRY.get_sample_value("rtcrec_recordings", {"phase": "Recording"}) is None  # as in a standby
