"""The receiver's pure parts: signatures, parsing, what is relayed to the user's URL."""

import hashlib
import json

import pytest
from multidict import CIMultiDict

from rtc_recording.api.callback import callback_headers, path_key, signature_ok
from rtc_recording.receiver.server import Callback, Replays, forwarded, path_ok

KEY = "abcdefghijklmnop1234"
NOW = 1_800_000_000.0


def test_signature_is_md5_of_timestamp_and_key_case_insensitive():
    headers = callback_headers(KEY, NOW)
    assert headers == {
        "ALI-LIVE-TIMESTAMP": "1800000000",
        "ALI-LIVE-SIGNATURE": hashlib.md5(f"1800000000|{KEY}".encode()).hexdigest(),
    }
    assert signature_ok(headers, KEY, NOW)
    # Header names are case-insensitive on the wire; the hex digest is compared case-insensitively.
    shouted = CIMultiDict(
        {
            "ali-live-timestamp": headers["ALI-LIVE-TIMESTAMP"],
            "Ali-Live-Signature": headers["ALI-LIVE-SIGNATURE"].upper(),
        }
    )
    assert signature_ok(shouted, KEY, NOW)


@pytest.mark.parametrize(
    "headers, now",
    [
        ({}, NOW),
        (callback_headers("another-key-0000000", NOW), NOW),
        (callback_headers(KEY, NOW - 301), NOW),  # stale: the signature does not cover the body
        (callback_headers(KEY, NOW + 301), NOW),  # from the future
        ({"ALI-LIVE-TIMESTAMP": "abc", "ALI-LIVE-SIGNATURE": "x"}, NOW),
        ({"ALI-LIVE-TIMESTAMP": "\u00b2", "ALI-LIVE-SIGNATURE": "0" * 32}, NOW),  # a digit to isdigit(), not to int()
        ({**callback_headers(KEY, NOW), "ALI-LIVE-SIGNATURE": "\u00e9" * 32}, NOW),  # compare_digest wants ASCII
    ],
)
def test_bad_signatures_are_refused(headers, now):
    assert not signature_ok(headers, KEY, now)


def test_payload_as_json_string_or_object_or_garbage():
    base = {"appId": "a", "channelId": "c", "taskId": "t", "eventType": "TaskStopped"}
    assert Callback.parse({**base, "payload": json.dumps({"reason": "IdleTimeout"})}).payload == {
        "reason": "IdleTimeout"
    }
    assert Callback.parse({**base, "payload": {"reason": "MaxDuration"}}).payload == {"reason": "MaxDuration"}
    assert Callback.parse({**base, "payload": "not json"}).payload == {}
    assert Callback.parse({**base, "payload": "[" * 100_000}).payload == {}  # too deep for json: not a crash
    for bad in ({"appId": "a"}, {**base, "taskId": 7}, {**base, "taskId": "x" * 300}, ["not", "an", "object"]):
        with pytest.raises(ValueError):
            Callback.parse(bad)


@pytest.mark.parametrize(
    "path, ok",
    [
        (("ns", "rec", "0f8fad5b-d9cb-469f-a165-70867728950e"), True),
        (("ns", "rec.v2", "0f8fad5b-d9cb-469f-a165-70867728950e"), True),
        (("../kube-system", "rec", "0f8fad5b-d9cb-469f-a165-70867728950e"), False),
        (("ns", "rec/../x", "0f8fad5b-d9cb-469f-a165-70867728950e"), False),
        (("NS", "rec", "0f8fad5b-d9cb-469f-a165-70867728950e"), False),
        (("ns", "rec", "not-a-uid"), False),
    ],
)
def test_callback_paths_are_dns_names_and_a_uid(path, ok):
    assert path_ok(*path) is ok


def upload(fmt):
    return Callback("a", "c", "t", "RecordFileUploaded", {"format": fmt})


@pytest.mark.parametrize(
    "spec, callback, expected",
    [
        ({}, Callback("a", "c", "t", "TaskRunning", {}), False),  # no user URL
        ({"notify": {"url": "https://u"}}, Callback("a", "c", "t", "TaskRunning", {}), True),
        ({"notify": {"url": "https://u"}}, upload("SLICE"), False),  # the operator's heartbeat
        ({"notify": {"url": "https://u", "fileUploadedFormats": ["MP4"]}}, upload("mp4"), True),
        ({"notify": {"url": "https://u", "fileUploadedFormats": ["MP4"]}}, upload("SLICE"), False),
    ],
)
def test_what_is_relayed(spec, callback, expected):
    assert forwarded(spec.get("notify") or {}, callback) is expected


def test_each_attempt_has_its_own_key():
    keys = {
        path_key(KEY, ns, name, uid, attempt)
        for ns, name, uid, attempt in [
            ("ns", "rec", "u", 1),
            ("ns", "rec", "u", 2),
            ("ns", "rec", "v", 1),
            ("ns", "rec2", "u", 1),
            ("ns2", "rec", "u", 1),
        ]
    }
    assert len(keys) == 5
    assert all(len(k) == 32 and k.isalnum() for k in keys)  # a valid NotifyAuthKey
    assert path_key(KEY, "ns", "rec", "u", 1) == path_key(KEY, "ns", "rec", "u", 1)
    assert path_key("another-key-0000000", "ns", "rec", "u", 1) != path_key(KEY, "ns", "rec", "u", 1)


def test_a_pair_is_bound_to_what_it_first_carried_until_it_is_stale():
    replays = Replays(kept=3)
    pair = callback_headers(KEY, NOW)
    assert replays.admit(pair, ("path", "task"), "TaskRunning", "b1", NOW)
    assert replays.admit(pair, ("path", "task"), "TaskRunning", "b1", NOW + 1)  # the same again (a resend)
    assert replays.admit(pair, ("path", "task"), "TaskCreated", "b2", NOW + 1)  # another event, one pair
    assert not replays.admit(pair, ("path", "task"), "TaskRunning", "b3", NOW + 1)  # that event, another body
    assert not replays.admit(pair, ("path", "other task"), "TaskStopped", "b4", NOW + 1)
    assert not replays.admit(pair, ("other path", "task"), "TaskRunning", "b1", NOW + 1)
    # Bounded: the oldest go first, the stale ones anyway.
    for i in range(1, 4):
        assert replays.admit(callback_headers(KEY, NOW + i), ("p", i), "TaskRunning", "b", NOW + i)
    assert len(replays._seen) == 3 and replays.admit(pair, ("other path", "task"), "TaskRunning", "b", NOW + 4)
    replays.admit(callback_headers(KEY, NOW + 5), ("p", 5), "TaskRunning", "b", NOW + 1000)
    assert len(replays._seen) == 1
