"""What Flux (kstatus) and Argo CD (the chart's Lua health script) show for an RtcRecording in each
phase, read from the real apiserver by tools/gitops-health (the kstatus library itself, and
gopher-lua run as Argo CD runs a resource.customizations.health script).

Each object is put into its phase by patching the status subresource exactly as the operator's
contract says (STATUSES below: the one place that says which conditions each phase carries).
The table this produces is docs/gitops-health-table.md, and the README's "GitOps health" table
must equal it. Schedules and classes (READY_CASES) are judged by their Ready condition, with the
statuses the operator's own writers produce, through argocd/ready-health.lua."""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from dataclasses import dataclass, field
from datetime import datetime

import pytest
import yaml

from rtc_recording.cluster import binaries

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

ROOT = binaries.REPO_ROOT
SCRIPT = ROOT / "charts" / "rtc-recording-operator" / "argocd" / "health.lua"
TABLE = ROOT / "docs" / "gitops-health-table.md"
CM_KEY = "resource.customizations.health.rtc.recording.io_RtcRecording"
T0 = "2025-03-25T03:27:28Z"


def conditions(generation: int, **types: tuple[bool, str, str]) -> list[dict]:
    """metav1.Conditions: type=(status, reason, message)."""
    return [
        {
            "type": t,
            "status": "True" if s else "False",
            "observedGeneration": generation,
            "lastTransitionTime": T0,
            "reason": r,
            "message": m,
        }
        for t, (s, r, m) in types.items()
    ]


def written(
    phase: str,
    reason: str,
    message: str,
    *,
    ready: tuple[bool, str],
    reconciling: bool,
    stalled: bool = False,
    generation: int = 1,
    synced: tuple[bool, str, str] | None = None,
) -> dict:
    """The status the operator writes: phase, reason, message, observedGeneration and the
    conditions Ready, Reconciling, Stalled (and Synced once an Update was answered)."""
    types = {
        "Ready": (ready[0], ready[1], message),
        "Reconciling": (reconciling, phase if reconciling else "Settled", message if reconciling else ""),
        "Stalled": (stalled, ready[1] if stalled else "NotStalled", message if stalled else ""),
    }
    if synced:
        types["Synced"] = synced
    return {
        "phase": phase,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "conditions": conditions(generation, **types),
    }


# The contract (issue 15, step 6), one entry per phase. Ready is True where the resource is where
# its spec wants it (Recording, Completed, Suspended): kstatus reads Ready=False as InProgress
# whatever its reason (test_kstatus_reads_ready_false_as_in_progress), so a Completed or Suspended
# resource with Ready=False would look progressing forever to Flux.
STATUSES = {
    "Pending": written(
        "Pending",
        "Throttling.User",
        "will retry StartRtcCloudRecording: Throttling.User: quota",
        ready=(False, "StartRetrying"),
        reconciling=True,
    ),
    "Starting": written(
        "Starting",
        "Starting",
        "calling StartRtcCloudRecording (attempt 1)",
        ready=(False, "Starting"),
        reconciling=True,
    ),
    "Recording": written(
        "Recording", "Started", "recording as task task-0001", ready=(True, "Started"), reconciling=False
    ),
    "Recovering": written(
        "Recovering",
        "Recovering",
        "the cloud lost the recorder and is bringing it back",
        ready=(False, "Recovering"),
        reconciling=True,
    ),
    "Stopping": written(
        "Stopping", "Stopped", "the cloud is stopping the task", ready=(False, "Stopped"), reconciling=True
    ),
    "Suspended": written(
        "Suspended",
        "Suspended",
        "spec.suspend stopped task task-0001; its files are kept",
        ready=(True, "Suspended"),
        reconciling=False,
    ),
    "Completed": written(
        "Completed",
        "IdleTimeout",
        "nobody subscribed published for maxIdleSeconds; the cloud ended the task",
        ready=(True, "Completed"),
        reconciling=False,
    ),
    "Failed": written(
        "Failed",
        "InvalidParameter.AppId",
        "the AppId does not exist",
        ready=(False, "StartRefused"),
        reconciling=False,
        stalled=True,
    ),
}


