"""In-memory fakes for the executor's and the receiver's unit tables: no server, no network.

- `FakeKube` is the real `rtc_recording.kube.client.Kube` with its one HTTP method, `request`,
  answered by an in-memory apiserver. So `get_recording`, `patch_status`, `mutate_status`,
  `create`, `delete`, `delete_recording`, `list_recordings` and `get_secret`
  are the real code, and the fake only has to get the apiserver's semantics right:
  resourceVersion on every object (bumped by every write that changes something),
  merge-patch (RFC 7386: a null deletes) on `/status` and on metadata (labels, finalizers), with
  the resourceVersion and uid of the body's metadata as preconditions (409 Conflict), 404 for what
  does not exist, 409 on creating a name that exists, DELETE with a uid precondition, 403 NamespaceTerminating for
  what is created in a namespace being deleted. `watch` feeds a real
  `Reflector` from the same store. Every request is kept (`requests`) so a test can assert
  "no write"; `fail` and `before` inject an apiserver failure or another writer's change at
  a chosen request.
- `FakeCloud` is the vendor's service as a dict of tasks, with scripted answers per verb.
  `FakeCloudClients` has the interface of `rtc_recording.cloud.accounts.CloudClients` that the
  executor uses (`account_for`, the four verbs, `reachability`, `secrets`). A scripted answer is
  the outcome of a verb as a whole, after the real client's own retries.
- `World` wires them to a real `Executor` and `Index`, with a clock the test moves.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import itertools
import json as jsonlib
import re
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, unquote

from aiohttp.test_utils import TestClient, TestServer

from rtc_recording.api.callback import callback_headers
from rtc_recording.api.names import (
    CLASS_PLURAL,
    DEFAULT_CLASS_ANNOTATION,
    EVIDENCE_LABEL,
    GROUP,
    PLURAL,
    USAGE_LABEL,
    VERSION,
)
from rtc_recording.api.task import (
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
from rtc_recording.cloud.accounts import CloudUnreachable
from rtc_recording.cloud.budget import Priority
from rtc_recording.cloud.credentials import StaticCredentials
from rtc_recording.cloud.secrets import SecretCache, SecretUnavailable
from rtc_recording.controller.evidence import Worker
from rtc_recording.controller.executor import Executor
from rtc_recording.controller.index import Index
from rtc_recording.decide.classes import account_fields
from rtc_recording.decide.ownership import Sealer
from rtc_recording.kube import errors as k8s
from rtc_recording.kube.client import Kube
from rtc_recording.kube.config import Connection
from rtc_recording.receiver.server import Receiver
from rtc_recording.settings import Settings

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
NS = "ns"
EVIDENCE_NS = "rtcrec-system"
CALLBACK_KEY = "abcdefghijklmnop1234"
CALLBACK_URL = "http://receiver.invalid"
OWNERSHIP_KEY = "ownership0key0of0the0unit0tables0000"


def ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge, a null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _labels_match(selector: str | None, labels: dict) -> bool:
    for term in filter(None, (t.strip() for t in (selector or "").split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


# -- the apiserver -----------------------------------------------------------------------------

_RECORDINGS = re.compile(
    rf"^/apis/{re.escape(GROUP)}/{VERSION}(?:/namespaces/(?P<ns>[^/]+))?/{PLURAL}"
    r"(?:/(?P<name>[^/]+))?(?:/(?P<sub>status))?$"
)
_CORE = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/(?P<kind>configmaps|events|secrets)(?:/(?P<name>[^/]+))?$")
# Cluster-scoped: stored under the namespace "".
_CLUSTER = re.compile(
    rf"^/(?:apis/{re.escape(GROUP)}/{VERSION}/(?P<kind>{CLASS_PLURAL})|api/v1/(?P<core>namespaces))"
    r"(?:/(?P<name>[^/]+))?$"
)


@dataclass
class Request:
    """One request the code under test made, and the HTTP status it got."""

    method: str
    path: str
    body: Any
    kind: str = ""
    namespace: str | None = None
    name: str | None = None
    sub: str | None = None
    code: int = 0

    @property
    def write(self) -> bool:
        return self.method != "GET"


@dataclass
class _Injection:
    method: str
    pattern: re.Pattern
    action: Any
    times: int | None
    skip: int = 0  # matching requests to let pass first
    served: bool = False  # a fault raised after the request was carried out

    def matches(self, request: Request) -> bool:
        if self.method not in (request.method, "*") or not self.pattern.search(request.path):
            return False
        if self.skip > 0:
            self.skip -= 1
            return False
        return True


class FakeKube(Kube):
    """The real Kube over an in-memory apiserver (see the module docstring)."""

    def __init__(self, journal: list | None = None):
        super().__init__(Connection(server="http://fake-apiserver.invalid"))
        self.journal = journal if journal is not None else []
        self.store: dict[tuple[str, str, str], dict] = {}  # (kind, namespace, name) -> object
        self.rv = itertools.count(1000)
        self.last_rv = 999
        self.requests: list[Request] = []
        self.changes: list[tuple[int, str, str, dict]] = []  # (rv, kind, type, object)
        self.listeners: list[Callable[[str, str, dict], None]] = []  # (kind, type, object): a zero-lag watch
        self._faults: list[_Injection] = []
        self._hooks: list[_Injection] = []
        self._watchers: list[asyncio.Queue] = []
        self.terminating: set[str] = set()  # namespaces being deleted: nothing can be created in them

    # -- what tests set up and look at -----------------------------------------------------------
    def fail(
        self,
        method: str,
        pattern: str,
        error: BaseException | Callable[[], BaseException],
        times: int | None = 1,
        skip: int = 0,
        served: bool = False,
    ) -> None:
        """After `skip` matching requests, the next `times` (None: every) fail with `error`, once received
        (`served`: once carried out, as when the apiserver took a write and its answer was lost)."""
        self._faults.append(_Injection(method, re.compile(pattern), error, times, skip, served))

    def before(
        self, method: str, pattern: str, action: Callable[[FakeKube], Any], times: int | None = 1, skip: int = 0
    ) -> None:
        """Run `action` (another actor's change) right before a matching request is served (after `skip`)."""
        self._hooks.append(_Injection(method, re.compile(pattern), action, times, skip))

    def add_recording(self, obj: dict) -> dict:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        meta.setdefault("namespace", NS)
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("generation", 1)
        meta.setdefault("creationTimestamp", ts(NOW))
        obj.setdefault("apiVersion", f"{GROUP}/{VERSION}")
        obj.setdefault("kind", "RtcRecording")
        return self._put(PLURAL, obj, "ADDED")

    def add_secret(self, namespace: str, name: str, values: dict[str, str], usage: str | None = None) -> dict:
        """A Secret; `usage` is the use it opted in to (label rtc.recording.io/usage), if any."""
        labels = {USAGE_LABEL: usage} if usage else {}
        data = {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}
        return self._put(
            "secrets",
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"namespace": namespace, "name": name, "labels": labels or {}, "uid": str(uuid.uuid4())},
                "data": data,
            },
            "ADDED",
        )

    def add_class(
        self, name: str, spec: dict, default: bool = False, generation: int = 1, created: str = "2026-01-01T00:00:00Z"
    ) -> dict:
        """An RtcRecordingClass (cluster-scoped)."""
        meta: dict[str, Any] = {
            "name": name,
            "generation": generation,
            "creationTimestamp": created,
            "uid": str(uuid.uuid4()),
        }
        if default:
            meta["annotations"] = {DEFAULT_CLASS_ANNOTATION: "true"}
        return self._put(
            CLASS_PLURAL,
            {"apiVersion": f"{GROUP}/{VERSION}", "kind": "RtcRecordingClass", "metadata": meta, "spec": spec},
            "ADDED",
        )

    def add_namespace(self, name: str, labels: dict[str, str]) -> dict:
        return self._put(
            "namespaces",
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name, **labels}},
            },
            "ADDED",
        )

    def poke_status(self, namespace: str, name: str, patch: dict) -> dict:
        """Another writer's status change (not a request of the code under test)."""
        obj = self.store[(PLURAL, namespace, name)]
        return self._put(PLURAL, {**obj, "status": merge_patch(obj.get("status") or {}, patch)}, "MODIFIED")

    def edit(self, namespace: str, name: str, change: Callable[[dict], None], kind: str = PLURAL) -> dict:
        """A user's change of spec, metadata or both: generation moves when spec does."""
        obj = copy.deepcopy(self.store[(kind, namespace, name)])
        spec = copy.deepcopy(obj.get("spec"))
        change(obj)
        if obj.get("spec") != spec:
            obj["metadata"]["generation"] += 1
        return self._put(kind, obj, "MODIFIED")

    def remove(self, kind: str, namespace: str, name: str) -> None:
        obj = self.store.pop((kind, namespace, name))
        self._emit(kind, "DELETED", {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(next(self.rv))}})

    def get(self, kind: str, namespace: str, name: str) -> dict | None:
        obj = self.store.get((kind, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def recording(self, name: str, namespace: str = NS) -> dict | None:
        return self.get(PLURAL, namespace, name)

    def all(self, kind: str, namespace: str | None = None) -> list[dict]:
        """In the order they were created (the store keeps it)."""
        return [copy.deepcopy(o) for (k, ns, _), o in self.store.items() if k == kind and namespace in (None, ns)]

    def events_about(self, name: str) -> list[dict]:
        """Events whose involvedObject is the RtcRecording `name`, in the order they were created."""
        return [o for o in self.all("events") if o["involvedObject"]["name"] == name]

    def writes(self, kind: str | None = None) -> list[Request]:
        return [r for r in self.requests if r.write and kind in (None, r.kind)]

    def status_writes(self, name: str | None = None, ok_only: bool = True) -> list[Request]:
        return [
            r
            for r in self.requests
            if r.method == "PATCH" and r.sub == "status" and name in (None, r.name) and (r.code < 300 or not ok_only)
        ]

    # -- the store ---------------------------------------------------------------------------
    def _put(self, kind: str, obj: dict, type_: str) -> dict:
        obj = copy.deepcopy(obj)
        meta = obj["metadata"]
        meta["resourceVersion"] = rv = str(next(self.rv))
        self.last_rv = int(rv)
        self.store[(kind, meta.get("namespace", ""), meta["name"])] = obj
        self._emit(kind, type_, obj)
        return copy.deepcopy(obj)

    def _emit(self, kind: str, type_: str, obj: dict) -> None:
        rv = int(obj["metadata"]["resourceVersion"])
        self.last_rv = max(self.last_rv, rv)
        change = (rv, kind, type_, copy.deepcopy(obj))
        self.changes.append(change)
        for listener in list(self.listeners):
            listener(kind, type_, copy.deepcopy(obj))
        for queue in self._watchers:
            queue.put_nowait(change)

    # -- Kube's one HTTP method, answered here ---------------------------------------------------
    async def request(self, method: str, path: str, *, json: Any = None, content_type: str | None = None) -> dict:
        route, _, query = path.partition("?")
        # Over the wire a body is JSON: enums become strings, and what cannot be serialised fails here too.
        request = Request(method, route, jsonlib.loads(jsonlib.dumps(json)) if json is not None else None)
        if m := _RECORDINGS.match(route):
            request.kind, request.namespace, request.name, request.sub = PLURAL, m["ns"], m["name"], m["sub"]
        elif m := _CORE.match(route):
            request.kind, request.namespace, request.name = m["kind"], m["ns"], m["name"]
        elif m := _CLUSTER.match(route):
            request.kind, request.namespace, request.name = m["kind"] or m["core"], "", m["name"]
        request.namespace = unquote(request.namespace) if request.namespace is not None else None
        request.name = unquote(request.name) if request.name else None
        self.requests.append(request)
        self.journal.append(("kube", method, route + (f"?{query}" if query else "")))
        await asyncio.sleep(0)  # a request is a suspension point, as on the wire
        for hook in self._take(self._hooks, request):
            outcome = hook.action(self)
            if asyncio.iscoroutine(outcome):
                await outcome
        for fault in self._take(self._faults, request):
            if fault.served:
                self._serve(request, parse_qs(query))
            error = fault.action() if callable(fault.action) else fault.action
            request.code = (
                error.status
                if isinstance(error, k8s.ApiError)
                else 404
                if isinstance(error, k8s.NotFound)
                else 409
                if isinstance(error, k8s.Conflict)
                else 599
            )
            raise error
        try:
            result = self._serve(request, parse_qs(query))
        except k8s.NotFound:
            request.code = 404
            raise
        except k8s.Conflict:
            request.code = 409
            raise
        except k8s.ApiError as exc:  # NamespaceTerminating too
            request.code = exc.status
            raise
        request.code = 200
        return result

    @staticmethod
    def _take(injections: list[_Injection], request: Request) -> list[_Injection]:
        taken = []
        for injection in list(injections):
            if injection.matches(request):
                taken.append(injection)
                if injection.times is not None:
                    injection.times -= 1
                    if injection.times <= 0:
                        injections.remove(injection)
                break  # one per request
        return taken

    def _serve(self, r: Request, query: dict[str, list[str]]) -> dict:
        if not r.kind:
            raise k8s.ApiError(404, f"no route for {r.path}")
        if r.name is None:
            if r.method == "GET":
                return self._list(r, query)
            if r.method == "POST" and r.kind in ("configmaps", "events"):
                if r.namespace in self.terminating:
                    raise k8s.NamespaceTerminating(
                        403,
                        '{"kind":"Status","reason":"Forbidden","details":{"causes":'
                        '[{"reason":"NamespaceTerminating"}]}}',
                    )
                return self._create(r)
            raise k8s.ApiError(405, f"{r.method} {r.path}")
        key = (r.kind, r.namespace, r.name)
        obj = self.store.get(key)
        if obj is None and r.kind == "namespaces" and r.method == "GET":
            # Every namespace exists, labelled as the apiserver labels each: add_namespace gives others.
            return {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": r.name, "labels": {"kubernetes.io/metadata.name": r.name}},
            }
        if r.namespace is None or obj is None:
            raise k8s.NotFound(r.path)
        if r.method == "GET":
            return copy.deepcopy(obj)
        if r.method == "DELETE":
            return self._delete(r, obj)
        if r.method == "PATCH":
            return self._patch(r, obj)
        raise k8s.ApiError(405, f"{r.method} {r.path}")

    def _list(self, r: Request, query: dict[str, list[str]]) -> dict:
        items = self.all(r.kind, r.namespace)
        for selector in query.get("fieldSelector", []):
            field_, _, value = selector.partition("=")
            if field_ != "status.taskId":
                raise k8s.ApiError(400, f"field label not supported: {field_}")
            items = [o for o in items if (o.get("status") or {}).get("taskId") == value]
        selector = (query.get("labelSelector") or [None])[0]
        items = [o for o in items if _labels_match(selector, o["metadata"].get("labels") or {})]
        start = int((query.get("continue") or ["0"])[0])
        limit = int((query.get("limit") or ["0"])[0]) or len(items) or 1
        page = items[start : start + limit]
        more = start + limit < len(items)
        return {
            "items": page,
            "metadata": {"resourceVersion": str(self.last_rv), **({"continue": str(start + limit)} if more else {})},
        }

    def _create(self, r: Request) -> dict:
        obj = copy.deepcopy(r.body)
        meta = obj.setdefault("metadata", {})
        meta.setdefault("namespace", r.namespace)
        if meta["namespace"] != r.namespace or not meta.get("name"):
            raise k8s.ApiError(400, "metadata.namespace must match the path, and a name is required")
        if (r.kind, r.namespace, meta["name"]) in self.store:
            raise k8s.Conflict(f"{r.path}/{meta['name']} already exists")
        meta["uid"] = str(uuid.uuid4())
        return self._put(r.kind, obj, "ADDED")

    def _delete(self, r: Request, obj: dict) -> dict:
        uid = ((r.body or {}).get("preconditions") or {}).get("uid")
        if uid is not None and uid != obj["metadata"]["uid"]:
            raise k8s.Conflict(
                f"Precondition failed: UID in precondition: {uid}, UID in object meta: {obj['metadata']['uid']}"
            )
        if obj["metadata"].get("finalizers"):
            if not obj["metadata"].get("deletionTimestamp"):
                obj = {**obj, "metadata": {**obj["metadata"], "deletionTimestamp": ts(NOW)}}
                return self._put(r.kind, obj, "MODIFIED")
            return copy.deepcopy(obj)
        self.remove(r.kind, r.namespace, r.name)
        return {"kind": "Status", "status": "Success"}

    def _patch(self, r: Request, obj: dict) -> dict:
        body = r.body or {}
        preconditions = body.get("metadata") or {}
        current = obj["metadata"]["resourceVersion"]
        if preconditions.get("resourceVersion", current) != current:
            raise k8s.Conflict("the object has been modified; please apply your changes to the latest version")
        if "uid" in preconditions and preconditions["uid"] != obj["metadata"]["uid"]:
            raise k8s.Conflict(f"Precondition failed: UID in precondition: {preconditions['uid']}")
        if r.kind == PLURAL and r.sub == "status":
            # The status subresource: only .status changes; metadata in the body is a precondition.
            new = {**obj, "status": merge_patch(obj.get("status") or {}, body.get("status"))}
        elif r.kind == PLURAL and set(body) != {"metadata"}:
            raise k8s.ApiError(405, "the code under test never patches an RtcRecording's spec")
        else:
            new = merge_patch(obj, {k: v for k, v in body.items() if k != "metadata"})
            if "metadata" in body:
                new["metadata"] = merge_patch(
                    obj["metadata"], {k: v for k, v in body["metadata"].items() if k not in ("resourceVersion", "uid")}
                )
        if new == obj:
            return copy.deepcopy(obj)  # a no-op write does not move resourceVersion
        return self._put(r.kind, new, "MODIFIED")

    # -- watches -----------------------------------------------------------------------------
    async def watch(self, path: str, params: dict[str, str]) -> Any:
        route = path.partition("?")[0]
        if m := _RECORDINGS.match(route):
            kind, namespace = PLURAL, m["ns"]
        elif m := _CORE.match(route):
            kind, namespace = m["kind"], m["ns"]
        elif (m := _CLUSTER.match(route)) and not m["name"]:
            kind, namespace = m["kind"] or m["core"], None
        else:
            raise k8s.ApiError(404, path)
        namespace = unquote(namespace) if namespace else None
        since = int(params.get("resourceVersion") or 0)
        selector = params.get("labelSelector")
        queue: asyncio.Queue = asyncio.Queue()
        self._watchers.append(queue)
        try:
            for change in [c for c in self.changes if c[0] > since]:
                queue.put_nowait(change)
            while True:
                rv, kind_, type_, obj = await queue.get()
                if rv <= since or kind_ != kind or namespace not in (None, obj["metadata"].get("namespace", "")):
                    continue
                since = rv
                if _labels_match(selector, obj["metadata"].get("labels") or {}):
                    yield {"type": type_, "object": copy.deepcopy(obj)}
        finally:
            self._watchers.remove(queue)

    async def streams_lists(self, namespaces: list[str]) -> bool:
        return False

    async def close(self) -> None:
        pass


# -- the cloud ---------------------------------------------------------------------------------


class ProcessDied(BaseException):
    """The operator process was killed here. A BaseException, so no `except Exception` hides it."""


@dataclass(frozen=True)
class Answer:
    """A scripted outcome of one cloud call."""

    kind: str  # ok | error | unknown | crash | died-before-send
    error: CloudError | None = None

    def __repr__(self) -> str:
        return self.kind if self.error is None else f"{self.kind}:{type(self.error).__name__}({self.error.code})"


OK = Answer("ok")
UNKNOWN = Answer("unknown")  # Start: the task is created, the answer is lost (UnknownOutcome)
CRASH = Answer("crash")  # the call is carried out, then the operator dies before it hears back
DIED_BEFORE_SEND = Answer("died-before-send")  # before_send ran, then the operator died: nothing sent


def invalid(code: str = "InvalidParameter.AppId", message: str = "no such app") -> Answer:
    return Answer("error", Invalid(code, message, http_status=400))


def not_found() -> Answer:
    return Answer("error", NotFound("TaskNotFound", "no such task", http_status=404))


def throttled() -> Answer:
    return Answer("error", Throttled("Throttling.User", "request was denied due to user flow control", http_status=400))


def transient() -> Answer:
    return Answer("error", Transient("ServiceUnavailable", "the service is unavailable", http_status=503))


@dataclass
class FakeTask:
    task_id: str
    status: TaskStatus
    account: str  # region/AccessKeyId: another account does not see it
    params: dict = field(default_factory=dict)
    files: RecordFiles = field(default_factory=RecordFiles)
    updates: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class Call:
    verb: str
    arg: str | None  # the task id (None for start)
    account: str
    params: dict | None = None


class FakeCloud:
    """The recording service: tasks by id, and what each verb answers next."""

    def __init__(self, journal: list | None = None):
        self.journal = journal if journal is not None else []
        self.tasks: dict[str, FakeTask] = {}
        self.calls: list[Call] = []
        self.scripts: dict[str, deque[Answer]] = defaultdict(deque)
        self._ids = itertools.count(1)

    def script(self, verb: str, *answers: Answer) -> None:
        """The next calls of `verb` get these answers, in order; then OK."""
        self.scripts[verb].extend(answers)

    def add_task(
        self, status: TaskStatus = TaskStatus.RUNNING, account: str = "cn-shanghai/operator", task_id: str | None = None
    ) -> str:
        task_id = task_id or self._new_id()
        self.tasks[task_id] = FakeTask(task_id, status, account)
        return task_id

    def _new_id(self) -> str:
        return next(t for t in (f"task-{n}" for n in self._ids) if t not in self.tasks)

    def verbs(self) -> list[tuple[str, str | None]]:
        return [(c.verb, c.arg) for c in self.calls]

    def status_of(self, task_id: str) -> TaskStatus | None:
        task = self.tasks.get(task_id)
        return task.status if task else None

    def carry_out(self, account: str, verb: str, args: tuple) -> Any:
        """The service's answer to a call that arrived."""
        if verb == "start":
            task_id = self._new_id()
            self.tasks[task_id] = FakeTask(task_id, TaskStatus.RUNNING, account, dict(args[0]))
            return task_id
        task = self.tasks.get(args[0])
        if task is None or task.account != account:
            raise NotFound("TaskNotFound", f"no task {args[0]}", http_status=404)
        if verb == "describe":
            return TaskInfo(task.task_id, task.status, task.files)
        if task.status not in (TaskStatus.RUNNING, TaskStatus.RECOVERING):
            raise NotFound("TaskNotFound", f"task {task.task_id} is {task.status.value}", http_status=404)
        if verb == "stop":
            task.status = TaskStatus.STOPPED
            return None
        if verb == "update":
            task.updates.append(dict(args[1]))
            return None
        raise AssertionError(f"unknown verb {verb}")


@dataclass
class FakeReachability:
    up: bool = True
    since: datetime | None = None  # when the cloud last came back after an outage


@dataclass(frozen=True)
class FakeAccount:
    key: str  # region/AccessKeyId


class FakeCloudClients:
    """`CloudClients` as the executor uses it, over a FakeCloud."""

    def __init__(self, kube: FakeKube, cloud: FakeCloud, settings: Settings):
        self.kube, self.cloud, self.settings = kube, cloud, settings
        self.reachability = FakeReachability()
        self.secrets = SecretCache(kube)  # the real cache over the fake apiserver
        self._by_secret: dict[tuple[str, str, str], FakeAccount] = {}
        self.start_priorities: list[Priority] = []  # of every start, sent or not

    async def account_for(self, obj: dict) -> FakeAccount:
        region, namespace, secret = account_fields(obj)  # its own, else its pinned class's
        region = region or self.settings.default_region
        if not secret:
            return FakeAccount(f"{region}/operator")
        namespace = namespace or obj["metadata"]["namespace"]
        try:
            data = await self.secrets.credentials(namespace, secret)  # only a Secret that opted in
        except SecretUnavailable as exc:
            # As the real clients: a Secret gone while its task runs, the account last made with it stops it.
            if exc.gone and (known := self._by_secret.get((namespace, secret, region))):
                return known
            raise
        account = FakeAccount(f"{region}/{StaticCredentials.from_secret_data(data).credentials.access_key_id}")
        self._by_secret[(namespace, secret, region)] = account
        return account

    async def start(
        self,
        account: FakeAccount,
        params: dict,
        before_send: Callable[[], Awaitable[None]] | None = None,
        priority: Priority = Priority.START,
    ) -> str:
        self.start_priorities.append(priority)
        return await self._call(account, "start", params, before_send=before_send)

    async def update(self, account: FakeAccount, task_id: str, params: dict) -> None:
        await self._call(account, "update", task_id, params)

    async def stop(self, account: FakeAccount, task_id: str) -> None:
        await self._call(account, "stop", task_id)

    async def describe(self, account: FakeAccount, task_id: str) -> TaskInfo:
        return await self._call(account, "describe", task_id)

    async def _call(
        self, account: FakeAccount, verb: str, *args: Any, before_send: Callable[[], Awaitable[None]] | None = None
    ) -> Any:
        if not self.reachability.up:
            raise CloudUnreachable("CloudUnreachable", "the cloud has not answered recently; not sent")
        answer = self.cloud.scripts[verb].popleft() if self.cloud.scripts[verb] else OK
        await asyncio.sleep(0)  # waiting for the quota slot
        if before_send is not None:
            await before_send()  # raises: nothing is sent
        if answer is DIED_BEFORE_SEND:
            raise ProcessDied(f"{verb}: died after the write-ahead, before sending")
        self.cloud.calls.append(
            Call(
                verb,
                None if verb == "start" else args[0],
                account.key,
                dict(args[-1]) if verb in ("start", "update") else None,
            )
        )
        self.cloud.journal.append(("cloud", verb, None if verb == "start" else args[0]))
        await asyncio.sleep(0)  # on the wire
        if answer.kind == "error":
            raise answer.error
        result = self.cloud.carry_out(account.key, verb, args)
        if answer is UNKNOWN:
            raise UnknownOutcome("ReadTimeout", "no answer within the read timeout")
        if answer is CRASH:
            raise ProcessDied(f"{verb} carried out, the operator died before the answer was used")
        return result


# -- the world of one test ---------------------------------------------------------------------


class Clock:
    def __init__(self, now: datetime = NOW):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        callback_url=CALLBACK_URL,
        callback_auth_key=CALLBACK_KEY,
        ownership_key=OWNERSHIP_KEY,
        evidence_namespace=EVIDENCE_NS,
        default_region="cn-shanghai",
        unknown_outcome_grace_seconds=30,
        backoff_base_seconds=1,
        backoff_max_seconds=300,
    )
    values.update(overrides)
    return Settings(**values)


BASE_SPEC: dict[str, Any] = {
    "appId": "demo-app",
    "channelId": "standup-42",
    "region": "cn-shanghai",
    "mode": "Mixed",
    "subscribers": [{"userId": "alice"}, {"userId": "bob"}],
    "storage": {"oss": {"endpoint": "oss-cn-shanghai.aliyuncs.com", "bucket": "demo-recordings"}},
    "transcode": {
        "audioBitrateKbps": 64,
        "audioChannels": 1,
        "audioSampleRateHz": 48000,
        "videoBitrateKbps": 1200,
        "videoFramerate": 15,
        "videoGop": 30,
    },
    "layout": {
        "panes": [
            {"userId": "alice", "left": "0", "top": "0", "width": "0.5", "height": "1"},
            {"userId": "bob", "left": "0.5", "top": "0", "width": "0.5", "height": "1"},
        ]
    },
}


def recording(
    name: str = "rec",
    *,
    status: dict | None = None,
    generation: int = 1,
    uid: str | None = None,
    annotations: dict | None = None,
    finalizers: list[str] | None = None,
    **spec: Any,
) -> dict:
    """An RtcRecording: BASE_SPEC with `spec` merged over it (a None value removes a field)."""
    meta: dict[str, Any] = {
        "namespace": NS,
        "name": name,
        "generation": generation,
        "uid": uid or str(uuid.uuid5(uuid.NAMESPACE_URL, name)),
    }
    if annotations:
        meta["annotations"] = annotations
    if finalizers:
        meta["finalizers"] = finalizers
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RtcRecording",
        "metadata": meta,
        "spec": merge_patch(BASE_SPEC, spec),
        "status": status or {},
    }


