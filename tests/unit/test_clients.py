"""CloudClients.call with a fake cloud: the budget's priorities, before_send, repeats, reachability."""

from __future__ import annotations

import asyncio
import time

import pytest

from rtc_recording.api.task import CloudError, Invalid, NotFound, Throttled, Transient, UnknownOutcome
from rtc_recording.cloud import accounts as clients_module
from rtc_recording.cloud.accounts import PROBE_TASK_ID, Account, CloudClients, CloudUnreachable
from rtc_recording.cloud.budget import AccountBudget, Priority
from rtc_recording.cloud.credentials import Credentials, CredentialsUnavailable, StaticCredentials
from rtc_recording.settings import Settings

OK = object()


class FakeCloud:
    """A RecordingCloud whose answers are scripted per verb: an exception to raise or a value
    to return, in turn; `OK` once the script is used up. Records every request it was sent."""

    def __init__(self, events: list[str] | None = None, **script: list) -> None:
        self.script = {verb: list(outcomes) for verb, outcomes in script.items()}
        self.sent: list[tuple[str, tuple]] = []
        self.events = events if events is not None else []

    def _answer(self, verb: str, *args):
        self.sent.append((verb, args))
        self.events.append(verb)
        outcomes = self.script.get(verb) or []
        outcome = outcomes.pop(0) if outcomes else OK
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def start(self, params):
        return self._answer("start", params)

    def stop(self, task_id):
        return self._answer("stop", task_id)

    def update(self, task_id, params):
        return self._answer("update", task_id, params)

    def describe(self, task_id):
        return self._answer("describe", task_id)

    def close(self) -> None:
        pass


class CountingBudget(AccountBudget):
    """Records the priority of every slot acquired, and the slots."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.priorities: list[Priority] = []
        self.slots = []

    async def acquire(self, priority):
        slot = await super().acquire(priority)
        self.priorities.append(priority)
        self.slots.append(slot)
        return slot


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


async def settle(predicate, timeout: float = 5.0) -> None:
    """Let the event loop run until `predicate()` holds (a guard against hanging, not a timing)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.001)


@pytest.fixture
def clients():
    made = CloudClients(
        Settings(endpoint="http://127.0.0.1:1"),
        kube=None,
        default=StaticCredentials(Credentials("LTAI-default", "secret")),
    )
    yield made
    made.close()


@pytest.fixture(autouse=True)
def no_pauses(monkeypatch) -> list[tuple[int, float, float]]:
    """The pauses between tries (decisions.backoff's arguments): recorded, not slept."""
    drawn: list[tuple[int, float, float]] = []

    def backoff(retry: int, base: float, cap: float) -> float:
        drawn.append((retry, base, cap))
        return 0.0

    monkeypatch.setattr(clients_module, "backoff", backoff)
    return drawn


def account(cloud: FakeCloud, **budget) -> Account:
    budget.setdefault("rate", 1000)
    return Account(cloud, CountingBudget(**budget))


# -- the budget ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("verb", "args", "priority"),
    [
        ("stop", ("t",), Priority.STOP),
        ("start", ({"AppId": "a"},), Priority.START),
        ("update", ("t", {}), Priority.UPDATE),
        ("describe", ("t",), Priority.DESCRIBE),
    ],
)
async def test_each_verb_spends_a_slot_of_its_priority(clients, verb, args, priority):
    fake = FakeCloud()
    acc = account(fake)
    answer = await getattr(clients, verb)(acc, *args)
    assert answer is (OK if verb in ("start", "describe") else None)  # Stop and Update answer nothing
    assert fake.sent == [(verb, args)]
    assert acc.budget.priorities == [priority]
    assert acc.budget.slots[0].answered is not None


async def test_a_queued_stop_is_sent_before_queued_describes(clients):
    clock = FakeClock()
    fake = FakeCloud()
    acc = account(fake, rate=1, window=0.01, max_transit=0.0, clock=clock)
    acc.budget.sending(await acc.budget.acquire(Priority.DESCRIBE))  # the budget is spent until the clock moves
    calls = []
    for verb in ("describe", "describe", "stop"):
        calls.append(asyncio.create_task(getattr(clients, verb)(acc, verb)))
        depth = len(calls)
        await settle(lambda depth=depth: acc.budget.waiting == depth)
    for step in range(1, 4):
        clock.t = step
        await settle(lambda step=step: len(fake.sent) == step)
    await asyncio.gather(*calls)
    assert [verb for verb, _ in fake.sent] == ["stop", "describe", "describe"]