@dataclass
class Case:
    """One object: `status` is patched in; `spec_change` bumps metadata.generation to 2 (before the
    status when `observed` is 2, after it when 1); `deleting` holds it in deletion with a finalizer."""

    key: str
    situation: str
    status: dict | None
    kstatus: str
    argo: str
    argo_message: str
    spec_change: bool = False
    deleting: bool = False
    conditions: str = field(init=False)

    def __post_init__(self):
        self.conditions = ", ".join(f"{c['type']}={c['status']}" for c in (self.status or {}).get("conditions", []))


def at(generation: int, status: dict, **changes) -> dict:
    """`status` written for `generation`, with some fields or conditions changed."""
    out = json.loads(json.dumps(status))
    out["observedGeneration"] = generation
    for c in out["conditions"]:
        c["observedGeneration"] = generation
    for name, value in changes.items():
        if name in ("Ready", "Reconciling", "Stalled", "Synced"):
            (new,) = conditions(generation, **{name: value})
            if any(c["type"] == name for c in out["conditions"]):
                out["conditions"] = [new if c["type"] == name else c for c in out["conditions"]]
            else:
                out["conditions"].append(new)
        else:
            out[name] = value
    return out


UPDATE = "UpdateRtcCloudRecording: the layout of generation 2"
CASES = [
    Case(
        "no-status",
        "just created, no status yet",
        None,
        "Current",
        "Progressing",
        "Waiting for the operator to pick the recording up",
    ),
    *[
        Case(phase.lower(), phase, status, kstatus, argo, message)
        for phase, status, kstatus, argo, message in [
            (
                "Pending",
                STATUSES["Pending"],
                "InProgress",
                "Progressing",
                "Pending (Throttling.User): will retry StartRtcCloudRecording: Throttling.User: quota",
            ),
            (
                "Starting",
                STATUSES["Starting"],
                "InProgress",
                "Progressing",
                "Starting (Starting): calling StartRtcCloudRecording (attempt 1)",
            ),
            (
                "Recording",
                STATUSES["Recording"],
                "Current",
                "Healthy",
                "Recording (Started): recording as task task-0001",
            ),
            (
                "Recovering",
                STATUSES["Recovering"],
                "InProgress",
                "Progressing",
                "Recovering (Recovering): the cloud lost the recorder and is bringing it back",
            ),
            (
                "Stopping",
                STATUSES["Stopping"],
                "InProgress",
                "Progressing",
                "Stopping (Stopped): the cloud is stopping the task",
            ),
            (
                "Suspended",
                STATUSES["Suspended"],
                "Current",
                "Suspended",
                "Recording suspended (Suspended): spec.suspend stopped task task-0001; its files are kept",
            ),
            (
                "Completed",
                STATUSES["Completed"],
                "Current",
                "Healthy",
                "Recording completed (IdleTimeout): nobody subscribed published for maxIdleSeconds; "
                "the cloud ended the task",
            ),
            (
                "Failed",
                STATUSES["Failed"],
                "Failed",
                "Degraded",
                "Recording failed (InvalidParameter.AppId): the AppId does not exist",
            ),
        ]
    ],
    Case(
        "recording-unobserved",
        "Recording, spec changed, not yet seen by the operator",
        STATUSES["Recording"],
        "InProgress",
        "Progressing",
        "Waiting for the operator to act on generation 2 (status describes generation 1)",
        spec_change=True,
    ),
    Case(
        "recording-updating",
        "Recording, Update of the new spec in progress",
        at(2, STATUSES["Recording"], Reconciling=(True, "Updating", UPDATE)),
        "InProgress",
        "Progressing",
        "Updating: " + UPDATE,
        spec_change=True,
    ),
    Case(
        "recording-refused",
        "Recording, Update refused (previous settings kept)",
        at(
            2,
            STATUSES["Recording"],
            reason="InvalidParameter.Layout",
            message="the layout was refused",
            Synced=(False, "UpdateRefused", "InvalidParameter.Layout: the layout was refused"),
        ),
        "Current",
        "Degraded",
        "Recording, but the last update was refused (UpdateRefused): InvalidParameter.Layout: the layout was refused",
        spec_change=True,
    ),
    Case(
        "failed-unobserved",
        "Failed, spec changed (the operator will try again)",
        STATUSES["Failed"],
        "InProgress",
        "Progressing",
        "Waiting for the operator to act on generation 2 (status describes generation 1)",
        spec_change=True,
    ),
    Case(
        "stopping-deleted",
        "Stopping on delete (finalizer held)",
        STATUSES["Stopping"],
        "Terminating",
        "Progressing",
        "Pending deletion",
        deleting=True,
    ),
]
HOLD = "gitops-health.test.rtc.recording.io/hold"


