"""The pydantic model (operator/rtc_recording/resource.py) against the CRD and the corpus; no servers.

The CRD is checked by the apiserver in test_api_apiserver.py; here the model, the second guard,
must refuse and accept exactly the same corpus, and its schema must match the CRD's field for
field, so that the two cannot drift apart unnoticed.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml
from api_corpus import EXAMPLES, REPO, VERDICTS, crd_version, effective, load
from pydantic import ValidationError

from rtc_recording.api import fields
from rtc_recording.api.recording import InvalidSpec, RtcRecordingSpec, RtcRecordingStatus, spec_errors
from rtc_recording.api.rules import immutable_changes
from rtc_recording.cloud.params import start_params, update_params

VALID, INVALID, TRANSITIONS = load("valid"), load("invalid"), load("transitions")


def spec_of(doc: dict) -> RtcRecordingSpec:
    return RtcRecordingSpec.model_validate(doc["spec"])


def params(spec: RtcRecordingSpec, **kw) -> dict:
    return start_params(spec, **{"region_default": "cn-shanghai", "notify_url": None, "notify_auth_key": None, **kw})


# -- the corpus ---------------------------------------------------------------------------------


@pytest.mark.parametrize("item", VALID, ids=lambda i: i.name)
def test_valid_items_parse_and_translate(item):
    applied = spec_of(item.docs[0])
    if applied.recording_class_name is None:
        params(applied)  # as started where no class applies
    params(RtcRecordingSpec.model_validate(effective(item.docs[0])))  # merged with its class, or the default one


@pytest.mark.parametrize("item", INVALID, ids=lambda i: i.name)
def test_invalid_items_are_refused_naming_the_field(item):
    assert item.expect, f"{item.path} lacks its expect annotation"
    with pytest.raises(ValidationError) as refused:
        spec_of(item.docs[0])
    assert item.expect in spec_errors(refused.value)


def test_the_corpus_records_the_page_verdict():
    """What the page allows is accepted; what is refused, the page forbids, ignores or does not mention."""
    wrong = [f"{i.path.parent.name}/{i.name}: {i.page}" for i in VALID + INVALID if i.page not in VERDICTS]
    wrong += [f"valid/{i.name} is accepted, but the page {i.page}" for i in VALID if i.page != "allows"]
    wrong += [f"invalid/{i.name} is refused, but the page allows it" for i in INVALID if i.page == "allows"]
    assert wrong == []


@pytest.mark.parametrize("item", TRANSITIONS, ids=lambda i: i.name)
def test_transitions(item):
    old, new = item.docs
    changes = immutable_changes(spec_of(old), spec_of(new))
    if item.expect:
        assert any(item.expect in c for c in changes), changes
    else:
        assert changes == []


# -- one source of truth: the model's schema is the CRD's ----------------------------------------

_COMPARED = (
    "type",
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "pattern",
    "default",
)


def _crd_node(node: dict) -> dict:
    out = {k: node[k] for k in _COMPARED if k in node}
    if "properties" in node:
        out["properties"] = {k: _crd_node(v) for k, v in node["properties"].items()}
        out["required"] = sorted(node.get("required", []))
    if "items" in node:
        out["items"] = _crd_node(node["items"])
    return out


def _model_node(node: dict, defs: dict) -> dict:
    default = node.get("default")
    if "$ref" in node:
        node = defs[node["$ref"].split("/")[-1]]
    if "anyOf" in node:  # Optional[X]: X, absent when unset
        (node,) = [n for n in node["anyOf"] if n.get("type") != "null"]
        return _model_node(node, defs)
    out = {k: node[k] for k in _COMPARED if k in node}
    if "const" in node:
        out["enum"] = [node["const"]]
    if default is not None:
        out["default"] = default
    if "properties" in node:
        out["properties"] = {k: _model_node(v, defs) for k, v in node["properties"].items()}
        out["required"] = sorted(node.get("required", []))
    if "items" in node:
        out["items"] = _model_node(node["items"], defs)
    return out


def _differences(crd: dict, model: dict, path: str = "spec") -> list[str]:
    diffs = []
    for key in sorted(set(crd) | set(model)):
        a, b = crd.get(key), model.get(key)
        if key == "properties":
            for name in sorted(set(a or {}) | set(b or {})):
                if name not in (a or {}) or name not in (b or {}):
                    diffs.append(f"{path}.{name}: only in the {'model' if name in (b or {}) else 'CRD'}")
                else:
                    diffs += _differences(a[name], b[name], f"{path}.{name}")
        elif key == "items":
            diffs += _differences(a or {}, b or {}, f"{path}[]")
        elif a != b:
            diffs.append(f"{path} {key}: CRD {a!r} != model {b!r}")
    return diffs


def test_the_model_and_the_crd_declare_the_same_spec():
    crd = _crd_node(crd_version()["schema"]["openAPIV3Schema"]["properties"]["spec"])
    schema = RtcRecordingSpec.model_json_schema(by_alias=True)
    model = _model_node(schema, schema["$defs"])
    assert _differences(crd, model) == []


def test_the_model_checks_the_crds_regexes_and_variables():
    """What the structural comparison above cannot see: the CEL rules that replaced patterns (for their messages)."""
    spec = crd_version()["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]

    def rules(node: dict) -> list[str]:
        return [r["rule"] for r in node.get("x-kubernetes-validations", [])]

    panes = spec["layout"]["properties"]["panes"]["items"]["properties"]
    for name in ("left", "top", "width", "height"):
        assert rules(panes[name]) == [f"self.matches('{fields._FRACTION.pattern}')"]
    files = spec["storage"]["properties"]["files"]["items"]["properties"]
    assert rules(files["pathPrefix"]["items"]) == [f"self.matches('{fields._DIRECTORY.pattern}')"]
    assert rules(spec["storage"]["properties"]["oss"]["properties"]["endpoint"]) == [
        f"self.matches('{fields._OSS_REGION_ENDPOINT.pattern}')"
    ]
    for name, variables in (
        ("fileNamePattern", fields._NAME_VARIABLES),
        ("sliceNamePattern", fields._SLICE_VARIABLES),
    ):
        listed = "[" + ", ".join(f"'{v}'" for v in variables) + "]"
        grammar, once, _required = rules(files[name])
        assert grammar == f"self.split('_').all(t, t in {listed})"
        assert once == f"{listed}.all(v, self.indexOf(v) == self.lastIndexOf(v))"
    upload = spec["notify"]["properties"]["fileUploadedFormats"]["items"]
    assert rules(upload) == [f"self.upperAscii() in {list(fields.UPLOAD_FORMATS)}"]


def test_every_int32_states_its_bounds():
    """An int32 beyond 2147483647 is refused by the apiserver: a maximum says so, and the comparison above holds
    the model to it (ttlSecondsAfterFinished was unbounded in the model)."""

    def int32s(node: dict, path: str) -> list[tuple[str, dict]]:
        found = [(path, node)] if node.get("format") == "int32" else []
        for name, child in node.get("properties", {}).items():
            found += int32s(child, f"{path}.{name}")
        return found + (int32s(node["items"], f"{path}[]") if "items" in node else [])

    spec = crd_version()["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert [p for p, n in int32s(spec, "spec") if not 0 <= n.get("maximum", 2**31) < 2**31] == []


def test_url_schemes_are_case_insensitive_everywhere():
    """RFC 3986: HTTPS:// is https://. Every URL pattern of the CRDs and the chart's values, and the model's."""

    def patterns(node) -> list[str]:
        if isinstance(node, dict):
            own = [node["pattern"]] if "://" in str(node.get("pattern")) else []
            return own + [p for child in node.values() for p in patterns(child)]
        return [p for child in node for p in patterns(child)] if isinstance(node, list) else []

    documents = [yaml.safe_load(path.read_text()) for path in sorted((REPO / "crds").glob("*.yaml"))]
    documents.append(json.loads((REPO / "charts" / "rtc-recording-operator" / "values.schema.json").read_text()))
    found = [p for d in documents for p in patterns(d)] + [fields._HTTP_URL, fields._NOTIFY_URL]
    assert len(found) >= 8
    for url in ("https://img.example.com/a.png", "HTTPS://img.example.com/a.png", "Http://img.example.com/a.png"):
        assert [p for p in found if not re.fullmatch(p, url)] == [], url


