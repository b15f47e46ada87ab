"""The HTTP face: the vendor API at `/` and the control API under `/_emulator/`.

Thin: routes parse, call the pure parts (signing, validation, tasks) and answer. Every
request first brings the task engine up to the current emulated time; so does a
background tick, so that timeouts and callbacks happen with nobody calling.

Request size: the SDK puts every parameter in the query string, and the page allows many
2048-character URLs (NotifyUrl, MixBackground and every pane's SubBackground), which
percent-encoded can take three bytes a character. The API accepts a request target (path
and query) of up to MAX_REQUEST_TARGET bytes (256 KiB: NotifyUrl and 40 such URLs fully
encoded) and answers a larger one with a vendor-shaped 400 `RequestTooLarge`; aiohttp's
own parser (which would answer a bare text 400) is raised to PARSER_MAX_LINE (8 MiB) for
the request line and PARSER_MAX_FIELD (64 KiB) for a header.
"""

from __future__ import annotations

import asyncio
import random
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from .callbacks import Dispatcher
from .clock import Clock
from .config import DEFAULT_REGION, EmulatorConfig, FaultKnobs
from .errors import ApiError
from .faults import Faults, Hang
from .keys import Credential, KeyStore
from .objects import find
from .oss import OssError, error_xml, verify_presigned
from .quota import Quota
from .signing import NonceCache, SignedRequest, verify
from .stats import OK, CallStats
from .tasks import DEFAULT_ACCOUNT, Engine
from .validation import Account, require_task_id, validate_start, validate_update
from .wire import decode_params, error_body

API_VERSION = "2016-11-01"
START = "StartRtcCloudRecording"
_VENDOR_HOST = re.compile(r"^live(?:\.([a-z0-9-]+))?\.aliyuncs\.com(?::\d+)?$")
_OSS_HOST = re.compile(r"^oss-([a-z0-9-]+?)(?:-internal)?\.aliyuncs\.com(?::\d+)?$")
MAX_REQUEST_TARGET = 256 * 1024  # bytes of path and query the API accepts; beyond: RequestTooLarge
PARSER_MAX_LINE = 8 * 1024 * 1024  # aiohttp's limits, far above: what lies between gets a vendor answer
PARSER_MAX_FIELD = 64 * 1024


