"""The Helm chart, rendered by the real helm binary: lint, schema, security, RBAC, settings."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from rtc_recording.cluster import binaries
from rtc_recording.settings import Settings

from .conftest import (
    CHART,
    NAMESPACE,
    OPERATOR_CLASS_CREDENTIALS_RULES,
    OPERATOR_CLASS_RULES,
    OPERATOR_EVIDENCE_RULES,
    OPERATOR_RULES,
    OPERATOR_SEALS_RULES,
    OPERATOR_SHARDING_RULES,
    RECEIVER_EVIDENCE_RULES,
    RECEIVER_RULES,
    SHARDING_LEASE_RULES,
    env_of,
    find,
    lease_rules,
    one,
    rule_set,
)

pytestmark = pytest.mark.slow  # helm is built for `make test-all` only

OPERATOR = "rtc-rtc-recording-operator"
RECEIVER = "rtc-rtc-recording-operator-receiver"
ROLE_ARN = "acs:ram::1234567890123456:role/rtc-recording"
OIDC_ARN = "acs:ram::1234567890123456:oidc-provider/ack-rrsa-c0ffee"

VALUE_SETS = {
    "defaults": {},
    "credentials-secret": {
        "credentials": {"secretName": "aliyun-credentials"},
        "callbacks": {"url": "https://cb.example.com"},
    },
    "rrsa": {
        "credentials": {
            "rrsa": {
                "enabled": True,
                "roleArn": ROLE_ARN,
                "oidcProviderArn": OIDC_ARN,
                "stsRegion": "cn-shanghai",
                "vpcEndpoint": True,
            }
        }
    },
    "callbacks-disabled": {"callbacks": {"enabled": False}},
    "watch-namespaces": {"watchNamespaces": ["team-a", "team-b"]},
    # A class's credentials Secret in the platform team's namespace, outside the watched ones.
    "watch-namespaces-class-credentials": {
        "watchNamespaces": ["team-a"],
        "classCredentialsNamespaces": ["rtc-platform", "team-a"],
    },
    # Without watchNamespaces the ClusterRole reads Secrets everywhere: nothing more to grant.
    "class-credentials-cluster-wide": {"classCredentialsNamespaces": ["rtc-platform"]},
    "monitoring": {
        "metrics": {
            "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
            "dashboard": {"enabled": True, "annotations": {"grafana_folder": "RTC"}},
            "prometheusRule": {"enabled": True, "labels": {"release": "prom"}},
        }
    },
    "sharding": {"sharding": {"enabled": True}},
    "ingress-existing-key": {
        "callbacks": {"authKeySecret": {"name": "cb-key", "key": "token"}},
        "receiver": {
            "ingress": {"enabled": True, "host": "cb.example.com", "tlsSecretName": "cb-tls", "className": "nginx"},
            "service": {"type": "LoadBalancer"},
        },
    },
}


@pytest.fixture(scope="module", params=list(VALUE_SETS))
def rendered(request, helm):
    return request.param, helm.template(VALUE_SETS[request.param])


def workloads(objs):
    """The operator's and the receiver's workloads: Deployments, and the shards' StatefulSet with sharding."""
    return find(objs, "Deployment") + find(objs, "StatefulSet")


def operator_workload(objs):
    """The operator's Deployment (active/standby) or StatefulSet (sharding): exactly one of them."""
    (workload,) = [*find(objs, "Deployment", OPERATOR), *find(objs, "StatefulSet", OPERATOR)]
    return workload


# -- lint, schema -------------------------------------------------------------------------------


def test_lint_strict(helm):
    helm.run("lint", "--strict", str(CHART))
    helm.run("lint", "--strict", str(CHART), values=VALUE_SETS["rrsa"])


def test_chart_crds_are_the_top_level_crds():
    top = binaries.REPO_ROOT / "crds"
    chart = CHART / "files" / "crds"
    assert sorted(p.name for p in chart.iterdir()) == sorted(p.name for p in top.glob("*.yaml")), (
        "copy crds/*.yaml to charts/rtc-recording-operator/files/crds/"
    )
    for path in top.glob("*.yaml"):
        assert (chart / path.name).read_bytes() == path.read_bytes(), (
            f"charts/rtc-recording-operator/files/crds/{path.name} differs from crds/{path.name}: copy it again"
        )
    assert not (CHART / "crds").exists(), "Helm would install crds/ and then fail on the templated CRD"


def test_chart_policies_are_the_top_level_policies():
    top, chart = binaries.REPO_ROOT / "policies", CHART / "files" / "policies"
    assert sorted(p.name for p in chart.iterdir()) == sorted(p.name for p in top.iterdir())
    for path in top.iterdir():
        assert (chart / path.name).read_bytes() == path.read_bytes(), f"copy policies/{path.name} to {chart}"


MAP = "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy"


