"""`rtcrec demo`: the whole system on this machine, narrated.

A real kube-apiserver + etcd, the cloud emulator (one emulated minute per real second), the
operator and its callback receiver as processes, and the manifests of examples/. People
join a channel, recordings start, a layout changes, one recording is deleted, everybody
leaves, and the rest end by the cloud's idle timeout. A live table shows every change.
Then a platform team publishes the default RtcRecordingClass of examples/, a team records a
design review naming only the class and what is theirs, and the weekly all-hands schedule of
examples/ is run now with `kubectl rtcrec run-now`: its run records until its durationSeconds.
"""

from __future__ import annotations

import http.server
import json
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from rtc_recording.api.recording import Phase

from ..emulator import EmulatorConfig, run_in_thread
from . import binaries
from .launcher import LocalCluster, free_port
from .processes import RtcrecProcess, local_env, wait_for

NAMESPACE = "demo"
APP, BUCKET, CHANNEL = "demo-app", "demo-recordings", "standup-42"
OPERATOR_KEY = ("LTAIdemoOperatorKey", "demo-operator-secret")
EXAMPLE_KEY = ("LTAI-replace-me", "replace-me")  # what examples/notify-signed.yaml's Secret holds
TIME_SCALE = 60
# The classes and schedules act: a tenant namespace the default class allows (examples/recording-class.yaml
# selects namespaces labelled rtc.recording.io/tenant=true), and the platform team's, holding the class's
# credentials (another account than the operator's).
TEAM, PLATFORM = "demo-team", "rtc-platform"
TENANT_LABEL = "rtc.recording.io/tenant=true"
PLATFORM_KEY = ("LTAIdemoPlatformKey", "demo-platform-secret")
# The schedule's durationSeconds here (3600 in the example): the least the CRD allows. It is the
# operator's own timer, on the wall clock, not the emulator's scaled one: a minute of waiting.
RUN_SECONDS = 60
KUBECTL_RTCREC = str(Path(sys.executable).with_name("kubectl-rtcrec"))
PEOPLE = {
    "alice": ("audio", "camera", "screen"),
    "bob": ("audio", "camera"),
    "carol": ("audio", "camera"),
    "dave": ("audio", "camera"),
}
GRID_OF_THREE = [{"userId": "alice"}, {"userId": "bob"}, {"userId": "carol"}]


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

    COLUMNS = "{:>7}  {:<20} {:<11} {:<11} {:<11} {:<16} {}"  # the team's: RECORDING 22 wide (scheduled runs)

    def __init__(self, cluster: LocalCluster, namespace: str = NAMESPACE, started: float | None = None):
        super().__init__(daemon=True)
        self.cluster, self.stopping = cluster, threading.Event()
        self.rows: dict[str, tuple[str, ...]] = {}
        self.started = time.monotonic() if started is None else started
        self.namespace = namespace
        if namespace != NAMESPACE:
            self.COLUMNS = self.COLUMNS.replace("{:<20}", "{:<22}")
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
        got = self.cluster.kubectl("get", "rtcrec", "-n", self.namespace, "-o", "json", check=False)
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


def phases(cluster: LocalCluster, namespace: str = NAMESPACE) -> dict[str, dict]:
    items = json.loads(cluster.kubectl("get", "rtcrec", "-n", namespace, "-o", "json").stdout)["items"]
    return {i["metadata"]["name"]: i.get("status") or {} for i in items}


def example(name: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all((binaries.REPO_ROOT / "examples" / name).read_text()) if doc]