class Emulator:
    """One emulated service (its accounts, tasks and knobs): the state behind both APIs."""

    def __init__(self, config: EmulatorConfig):
        self.config = config
        self.clock = Clock(config.time_scale)
        self.dispatcher = Dispatcher(
            self.clock,
            enabled=lambda: self.knobs.callbacks,
            timeout=config.callback_timeout_seconds,
            retry_delay=config.callback_retry_delay_seconds,
            payload_as_string=config.callback_payload_as_string,
        )
        self.hang = Hang(self.clock.monotonic)
        self.stats = CallStats()
        self._reverts: list[asyncio.TimerHandle] = []
        self.reset()

    def reset(self) -> None:
        """Back to the configured state (the clock keeps its time)."""
        config = self.config
        for revert in self._reverts:
            revert.cancel()
        self._reverts.clear()
        self.hang.end()
        self.hang.held = 0
        self.stats.reset()
        self.knobs = FaultKnobs(**config.model_dump(include=set(FaultKnobs.model_fields)))
        self.keys = KeyStore(config.access_keys, config.sts_tokens, config.sts_expires_at)
        self.accounts = dict(config.accounts)
        self.nonces = NonceCache()
        self.quota = Quota(self.knobs.quota_per_second)
        self.faults = Faults(self.knobs, config.seed)
        self._ids = random.Random(f"{config.seed}:ids")
        self.engine = Engine(
            new_id=self.new_id,
            open_channels=config.open_channels,
            stopping_seconds=config.stopping_seconds,
            max_duration=config.max_duration_seconds,
            retention=config.retention_seconds,
        )
        self.dispatcher.clear()

    def new_id(self) -> str:
        return str(uuid.UUID(int=self._ids.getrandbits(128), version=4))

    def set_faults(self, changes: dict[str, Any], revert_after: float | None = None) -> None:
        """Change knobs; with `revert_after` (real seconds) each changed knob goes back to its
        previous value then, unless it was changed again meanwhile."""
        before = self.knobs.model_dump()
        self.knobs = FaultKnobs.model_validate(before | changes)
        self.faults.knobs = self.knobs
        self.quota.limit = self.knobs.quota_per_second
        if revert_after is not None:
            after = self.knobs.model_dump()
            set_now = {k: after[k] for k in changes}
            previous = {k: before[k] for k in changes}

            def revert() -> None:
                current = self.knobs.model_dump()
                self.set_faults({k: v for k, v in previous.items() if current[k] == set_now[k]})

            loop = asyncio.get_running_loop()
            self._reverts = [h for h in self._reverts if not h.cancelled() and h.when() > loop.time()]
            self._reverts.append(loop.call_later(revert_after, revert))

    def account_of(self, credential: Credential) -> str:
        return self.accounts.get(credential.access_key_id, DEFAULT_ACCOUNT)

    def stats_view(self) -> dict[str, Any]:
        live: dict[str, list[str]] = {}
        for task in self.engine.live():
            live.setdefault(task.account, []).append(task.task_id)
        return self.stats.view() | {
            "liveTasks": {"total": sum(map(len, live.values())), "byAccount": live},
            "callbacks": self.dispatcher.counts(),
            "hang": self.hang.view(),
        }

    def account(self, host: str) -> Account:
        # a vendor endpoint name says its region; anything else (loopback) is the configured one
        match = _VENDOR_HOST.match(host)
        region = (match.group(1) or DEFAULT_REGION) if match else self.config.region
        return Account(region, frozenset(self.config.apps), frozenset(self.config.oss_buckets), self.config.strict_ids)

    def oss_region(self, host: str) -> str:
        # as for the API: an OSS endpoint name says its region; loopback is the configured one
        match = _OSS_HOST.match(host)
        return match.group(1) if match else self.config.region

    def tick(self) -> None:
        self.engine.advance(self.clock.now())
        self.dispatcher.submit(self.engine.drain())


EMULATOR = web.AppKey("emulator", Emulator)


def create_app(config: EmulatorConfig) -> web.Application:
    app = web.Application(handler_args={"max_line_size": PARSER_MAX_LINE, "max_field_size": PARSER_MAX_FIELD})
    app[EMULATOR] = Emulator(config)
    app.router.add_route("GET", "/", _api)
    app.router.add_route("POST", "/", _api)
    for method, path, handler in _CONTROL_ROUTES:
        app.router.add_route(method, f"/_emulator{path}", _control(handler))
    app.router.add_route("GET", "/{bucket}/{key:.+}", _oss_object)  # OSS, path-style; HEAD too
    app.cleanup_ctx.append(_background)
    return app


async def _background(app: web.Application) -> AsyncIterator[None]:
    emulator = app[EMULATOR]
    await emulator.dispatcher.open()

    async def tick_forever() -> None:
        while True:
            emulator.tick()
            await asyncio.sleep(emulator.config.tick_seconds)

    ticker = asyncio.create_task(tick_forever())
    yield
    emulator.hang.end()  # held calls finish rather than being destroyed pending
    ticker.cancel()
    await asyncio.gather(ticker, return_exceptions=True)
    await emulator.dispatcher.close()


# ---- the vendor API


async def _api(request: web.Request) -> web.StreamResponse:
    # shielded: a call the caller gave up on (a timeout during a hang or latency) still happens
    answer = asyncio.ensure_future(_answer(request))
    answer.add_done_callback(lambda done: done.cancelled() or done.exception())
    return await asyncio.shield(answer)


