"""Secrets the operator reads (credentials, notify keys): by consent, through a short cache.

Only a Secret that opts in is used: it carries the label `rtc.recording.io/usage` with the
value `credentials` (spec.credentialsSecretRef: accessKeyId, accessKeySecret, securityToken)
or `notify-key` (spec.notify.authKeySecretRef). Anyone who may create an RtcRecording could
otherwise make the operator use any Secret of the namespace: bill any AccessKey found there,
or sign callbacks to their own URL with a database password, recovering it offline. A Secret
that is missing and one that did not opt in are refused with the same words, so a refusal
tells nothing about Secrets the user may not read; the keys of a Secret are named only once
it has opted in.

A read per cloud call would cost one apiserver GET per call; a Secret rotated in place is
picked up within `ttl` seconds instead.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Callable

from rtc_recording.api.names import USAGE_LABEL
from rtc_recording.cloud.credentials import CredentialsUnavailable
from rtc_recording.kube.client import Kube
from rtc_recording.kube.errors import ApiError, NotFound

TTL_SECONDS = 30.0
MAX_ENTRIES = 1024
CREDENTIALS, NOTIFY_KEY = "credentials", "notify-key"
NOTIFY_KEY_FORMAT = re.compile(r"[A-Za-z0-9]{16,64}")


class SecretUnavailable(CredentialsUnavailable):
    """A Secret the operator may not use: missing, or not labelled for this use."""

    def __init__(self, message: str, gone: bool):
        super().__init__(message)
        self.gone = gone  # for the operator's own decisions only; never part of the message


def refusal(name: str, field: str, usage: str) -> str:
    return (
        f"Secret {name!r} ({field}) is not available to the operator: it uses only Secrets in the resource's "
        f"namespace labelled {USAGE_LABEL}={usage}"
    )


class SecretCache:
    def __init__(self, kube: Kube, ttl: float = TTL_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.kube, self.ttl, self.clock = kube, ttl, clock
        self._entries: dict[tuple[str, str], tuple[float, dict]] = {}

    async def secret(self, namespace: str, name: str) -> dict:
        """The whole Secret as last read (within `ttl`); raises NotFound."""
        key, now = (namespace, name), self.clock()
        cached = self._entries.get(key)
        if cached and cached[0] > now:
            return cached[1]
        try:
            secret = await self.kube.get_secret(namespace, name)
        except NotFound:
            self._entries.pop(key, None)
            raise
        self.remember(secret)
        return secret

    def remember(self, secret: dict) -> None:
        now, meta = self.clock(), secret["metadata"]
        if len(self._entries) >= MAX_ENTRIES:
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
        self._entries[(meta["namespace"], meta["name"])] = (now + self.ttl, secret)

    def forget(self, namespace: str, name: str) -> None:
        self._entries.pop((namespace, name), None)

    async def consented(self, namespace: str, name: str, field: str, usage: str) -> dict:
        """The Secret if it exists and opted in to `usage`; else SecretUnavailable."""
        try:
            secret = await self.secret(namespace, name)
        except NotFound:
            raise SecretUnavailable(refusal(name, field, usage), gone=True) from None
        except ValueError:  # `.` or `..`: no Secret's name (api/names.py segment)
            raise SecretUnavailable(refusal(name, field, usage), gone=False) from None
        except ApiError as exc:
            if exc.status != 403:
                raise
            # The operator's own RBAC (a watchNamespaces release): said in status, not retried blind.
            raise SecretUnavailable(
                f"the operator may not read Secrets in namespace {namespace!r} ({field}): its RBAC does not "
                "allow it (chart values watchNamespaces, classCredentialsNamespaces)",
                gone=False,
            ) from None
        if ((secret.get("metadata") or {}).get("labels") or {}).get(USAGE_LABEL) != usage:
            self.forget(namespace, name)  # read afresh next time: its owner may be adding the label now
            raise SecretUnavailable(refusal(name, field, usage), gone=False)
        return secret

    async def credentials(self, namespace: str, name: str) -> dict[str, str]:
        """`.data` (base64 values) of a credentials Secret named by spec.credentialsSecretRef."""
        return (await self.consented(namespace, name, "spec.credentialsSecretRef", CREDENTIALS)).get("data") or {}

    async def notify_key(self, obj: dict) -> str | None:
        """The user's own NotifyAuthKey (spec.notify.authKeySecretRef), if any, checked: 16 to 64
        letters and digits (the vendor's rule), whether it is sent to the cloud or signs a relay."""
        ref = ((obj.get("spec") or {}).get("notify") or {}).get("authKeySecretRef")
        if not ref:
            return None
        field = "spec.notify.authKeySecretRef"
        data = (await self.consented(obj["metadata"]["namespace"], ref["name"], field, NOTIFY_KEY)).get("data") or {}
        if ref["key"] not in data:
            raise CredentialsUnavailable(f"Secret {ref['name']!r} has no key {ref['key']!r} ({field})")
        try:
            value = base64.b64decode(data[ref["key"]], validate=True).decode().strip()
        except (binascii.Error, UnicodeDecodeError):
            value = ""
        if not NOTIFY_KEY_FORMAT.fullmatch(value):  # never say what it is instead
            raise CredentialsUnavailable(
                f"the value of key {ref['key']!r} of Secret {ref['name']!r} ({field}) is "
                "not 16 to 64 letters and digits"
            )
        return value
