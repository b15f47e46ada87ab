"""NotifyUrl callbacks: shape, signature, order, one resend, never blocking the API."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from emulator_samples import APP, CHANNEL, Receiver, individual, oss, wait_for

from conftest import Sdk, sdk_client
from rtc_recording.emulator import EmulatorHandle

AUTH_KEY = "abcdefghijklmnop1234"


def started(emulator: EmulatorHandle, receiver: Receiver, **top: Any) -> str:
    emulator.control.join(APP, CHANNEL, "alice")
    return Sdk(sdk_client(emulator)).start(individual(NotifyUrl=f"{receiver.url}/callbacks/ns/rec/uid/1", **top))


def test_shape_signature_and_order(emulator: EmulatorHandle, receiver: Receiver) -> None:
    task_id = started(emulator, receiver, NotifyAuthKey=AUTH_KEY)
    Sdk(sdk_client(emulator)).stop(task_id)
    emulator.control.advance(1)  # through STOPPING
    wait_for(lambda: receiver.events("TaskStopped"))
    assert [r["body"]["eventType"] for r in receiver.requests] == [
        "TaskCreated",
        "TaskStarting",
        "TaskRunning",
        "TaskStopping",
        "TaskStopped",
    ]
    first = receiver.requests[0]
    assert first["path"] == "/callbacks/ns/rec/uid/1"
    body = first["body"]
    assert set(body) == {"appId", "channelId", "taskId", "eventType", "callbackTs", "payload"}
    assert (body["appId"], body["channelId"], body["taskId"]) == (APP, CHANNEL, task_id)
    assert isinstance(body["callbackTs"], int) and abs(body["callbackTs"] / 1000 - time.time()) < 60
    assert json.loads(body["payload"]) == {}
    assert json.loads(receiver.events("TaskStopped")[0]["body"]["payload"]) == {"reason": "Stopped"}
    headers = first["headers"]
    timestamp = headers["ALI-LIVE-TIMESTAMP"]
    assert abs(int(timestamp) - time.time()) < 60
    assert headers["ALI-LIVE-SIGNATURE"] == hashlib.md5(f"{timestamp}|{AUTH_KEY}".encode()).hexdigest()
    assert headers["Content-Type"].startswith("application/json")


def test_unsigned_without_auth_key_and_payload_as_object(start_emulator: Any, receiver: Receiver) -> None:
    emulator = start_emulator(callback_payload_as_string=False)
    started(emulator, receiver)
    request = wait_for(lambda: receiver.events("TaskCreated"))[0]
    assert "ALI-LIVE-SIGNATURE" not in request["headers"] and request["body"]["payload"] == {}


def test_resent_exactly_once_on_5xx(emulator: EmulatorHandle, receiver: Receiver) -> None:
    receiver.respond = lambda body: 500 if body["eventType"] == "TaskCreated" else 200
    started(emulator, receiver)
    wait_for(lambda: receiver.events("TaskRunning"))
    assert len(receiver.events("TaskCreated")) == 2
    assert [r["body"]["eventType"] for r in receiver.requests][:3] == ["TaskCreated", "TaskCreated", "TaskStarting"]
    log = emulator.control.deliveries()
    assert log[0]["attempts"] == [500, 500] and log[0]["delivered"] is False
    assert log[1]["attempts"] == [200] and log[1]["delivered"] is True


def test_not_resent_on_4xx(emulator: EmulatorHandle, receiver: Receiver) -> None:
    receiver.respond = lambda body: 404
    started(emulator, receiver)
    wait_for(
        lambda: len(emulator.control.deliveries()) == 3 and all(d["attempts"] for d in emulator.control.deliveries())
    )
    assert len(receiver.requests) == 3


def test_resent_once_on_timeout(start_emulator: Any, receiver: Receiver) -> None:
    emulator = start_emulator(callback_timeout_seconds=0.2)
    receiver.respond = lambda body: ("sleep", 0.5) if body["eventType"] == "TaskCreated" else 200
    started(emulator, receiver)
    wait_for(lambda: receiver.events("TaskRunning"))
    assert len(receiver.events("TaskCreated")) == 2
    assert emulator.control.deliveries()[0]["attempts"] == ["timeout", "timeout"]


def test_a_stalled_receiver_does_not_hold_up_the_api(emulator: EmulatorHandle, receiver: Receiver) -> None:
    receiver.release.clear()  # the receiver takes requests and does not answer
    task_id = started(emulator, receiver)
    assert Sdk(sdk_client(emulator)).describe(task_id).task_info.status == "RUNNING"
    wait_for(lambda: receiver.requests)
    receiver.release.set()
    wait_for(lambda: receiver.events("TaskRunning"))


def test_file_uploaded_per_file_for_chosen_formats(emulator: EmulatorHandle, receiver: Receiver) -> None:
    task_id = started(
        emulator,
        receiver,
        RecordParams={"RecordMode": 0, "MaxFileDuration": 180},
        StorageParams=oss(FileInfo=[{"Format": "MP4", "FilePathPrefix": ["meetings"]}, {"Format": "MP3"}]),
        NotifyFileUploadedFormat=["MP4"],
    )
    emulator.control.advance(370)
    uploads = wait_for(
        lambda: len(receiver.events("RecordFileUploaded")) == 2 and receiver.events("RecordFileUploaded")
    )
    payloads = [json.loads(u["body"]["payload"]) for u in uploads]
    assert [p["format"] for p in payloads] == ["MP4", "MP4"]
    assert all(p["filePath"].startswith(f"meetings/{task_id}/") and p["duration"] == 180 for p in payloads)
    assert payloads[0]["url"].endswith(payloads[0]["filePath"])


def test_callbacks_off(emulator: EmulatorHandle, receiver: Receiver) -> None:
    emulator.control.callbacks(False)
    sdk = Sdk(sdk_client(emulator))
    sdk.stop(started(emulator, receiver))
    emulator.control.advance(2)
    log = emulator.control.deliveries()
    assert [d["eventType"] for d in log] == [
        "TaskCreated",
        "TaskStarting",
        "TaskRunning",
        "TaskStopping",
        "TaskStopped",
    ]
    assert all(d["suppressed"] for d in log) and receiver.requests == []

    emulator.control.callbacks(True)
    task_id = sdk.start(individual(NotifyUrl=receiver.url))
    assert wait_for(lambda: receiver.events("TaskRunning"))[0]["body"]["taskId"] == task_id
