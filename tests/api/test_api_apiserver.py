"""The CRD in a real kube-apiserver: the whole corpus and the examples through `kubectl apply`,
against every supported Kubernetes version (the default, the oldest and the newest: the CRD's
CEL rules, selectable field and validation reasons must work on each; README "Kubernetes versions").

Objects are applied in batches (one kubectl call per directory: kubectl reports every object's
outcome) and each outcome is then checked on its own, so the module stays fast on 2 cores.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml
from api_corpus import CORPUS, EXAMPLES, load

from rtc_recording.api.recording import RtcRecordingStatus
from rtc_recording.cluster import binaries

pytestmark = pytest.mark.cluster

NAMESPACE = "api-corpus"
VALID, INVALID, TRANSITIONS = load("valid"), load("invalid"), load("transitions")

# kubectl prints one line per refused object, naming it in one of two ways: validation errors
# ("... "NAME" is invalid: ...") and server-side apply's typed-patch errors ("(NAMESPACE/NAME; ...").
_REFUSAL = re.compile(r'^Error from server[^:]*: (?:.*? "(?P<invalid>[^"]+)" is invalid|.*?\([^/;]+/(?P<patch>[^;]+);)')
_APPLIED = re.compile(r"^\S+/(?P<name>\S+) serverside-applied")


def outcomes(proc) -> tuple[set[str], dict[str, str]]:
    """(names applied, {name: error line}) of one `kubectl apply --server-side` run."""
    applied = {m["name"] for m in map(_APPLIED.match, proc.stdout.splitlines()) if m}
    refused = {}
    for line in proc.stderr.splitlines():
        m = _REFUSAL.match(line)
        assert m, f"kubectl said something not attributable to an object:\n{proc.stderr}"
        refused[m["invalid"] or m["patch"]] = line
    return applied, refused


@pytest.fixture(
    scope="module",
    params=[
        pytest.param(v, marks=() if v == binaries.KUBERNETES_VERSION else pytest.mark.slow)
        for v in binaries.KUBERNETES_VERSIONS
    ],
)
def kubectl(request, cluster_of):
    cluster = cluster_of(request.param)
    cluster.apply_crds()
    cluster.kubectl("create", "namespace", NAMESPACE)

    def run(*args: str, input: str | None = None, check: bool = True):
        return cluster.kubectl("-n", NAMESPACE, *args, input=input, check=check)

    return run


def _apply(kubectl, *args: str, input: str | None = None):
    return outcomes(kubectl("apply", "--server-side", *args, input=input, check=False))


@pytest.fixture(scope="module")
def created(kubectl):
    applied, refused = _apply(kubectl, "-f", str(CORPUS / "valid"), "-f", str(EXAMPLES))
    assert refused == {}
    return applied


@pytest.fixture(scope="module")
def refusals(kubectl):
    return _apply(kubectl, "--dry-run=server", "-f", str(CORPUS / "invalid"))


@pytest.fixture(scope="module")
def updates(kubectl):
    def stream(index: int) -> str:
        return "---\n".join(yaml.safe_dump(item.docs[index]) for item in TRANSITIONS)

    applied, refused = _apply(kubectl, "-f", "-", input=stream(0))
    assert refused == {} and len(applied) == len(TRANSITIONS)
    return _apply(kubectl, "--dry-run=server", "-f", "-", input=stream(1))


@pytest.mark.parametrize("item", VALID, ids=lambda i: i.name)
def test_valid_items_are_created(created, item):
    assert item.name in created


def test_examples_are_created(created):
    names = {doc["metadata"]["name"] for p in EXAMPLES.glob("*.yaml") for doc in yaml.safe_load_all(p.read_text())}
    assert names <= created


@pytest.mark.parametrize("item", INVALID, ids=lambda i: i.name)
def test_invalid_items_are_refused_naming_the_field(refusals, item):
    applied, refused = refusals
    assert item.name not in applied, "accepted"
    assert item.expect in refused[item.name]


@pytest.mark.parametrize("item", TRANSITIONS, ids=lambda i: i.name)
def test_transitions(updates, item):
    applied, refused = updates
    if item.expect:
        assert item.expect in refused.get(item.name, "not refused")
    else:
        assert item.name in applied, refused.get(item.name)


def test_status_subresource_takes_what_the_operator_writes(kubectl, created):
    status = {
        "phase": "Recording",
        "reason": "Started",
        "message": "task running",
        "taskId": "task-0001",
        "startTime": "2025-03-25T03:27:28Z",
        "observedGeneration": 1,
        "attempt": {"number": 1, "startedAt": "2025-03-25T03:27:27Z"},
        "strayTasks": 0,
        "files": {
            "hls": ["meetings/task-0001/standup.m3u8"],
            "mp4": [],
            "mp3": [],
            "vod": [{"mediaIds": ["m-1"], "mergedIds": [], "stream": "alice"}],
        },
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "observedGeneration": 1,
                "lastTransitionTime": "2025-03-25T03:27:28Z",
                "reason": "Recording",
                "message": "",
            }
        ],
        "kopf": {"progress": {"create": {"retries": 1}}},
    }
    kubectl(
        "patch", "rtcrec", "standup-42", "--subresource=status", "--type=merge", "-p", json.dumps({"status": status})
    )
    stored = json.loads(kubectl("get", "rtcrec", "standup-42", "-o", "json").stdout)["status"]
    assert stored == status  # nothing pruned, the kopf blob included
    assert RtcRecordingStatus.model_validate(stored).task_id == "task-0001"

    row = kubectl("get", "rtcrec", "standup-42", "-o", "wide", "--no-headers").stdout.split()
    # READY from the Ready condition; SYNCED is empty (no Synced condition) and so not split out.
    assert row[:7] == ["standup-42", "standup-42", "Mixed", "Recording", "Started", "True", "task-0001"]
    wrong = kubectl(
        "patch",
        "rtcrec",
        "standup-42",
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status": {"phase": "Running"}}',
        check=False,
    )
    assert "status.phase" in wrong.stderr and "Unsupported value" in wrong.stderr


def test_kubectl_explain_is_a_manual(kubectl):
    explained = kubectl("explain", "rtcrec.spec.layout.panes.left").stdout
    assert "fraction of the picture's width (X)" in explained
    explained = kubectl("explain", "rtcrec.spec.notify.authKeySecretRef").stdout
    assert "16 to 64 letters" in explained
    # where the vendor's page is ambiguous, the reading is next to the field
    readings = {
        "rtcrec.spec.subscribers": "If you subscribe to different StreamType or SourceType values",
        "rtcrec.spec.storage.files.fileNamePattern": 'keeps them as the literal text "{UserId}"',
        "rtcrec.spec.storage.oss.endpoint": "no custom domain (CNAME)",
        "rtcrec.spec.layout.panes": "The page sets no limit on the number of panes",
        "rtcrec.spec.layout.panes.top": 'with or without the leading zero (".5")',
        "rtcrec.spec.layout.preset": "an L around the large pane",
        "rtcrec.spec.notify.fileUploadedFormats": "case-insensitive",
        "rtcrec.spec.subscribers.source": "refused otherwise rather than silently ignored",
    }
    for field, reading in readings.items():
        assert reading in " ".join(kubectl("explain", field).stdout.split()), field


def test_task_id_is_a_selectable_field(kubectl, created):
    """The receiver finds the owner of a task by `status.taskId` (the CRD's selectableFields: GA in
    Kubernetes 1.32, beta and on by default in 1.31; an older apiserver drops them)."""
    kubectl(
        "patch",
        "rtcrec",
        "standup-42-grid",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"taskId": "task-selectable"}}),
    )
    found = kubectl("get", "rtcrec", "--field-selector=status.taskId=task-selectable", "-o", "name").stdout.split()
    assert found == ["rtcrecording.rtc.recording.io/standup-42-grid"]


def test_the_shard_column_shows_the_owner_label(kubectl, created):
    """With sharding (docs/sharding.md) `kubectl get -o wide` says which operator replica owns an object."""
    schedule = yaml.safe_load((EXAMPLES / "recording-schedule.yaml").read_text())["metadata"]["name"]
    for kind, name in (("rtcrec", "standup-42"), ("rtcrecsched", schedule)):
        kubectl("label", kind, name, "rtc.recording.io/shard=rtcrec-operator-1")
        header, row = (line.split() for line in kubectl("get", kind, name, "-o", "wide").stdout.splitlines())
        assert (header[-1], row[-1]) == ("SHARD", "rtcrec-operator-1"), kind
        assert "SHARD" not in kubectl("get", kind, name).stdout  # priority 1: -o wide only
        kubectl("label", kind, name, "rtc.recording.io/shard-")
