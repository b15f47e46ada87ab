"""Task seals: only the holder of the key ties a task id to a resource and a Start attempt."""

from datetime import UTC, datetime

import pytest

from rtc_recording.api.keys import derive_key
from rtc_recording.api.names import segment
from rtc_recording.controller.index import Index
from rtc_recording.decide.ownership import REASON, Sealer, refusal

UID, OTHER_UID = "0f8fad5b-d9cb-469f-a165-70867728950e", "1f8fad5b-d9cb-469f-a165-70867728950e"
NOW = datetime(2030, 1, 1, tzinfo=UTC)
sealer = Sealer(derive_key("k" * 32))


def obj(uid=UID, name="rec", namespace="ns", **status):
    return {
        "metadata": {"namespace": namespace, "name": name, "uid": uid, "generation": 1, "resourceVersion": "1"},
        "spec": {},
        "status": status,
    }


def sealed(uid=UID, task="t-1", attempt=1, **status):
    return obj(uid, taskId=task, attempt={"number": attempt}, taskSeal=sealer.seal(uid, attempt, task), **status)


def test_a_seal_binds_uid_attempt_and_task():
    assert sealer.proven(sealed())
    seal = sealer.seal(UID, 1, "t-1")
    for uid, attempt, task in ((OTHER_UID, 1, "t-1"), (UID, 2, "t-1"), (UID, 1, "t-2")):
        assert not sealer.verify(uid, attempt, task, seal)
    assert not Sealer(derive_key("another-key-" * 3)).verify(UID, 1, "t-1", seal)
    # Copied onto another resource, or with the task id changed, or with none at all: not proven.
    assert not sealer.proven({**sealed(), "metadata": {**sealed()["metadata"], "uid": OTHER_UID}})
    assert not sealer.proven(obj(taskId="t-1", attempt={"number": 1}))
    assert not sealer.proven(obj(taskId="t-2", attempt={"number": 1}, taskSeal=seal))
    assert not sealer.proven(obj(taskId="t-1", attempt={"number": 1}, taskSeal=["not", "a", "string"]))


def test_every_task_id_written_is_sealed_and_a_cleared_one_unsealed():
    current = obj(attempt={"number": 3})
    patch = sealer.sealed(current, {"taskId": "t-9", "phase": "Recording"})
    assert sealer.verify(UID, 3, "t-9", patch["taskSeal"])
    # The write-ahead of a new attempt clears the task and its seal, with the new attempt number.
    assert sealer.sealed(current, {"taskId": None, "attempt": {"number": 4}})["taskSeal"] is None
    assert sealer.sealed(current, {"phase": "Pending"}) == {"phase": "Pending"}
    assert sealer.sealed(current, None) is None


def test_the_index_counts_only_proven_tasks_as_anyones():
    index = Index(sealer)
    index.saw("ADDED", sealed(task="victim-task", name="victim"))
    # Another resource claims the same task in its status, without (or with a copied) seal.
    index.saw(
        "ADDED",
        obj(
            OTHER_UID,
            name="thief",
            taskId="victim-task",
            attempt={"number": 1},
            taskSeal=sealer.seal(UID, 1, "victim-task"),
        ),
    )
    assert index.owner("victim-task").name == "victim"
    assert not index.proven(index.objects[("ns", "thief")])
    index.saw("DELETED", sealed(task="victim-task", name="victim"))
    assert index.owner("victim-task") is None  # the thief's claim never counted


def test_the_refusal_is_written_once_per_generation():
    forged = obj(taskId="t-x", phase="Recording")
    patch = refusal(forged, NOW)
    (synced,) = [c for c in patch["conditions"] if c["type"] == "Synced"]
    assert (synced["status"], synced["reason"], patch["reason"]) == ("False", REASON, REASON)
    assert "t-x" in patch["message"]
    assert refusal({**forged, "status": {**forged["status"], **patch}}, NOW) is None
    newer = {**forged, "metadata": {**forged["metadata"], "generation": 2}, "status": {**forged["status"], **patch}}
    assert refusal(newer, NOW) is not None


