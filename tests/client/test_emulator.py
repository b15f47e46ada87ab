"""The client against the emulator over real loopback HTTP: every verb, every failure, the quota
(`CloudClients.call`: the account's budget and the repeats of the idempotent verbs)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from functools import partial

import pytest

from rtc_recording.api.task import CloudError, Invalid, NotFound, TaskStatus, Throttled, Transient, UnknownOutcome
from rtc_recording.cloud import accounts as clients_module
from rtc_recording.cloud.accounts import Account, CloudClients
from rtc_recording.cloud.aliyun import AliyunRecordingCloud
from rtc_recording.cloud.budget import AccountBudget
from rtc_recording.cloud.credentials import Credentials, StaticCredentials
from rtc_recording.cluster import processes
from rtc_recording.emulator import EmulatorConfig, EmulatorHandle, run_in_thread
from rtc_recording.settings import Settings

from .test_quota import max_in_window

AK = Credentials("LTAI5tEmulatorKey", "emulator-secret")
STS = Credentials("STS.NUEmulatorKey", "sts-secret", "CAIS-sts-token")
APP = "app-1"
BUCKET = "recordings"


def start_params(channel: str = "room-1", app: str = APP, users: tuple[str, ...] = ("alice",)) -> dict:
    return {
        "AppId": app,
        "ChannelId": channel,
        "MaxIdleTime": 300,
        "SubscribeParams": {"SubscribeUserIdList": [{"UserId": user} for user in users]},
        "RecordParams": {"RecordMode": 0},
        "StorageParams": {
            "StorageType": 1,
            "OSSParams": {"OSSEndpoint": "oss-cn-shanghai.aliyuncs.com", "OSSBucket": BUCKET},
            "FileInfo": [{"Format": "HLS"}, {"Format": "MP4"}],
        },
        "NotifyFileUploadedFormat": ["MP4"],
    }


def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(
        access_keys={AK.access_key_id: AK.access_key_secret},
        sts_tokens={STS.access_key_id: (STS.access_key_secret, STS.security_token)},
        apps={APP},
        oss_buckets={BUCKET},
        open_channels=True,
        quota_per_second=50,
    )


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorHandle]:
    with run_in_thread(emulator_config()) as handle:
        yield handle


@pytest.fixture(autouse=True)
def fresh(emulator):
    emulator.control.reset()  # no tasks, no faults, the configured keys and quota


@pytest.fixture
def cloud_for(emulator):
    clients = []

    def make(credentials: Credentials = AK, **kw) -> AliyunRecordingCloud:
        client = AliyunRecordingCloud("cn-shanghai", StaticCredentials(credentials), emulator.url, **kw)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def cloud_clients(emulator):
    made = []

    def make(url: str = emulator.url) -> CloudClients:
        clients = CloudClients(Settings(endpoint=url), kube=None, default=StaticCredentials(AK))
        made.append(clients)
        return clients

    yield make
    for clients in made:
        clients.close()


def unlimited(cloud: AliyunRecordingCloud) -> Account:
    """An account whose budget is out of the way: only the emulator's quota applies."""
    return Account(cloud, AccountBudget(rate=1000))


def longest_pauses(monkeypatch) -> None:
    """CloudClients.call's pauses between tries, at the top of their random ranges."""
    monkeypatch.setattr(clients_module, "backoff", lambda retry, base, cap: min(cap, base * 2**retry))


wait_for = partial(processes.wait_for, timeout=5.0, interval=0.01)


def test_every_verb(emulator, cloud_for):
    cloud = cloud_for()
    task_id = cloud.start(start_params())

    info = cloud.describe(task_id)
    assert (info.task_id, info.status) == (task_id, TaskStatus.RUNNING)

    cloud.update(task_id, {"SubscribeParams": {"SubscribeUserIdList": [{"UserId": "alice"}, {"UserId": "bob"}]}})
    assert [s["userId"] for s in emulator.control.task(task_id)["subscribers"]] == ["alice", "bob"]

    cloud.stop(task_id)
    assert cloud.describe(task_id).status in (TaskStatus.STOPPING, TaskStatus.STOPPED)
    emulator.control.advance(5)
    assert cloud.describe(task_id).status is TaskStatus.STOPPED

    with pytest.raises(NotFound) as caught:  # not running any more: nothing to stop
        cloud.stop(task_id)
    assert caught.value.code == "InvalidParameter.TaskId"
    with pytest.raises(NotFound):
        cloud.update(task_id, {"SubscribeParams": {"SubscribeUserIdList": [{"UserId": "carol"}]}})


def test_unknown_task(cloud_for):
    cloud = cloud_for()
    for call in (cloud.stop, cloud.describe):
        with pytest.raises(NotFound) as caught:
            call("00000000-0000-4000-8000-000000000000")
        assert caught.value.code == "NotFound.Task"


def test_refused_start(emulator, cloud_for):
    with pytest.raises(Invalid) as caught:
        cloud_for().start(start_params(app="no-such-app"))
    assert (caught.value.code, caught.value.http_status) == ("InvalidParameter.AppId", 404)
    assert caught.value.request_id
    assert emulator.control.tasks() == []


@pytest.mark.parametrize(
    ("credentials", "code"),
    [
        (Credentials(AK.access_key_id, "wrong-secret"), "SignatureDoesNotMatch"),
        (Credentials("LTAI5tNobodysKey", "s"), "InvalidAccessKeyId.NotFound"),
        (Credentials(STS.access_key_id, STS.access_key_secret, "forged-token"), "InvalidSecurityToken.Malformed"),
    ],
)
def test_bad_credentials_are_invalid(cloud_for, credentials, code):
    with pytest.raises(Invalid) as caught:
        cloud_for(credentials).describe("any")
    assert caught.value.code == code


