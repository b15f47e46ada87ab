"""`helm install` into the real local apiserver: the objects are accepted, the generated callback
key survives upgrades, and the ServiceAccounts get exactly the intended access.

The control plane has no controller-manager, scheduler or kubelet: Deployments create no pods, so
this proves the manifests and the RBAC wiring, not the running processes.
"""

from __future__ import annotations

import base64
import json
import secrets

import pytest

from .conftest import CHART

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


class Release:
    def __init__(self, cluster, helm, name: str, namespace: str):
        self.cluster, self.helm, self.name, self.namespace = cluster, helm, name, namespace
        self.fullname = f"{name}-rtc-recording-operator"

    def helm_run(self, verb: str, *args: str, values: dict | None = None):
        return self.helm.run(
            verb, self.name, *args, "--kubeconfig", str(self.cluster.kubeconfig), "-n", self.namespace, values=values
        )

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict:
        ns = ["-n", namespace or self.namespace] if namespace != "" else []
        return json.loads(self.cluster.kubectl("get", kind, name, *ns, "-o", "json").stdout)

    def can(self, sa: str, verb: str, resource: str, namespace: str, subresource: str | None = None) -> bool:
        args = ["auth", "can-i", verb, resource, f"--as=system:serviceaccount:{self.namespace}:{sa}"]
        args += ["--all-namespaces"] if namespace == "*" else ["-n", namespace]
        if subresource:
            args.append(f"--subresource={subresource}")
        out = self.cluster.kubectl(*args, check=False)
        assert out.stdout.strip() in {"yes", "no"}, out.stderr
        return out.stdout.strip() == "yes"


@pytest.fixture(scope="module")
def crds(cluster):
    # The CRD comes from the top-level crds/, applied by kubectl as other modules do, so these
    # releases leave it alone (crds.enabled=false); test_chart_crds.py installs it through the chart.
    cluster.apply_crds()
    return cluster


def installed(crds, helm, prefix: str, values: dict) -> Release:
    """A release of the chart in a namespace of its own (the CRDs left to the crds fixture)."""
    suffix = secrets.token_hex(3)
    rel = Release(crds, helm, f"{prefix}-{suffix}", f"rtc-{prefix}-{suffix}")
    rel.helm_run("install", str(CHART), "--create-namespace", values={"crds": {"enabled": False}, **values})
    return rel


@pytest.fixture(scope="module")
def release(crds, helm):
    rel = installed(crds, helm, "chart", {"callbacks": {"url": "https://cb.example.com"}})
    yield rel
    rel.helm_run("uninstall")


@pytest.fixture(scope="module")
def scoped_release(crds, helm):
    watched = [f"team-a-{secrets.token_hex(3)}", f"team-b-{secrets.token_hex(3)}"]
    for ns in watched:
        crds.kubectl("create", "namespace", ns)
    rel = installed(crds, helm, "scoped", {"watchNamespaces": watched, "callbacks": {"enabled": False}})
    rel.watched = watched
    yield rel
    rel.helm_run("uninstall")


@pytest.fixture(scope="module")
def sharded_release(crds, helm):
    rel = installed(crds, helm, "sharded", {"sharding": {"enabled": True}})
    yield rel
    rel.helm_run("uninstall")


def test_install_creates_every_object(release):
    f, ns = release.fullname, release.namespace
    for kind, name in [
        ("deployment", f),
        ("deployment", f"{f}-receiver"),
        ("service", f"{f}-metrics"),
        ("service", f"{f}-receiver"),
        ("service", f"{f}-receiver-metrics"),
        ("serviceaccount", f),
        ("serviceaccount", f"{f}-receiver"),
        ("poddisruptionbudget", f"{f}-receiver"),
        ("secret", f"{f}-callback-auth"),
        ("poddisruptionbudget", f),
        ("role", f"{f}-lease"),
        ("rolebinding", f"{f}-lease"),
    ]:
        assert release.get(kind, name)["metadata"]["namespace"] == ns
    for kind in ("clusterrole", "clusterrolebinding"):
        for name in (f, f"{f}-receiver"):
            release.get(kind, name, namespace="")
    for kind in ("mutatingadmissionpolicy", "mutatingadmissionpolicybinding"):  # the API is GA on 1.36
        release.get(kind, f"{ns}-{f}-stop-finalizer"[:63].rstrip("-"), namespace="")
    status = json.loads(release.helm_run("status", "-o", "json").stdout)
    assert status["info"]["status"] == "deployed"
    assert "Callback URL: https://cb.example.com" in status["info"]["notes"]


