"""The fakes keep the apiserver's and the cloud's promises that the tables rely on."""

import asyncio

import pytest

from rtc_recording.api.task import NotFound, TaskStatus, Throttled, UnknownOutcome
from rtc_recording.cloud.accounts import CloudUnreachable
from rtc_recording.cloud.credentials import CredentialsUnavailable
from rtc_recording.cloud.secrets import CREDENTIALS
from rtc_recording.kube import errors as k8s
from rtc_recording.kube.events import EventRecorder, Posted
from rtc_recording.kube.reflector import Reflector

from .fakes import (
    CRASH,
    NS,
    UNKNOWN,
    FakeCloud,
    FakeCloudClients,
    FakeKube,
    ProcessDied,
    make_settings,
    merge_patch,
    not_found,
    recording,
    throttled,
    until,
)


def test_merge_patch_is_rfc_7386():
    assert merge_patch(
        {"a": 1, "b": {"c": 2, "d": 3}, "l": [1, 2]}, {"a": None, "b": {"c": None, "e": 4}, "l": [3]}
    ) == {"b": {"d": 3, "e": 4}, "l": [3]}


async def test_status_patch_is_a_compare_and_swap_on_resource_version_and_uid():
    kube = FakeKube()
    obj = kube.add_recording(recording(status={"phase": "Starting", "attempt": {"number": 1}}))
    meta = obj["metadata"]
    new = await kube.patch_status(
        NS, "rec", {"phase": "Recording", "attempt": None}, resource_version=meta["resourceVersion"], uid=meta["uid"]
    )
    assert new["status"] == {"phase": "Recording"}  # null deletes
    assert int(new["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])
    assert new["metadata"]["generation"] == meta["generation"]  # status writes leave generation alone
    with pytest.raises(k8s.Conflict):  # stale
        await kube.patch_status(
            NS, "rec", {"phase": "Failed"}, resource_version=meta["resourceVersion"], uid=meta["uid"]
        )
    with pytest.raises(k8s.Conflict):  # a namesake
        await kube.patch_status(
            NS, "rec", {"phase": "Failed"}, resource_version=new["metadata"]["resourceVersion"], uid="another"
        )
    with pytest.raises(k8s.NotFound):
        await kube.patch_status(NS, "nobody", {"phase": "Failed"})
    same = await kube.patch_status(NS, "rec", {"phase": "Recording"})
    assert same["metadata"]["resourceVersion"] == new["metadata"]["resourceVersion"]  # a no-op moves nothing
    assert [r.code for r in kube.status_writes(ok_only=False)] == [200, 409, 409, 404, 200]


async def test_mutate_status_rereads_after_another_writer():
    kube = FakeKube()
    kube.add_recording(recording(status={"phase": "Recording", "taskId": "t1"}))
    kube.before("PATCH", "/status$", lambda k: k.poke_status(NS, "rec", {"message": "someone else"}))
    seen = []

    def change(obj):
        seen.append(obj["status"].get("message"))
        return {"reason": "Mine"}

    obj, patch = await kube.mutate_status(NS, "rec", change)
    assert seen == [None, "someone else"] and patch == {"reason": "Mine"}
    assert obj["status"] == {"phase": "Recording", "taskId": "t1", "message": "someone else", "reason": "Mine"}
    assert [(r.method, r.code) for r in kube.requests] == [("GET", 200), ("PATCH", 409), ("GET", 200), ("PATCH", 200)]


async def test_events_with_a_key_are_posted_once_or_counted():
    kube = FakeKube()
    obj = kube.add_recording(recording())
    events = EventRecorder(kube, "c")
    assert await events.record(obj, "Normal", "Started", "m", key="k1") == Posted.YES
    assert await events.record(obj, "Normal", "Started", "m", key="k1") == Posted.YES  # a retry: no-op
    for _ in range(3):
        await events.record(obj, "Warning", "StopFailed", "x", key="sf", repeat=True)
    await events.record(obj, "Normal", "Other", "m")
    kube.fail("POST", "/events$", k8s.ApiError(500, "etcd"))
    assert await events.record(obj, "Normal", "Lost", "m") == Posted.NO  # a courtesy: never raises
    assert [(e["reason"], e["count"]) for e in kube.events_about("rec")] == [
        ("Started", 1),
        ("StopFailed", 3),
        ("Other", 1),
    ]


async def test_create_delete_and_delete_with_a_uid_precondition():
    kube = FakeKube()
    path = "/api/v1/namespaces/x/configmaps"
    await kube.create(path, {"metadata": {"name": "a"}, "data": {}})
    with pytest.raises(k8s.Conflict):
        await kube.create(path, {"metadata": {"name": "a"}, "data": {}})
    await kube.delete(f"{path}/a")
    await kube.delete(f"{path}/a")  # Gone is fine
    assert kube.all("configmaps") == []
    obj = kube.add_recording(recording())
    await kube.delete_recording(NS, "rec", uid="someone-else")  # 409, swallowed: the namesake stays
    assert kube.recording("rec") is not None
    await kube.delete_recording(NS, "rec", uid=obj["metadata"]["uid"])
    assert kube.recording("rec") is None
    kube.add_recording(recording(finalizers=["f"]))
    await kube.delete_recording(NS, "rec", uid=kube.recording("rec")["metadata"]["uid"])
    assert kube.recording("rec")["metadata"]["deletionTimestamp"]  # a finalizer holds it


async def test_list_by_task_id_and_injected_faults():
    kube = FakeKube()
    kube.add_recording(recording("a", status={"taskId": "t1"}))
    kube.add_recording(recording("b", status={"taskId": "t2"}))
    assert [o["metadata"]["name"] for o in await kube.list_recordings([NS], task_id="t2")] == ["b"]
    assert len(await kube.list_recordings([])) == 2
    kube.fail("GET", "/rtcrecordings/a$", k8s.ApiError(500, "etcd"), times=2)
    for _ in range(2):
        with pytest.raises(k8s.KubeError):
            await kube.get_recording(NS, "a")
    assert (await kube.get_recording(NS, "a"))["metadata"]["name"] == "a"


async def test_a_reflector_lists_then_watches_the_fake():
    kube = FakeKube()
    path = "/api/v1/namespaces/x/configmaps"
    await kube.create(path, {"metadata": {"name": "a", "labels": {"l": "1"}}})
    await kube.create(path, {"metadata": {"name": "b"}})
    seen = []
    reflector = Reflector(
        kube, path, lambda t, o: seen.append((t, o["metadata"]["name"])), label_selector="l", page_size=1
    )
    task = asyncio.create_task(reflector.run())
    try:
        await until(lambda: seen == [("ADDED", "a")])
        await kube.create(path, {"metadata": {"name": "c", "labels": {"l": "2"}}})
        await kube.delete(f"{path}/a")
        await until(lambda: seen == [("ADDED", "a"), ("ADDED", "c"), ("DELETED", "a")])
    finally:
        task.cancel()


async def test_the_cloud_answers_as_scripted_and_keeps_tasks_per_account():
    kube, cloud = FakeKube(), FakeCloud()
    clients = FakeCloudClients(kube, cloud, make_settings())
    account = await clients.account_for(recording())
    order = []

    async def ahead():
        order.append("write-ahead")

    task = await clients.start(account, {"AppId": "a"}, before_send=ahead)
    assert order == ["write-ahead"] and cloud.status_of(task) == TaskStatus.RUNNING
    cloud.script("stop", throttled())
    with pytest.raises(Throttled):
        await clients.stop(account, task)
    assert cloud.status_of(task) == TaskStatus.RUNNING  # a refused call changes nothing
    await clients.stop(account, task)
    with pytest.raises(NotFound):
        await clients.stop(account, task)  # stopped already
    cloud.script("start", UNKNOWN, CRASH)
    with pytest.raises(UnknownOutcome):
        await clients.start(account, {})
    with pytest.raises(ProcessDied):
        await clients.start(account, {})
    assert len(cloud.tasks) == 3  # both created their task
    other = await clients.account_for(recording(region="us-east-1"))
    with pytest.raises(NotFound):
        await clients.describe(other, task)
    with pytest.raises(CredentialsUnavailable):
        await clients.account_for(recording(credentialsSecretRef={"name": "missing"}))
    kube.add_secret(NS, "keys", {"accessKeyId": "AK2", "accessKeySecret": "s"}, CREDENTIALS)
    assert (await clients.account_for(recording(credentialsSecretRef={"name": "keys"}))).key == "cn-shanghai/AK2"
    clients.reachability.up = False
    with pytest.raises(CloudUnreachable):
        await clients.describe(account, task)
    cloud.script("describe", not_found())
    assert [c.verb for c in cloud.calls] == ["start", "stop", "stop", "stop", "start", "start", "describe"]
