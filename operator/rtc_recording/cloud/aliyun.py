"""The real `RecordingCloud`: ApsaraVideo Live's RPC API over HTTPS, as the vendor's SDK speaks it.

Wire format and signature replicate `alibabacloud-live20161101` 3.0.2 on
`alibabacloud-tea-openapi` 0.4.6 (tests compare query, headers and signature with the
SDK's): `POST /`, every parameter in the query string, empty body, ACS3-HMAC-SHA256 over
every header set here. Object parameters travel as compact JSON (the SDK's 'json' style);
any other list is flattened as `Name.1`, `Name.2`, ... (NotifyFileUploadedFormat). The
SDK's telemetry header `x-acs-credentials-provider` is not sent.

One request per call, no retries and no quota here: both belong to the caller
(`cloud/accounts.py`), which owns the account's budget and must record a Start attempt between
its quota grant and the request (docs/exactly-once.md). A Throttled or Transient Start
was refused, answered as failed by the service itself (5xx with the vendor's error body),
or never left this process, so the caller may repeat it; an UnknownOutcome one may have
created a task.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import platform
import re
import time
import uuid
from collections.abc import Mapping
from importlib.metadata import version
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError

from rtc_recording import metrics
from rtc_recording.api import timestamps
from rtc_recording.api.fields import Region
from rtc_recording.api.recording import VodMedia
from rtc_recording.api.task import (
    ChannelEmpty,
    CloudError,
    Invalid,
    NotFound,
    RecordFiles,
    TaskInfo,
    TaskStatus,
    Throttled,
    Transient,
    UnknownOutcome,
)
from rtc_recording.cloud.credentials import Credentials, CredentialsProvider

log = logging.getLogger(__name__)

ENDPOINTS: dict[Region, str] = {
    "cn-shanghai": "live.aliyuncs.com",
    "ap-southeast-1": "live.ap-southeast-1.aliyuncs.com",
    "us-east-1": "live.us-east-1.aliyuncs.com",
}
API_VERSION = "2016-11-01"
ALGORITHM = "ACS3-HMAC-SHA256"
EMPTY_BODY_SHA256 = hashlib.sha256(b"").hexdigest()
ACTIONS = {
    "start": "StartRtcCloudRecording",
    "stop": "StopRtcCloudRecording",
    "update": "UpdateRtcCloudRecording",
    "describe": "DescribeRtcCloudRecordingFiles",
}
JSON_PARAMS = frozenset({"SubscribeParams", "RecordParams", "StorageParams", "MixTranscodeParams", "MixLayoutParams"})
UPDATABLE_PARAMS = frozenset({"SubscribeParams", "MixLayoutParams"})
USER_AGENT = (
    f"rtc-recording-operator/{version('rtc-recording-operator')} "
    f"({platform.system()}; {platform.machine()}) Python/{platform.python_version()}"
)
POOL_SIZE = 64  # one client serves all the operator's executor threads


class _RedactNotifyAuthKey(logging.Filter):
    """urllib3 logs request URLs at DEBUG; ours carry NotifyAuthKey."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "NotifyAuthKey=" in message:
            record.msg, record.args = re.sub(r"(NotifyAuthKey=)[^&\s\"]*", r"\1***", message), ()
        return True


logging.getLogger("urllib3.connectionpool").addFilter(_RedactNotifyAuthKey())


# -- wire format (pure) ---------------------------------------------------------------


def query_for(params: Mapping[str, Any]) -> dict[str, str]:
    """The query parameters the SDK sends for these API parameters."""
    query: dict[str, str] = {}
    for name, value in params.items():
        if value is None:
            continue
        if name in JSON_PARAMS:
            query[name] = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        else:
            _flatten(name, value, query)
    return query


def _flatten(key: str, value: Any, out: dict[str, str]) -> None:
    # The SDK's Utils._object_handler: 'Name.1', 'Name.Field', str() for scalars.
    if value is None:
        return
    if isinstance(value, Mapping):
        for sub, item in value.items():
            _flatten(f"{key}.{sub}", item, out)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value, start=1):
            _flatten(f"{key}.{index}", item, out)
    else:
        out[key] = str(value)


def canonical_query(query: Mapping[str, str]) -> str:
    """Sorted `key=value` pairs, values percent-encoded per RFC 3986 (only `~` kept)."""
    return "&".join(f"{key}={quote(query[key], safe='~')}" for key in sorted(query))


