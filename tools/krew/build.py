"""`make krew`: kubectl rtcrec as krew installs it, one archive per platform and the manifest that names them.

    build/krew/rtcrec-<os>-<arch>.tar.gz   kubectl-rtcrec (the launcher) and lib/: the project's wheel with its
                                           `plugin` and `kubectl` extras, installed by pip for that platform
    build/krew/rtcrec.yaml                 tools/krew/rtcrec.yaml with a platform per archive and its sha256

pydantic-core, aiohttp, PyYAML and others are compiled per platform and per CPython version, so each archive
holds one lib/py3XY per supported Python (the launcher picks the python3 on PATH's) and lib/common for the
packages that are the same in all of them (the `kubernetes` package, 75 MB, among them). Wheels only: pip
installs for another platform than its own without building anything. Archives are reproducible for the same
dependency versions: sorted members, owner 0, time stamps of the last commit.

usage: build.py [--out DIR] [--platform linux-amd64 ...] [--python 3.11 ...]   (default: all of each)
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "tools" / "krew"


def _glibc(arch: str) -> list[str]:
    """glibc 2.17 to 2.28 (RHEL 8, Debian 10 and later): pip expands a macOS tag to the older versions, and
    manylinux2014 (2.17) to manylinux1 and 2010, but no manylinux_2_x tag to the ones before it."""
    return [f"manylinux_2_{minor}_{arch}" for minor in range(28, 16, -1)] + [f"manylinux2014_{arch}"]


# krew's os/arch -> pip's platform tags.
PLATFORMS = {
    "linux-amd64": _glibc("x86_64"),
    "linux-arm64": _glibc("aarch64"),
    "darwin-amd64": ["macosx_11_0_x86_64"],
    "darwin-arm64": ["macosx_11_0_arm64"],
}
PYTHONS = ["3.11", "3.12", "3.13", "3.14"]  # requires-python's and every later CPython with wheels out


def version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def wheel(work: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(work), str(ROOT)], check=True
    )
    (found,) = work.glob("rtc_recording_operator-*.whl")
    return found


def install(project: Path, tags: list[str], python: str, target: Path) -> None:
    platforms = [arg for tag in tags for arg in ("--platform", tag)]
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--target", str(target), *platforms]
        + ["--python-version", python, "--implementation", "cp", "--only-binary=:all:", f"{project}[plugin,kubectl]"],
        check=True,
    )
    shutil.rmtree(target / "bin", ignore_errors=True)  # console scripts for this machine's python
    # pip records where the project's wheel came from, a temporary path: left out, so that the archive is the
    # same from one build to the next.
    (record,) = target.glob("rtc_recording_operator-*.dist-info/RECORD")
    (record.parent / "direct_url.json").unlink()
    record.write_text("".join(line for line in record.read_text().splitlines(True) if "/direct_url.json," not in line))


def tree_digest(path: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(p for p in [path, *path.rglob("*")] if p.is_file()):
        digest.update(str(file.relative_to(path.parent)).encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()


def share(lib: Path, pythons: list[str]) -> None:
    """Move the top-level entries that are identical in every lib/py3XY to lib/common."""
    dirs = [lib / f"py{p.replace('.', '')}" for p in pythons]
    common = lib / "common"
    common.mkdir()
    for name in sorted(os.listdir(dirs[0])):
        if all((d / name).exists() for d in dirs) and len({tree_digest(d / name) for d in dirs}) == 1:
            (dirs[0] / name).rename(common / name)
            for d in dirs[1:]:
                shutil.rmtree(d / name) if (d / name).is_dir() else (d / name).unlink()


def archive(stage: Path, out: Path, epoch: int) -> str:
    """A reproducible .tar.gz of `stage`'s content; returns its sha256."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(stage.rglob("*")):
            info = tar.gettarinfo(str(path), str(path.relative_to(stage)))
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = epoch
            info.mode = 0o755 if path.is_dir() or os.access(path, os.X_OK) else 0o644
            if path.is_file():
                with open(path, "rb") as content:
                    tar.addfile(info, content)
            else:
                tar.addfile(info)
    data = io.BytesIO()
    with gzip.GzipFile(fileobj=data, mode="wb", mtime=epoch, filename="") as gz:
        gz.write(raw.getvalue())
    out.write_bytes(data.getvalue())
    return hashlib.sha256(data.getvalue()).hexdigest()


def manifest(hashes: dict[str, str], release: str) -> dict:
    plugin = yaml.safe_load((HERE / "rtcrec.yaml").read_text())
    plugin["spec"]["version"] = release
    base = f"{plugin['spec']['homepage']}/releases/download/{release}"
    plugin["spec"]["platforms"] = [
        {
            "selector": {"matchLabels": {"os": name.split("-")[0], "arch": name.split("-")[1]}},
            "uri": f"{base}/rtcrec-{name}.tar.gz",
            "sha256": sha,
            "files": [{"from": "*", "to": "."}],
            "bin": "kubectl-rtcrec",
        }
        for name, sha in hashes.items()
    ]
    return plugin


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks, as the template writes them."""


_Dumper.add_representer(
    str, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style="|" if "\n" in s else None)
)


def main() -> None:
    parser = argparse.ArgumentParser(description="kubectl rtcrec's krew archives and manifest")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "krew")
    parser.add_argument("--platform", action="append", choices=sorted(PLATFORMS), help="default: all")
    parser.add_argument("--python", action="append", choices=PYTHONS, help="default: all")
    args = parser.parse_args()
    platforms, pythons = args.platform or list(PLATFORMS), args.python or PYTHONS
    commit = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%ct"], capture_output=True, text=True)
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH") or commit.stdout.strip() or 0)
    args.out.mkdir(parents=True, exist_ok=True)
    hashes = {}
    with tempfile.TemporaryDirectory(prefix="rtcrec-krew-") as tmp:
        project = wheel(Path(tmp))
        for name in platforms:
            stage = Path(tmp) / name
            for python in pythons:
                install(project, PLATFORMS[name], python, stage / "lib" / f"py{python.replace('.', '')}")
            share(stage / "lib", pythons)
            shutil.copy2(HERE / "kubectl-rtcrec", stage / "kubectl-rtcrec")
            hashes[name] = archive(stage, args.out / f"rtcrec-{name}.tar.gz", epoch)
            print(f"{args.out / f'rtcrec-{name}.tar.gz'}  sha256 {hashes[name]}")
    (args.out / "rtcrec.yaml").write_text(yaml.dump(manifest(hashes, f"v{version()}"), Dumper=_Dumper, sort_keys=False))
    print(args.out / "rtcrec.yaml")


if __name__ == "__main__":
    main()