def test_finalizer_policy_only_where_the_api_is_served_and_only_in_watched_namespaces(helm):
    """The rendered policy is policies/ renamed per release; its binding selects the watched namespaces."""
    assert not find(helm.template(), "MutatingAdmissionPolicy")  # 1.34, 1.35: the API is beta and off
    out = helm.run("template", "rtc", str(CHART), "-n", NAMESPACE, "--api-versions", MAP).stdout
    objs = [doc for doc in yaml.safe_load_all(out) if doc]
    (policy,) = find(objs, "MutatingAdmissionPolicy")
    (binding,) = find(objs, "MutatingAdmissionPolicyBinding")
    top = {
        d["kind"]: d for d in yaml.safe_load_all((binaries.REPO_ROOT / "policies" / "stop-finalizer.yaml").read_text())
    }
    assert policy["spec"] == top["MutatingAdmissionPolicy"]["spec"]
    assert policy["metadata"]["name"] == binding["metadata"]["name"] == binding["spec"]["policyName"]
    assert policy["metadata"]["name"].startswith(NAMESPACE)  # cluster-scoped: one per release
    assert "matchResources" not in binding["spec"]  # every namespace, as the operator watches them all
    scoped = helm.run(
        "template", "rtc", str(CHART), "-n", NAMESPACE, "--api-versions", MAP, "--set", "watchNamespaces={a,b}"
    ).stdout
    (binding,) = find([d for d in yaml.safe_load_all(scoped) if d], "MutatingAdmissionPolicyBinding")
    assert binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"] == [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["a", "b"]}
    ]


def test_rendered_crds_are_the_top_level_crds_labelled_and_kept(helm):
    """What the template makes of files/crds/ is crds/ in content, plus the chart's labels and
    the keep annotation: nothing else changes on the way through fromYaml and toYaml."""
    top = {
        doc["metadata"]["name"]: doc
        for path in (binaries.REPO_ROOT / "crds").glob("*.yaml")
        for doc in yaml.safe_load_all(path.read_text())
    }
    rendered = {o["metadata"]["name"]: o for o in find(helm.template(), "CustomResourceDefinition")}
    assert set(rendered) == set(top)
    for name, crd in rendered.items():
        labels, annotations = crd["metadata"].pop("labels"), crd["metadata"].pop("annotations")
        assert crd == top[name]
        assert annotations == {"helm.sh/resource-policy": "keep"}
        assert labels["app.kubernetes.io/component"] == "crd"


def test_crds_keep_and_enabled(helm):
    crds = find(helm.template({"crds": {"keep": False}}), "CustomResourceDefinition")
    assert len(crds) == len(list((CHART / "files" / "crds").glob("*.yaml")))
    for crd in crds:
        assert "annotations" not in crd["metadata"]
    assert not find(helm.template({"crds": {"enabled": False}}), "CustomResourceDefinition")