def manifest(name: str, deleting: bool) -> dict:
    with open(ROOT / "examples" / "mixed-oss-minimal.yaml") as f:
        obj = yaml.safe_load(f)
    obj["metadata"] = {"name": name, **({"finalizers": [HOLD]} if deleting else {})}
    return obj


SWAPPED_LAYOUT = {  # the example's Grid preset replaced by hand-placed panes: a new generation
    "spec": {
        "layout": {
            "preset": None,
            "panes": [
                {"userId": "bob", "left": "0", "top": "0", "width": "0.5", "height": "1"},
                {"userId": "alice", "left": "0.5", "top": "0", "width": "0.5", "height": "1"},
            ],
        }
    }
}


@pytest.fixture(scope="module")
def tool():
    return binaries.ensure("gitops-health")["gitops-health"]


def run(tool, *args: str, input: str | None = None, script=SCRIPT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(tool), "-script", str(script), "-o", "json", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=60,
    )


def rows(proc: subprocess.CompletedProcess) -> dict[str, dict]:
    assert proc.returncode == 0, proc.stderr
    return {row["name"]: row for row in map(json.loads, proc.stdout.splitlines())}


@pytest.fixture(scope="module")
def recordings(cluster):
    """A namespace with one RtcRecording per case, each in its state."""
    cluster.apply_crds()
    namespace = f"gitops-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", namespace)
    kubectl = lambda *args, **kw: cluster.kubectl(*args, "-n", namespace, **kw)  # noqa: E731
    for case in CASES:
        name = f"rec-{case.key}"
        kubectl("create", "-f", "-", input=json.dumps(manifest(name, case.deleting)))
        observed = (case.status or {}).get("observedGeneration", 1)
        if case.spec_change and observed == 2:
            kubectl("patch", "rtcrec", name, "--type=merge", "-p", json.dumps(SWAPPED_LAYOUT))
        if case.status is not None:
            kubectl(
                "patch",
                "rtcrec",
                name,
                "--subresource=status",
                "--type=merge",
                "-p",
                json.dumps({"status": case.status}),
            )
        if case.spec_change and observed == 1:
            kubectl("patch", "rtcrec", name, "--type=merge", "-p", json.dumps(SWAPPED_LAYOUT))
        if case.deleting:
            kubectl("delete", "rtcrec", name, "--wait=false")
    try:
        yield namespace
    finally:
        for case in CASES:
            if case.deleting:
                kubectl(
                    "patch",
                    "rtcrec",
                    f"rec-{case.key}",
                    "--type=json",
                    "-p",
                    '[{"op": "remove", "path": "/metadata/finalizers"}]',
                    check=False,
                )
        kubectl("delete", "rtcrec", "--all", "--wait=false", check=False)


@pytest.fixture(scope="module")
def live(tool, cluster, recordings) -> dict[str, dict]:
    """The tool's rows for the objects as the apiserver serves them (kubeconfig + namespace)."""
    return rows(run(tool, "-kubeconfig", str(cluster.kubeconfig), "-namespace", recordings))


def test_the_apiserver_kept_each_state(cluster, recordings):
    got = {
        o["metadata"]["name"]: o
        for o in json.loads(cluster.kubectl("get", "rtcrec", "-n", recordings, "-o", "json").stdout)["items"]
    }
    for case in CASES:
        obj = got[f"rec-{case.key}"]
        assert obj.get("status") == case.status, case.key  # nothing pruned: Suspended is in the enum
        # Deleting an object that has finalizers bumps its generation too.
        assert obj["metadata"]["generation"] == (2 if case.spec_change or case.deleting else 1), case.key
        assert ("deletionTimestamp" in obj["metadata"]) == case.deleting, case.key


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.key)
def test_phase_kstatus_and_argo_cd_health(live, case):
    row = live[f"rec-{case.key}"]
    assert (row["phase"], row["kstatus"], row["argoHealth"], row["argoMessage"]) == (
        (case.status or {}).get("phase", ""),
        case.kstatus,
        case.argo,
        case.argo_message,
    ), row