def authorization(query: Mapping[str, str], headers: Mapping[str, str], credentials: Credentials) -> str:
    """ACS3-HMAC-SHA256 over every header given (names lower-case) and an empty body."""
    names = sorted(headers)
    canonical_request = "\n".join(
        [
            "POST",
            "/",
            canonical_query(query),
            "".join(f"{name}:{headers[name].strip()}\n" for name in names),
            ";".join(names),
            EMPTY_BODY_SHA256,
        ]
    )
    string_to_sign = f"{ALGORITHM}\n{hashlib.sha256(canonical_request.encode()).hexdigest()}"
    signature = hmac.new(credentials.access_key_secret.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()
    return f"{ALGORITHM} Credential={credentials.access_key_id},SignedHeaders={';'.join(names)},Signature={signature}"


def signed_headers(
    action: str,
    host: str,
    query: Mapping[str, str],
    credentials: Credentials,
    *,
    date: str,
    nonce: str,
    user_agent: str = USER_AGENT,
) -> dict[str, str]:
    """All headers of one request, `Authorization` last, as the SDK composes them."""
    headers = {
        "host": host,
        "x-acs-version": API_VERSION,
        "x-acs-action": action,
        "user-agent": user_agent,
        "x-acs-date": date,
        "x-acs-signature-nonce": nonce,
        "accept": "application/json",
        "x-acs-content-sha256": EMPTY_BODY_SHA256,
    }
    if credentials.security_token:
        headers["x-acs-accesskey-id"] = credentials.access_key_id
        headers["x-acs-security-token"] = credentials.security_token
    headers["Authorization"] = authorization(query, headers, credentials)
    return headers


def endpoint_url(region: str, endpoint: str | None) -> str:
    if region not in ENDPOINTS:
        raise ValueError(f"unsupported region {region!r}; supported: {', '.join(ENDPOINTS)}")
    url = endpoint or ENDPOINTS[region]
    if "://" not in url:
        url = f"https://{url}"
    return url.rstrip("/")


def task_info(answer: Mapping[str, Any]) -> TaskInfo:
    """DescribeRtcCloudRecordingFiles' answer; raises KeyError/ValueError/TypeError if malformed."""
    info = answer["TaskInfo"]
    files = info.get("RecordFileList") or {}
    return TaskInfo(
        task_id=info["TaskId"],
        status=TaskStatus(info["Status"]),
        files=RecordFiles(
            hls=tuple(files.get("HlsFileList") or ()),
            mp4=tuple(files.get("Mp4FileList") or ()),
            mp3=tuple(files.get("Mp3FileList") or ()),
            vod=tuple(
                VodMedia(
                    media_ids=list(media.get("MediaIds") or ()),
                    merged_ids=list(media.get("MergedIds") or ()),
                    stream=media.get("Stream", ""),
                )
                for media in files.get("VodMediaList") or ()
            ),
        ),
    )


# -- errors (pure) --------------------------------------------------------------------


def error_class(verb: str, http_status: int, code: str | None) -> type[CloudError]:
    """Which failure an error answer means. The vendor's code decides before the status."""
    if code:
        if code.startswith("Throttling"):  # 400 in older tables, 429 in newer ones
            return Throttled
        if code == "NotFound.Task":
            return NotFound
        if code == "InvalidParameter.ChannelId" and verb == "start":
            return ChannelEmpty
        if code == "InvalidParameter.TaskId" and verb in ("stop", "update"):
            return NotFound  # the task exists but is no longer running
        # A 5xx with a vendor body: the service answered that it failed, so repeating is fine.
        return Transient if http_status >= 500 else Invalid
    # No vendor body: a proxy or gateway answered, not the service.
    if http_status == 429:
        return Throttled
    if http_status >= 500:
        # A gateway's 502/504 may have passed the Start on before giving up.
        return UnknownOutcome if verb == "start" else Transient
    return Invalid


def answer_error(verb: str, http_status: int, body: bytes) -> CloudError:
    fields = _json_object(body)
    code = fields.get("Code") or fields.get("code")
    message = fields.get("Message") or fields.get("message") or ""
    if not message and not code:
        # Not the service's own answer. Its body is not shown: a proxy's page may echo the request's
        # URL, and with it the NotifyAuthKey.
        message = (
            f"HTTP {http_status} without the service's error fields ({len(body)} bytes, not shown): a proxy "
            "or gateway between the operator and the service may have answered"
        )
    request_id = fields.get("RequestId") or fields.get("requestId")
    return error_class(verb, http_status, code)(
        code or f"HTTP{http_status}", message, request_id=request_id, http_status=http_status
    )


def transport_error(verb: str, exc: requests.RequestException) -> CloudError:
    """A request that got no answer. Only a Start that may have left is an unknown outcome."""
    if _never_sent(exc):
        return Transient("ConnectFailed", _transport_message(exc))
    code = "ReadTimeout" if isinstance(exc, requests.ReadTimeout) else "ConnectionLost"
    return (UnknownOutcome if verb == "start" else Transient)(code, _transport_message(exc))


def _never_sent(exc: requests.RequestException) -> bool:
    # Connect timeouts, refused connections, DNS and TLS failures all happen before the
    # request is written; requests wraps them in MaxRetryError(reason=...).
    if isinstance(exc, (requests.ConnectTimeout, requests.exceptions.SSLError, requests.exceptions.ProxyError)):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, ConnectTimeoutError)  # NewConnectionError is one too


