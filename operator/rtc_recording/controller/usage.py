"""Recorded seconds per namespace (`rtcrec_recorded_seconds_total`): what the bill is made of.

A task counts once, as it ends, from its start to its end as status says them, at one of the two
places where the operator itself learns that it ended:
- the status write that moves it to status.history (Completed, Failed, Suspended): a
  compare-and-swap guarded by the task being current and not yet ended, so it lands once,
  whichever replica makes it and however often it restarts;
- a Stop of a live task (Recording, Recovering, Stopping) for a deletion: its resource goes,
  so no history is written. Only a Stop the cloud answered counts: the one sent again after a
  restart finds the task gone (NotFound) and counts nothing.
A crash between such a write or Stop and the count loses that one task's seconds, rather than
counting them twice. Not counted: a task left running (deletionPolicy Orphan, or abandoned
with its namespace) and a task without a known start.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rtc_recording import metrics
from rtc_recording.api.recording import LIVE, status_of
from rtc_recording.api.timestamps import parse
from rtc_recording.decide.patches import task_start


def written(namespace: str, patch: dict[str, Any] | None) -> None:
    """A status patch that landed: one that moves a task to history counts its seconds."""
    if patch and patch.get("history"):
        ended = patch["history"][-1]  # the task that ended (patches.history_with)
        if ended.get("startTime") and ended.get("endTime"):
            _count(namespace, parse(ended["startTime"]), parse(ended["endTime"]))


def stopped(obj: dict, now: datetime) -> None:
    """The cloud stopped a task of `obj` for its deletion."""
    status = status_of(obj)
    if status.phase in LIVE and (start := task_start(status)):
        _count(obj["metadata"]["namespace"], start, now)


def _count(namespace: str, start: datetime, end: datetime) -> None:
    metrics.RECORDED_SECONDS.labels(namespace=namespace).inc(max((end - start).total_seconds(), 0))