def test_keys_are_long_and_derived_per_purpose():
    with pytest.raises(ValueError):
        Sealer(b"short")
    assert derive_key("x" * 32) != derive_key("x" * 32, info=b"another purpose")
    assert len(derive_key("x" * 32)) == 32


def test_the_seal_covers_the_account_a_class_pin_names():
    pin = {
        "name": "gold",
        "generation": 1,
        "defaults": {"region": "cn-shanghai"},
        "credentialsSecretRef": {"namespace": "platform", "name": "aliyun"},
    }
    current = obj(attempt={"number": 1}, recordingClass=pin)
    patch = sealer.sealed(current, {"taskId": "t-1"})
    proven = {**current, "status": {**current["status"], **patch}}
    assert sealer.proven(proven)
    index = Index(sealer)
    index.saw("ADDED", proven)
    assert index.owner("t-1") is not None  # the index computes the same account from what it keeps
    for forged in (
        {**pin, "credentialsSecretRef": {"namespace": "victim", "name": "aliyun"}},
        {**pin, "defaults": {"region": "us-east-1"}},
    ):
        tampered = {**proven, "status": {**proven["status"], "recordingClass": forged}}
        assert not sealer.proven(tampered)
        index.saw("MODIFIED", tampered)
        assert index.owner("t-1") is None
    # A write that changes the pin and the task together is sealed over the pin it leaves.
    both = sealer.sealed(obj(attempt={"number": 1}), {"taskId": "t-2", "recordingClass": pin})
    assert sealer.proven(obj(attempt={"number": 1}, taskId="t-2", recordingClass=pin, taskSeal=both["taskSeal"]))


def test_a_pin_seal_binds_the_resource_class_generation_region_and_secret():
    pin = {
        "name": "gold",
        "generation": 2,
        "defaults": {"region": "cn-shanghai"},
        "credentialsSecretRef": {"namespace": "platform", "name": "aliyun"},
    }
    sealed_pin = {**pin, "seal": sealer.pin_seal(UID, pin)}
    assert sealer.pin_proven(obj(recordingClass=sealed_pin)) and sealer.account_proven(obj(recordingClass=sealed_pin))
    assert not sealer.account_proven(obj(OTHER_UID, recordingClass=sealed_pin))  # copied to another resource
    for forged in (
        {"name": "platinum"},
        {"generation": 3},
        {"defaults": {"region": "us-east-1"}},
        {"credentialsSecretRef": {"namespace": "victim", "name": "aliyun"}},
        {"credentialsSecretRef": {"namespace": "platform", "name": "other"}},
    ):
        assert not sealer.account_proven(obj(recordingClass={**sealed_pin, **forged})), forged
    # No pin seal: only a task seal over the same account proves it (a pin from before pin seals existed).
    assert not sealer.account_proven(obj(recordingClass=pin))
    patch = sealer.sealed(obj(attempt={"number": 1}, recordingClass=pin), {"taskId": "t-1"})
    assert sealer.account_proven(obj(attempt={"number": 1}, recordingClass=pin, **patch))
    # A pin seal never stands for a task seal, and a forged pin seal unproves the task.
    assert not sealer.verify(UID, 0, "gold", sealed_pin["seal"])
    task = obj(attempt={"number": 1}, recordingClass={**pin, "seal": "pin1.forged"}, **patch)
    assert not sealer.proven(task)
    assert sealer.account_proven(obj()) and sealer.account_proven(obj(recordingClass=None))


@pytest.mark.parametrize("name", [".", ".."])
def test_a_path_segment_is_never_dot_or_dot_dot(name):
    with pytest.raises(ValueError):
        segment(name)
    assert segment("a.b") == "a.b" and segment("../x") == "..%2Fx"
