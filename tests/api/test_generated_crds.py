"""The RtcRecordingClass CRD: generated from the RtcRecording CRD (tools/crds/make-class-crd.py), so its
default fields can never accept what an RtcRecording refuses; documented for kubectl explain."""

from __future__ import annotations

import importlib.util

import yaml
from api_corpus import REPO

CLASS_CRD = REPO / "crds" / "rtcrecordingclasses.yaml"


def generator():
    spec = importlib.util.spec_from_file_location("make_class_crd", REPO / "tools" / "crds" / "make-crds.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_class_crd_is_generated_from_the_recording_crd():
    assert CLASS_CRD.read_text() == generator().render(), "run tools/crds/make-crds.py"


def test_the_class_fields_are_the_recordings():
    (version,) = yaml.safe_load((REPO / "crds" / "rtcrecordings.yaml").read_text())["spec"]["versions"]
    recording = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    (version,) = yaml.safe_load(CLASS_CRD.read_text())["spec"]["versions"]
    klass = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    for name in generator().COPIED:
        a, b = dict(recording[name]), dict(klass[name])
        a.pop("description"), b.pop("description")
        assert a == b, name
    assert klass["layout"]["properties"]["background"] == recording["layout"]["properties"]["background"]
    assert klass["notify"]["properties"]["url"] == recording["notify"]["properties"]["url"]


def test_a_recording_may_drop_exactly_the_fields_a_class_sets():
    (version,) = yaml.safe_load((REPO / "crds" / "rtcrecordings.yaml").read_text())["spec"]["versions"]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert spec["dropClassDefaults"]["items"]["enum"] == [*generator().COPIED, *generator().PARTS]


def test_every_class_field_is_documented_for_kubectl_explain():
    def undocumented(node: dict, path: str) -> list[str]:
        missing = [] if node.get("description", "").strip() else [path]
        for name, child in node.get("properties", {}).items():
            if name != "metadata":
                missing += undocumented(child, f"{path}.{name}")
        if "items" in node:
            missing += [m for m in undocumented(node["items"], f"{path}[]") if m != f"{path}[]"]
        return missing

    (version,) = yaml.safe_load(CLASS_CRD.read_text())["spec"]["versions"]
    assert undocumented(version["schema"]["openAPIV3Schema"], "rtcrecclass") == []


SCHEDULE_CRD = REPO / "crds" / "rtcrecordingschedules.yaml"


def test_the_schedule_crd_is_generated_from_the_recording_crd():
    assert SCHEDULE_CRD.read_text() == generator().render_schedule(), "run tools/crds/make-crds.py"
    (version,) = yaml.safe_load(SCHEDULE_CRD.read_text())["spec"]["versions"]
    schema = version["schema"]["openAPIV3Schema"]
    assert "oldSelf" not in SCHEDULE_CRD.read_text()  # a template is not immutable

    def undocumented(node: dict, path: str) -> list[str]:
        missing = [] if node.get("description", "").strip() else [path]
        for name, child in node.get("properties", {}).items():
            if name != "metadata" or path != "rtcrecsched":
                missing += undocumented(child, f"{path}.{name}")
        if "items" in node:
            missing += [m for m in undocumented(node["items"], f"{path}[]") if m != f"{path}[]"]
        return missing

    assert undocumented(schema, "rtcrecsched") == []