@pytest.mark.parametrize(
    "values, message",
    [
        ({"settings": {"defaultRegion": "mars"}}, "/settings/defaultRegion"),
        ({"settings": {"metricsPort": "http"}}, "/settings/metricsPort"),
        ({"settings": {"receiverPort": 8081.5}}, "/settings/receiverPort"),
        ({"settings": {"receiverPort": 70000}}, "/settings/receiverPort"),
        ({"settings": {"logFormat": "xml"}}, "/settings/logFormat"),
        ({"settings": {"quotaPerSecond": 0}}, "/settings/quotaPerSecond"),
        ({"settings": {"nonsense": 1}}, "nonsense"),
        ({"sttings": {}}, "sttings"),
        ({"watchNamespaces": ["team-*"]}, "/watchNamespaces"),
        ({"classCredentialsNamespaces": ["Platform"]}, "/classCredentialsNamespaces"),
        ({"callbacks": {"url": "cb.example.com"}}, "/callbacks/url"),
        ({"receiver": {"service": {"type": "ExternalName"}}}, "/receiver/service/type"),
        ({"credentials": {"rrsa": {"tokenExpirationSeconds": 60}}}, "tokenExpirationSeconds"),
        ({"credentials": {"rrsa": {"roleArn": "arn:aws:iam::1:role/x"}}}, "/credentials/rrsa/roleArn"),
        ({"operator": {"replicas": 0}}, "/operator/replicas"),
        ({"sharding": {"replicas": 0}}, "/sharding/replicas"),
        ({"sharding": {"enabled": "yes"}}, "/sharding/enabled"),
        ({"settings": {"leaseDurationSeconds": 1}}, "/settings/leaseDurationSeconds"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_schema_refuses_bad_values(helm, values, message):
    error = helm.refuses(values)
    assert "schema" in error and message in error, error


@pytest.mark.parametrize(
    "values, message",
    [
        (
            {
                "credentials": {
                    "secretName": "x",
                    "rrsa": {"enabled": True, "roleArn": ROLE_ARN, "oidcProviderArn": OIDC_ARN},
                }
            },
            "not both",
        ),
        ({"credentials": {"rrsa": {"enabled": True}}}, "roleArn and oidcProviderArn are required"),
        ({"credentials": {"rrsa": {"vpcEndpoint": True}}}, "needs credentials.rrsa.stsRegion"),
        ({"receiver": {"ingress": {"enabled": True}}}, "receiver.ingress.host is required"),
        ({"settings": {"leaseRenewDeadlineSeconds": 9.5}}, "leaseRenewDeadlineSeconds <= leaseDurationSeconds - 1"),
        ({"settings": {"leaseRetryPeriodSeconds": 6}}, "need leaseRetryPeriodSeconds < leaseRenewDeadlineSeconds"),
    ],
)
def test_templates_refuse_inconsistent_values(helm, values, message):
    assert message in helm.refuses(values)


def test_schema_describes_every_value():
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(value, node, path):
        assert node.get("description"), f"{path or '<root>'}: no description in values.schema.json"
        if isinstance(value, dict) and "properties" in node:
            assert node.get("additionalProperties") is False, f"{path}: typos would pass"
            for key, sub in value.items():
                assert key in node["properties"], f"{path}.{key}: not in values.schema.json"
                walk(sub, node["properties"][key], f"{path}.{key}".lstrip("."))

    for key, sub in values.items():
        walk(sub, schema["properties"][key], key)


def test_values_yaml_comments_every_value():
    """Each value of values.yaml has a comment right above it; sections need none."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    keyed = [
        (i, len(line) - len(line.lstrip()), m.group(1))
        for i, line in enumerate(lines)
        if (m := re.match(r"^\s*([A-Za-z]\w*):", line))
    ]
    # Defaults inside these are examples documented by the parent's comment.
    free_form = {"resources", "podSecurityContext", "containerSecurityContext", "receiverFrom", "dns"}
    stack: list[tuple[int, str]] = []
    undocumented = []
    for n, (i, indent, key) in enumerate(keyed):
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = [k for _, k in stack] + [key]
        stack.append((indent, key))
        section = n + 1 < len(keyed) and keyed[n + 1][1] > indent
        if section and key not in free_form or free_form & set(path[:-1]):
            continue
        if not lines[i - 1].lstrip().startswith("#"):
            undocumented.append(".".join(path))
    assert not undocumented, f"values without a comment: {undocumented}"


# -- every representative value set ----------------------------------------------------------------


def test_everything_lands_in_the_release_namespace(rendered):
    _, objs = rendered
    cluster_scoped = {
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    }
    for o in objs:
        if o["kind"] in cluster_scoped:
            assert "namespace" not in o["metadata"]
        elif o["kind"] not in {"Role", "RoleBinding"}:
            assert o["metadata"]["namespace"] == NAMESPACE, f"{o['kind']}/{o['metadata']['name']}"


def test_pods_are_hardened(rendered):
    _, objs = rendered
    for d in workloads(objs):
        pod = d["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["enableServiceLinks"] is False
        (c,) = pod["containers"]
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
        assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"]
        assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
        assert c["image"] == "rtc-recording-operator:0.1.0"


def test_operator_is_two_rolling_replicas_with_liveness_on_metrics_port(rendered):
    name, objs = rendered
    if name == "sharding":
        pytest.skip("a StatefulSet of shards: test_sharding_runs_the_same_pod_as_a_statefulset_of_shards")
    d = one(objs, "Deployment", OPERATOR)
    # Active/standby: the Lease keeps replicas apart, so a rolling update may overlap them.
    assert d["spec"]["replicas"] == 2
    assert d["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    env = env_of(d)
    assert env["RTCREC_LEASE_NAME"] == {"name": "RTCREC_LEASE_NAME", "value": OPERATOR}
    assert env["RTCREC_POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert {k: env[k]["value"] for k in env if k.startswith("RTCREC_LEASE_") and k != "RTCREC_LEASE_NAME"} == {
        "RTCREC_LEASE_DURATION_SECONDS": "10",
        "RTCREC_LEASE_RENEW_DEADLINE_SECONDS": "6",
        "RTCREC_LEASE_RETRY_PERIOD_SECONDS": "2",
    }
    pdb = one(objs, "PodDisruptionBudget", OPERATOR)
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"] == d["spec"]["selector"]
    pod = d["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == OPERATOR
    (c,) = pod["containers"]
    assert c["args"] == ["run"]
    assert c["ports"] == [{"name": "http-metrics", "containerPort": 8080, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-metrics"}
    assert env_of(d)["RTCREC_METRICS_PORT"]["value"] == "8080"
    svc = one(objs, "Service", f"{OPERATOR}-metrics")
    assert svc["spec"]["ports"][0]["targetPort"] == "http-metrics"
    assert svc["spec"]["selector"] == d["spec"]["selector"]["matchLabels"]  # its /healthz is always an operator's


def test_sharding_runs_the_same_pod_as_a_statefulset_of_shards(helm):
    """sharding.enabled: the Deployment's pod, plus RTCREC_SHARDING, in a StatefulSet whose stable pod names are
    the shards' names (RTCREC_POD_NAME) and Leases; nothing else of the pod differs."""
    standby, sharded = helm.template(), helm.template({"sharding": {"enabled": True, "replicas": 5}})
    assert not find(sharded, "Deployment", OPERATOR) and not find(standby, "StatefulSet")
    d, sts = one(standby, "Deployment", OPERATOR), one(sharded, "StatefulSet", OPERATOR)
    assert sts["spec"]["replicas"] == 5
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    assert sts["spec"]["updateStrategy"] == {"type": "RollingUpdate"}  # one pod at a time
    assert sts["spec"]["selector"] == d["spec"]["selector"]
    pod, env = sts["spec"]["template"], env_of(sts)
    assert env.pop("RTCREC_SHARDING") == {"name": "RTCREC_SHARDING", "value": "true"}
    assert "RTCREC_SHARDING" not in env_of(d)
    assert env["RTCREC_POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["RTCREC_LEASE_NAME"]["value"] == OPERATOR  # the sharder's Lease and the shards' ring label
    (container,) = pod["spec"]["containers"]
    container["env"] = [e for e in container["env"] if e["name"] != "RTCREC_SHARDING"]
    assert pod == d["spec"]["template"]
    # The governing Service a StatefulSet requires: headless, and not one the ServiceMonitor scrapes.
    governing = one(sharded, "Service", sts["spec"]["serviceName"])
    assert governing["spec"]["clusterIP"] == "None"
    assert governing["spec"]["selector"] == sts["spec"]["selector"]["matchLabels"]
    assert governing["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"
    assert not find(standby, "Service", sts["spec"]["serviceName"])
    pdb = one(sharded, "PodDisruptionBudget", OPERATOR)
    assert pdb["spec"]["maxUnavailable"] == 1 and pdb["spec"]["selector"] == sts["spec"]["selector"]
    # Everything else is the same release: the metrics Service (the `helm test` /healthz) selects the shards.
    assert one(sharded, "Service", f"{OPERATOR}-metrics")["spec"]["selector"] == sts["spec"]["selector"]["matchLabels"]
    rest = {(o["kind"], o["metadata"]["name"]) for o in sharded} - {
        ("StatefulSet", OPERATOR),
        ("Service", governing["metadata"]["name"]),
    }
    assert rest == {(o["kind"], o["metadata"]["name"]) for o in standby} - {("Deployment", OPERATOR)}


def test_the_helm_test_pod_runs_its_check_with_the_operators_image_and_an_account_bound_to_nothing(rendered):
    """tests/chart/test_chart_oci.py runs the same check against a running operator: no pod runs here."""
    _, objs = rendered
    d, pod = operator_workload(objs), one(objs, "Pod", f"{OPERATOR}-test")
    account = one(objs, "ServiceAccount", f"{OPERATOR}-test")
    assert (
        pod["metadata"]["annotations"]["helm.sh/hook"] == account["metadata"]["annotations"]["helm.sh/hook"] == "test"
    )
    assert not [b for b in objs if b["kind"].endswith("Binding") and f"{OPERATOR}-test" in str(b.get("subjects"))]
    spec, operator_pod = pod["spec"], d["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == f"{OPERATOR}-test" and spec["restartPolicy"] == "Never"
    assert spec["securityContext"] == operator_pod["securityContext"]
    (check,), (operator,) = spec["containers"], operator_pod["containers"]
    assert check["image"] == operator["image"] and check["securityContext"] == operator["securityContext"]
    assert check["command"] == ["python3", "-c", (CHART / "files" / "helm-test.py").read_text()]
    port = env_of(d)["RTCREC_METRICS_PORT"]["value"]
    assert check["env"] == [
        {"name": "HEALTH_URL", "value": f"http://{OPERATOR}-metrics.{NAMESPACE}.svc:{port}/healthz"}
    ]


def test_rbac_is_exactly_what_is_used(rendered):
    name, objs = rendered
    receiver = name != "callbacks-disabled"
    namespaces = VALUE_SETS[name].get("watchNamespaces")
    kind, binding = ("Role", "RoleBinding") if namespaces else ("ClusterRole", "ClusterRoleBinding")
    # In the release namespace: callback evidence, the operator's Lease and its seals record.
    in_release_ns = (
        {f"{OPERATOR}-evidence": OPERATOR_EVIDENCE_RULES, f"{RECEIVER}-evidence": RECEIVER_EVIDENCE_RULES}
        if receiver
        else {}
    )
    sharding = name == "sharding"
    in_release_ns[f"{OPERATOR}-lease"] = SHARDING_LEASE_RULES if sharding else lease_rules(OPERATOR)
    in_release_ns[f"{OPERATOR}-seals"] = OPERATOR_SEALS_RULES
    # Where RtcRecordingClasses keep their credentials Secrets: Secrets get, for the operator only, and
    # only where its Roles would not reach them otherwise (watchNamespaces).
    credentials_ns = VALUE_SETS[name].get("classCredentialsNamespaces") if namespaces else None
    class_credentials = find(objs, "Role", f"{OPERATOR}-class-credentials")
    assert sorted(r["metadata"]["namespace"] for r in class_credentials) == sorted(credentials_ns or [])
    for role in class_credentials:
        assert rule_set(role) == OPERATOR_CLASS_CREDENTIALS_RULES
    bindings = find(objs, "RoleBinding", f"{OPERATOR}-class-credentials")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == sorted(credentials_ns or [])
    for b in bindings:
        assert b["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": f"{OPERATOR}-class-credentials",
        }
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": OPERATOR, "namespace": NAMESPACE}]
    for role_name, rule_set_expected in in_release_ns.items():
        [role] = find(objs, "Role", role_name)
        assert role["metadata"]["namespace"] == NAMESPACE and rule_set(role) == rule_set_expected
        [b] = find(objs, "RoleBinding", role_name)
        assert b["roleRef"]["name"] == role_name
        sa = RECEIVER if role_name.startswith(RECEIVER) else OPERATOR
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}]
    [classes] = find(objs, "ClusterRole", f"{OPERATOR}-classes")  # cluster-scoped kinds: always a ClusterRole
    assert rule_set(classes) == OPERATOR_CLASS_RULES
    [b] = find(objs, "ClusterRoleBinding", f"{OPERATOR}-classes")
    assert b["roleRef"]["name"] == f"{OPERATOR}-classes"
    assert b["subjects"] == [{"kind": "ServiceAccount", "name": OPERATOR, "namespace": NAMESPACE}]
    objs = [
        o
        for o in objs
        if o["metadata"]["name"] not in {*in_release_ns, f"{OPERATOR}-classes", f"{OPERATOR}-class-credentials"}
    ]
    other = {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"} - {kind, binding}
    assert not [o for o in objs if o["kind"] in other]
    operator_rules = OPERATOR_SHARDING_RULES if sharding else OPERATOR_RULES
    expected = {OPERATOR: operator_rules, **({RECEIVER: RECEIVER_RULES} if receiver else {})}
    for role_name, rule_set_expected in expected.items():
        roles = find(objs, kind, role_name)
        assert len(roles) == len(namespaces or [None])
        assert sorted(r["metadata"].get("namespace") for r in roles) == sorted(namespaces or [None])
        for role in roles:
            assert rule_set(role) == rule_set_expected
        for b in find(objs, binding, role_name):
            assert b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role_name}
            assert b["subjects"] == [{"kind": "ServiceAccount", "name": role_name, "namespace": NAMESPACE}]
    assert len(find(objs, kind)) == len(expected) * len(namespaces or [None])
    # ... and the helm test hook's, bound to nothing (test_the_helm_test_pod_runs_its_check...).
    assert {sa["metadata"]["name"] for sa in find(objs, "ServiceAccount")} == {*expected, f"{OPERATOR}-test"}


def test_rendered_settings_are_operator_settings(rendered):
    """Every RTCREC_* variable is a field of the operator's Settings: no typo goes unnoticed."""
    _, objs = rendered
    fields = {f"RTCREC_{name.upper()}" for name in Settings.model_fields}
    for d in workloads(objs):
        names = {n for n in env_of(d) if n.startswith("RTCREC_")}
        assert names <= fields, names - fields
        # pydantic must accept the rendered literal values (e.g. "8080", "0.5", "json").
        plain = {
            k.removeprefix("RTCREC_").lower(): e["value"]
            for k, e in env_of(d).items()
            if k.startswith("RTCREC_") and "value" in e and k != "RTCREC_CALLBACK_URL"
        }
        if "RTCREC_POD_NAME" in env_of(d):  # what the downward API gives: a pod's name (a shard's, with sharding)
            plain["pod_name"] = f"{d['metadata']['name']}-0"
        Settings.model_validate(plain)


def test_receiver_is_ha_and_probed(rendered):
    name, objs = rendered
    if name == "callbacks-disabled":
        pytest.skip("no receiver")
    d = one(objs, "Deployment", RECEIVER)
    assert d["spec"]["replicas"] == 2
    pod = d["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == RECEIVER
    (c,) = pod["containers"]
    assert c["args"] == ["receiver"]
    assert c["ports"] == [
        {"name": "http", "containerPort": 8081, "protocol": "TCP"},
        {"name": "http-metrics", "containerPort": 8082, "protocol": "TCP"},  # not the Internet's port
    ]
    assert env_of(d)["RTCREC_RECEIVER_METRICS_PORT"]["value"] == "8082"
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    pdb = one(objs, "PodDisruptionBudget", RECEIVER)
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"] == d["spec"]["selector"]
    svc = one(objs, "Service", RECEIVER)
    assert svc["spec"]["selector"] == d["spec"]["selector"]["matchLabels"]
    assert [p["targetPort"] for p in svc["spec"]["ports"]] == ["http"]  # callbacks only, never the metrics
    metrics = one(objs, "Service", f"{RECEIVER}-metrics")
    assert metrics["spec"]["selector"] == d["spec"]["selector"]["matchLabels"]
    assert metrics["spec"]["type"] == "ClusterIP"
    assert metrics["spec"]["ports"] == [
        {"name": "http-metrics", "port": 8082, "targetPort": "http-metrics", "protocol": "TCP"}
    ]
    # The two workloads select disjoint pods.
    assert d["spec"]["selector"] != operator_workload(objs)["spec"]["selector"]


# -- specific value sets ------------------------------------------------------------------------------


def test_defaults_generate_callback_key_but_no_url(helm):
    objs = helm.template()
    secret = one(objs, "Secret", "rtc-rtc-recording-operator-callback-auth")
    import base64

    key = base64.b64decode(secret["data"]["authKey"]).decode()
    assert re.fullmatch(r"[A-Za-z0-9]{16,64}", key)
    for d in workloads(objs):
        env = env_of(d)
        assert "RTCREC_CALLBACK_URL" not in env
        assert env["RTCREC_CALLBACK_AUTH_KEY"]["valueFrom"]["secretKeyRef"] == {
            "name": "rtc-rtc-recording-operator-callback-auth",
            "key": "authKey",
        }
        assert env["RTCREC_LOG_FORMAT"]["value"] == "json"
        assert "RTCREC_ENDPOINT" not in env  # empty values are not set
        assert "RTCREC_NAMESPACES" not in env
        assert not [n for n in env if n.startswith("ALIBABA_CLOUD_")]
    assert not find(objs, "ServiceMonitor") and not find(objs, "Ingress")


def test_credentials_reach_the_operator_only_and_the_callback_url_both(helm):
    objs = helm.template(VALUE_SETS["credentials-secret"])
    receiver = env_of(one(objs, "Deployment", RECEIVER))
    assert receiver["RTCREC_CALLBACK_URL"]["value"] == "https://cb.example.com"
    assert not [n for n in receiver if n.startswith("ALIBABA_CLOUD_") or n == "RTCREC_OWNERSHIP_KEY"]
    for d in [one(objs, "Deployment", OPERATOR)]:
        env = env_of(d)
        assert env["RTCREC_CALLBACK_URL"]["value"] == "https://cb.example.com"
        for var, key in [
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", "accessKeyId"),
            ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "accessKeySecret"),
        ]:
            assert env[var]["valueFrom"]["secretKeyRef"] == {"name": "aliyun-credentials", "key": key}
        assert env["ALIBABA_CLOUD_SECURITY_TOKEN"]["valueFrom"]["secretKeyRef"] == {
            "name": "aliyun-credentials",
            "key": "securityToken",
            "optional": True,
        }
    assert len(workloads(objs)) == 2


def test_rrsa_mounts_a_projected_token_for_sts_in_the_operator_only(helm):
    objs = helm.template(VALUE_SETS["rrsa"])
    receiver = one(objs, "Deployment", RECEIVER)
    assert not [n for n in env_of(receiver) if n.startswith("ALIBABA_CLOUD_")]
    # Its one TLS peer is the API server: the cluster's CA is all it trusts.
    assert env_of(receiver)["SSL_CERT_FILE"]["value"] == "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
    assert "SSL_CERT_FILE" not in env_of(one(objs, "Deployment", OPERATOR))  # it calls the cloud
    assert [v["name"] for v in receiver["spec"]["template"]["spec"]["volumes"]] == ["tmp"]
    for d in [one(objs, "Deployment", OPERATOR)]:
        env = {k: e.get("value") for k, e in env_of(d).items() if k.startswith("ALIBABA_CLOUD_")}
        assert env == {
            "ALIBABA_CLOUD_ROLE_ARN": ROLE_ARN,
            "ALIBABA_CLOUD_OIDC_PROVIDER_ARN": OIDC_ARN,
            "ALIBABA_CLOUD_OIDC_TOKEN_FILE": "/var/run/secrets/ack.alibabacloud.com/rrsa-tokens/token",
            "ALIBABA_CLOUD_STS_REGION": "cn-shanghai",
            "ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED": "true",
        }
        pod = d["spec"]["template"]["spec"]
        (volume,) = [v for v in pod["volumes"] if v["name"] == "rrsa-oidc-token"]
        assert volume["projected"]["sources"] == [
            {"serviceAccountToken": {"audience": "sts.aliyuncs.com", "expirationSeconds": 3600, "path": "token"}}
        ]
        (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "rrsa-oidc-token"]
        assert mount == {
            "name": "rrsa-oidc-token",
            "readOnly": True,
            "mountPath": "/var/run/secrets/ack.alibabacloud.com/rrsa-tokens",
        }
        # The non-root user can read the token: kubelet gives it to the pod's fsGroup.
        assert pod["securityContext"]["fsGroup"] == 10001
    assert len(workloads(objs)) == 2


def test_callbacks_disabled_deploys_no_receiver_and_sets_no_callback_env(helm):
    objs = helm.template(VALUE_SETS["callbacks-disabled"])
    assert [d["metadata"]["name"] for d in workloads(objs)] == [OPERATOR]
    assert not [o for o in objs if o["metadata"]["labels"]["app.kubernetes.io/component"] == "receiver"]
    assert not [n for n in env_of(workloads(objs)[0]) if n.startswith("RTCREC_CALLBACK")]
    assert not find(objs, "Service", f"{RECEIVER}-metrics")


def test_watch_namespaces_sets_env(helm):
    objs = helm.template(VALUE_SETS["watch-namespaces"])
    for d in workloads(objs):
        assert env_of(d)["RTCREC_NAMESPACES"]["value"] == "team-a,team-b"


def test_service_monitor_only_when_enabled(helm):
    objs = helm.template(VALUE_SETS["monitoring"])
    sm = one(objs, "ServiceMonitor", OPERATOR)
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "prom"
    selected = [
        s
        for s in find(objs, "Service")
        if sm["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
    ]
    # Both components, each through its metrics Service; never the receiver's own Service (its callback
    # port, maybe a public load balancer).
    assert sorted(s["metadata"]["name"] for s in selected) == [f"{OPERATOR}-metrics", f"{RECEIVER}-metrics"]
    assert all(s["spec"]["ports"][0]["name"] == "http-metrics" for s in selected)
    # honorLabels: rtcrec_recorded_seconds_total's namespace is the recording's, not the scraped pod's.
    assert sm["spec"]["endpoints"] == [
        {"port": "http-metrics", "path": "/metrics", "interval": "30s", "honorLabels": True}
    ]


def test_dashboard_and_alerts_only_when_enabled(helm):
    defaults = helm.template()
    assert not find(defaults, "PrometheusRule") and not find(defaults, "ConfigMap", f"{OPERATOR}-dashboard")
    objs = helm.template(VALUE_SETS["monitoring"])
    dashboard = one(objs, "ConfigMap", f"{OPERATOR}-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["annotations"] == {"grafana_folder": "RTC"}
    assert json.loads(dashboard["data"]["rtc-recording-operator.json"]) == json.loads(
        (CHART / "files" / "dashboard.json").read_text()
    )
    rule = one(objs, "PrometheusRule", OPERATOR)
    assert rule["metadata"]["labels"]["release"] == "prom"
    # The rules of files/prometheus-rules.yaml (which promtool tests), each with its runbook_url added.
    runbooks = (binaries.REPO_ROOT / "docs" / "runbooks.md").read_text()
    base = yaml.safe_load((CHART / "values.yaml").read_text())["metrics"]["prometheusRule"]["runbookBaseUrl"]
    rendered = rule["spec"]["groups"][0]["rules"]
    written = yaml.safe_load((CHART / "files" / "prometheus-rules.yaml").read_text())["groups"][0]["rules"]
    assert len(rendered) == len(written) >= 10
    for got, source in zip(rendered, written, strict=True):
        url = got["annotations"].pop("runbook_url")
        assert got == source
        assert url == f"{base}#{source['alert'].lower()}"
        assert f"\n## {source['alert']}\n" in runbooks, f"docs/runbooks.md has no section {source['alert']}"
    mine = helm.template(
        {"metrics": {"prometheusRule": {"enabled": True, "runbookBaseUrl": "https://wiki.example/rb"}}}
    )
    urls = [
        r["annotations"]["runbook_url"] for r in one(mine, "PrometheusRule", OPERATOR)["spec"]["groups"][0]["rules"]
    ]
    assert urls[0] == "https://wiki.example/rb#rtcrecnoactiveoperator"


def test_ingress_exposes_only_callbacks_and_derives_the_url(helm):
    objs = helm.template(VALUE_SETS["ingress-existing-key"])
    ing = one(objs, "Ingress", RECEIVER)
    assert ing["spec"]["ingressClassName"] == "nginx"
    assert ing["spec"]["tls"] == [{"hosts": ["cb.example.com"], "secretName": "cb-tls"}]
    (rule,) = ing["spec"]["rules"]
    assert rule["host"] == "cb.example.com"
    assert [(p["path"], p["pathType"]) for p in rule["http"]["paths"]] == [("/callbacks", "Prefix")]
    assert one(objs, "Service", RECEIVER)["spec"]["type"] == "LoadBalancer"
    assert not find(objs, "Secret", f"{OPERATOR}-callback-auth")  # the existing key Secret is used
    for d in workloads(objs):
        env = env_of(d)
        assert env["RTCREC_CALLBACK_URL"]["value"] == "https://cb.example.com"
        assert env["RTCREC_CALLBACK_AUTH_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "cb-key", "key": "token"}


def test_settings_map_to_env(helm):
    objs = helm.template(
        {
            "settings": {
                "defaultRegion": "us-east-1",
                "pollIntervalSeconds": 0.5,
                "endpoint": "http://emulator:9000",
                "metricsPort": 9090,
            }
        }
    )
    d = one(objs, "Deployment", OPERATOR)
    env = {k: e["value"] for k, e in env_of(d).items() if "value" in e}
    assert env["RTCREC_DEFAULT_REGION"] == "us-east-1"
    assert env["RTCREC_POLL_INTERVAL_SECONDS"] == "0.5"
    assert env["RTCREC_ENDPOINT"] == "http://emulator:9000"
    assert env["RTCREC_METRICS_PORT"] == "9090"
    assert d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] == 9090


def test_chart_covers_every_operator_setting():
    """A new Settings field needs a chart value (or an explicit reason it has none)."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    snake = {re.sub(r"(?<!^)(?=[A-Z])", "_", k).lower() for k in values["settings"]}
    from_other_values = {
        "namespaces",
        "callback_url",
        "callback_auth_key",
        "ownership_key",  # ownership.keySecret
        "evidence_namespace",
        "lease_namespace",  # the release namespace: where the pods run
        "lease_name",
        "pod_name",
        "sharding",  # sharding.enabled: the StatefulSet's pods
    }  # the release's full name, the pod's name
    assert set(Settings.model_fields) == snake | from_other_values


def test_long_release_names_stay_within_63_characters(helm):
    for values in (VALUE_SETS["monitoring"], VALUE_SETS["sharding"]):
        objs = helm.template(values, release="a" * 53)  # every optional object of a release
        for o in objs:
            assert len(o["metadata"]["name"]) <= 63, o["metadata"]["name"]
    # A StatefulSet's pods carry the label controller-revision-hash=<name>-<10 characters>.
    (sts,) = find(objs, "StatefulSet")
    assert len(sts["metadata"]["name"]) <= 63 - 11


# -- issue 14: what only the operator holds, the Secret writes it may make, the network ---------------


def test_the_ownership_key_is_generated_for_the_operator_alone(helm):
    import base64

    objs = helm.template()
    secret = one(objs, "Secret", f"{OPERATOR}-ownership")
    assert len(base64.b64decode(secret["data"]["ownershipKey"])) >= 32
    assert env_of(one(objs, "Deployment", OPERATOR))["RTCREC_OWNERSHIP_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": f"{OPERATOR}-ownership",
        "key": "ownershipKey",
    }
    assert "RTCREC_OWNERSHIP_KEY" not in env_of(one(objs, "Deployment", RECEIVER))
    own = helm.template({"ownership": {"keySecret": {"name": "my-seal-key", "key": "k"}}})
    assert not find(own, "Secret", f"{OPERATOR}-ownership")
    assert env_of(one(own, "Deployment", OPERATOR))["RTCREC_OWNERSHIP_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "my-seal-key",
        "key": "k",
    }


def test_the_operators_secret_writes_are_confined_to_finalizers(helm):
    objs = helm.template()
    (policy,) = find(objs, "ValidatingAdmissionPolicy")
    (binding,) = find(objs, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"] == {"policyName": policy["metadata"]["name"], "validationActions": ["Deny"]}
    (condition,) = policy["spec"]["matchConditions"]
    assert condition["expression"] == f'request.userInfo.username == "system:serviceaccount:{NAMESPACE}:{OPERATOR}"'
    assert policy["spec"]["matchConstraints"]["resourceRules"][0]["resources"] == ["secrets"]
    finalizers = policy["spec"]["validations"][1]
    assert finalizers["expression"].count("f != 'rtc.recording.io/credentials-in-use'") == 2
    assert not find(helm.template({"rbac": {"confineSecretWrites": False}}), "ValidatingAdmissionPolicy")


def test_network_policies_are_offered_off_by_default(helm):
    assert not find(helm.template(), "NetworkPolicy")
    assert "networkPolicy.apiServer.cidrs is required" in helm.refuses({"networkPolicy": {"enabled": True}})
    objs = helm.template(
        {
            "networkPolicy": {
                "enabled": True,
                "apiServer": {"cidrs": ["10.96.0.1/32"]},
                "excludedRanges": ["34.64.0.0/10"],
            }
        }
    )
    prometheus = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    scraped = helm.template(
        {"networkPolicy": {"enabled": True, "apiServer": {"cidrs": ["10.96.0.1/32"]}, "metricsFrom": prometheus}}
    )
    # Prometheus reaches each component's metrics port, and only that: not the receiver's callback port.
    for name, port in ((OPERATOR, 8080), (RECEIVER, 8082)):
        scrape = one(scraped, "NetworkPolicy", name)["spec"]["ingress"][-1]
        assert scrape == {"from": prometheus, "ports": [{"protocol": "TCP", "port": port}]}
    operator, receiver = one(objs, "NetworkPolicy", OPERATOR)["spec"], one(objs, "NetworkPolicy", RECEIVER)["spec"]
    for spec in (operator, receiver):
        assert spec["policyTypes"] == ["Ingress", "Egress"]
        dns, api = spec["egress"][:2]
        assert {p["port"] for p in dns["ports"]} == {53}
        assert api == {
            "to": [{"ipBlock": {"cidr": "10.96.0.1/32"}}],
            "ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}],
        }
    assert len(receiver["egress"]) == 2  # the receiver calls nothing else
    assert receiver["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8081}]
    assert receiver["ingress"][0]["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    ]
    (test_pod,) = operator["ingress"]  # only the `helm test` pod, for /healthz
    assert test_pod["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "test"
    assert test_pod["ports"] == [{"protocol": "TCP", "port": 8080}]
    v4, v6 = operator["egress"][2]["to"]
    assert v4["ipBlock"]["cidr"] == "0.0.0.0/0" and v6["ipBlock"]["cidr"] == "::/0"
    for internal in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "169.254.0.0/16",
        "127.0.0.0/8",
        "224.0.0.0/4",
        "34.64.0.0/10",
    ):
        assert internal in v4["ipBlock"]["except"]
    for internal in ("fc00::/7", "fe80::/10", "::1/128", "ff00::/8"):
        assert internal in v6["ipBlock"]["except"]
