"""Which failure each answer or transport condition means (pure mapping)."""

from __future__ import annotations

import json

import pytest
import requests
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError, ReadTimeoutError

from rtc_recording.api.task import ChannelEmpty, Invalid, NotFound, Throttled, Transient, UnknownOutcome
from rtc_recording.cloud.aliyun import answer_error, error_class, transport_error

VERBS = ("start", "stop", "update", "describe")

TABLE = [
    # (verb, status, code, expected)
    ("start", 400, "InvalidParameter.NotifyUrl", Invalid),
    ("start", 400, "InvalidParameter.StorageParams.FileInfo", Invalid),
    ("start", 400, "InvalidParameter.StorageParams.OSSParams", Invalid),
    ("start", 400, "NotFound.OSSBucket", Invalid),  # "NotFound." of a bucket: fix the spec, not a task
    ("start", 400, "InvalidParameter.SubscribeParams.SubscribeUserIdList", Invalid),
    ("start", 400, "InvalidParameter.MixLayoutParams.UserPanes", Invalid),
    ("start", 400, "InvalidParameter.MixTranscodeParams", Invalid),
    ("start", 400, "MissingParameter", Invalid),
    ("start", 403, "InvalidParameter.UserId", Invalid),
    ("start", 404, "InvalidParameter.AppId", Invalid),
    ("start", 405, "InvalidParameter.StorageParams.VodParams", Invalid),
    ("start", 405, "InvalidParameter.NotifyAuthKey", Invalid),
    ("start", 405, "InvalidParameter.MaxIdleTime", Invalid),
    ("start", 405, "InvalidParameter.RecordParams", Invalid),
    ("start", 405, "InvalidParameter.StorageParams.StorageType", Invalid),
    ("start", 405, "InvalidParameter.NotifyFileUploadedFormat", Invalid),
    ("describe", 400, "SignatureDoesNotMatch", Invalid),
    ("stop", 400, "IncompleteSignature", Invalid),
    ("describe", 404, "InvalidAccessKeyId.NotFound", Invalid),  # a 404 that is not a missing task
    ("start", 403, "Forbidden.RAM", Invalid),
    ("start", 404, "InvalidParameter.ChannelId", ChannelEmpty),  # nobody in the channel yet: waited for
    ("describe", 404, "InvalidParameter.ChannelId", Invalid),
    ("stop", 400, "NotFound.Task", NotFound),
    ("describe", 400, "NotFound.Task", NotFound),
    ("update", 400, "NotFound.Task", NotFound),
    ("stop", 400, "InvalidParameter.TaskId", NotFound),  # not running: nothing to stop
    ("update", 400, "InvalidParameter.TaskId", NotFound),  # not running: nothing to update
    ("describe", 400, "InvalidParameter.TaskId", Invalid),
    ("start", 400, "Throttling.User", Throttled),
    ("start", 429, "Throttling.User", Throttled),
    ("describe", 503, "Throttling", Throttled),
    ("stop", 400, "Throttling.Api", Throttled),
    ("start", 500, "InternalError", Transient),  # the service answered: it did not start
    ("start", 503, "ServiceUnavailable", Transient),
    ("describe", 500, "InternalError", Transient),
    # no vendor body: a proxy or gateway answered
    ("start", 502, None, UnknownOutcome),
    ("start", 504, None, UnknownOutcome),
    ("describe", 502, None, Transient),
    ("stop", 504, None, Transient),
    ("start", 429, None, Throttled),
    ("start", 403, None, Invalid),
]


@pytest.mark.parametrize(("verb", "status", "code", "expected"), TABLE)
def test_error_class(verb, status, code, expected):
    assert error_class(verb, status, code) is expected


def test_answer_error_keeps_the_vendors_fields():
    body = json.dumps(
        {
            "RequestId": "rid-1",
            "HostId": "live.aliyuncs.com",
            "Code": "InvalidParameter.AppId",
            "Message": "x, please check the appId.",
            "Recommend": "https://...",
        }
    ).encode()
    error = answer_error("start", 404, body)
    assert isinstance(error, Invalid)
    assert (error.code, error.message, error.request_id, error.http_status) == (
        "InvalidParameter.AppId",
        "x, please check the appId.",
        "rid-1",
        404,
    )
    assert "InvalidParameter.AppId" in str(error) and "rid-1" in str(error)


def test_answer_error_without_a_vendor_body():
    error = answer_error("describe", 502, b"<html>Bad Gateway</html>")
    assert isinstance(error, Transient)
    assert (error.code, error.request_id, error.http_status) == ("HTTP502", None, 502)


def test_an_http_400_without_a_vendor_body_says_so_and_echoes_nothing():
    """Issue 14.7: `Failed/HTTP400` had an empty message."""
    error = answer_error("start", 400, b"<html>Bad Request: /?NotifyAuthKey=SECRET</html>")
    assert isinstance(error, Invalid) and error.code == "HTTP400"
    assert "HTTP 400 without the service's error fields" in error.message and "proxy" in error.message
    assert "SECRET" not in error.message and "SECRET" not in str(error)


def test_answer_error_accepts_lower_case_fields():
    error = answer_error("stop", 400, b'{"code": "NotFound.Task", "message": "m", "requestId": "r"}')
    assert isinstance(error, NotFound) and error.request_id == "r"


def _refused() -> requests.ConnectionError:
    reason = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] Connection refused")
    return requests.ConnectionError(MaxRetryError(None, "/?NotifyAuthKey=SECRET", reason))


TRANSPORT = [
    # (exception, verb, expected, code)
    (_refused(), "start", Transient, "ConnectFailed"),
    (requests.ConnectTimeout(MaxRetryError(None, "/")), "start", Transient, "ConnectFailed"),
    (requests.exceptions.SSLError("handshake"), "start", Transient, "ConnectFailed"),
    (requests.ReadTimeout(ReadTimeoutError(None, "/", "Read timed out.")), "start", UnknownOutcome, "ReadTimeout"),
    (requests.ReadTimeout(ReadTimeoutError(None, "/", "Read timed out.")), "describe", Transient, "ReadTimeout"),
    (
        requests.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError())),
        "start",
        UnknownOutcome,
        "ConnectionLost",
    ),
    (requests.ConnectionError(ProtocolError("Connection aborted.")), "stop", Transient, "ConnectionLost"),
    (requests.exceptions.ChunkedEncodingError("cut"), "start", UnknownOutcome, "ConnectionLost"),
]


@pytest.mark.parametrize(("exc", "verb", "expected", "code"), TRANSPORT)
def test_transport_error(exc, verb, expected, code):
    error = transport_error(verb, exc)
    assert type(error) is expected and error.code == code and error.http_status is None


def test_transport_error_does_not_repeat_the_url():
    # MaxRetryError's text holds the request URL, and ours carries NotifyAuthKey.
    assert "SECRET" not in str(transport_error("start", _refused()))
