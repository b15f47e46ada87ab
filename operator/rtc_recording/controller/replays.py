"""Deletes the receiver's replay markers (api/replay.py) once their pair's timestamp is stale.

A marker is useless then: the signature it names no longer passes. A paged LIST by label every
`SWEEP_EVERY_SECONDS` and a DELETE per expired marker, so a marker lives at most about 10 minutes
(5 of validity and up to one sweep interval).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rtc_recording.api.evidence import collection
from rtc_recording.api.names import REPLAY_LABEL
from rtc_recording.api.replay import expired
from rtc_recording.controller.sweep import Sweep
from rtc_recording.kube.client import Kube

SWEEP_EVERY_SECONDS = 300


def sweep(kube: Kube, namespace: str, clock: Callable[[], float] = time.time) -> Sweep:
    return Sweep(
        kube,
        collection(namespace),
        REPLAY_LABEL,
        lambda marker: expired(marker, clock()),
        SWEEP_EVERY_SECONDS,
        "replay markers",
    )