def indented(text: str) -> str:
    return "    " + text.strip().replace("\n", "\n    ")


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
                access_keys=dict([OPERATOR_KEY, EXAMPLE_KEY, PLATFORM_KEY]),
                apps={APP},
                oss_buckets={BUCKET},
                time_scale=TIME_SCALE,
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
                    participant_retry_seconds=2,
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

    say(
        f"kubectl apply -n demo -f examples/   (seven recordings of channel {CHANNEL}, and their Secrets), "
        "before the meeting: nobody is in the channel yet"
    )
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
            lambda: all(s.get("reason") == "WaitingForParticipants" for s in phases(cluster).values()),
            60,
            "every recording to wait for participants",
            details,
        )
        table.settle()
        say(
            f"Alice, Bob, Carol and Dave join channel {CHANNEL} and publish (Alice also shares her screen): "
            "the waiting recordings start"
        )
        for user, tracks in PEOPLE.items():
            emulator.control.join(
                APP, CHANNEL, user, audio="audio" in tracks, camera="camera" in tracks, screen="screen" in tracks
            )
        wait_for(
            lambda: all(s.get("phase") == Phase.RECORDING for s in phases(cluster).values()),
            60,
            "every recording to be Recording",
            details,
        )
        table.settle()

        say("Add Carol to standup-42, whose layout is the Grid preset: one UpdateRtcCloudRecording, same task")
        before = phases(cluster)["standup-42"]["taskId"]
        cluster.kubectl(
            "patch",
            "rtcrec",
            "standup-42",
            "-n",
            NAMESPACE,
            "--type=merge",
            "-p",
            json.dumps({"spec": {"subscribers": GRID_OF_THREE}}),
        )
        wait_for(
            lambda: phases(cluster)["standup-42"].get("observedGeneration") == 2,
            30,
            "the new subscribers to be applied",
            details,
        )
        table.settle()
        task = emulator.control.task(before)
        panes = ", ".join(
            f"{p['UserId']} at ({p['X']}, {p['Y']}) {p['Width']} x {p['Height']}" for p in task["layout"]["UserPanes"]
        )
        print(f"    the cloud's task {before}: {task['updates']} update, still {task['status']}", flush=True)
        print(f"    its layout now: {panes}", flush=True)

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

    team = classes_and_schedules(cluster, emulator, details, started)
    return summary(cluster, emulator, names, started, team)


