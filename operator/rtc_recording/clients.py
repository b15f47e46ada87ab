"""Cloud clients per (region, credentials), built from a resource's spec and Secret.

One client, and so one pooled HTTP session, per region and AccessKey; one quota limiter
per AccessKey for the whole process, because the quota belongs to the account.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from .aliyun import AliyunRecordingCloud
from .cloud import RecordingCloud
from .credentials import CredentialsProvider, DefaultChainCredentials, StaticCredentials
from .kube import Gone, Kube
from .quota import QuotaRegistry
from .settings import Settings

DEFAULT_IDENTITY = "default"  # the pod's own credentials chain


class CloudClients:
    def __init__(self, settings: Settings, kube: Kube, default: CredentialsProvider | None = None):
        self.settings, self.kube = settings, kube
        self.default = default or DefaultChainCredentials()
        self.quotas = QuotaRegistry(rate=settings.quota_per_second)
        self.executor = ThreadPoolExecutor(settings.cloud_threads, thread_name_prefix="cloud")
        self._clients: dict[tuple[str, str], AliyunRecordingCloud] = {}
        self._by_secret: dict[tuple[str, str, str], AliyunRecordingCloud] = {}

    async def run(self, call: Callable[..., Any], *args: Any) -> Any:
        """Blocking cloud calls run in our own, sized pool: never on the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, call, *args)

    async def for_recording(self, obj: dict) -> RecordingCloud:
        spec = obj.get("spec") or {}
        region = spec.get("region") or self.settings.default_region
        secret = (spec.get("credentialsSecretRef") or {}).get("name")
        if secret:
            try:
                data = await self.kube.read_secret(obj["metadata"]["namespace"], secret)
            except Gone:
                # Deleting a namespace deletes the Secret and the RtcRecording in no set order:
                # the last client made with it can still stop the task.
                if known := self._by_secret.get((obj["metadata"]["namespace"], secret, region)):
                    return known
                raise
            provider: CredentialsProvider = StaticCredentials.from_secret_data(data)
            account = base64.b64decode(data["accessKeyId"]).decode().strip()
            # A rotated Secret gets a new client; the quota stays with the account.
            identity = hashlib.sha256(repr(sorted(data.items())).encode()).hexdigest()
        else:
            provider, account, identity = self.default, DEFAULT_IDENTITY, DEFAULT_IDENTITY
        key = (region, identity)
        if key not in self._clients:
            self._clients[key] = AliyunRecordingCloud(
                region, provider, self.quotas.limiter(account), self.settings.endpoint,
                connect_timeout=self.settings.connect_timeout_seconds,
                read_timeout=self.settings.read_timeout_seconds)
        if secret:
            self._by_secret[(obj["metadata"]["namespace"], secret, region)] = self._clients[key]
        return self._clients[key]

    async def user_notify_key(self, obj: dict) -> str | None:
        ref = ((obj.get("spec") or {}).get("notify") or {}).get("authKeySecretRef")
        if not ref:
            return None
        data = await self.kube.read_secret(obj["metadata"]["namespace"], ref["name"])
        if ref["key"] not in data:
            raise ValueError(f"Secret {ref['name']} has no key {ref['key']!r} (spec.notify.authKeySecretRef)")
        return base64.b64decode(data[ref["key"]]).decode().strip()

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
