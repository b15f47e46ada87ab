"""Issue 14.6: deleting a namespace, done by the real namespace controller (kube-controller-manager
built from Go modules like the apiserver), never leaves a task running behind a vanished
resource nor the namespace Terminating forever."""

from __future__ import annotations

import json
import urllib.request
import uuid

import pytest

from .conftest import ACCESS_KEY, APP, recording, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

TENANT_KEY = ("LTAI5tTenantOwnKey", "tenant-own-secret")  # another account than the operator's
FINALIZER = "rtc.recording.io/credentials-in-use"


@pytest.fixture
def controllers(stack, crds, emulator):
    crds.start_controllers("namespace-controller")
    emulator.control.credentials(access_keys=dict([TENANT_KEY]), accounts={TENANT_KEY[0]: "tenant"})
    return crds


def tenant(stack, channel_users=("alice", "bob")) -> tuple[str, str]:
    namespace, channel = f"t-{uuid.uuid4().hex[:8]}", f"room-{uuid.uuid4().hex[:8]}"
    stack.cluster.kubectl("create", "namespace", namespace)
    for user in channel_users:
        stack.emulator.control.join(APP, channel, user)
    return namespace, channel


def credentials_secret(stack, namespace: str, name: str, key: tuple[str, str]) -> None:
    stack.cluster.kubectl(
        "create",
        "secret",
        "generic",
        name,
        "-n",
        namespace,
        f"--from-literal=accessKeyId={key[0]}",
        f"--from-literal=accessKeySecret={key[1]}",
    )
    stack.cluster.kubectl("label", "secret", name, "-n", namespace, "rtc.recording.io/usage=credentials")


def finalizers(stack, namespace: str, secret: str) -> list[str]:
    got = stack.cluster.kubectl("get", "secret", secret, "-n", namespace, "-o", "json", check=False)
    return json.loads(got.stdout)["metadata"].get("finalizers", []) if got.returncode == 0 else []


def gone(stack, namespace: str) -> bool:
    return stack.cluster.kubectl("get", "namespace", namespace, check=False).returncode != 0


def metric(stack, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.env['RTCREC_METRICS_PORT']}/metrics", timeout=5) as resp:
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in resp.read().decode().splitlines()
            if line.startswith(name + " ") or line.startswith(name + "{")
        )


def serving(stack) -> bool:
    try:
        metric(stack, "rtcrec_recordings")
        return True
    except OSError:
        return False


def test_a_namespace_deletion_stops_its_tasks_with_their_own_credentials(stack, controllers):
    """The credentials Secret would go first, and after an operator restart no client made with it
    is left: its finalizer keeps it readable until the last task that needs it is stopped."""
    namespace, channel = tenant(stack)
    credentials_secret(stack, namespace, "own-key", TENANT_KEY)
    for name in ("first", "second"):  # two users of one Secret: the last one lets it go
        stack.apply(namespace, recording(name, channel, credentialsSecretRef={"name": "own-key"}))
    tasks = [stack.wait_phase(namespace, name, "Recording")["taskId"] for name in ("first", "second")]
    assert FINALIZER in finalizers(stack, namespace, "own-key")

    # The Secret goes first (the namespace controller's order is not fixed: here it is), and after a
    # restart nothing of it is left in the operator's memory.
    stack.cluster.kubectl("delete", "secret", "own-key", "-n", namespace, "--wait=false")
    stack.operator.restart()
    stack.cluster.kubectl("delete", "namespace", namespace, "--wait=false")
    wait_for(
        lambda: gone(stack, namespace),
        timeout=120,
        what=f"namespace {namespace} deleted",
        details=lambda: stack.operator.output()[-4000:],
    )
    for task_id in tasks:
        assert stack.emulator.control.task(task_id)["status"] == "STOPPED"


def test_a_secret_gone_anyway_does_not_hold_the_namespace(stack, controllers):
    """The fallback: the Secrets' finalizers removed by hand, so they are gone first. The operator's
    own credentials stop what they can (a task of its own account); a task of another account is
    given up on and counted, and the namespace goes either way."""
    namespace, channel = tenant(stack)
    credentials_secret(stack, namespace, "own-key", TENANT_KEY)
    credentials_secret(stack, namespace, "operators-key", ACCESS_KEY)
    stack.apply(namespace, recording("foreign", channel, credentialsSecretRef={"name": "own-key"}))
    stack.apply(namespace, recording("ours", channel, credentialsSecretRef={"name": "operators-key"}))
    foreign = stack.wait_phase(namespace, "foreign", "Recording")["taskId"]
    ours = stack.wait_phase(namespace, "ours", "Recording")["taskId"]
    for secret in ("own-key", "operators-key"):
        stack.cluster.kubectl(
            "patch",
            "secret",
            secret,
            "-n",
            namespace,
            "--type=json",
            "-p",
            json.dumps([{"op": "remove", "path": "/metadata/finalizers"}]),
        )
        stack.cluster.kubectl("delete", "secret", secret, "-n", namespace)
    stack.operator.restart()
    wait_for(lambda: serving(stack), what="the restarted operator serving metrics")
    abandoned = metric(stack, "rtcrec_tasks_abandoned_total")

    stack.cluster.kubectl("delete", "namespace", namespace, "--wait=false")
    wait_for(
        lambda: gone(stack, namespace),
        timeout=120,
        what=f"namespace {namespace} deleted",
        details=lambda: stack.operator.output()[-4000:],
    )
    assert stack.emulator.control.task(ours)["status"] == "STOPPED"
    assert stack.emulator.control.task(foreign)["status"] == "RUNNING"  # honest: it idles out by itself
    assert metric(stack, "rtcrec_tasks_abandoned_total") == abandoned + 1
    for user in ("alice", "bob"):
        stack.emulator.control.leave(APP, channel, user)