def test_the_model_and_the_crd_declare_the_same_status_fields():
    def names(node: dict, defs: dict | None = None) -> dict:
        if defs is not None:
            node = defs.get(node.get("$ref", "").split("/")[-1], node)
            node = next((n for n in node.get("anyOf", []) if n.get("type") != "null"), node)
            node = defs.get(node.get("$ref", "").split("/")[-1], node)
        node = node.get("items", node) if node.get("type") == "array" else node
        if defs is not None:
            node = defs.get(node.get("$ref", "").split("/")[-1], node)
        return {k: names(v, defs) for k, v in node.get("properties", {}).items()}

    crd = names(crd_version()["schema"]["openAPIV3Schema"]["properties"]["status"])
    schema = RtcRecordingStatus.model_json_schema(by_alias=True)
    assert names(schema, schema["$defs"]) == crd


def test_every_field_is_documented_for_kubectl_explain():
    def undocumented(node: dict, path: str) -> list[str]:
        missing = [] if node.get("description", "").strip() else [path]
        for name, child in node.get("properties", {}).items():
            if name != "metadata":  # kubectl explain shows ObjectMeta's own docs
                missing += undocumented(child, f"{path}.{name}")
        if "items" in node:
            missing += [m for m in undocumented(node["items"], f"{path}[]") if m != f"{path}[]"]
        return missing

    assert undocumented(crd_version()["schema"]["openAPIV3Schema"], "rtcrec") == []


