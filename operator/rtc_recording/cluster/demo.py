"""`rtcrec demo`: the whole system on this machine, narrated.

A real kube-apiserver + etcd, the cloud emulator (one emulated minute per real second), the
operator and its callback receiver as processes, and the manifests of examples/. People
join a channel, recordings start, a layout changes, one recording is deleted, everybody
leaves, and the rest end by the cloud's idle timeout. A live table shows every change.
"""

from __future__ import annotations

import http.server
import json
import secrets
import tempfile
import threading
import time
from pathlib import Path

import yaml

from ..emulator import EmulatorConfig, run_in_thread
from ..resource import Phase
from . import binaries
from .launcher import LocalCluster, free_port
from .processes import RtcrecProcess, local_env, wait_for

NAMESPACE = "demo"
APP, BUCKET, CHANNEL = "demo-app", "demo-recordings", "standup-42"
OPERATOR_KEY = ("LTAIdemoOperatorKey", "demo-operator-secret")
EXAMPLE_KEY = ("LTAI-replace-me", "replace-me")  # what examples/notify-signed.yaml's Secret holds
TIME_SCALE = 60
PEOPLE = {
    "alice": ("audio", "camera", "screen"),
    "bob": ("audio", "camera"),
    "carol": ("audio", "camera"),
    "dave": ("audio", "camera"),
}
NEW_LAYOUT = {
    "panes": [
        {"userId": "alice", "left": "0", "top": "0", "width": "0.75", "height": "1"},
        {"userId": "bob", "left": "0.75", "top": "0", "width": "0.25", "height": "0.34"},
        {"userId": "carol", "left": "0.75", "top": "0.33", "width": "0.25", "height": "0.34"},
        {"userId": "dave", "left": "0.75", "top": "0.66", "width": "0.25", "height": "0.34"},
    ]
}


def say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


class Hook(http.server.BaseHTTPRequestHandler):
    """Stands in for the user's own NotifyUrl from examples/notify-signed.yaml."""

    received: list[dict] = []

    def do_POST(self) -> None:
        Hook.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class Table(threading.Thread):
    """Prints a row whenever a recording's phase, reason or task changes, like `kubectl get -w`."""

    COLUMNS = "{:>7}  {:<20} {:<11} {:<11} {:<11} {:<16} {}"

    def __init__(self, cluster: LocalCluster):
        super().__init__(daemon=True)
        self.cluster, self.started, self.stopping = cluster, time.monotonic(), threading.Event()
        self.rows: dict[str, tuple[str, ...]] = {}
        self.lock = threading.Lock()

    def run(self) -> None:
        while not self.stopping.wait(0.3):
            with self.lock:
                self.poll()

    def settle(self) -> None:
        """Let the table show what just happened before the next step is announced."""
        time.sleep(1)
        with self.lock:
            self.poll()

    def heading(self) -> None:
        print(self.COLUMNS.format("TIME", "RECORDING", "MODE", "MEDIA", "PHASE", "REASON", "TASK ID"), flush=True)

    def poll(self) -> None:
        got = self.cluster.kubectl("get", "rtcrec", "-n", NAMESPACE, "-o", "json", check=False)
        if got.returncode != 0:
            return
        seen = set()
        for item in json.loads(got.stdout)["items"]:
            name, spec, status = item["metadata"]["name"], item["spec"], item.get("status") or {}
            seen.add(name)
            row = (
                spec["mode"],
                spec.get("media", "AudioVideo"),
                status.get("phase", "-"),
                status.get("reason") or "-",
                status.get("taskId") or "-",
            )
            if self.rows.get(name) != row:
                self.rows[name] = row
                self.print(name, *row)
        for name in set(self.rows) - seen:
            del self.rows[name]
            self.print(name, "", "", "(deleted)", "", "")

    def print(self, name: str, *row: str) -> None:
        elapsed = f"+{time.monotonic() - self.started:.1f}s"
        print(self.COLUMNS.format(elapsed, name, *row), flush=True)

    def stop(self) -> None:
        self.stopping.set()
        self.join()
        self.settle()


def phases(cluster: LocalCluster) -> dict[str, dict]:
    items = json.loads(cluster.kubectl("get", "rtcrec", "-n", NAMESPACE, "-o", "json").stdout)["items"]
    return {i["metadata"]["name"]: i.get("status") or {} for i in items}


