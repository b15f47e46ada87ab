"""The package layout is the architecture: every runtime module sits in a layer of the import contract."""

import pkgutil
import re
import tomllib
from pathlib import Path

import rtc_recording

ROOT = Path(__file__).resolve().parents[2]
DEV_TOOLS = ("rtc_recording.emulator", "rtc_recording.cluster")  # development tools, with their own contract


def contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def runtime_modules() -> list[str]:
    found = pkgutil.walk_packages(rtc_recording.__path__, prefix="rtc_recording.")
    return sorted(m.name for m in found if not m.name.startswith(DEV_TOOLS))


def test_every_runtime_module_is_in_a_layer():
    (layers,) = [c["layers"] for c in contracts() if c["type"] == "layers"]
    roots = [name.strip() for layer in layers for name in layer.split("|")]
    outside = [m for m in runtime_modules() if not any(m == r or m.startswith(r + ".") for r in roots)]
    assert outside == [], f"add these to a layer of the import contract in pyproject.toml: {outside}"


def test_the_walk_finds_the_layers():
    modules = runtime_modules()
    assert "rtc_recording.controller.handlers" in modules and "rtc_recording.receiver.server" in modules
    assert not any(m.startswith(DEV_TOOLS) for m in modules)


def test_the_plugins_own_dependencies_stay_out_of_the_operator():
    """kubectl rtcrec's optional group (the OSS SDK) is neither a runtime dependency nor pinned for the image
    (tools/image/requirements.txt, which tools/image/lock.sh makes from the runtime dependencies alone)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    plugin = {_name(d) for d in project["optional-dependencies"]["plugin"]}
    assert "alibabacloud-oss-v2" in plugin
    assert not plugin & {_name(d) for d in project["dependencies"]}
    pinned = {_name(line) for line in (ROOT / "tools/image/requirements.txt").read_text().splitlines() if "==" in line}
    assert not (plugin | {"kubernetes"}) & pinned


def test_the_kubernetes_package_is_the_plugins_alone():
    """Its own extra, `kubectl`, which neither the runtime, the image nor the test venv (the Makefile's
    `.[test,plugin]`) installs: Kopf imports `kubernetes` whenever it is importable."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert {_name(d) for d in project["optional-dependencies"]["kubectl"]} == {"kubernetes"}
    assert "kubernetes" not in {_name(d) for d in project["dependencies"] + project["optional-dependencies"]["test"]}
    assert "-e '.[test,plugin]'" in (ROOT / "Makefile").read_text()


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")