async def _answer(request: web.Request) -> web.StreamResponse:
    emulator = request.app[EMULATOR]
    body = await request.read()
    # judged on arrival, as a gateway in front of a hung service would: the signature's freshness
    # and the quota (held calls were admitted when they came, and run when the hang ends)
    received, arrived = emulator.clock.wall(), emulator.clock.monotonic()
    await emulator.hang.hold()
    if emulator.knobs.latency_seconds:
        await asyncio.sleep(emulator.knobs.latency_seconds)
    request_id = str(uuid.uuid4()).upper()  # not from the seeded stream: task ids replay whatever the traffic
    host = request.headers.get("Host", "")
    query = list(request.query.items())
    action = dict(query).get("Action") or request.headers.get("x-acs-action")
    key = None
    code = OK
    try:
        if len(request.raw_path) > MAX_REQUEST_TARGET:
            emulator.stats.too_large += 1
            raise ApiError(
                "RequestTooLarge",
                f"Its path and query take {len(request.raw_path)} bytes; at most {MAX_REQUEST_TARGET} are accepted.",
            )
        signed = SignedRequest(request.method, request.path, query, request.headers, body)
        credential = verify(signed, emulator.keys, emulator.nonces, received)
        key = credential.access_key_id
        if action is None or (handler := _ACTIONS.get(action)) is None:
            raise ApiError("InvalidAction.NotFound", f"Action {action!r}.")
        params = dict(query)
        version = params.get("Version") or request.headers.get("x-acs-version")
        if version != API_VERSION:
            raise ApiError("InvalidVersion", f"Version {version!r}, expected {API_VERSION}.")
        if not emulator.quota.allow(credential.access_key_id, arrived):
            raise ApiError("Throttling.User", "", status=emulator.knobs.throttle_status)
        if injected := emulator.faults.server_error(action):
            raise ApiError(injected, "(injected)")
        answer = handler(emulator, decode_params(query), credential, host)
    except ApiError as error:
        code = error.code
        return web.json_response(
            error_body(error, request_id, host), status=error.status, headers={"x-acs-request-id": request_id}
        )
    finally:
        emulator.stats.record(action, key, code, request.headers.get("User-Agent", ""))
        emulator.dispatcher.submit(emulator.engine.drain())
    if action == START and emulator.faults.drop_start():
        # the task exists and runs; the caller gets a closed connection and no answer
        emulator.stats.dropped_starts += 1
        if request.transport is not None:
            request.transport.close()
    return web.json_response({"RequestId": request_id, **answer}, headers={"x-acs-request-id": request_id})


def _start(emulator: Emulator, params: dict[str, Any], credential: Credential, host: str) -> dict[str, Any]:
    spec = validate_start(params, emulator.account(host))
    task = emulator.engine.start(
        spec, credential.access_key_id, emulator.clock.now(), account=emulator.account_of(credential)
    )
    return {"TaskId": task.task_id}


def _stop(emulator: Emulator, params: dict[str, Any], credential: Credential, host: str) -> dict[str, Any]:
    emulator.engine.stop(require_task_id(params), emulator.clock.now(), emulator.account_of(credential))
    return {}


def _update(emulator: Emulator, params: dict[str, Any], credential: Credential, host: str) -> dict[str, Any]:
    now = emulator.clock.now()
    account = emulator.account_of(credential)
    task = emulator.engine.running(require_task_id(params), now, account)
    spec = validate_update(params, task.spec, emulator.account(host))
    emulator.engine.update(task.task_id, spec, now, account)
    return {}


def _describe(emulator: Emulator, params: dict[str, Any], credential: Credential, host: str) -> dict[str, Any]:
    return {
        "TaskInfo": emulator.engine.describe(
            require_task_id(params), emulator.clock.now(), emulator.account_of(credential)
        )
    }


