"""The package layout is the architecture: every runtime module sits in a layer of the import contract."""

import pkgutil
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
