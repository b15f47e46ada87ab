"""Chart.yaml's metadata for Artifact Hub agrees with the repository: the CRDs it lists are crds/'s, its CRD
examples are examples/'s, its image is the one the chart deploys by default, its address the krew manifest's."""

from __future__ import annotations

import yaml

from rtc_recording.cluster import binaries

from .conftest import CHART

ROOT = binaries.REPO_ROOT
CHART_YAML = yaml.safe_load((CHART / "Chart.yaml").read_text())
ANNOTATIONS = {k: yaml.safe_load(v) for k, v in CHART_YAML["annotations"].items() if k.startswith("artifacthub.io/")}


def test_the_crds_listed_are_the_ones_shipped():
    crds = [yaml.safe_load(p.read_text()) for p in sorted((ROOT / "crds").glob("*.yaml"))]
    shipped = {
        (c["spec"]["names"]["kind"], c["metadata"]["name"], v["name"]) for c in crds for v in c["spec"]["versions"]
    }
    assert {(c["kind"], c["name"], c["version"]) for c in ANNOTATIONS["artifacthub.io/crds"]} == shipped
    assert all(c["displayName"] and c["description"] for c in ANNOTATIONS["artifacthub.io/crds"])


def test_the_crd_examples_are_the_repositorys():
    examples = [d for p in sorted((ROOT / "examples").glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]
    listed = ANNOTATIONS["artifacthub.io/crdsExamples"]
    assert {e["kind"] for e in listed} == {c["kind"] for c in ANNOTATIONS["artifacthub.io/crds"]}
    for example in listed:
        assert example in examples, f"{example['kind']}/{example['metadata']['name']} is not as in examples/"


def test_the_image_is_the_default_one_and_the_links_the_projects():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    (image,) = ANNOTATIONS["artifacthub.io/images"]
    assert image["image"] == f"{values['image']['repository']}:{CHART_YAML['appVersion']}"
    home = yaml.safe_load((ROOT / "tools/krew/rtcrec.yaml").read_text())["spec"]["homepage"]
    assert CHART_YAML["home"] == home and CHART_YAML["sources"] == [home]
    assert all(link["url"].startswith(home) for link in ANNOTATIONS["artifacthub.io/links"])
    assert CHART_YAML["maintainers"][0]["name"]


def test_changes_and_license():
    kinds = {"added", "changed", "deprecated", "removed", "fixed", "security"}
    assert all(c["kind"] in kinds and c["description"] for c in ANNOTATIONS["artifacthub.io/changes"])
    # A license is the owners' to choose: the annotation comes with a LICENSE file.
    assert ("artifacthub.io/license" in ANNOTATIONS) == (ROOT / "LICENSE").exists()