_ACTIONS: dict[str, Callable[[Emulator, dict[str, Any], Credential, str], dict[str, Any]]] = {
    START: _start,
    "StopRtcCloudRecording": _stop,
    "UpdateRtcCloudRecording": _update,
    "DescribeRtcCloudRecordingFiles": _describe,
}


# ---- OSS: the objects the tasks wrote, behind presigned links (oss.py, objects.py)


async def _oss_object(request: web.Request) -> web.StreamResponse:
    emulator = request.app[EMULATOR]
    emulator.tick()
    request_id = uuid.uuid4().hex.upper()[:24]
    host = request.headers.get("Host", "")
    bucket, key = request.match_info["bucket"], request.match_info["key"]
    try:
        if bucket not in emulator.config.oss_buckets:
            raise OssError(404, "NoSuchBucket", "The specified bucket does not exist.", BucketName=bucket)
        verify_presigned(
            request.method,
            bucket,
            key,
            list(request.query.items()),
            request.headers,
            emulator.keys,
            emulator.oss_region(host),
            emulator.clock.links(),
            emulator.clock.wall(),
        )
        stored = find(emulator.engine, bucket, key, emulator.clock.now())
        if stored is None:
            raise OssError(404, "NoSuchKey", "The specified key does not exist.", Key=key)
    except OssError as error:
        return web.Response(
            status=error.status,
            body=error_xml(error, request_id, host),
            content_type="application/xml",
            headers={"x-oss-request-id": request_id},
        )
    finally:
        emulator.dispatcher.submit(emulator.engine.drain())
    return web.Response(body=stored.body, content_type=stored.content_type, headers={"x-oss-request-id": request_id})


# ---- the control API (JSON in, JSON out)

Handler = Callable[[Emulator, dict[str, Any], web.Request], Any]