def manifests(hook_url: str) -> str:
    """examples/*.yaml, with the example's notify URL pointed at a local stand-in."""
    docs = []
    for path in sorted((binaries.REPO_ROOT / "examples").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            # Classes and schedules (and what names them) need a platform namespace and labels the demo
            # does not set up: tests/integration/test_classes.py and test_schedules.py show them.
            if doc and (
                doc.get("kind") in ("RtcRecordingClass", "RtcRecordingSchedule")
                or doc.get("kind") == "RtcRecording"
                and doc["spec"].get("recordingClassName")
            ):
                continue
            if doc and doc.get("kind") == "RtcRecording" and (doc["spec"].get("notify") or {}).get("url"):
                doc["spec"]["notify"]["url"] = hook_url
            docs.append(doc)
    return yaml.safe_dump_all(docs)


def run() -> int:
    started = time.monotonic()
    say("Building or reusing the control plane (a cold first run compiles kube-apiserver from Go modules: minutes)")
    binaries.ensure("etcd", "kube-apiserver", "kubectl")
    with tempfile.TemporaryDirectory(prefix="rtcrec-demo-") as tmp:
        work = Path(tmp)
        say("Starting etcd + kube-apiserver on loopback and installing the RtcRecording CRD")
        cluster = LocalCluster.start(work / "cluster")
        processes: list[RtcrecProcess] = []
        hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
        threading.Thread(target=hook.serve_forever, daemon=True).start()
        try:
            cluster.apply_crds()
            cluster.kubectl("create", "namespace", NAMESPACE)
            print(f"    kube-apiserver {binaries.KUBERNETES_VERSION} at {cluster.server}")
            config = EmulatorConfig(
                access_keys=dict([OPERATOR_KEY, EXAMPLE_KEY]), apps={APP}, oss_buckets={BUCKET}, time_scale=TIME_SCALE
            )
            with run_in_thread(config) as emulator:
                say(
                    f"Cloud emulator at {emulator.url} (1 emulated minute per real second); starting the "
                    "operator and its callback receiver"
                )
                env = local_env(
                    cluster.kubeconfig,
                    emulator.url,
                    receiver_port=free_port(),
                    metrics_port=free_port(),
                    auth_key="demo" + secrets.token_hex(8),
                    access_key=OPERATOR_KEY,
                    poll_interval_seconds=5,
                    unknown_outcome_grace_seconds=5,
                    relay_allowed_hosts="127.0.0.1",
                )  # the stand-in hook: loopback needs allowing
                processes += [
                    RtcrecProcess("receiver", env, work / "receiver.log").start(),
                    RtcrecProcess("run", env, work / "operator.log").start(),
                ]
                return story(cluster, emulator, hook, processes, started)
        finally:
            for process in processes:
                process.stop()
            hook.shutdown()
            hook.server_close()
            cluster.stop()


def story(
    cluster: LocalCluster, emulator, hook: http.server.HTTPServer, processes: list[RtcrecProcess], started: float
) -> int:
    operator = processes[-1]
    details = lambda: "operator log:\n" + operator.output()[-4000:]  # noqa: E731

    say(f"Alice, Bob, Carol and Dave join channel {CHANNEL} and publish (Alice also shares her screen)")
    for user, tracks in PEOPLE.items():
        emulator.control.join(
            APP, CHANNEL, user, audio="audio" in tracks, camera="camera" in tracks, screen="screen" in tracks
        )

    say("kubectl apply -n demo -f examples/   (seven recordings of that channel, and their Secrets)")
    applied = cluster.kubectl(
        "apply", "-n", NAMESPACE, "-f", "-", input=manifests(f"http://127.0.0.1:{hook.server_port}/rtc/standup-42")
    )
    print("    " + applied.stdout.strip().replace("\n", "\n    ") + "\n", flush=True)
    table = Table(cluster)
    table.heading()
    table.start()
    try:
        names = list(phases(cluster))
        wait_for(
            lambda: all(s.get("phase") == Phase.RECORDING for s in phases(cluster).values()),
            60,
            "every recording to be Recording",
            details,
        )
        table.settle()

        say("Edit the layout of standup-42-grid (Alice large): UpdateRtcCloudRecording, same task")
        before = phases(cluster)["standup-42-grid"]["taskId"]
        cluster.kubectl(
            "patch",
            "rtcrec",
            "standup-42-grid",
            "-n",
            NAMESPACE,
            "--type=merge",
            "-p",
            json.dumps({"spec": {"layout": NEW_LAYOUT}}),
        )
        wait_for(
            lambda: phases(cluster)["standup-42-grid"].get("observedGeneration") == 2,
            30,
            "the layout to be applied",
            details,
        )
        table.settle()
        task = emulator.control.task(before)
        print(f"    the cloud's task {before}: {task['updates']} update, still {task['status']}", flush=True)

        say("kubectl delete rtcrec standup-42-demo: the operator stops its task before the object goes")
        cluster.kubectl("delete", "rtcrec", "standup-42-demo", "-n", NAMESPACE, "--timeout=30s")
        table.settle()

        say(
            "Everybody leaves. Nobody publishes, so each task ends after its own maxIdleSeconds "
            "(120 s or 300 s emulated: 2 or 5 s here)"
        )
        for user in PEOPLE:
            emulator.control.leave(APP, CHANNEL, user)
        wait_for(
            lambda: all(s.get("phase") == Phase.COMPLETED for s in phases(cluster).values()),
            60,
            "every recording to complete",
            details,
        )
    finally:
        table.stop()

    return summary(cluster, emulator, names, started)


def summary(cluster: LocalCluster, emulator, names: list[str], started: float) -> int:
    """Prints what happened; non-zero when a task outlived its recording or one was started twice."""
    say("What the cloud saw (emulator), per task")
    row = "    {:<38} {:<9} {:<12} {:>7} {:>6}"
    print(row.format("TASK ID", "STATUS", "STOP REASON", "UPDATES", "FILES"))
    tasks = emulator.control.tasks(app_id=APP, channel_id=CHANNEL)
    for task in tasks:
        files = sum(len(v) for v in task["files"].values() if isinstance(v, list))
        print(row.format(task["taskId"], task["status"], task["stopReason"] or "-", task["updates"], files))
    say("kubectl get rtcrec -n demo")
    print("    " + cluster.kubectl("get", "rtcrec", "-n", NAMESPACE).stdout.strip().replace("\n", "\n    "))
    events = json.loads(cluster.kubectl("get", "events", "-n", NAMESPACE, "-o", "json").stdout)["items"]
    live = [t for t in tasks if t["status"] in ("RUNNING", "RECOVERING")]
    say(
        f"Summary: {len(names)} recordings, {len(tasks)} cloud tasks, {len(live)} left running, "
        f"{len(events)} Events, {len(Hook.received)} callbacks relayed to the example's own NotifyUrl; "
        f"{time.monotonic() - started:.0f} s in all. Cleaning up."
    )
    return 0 if len(tasks) == len(names) and not live else 1
