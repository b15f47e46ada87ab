"""The SDK sends every parameter in the query string: long legal requests are received,
longer ones get a vendor-shaped error rather than a bare HTTP one."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from alibabacloud_tea_openapi.exceptions import ClientException
from emulator_samples import APP, CHANNEL, mixed

from conftest import SIGNATURES, Sdk, sdk_client, vendor_error
from rtc_recording.emulator import EmulatorHandle
from rtc_recording.emulator.server import MAX_REQUEST_TARGET

USERS = tuple(f"user{i}" for i in range(17))  # the page's most subscribers


def url(n: int, length: int = 2048) -> str:
    """A 2048-character URL made of characters that percent-encode to three bytes each."""
    head = f"https://img{n}.example.com/p?"
    return head + ("a=%2F&" * length)[: length - len(head)]


def longest(notify_url: str = url(0)) -> dict[str, Any]:
    raw = mixed(*USERS, NotifyUrl=notify_url)
    layout = raw["MixLayoutParams"]
    layout["MixBackground"] = {"RenderMode": 1, "Url": url(1)}
    for i, pane in enumerate(layout["UserPanes"]):
        pane["SubBackground"] = {"RenderMode": 0, "Url": url(i + 2)}
    return raw


@pytest.fixture
def in_channel(emulator: EmulatorHandle) -> EmulatorHandle:
    for user in USERS:
        emulator.control.join(APP, CHANNEL, user)
    return emulator


@pytest.mark.parametrize("algorithm", SIGNATURES)
def test_nineteen_2048_character_urls_are_received(in_channel: EmulatorHandle, algorithm: str | None) -> None:
    raw = longest()
    assert all(len(u) == 2048 for u in [raw["NotifyUrl"], raw["MixLayoutParams"]["MixBackground"]["Url"]])
    task_id = Sdk(sdk_client(in_channel, algorithm)).start(raw)
    params = in_channel.control.task(task_id)["params"]
    assert params["NotifyUrl"] == raw["NotifyUrl"]
    assert params["MixLayoutParams"] == raw["MixLayoutParams"]


def test_that_is_far_beyond_aiohttps_default_request_line() -> None:
    """What the test above sends: every parameter in the query, objects as compact JSON."""
    query = urlencode(
        {k: json.dumps(v, separators=(",", ":")) if isinstance(v, dict) else v for k, v in longest().items()},
        quote_via=quote,
    )
    assert len(query) > 64 * 1024 > 8190  # more than 64 KiB, let alone aiohttp's default 8190 bytes


@pytest.mark.parametrize("algorithm", SIGNATURES)
def test_beyond_the_limit_a_vendor_error(in_channel: EmulatorHandle, algorithm: str | None) -> None:
    too_long = "https://example.com/" + "x" * MAX_REQUEST_TARGET
    error = vendor_error(lambda: Sdk(sdk_client(in_channel, algorithm)).start(longest(too_long)))
    assert isinstance(error, ClientException)
    assert (error.code, error.status_code) == ("RequestTooLarge", 400)
    assert {"RequestId", "HostId", "Code", "Message", "Recommend"} <= set(error.data)
    assert str(MAX_REQUEST_TARGET) in error.data["Message"]
    assert in_channel.control.tasks() == []
    assert in_channel.control.stats()["tooLarge"] == 1