def _transport_message(exc: requests.RequestException) -> str:
    # MaxRetryError's text holds the URL, hence NotifyAuthKey; its reason's text does not.
    inner: BaseException = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else exc
    inner = getattr(inner, "reason", None) or inner
    return _describe(inner)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# -- the client -----------------------------------------------------------------------


class AliyunRecordingCloud:
    """`RecordingCloud` over the vendor's HTTPS API; blocking and thread-safe."""

    def __init__(
        self,
        region: str,
        credentials: CredentialsProvider,
        endpoint: str | None = None,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 10.0,
    ) -> None:
        """`endpoint` overrides the region's: a host name (HTTPS) or a full URL such as
        `http://127.0.0.1:8080` for the emulator."""
        self._url = endpoint_url(region, endpoint)
        self._host = urlsplit(self._url).netloc
        self._credentials = credentials
        self._timeout = (connect_timeout, read_timeout)
        self._session = requests.Session()
        self._session.headers.clear()  # send exactly the signed headers
        self._session.mount(self._url, HTTPAdapter(pool_connections=1, pool_maxsize=POOL_SIZE))

    def close(self) -> None:
        self._session.close()

    def start(self, params: Mapping[str, Any]) -> str:
        answer = self._send("start", query_for(params))
        task_id = answer.get("TaskId")
        if not isinstance(task_id, str) or not task_id:
            # The service said yes but we cannot tell to what: a task may exist.
            raise UnknownOutcome(
                "MalformedAnswer", "Start answered without a TaskId", request_id=answer.get("RequestId")
            )
        return task_id

    def stop(self, task_id: str) -> None:
        self._send("stop", {"TaskId": task_id})

    def update(self, task_id: str, params: Mapping[str, Any]) -> None:
        if not params.keys() <= UPDATABLE_PARAMS:
            raise ValueError(f"Update changes only {sorted(UPDATABLE_PARAMS)}, got {sorted(params)}")
        self._send("update", {"TaskId": task_id, **query_for(params)})

    def describe(self, task_id: str) -> TaskInfo:
        answer = self._send("describe", {"TaskId": task_id})
        try:
            return task_info(answer)
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise Transient(
                "MalformedAnswer", f"unexpected Describe answer: {_describe(exc)}", request_id=answer.get("RequestId")
            ) from exc

    def _send(self, verb: str, query: dict[str, str]) -> dict[str, Any]:
        """One request: signature, POST, answer or typed error. CredentialsUnavailable is
        raised before anything is sent."""
        credentials = self._credentials.get()
        headers = signed_headers(
            ACTIONS[verb],
            self._host,
            query,
            credentials,
            date=timestamps.now(),
            nonce=uuid.uuid4().hex,
        )
        started = time.monotonic()
        try:
            response = self._session.post(
                f"{self._url}/?{canonical_query(query)}",
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            error = transport_error(verb, exc)
            self._count(verb, error.code, started)
            raise error from None  # the cause's text holds the URL, hence NotifyAuthKey
        if response.status_code < 300:
            answer = _json_object(response.content)
            if answer:
                self._count(verb, "OK", started)
                return answer
            error_type = UnknownOutcome if verb == "start" else Transient
            error = error_type(
                "MalformedAnswer",
                f"HTTP {response.status_code} without a JSON object",
                http_status=response.status_code,
            )
        else:
            error = answer_error(verb, response.status_code, response.content)
        self._count(verb, error.code, started)
        log.debug("%s: %s", ACTIONS[verb], error)
        raise error

    @staticmethod
    def _count(verb: str, code: str, started: float) -> None:
        metrics.CLOUD_CALLS.labels(verb=verb, code=code).inc()
        metrics.CLOUD_CALL_SECONDS.labels(verb=verb).observe(time.monotonic() - started)