def test_sts_credentials(emulator, cloud_for):
    task_id = cloud_for(STS).start(start_params())
    assert emulator.control.task(task_id)["accessKeyId"] == STS.access_key_id


@pytest.mark.parametrize("status", [400, 429])
async def test_throttled_start_is_not_retried(emulator, cloud_for, cloud_clients, status, monkeypatch):
    longest_pauses(monkeypatch)  # a repeat, were there one, would come after the throttling window
    emulator.control.set_faults(quota_per_second=1, throttle_status=status)
    clients = cloud_clients()
    account = unlimited(cloud_for())  # our budget out of the way
    await clients.start(account, start_params("room-1"))
    with pytest.raises(Throttled) as caught:
        await clients.start(account, start_params("room-2"))
    assert (caught.value.code, caught.value.http_status) == ("Throttling.User", status)
    assert len(emulator.control.tasks()) == 1  # refused: safe to start again


async def test_throttled_describe_is_retried(emulator, cloud_for, cloud_clients, monkeypatch):
    longest_pauses(monkeypatch)  # 0.4 s + 0.8 s: the third try is past the emulator's 1 s window
    emulator.control.set_faults(quota_per_second=1)
    clients = cloud_clients()
    account = unlimited(cloud_for())
    task_id = await clients.start(account, start_params())
    with pytest.raises(Throttled):
        account.cloud.describe(task_id)  # one request alone is refused...
    info = await clients.describe(account, task_id)
    assert info.status is TaskStatus.RUNNING  # ...the call is throttled at first, then let through


def test_server_error_on_start_is_transient_and_started_nothing(emulator, cloud_for):
    emulator.control.set_faults(error_rates={"StartRtcCloudRecording": 1.0})
    with pytest.raises(Transient) as caught:
        cloud_for().start(start_params())
    assert caught.value.code in ("InternalError", "ServiceUnavailable") and caught.value.http_status >= 500
    assert emulator.control.tasks() == []


async def test_server_errors_on_describe_are_retried_within_budget(emulator, cloud_clients, monkeypatch):
    monkeypatch.setattr(clients_module, "backoff", lambda retry, base, cap: min(cap, base * 2**retry) / 2)
    clients = cloud_clients()
    account = await clients.account_for({"spec": {}})
    task_id = await clients.start(account, start_params())
    emulator.control.set_faults(error_rates={"DescribeRtcCloudRecordingFiles": 0.3})  # seeded dice
    for _ in range(10):
        assert (await clients.describe(account, task_id)).task_id == task_id
    emulator.control.set_faults(error_rates={"*": 1.0})
    with pytest.raises(Transient) as caught:
        await clients.stop(account, task_id)
    assert caught.value.http_status >= 500
    assert [t["status"] for t in emulator.control.tasks()] == ["RUNNING"]


def test_start_dropped_after_commit_is_an_unknown_outcome(emulator, cloud_for):
    emulator.control.set_faults(drop_start_rate=1.0)
    with pytest.raises(UnknownOutcome) as caught:
        cloud_for().start(start_params())
    assert caught.value.code == "ConnectionLost"
    [task] = emulator.control.tasks()  # the service did start it: only its id was lost
    assert task["status"] == "RUNNING"


def test_start_timing_out_is_an_unknown_outcome(emulator, cloud_for):
    emulator.control.set_faults(latency_seconds=0.4)
    with pytest.raises(UnknownOutcome) as caught:
        cloud_for(read_timeout=0.1).start(start_params())
    assert caught.value.code == "ReadTimeout"
    wait_for(emulator.control.tasks)  # it started after all


def test_describe_timing_out_is_transient(emulator, cloud_for):
    task_id = cloud_for().start(start_params())
    emulator.control.set_faults(latency_seconds=0.3)
    with pytest.raises(Transient) as caught:
        cloud_for(read_timeout=0.1).describe(task_id)
    assert caught.value.code == "ReadTimeout"


@pytest.fixture
def quiet_emulator() -> Iterator[EmulatorHandle]:
    """An emulator of its own: no late request of another test may eat into the quota."""
    with run_in_thread(emulator_config()) as handle:
        yield handle


@pytest.mark.slow
async def test_1000_calls_never_exceed_the_quota(quiet_emulator):
    """About 21 s: 1000 Starts at once through CloudClients.call; the emulator (50 calls/s per
    AccessKey) must throttle nothing."""
    calls = 1000
    clients = CloudClients(
        Settings(endpoint=quiet_emulator.url),
        kube=None,  # defaults: 50/s
        default=StaticCredentials(AK),
    )
    account = await clients.account_for({"spec": {}})

    async def start(n: int) -> CloudError | str:
        try:
            return await clients.start(account, start_params(f"room-{n}"))
        except CloudError as error:
            return error

    started = time.monotonic()
    try:
        results = await asyncio.gather(*(start(n) for n in range(calls)))
    finally:
        clients.close()
    elapsed = time.monotonic() - started

    failures = [result for result in results if isinstance(result, CloudError)]
    assert failures == []
    created = [task["createdAt"] for task in quiet_emulator.control.tasks()]  # the emulator's own clock
    assert len(created) == calls == len(set(results))
    busiest = max_in_window(created, 1.0)
    print(
        f"\n{calls} Starts through CloudClients.call in {elapsed:.2f} s; busiest 1 s window at the "
        f"emulator: {busiest} calls"
    )
    assert busiest <= 50
    assert elapsed < 24  # 20 s at exactly 50/s, plus the latency the budget allows for
