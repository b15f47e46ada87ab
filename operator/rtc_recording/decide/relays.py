"""Which relays the operator can vouch for: a task's end and a file's upload only once its own
Describe says so.

The cloud signs the timestamp only, so a body sent with a header pair captured on the wire could
say that a task stopped, or that a file was uploaded to anywhere, and the relay would sign it
with the user's own key. These two events are what a user acts on (a task's end, a file to fetch),
so they are relayed only when status, which the operator writes from the Describe it makes
anyway (the evidence a TaskStopped raises, the poller), shows the same: the task ended, the file
is listed. The other events (created, starting, running, recovering, stopping) say only what
the operator's own status will say after its next look, and are relayed as they come.
"""

from __future__ import annotations

import json
import posixpath
from typing import Any
from urllib.parse import unquote, urlsplit

from rtc_recording.api.recording import TERMINAL, RtcRecordingStatus, status_of
from rtc_recording.decide.classes import effective_spec

CONFIRMED_EVENTS = frozenset({"TaskStopped", "RecordFileUploaded"})


def confirmed(obj: dict, body: dict) -> bool:
    """Does the resource's status (the operator's own Describe) show what the relayed body says?"""
    if body.get("eventType") not in CONFIRMED_EVENTS:
        return True
    status, task = status_of(obj), body.get("taskId")
    if body["eventType"] == "TaskStopped":
        ended = any(h.task_id == task and h.end_time is not None for h in status.history)
        return ended or (status.task_id == task and status.phase in TERMINAL)
    payload = json.loads(body.get("payload") or "{}")
    return _listed(_files_of(status, task), payload) and _at_home(obj, payload)


def _at_home(obj: dict, payload: dict) -> bool:
    """An upload's url, if it has one, is the listed file in the resource's own bucket: a forged body
    could name a listed file and a url anywhere else, which the relay would sign."""
    url = payload.get("url")
    if url is None:
        return True
    pin = (obj.get("status") or {}).get("recordingClass")
    oss = (effective_spec(obj.get("spec") or {}, pin).get("storage") or {}).get("oss") or {}
    path, parts = payload.get("filePath"), urlsplit(str(url))
    if not (oss and path) or parts.scheme.lower() not in ("http", "https") or parts.query or parts.fragment:
        return False
    bucket, endpoint = oss["bucket"], oss["endpoint"]
    host = (parts.hostname or "").lower()
    wanted = f"/{path}" if host == f"{bucket}.{endpoint}" else f"/{bucket}/{path}" if host == endpoint else None
    return unquote(parts.path) == wanted


def _files_of(status: RtcRecordingStatus, task: Any) -> list[dict]:
    found = [h.files for h in status.history if h.task_id == task and h.files]
    if status.task_id == task and status.files is not None:
        found.append(status.files.model_dump(by_alias=True, mode="json"))
    return found


def _listed(files: list[dict], payload: dict) -> bool:
    path, media, fmt = payload.get("filePath"), payload.get("mediaId"), str(payload.get("format", "")).upper()
    for listed in files:
        if media and any(
            media in (v.get("mediaIds") or []) + (v.get("mergedIds") or []) for v in listed.get("vod") or []
        ):
            return True
        if not path:
            continue
        if fmt == "SLICE":  # no Describe lists slices: one is written beside its playlist
            if any(posixpath.dirname(path) == posixpath.dirname(p) for p in listed.get("hls") or []):
                return True
        elif path in (listed.get(fmt.lower()) or []):
            return True
    return False