def test_objects_on_standard_input_give_the_same_rows(tool, cluster, recordings, live):
    listed = cluster.kubectl("get", "rtcrec", "-n", recordings, "-o", "json").stdout
    assert rows(run(tool, input=listed)) == live
    # One object after another (not a List) is read too.
    items = json.loads(listed)["items"]
    assert rows(run(tool, input="\n".join(json.dumps(i) for i in items))) == live


# -- RtcRecordingSchedule and RtcRecordingClass: their health is their Ready condition ----------------
READY_SCRIPT = ROOT / "charts" / "rtc-recording-operator" / "argocd" / "ready-health.lua"
READY_KINDS = {"RtcRecordingSchedule": "rtcrecsched", "RtcRecordingClass": "rtcrecclass"}
NOW = datetime.fromisoformat(T0.replace("Z", "+00:00"))
GITOPS_LABEL = "gitops-health.test.rtc.recording.io/run"


def schedule_status(spec: dict, missing_class: str | None = None, invalid: str | None = None) -> dict:
    """What the scheduler writes (schedules.readiness and status_conditions, the operator's own code)."""
    from rtc_recording.decide import schedules

    if invalid:
        ready = (False, schedules.Reason.INVALID_SCHEDULE, invalid)
        return {"observedGeneration": 1, "conditions": schedules.status_conditions({}, ready, 1, NOW, stalled=True)}
    ready = schedules.readiness(spec, missing_class)
    return {"observedGeneration": 1, "conditions": schedules.status_conditions({}, ready, 1, NOW)}


def schedule_not_created() -> dict:
    from rtc_recording.decide import schedules

    message = "could not create weekly-1742875200: HTTP 403: exceeded quota: count/rtcrecordings.rtc.recording.io"
    ready = (False, schedules.Reason.RUN_NOT_CREATED, message)
    return {"observedGeneration": 1, "conditions": schedules.status_conditions({}, ready, 1, NOW)}


def class_written(annotation: str | None = None, in_use: bool = False) -> dict:
    """What the class status writes (classes.class_status, the operator's own code)."""
    from rtc_recording.decide import classes

    annotations = {"rtc.recording.io/is-default-class": annotation} if annotation else {}
    return classes.class_status({"metadata": {"generation": 1, "annotations": annotations}}, in_use, NOW)


def schedule_manifest(name: str, suspend: bool = False) -> dict:
    template = manifest("unused", False)["spec"]
    spec = {"schedule": "0 9 * * 1", "timeZone": "Europe/Berlin", "template": {"spec": template}}
    return {
        "apiVersion": "rtc.recording.io/v1alpha1",
        "kind": "RtcRecordingSchedule",
        "metadata": {"name": name},
        "spec": {**spec, **({"suspend": True} if suspend else {})},
    }


def class_manifest(name: str, annotation: str | None = None) -> dict:
    meta: dict = {"name": name}
    if annotation:
        meta["annotations"] = {"rtc.recording.io/is-default-class": annotation}
    return {
        "apiVersion": "rtc.recording.io/v1alpha1",
        "kind": "RtcRecordingClass",
        "metadata": meta,
        "spec": {"region": "cn-shanghai", "namespaceSelector": {}},
    }


@dataclass
class ReadyCase:
    """One schedule or class: `body` is created, `status` patched in, `spec_change` then bumps its generation."""

    kind: str
    key: str
    situation: str
    body: dict
    status: dict | None
    kstatus: str
    argo: str
    argo_message: str
    spec_change: bool = False


