"""The API corpus (tests/api/corpus) and the paths around it, shared by both API test modules.

Layout:
  valid/*.yaml        one RtcRecording each, to be accepted.
  invalid/*.yaml      one RtcRecording each, to be refused; the annotation EXPECT holds a fragment
                      (a field path or the rule's message) that the refusal must contain.
Every valid and invalid item also records, in the annotation PAGE, what the vendor's page
(StartRtcCloudRecording) says of it: "allows", "forbids", "ignores" (the page calls the setting
invalid there, i.e. the service ignores it; refused here rather than silently dropped), "silent"
(the page says nothing: a reading of ours, or a bound on the cost of the CEL rules) or
"not-on-page" (a field of the operator's own), optionally followed by ": why".
  transitions/*.yaml  two documents: an accepted original, then a change of it. With EXPECT on
                      the change, the update must be refused with that fragment; without, accepted.
A comment on each file's first line says what it is about. metadata.name is the file's stem.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

HERE = Path(__file__).parent
CORPUS = HERE / "corpus"
REPO = HERE.parents[1]
CRD = REPO / "crds" / "rtcrecordings.yaml"
EXAMPLES = REPO / "examples"
EXPECT = "test.rtc.recording.io/expect"
PAGE = "test.rtc.recording.io/page"
VERDICTS = ("allows", "forbids", "ignores", "silent", "not-on-page")


@dataclass(frozen=True)
class Item:
    path: Path
    docs: tuple[dict, ...]

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def expect(self) -> str | None:
        return self.docs[-1]["metadata"].get("annotations", {}).get(EXPECT)

    @property
    def page(self) -> str | None:
        """The page's verdict, the first word of the PAGE annotation."""
        verdict = self.docs[-1]["metadata"].get("annotations", {}).get(PAGE)
        return verdict.split(":")[0] if verdict else None


def load(kind: str) -> list[Item]:
    items = [Item(p, tuple(yaml.safe_load_all(p.read_text()))) for p in sorted((CORPUS / kind).glob("*.yaml"))]
    assert items, f"no corpus items under {CORPUS / kind}"
    return items


def crd_version() -> dict:
    (version,) = yaml.safe_load(CRD.read_text())["spec"]["versions"]
    return version


def example_classes() -> dict[str, dict]:
    """The RtcRecordingClasses of examples/, by name."""
    return {
        doc["metadata"]["name"]: doc
        for path in sorted(EXAMPLES.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc["kind"] == "RtcRecordingClass"
    }


def effective(doc: dict) -> dict:
    """An RtcRecording's spec as the operator starts it in a namespace the example default class selects:
    merged with the example class it names, or with the default class if it names none."""
    from rtc_recording.decide.classes import RecordingClass, merge

    found = [RecordingClass.of(c) for c in example_classes().values()]
    name = doc["spec"].get("recordingClassName")
    (klass,) = [c for c in found if c.name == name] if name else [c for c in found if c.default]
    return merge(klass.defaults, doc["spec"])