class World:
    """One apiserver, one cloud, one operator process (restartable) with a clock the test moves."""

    def __init__(self, settings: dict | None = None, now: datetime = NOW):
        self.journal: list[tuple] = []
        self.clock = Clock(now)
        self.kube = FakeKube(self.journal)
        self.cloud = FakeCloud(self.journal)
        self.settings = make_settings(**(settings or {}))
        self._feed: Callable | None = None
        self.start_operator()

    def start_operator(self) -> Executor:
        """A (re)started operator: a new index listed from the apiserver, new clients, a new Executor.
        The apiserver and the cloud keep their state: that is all that survives a crash."""
        if self._feed is not None:
            self.kube.listeners.remove(self._feed)
        index = Index(Sealer(self.settings.ownership_secret()))
        for obj in self.kube.all(PLURAL):
            index.saw("ADDED", obj)

        def feed(kind: str, type_: str, obj: dict) -> None:  # the operator's watch, with no lag
            if kind == PLURAL:
                index.saw(type_, obj)

        self._feed = feed
        self.kube.listeners.append(feed)
        self.index = index
        self.clients = FakeCloudClients(self.kube, self.cloud, self.settings)
        # The Lease's mark as the last leader left it: Events it stamped earlier were posted (leader.py).
        mark = self.executor.writes.posted_before() if getattr(self, "executor", None) else ""
        self.executor = Executor(self.kube, self.clients, self.settings, index, clock=self.clock, previous_mark=mark)
        return self.executor

    def add(self, obj: dict, sealed: bool = True) -> dict:
        """An RtcRecording as the operator left it: a task id in status carries its seal (unless not `sealed`:
        someone else wrote it)."""
        return self.kube.add_recording(self.seal(obj) if sealed else obj)

    def seal(self, obj: dict) -> dict:
        status = obj.get("status") or {}
        if not status.get("taskId") or status.get("taskSeal"):
            return obj
        return {**obj, "status": {**status, **self.index.sealer.sealed(obj, {"taskId": status["taskId"]})}}

    def poke(self, patch: dict, name: str = "rec") -> dict:
        """The operator's own concurrent write (another handler, the evidence worker): its task id sealed."""
        obj = self.kube.recording(name)
        assert obj is not None
        return self.kube.poke_status(NS, name, self.index.sealer.sealed(obj, patch) or patch)

    def body(self, name: str = "rec") -> dict:
        """The object as Kopf would hand it to a handler: what the apiserver has now."""
        obj = self.kube.recording(name)
        assert obj is not None, f"{name} does not exist"
        return obj

    def status(self, name: str = "rec") -> dict:
        obj = self.kube.recording(name)
        return (obj or {}).get("status") or {}

    def events(self, name: str = "rec") -> list[tuple[str, str]]:
        return [(e["type"], e["reason"]) for e in self.kube.events_about(name)]