# -- before_send ---------------------------------------------------------------------------


async def test_before_send_runs_after_the_grant_and_before_the_request(clients):
    clock = FakeClock()
    events: list[str] = []
    fake = FakeCloud(events, start=["task-1"])
    acc = account(fake, rate=1, window=0.01, max_transit=0.0, clock=clock)
    acc.budget.sending(await acc.budget.acquire(Priority.DESCRIBE))  # the budget is spent until the clock moves

    async def before_send() -> None:
        events.append("before_send")

    call = asyncio.create_task(clients.start(acc, {"AppId": "a"}, before_send=before_send))
    await settle(lambda: acc.budget.waiting == 1)
    await asyncio.sleep(0.05)  # queued calls do nothing, however long they wait
    assert events == []
    clock.t = 1.0
    assert await asyncio.wait_for(call, 5) == "task-1"
    assert events == ["before_send", "start"]
    assert acc.budget.slots[-1].sent == 1.0  # counted from when it left, not from its grant


async def test_a_failing_before_send_sends_nothing_and_releases_the_slot(clients):
    clock = FakeClock()
    fake = FakeCloud()
    # An unanswered slot would hold the budget for max_transit (100 s); an answered one a window.
    acc = account(fake, rate=1, window=0.01, max_transit=100.0, clock=clock)

    async def before_send() -> None:
        raise RuntimeError("the write-ahead failed")

    with pytest.raises(RuntimeError, match="write-ahead"):
        await clients.start(acc, {"AppId": "a"}, before_send=before_send)
    assert fake.sent == []
    assert acc.budget.slots[0].answered == 0.0  # released at once
    assert len(acc.budget.slots) == 1  # not repeated
    clock.t = 0.01
    await asyncio.wait_for(acc.budget.acquire(Priority.START), 5)  # the next call goes a window later
    assert clients.reachability.up


# -- repeats -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        Transient("InternalError", http_status=500),
        Transient("ConnectFailed"),
        Throttled("Throttling.User", http_status=429),
        UnknownOutcome("ReadTimeout"),
    ],
)
async def test_start_is_never_retried(clients, no_pauses, error):
    fake = FakeCloud(start=[error, "task-1"])
    with pytest.raises(type(error)):
        await clients.start(account(fake), {"AppId": "a"})
    assert len(fake.sent) == 1 and no_pauses == []


@pytest.mark.parametrize("verb", ["describe", "update", "stop"])
async def test_idempotent_verbs_are_retried_up_to_three_tries(clients, no_pauses, verb):
    args = ("t", {}) if verb == "update" else ("t",)
    fake = FakeCloud(
        **{verb: [Transient("InternalError", http_status=500), Throttled("Throttling.User", http_status=429), "answer"]}
    )
    acc = account(fake)
    await getattr(clients, verb)(acc, *args)
    assert len(fake.sent) == 3 and len(no_pauses) == 2
    assert len(acc.budget.slots) == 3  # each try spends a slot of its own

    fake = FakeCloud(**{verb: [Throttled("Throttling.User", http_status=429)] * 5})
    with pytest.raises(Throttled):
        await getattr(clients, verb)(account(fake), *args)
    assert len(fake.sent) == clients_module.IDEMPOTENT_TRIES == 3


async def test_describe_is_retried_on_transient_up_to_three_tries(clients):
    fake = FakeCloud(describe=[Transient("ConnectionLost")] * 5)
    with pytest.raises(Transient, match="ConnectionLost"):
        await clients.describe(account(fake), "t")
    assert len(fake.sent) == 3


@pytest.mark.parametrize(
    "error",
    [
        Invalid("InvalidParameter.AppId", http_status=400),
        NotFound("NotFound.Task", http_status=404),
        CredentialsUnavailable("no credentials"),
        ValueError("bug"),
    ],
)
async def test_what_repeating_cannot_fix_is_not_repeated(clients, no_pauses, error):
    fake = FakeCloud(describe=[error])
    acc = account(fake)
    with pytest.raises(type(error)):
        await clients.describe(acc, "t")
    assert len(fake.sent) == 1 and no_pauses == []
    assert clients.reachability.up