def classes_and_schedules(cluster: LocalCluster, emulator, details, started: float) -> dict[str, int]:
    """The default class of examples/ fills a recording that names only what is the team's; the weekly
    schedule of examples/ runs now (kubectl rtcrec run-now), and its run ends by durationSeconds."""
    say(
        f"A platform team publishes a default RtcRecordingClass (examples/recording-class.yaml): storage, "
        f"transcode, idle timeout and the credentials, a Secret in namespace {PLATFORM} that tenants cannot read; "
        f"namespaces labelled {TENANT_LABEL} may use it"
    )
    cluster.kubectl("create", "namespace", PLATFORM)
    cluster.kubectl(
        "create",
        "secret",
        "generic",
        "aliyun-recording",
        "-n",
        PLATFORM,
        f"--from-literal=accessKeyId={PLATFORM_KEY[0]}",
        f"--from-literal=accessKeySecret={PLATFORM_KEY[1]}",
    )
    cluster.kubectl("label", "secret", "aliyun-recording", "-n", PLATFORM, "rtc.recording.io/usage=credentials")
    cluster.kubectl("create", "namespace", TEAM)
    cluster.kubectl("label", "namespace", TEAM, TENANT_LABEL)
    klass, review = example("recording-class.yaml")
    cluster.kubectl("apply", "-f", "-", input=json.dumps(klass))
    print("    $ kubectl get rtcrecclass\n" + indented(cluster.kubectl("get", "rtcrecclass").stdout), flush=True)

    say(
        f"kubectl apply -n {TEAM} -f examples/recording-class.yaml   (design-review names the class and sets "
        f"only app, channel, mode, subscribers and layout); the table shows namespace {TEAM} from here on"
    )
    for user in ("alice", "bob"):
        emulator.control.join(APP, review["spec"]["channelId"], user)
    for user in ("ceo", "cto"):
        emulator.control.join(APP, "all-hands", user)
    table = Table(cluster, TEAM, started)
    table.heading()
    table.start()
    try:
        cluster.kubectl("apply", "-n", TEAM, "-f", "-", input=json.dumps(review))
        status = wait_for(
            lambda: recording_status(cluster, TEAM, "design-review"),
            60,
            "design-review to be Recording",
            details,
        )
        table.settle()
        pin = status["recordingClass"]
        task = emulator.control.task(status["taskId"])
        params = task["params"]
        files = params["StorageParams"]["FileInfo"]
        print(
            f"    status.recordingClass: {pin['name']}, generation {pin['generation']}, credentials "
            f"{pin['credentialsSecretRef']['namespace']}/{pin['credentialsSecretRef']['name']}\n"
            f"    the cloud's task: bucket {params['StorageParams']['OSSParams']['OSSBucket']}, files "
            f"{', '.join(f['Format'] + ' under ' + '/'.join(f['FilePathPrefix']) for f in files)}, "
            f"{params['MixTranscodeParams']['VideoBitrate']} kbps video, MaxIdleTime {params['MaxIdleTime']}, "
            f"AccessKey {task['accessKeyId']}: all from the class",
            flush=True,
        )

        schedule = example("recording-schedule.yaml")[0]
        schedule["spec"]["durationSeconds"] = RUN_SECONDS
        say(
            f"kubectl apply -n {TEAM} -f examples/recording-schedule.yaml   (every Monday 09:00 Berlin; "
            f"durationSeconds {RUN_SECONDS} here, not 3600), then run it now"
        )
        cluster.kubectl("apply", "-n", TEAM, "-f", "-", input=json.dumps(schedule))
        name = schedule["metadata"]["name"]
        wait_for(
            lambda: (
                json.loads(cluster.kubectl("get", "rtcrecsched", name, "-n", TEAM, "-o", "json").stdout)
                .get("status", {})
                .get("nextScheduleTime")
            ),
            30,
            "the schedule's next run time",
            details,
        )
        print("    $ kubectl get rtcrecsched\n" + indented(cluster.kubectl("get", "rtcrecsched", "-n", TEAM).stdout))
        with table.lock:  # the command's output before the table's row of the run it made
            now = rtcrec_plugin(cluster, "run-now", name)
            print(f"    $ kubectl rtcrec run-now {name}\n" + indented(now), flush=True)
        run = wait_for(
            lambda: next((n for n, s in phases(cluster, TEAM).items() if n.startswith(name) and s.get("taskId")), ""),
            60,
            f"the run of {name} to start",
            details,
        )
        wait_for(
            lambda: any(a.get("name") == run for a in sched_status(cluster, name).get("active") or []),
            30,
            "the schedule to list its run as active",
            details,
        )
        table.settle()
        print("    $ kubectl get rtcrecsched\n" + indented(cluster.kubectl("get", "rtcrecsched", "-n", TEAM).stdout))

        say("The design review ends: Alice and Bob leave, and its task ends after the class's maxIdleSeconds")
        for user in ("alice", "bob"):
            emulator.control.leave(APP, review["spec"]["channelId"], user)
        wait_for(
            lambda: phases(cluster, TEAM)["design-review"].get("phase") == Phase.COMPLETED, 30, "design-review", details
        )
        table.settle()

        say(f"The all-hands run records until its durationSeconds ({RUN_SECONDS} s), then the operator stops it")
        wait_for(
            lambda: phases(cluster, TEAM)[run].get("phase") == Phase.COMPLETED,
            RUN_SECONDS + 60,
            f"{run} to complete",
            details,
            interval=1,
        )
        table.settle()
    finally:
        table.stop()
    print(f"    $ kubectl rtcrec history {run}\n" + indented(rtcrec_plugin(cluster, "history", run)), flush=True)
    print(
        "    $ kubectl get rtcrec -n demo-team\n" + indented(cluster.kubectl("get", "rtcrec", "-n", TEAM).stdout),
        flush=True,
    )
    tasks = [
        t for channel in ("design-review", "all-hands") for t in emulator.control.tasks(app_id=APP, channel_id=channel)
    ]
    live = [t for t in tasks if t["status"] in ("RUNNING", "RECOVERING")]
    return {"recordings": len(phases(cluster, TEAM)), "tasks": len(tasks), "live": len(live)}


def recording_status(cluster: LocalCluster, namespace: str, name: str) -> dict:
    """The status of a Recording recording; {} otherwise."""
    status = phases(cluster, namespace).get(name) or {}
    return status if status.get("phase") == Phase.RECORDING else {}


def sched_status(cluster: LocalCluster, name: str) -> dict:
    got = cluster.kubectl("get", "rtcrecsched", name, "-n", TEAM, "-o", "json")
    return json.loads(got.stdout).get("status") or {}


def rtcrec_plugin(cluster: LocalCluster, *args: str) -> str:
    """`kubectl rtcrec ...` in the team's namespace, as a user runs it (kubectl-rtcrec on the PATH)."""
    got = subprocess.run(
        [KUBECTL_RTCREC, f"--kubeconfig={cluster.kubeconfig}", "-n", TEAM, *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return got.stdout


def summary(cluster: LocalCluster, emulator, names: list[str], started: float, team: dict[str, int]) -> int:
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
        f"with the class and the schedule: {team['recordings']} recordings, {team['tasks']} cloud tasks, "
        f"{team['live']} left running; {time.monotonic() - started:.0f} s in all. Cleaning up."
    )
    ok = len(tasks) == len(names) and not live
    return 0 if ok and team["tasks"] == team["recordings"] and not team["live"] else 1
