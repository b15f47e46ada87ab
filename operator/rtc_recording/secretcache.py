"""Secrets the operator reads (credentials, notify keys), through a short cache.

A read per cloud call would cost one apiserver GET per call; a Secret rotated in place is
picked up within `ttl` seconds instead.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable

from .credentials import CredentialsUnavailable
from .kube import Gone, Kube

TTL_SECONDS = 30.0
MAX_ENTRIES = 1024


class SecretCache:
    def __init__(self, kube: Kube, ttl: float = TTL_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.kube, self.ttl, self.clock = kube, ttl, clock
        self._entries: dict[tuple[str, str], tuple[float, dict[str, str]]] = {}

    async def data(self, namespace: str, name: str) -> dict[str, str]:
        """The Secret's `.data` (base64 values); raises Gone."""
        key, now = (namespace, name), self.clock()
        cached = self._entries.get(key)
        if cached and cached[0] > now:
            return cached[1]
        try:
            data = await self.kube.read_secret(namespace, name)
        except Gone:
            self._entries.pop(key, None)
            raise
        if len(self._entries) >= MAX_ENTRIES:
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
        self._entries[key] = (now + self.ttl, data)
        return data

    async def notify_key(self, obj: dict) -> str | None:
        """The user's own NotifyAuthKey (spec.notify.authKeySecretRef), if any."""
        ref = ((obj.get("spec") or {}).get("notify") or {}).get("authKeySecretRef")
        if not ref:
            return None
        try:
            data = await self.data(obj["metadata"]["namespace"], ref["name"])
        except Gone:
            raise CredentialsUnavailable(f"Secret {ref['name']} (spec.notify.authKeySecretRef) does not exist") from None
        if ref["key"] not in data:
            raise CredentialsUnavailable(f"Secret {ref['name']} has no key {ref['key']!r} (spec.notify.authKeySecretRef)")
        return base64.b64decode(data[ref["key"]]).decode().strip()
