"""The local control plane is a real one: CEL validation, status subresource watches, RBAC."""

import json
import subprocess
import textwrap

import pytest

pytestmark = pytest.mark.cluster

WIDGET_CRD = textwrap.dedent("""
    apiVersion: apiextensions.k8s.io/v1
    kind: CustomResourceDefinition
    metadata: {name: widgets.test.rtc.recording.io}
    spec:
      group: test.rtc.recording.io
      scope: Namespaced
      names: {plural: widgets, singular: widget, kind: Widget}
      versions:
      - name: v1
        served: true
        storage: true
        subresources: {status: {}}
        schema:
          openAPIV3Schema:
            type: object
            properties:
              spec:
                type: object
                x-kubernetes-validations:
                - rule: self.min <= self.max
                  message: spec.min must not exceed spec.max
                properties:
                  min: {type: integer}
                  max: {type: integer}
              status:
                type: object
                properties:
                  phase: {type: string}
""")


def widget(name, lo, hi):
    return json.dumps(
        {
            "apiVersion": "test.rtc.recording.io/v1",
            "kind": "Widget",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"min": lo, "max": hi},
        }
    )


@pytest.fixture(scope="module")
def widgets(cluster):
    cluster.kubectl("apply", "-f", "-", input=WIDGET_CRD)
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/widgets.test.rtc.recording.io")
    return cluster


def test_cel_rule_refuses_bad_object_with_its_message(widgets):
    bad = widgets.kubectl("apply", "-f", "-", input=widget("bad", 5, 1), check=False)
    assert bad.returncode != 0
    assert "spec.min must not exceed spec.max" in bad.stderr
    widgets.kubectl("apply", "-f", "-", input=widget("good", 1, 5))


def test_watch_sees_status_subresource_patch(widgets):
    widgets.kubectl("apply", "-f", "-", input=widget("watched", 1, 2))
    watch = subprocess.Popen(
        [
            widgets.info()["kubectl"],
            f"--kubeconfig={widgets.kubeconfig}",
            "get",
            "widget",
            "watched",
            "-n",
            "default",
            "--watch",
            "--output-watch-events",
            "-o",
            "json",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        decoder, buffer, events = json.JSONDecoder(), "", []
        first = True
        for line in watch.stdout:
            buffer += line
            try:
                event, _ = decoder.raw_decode(buffer.strip())
            except json.JSONDecodeError:
                continue
            buffer = ""
            events.append(event)
            if first:  # the initial ADDED event: now change status through the subresource
                first = False
                widgets.kubectl(
                    "patch",
                    "widget",
                    "watched",
                    "-n",
                    "default",
                    "--subresource=status",
                    "--type=merge",
                    "-p",
                    '{"status": {"phase": "Ready"}}',
                )
            elif event["object"].get("status", {}).get("phase") == "Ready":
                break
    finally:
        watch.kill()
        watch.wait()
    assert events[-1]["type"] == "MODIFIED"
    assert events[-1]["object"]["status"]["phase"] == "Ready"
    # Writes to the main resource ignore status: the subresource is really separate.
    widgets.kubectl(
        "patch", "widget", "watched", "-n", "default", "--type=merge", "-p", '{"status": {"phase": "Other"}}'
    )
    got = json.loads(widgets.kubectl("get", "widget", "watched", "-n", "default", "-o", "json").stdout)
    assert got["status"]["phase"] == "Ready"


def test_rbac_refuses_a_service_account_without_permissions(widgets):
    widgets.kubectl("create", "serviceaccount", "nobody", "-n", "default")
    token = widgets.kubectl("create", "token", "nobody", "-n", "default").stdout.strip()
    as_nobody = ("--token", token)
    denied = widgets.kubectl(*as_nobody, "get", "widgets", "-n", "default", check=False)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()
    assert "system:serviceaccount:default:nobody" in denied.stderr

    widgets.kubectl(
        "create", "role", "widget-reader", "-n", "default", "--verb=list", "--resource=widgets.test.rtc.recording.io"
    )
    widgets.kubectl(
        "create",
        "rolebinding",
        "nobody-reads",
        "-n",
        "default",
        "--role=widget-reader",
        "--serviceaccount=default:nobody",
    )
    allowed = widgets.kubectl(*as_nobody, "get", "widgets", "-n", "default", check=False)
    assert allowed.returncode == 0, allowed.stderr
