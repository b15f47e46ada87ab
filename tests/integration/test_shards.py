"""Shards (docs/sharding.md): several operator processes act at once, each on the accounts the sharder
gives it, on the real apiserver and the emulator.

Each account's recordings land on one shard and are started by it; a move waits for the Start in
flight (the race: the old owner's Start and the new owner's look at the same object); a shard killed
half-way through a handover loses nothing and starts nothing twice; a killed shard's objects act again
on the others once its Lease has expired."""

from __future__ import annotations

import json
import threading
import uuid

import pytest

from rtc_recording.api.names import DRAIN_LABEL, SHARD_LABEL, recording_path
from rtc_recording.cluster.launcher import free_port
from rtc_recording.cluster.processes import RtcrecProcess

from .conftest import APP, metric_total, recording, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

KEYS = {f"LTAI5tShard{c}": f"shard-secret-{c}" for c in "XYZ"}  # three accounts of the emulator's
RING = "rtc-recording-operator"  # the default Lease name: the ring of a local `rtcrec run`
# Short Leases: a dead shard is dead after 4 s (the ordering D > R + 1 s > P still holds).
TIMING = {"RTCREC_LEASE_DURATION_SECONDS": "4", "RTCREC_LEASE_RENEW_DEADLINE_SECONDS": "2.5"}
TIMING["RTCREC_LEASE_RETRY_PERIOD_SECONDS"] = "0.5"


class Shards:
    """Shard processes in place of the shared operator, watching only this test's namespaces."""

    def __init__(self, stack, tmp_path, namespaces: list[str]):
        self.stack, self.tmp_path, self.namespaces = stack, tmp_path, namespaces
        self.procs: dict[str, RtcrecProcess] = {}
        self.ports: dict[str, int] = {}
        self.env: dict[str, str] = {}  # more settings for the shards started next

    def start(self, name: str) -> RtcrecProcess:
        self.ports.setdefault(name, free_port())
        env = {
            **self.stack.env,
            **TIMING,
            "RTCREC_SHARDING": "true",
            "RTCREC_POD_NAME": name,
            "RTCREC_METRICS_PORT": str(self.ports[name]),
            "RTCREC_NAMESPACES": ",".join(self.namespaces),
            **self.env,
        }
        proc = self.procs[name] = RtcrecProcess("run", env, self.tmp_path / f"{name}.log").start()
        return proc

    def start_three(self) -> None:
        """shard-a, -b and -c, once the sharder knows all three: objects created before could be placed on two
        shards and moved to the third."""
        for name in ("shard-a", "shard-b", "shard-c"):
            self.start(name)
        wait_for(
            lambda: any(self.metric(n, "rtcrec_shard_members") == 3 for n in self.procs),
            what="three members",
            details=self.logs,
        )

    def metric(self, name: str, metric: str) -> float | None:
        try:
            return metric_total(self.ports[name], metric)
        except OSError:  # not serving yet
            return None

    def starts(self, name: str) -> float:
        return metric_total(self.ports[name], "rtcrec_cloud_calls_total", verb="start", code="OK")

    def logs(self) -> str:
        return "\n".join(f"--- {n}\n{p.output()[-3000:]}" for n, p in self.procs.items())

    def close(self) -> None:
        for proc in self.procs.values():
            proc.kill()
        leases = f"/apis/coordination.k8s.io/v1/namespaces/default/leases?labelSelector=rtc.recording.io/ring%3D{RING}"
        for lease in self.stack.cluster.api.request("GET", leases)["items"]:
            self.stack.cluster.api.request(
                "DELETE", f"/apis/coordination.k8s.io/v1/namespaces/default/leases/{lease['metadata']['name']}"
            )


@pytest.fixture
def accounts(stack, crds, emulator):
    """Three namespaces, each with a credentials Secret of its own account."""
    emulator.control.credentials(access_keys=KEYS, accounts={k: f"account-{k[-1]}" for k in KEYS})
    spaces = []
    for key, secret in KEYS.items():
        ns = f"shard-{key[-1].lower()}-{uuid.uuid4().hex[:6]}"
        crds.kubectl("create", "namespace", ns)
        crds.kubectl(
            "create", "secret", "generic", "aliyun", "-n", ns, f"--from-literal=accessKeyId={key}",
            f"--from-literal=accessKeySecret={secret}",
        )  # fmt: skip
        crds.kubectl("label", "secret", "aliyun", "-n", ns, "rtc.recording.io/usage=credentials")
        spaces.append(ns)
    yield spaces
    for ns in spaces:  # a schedule left behind would run every 3 s for the rest of the session
        crds.kubectl("delete", "rtcrecsched", "--all", "-n", ns, "--wait=false")


