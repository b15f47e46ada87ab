"""`kubectl rtcrec` (installed as `kubectl-rtcrec`): the recordings of a namespace as a person asks
about them. It talks to the apiserver with the user's kubeconfig and rights, like kubectl.

    kubectl rtcrec files NAME        the files (OSS object keys, VOD media ids) of the current and past tasks
    kubectl rtcrec files NAME --url  the same as links that play, valid for --expires (default 1h)
    kubectl rtcrec history NAME      every task the recording had: start, end, why it ended
    kubectl rtcrec stop NAME         suspend it (spec.suspend: true); for a schedule: no new runs
    kubectl rtcrec resume NAME       spec.suspend: false (a recording starts a new task)
    kubectl rtcrec run-now SCHEDULE  one run of an RtcRecordingSchedule, now

with -n/--namespace, --context, --kubeconfig and -o json|yaml, as kubectl has them; the kubeconfig is read as
kubectl reads it (kubeconfig.py: with the `kubernetes` package when installed).

`files --url` signs each link where it runs (cloud/links.py: the vendor's OSS SDK, this plugin's optional
dependency), with the recording's credentials Secret when the caller's RBAC lets them read it (the one the
operator would use: spec.credentialsSecretRef or the class's, labelled rtc.recording.io/usage=credentials),
else with the vendor's default credential chain (ALIBABA_CLOUD_ACCESS_KEY_ID/SECRET, a profile...). It
costs the apiserver one GET of the recording and at most one of a Secret; the operator, nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shlex
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from rtc_recording.api.names import (
    GROUP,
    PLURAL,
    TROUBLESHOOTING,
    USAGE_LABEL,
    recording_path,
    schedule_path,
    troubleshooting,
)
from rtc_recording.api.recording import TERMINAL
from rtc_recording.api.timestamps import stamp
from rtc_recording.cloud import links
from rtc_recording.cloud.credentials import (
    Credentials,
    CredentialsProvider,
    CredentialsUnavailable,
    DefaultChainCredentials,
    StaticCredentials,
)
from rtc_recording.cloud.secrets import SecretCache, SecretUnavailable
from rtc_recording.decide import classes, schedules
from rtc_recording.kube.client import Kube
from rtc_recording.kube.errors import KubeError, NotFound
from rtc_recording.kubeconfig import connection as kubeconfig_connection

OSS_KINDS = ("HLS", "MP4", "MP3")
LINK_LIFETIME = timedelta(hours=1)
_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def duration(text: str) -> timedelta:
    """A duration as kubectl takes one, in hours, minutes and seconds: 90s, 30m, 1h, 1h30m."""
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: use h, m and s, as in 1h, 30m, 90s or 1h30m")
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "   ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]
    )


def _oss(obj: dict) -> dict:
    """spec.storage.oss, else the pinned class's (a recording that sets oss takes none of the class's)."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    own = (spec.get("storage") or {}).get("oss")
    pinned = (((status.get("recordingClass") or {}).get("defaults") or {}).get("storage") or {}).get("oss")
    return own or pinned or {}


def _bucket(obj: dict) -> str | None:
    return _oss(obj).get("bucket")


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


def file_rows(obj: dict) -> list[dict[str, Any]]:
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
            for kind, ids in (("VOD", vod.get("mediaIds")), ("VOD-MERGED", vod.get("mergedIds"))):
                for media in ids or []:
                    rows.append(
                        {
                            "taskId": task["taskId"],
                            "kind": kind,
                            "object": media,
                            "url": f"vod:{media}",
                            "stream": vod.get("stream"),
                        }
                    )
    return rows


