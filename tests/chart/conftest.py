"""Helpers for the chart tests: the real helm binary, rendering with values, finding objects."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from rtc_recording.cluster import binaries

CHART = binaries.REPO_ROOT / "charts" / "rtc-recording-operator"
NAMESPACE = "rtc-system"


class HelmError(AssertionError):
    pass


class Helm:
    def __init__(self, path: Path, tmp: Path):
        self.path, self.tmp, self._n = path, tmp, 0

    def run(self, *args: str, values: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
        argv = [str(self.path), *args]
        if values is not None:
            self._n += 1
            file = self.tmp / f"values-{self._n}.yaml"
            file.write_text(yaml.safe_dump(values))
            argv += ["-f", str(file)]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if check and proc.returncode != 0:
            raise HelmError(f"helm {' '.join(args)} failed:\n{proc.stderr}")
        return proc

    def template(self, values: dict | None = None, release: str = "rtc") -> list[dict]:
        out = self.run("template", release, str(CHART), "-n", NAMESPACE, values=values or {}).stdout
        return [doc for doc in yaml.safe_load_all(out) if doc]

    def refuses(self, values: dict) -> str:
        """helm's error message for values the chart must refuse."""
        proc = self.run("template", "rtc", str(CHART), "-n", NAMESPACE, values=values, check=False)
        assert proc.returncode != 0, f"helm accepted {values}"
        return proc.stderr


@pytest.fixture(scope="session")
def helm(tmp_path_factory) -> Helm:
    return Helm(binaries.ensure("helm")["helm"], tmp_path_factory.mktemp("helm"))


def find(objs: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objs: list[dict], kind: str, name: str) -> dict:
    found = find(objs, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def env_of(deployment: dict) -> dict[str, dict]:
    """name -> the env entry (with `value` or `valueFrom`) of the Deployment's (or StatefulSet's) only
    container."""
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e for e in container.get("env", [])}


def rule_set(role: dict) -> set[tuple[str, ...]]:
    """Rules flattened to (apiGroup, resource, verb), or (apiGroup, resource, verb, resourceName)
    for a rule limited to names, so that any broader grant shows up."""
    out = set()
    for rule in role["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs", "resourceNames"}, f"unexpected rule fields in {rule}"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    for name in rule.get("resourceNames") or [None]:
                        out.add((group, resource, verb) + ((name,) if name else ()))
    return out


def rules(*entries: tuple[str, str, str]) -> set[tuple[str, str, str]]:
    """rules(("group", "resource", "verb verb")) -> the flattened set."""
    return {(g, r, v) for g, r, verbs in entries for v in verbs.split()}


OPERATOR_RULES = rules(
    ("rtc.recording.io", "rtcrecordings", "get list watch patch delete"),  # delete: ttlSecondsAfterFinished
    ("rtc.recording.io", "rtcrecordings", "create"),  # the runs of RtcRecordingSchedules
    ("rtc.recording.io", "rtcrecordingschedules", "get list watch"),
    ("rtc.recording.io", "rtcrecordingschedules/status", "patch"),
    ("rtc.recording.io", "rtcrecordings/status", "get patch"),
    ("", "events", "create"),
    # Only Secrets that opt in are used; patch puts the finalizer on a credentials Secret in use
    # (confined to metadata.finalizers by the chart's ValidatingAdmissionPolicy).
    ("", "secrets", "get patch"),
)
RECEIVER_RULES = rules(
    ("rtc.recording.io", "rtcrecordings", "list watch"),  # its own view of every resource's current task
)  # no Secret: the operator relays to spec.notify.url, signed with the user's key
# Cluster-wide in every install (cluster-scoped kinds): the class a recording names, its namespace's labels.
OPERATOR_CLASS_RULES = rules(
    ("rtc.recording.io", "rtcrecordingclasses", "get list watch"),
    ("rtc.recording.io", "rtcrecordingclasses/status", "patch"),
    ("", "namespaces", "get"),
)
# With watchNamespaces, in each of classCredentialsNamespaces: a class's credentials Secret (read only:
# no finalizer is put on a class's Secret).
OPERATOR_CLASS_CREDENTIALS_RULES = rules(("", "secrets", "get"))
# In the release namespace only: callback evidence and relays, written by the receiver, consumed by
# the operator; and the operator's record that task ids written before seals existed were sealed.
OPERATOR_EVIDENCE_RULES = rules(("", "configmaps", "list watch delete"))
RECEIVER_EVIDENCE_RULES = rules(("", "configmaps", "create get"))  # get: another replica's replay marker
OPERATOR_SEALS_RULES = rules(("", "configmaps", "get list create delete"))


def lease_rules(lease: str) -> set[tuple[str, ...]]:
    """In the release namespace only: the operator's Lease (active/standby, docs/ha.md). create
    cannot be limited to a name."""
    return {
        ("coordination.k8s.io", "leases", "get", lease),
        ("coordination.k8s.io", "leases", "update", lease),
        ("coordination.k8s.io", "leases", "create"),
    }


# With sharding (docs/sharding.md): each shard holds a Lease named after its pod and the sharder watches
# them all, so Leases of the release namespace by any name; and the schedules' shard label.
SHARDING_LEASE_RULES = rules(("coordination.k8s.io", "leases", "get list watch create update"))
OPERATOR_SHARDING_RULES = OPERATOR_RULES | rules(("rtc.recording.io", "rtcrecordingschedules", "patch"))