WEEKLY = schedule_manifest("x")["spec"]
SCHEDULED = "Scheduled: runs start on '0 9 * * 1' (Europe/Berlin)"
READY_CASES = [
    ReadyCase(
        "RtcRecordingSchedule",
        "no-status",
        "just created, no status yet",
        schedule_manifest("no-status"),
        None,
        "Current",
        "Progressing",
        "Waiting for the operator to write the Ready condition",
    ),
    ReadyCase(
        "RtcRecordingSchedule",
        "scheduled",
        "runs start as scheduled",
        schedule_manifest("scheduled"),
        schedule_status(WEEKLY),
        "Current",
        "Healthy",
        SCHEDULED,
    ),
    ReadyCase(
        "RtcRecordingSchedule",
        "suspended",
        "suspended (spec.suspend)",
        schedule_manifest("suspended", suspend=True),
        schedule_status({**WEEKLY, "suspend": True}),
        "Current",
        "Suspended",
        "Suspended: spec.suspend is true: no new runs start",
    ),
    ReadyCase(
        "RtcRecordingSchedule",
        "class-not-found",
        "the template's class does not exist",
        schedule_manifest("class-not-found"),
        schedule_status(WEEKLY, missing_class="gold"),
        "InProgress",
        "Progressing",
        "ClassNotFound: RtcRecordingClass gold (spec.template.spec.recordingClassName) does not exist; "
        "each run waits for it",
    ),
    ReadyCase(
        "RtcRecordingSchedule",
        "run-not-created",
        "a run could not be created",
        schedule_manifest("run-not-created"),
        schedule_not_created(),
        "InProgress",
        "Progressing",
        "RunNotCreated: could not create weekly-1742875200: HTTP 403: exceeded quota: "
        "count/rtcrecordings.rtc.recording.io",
    ),
    ReadyCase(
        "RtcRecordingSchedule",
        "invalid",
        "invalid schedule (a time zone croniter cannot read)",
        schedule_manifest("invalid"),
        schedule_status(WEEKLY, invalid="spec.timeZone 'Mars/Olympus' is not a time zone name"),
        "Failed",
        "Degraded",
        "InvalidSchedule: spec.timeZone 'Mars/Olympus' is not a time zone name",
    ),
    ReadyCase(
        "RtcRecordingSchedule",
        "unobserved",
        "spec changed, not yet seen by the operator",
        schedule_manifest("unobserved"),
        schedule_status(WEEKLY),
        "InProgress",
        "Progressing",
        "Waiting for the operator to act on generation 2 (status describes generation 1)",
        spec_change=True,
    ),
    ReadyCase(
        "RtcRecordingClass",
        "no-status",
        "just created, no status yet",
        class_manifest("no-status"),
        None,
        "Current",
        "Progressing",
        "Waiting for the operator to write the Ready condition",
    ),
    ReadyCase(
        "RtcRecordingClass",
        "valid",
        "valid (default, in use)",
        class_manifest("valid", annotation="true"),
        class_written("true", in_use=True),
        "Current",
        "Healthy",
        "ClassValid: RtcRecordings may use it in the namespaces spec.namespaceSelector matches",
    ),
    ReadyCase(
        "RtcRecordingClass",
        "invalid",
        "a problem (status.problems)",
        class_manifest("invalid", annotation="yes"),
        class_written("yes"),
        "Failed",
        "Degraded",
        'InvalidClass: annotation rtc.recording.io/is-default-class is "yes": only "true" makes a default class',
    ),
    ReadyCase(
        "RtcRecordingClass",
        "unobserved",
        "spec changed, not yet seen by the operator",
        class_manifest("unobserved"),
        class_written(),
        "InProgress",
        "Progressing",
        "Waiting for the operator to act on generation 2 (status describes generation 1)",
        spec_change=True,
    ),
]
SPEC_CHANGES = {
    "RtcRecordingSchedule": {"spec": {"schedule": "0 10 * * 1"}},
    "RtcRecordingClass": {"spec": {"region": "ap-southeast-1"}},
}


