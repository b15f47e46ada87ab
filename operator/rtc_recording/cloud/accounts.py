"""Every cloud call the operator makes goes through `CloudClients`: start, update, stop, describe.

- One client, and so one pooled HTTP session, per region and AccessKey (a bounded pool).
- One budget per account, for the whole process: the quota belongs to the account, and
  the operator is the only process that calls the cloud (docs/quota.md). Stop goes before
  Start before Update before Describe.
- A Start attempt is recorded (`before_send`) only once its quota slot is granted, right
  before the request leaves: a crash while queued leaves no attempt that looks sent.
- While the cloud does not answer, calls wait for it instead of piling up (`reachability`),
  and one probe every few seconds finds out when it is back.
- Describe, Update and Stop repeat a Throttled or Transient failure a few times, each try a
  new slot of the budget; a Start is never repeated here.
- Credentials Secrets are read through a short cache (`cloud/secrets.py`), not once per call, and
  only if they opted in (label rtc.recording.io/usage=credentials).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from rtc_recording.api.task import CloudError, TaskInfo, Throttled, Transient
from rtc_recording.cloud.aliyun import AliyunRecordingCloud
from rtc_recording.cloud.budget import AccountBudget, Budgets, Priority
from rtc_recording.cloud.circuit import Reachability
from rtc_recording.cloud.credentials import (
    CredentialsProvider,
    CredentialsUnavailable,
    DefaultChainCredentials,
    StaticCredentials,
)
from rtc_recording.cloud.port import RecordingCloud
from rtc_recording.cloud.secrets import SecretCache, SecretUnavailable
from rtc_recording.decide.backoff import backoff
from rtc_recording.decide.classes import account_fields
from rtc_recording.kube.client import Kube
from rtc_recording.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_IDENTITY = "default"  # the pod's own credentials chain
IDEMPOTENT_TRIES = 3
MAX_CLIENTS = 64  # distinct (region, AccessKey) pairs kept; an evicted one is rebuilt on demand
WAIT_FOR_CLOUD_SECONDS = 30.0  # a caller waits this long for an unreachable cloud, then retries later
PROBE_SECONDS = 2.0
PROBE_TASK_ID = "00000000-0000-0000-0000-000000000000"  # Describe of no task: any answer means "up"


@dataclass(frozen=True)
class Account:
    """A cloud client and the budget its calls spend."""

    cloud: RecordingCloud
    budget: AccountBudget


class CloudUnreachable(Transient):
    """Not sent: the cloud has not answered recently and did not come back in time."""


class CloudClients:
    def __init__(
        self,
        settings: Settings,
        kube: Kube,
        default: CredentialsProvider | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.settings, self.kube, self.clock = settings, kube, clock
        self.default = default or DefaultChainCredentials()
        self.budgets = Budgets(rate=settings.quota_per_second, waiting_share=settings.waiting_quota_share)
        self.reachability = Reachability()
        self.threads = ThreadPoolExecutor(settings.cloud_threads, thread_name_prefix="cloud")
        self._clients: OrderedDict[tuple[str, str], Account] = OrderedDict()
        self._by_secret: dict[tuple[str, str, str], Account] = {}
        self.secrets = SecretCache(kube)
        self._last_unanswered: Account | None = None

    # -- which account ----------------------------------------------------------------------
    async def account_for(self, obj: dict) -> Account:
        """The client and budget of a resource (its region and credentials Secret), or the
        operator's own. Raises CredentialsUnavailable when a named Secret is unusable."""
        # The resource's own region and Secret, else those of the class its task was started from.
        region, namespace, secret = account_fields(obj)
        region = region or self.settings.default_region
        if not secret:
            return self._client(region, DEFAULT_IDENTITY, DEFAULT_IDENTITY, self.default)
        namespace = namespace or obj["metadata"]["namespace"]
        try:
            data = await self.secrets.credentials(namespace, secret)  # only a Secret that opted in
        except SecretUnavailable as exc:
            # A Secret deleted while its task runs (see controller/pins.py): the last client made
            # with it can still stop it.
            if exc.gone and (known := self._by_secret.get((namespace, secret, region))):
                return known
            raise
        provider = StaticCredentials.from_secret_data(data)
        # A rotated Secret gets a new client; the quota stays with the account.
        identity = hashlib.sha256(repr(sorted(data.items())).encode()).hexdigest()
        account = self._client(region, identity, provider.credentials.access_key_id, provider)
        self._by_secret[(namespace, secret, region)] = account
        return account

    def _client(self, region: str, identity: str, account: str, provider: CredentialsProvider) -> Account:
        key = (region, identity)
        if key in self._clients:
            self._clients.move_to_end(key)
            return self._clients[key]
        client = Account(
            AliyunRecordingCloud(
                region,
                provider,
                self.settings.endpoint,
                connect_timeout=self.settings.connect_timeout_seconds,
                read_timeout=self.settings.read_timeout_seconds,
            ),
            self.budgets.of(account),
        )
        self._clients[key] = client
        if len(self._clients) > MAX_CLIENTS:
            _, evicted = self._clients.popitem(last=False)
            self._by_secret = {k: v for k, v in self._by_secret.items() if v is not evicted}
            evicted.cloud.close()  # type: ignore[attr-defined]
        return client

    # -- calling ---------------------------------------------------------------------------
    async def start(
        self,
        account: Account,
        params: Mapping[str, Any],
        before_send: Callable[[], Awaitable[None]] | None = None,
        priority: Priority = Priority.START,
    ) -> str:
        """StartRtcCloudRecording, never repeated here. `before_send` runs once the quota slot is
        granted, just before the request leaves (the write-ahead)."""
        task_id: str = await self._call(account, priority, account.cloud.start, (params,), before_send, tries=1)
        return task_id

    async def update(self, account: Account, task_id: str, params: Mapping[str, Any]) -> None:
        await self._call(account, Priority.UPDATE, account.cloud.update, (task_id, params))

    async def stop(self, account: Account, task_id: str) -> None:
        await self._call(account, Priority.STOP, account.cloud.stop, (task_id,))

    async def describe(self, account: Account, task_id: str) -> TaskInfo:
        info: TaskInfo = await self._call(account, Priority.DESCRIBE, account.cloud.describe, (task_id,))
        return info

    async def _call(
        self,
        account: Account,
        priority: Priority,
        verb: Callable[..., Any],
        args: tuple,
        before_send: Callable[[], Awaitable[None]] | None = None,
        tries: int = IDEMPOTENT_TRIES,
    ) -> Any:
        """One cloud call within the account's budget; a Throttled or Transient failure is tried again
        (up to `tries`), each try a new slot of the budget."""
        for attempt in range(1, tries + 1):
            if not self.reachability.up and not await self.reachability.wait_up(WAIT_FOR_CLOUD_SECONDS):
                raise CloudUnreachable("CloudUnreachable", "the cloud has not answered recently; not sent")
            try:
                return await self._send(account, priority, verb, args, before_send)
            except (Throttled, Transient) as exc:
                if attempt == tries or not self.reachability.up:
                    raise
                log.info("%s failed (%s), try %d of %d", verb.__name__, exc, attempt + 1, tries)
                await asyncio.sleep(backoff(attempt, 0.2, 1.0))  # 0.2-0.4 s, then 0.4-0.8 s
        raise AssertionError("unreachable")

    async def _send(
        self,
        account: Account,
        priority: Priority,
        verb: Callable[..., Any],
        args: tuple,
        before_send: Callable[[], Awaitable[None]] | None,
    ) -> Any:
        slot, sent = await account.budget.acquire(priority), False
        try:
            if before_send is not None:
                await before_send()
            sent = True
            account.budget.sending(slot)
            result = await asyncio.get_running_loop().run_in_executor(self.threads, verb, *args)
        except CredentialsUnavailable:
            account.budget.answered(slot)  # nothing was sent
            raise
        except CloudError as exc:
            if exc.http_status is not None or exc.code == "ConnectFailed":
                account.budget.answered(slot)  # answered, or certainly never arrived
            if exc.http_status is None or exc.http_status >= 500:
                self._last_unanswered = account
                self.reachability.unanswered()
            else:
                self.reachability.answered()
            raise
        except BaseException:
            if not sent:  # before_send failed, or we were cancelled before sending
                account.budget.answered(slot)
            raise
        account.budget.answered(slot)
        self.reachability.answered()
        return result

    async def probe(self) -> None:
        """While the cloud is held to be down, ask it something cheap every few seconds."""
        while True:
            await asyncio.sleep(PROBE_SECONDS)
            if self.reachability.up or self._last_unanswered is None:
                continue
            try:
                probed = self._last_unanswered
                await self._send(probed, Priority.DESCRIBE, probed.cloud.describe, (PROBE_TASK_ID,), None)
            except (CloudError, CredentialsUnavailable):
                pass  # an answer of any kind has closed the circuit; no answer keeps it open

    def close(self) -> None:
        for account in self._clients.values():
            account.cloud.close()  # type: ignore[attr-defined]
        self.threads.shutdown(wait=False, cancel_futures=True)
