"""Tasks belong to the account whose key started them: another account cannot see them."""

from __future__ import annotations

from typing import Any

import pytest
from alibabacloud_tea_openapi.exceptions import ClientException
from emulator_samples import APP, CHANNEL, individual

from conftest import SIGNATURES, Sdk, sdk_client, vendor_error
from rtc_recording.emulator import EmulatorHandle

OTHER = ("AK2", "secret2")


def not_found(call: Any) -> None:
    error = vendor_error(call)
    assert isinstance(error, ClientException)
    assert (error.code, error.status_code) == ("NotFound.Task", 400)  # as for an id that never existed
    assert {"RequestId", "Code", "Message"} <= set(error.data)


@pytest.fixture
def two_accounts(start_emulator: Any) -> EmulatorHandle:
    emulator = start_emulator(access_keys={"AK1": "secret1", "AK2": "secret2"}, accounts={"AK2": "acct-2"})
    emulator.control.join(APP, CHANNEL, "alice")
    return emulator


@pytest.mark.parametrize("algorithm", SIGNATURES)
def test_another_accounts_task_is_unknown_to_it(two_accounts: EmulatorHandle, algorithm: str | None) -> None:
    owner = Sdk(sdk_client(two_accounts, algorithm))
    other = Sdk(sdk_client(two_accounts, algorithm, key=OTHER))
    task_id = owner.start(individual())
    update = {"TaskId": task_id, "SubscribeParams": {"SubscribeUserIdList": [{"UserId": "bob"}]}}

    not_found(lambda: other.describe(task_id))
    not_found(lambda: other.update(update))
    not_found(lambda: other.stop(task_id))
    task = two_accounts.control.task(task_id)
    assert (task["status"], task["updates"], task["account"]) == ("RUNNING", 0, "default")

    owner.stop(task_id)
    not_found(lambda: other.stop(task_id))  # not InvalidParameter.TaskId: that would tell it exists
    two_accounts.control.advance(1)
    assert owner.describe(task_id).task_info.status == "STOPPED"
    not_found(lambda: other.describe(task_id))


def test_keys_of_one_account_share_its_tasks(two_accounts: EmulatorHandle) -> None:
    task_id = Sdk(sdk_client(two_accounts, sts=True)).start(individual())  # STS.K1: account "default"
    assert Sdk(sdk_client(two_accounts)).describe(task_id).task_info.status == "RUNNING"  # AK1: "default" too
    two_accounts.control.credentials(access_keys={"AK3": "secret3"}, accounts={"AK3": "acct-2"})
    third = Sdk(sdk_client(two_accounts, key=("AK3", "secret3")))
    not_found(lambda: third.describe(task_id))
    own = third.start(individual())
    assert Sdk(sdk_client(two_accounts, key=OTHER)).describe(own).task_info.status == "RUNNING"  # AK2 and AK3
    not_found(lambda: Sdk(sdk_client(two_accounts)).describe(own))
    assert [t["taskId"] for t in two_accounts.control.tasks(account="acct-2")] == [own]
    assert [t["taskId"] for t in two_accounts.control.tasks(access_key_id="STS.K1")] == [task_id]
    assert two_accounts.control.stats()["liveTasks"]["byAccount"] == {"default": [task_id], "acct-2": [own]}


def test_reset_forgets_accounts_given_at_run_time(two_accounts: EmulatorHandle) -> None:
    two_accounts.control.credentials(accounts={"AK1": "acct-2"})
    task_id = Sdk(sdk_client(two_accounts)).start(individual())
    assert two_accounts.control.task(task_id)["account"] == "acct-2"
    two_accounts.control.reset()
    two_accounts.control.join(APP, CHANNEL, "alice")
    task_id = Sdk(sdk_client(two_accounts)).start(individual())
    assert two_accounts.control.task(task_id)["account"] == "default"


def test_account_flag() -> None:
    from rtc_recording.emulator.cli import config_from, parser

    args = parser().parse_args(["--access-key", "AK1:s1", "--access-key", "AK2:s2", "--account", "AK2:acct-2"])
    assert config_from(args).accounts == {"AK2": "acct-2"}