async def until(condition: Callable[[], bool], timeout: float = 2.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


# -- callbacks: the receiver and the operator's evidence worker around a World -----------------


def callback_body(
    task_id: str, event: str, app_id: str = "demo-app", channel_id: str = "standup-42", **payload: Any
) -> dict:
    return {
        "appId": app_id,
        "channelId": channel_id,
        "taskId": task_id,
        "eventType": event,
        "payload": jsonlib.dumps(payload),
    }


class Callbacks:
    """The receiver, served on loopback, watching the World's apiserver with no lag, and the
    operator's evidence worker feeding the World's executor (`restart` after `start_operator`)."""

    def __init__(self, world: World, settle_seconds: float = 0.05):
        self.world, self.settle_seconds = world, settle_seconds
        self.worker: Worker | None = None
        self._worker_task: asyncio.Task | None = None

    async def __aenter__(self) -> Callbacks:
        kube = self.world.kube
        self.receiver = Receiver(
            kube, CALLBACK_KEY, EVIDENCE_NS, settle_seconds=self.settle_seconds, defer_seconds=self.settle_seconds
        )
        for obj in kube.all(PLURAL):
            self.receiver.on_change("ADDED", obj)
        kube.listeners.append(self._watch)
        self.client = TestClient(TestServer(self.receiver.app()))
        await self.client.start_server()
        self.restart()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stop_worker()
        self.world.kube.listeners.remove(self._watch)
        await self.client.close()

    def _watch(self, kind: str, type_: str, obj: dict) -> None:
        if kind == PLURAL:
            self.receiver.on_change(type_, obj)

    async def _stop_worker(self) -> None:
        if self._worker_task is not None:
            self._worker_task.cancel()
            await asyncio.gather(self._worker_task, return_exceptions=True)

    def restart(self) -> None:
        """The operator's evidence worker, for the World's current executor (as handlers.startup wires it)."""
        if self._worker_task is not None:
            self._worker_task.cancel()
        self.worker = Worker(self.world.kube, EVIDENCE_NS, self.world.executor.act_on, workers=1, retry_seconds=0.01)
        self.world.executor.ctx.evidence_waiting = self.worker.waiting
        self._worker_task = asyncio.create_task(self.worker.run())

    def kill_worker_at(self, method: str, pattern: str, skip: int = 0) -> None:
        """The operator dies as the worker's matching request leaves: it is never served."""

        def killed() -> BaseException:
            assert self._worker_task is not None
            self._worker_task.cancel()
            return asyncio.CancelledError()

        self.world.kube.fail(method, pattern, killed, skip=skip)

    def worker_dead(self) -> bool:
        return self._worker_task is not None and self._worker_task.done()

    async def send(self, task_id: str, event: str, path: str | None = None, **payload: Any) -> int:
        """What the cloud sends for `task_id`: to the NotifyUrl its Start carried, signed with its key."""
        params = self.world.cloud.tasks[task_id].params
        path = path or "/" + params["NotifyUrl"].split("/", 3)[3]
        headers = callback_headers(params["NotifyAuthKey"], time.time())
        resp = await self.client.post(path, json=callback_body(task_id, event, **payload), headers=headers)
        await self.receiver.drain()  # a deferred start callback decided (and recorded) as well
        return resp.status

    def evidence(self) -> list[dict]:
        return [c for c in self.world.kube.all("configmaps", EVIDENCE_NS) if EVIDENCE_LABEL in c["metadata"]["labels"]]

    async def settled(self, timeout: float = 2.0) -> None:
        """Every evidence ConfigMap acted on and deleted."""
        await until(
            lambda: not self.evidence() and self.worker is not None and not self.worker.items,
            timeout,
            "the evidence worker to act on every ConfigMap",
        )