def test_printer_columns():
    columns = {c["name"]: c for c in crd_version()["additionalPrinterColumns"]}
    assert [n for n, c in columns.items() if not c.get("priority")] == [
        "Channel",
        "Mode",
        "Phase",
        "Reason",
        "Ready",
        "Synced",
        "TaskId",
        "Age",
    ]
    assert {n for n, c in columns.items() if c.get("priority") == 1} == {
        "AppId",
        "Region",
        "Bucket",
        "Suspend",
        "MaxDuration",
        "Class",
        "Shard",  # the owner's label, with sharding
    }


# -- the examples ---------------------------------------------------------------------------------

EXAMPLE_RECORDINGS = [
    (p.name, doc)
    for p in sorted(EXAMPLES.glob("*.yaml"))
    for doc in yaml.safe_load_all(p.read_text())
    if doc["kind"] == "RtcRecording"
]


def test_there_are_examples_for_the_common_cases():
    assert len(EXAMPLE_RECORDINGS) >= 5
    for _, doc in EXAMPLE_RECORDINGS:
        assert "namespace" not in doc["metadata"], "examples are applied with kubectl apply -n"


@pytest.mark.parametrize("doc", [d for _, d in EXAMPLE_RECORDINGS], ids=[n for n, _ in EXAMPLE_RECORDINGS])
def test_examples_are_valid(doc):
    """As applied, as started where no class applies, and as started with the example default class installed."""
    key = "ReplaceWithYourOwnKey0123456789"
    if spec_of(doc).recording_class_name is None:
        params(spec_of(doc), notify_auth_key=key)
    params(RtcRecordingSpec.model_validate(effective(doc)), notify_auth_key=key)


# -- the vendor's parameters ------------------------------------------------------------------------


def _example(name: str) -> RtcRecordingSpec:
    (doc,) = [d for n, d in EXAMPLE_RECORDINGS if n == name]
    return spec_of(doc)


