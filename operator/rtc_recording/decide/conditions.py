"""metav1.Conditions of the kinds whose whole conditions list the operator owns (schedules, classes),
as plain dicts: the same shape the RtcRecording's carry (patches.py), which kstatus (Flux), Argo CD
and `kubectl wait --for=condition=Ready` read."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rtc_recording.api.timestamps import stamp

State = tuple[bool, str, str]  # status, reason, message


def conditions(
    old: list[dict[str, Any]] | None, states: dict[str, State], generation: int, now: datetime
) -> list[dict]:
    """Exactly the conditions `states` (type -> state); lastTransitionTime moves only when a status
    changes, so the same states give the same list (and the caller's compare writes nothing)."""
    before = {c.get("type"): c for c in old or []}
    out = []
    for type_, (state, reason, message) in sorted(states.items()):
        value = "True" if state else "False"
        previous = before.get(type_)
        since = previous["lastTransitionTime"] if previous and previous.get("status") == value else stamp(now)
        out.append(condition(type_, value, reason, message, generation, since))
    return out


def condition(type_: str, value: str, reason: str, message: str, generation: int, since: str) -> dict[str, Any]:
    """One metav1.Condition, as every kind's status carries it."""
    return {
        "type": type_,
        "status": value,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": since,
    }


def ready_and_stalled(ready: bool, reason: str, message: str, stalled: bool = False) -> dict[str, State]:
    """Ready, and Stalled for what waits on a person: kstatus reads Ready=False as in progress, and
    Stalled=True as failed."""
    return {"Ready": (ready, reason, message), "Stalled": (stalled, reason, message if stalled else "")}