def test_generated_callback_key_survives_upgrade(release):
    name = f"{release.fullname}-callback-auth"
    before = release.get("secret", name)["data"]["authKey"]
    assert len(base64.b64decode(before)) == 32
    release.helm_run("upgrade", str(CHART), "--reuse-values", values={"receiver": {"replicas": 3}})
    assert release.get("deployment", f"{release.fullname}-receiver")["spec"]["replicas"] == 3
    assert release.get("secret", name)["data"]["authKey"] == before


def test_operator_service_account_has_exactly_its_access(release):
    sa, other_ns = release.fullname, "default"
    for verb in ("get", "list", "watch", "patch", "delete"):  # delete: ttlSecondsAfterFinished
        assert release.can(sa, verb, "rtcrecordings.rtc.recording.io", "*")
    assert release.can(sa, "patch", "rtcrecordings.rtc.recording.io", other_ns, subresource="status")
    assert release.can(sa, "create", "events", other_ns)
    assert release.can(sa, "get", "secrets", other_ns)
    for verb in ("get", "list"):  # the class a recording names, the default class
        assert release.can(sa, verb, "rtcrecordingclasses.rtc.recording.io", "default")
    assert release.can(sa, "get", "namespaces", "default")  # its labels, for the class's namespaceSelector
    assert release.can(sa, "patch", "rtcrecordingclasses.rtc.recording.io", "default", subresource="status")
    for verb, resource in [
        ("create", "rtcrecordingclasses.rtc.recording.io"),
        ("patch", "rtcrecordingclasses.rtc.recording.io"),
        ("list", "namespaces"),
        ("patch", "namespaces"),
    ]:
        assert not release.can(sa, verb, resource, "default"), (verb, resource)
    assert release.can(sa, "create", "rtcrecordings.rtc.recording.io", other_ns)  # a schedule's runs
    for verb in ("get", "list", "watch"):
        assert release.can(sa, verb, "rtcrecordingschedules.rtc.recording.io", "*")
    assert release.can(sa, "patch", "rtcrecordingschedules.rtc.recording.io", other_ns, subresource="status")
    assert not release.can(sa, "patch", "rtcrecordingschedules.rtc.recording.io", other_ns)
    assert release.can(sa, "patch", "secrets", other_ns)  # only finalizers: the ValidatingAdmissionPolicy
    for verb, resource in [
        ("update", "rtcrecordings.rtc.recording.io"),
        ("list", "secrets"),
        ("watch", "secrets"),
        ("create", "secrets"),
        ("delete", "secrets"),
        ("get", "customresourcedefinitions.apiextensions.k8s.io"),
        ("list", "clusterkopfpeerings.kopf.dev"),
        ("get", "pods"),
    ]:
        assert not release.can(sa, verb, resource, other_ns), (verb, resource)


def test_operator_may_hold_only_its_own_lease(release):
    sa, ns, lease = release.fullname, release.namespace, "leases.coordination.k8s.io"
    for verb in ("get", "update"):
        assert release.can(sa, verb, f"{lease}/{sa}", ns)
        assert not release.can(sa, verb, f"{lease}/kube-controller-manager", ns), verb
        assert not release.can(sa, verb, f"{lease}/{sa}", "kube-system"), verb
    assert release.can(sa, "create", lease, ns)
    assert not release.can(sa, "create", lease, "default")
    for verb in ("list", "watch", "delete", "patch"):
        assert not release.can(sa, verb, f"{lease}/{sa}", ns), verb
    assert not release.can(f"{sa}-receiver", "get", f"{lease}/{sa}", ns)