@pytest.fixture(scope="module")
def ready_live(tool, cluster, recordings) -> dict[tuple[str, str], dict]:
    """The tool's rows for a schedule and a class per case, read back from the apiserver (kubectl get -o json)."""
    run_id = recordings  # the recordings' namespace: unique, and the schedules' home
    kubectl = cluster.kubectl
    made = []
    for case in READY_CASES:
        resource = READY_KINDS[case.kind]
        scope = ["-n", run_id] if case.kind == "RtcRecordingSchedule" else []
        name = case.key if scope else f"{run_id}-{case.key}"
        body = json.loads(json.dumps(case.body))
        body["metadata"].update(name=name, labels={GITOPS_LABEL: run_id})
        kubectl("create", *scope, "-f", "-", input=json.dumps(body))
        made.append((resource, name, scope))
        if case.status is not None:
            patch = json.dumps({"status": case.status})
            kubectl("patch", resource, name, *scope, "--subresource=status", "--type=merge", "-p", patch)
        if case.spec_change:
            kubectl("patch", resource, name, *scope, "--type=merge", "-p", json.dumps(SPEC_CHANGES[case.kind]))
    try:
        out = {}
        for kind, resource in READY_KINDS.items():
            scope = ["-n", run_id] if kind == "RtcRecordingSchedule" else []
            listed = kubectl("get", resource, *scope, "-l", f"{GITOPS_LABEL}={run_id}", "-o", "json").stdout
            for name, row in rows(run(tool, input=listed, script=READY_SCRIPT)).items():
                out[(kind, name.removeprefix(f"{run_id}-"))] = row
        yield out
    finally:
        for resource, name, scope in made:
            kubectl("delete", resource, name, *scope, "--wait=false", check=False)


@pytest.mark.parametrize("case", READY_CASES, ids=lambda c: f"{READY_KINDS[c.kind]}-{c.key}")
def test_schedule_and_class_kstatus_and_argo_cd_health(ready_live, case):
    row = ready_live[(case.kind, case.key)]
    assert (row["kstatus"], row["argoHealth"], row["argoMessage"]) == (case.kstatus, case.argo, case.argo_message), row


def ready_markdown(ready_live: dict[tuple[str, str], dict], kind: str) -> str:
    lines = [
        "| Situation | Conditions | kstatus (Flux) | Argo CD health | Argo CD message |",
        "| --- | --- | --- | --- | --- |",
    ]
    for case in READY_CASES:
        if case.kind == kind:
            row = ready_live[(kind, case.key)]
            conditions = ", ".join(f"{c['type']}={c['status']}" for c in (case.status or {}).get("conditions", []))
            lines.append(
                f"| {case.situation} | {conditions or '(none)'} | {row['kstatus']} | {row['argoHealth']} "
                f"| {row['argoMessage']} |"
            )
    return "\n".join(lines) + "\n"


def markdown(live: dict[str, dict]) -> str:
    lines = [
        "| Situation | `status.phase` | Conditions | kstatus (Flux) | Argo CD health | Argo CD message |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for case in CASES:
        row = live[f"rec-{case.key}"]
        phase = f"`{row['phase']}`" if row["phase"] else "(none)"
        lines.append(
            f"| {case.situation} | {phase} | {case.conditions or '(none)'} | {row['kstatus']} "
            f"| {row['argoHealth']} | {row['argoMessage']} |"
        )
    return "\n".join(lines) + "\n"


def test_the_table_is_generated_and_is_the_readme_s(live, ready_live):
    table = markdown(live)
    generated = (
        "<!-- Written by tests/gitops/test_health.py from what tools/gitops-health printed for "
        "objects on the local apiserver; do not edit. -->\n\n"
        + table
        + "".join(
            f"\n{kind} (Argo CD: argocd/ready-health.lua):\n\n" + ready_markdown(ready_live, kind)
            for kind in READY_KINDS
        )
    )
    if not TABLE.exists() or TABLE.read_text() != generated:
        TABLE.write_text(generated)
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## GitOps health\n", 1)
    assert len(section) == 2, "README has no '## GitOps health' section"
    found = [line for line in section[1].split("\n## ", 1)[0].splitlines() if line.startswith("|")]
    tables = [line for line in generated.splitlines() if line.startswith("|")]
    assert found == tables, f"README's GitOps health tables differ; the generated ones:\n{generated}"


# -- the Argo CD snippet is the shipped script, everywhere it is shown ----------------------------
@pytest.mark.parametrize("doc", ["README.md", "docs/gitops.md", "charts/rtc-recording-operator/README.md"])
def test_the_argo_cd_snippet_is_the_shipped_script(doc):
    text = (ROOT / doc).read_text()
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if CM_KEY in b]
    assert len(blocks) == 1, f"{doc}: one yaml block with {CM_KEY}"
    snippet = yaml.safe_load(blocks[0])
    assert snippet["kind"] == "ConfigMap" and snippet["metadata"]["name"] == "argocd-cm"
    assert snippet["data"] == {
        CM_KEY: SCRIPT.read_text(),
        **{f"resource.customizations.health.rtc.recording.io_{kind}": READY_SCRIPT.read_text() for kind in READY_KINDS},
    }