def test_start_params_mixed_with_layout():
    assert params(_example("mixed-layout-hls.yaml")) == {
        "AppId": "demo-app",
        "ChannelId": "standup-42",
        "SubscribeParams": {
            "SubscribeUserIdList": [
                {"UserId": u, "StreamType": 0, "SourceType": 0} for u in ("alice", "bob", "carol", "dave")
            ]
        },
        "RecordParams": {"RecordMode": 1, "StreamType": 0, "MaxFileDuration": 3600},
        "StorageParams": {
            "StorageType": 1,
            "OSSParams": {"OSSEndpoint": "oss-cn-shanghai.aliyuncs.com", "OSSBucket": "demo-recordings"},
            "FileInfo": [
                {
                    "Format": "HLS",
                    "FileNamePattern": "{ChannelId}_{StartTime}",
                    "SliceNamePattern": "{ChannelId}_{StartTime}_{Sequence}",
                    "FilePathPrefix": ["meetings", "standup"],
                    "SliceDuration": 10,
                },
                {
                    "Format": "MP4",
                    "FileNamePattern": "{ChannelId}_{StartTime}",
                    "FilePathPrefix": ["meetings", "standup"],
                },
            ],
        },
        "MixTranscodeParams": {
            "AudioBitrate": 128,
            "AudioChannels": 2,
            "AudioSampleRate": 48000,
            "VideoCodec": "H.264",
            "VideoBitrate": 2500,
            "VideoFramerate": 25,
            "VideoGop": 50,
            "VideoWidth": 1920,
            "VideoHeight": 1080,
        },
        "MixLayoutParams": {
            "MixBackground": {"RenderMode": 0, "Url": "https://static.example.com/rtc/standup-background.png"},
            "UserPanes": [
                {
                    "UserId": "alice",
                    "X": "0",
                    "Y": "0",
                    "Width": "0.5",
                    "Height": "0.5",
                    "SubBackground": {"RenderMode": 1, "Url": "https://static.example.com/rtc/camera-off.png"},
                },
                {"UserId": "bob", "X": "0.5", "Y": "0", "Width": "0.5", "Height": "0.5"},
                {"UserId": "carol", "X": "0", "Y": "0.5", "Width": "0.5", "Height": "0.5"},
                {"UserId": "dave", "X": "0.5", "Y": "0.5", "Width": "0.5", "Height": "0.5"},
            ],
        },
        "MaxIdleTime": 120,
    }


def test_start_params_screen_share_codes():
    p = params(_example("screen-share.yaml"))
    assert p["SubscribeParams"]["SubscribeUserIdList"] == [
        {"UserId": "alice", "StreamType": 2, "SourceType": 1},
        {"UserId": "alice", "StreamType": 0, "SourceType": 0},
        {"UserId": "bob", "StreamType": 1},  # SourceType is only valid for streams with video
    ]
    assert [(u["SourceType"], u["ZOrder"]) for u in p["MixLayoutParams"]["UserPanes"]] == [(1, 0), (0, 1)]
    assert p["StorageParams"]["FileInfo"] == [{"Format": "MP4", "FilePathPrefix": ["presentations"]}]


def test_start_params_individual_audio_to_vod():
    p = params(_example("individual-audio-vod.yaml"))
    assert p["RecordParams"] == {"RecordMode": 0, "StreamType": 1}
    assert p["StorageParams"] == {
        "StorageType": 0,
        "VodParams": {
            "StorageLocation": "outin-0123456789abcdef.oss-cn-shanghai.aliyuncs.com",
            "VodTranscodeGroupId": "a1b2c3d4e5f60718293a4b5c6d7e8f90",
            "AutoCompose": 1,
            "ComposeVodTranscodeGroupId": "f0e1d2c3b4a5968778695a4b3c2d1e0f",
        },
    }
    assert "MixTranscodeParams" not in p and "MixLayoutParams" not in p and "NotifyUrl" not in p