class Plugin:
    def __init__(
        self,
        kube: Kube,
        namespace: str,
        output: str | None,
        *,
        presigner: Callable[[Credentials, links.Bucket, timedelta], links.Presigner] = links.oss_presigner,
        default_credentials: Callable[[], CredentialsProvider] = DefaultChainCredentials,
    ):
        self.kube, self.namespace, self.output = kube, namespace, output
        self.presigner, self.default_credentials = presigner, default_credentials

    def emit(self, data: Any, text: str) -> None:
        if self.output == "json":
            print(json.dumps(data, indent=2))
        elif self.output == "yaml":
            print(yaml.safe_dump(data, sort_keys=False), end="")
        else:
            print(text)

    async def recording(self, name: str) -> dict:
        return await self.kube.request("GET", recording_path(self.namespace, name))

    async def files(
        self, name: str, url: bool = False, expires: timedelta = LINK_LIFETIME, oss_endpoint: str | None = None
    ) -> None:
        obj = await self.recording(name)
        rows = file_rows(obj)
        note = await self.playable(obj, rows, expires, oss_endpoint) if url else None
        text = (
            _table(
                [[r["taskId"], r["kind"], r.get("play") or r["url"]] for r in rows],
                ["TASK", "KIND", "URL" if url else "OBJECT"],
            )
            if rows
            else f"no files yet for rtcrecording/{name}"
        )
        self.emit({"name": name, "namespace": self.namespace, "bucket": _bucket(obj), "files": rows}, text)
        if note:
            print(note, file=sys.stderr)

    async def playable(self, obj: dict, rows: list[dict], expires: timedelta, oss_endpoint: str | None) -> str | None:
        """Each OSS row's url becomes a presigned HTTPS link (and `expires` its end); each VOD row says how to
        play its media (VOD has no object to link: GetPlayInfo gives a media's play URLs). Returns the note
        that says what signed the links."""
        for row in rows:
            if row["kind"] not in OSS_KINDS:
                row.update(url=None, play=f"aliyun vod GetPlayInfo --VideoId {shlex.quote(row['object'])}")
        oss_rows = [r for r in rows if r["kind"] in OSS_KINDS]
        if not oss_rows:
            return None
        storage = _oss(obj)
        if not storage.get("bucket") or not storage.get("endpoint"):
            raise ValueError("the recording names no OSS bucket and endpoint (spec.storage.oss, or its class's)")
        target = links.bucket(storage["bucket"], storage["endpoint"], oss_endpoint)
        credentials, source = await self.signing_credentials(obj)
        presign = self.presigner(credentials, target, expires)
        until = ""
        for row in oss_rows:
            link = presign(row["object"])
            until = stamp(link.expires)
            row.update(url=link.url, expires=until)
        return f"links valid until {until}, signed with {source}"

    async def signing_credentials(self, obj: dict) -> tuple[Credentials, str]:
        """The recording's credentials Secret, when the caller may read it and it opted in as the operator
        requires; else the vendor's default chain. Returns them and where they came from (never the key)."""
        _, namespace, name = classes.account_fields(obj)
        fallback = "the default credential chain (ALIBABA_CLOUD_* environment variables, profile)"
        if namespace and name:
            try:
                data = await SecretCache(self.kube).credentials(namespace, name)
            except SecretUnavailable:
                fallback += (
                    f": Secret {namespace}/{name} is missing, not readable with your rights or not labelled "
                    f"{USAGE_LABEL}=credentials"
                )
            else:
                return StaticCredentials.from_secret_data(data).get(), f"the AccessKey of Secret {namespace}/{name}"
        return self.default_credentials().get(), fallback

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
        if states := list(dict.fromkeys(r[3] for r in rows if r[3])):
            text += "\nwhat each state means: " + ", ".join(troubleshooting(s) for s in states)
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
    p = argparse.ArgumentParser(
        prog="kubectl rtcrec",
        description="RtcRecordings as people ask about them.",
        epilog=f"What each phase, reason and Event means, and what to do: {TROUBLESHOOTING} in the operator's "
        "repository (`kubectl get rtcrec` shows READY and SYNCED; `kubectl wait --for=condition=Ready` works on "
        "recordings, schedules and classes).",
    )
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
        if command == "files":
            c.add_argument("--url", action="store_true", help="HTTPS links that play: OSS objects presigned")
            c.add_argument(
                "--expires", type=duration, help="how long --url links are valid (default 1h, at most 168h): 90s, 30m"
            )
            c.add_argument(
                "--oss-endpoint",
                help="where --url links point instead of spec.storage.oss.endpoint's public endpoint: a private "
                "endpoint, or http://127.0.0.1:PORT in tests (signed for the same region)",
            )
    return p


async def _main(args: argparse.Namespace) -> None:
    connection = kubeconfig_connection(args.kubeconfig, args.context)  # as kubectl reads it (kubeconfig.py)
    namespace = args.namespace or connection.namespace or "default"
    async with Kube(connection) as kube:
        plugin = Plugin(kube, namespace, args.output)
        match args.command:
            case "files":
                await plugin.files(args.name, args.url, args.expires or LINK_LIFETIME, args.oss_endpoint)
            case "history":
                await plugin.history(args.name)
            case "stop" | "resume":
                await plugin.suspend(args.name, args.command == "stop")
            case "run-now":
                await plugin.run_now(args.name)


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.command == "files" and not args.url and (args.expires or args.oss_endpoint):
        p.error("--expires and --oss-endpoint go with --url")
    try:
        asyncio.run(_main(args))
    except NotFound as exc:
        print(
            f"Error from server (NotFound): {exc} not found in namespace {args.namespace or '(default)'}",
            file=sys.stderr,
        )
        return 1
    except (KubeError, ValueError, OSError, CredentialsUnavailable, links.SdkMissing) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