def test_receiver_service_account_has_exactly_its_access(release):
    sa, other_ns = f"{release.fullname}-receiver", "default"
    for verb in ("list", "watch"):
        assert release.can(sa, verb, "rtcrecordings.rtc.recording.io", "*")
    assert not release.can(sa, "get", "secrets", other_ns)  # relays are signed by the operator
    assert not release.can(sa, "get", "secrets", release.namespace)
    assert release.can(sa, "create", "configmaps", release.namespace)  # evidence and relays, for the operator
    assert not release.can(sa, "create", "configmaps", other_ns)
    for verb in ("get", "patch", "delete"):
        assert not release.can(sa, verb, "rtcrecordings.rtc.recording.io", other_ns), verb
    assert not release.can(sa, "patch", "rtcrecordings.rtc.recording.io", other_ns, subresource="status")
    assert not release.can(sa, "create", "events", other_ns)
    assert not release.can(sa, "list", "secrets", other_ns)


def test_operator_reads_and_deletes_evidence_only_in_its_namespace(release):
    sa = release.fullname
    for verb in ("list", "watch", "delete", "get", "create"):  # get, create: the seals record (ownership.py)
        assert release.can(sa, verb, "configmaps", release.namespace)
    for verb in ("list", "get", "create"):
        assert not release.can(sa, verb, "configmaps", "default")


def test_watch_namespaces_grants_only_those_namespaces(scoped_release):
    rel, sa = scoped_release, scoped_release.fullname
    for ns in rel.watched:
        rel.get("role", sa, namespace=ns)
        rel.get("rolebinding", sa, namespace=ns)
        assert rel.can(sa, "list", "rtcrecordings.rtc.recording.io", ns)
        assert rel.can(sa, "get", "secrets", ns) and rel.can(sa, "patch", "secrets", ns)
    assert not rel.can(sa, "list", "rtcrecordings.rtc.recording.io", "*")
    assert not rel.can(sa, "get", "secrets", rel.namespace)  # not even its own ownership key
    assert not rel.can(sa, "get", "secrets", "default") and not rel.can(sa, "patch", "secrets", "default")
    assert rel.cluster.kubectl("get", "clusterrole", sa, check=False).returncode != 0
    assert rel.can(sa, "get", "rtcrecordingclasses.rtc.recording.io", "default")  # cluster-scoped: always cluster-wide
    # callbacks.enabled=false: no receiver at all.
    assert rel.cluster.kubectl("get", "deployment", f"{sa}-receiver", "-n", rel.namespace, check=False).returncode != 0


def test_sharded_install_creates_a_statefulset_of_shards(sharded_release):
    rel, f = sharded_release, sharded_release.fullname
    sts = rel.get("statefulset", f)
    assert sts["spec"]["replicas"] == 3 and sts["spec"]["serviceName"] == f"{f}-shards"
    assert rel.get("service", f"{f}-shards")["spec"]["clusterIP"] == "None"
    assert rel.cluster.kubectl("get", "deployment", f, "-n", rel.namespace, check=False).returncode != 0
    rel.get("poddisruptionbudget", f)
    notes = json.loads(rel.helm_run("status", "-o", "json").stdout)["info"]["notes"]
    assert f"kubectl -n {rel.namespace} get leases -l rtc.recording.io/ring={f}" in notes
    assert "kubectl get rtcrec -A -o wide" in notes


def test_shards_may_hold_and_watch_any_lease_of_their_namespace_and_label_schedules(sharded_release):
    """Each shard's Lease is named after its pod; the sharder watches them all. Nothing beyond the release
    namespace, and no delete: a shard never gives its Lease up."""
    rel, sa, lease = sharded_release, sharded_release.fullname, "leases.coordination.k8s.io"
    ns = rel.namespace
    for verb in ("get", "update"):
        assert rel.can(sa, verb, f"{lease}/{sa}-2", ns) and rel.can(sa, verb, f"{lease}/{sa}", ns), verb
    for verb in ("list", "watch", "create"):
        assert rel.can(sa, verb, lease, ns), verb
        assert not rel.can(sa, verb, lease, "default"), verb
    for verb in ("delete", "patch"):
        assert not rel.can(sa, verb, f"{lease}/{sa}-0", ns), verb
    assert not rel.can(sa, "get", f"{lease}/{sa}-0", "kube-system")
    assert not rel.can(f"{sa}-receiver", "get", f"{lease}/{sa}-0", ns)
    assert rel.can(sa, "patch", "rtcrecordingschedules.rtc.recording.io", "default")  # their shard label
    assert rel.can(sa, "patch", "rtcrecordings.rtc.recording.io", "default")
    assert not rel.can(sa, "update", "rtcrecordingschedules.rtc.recording.io", "default")