@pytest.fixture
def shards(stack, tmp_path, accounts):
    stack.operator.stop()
    group = Shards(stack, tmp_path, accounts)
    try:
        yield group
    finally:
        group.close()
        stack.emulator.control.set_faults(latency_seconds=0)
        stack.operator.start()


def create(stack, namespace: str, names: list[str]) -> None:
    items = []
    for name in names:
        channel = f"{name}-{namespace}"
        for user in ("alice", "bob"):
            stack.emulator.control.join(APP, channel, user)
        items.append(recording(name, channel, credentialsSecretRef={"name": "aliyun"}))
    stack.cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    )


def objects(stack, namespaces: list[str]) -> dict[tuple[str, str], dict]:
    out = {}
    for ns in namespaces:
        got = stack.cluster.api.request("GET", recording_path(ns))
        out.update({(ns, i["metadata"]["name"]): i for i in got["items"]})
    return out


def label(obj: dict, key: str = SHARD_LABEL) -> str | None:
    return (obj["metadata"].get("labels") or {}).get(key)


def all_recording_once(stack, namespaces: list[str], details) -> dict[tuple[str, str], dict]:
    """Every object Recording, each channel with exactly its one live task, and no other task anywhere."""

    def done() -> bool:
        got = objects(stack, namespaces)
        return bool(got) and all((o.get("status") or {}).get("phase") == "Recording" for o in got.values())

    wait_for(done, timeout=90, what="every recording Recording", details=details)
    got = objects(stack, namespaces)
    for (ns, name), obj in got.items():
        channel = f"{name}-{ns}"
        wait_for(
            lambda channel=channel, obj=obj: (
                [t["taskId"] for t in stack.tasks(channel) if t["status"] in ("RUNNING", "RECOVERING")]
                == [obj["status"]["taskId"]]
            ),
            timeout=30,
            what=f"exactly one live task for {ns}/{name}",
            details=lambda channel=channel: stack.tasks(channel),
        )
    return got


def test_each_account_lands_on_a_shard_of_its_own_and_is_started_there(stack, shards, accounts):
    shards.start_three()
    wait_for(  # one sharder (a shard's metrics port is closed a moment while its server takes it over)
        lambda: sorted(shards.metric(n, "rtcrec_leader") or 0 for n in shards.procs) == [0, 0, 1],
        what="one sharder",
        details=shards.logs,
    )
    for ns in accounts:
        create(stack, ns, ["one", "two"])
    got = all_recording_once(stack, accounts, shards.logs)
    by_account = {ns: {label(o) for (n, _), o in got.items() if n == ns} for ns in accounts}
    assert all(len(owners) == 1 for owners in by_account.values()), by_account
    assert {owner for owners in by_account.values() for owner in owners} == {"shard-a", "shard-b", "shard-c"}
    # Each shard started exactly the recordings labelled for it, and nothing else.
    for name in shards.procs:
        assert shards.starts(name) == sum(label(o) == name for o in got.values()), shards.logs()

    # A shard killed: its account acts again on another one once its Lease expired (D = 4 s).
    victim = label(got[(accounts[0], "one")])
    shards.procs[victim].kill()
    wait_for(
        lambda: all(label(o) not in (victim, None) for o in objects(stack, accounts).values()),
        timeout=30,
        what=f"{victim}'s objects relabelled",
        details=shards.logs,
    )
    create(stack, accounts[0], ["after"])
    got = all_recording_once(stack, accounts, shards.logs)
    assert label(got[(accounts[0], "after")]) == label(got[(accounts[0], "one")]) != victim


class Watcher:
    """Polls the objects every 50 ms and remembers whether a move was asked for while a Start was in
    flight (a drain label on an object with an attempt and no task id): the race this test is about."""

    def __init__(self, stack, namespaces):
        self.stack, self.namespaces = stack, namespaces
        self.raced = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            for obj in objects(self.stack, self.namespaces).values():
                status = obj.get("status") or {}
                if label(obj, DRAIN_LABEL) and status.get("attempt") and not status.get("taskId"):
                    self.raced.set()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@pytest.mark.parametrize("kill_the_old_owner", [False, True], ids=["handover", "owner-killed-mid-handover"])