# -- the runner is Argo CD's sandbox, and kstatus reads Ready=False as InProgress ------------------
def test_kstatus_reads_ready_false_as_in_progress(tool):
    """Why Completed and Suspended carry Ready=True: the same Completed status with Ready=False
    (Reconciling and Stalled False) is InProgress to kstatus, which Flux waits on until it times out."""
    status = at(1, STATUSES["Completed"], Ready=(False, "Completed", "the cloud ended the task"))
    obj = {**manifest("completed-ready-false", False), "status": status}
    obj["metadata"].update(namespace="n", generation=1)
    (row,) = rows(run(tool, input=json.dumps(obj))).values()
    assert (row["kstatus"], row["argoHealth"]) == ("InProgress", "Healthy")


@pytest.mark.parametrize(
    "body, health, message",
    [
        (
            'return {status = string.upper("healthy")}',
            "Unknown",
            "attempt to index a non-table object(nil) with key 'upper'",
        ),
        ('return {status = "Fine"}', "Unknown", "Lua returned an invalid health status"),
        ('return "Healthy"', "Unknown", "expect table output from Lua script, not string"),
    ],
)
def test_the_runner_opens_what_argo_cd_opens_and_checks_what_it_checks(tool, tmp_path, body, health, message):
    """A script using the string library fails as in Argo CD (custom scripts get base and table
    only), and a bad result is Unknown: the shipped script passing here passes there."""
    script = tmp_path / "health.lua"
    script.write_text(body + "\n")
    obj = {**manifest("x", False)}
    obj["metadata"].update(namespace="n", generation=1)
    proc = run(tool, input=json.dumps(obj), script=script)
    (row,) = (json.loads(line) for line in proc.stdout.splitlines())
    assert row["argoHealth"] == health and message in row["argoMessage"], row
    assert proc.returncode == (1 if "argoScriptError" in row else 0), proc.stderr


# -- what the operator's own code writes, through the same two tools ------------------------------
# decisions.phase_conditions and decisions.update_refused are the operator's status writers (pure
# functions); the table above is what they must produce.


def _operator_written(phase: str) -> dict:
    from rtc_recording.api.recording import RtcRecordingStatus
    from rtc_recording.decide.actions import Phase
    from rtc_recording.decide.patches import phase_conditions

    contract = STATUSES[phase]
    ready = next(c for c in contract["conditions"] if c["type"] == "Ready")
    now = datetime.fromisoformat(T0.replace("Z", "+00:00"))
    return {
        **contract,
        "conditions": phase_conditions(
            RtcRecordingStatus(), Phase(phase), ready["reason"], contract["message"], 1, now
        ),
    }


def _through_the_tool(tool, status: dict, generation: int = 1) -> dict:
    obj = {**manifest("operator-written", False), "status": status}
    obj["metadata"].update(namespace="n", generation=generation)
    (row,) = rows(run(tool, input=json.dumps(obj))).values()
    return row


@pytest.mark.parametrize("phase", list(STATUSES))
def test_the_operator_writes_what_the_table_shows(tool, phase):
    case = next(c for c in CASES if c.key == phase.lower())
    row = _through_the_tool(tool, _operator_written(phase))
    assert (row["kstatus"], row["argoHealth"]) == (case.kstatus, case.argo), row


def test_the_operator_s_refused_update_is_not_progressing_forever(tool):
    from rtc_recording.api.recording import RtcRecordingStatus
    from rtc_recording.decide.patches import update_refused

    recording = STATUSES["Recording"]
    now = datetime.fromisoformat(T0.replace("Z", "+00:00"))
    patch = update_refused(
        RtcRecordingStatus.model_validate(recording), "InvalidParameter.Layout", "the layout was refused", 2, now
    )
    row = _through_the_tool(tool, {**recording, **patch}, generation=2)
    case = next(c for c in CASES if c.key == "recording-refused")
    assert (row["kstatus"], row["argoHealth"]) == (case.kstatus, case.argo), row