async def test_credentials_unavailable_is_raised_as_is_and_releases_the_slot(clients):
    fake = FakeCloud(stop=[CredentialsUnavailable("Secret s has no accessKeyId")])
    acc = account(fake)
    with pytest.raises(CredentialsUnavailable, match="accessKeyId") as caught:
        await clients.stop(acc, "t")
    assert not isinstance(caught.value, CloudError)
    assert acc.budget.slots[0].answered is not None


# -- reachability ----------------------------------------------------------------------------


UNANSWERED = [
    UnknownOutcome("ReadTimeout"),
    Transient("InternalError", http_status=500),
    UnknownOutcome("HTTP502", http_status=502),
]


async def fail_starts(clients: CloudClients, acc: Account, errors: list[CloudError]) -> None:
    acc.cloud.script["start"] = list(errors)
    for error in errors:
        with pytest.raises(type(error)):
            await clients.start(acc, {"AppId": "a"})


async def test_the_cloud_is_down_after_three_unanswered_calls_in_a_row(clients, monkeypatch):
    monkeypatch.setattr(clients_module, "WAIT_FOR_CLOUD_SECONDS", 0.05)
    fake = FakeCloud()
    acc = account(fake)
    await fail_starts(clients, acc, UNANSWERED[:2])
    assert clients.reachability.up
    await fail_starts(clients, acc, [Invalid("InvalidParameter.AppId", http_status=400)])  # an answer
    await fail_starts(clients, acc, UNANSWERED[:2])
    assert clients.reachability.up  # the count started again after the answer
    await fail_starts(clients, acc, UNANSWERED[2:])
    assert not clients.reachability.up
    sent = len(fake.sent)
    for verb, args in (("describe", ("t",)), ("stop", ("t",)), ("start", ({"AppId": "a"},))):
        with pytest.raises(CloudUnreachable):
            await getattr(clients, verb)(acc, *args)
    assert len(fake.sent) == sent  # nothing sent while it is down
    assert issubclass(CloudUnreachable, Transient)  # callers retry later


async def test_a_describe_that_times_out_three_times_opens_the_circuit(clients):
    fake = FakeCloud(describe=[Transient("ReadTimeout")] * 3)
    with pytest.raises(Transient, match="ReadTimeout"):
        await clients.describe(account(fake), "t")
    assert len(fake.sent) == 3
    assert not clients.reachability.up


@pytest.mark.parametrize(
    "answer",
    [
        NotFound("NotFound.Task", http_status=400),
        Invalid("InvalidAccessKeyId.NotFound", http_status=404),
        Throttled("Throttling.User", http_status=429),
    ],
)
async def test_any_answer_to_the_probe_brings_the_cloud_back(clients, monkeypatch, answer):
    monkeypatch.setattr(clients_module, "PROBE_SECONDS", 0.01)
    fake = FakeCloud()
    acc = account(fake)
    await fail_starts(clients, acc, UNANSWERED)
    assert not clients.reachability.up and clients.reachability.since is None
    # The first probe gets no answer either: still down. The second is answered.
    fake.script["describe"] = [Transient("ReadTimeout"), answer]
    waiting = asyncio.create_task(clients.stop(acc, "task-1"))  # waits for the cloud
    probe = asyncio.create_task(clients.probe())
    try:
        assert await clients.reachability.wait_up(5)
        await asyncio.wait_for(waiting, 5)
    finally:
        probe.cancel()
    assert fake.sent[3:] == [("describe", (PROBE_TASK_ID,)), ("describe", (PROBE_TASK_ID,)), ("stop", ("task-1",))]
    assert clients.reachability.since is not None


async def test_the_probe_sends_nothing_while_the_cloud_is_up(clients, monkeypatch):
    monkeypatch.setattr(clients_module, "PROBE_SECONDS", 0.001)
    fake = FakeCloud()
    await fail_starts(clients, account(fake), UNANSWERED[:2])
    probe = asyncio.create_task(clients.probe())
    await asyncio.sleep(0.05)
    probe.cancel()
    assert [verb for verb, _ in fake.sent] == ["start", "start"]


# -- accounts ---------------------------------------------------------------------------------


async def test_the_default_account_is_one_client_and_its_budget_is_shared_across_regions(clients):
    a = await clients.account_for({"spec": {}})
    assert await clients.account_for({"spec": {"region": "cn-shanghai"}}) is a
    b = await clients.account_for({"spec": {"region": "us-east-1"}})
    assert b.cloud is not a.cloud and b.budget is a.budget