def test_a_move_never_lets_two_shards_start_one_recording(stack, shards, accounts, emulator, kill_the_old_owner):
    two = accounts[:2]
    before = emulator.control.stats()
    live_before = {t for tasks in before["liveTasks"]["byAccount"].values() for t in tasks}
    shards.env["RTCREC_READ_TIMEOUT_SECONDS"] = "20"  # the slow answers below are answers, not lost ones
    first = shards.start("shard-a")
    wait_for(lambda: shards.metric("shard-a", "rtcrec_leader") == 1, what="shard-a the sharder", details=shards.logs)
    # Slow answers: the Starts are in flight when the second shard comes and one account moves to it.
    emulator.control.set_faults(latency_seconds=8)  # longer than a process start on a busy machine
    for ns in two:
        create(stack, ns, [f"r{i}" for i in range(4)])
    watcher = Watcher(stack, two)
    try:
        wait_for(
            lambda: any((o.get("status") or {}).get("attempt") for o in objects(stack, two).values()),
            what="a Start in flight",
            details=shards.logs,
            interval=0.05,
        )
        shards.start("shard-b")
        wait_for(watcher.raced.is_set, timeout=20, what="a drain asked while a Start is in flight", details=shards.logs)
        if kill_the_old_owner:  # it is the sharder too: shard-b takes that over, then shard-a's objects
            first.kill()
        emulator.control.set_faults(latency_seconds=0)
        got = all_recording_once(stack, two, shards.logs)
    finally:
        watcher.stop()
    owners = ["shard-b", "shard-b"] if kill_the_old_owner else ["shard-a", "shard-b"]  # the killed one's all move

    def accounts_owners() -> list[str]:  # one owner per account (a move is whole), else ""
        per_account = [{label(o) for o in objects(stack, [ns]).values()} for ns in two]
        return sorted(owner.pop() if len(owner) == 1 else "" for owner in per_account)

    wait_for(lambda: accounts_owners() == owners, what=f"one owner per account: {owners}")
    if not kill_the_old_owner:
        # One Start per recording at the cloud, whoever made it: no shard started what another had started.
        calls = emulator.control.stats()["calls"]["byAccessKeyIdAndAction"]
        starts = sum(
            calls.get(key, {}).get("StartRtcCloudRecording", 0)
            - before["calls"]["byAccessKeyIdAndAction"].get(key, {}).get("StartRtcCloudRecording", 0)
            for key in list(KEYS)[:2]
        )
        assert starts == len(got), (calls, shards.logs())
        assert metric_total(shards.ports["shard-a"], "rtcrec_shard_handovers_total") >= 4
    # Killed, its Starts' answers were lost: each was adopted, or started again with the first task
    # reaped; either way one live task each (above), and no task of these accounts is left over.
    live = {t for tasks in emulator.control.stats()["liveTasks"]["byAccount"].values() for t in tasks}
    assert live - live_before == {o["status"]["taskId"] for o in got.values()}


def test_a_schedule_runs_on_its_accounts_shard_and_its_runs_are_created_there(stack, shards, accounts, emulator):
    shards.start_three()
    for ns in accounts:
        channel = f"often-{ns}"
        for user in ("alice", "bob"):
            emulator.control.join(APP, channel, user)
        template = recording("unused", channel, credentialsSecretRef={"name": "aliyun"})["spec"]
        stack.apply(
            ns,
            {
                "apiVersion": "rtc.recording.io/v1alpha1",
                "kind": "RtcRecordingSchedule",
                "metadata": {"name": "often"},
                "spec": {"schedule": "*/3 * * * * *", "concurrencyPolicy": "Replace", "template": {"spec": template}},
            },
        )

    # Replace deletes each run as the next comes: collect every run seen, not the ones alive at once.
    seen: dict[str, dict[str, str | None]] = {ns: {} for ns in accounts}

    def two_runs_each() -> bool:
        for (ns, name), run in objects(stack, accounts).items():
            seen[ns][name] = label(run)
        return all(len(runs) >= 2 for runs in seen.values())

    wait_for(two_runs_each, timeout=60, what="two runs each", details=shards.logs)
    for ns, runs in seen.items():
        path = f"/apis/rtc.recording.io/v1alpha1/namespaces/{ns}/rtcrecordingschedules/often"
        owner = label(stack.cluster.api.request("GET", path))
        assert owner in shards.procs and set(runs.values()) == {owner}, shards.logs()
    assert len({label(o) for o in objects(stack, accounts).values()}) == 3
