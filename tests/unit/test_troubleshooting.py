"""docs/troubleshooting.md has a section for every phase and reason the operator can write: the
reasons are collected from the code itself, its reason constants by import and the literal ones
(Event reasons, condition reasons, status.reason values) from its source, so a new reason without a
section fails here. Warning Events link to the section."""

from __future__ import annotations

import ast
import asyncio
import importlib
import inspect
import pkgutil
import re
from enum import Enum
from pathlib import Path

import rtc_recording
from rtc_recording.api.names import troubleshooting
from rtc_recording.api.recording import Phase
from rtc_recording.kube.events import EventRecorder

from .fakes import FakeKube

PACKAGE = Path(rtc_recording.__file__).parent
PAGE = PACKAGE.parents[1] / "docs" / "troubleshooting.md"
DEVELOPMENT = ("emulator", "cluster")  # the vendor's side and the test tools write no status
EVENT_TYPES = {"Warning", "Normal"}


def runtime_modules():
    for info in pkgutil.walk_packages(rtc_recording.__path__, "rtc_recording."):
        if info.name.split(".")[1] not in DEVELOPMENT and not info.name.endswith("__main__"):
            yield importlib.import_module(info.name)


def imported_reasons() -> set[str]:
    """Every class named Reason (an enum or a namespace of constants) and every REASON constant."""
    found = {p.value for p in Phase}
    for module in runtime_modules():
        for name, value in vars(module).items():
            if inspect.isclass(value) and value.__name__ == "Reason" and value.__module__ == module.__name__:
                found |= {
                    v.value if isinstance(v, Enum) else v
                    for k, v in vars(value).items()
                    if not k.startswith("_") and isinstance(v, str)
                }
            elif (name == "REASON" or name.endswith("_REASON")) and isinstance(value, str):
                found.add(value)
    return found


def _strings(node: ast.AST | None) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        return _strings(node.body) + _strings(node.orelse)
    return []


def literal_reasons() -> set[str]:
    """Reasons spelt as literals: event=(type, "X"), X.record/event(obj, type, "X", ...), the reason and
    condition reason of patches.transition and patches.condition, {"reason": "X"}, and a default of a
    parameter named code or reason."""
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        if path.relative_to(PACKAGE).parts[0] in DEVELOPMENT:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                args = node.args
                for kw in node.keywords:
                    if kw.arg == "event" and isinstance(kw.value, ast.Tuple) and len(kw.value.elts) == 2:
                        if set(_strings(kw.value.elts[0])) <= EVENT_TYPES:
                            found.update(_strings(kw.value.elts[1]))
                if (
                    name in ("record", "event")
                    and len(args) >= 3
                    and _strings(args[1])
                    and set(_strings(args[1])) <= EVENT_TYPES
                ):
                    found.update(_strings(args[2]))
                if name == "transition":
                    found.update(s for a in args[2:3] + args[6:7] for s in _strings(a))
                if name == "condition" and len(args) >= 4:
                    found.update(_strings(args[3]))
            elif isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if key is not None and _strings(key) == ["reason"]:
                        found.update(_strings(value))
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                positional = node.args.posonlyargs + node.args.args
                for arg, default in zip(
                    positional[len(positional) - len(node.args.defaults) :], node.args.defaults, strict=True
                ):
                    if arg.arg in ("code", "reason"):
                        found.update(_strings(default))
    return found


def anchors() -> set[str]:
    """The page's headings as GitHub makes their anchors (lower case, spaces to hyphens, no punctuation)."""
    headings = re.findall(r"^#{2,4} (.+)$", PAGE.read_text(), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_the_collectors_find_what_the_code_writes():
    """A collector that found nothing would pass the test below vacuously."""
    assert {"TaskLost", "ClassNotFound", "TaskNotProven", "InvalidSchedule", "InvalidClass"} <= imported_reasons()
    assert {"StopFailed", "UpdateRefused", "StartRefused", "StopAbandoned", "RelayFailed"} <= literal_reasons()


def test_every_phase_and_reason_has_a_section():
    reasons = imported_reasons() | literal_reasons()
    missing = sorted(r for r in reasons if troubleshooting(r).split("#")[1] not in anchors())
    assert missing == [], f"docs/troubleshooting.md has no section on: {missing}"
    assert troubleshooting("InvalidParameter.AppId") == "docs/troubleshooting.md#cloud-error-codes"
    assert {"cloud-error-codes", "class-status"} <= anchors()  # linked from the page, the CRD and the code


def test_the_page_s_own_links_resolve():
    links = set(re.findall(r"\]\(#([^)]+)\)", PAGE.read_text()))
    assert links - anchors() == set()


def test_a_warning_event_links_its_section_and_a_normal_one_does_not():
    kube = FakeKube()
    obj = kube.add_recording(
        {"metadata": {"name": "rec", "namespace": "default"}, "spec": {}, "status": {"taskId": "t-1"}}
    )
    events = EventRecorder(kube)
    asyncio.run(events.record(obj, "Warning", "TaskLost", "the cloud no longer knows task t-1", key="a"))
    asyncio.run(events.record(obj, "Normal", "Started", "recording as task t-1", key="b"))
    asyncio.run(events.record(obj, "Warning", "StopFailed", "x" * 2000, key="c"))
    by_reason = {e["reason"]: e["message"] for e in kube.events_about("rec")}
    assert by_reason["TaskLost"] == "the cloud no longer knows task t-1 (see docs/troubleshooting.md#tasklost)"
    assert by_reason["Started"] == "recording as task t-1"
    assert len(by_reason["StopFailed"]) == 1024 and by_reason["StopFailed"].endswith("#stopfailed)")
