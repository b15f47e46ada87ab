"""The callback contract between a Start, the cloud and the receiver.

Every Start attempt gets its own NotifyUrl (`notify_url`: the path names the resource and the
attempt) and its own NotifyAuthKey (`path_key`, derived from the receiver's key and that path).
The cloud signs each callback with ALI-LIVE-TIMESTAMP and ALI-LIVE-SIGNATURE; the receiver checks
them (`signature_ok`) and the operator signs relays to a user's own URL the same way
(`callback_headers`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping

from rtc_recording.api.keys import derive_key


def notify_url(base: str, namespace: str, name: str, uid: str, attempt: int) -> str:
    """The receiver's URL for one Start attempt: the path correlates a callback with it."""
    return f"{base.rstrip('/')}/callbacks/{namespace}/{name}/{uid}/{attempt}"


MAX_CLOCK_SKEW_S = 300


def signature_ok(headers: Mapping[str, str], auth_key: str, now: float) -> bool:
    """ALI-LIVE-SIGNATURE = md5("<ALI-LIVE-TIMESTAMP>|<key>"); it does not cover the body, so
    stale timestamps are refused too."""
    timestamp, signature = headers.get("ALI-LIVE-TIMESTAMP", ""), headers.get("ALI-LIVE-SIGNATURE", "")
    if not re.fullmatch(r"[0-9]{1,12}", timestamp) or not re.fullmatch(r"[0-9A-Fa-f]{32}", signature):
        return False
    if abs(now - int(timestamp)) > MAX_CLOCK_SKEW_S:
        return False
    return hmac.compare_digest(callback_headers(auth_key, int(timestamp))["ALI-LIVE-SIGNATURE"], signature.lower())


def path_key(auth_key: str, namespace: str, name: str, uid: str, attempt: int) -> str:
    """The NotifyAuthKey of one Start attempt: derived from the receiver's key and the callback
    path, so a captured signature is worth nothing on any other path (32 hex digits: the
    vendor's 16-64 letters and digits)."""
    info = f"rtcrec callback path v1\0{namespace}\0{name}\0{uid}\0{attempt}".encode()
    return derive_key(auth_key, info).hex()[:32]


def callback_headers(auth_key: str | None, now: float) -> dict[str, str]:
    if not auth_key:
        return {}
    timestamp = str(int(now))
    return {
        "ALI-LIVE-TIMESTAMP": timestamp,
        "ALI-LIVE-SIGNATURE": hashlib.md5(f"{timestamp}|{auth_key}".encode()).hexdigest(),
    }
