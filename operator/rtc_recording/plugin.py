"""`kubectl rtcrec` (installed as `kubectl-rtcrec`): the recordings of a namespace as a person asks
about them. It talks to the apiserver with the user's kubeconfig and rights, like kubectl.

    kubectl rtcrec files NAME        the files (OSS object keys, VOD media ids) of the current and past tasks
    kubectl rtcrec history NAME      every task the recording had: start, end, why it ended
    kubectl rtcrec stop NAME         suspend it (spec.suspend: true); for a schedule: no new runs
    kubectl rtcrec resume NAME       spec.suspend: false (a recording starts a new task)
    kubectl rtcrec run-now SCHEDULE  one run of an RtcRecordingSchedule, now

with -n/--namespace, --context, --kubeconfig and -o json|yaml, as kubectl has them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from typing import Any

import yaml

from rtc_recording.api.names import GROUP, PLURAL, recording_path, schedule_path
from rtc_recording.api.recording import TERMINAL
from rtc_recording.decide import schedules
from rtc_recording.kube.client import Kube
from rtc_recording.kube.config import Connection, kubeconfig_paths
from rtc_recording.kube.errors import KubeError, NotFound


def _kubeconfig(flag: str | None) -> str:
    return flag or kubeconfig_paths()  # every file of $KUBECONFIG, merged as kubectl merges them


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "   ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]
    )


def _bucket(obj: dict) -> str | None:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    own = ((spec.get("storage") or {}).get("oss") or {}).get("bucket")
    pinned = (((status.get("recordingClass") or {}).get("defaults") or {}).get("storage") or {}).get("oss") or {}
    return own or pinned.get("bucket")


def tasks_of(obj: dict) -> list[dict[str, Any]]:
    """Every task of a recording, oldest first: status.history, then the current one (once: a finished
    recording's history already ends with the task status.taskId still names)."""
    status = obj.get("status") or {}
    out = [
        {
            "taskId": h.get("taskId"),
            "startTime": h.get("startTime"),
            "endTime": h.get("endTime"),
            "reason": h.get("reason"),
            "current": False,
            "files": h.get("files") or {},
        }
        for h in status.get("history") or []
    ]
    if status.get("taskId") and out and out[-1]["taskId"] == status["taskId"]:
        out[-1].update(current=True, phase=status.get("phase"))
    elif status.get("taskId"):
        out.append(
            {
                "taskId": status["taskId"],
                "startTime": status.get("startTime"),
                "endTime": status.get("completionTime"),
                "reason": status.get("reason"),
                "current": True,
                "phase": status.get("phase"),
                "files": status.get("files") or {},
            }
        )
    return out


def file_rows(obj: dict) -> list[dict[str, str]]:
    bucket = _bucket(obj)
    rows = []
    for task in tasks_of(obj):
        files = task["files"]
        for kind in ("hls", "mp4", "mp3"):
            for key in files.get(kind) or []:
                rows.append(
                    {
                        "taskId": task["taskId"],
                        "kind": kind.upper(),
                        "object": key,
                        "url": f"oss://{bucket}/{key}" if bucket else key,
                    }
                )
        for vod in files.get("vod") or []:
            for media in vod.get("mediaIds") or []:
                rows.append({"taskId": task["taskId"], "kind": "VOD", "object": media, "url": f"vod:{media}"})
            for media in vod.get("mergedIds") or []:
                rows.append({"taskId": task["taskId"], "kind": "VOD-MERGED", "object": media, "url": f"vod:{media}"})
    return rows


class Plugin:
    def __init__(self, kube: Kube, namespace: str, output: str | None):
        self.kube, self.namespace, self.output = kube, namespace, output

    def emit(self, data: Any, text: str) -> None:
        if self.output == "json":
            print(json.dumps(data, indent=2))
        elif self.output == "yaml":
            print(yaml.safe_dump(data, sort_keys=False), end="")
        else:
            print(text)

    async def recording(self, name: str) -> dict:
        return await self.kube.request("GET", recording_path(self.namespace, name))

    async def files(self, name: str) -> None:
        obj = await self.recording(name)
        rows = file_rows(obj)
        text = (
            _table([[r["taskId"], r["kind"], r["url"]] for r in rows], ["TASK", "KIND", "OBJECT"])
            if rows
            else f"no files yet for rtcrecording/{name}"
        )
        self.emit({"name": name, "namespace": self.namespace, "bucket": _bucket(obj), "files": rows}, text)

    async def history(self, name: str) -> None:
        obj = await self.recording(name)
        tasks = [{k: v for k, v in t.items() if k != "files"} for t in tasks_of(obj)]
        rows = [
            [
                t["taskId"],
                t.get("startTime") or "",
                t.get("endTime") or "",
                t.get("phase") if t["current"] and t.get("phase") not in TERMINAL else t.get("reason") or "",
            ]
            for t in tasks
        ]
        text = _table(rows, ["TASK", "START", "END", "STATE"]) if rows else f"rtcrecording/{name} has had no task"
        self.emit({"name": name, "namespace": self.namespace, "tasks": tasks}, text)

    async def suspend(self, name: str, value: bool) -> None:
        body = {"spec": {"suspend": value}}
        verb = "suspended" if value else "resumed"
        try:
            obj = await self.kube.request(
                "PATCH", recording_path(self.namespace, name), json=body, content_type="application/merge-patch+json"
            )
            kind = "rtcrecording"
        except NotFound:
            obj = await self.kube.request(
                "PATCH", schedule_path(self.namespace, name), json=body, content_type="application/merge-patch+json"
            )
            kind = "rtcrecordingschedule"
        self.emit(obj, f"{kind}.{GROUP}/{name} {verb}")

    async def run_now(self, name: str) -> None:
        schedule = await self.kube.request("GET", schedule_path(self.namespace, name))
        now = datetime.now(UTC).replace(microsecond=0)
        body = schedules.recording_for(schedule, now)
        obj = await self.kube.request("POST", recording_path(self.namespace), json=body)
        self.emit(
            obj, f"{PLURAL[:-1]}.{GROUP}/{obj['metadata']['name']} created (a run of rtcrecordingschedule/{name}, now)"
        )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kubectl rtcrec", description="RtcRecordings as people ask about them.")
    p.add_argument("-n", "--namespace", help="namespace (default: the context's, else default)")
    p.add_argument("--context", help="the kubeconfig context to use (default: the current one)")
    p.add_argument("--kubeconfig", help="path of the kubeconfig (default: $KUBECONFIG, ~/.kube/config)")
    p.add_argument("-o", "--output", choices=["json", "yaml"], help="print the result as JSON or YAML")
    sub = p.add_subparsers(dest="command", required=True)
    for command, what in (
        ("files", "the files of the current and past tasks (OSS object keys, VOD media ids)"),
        ("history", "every task: start, end, why it ended"),
        ("stop", "suspend (spec.suspend: true); for a schedule: no new runs"),
        ("resume", "spec.suspend: false"),
        ("run-now", "one run of an RtcRecordingSchedule, now"),
    ):
        c = sub.add_parser(command, help=what)
        c.add_argument("name", metavar="SCHEDULE" if command == "run-now" else "NAME")
    return p


async def _main(args: argparse.Namespace) -> None:
    connection = Connection.from_kubeconfig(_kubeconfig(args.kubeconfig), args.context)
    namespace = args.namespace or connection.namespace or "default"
    async with Kube(connection) as kube:
        plugin = Plugin(kube, namespace, args.output)
        match args.command:
            case "files":
                await plugin.files(args.name)
            case "history":
                await plugin.history(args.name)
            case "stop" | "resume":
                await plugin.suspend(args.name, args.command == "stop")
            case "run-now":
                await plugin.run_now(args.name)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        asyncio.run(_main(args))
    except NotFound as exc:
        print(
            f"Error from server (NotFound): {exc} not found in namespace {args.namespace or '(default)'}",
            file=sys.stderr,
        )
        return 1
    except (KubeError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