def test_start_params_notify():
    spec = _example("notify-signed.yaml")
    own = params(spec, notify_auth_key="ReplaceWithYourOwnKey0123456789")
    assert (own["NotifyUrl"], own["NotifyAuthKey"], own["NotifyFileUploadedFormat"]) == (
        "https://hooks.example.com/rtc/standup-42",
        "ReplaceWithYourOwnKey0123456789",
        ["MP3", "HLS"],
    )
    assert own["MixTranscodeParams"] == {"AudioBitrate": 96, "AudioChannels": 2, "AudioSampleRate": 44100}
    receiver = params(spec, notify_url="https://operator.example/callbacks/ns/name/uid/1", notify_auth_key=None)
    assert receiver["NotifyUrl"] == "https://operator.example/callbacks/ns/name/uid/1"
    assert "NotifyAuthKey" not in receiver
    # Without any NotifyUrl the key means nothing to the service: it is not sent.
    assert "NotifyAuthKey" not in params(_example("mixed-oss-minimal.yaml"), notify_auth_key="a" * 16)


@pytest.mark.parametrize("key", ["short0123456789", "a" * 65, "has-a-dash-0123456789"])
def test_start_params_refuses_a_malformed_auth_key(key):
    with pytest.raises(InvalidSpec, match="spec.notify.authKeySecretRef.*16 to 64 letters and digits") as caught:
        params(_example("notify-signed.yaml"), notify_auth_key=key)
    assert "region" not in str(caught.value)  # the key has nothing to do with the region


def test_start_params_checks_rules_that_depend_on_the_default_region():
    (vod,) = [spec_of(i.docs[0]) for i in VALID if i.name == "vod-minimal"]
    with pytest.raises(InvalidSpec, match="default region us-east-1: spec.storage.vod is not offered"):
        params(vod, region_default="us-east-1")
    with pytest.raises(InvalidSpec, match="spec.storage.oss.endpoint must be in spec.region"):
        params(_example("mixed-oss-minimal.yaml"), region_default="ap-southeast-1")
    # An explicit region wins over the default.
    params(_example("individual-audio-vod.yaml"), region_default="us-east-1")


# -- what Update can change ----------------------------------------------------------------------------


def test_update_params_are_the_mutable_part():
    spec = _example("screen-share.yaml")
    full = params(spec)
    assert update_params(spec) == {
        "SubscribeParams": full["SubscribeParams"],
        "MixLayoutParams": full["MixLayoutParams"],
    }
    assert update_params(_example("notify-signed.yaml")).keys() == {"SubscribeParams"}


def _changed(spec: RtcRecordingSpec, **fields) -> RtcRecordingSpec:
    return RtcRecordingSpec.model_validate({**spec.model_dump(by_alias=True, exclude_none=True), **fields})


# -- status -------------------------------------------------------------------------------------------


def test_status_round_trip_and_tolerance():
    written = {
        "phase": "Recording",
        "reason": "Started",
        "message": "",
        "taskId": "task-1",
        "startTime": "2025-03-25T03:27:28Z",
        "observedGeneration": 2,
        "attempt": {"number": 1, "startedAt": "2025-03-25T03:27:27Z"},
        "strayTasks": 0,
        "files": {"hls": ["meetings/task-1/a.m3u8"], "vod": [{"mediaIds": ["m1"], "mergedIds": [], "stream": "s"}]},
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "observedGeneration": 2,
                "lastTransitionTime": "2025-03-25T03:27:28Z",
                "reason": "Recording",
                "message": "",
            }
        ],
        "kopf": {"progress": {}},
        "addedByANewerOperator": True,
    }
    status = RtcRecordingStatus.model_validate(written)
    assert status.files.vod[0].media_ids == ["m1"] and status.conditions[0].status == "True"
    assert status.model_dump(by_alias=True, mode="json", exclude_none=True)["addedByANewerOperator"] is True
    assert RtcRecordingStatus.model_validate({}).phase is None