def _control(handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def route(request: web.Request) -> web.Response:
        emulator = request.app[EMULATOR]
        try:
            data = await request.json() if request.can_read_body else {}
            emulator.tick()
            result = handler(emulator, data or {}, request)
        except ApiError as error:
            status = 404 if error.code == "NotFound.Task" else 409
            return web.json_response({"error": error.code, "message": error.message}, status=status)
        except KeyError as error:
            return web.json_response({"error": "NotFound", "message": str(error.args[0])}, status=404)
        except (ValueError, TypeError, ValidationError) as error:
            return web.json_response({"error": "BadRequest", "message": str(error)}, status=400)
        finally:
            emulator.dispatcher.submit(emulator.engine.drain())
        return web.json_response(result if result is not None else {"ok": True})

    return route


def _health(emulator: Emulator, data: dict[str, Any], request: web.Request) -> Any:
    return {
        "ok": True,
        "now": emulator.clock.now(),
        "region": emulator.config.region,
        "timeScale": emulator.clock.time_scale,
    }


def _reset(emulator: Emulator, data: dict[str, Any], request: web.Request) -> Any:
    emulator.reset()


def _advance(emulator: Emulator, data: dict[str, Any], request: web.Request) -> Any:
    now = emulator.clock.advance(float(data["seconds"]))
    emulator.engine.advance(now)
    return {"now": now}


def _channels(emulator: Emulator, data: dict[str, Any], request: web.Request) -> Any:
    return {"channels": emulator.engine.channel_view()}


def _channel_action(verb: str, default_tracks: tuple[str, ...] | None) -> Handler:
    def handle(emulator: Emulator, data: dict[str, Any], request: web.Request) -> Any:
        args = [data["appId"], data["channelId"], data["userId"]]
        if default_tracks is not None:
            args.append(data.get("tracks", default_tracks))
        getattr(emulator.engine, verb)(*args, emulator.clock.now())

    return handle


def _tasks(emulator: Emulator, data: dict[str, Any], request: web.Request) -> Any:
    now = emulator.clock.now()
    wanted = {
        k: request.query[k] for k in ("appId", "channelId", "status", "account", "accessKeyId") if k in request.query
    }
    views = [emulator.engine.task_view(t, now) for t in emulator.engine.tasks.values()]
    return {"tasks": [v for v in views if all(v[k] == value for k, value in wanted.items())]}


def _task(emulator: Emulator, data: dict[str, Any], request: web.Request) -> Any:
    task = emulator.engine.tasks[request.match_info["task_id"]]
    return emulator.engine.task_view(task, emulator.clock.now())


def _recover(emulator: Emulator, data: dict[str, Any], request: web.Request) -> Any:
    emulator.engine.recover(request.match_info["task_id"], float(data["seconds"]), emulator.clock.now())


def _vanish(emulator: Emulator, data: dict[str, Any], request: web.Request) -> Any:
    emulator.engine.vanish(request.match_info["task_id"], emulator.clock.now())


def _faults(emulator: Emulator, data: dict[str, Any], request: web.Request) -> Any:
    if request.method == "POST":
        changes = dict(data)
        revert_after = changes.pop("revert_after_seconds", None)
        if revert_after is not None and not float(revert_after) > 0:
            raise ValueError("revert_after_seconds must be > 0")
        emulator.set_faults(changes, None if revert_after is None else float(revert_after))
    return emulator.knobs.model_dump()


def _hang(emulator: Emulator, data: dict[str, Any], request: web.Request) -> Any:
    if request.method == "POST":
        emulator.hang.start(float(data["seconds"]))
    return emulator.hang.view()


def _stats(emulator: Emulator, data: dict[str, Any], request: web.Request) -> Any:
    return emulator.stats_view()


def _stats_reset(emulator: Emulator, data: dict[str, Any], request: web.Request) -> Any:
    emulator.stats.reset()
    emulator.dispatcher.reset_counts()
    emulator.hang.held = 0
    return emulator.stats_view()


def _callbacks(emulator: Emulator, data: dict[str, Any], request: web.Request) -> Any:
    if request.method == "POST":
        emulator.set_faults({"callbacks": bool(data["enabled"])})
    return {
        "enabled": emulator.knobs.callbacks,
        "counts": emulator.dispatcher.counts(),
        "deliveries": list(emulator.dispatcher.log),
    }


def _credentials(emulator: Emulator, data: dict[str, Any], request: web.Request) -> Any:
    accounts = data.get("accounts", {})
    if not isinstance(accounts, dict) or not all(isinstance(v, str) and v for v in accounts.values()):
        raise ValueError("accounts must map AccessKeyIds to account names")
    emulator.keys.update(
        access_keys=data.get("access_keys", {}),
        sts_tokens={k: tuple(v) for k, v in data.get("sts_tokens", {}).items()},
        sts_expires_at=data.get("sts_expires_at", {}),
        revoke=data.get("revoke", ()),
    )
    emulator.accounts.update(accounts)


_CONTROL_ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/health", _health),
    ("POST", "/reset", _reset),
    ("POST", "/advance", _advance),
    ("GET", "/channels", _channels),
    ("POST", "/channels/join", _channel_action("join", ("audio", "camera"))),
    ("POST", "/channels/leave", _channel_action("leave", None)),
    ("POST", "/channels/publish", _channel_action("publish", ("audio", "camera"))),
    ("POST", "/channels/unpublish", _channel_action("unpublish", ("audio", "camera", "screen"))),
    ("GET", "/tasks", _tasks),
    ("GET", "/tasks/{task_id}", _task),
    ("POST", "/tasks/{task_id}/recover", _recover),
    ("POST", "/tasks/{task_id}/vanish", _vanish),
    ("GET", "/faults", _faults),
    ("POST", "/faults", _faults),
    ("GET", "/callbacks", _callbacks),
    ("GET", "/hang", _hang),
    ("POST", "/hang", _hang),
    ("GET", "/stats", _stats),
    ("POST", "/stats/reset", _stats_reset),
    ("POST", "/callbacks", _callbacks),
    ("POST", "/credentials", _credentials),
]
