"""Write a root file system tarball as a one-layer image archive that every runtime loads.

The archive is an OCI image layout (oci-layout, index.json, blobs/sha256/...) that also carries
Docker's manifest.json pointing at the same blobs, as `docker save` writes since Docker 25:
`podman load`, `docker load` (with or without the containerd image store), `ctr images import`
and `skopeo` (oci-archive: and docker-archive:) all read it. Standard library only; the output
depends on nothing but the inputs (no clock, gzip without a timestamp).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import platform
import shlex
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path

CHUNK = 1 << 20
ARCH = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


class _Hashing(io.RawIOBase):
    """A write-only file that hashes and counts what passes through it."""

    def __init__(self, target):
        self.target, self.sha, self.size = target, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.target.write(data)


def _json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def runtime_config(dockerfile: Path) -> dict:
    """ENV, LABEL, WORKDIR, USER, ENTRYPOINT and CMD of the Dockerfile's last stage, as an image
    config's `config` object: the one description of how the image runs, whichever way it is built."""
    lines, current = [], ""
    for raw in dockerfile.read_text().splitlines():
        if not current and (not raw.strip() or raw.lstrip().startswith("#")):
            continue
        if raw.rstrip().endswith("\\"):
            current += raw.rstrip()[:-1] + " "
            continue
        lines.append(current + raw)
        current = ""
    last = max(i for i, line in enumerate(lines) if line.split()[0].upper() == "FROM")
    out: dict = {"Env": [], "Labels": {}}
    for line in lines[last + 1 :]:
        instruction, _, rest = line.strip().partition(" ")
        instruction, rest = instruction.upper(), rest.strip()
        if instruction in ("ENV", "LABEL"):
            pairs = [word.split("=", 1) for word in shlex.split(rest)]
            if any(len(pair) != 2 for pair in pairs):
                raise SystemExit(f"{dockerfile}: write {instruction} as key=value pairs: {line}")
            if instruction == "ENV":
                out["Env"] += [f"{k}={v}" for k, v in pairs]
            else:
                out["Labels"].update(dict(pairs))
        elif instruction == "WORKDIR":
            out["WorkingDir"] = rest
        elif instruction == "USER":
            out["User"] = rest
        elif instruction in ("ENTRYPOINT", "CMD"):
            if not rest.startswith("["):
                raise SystemExit(f"{dockerfile}: write {instruction} in JSON form: {line}")
            out["Entrypoint" if instruction == "ENTRYPOINT" else "Cmd"] = json.loads(rest)
    return out


def config(diff_id: str, created: str, arch: str, runtime: dict, created_by: str) -> dict:
    return {
        "created": created,
        "architecture": arch,
        "os": "linux",
        "config": runtime,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": created, "created_by": created_by}],
    }


def write(rootfs: Path, out: Path, *, name: str, tag: str, epoch: int, runtime: dict, created_by: str) -> dict:
    """Write `out`; returns the manifest descriptor (digest, size) for the caller to report."""
    created = datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    arch = ARCH[platform.machine()]
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        layer_path = Path(tmp) / "layer"
        diff = hashlib.sha256()
        with open(layer_path, "wb") as raw:
            compressed = _Hashing(raw)
            with (
                gzip.GzipFile(fileobj=compressed, mode="wb", compresslevel=6, mtime=0) as gz,
                open(rootfs, "rb") as src,
            ):
                while chunk := src.read(CHUNK):
                    diff.update(chunk)
                    gz.write(chunk)
        layer = {
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": "sha256:" + compressed.sha.hexdigest(),
            "size": compressed.size,
        }
        cfg = _json(config("sha256:" + diff.hexdigest(), created, arch, runtime, created_by))
        cfg_desc = {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": "sha256:" + hashlib.sha256(cfg).hexdigest(),
            "size": len(cfg),
        }
        manifest = _json(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": cfg_desc,
                "layers": [layer],
            }
        )
        ref = f"{name}:{tag}"
        manifest_desc = {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": "sha256:" + hashlib.sha256(manifest).hexdigest(),
            "size": len(manifest),
            "platform": {"architecture": arch, "os": "linux"},
            # containerd (and Docker on it) names the image by the first, podman and skopeo by the second.
            "annotations": {
                "io.containerd.image.name": f"docker.io/library/{ref}",
                "org.opencontainers.image.ref.name": ref,
            },
        }
        index = _json(
            {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [manifest_desc]}
        )
        blob = lambda desc: "blobs/sha256/" + desc["digest"].split(":", 1)[1]  # noqa: E731
        docker = _json([{"Config": blob(cfg_desc), "RepoTags": [ref], "Layers": [blob(layer)]}])

        partial = out.with_name(out.name + ".partial")
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:

            def add(path: str, data: bytes | None = None, file: Path | None = None, directory: bool = False):
                info = tarfile.TarInfo(path)
                info.mtime, info.uid, info.gid, info.uname, info.gname = epoch, 0, 0, "", ""
                if directory:
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
                    return
                info.mode = 0o644
                if file is not None:
                    info.size = file.stat().st_size
                    with open(file, "rb") as f:
                        tar.addfile(info, f)
                else:
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))

            add("blobs", directory=True)
            add("blobs/sha256", directory=True)
            add(blob(cfg_desc), cfg)
            add(blob(layer), file=layer_path)
            add(blob(manifest_desc), manifest)
            add("index.json", index)
            add("manifest.json", docker)
            add("oci-layout", _json({"imageLayoutVersion": "1.0.0"}))
        partial.replace(out)
    return {
        "manifest": manifest_desc["digest"],
        "config": cfg_desc["digest"],
        "layer": layer,
        "uncompressed": rootfs.stat().st_size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rootfs", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--tag", required=True)
    parser.add_argument("--epoch", type=int, required=True, help="SOURCE_DATE_EPOCH: the image's creation time")
    parser.add_argument("--dockerfile", type=Path, required=True, help="the runtime configuration's source")
    parser.add_argument("--label", action="append", default=[], help="key=value, added to the Dockerfile's labels")
    parser.add_argument("--created-by", required=True, help="the history entry: how the layer was made")
    args = parser.parse_args()
    runtime = runtime_config(args.dockerfile)
    runtime["Labels"].update(dict(label.split("=", 1) for label in args.label))
    done = write(
        args.rootfs,
        args.out,
        name=args.name,
        tag=args.tag,
        epoch=args.epoch,
        runtime=runtime,
        created_by=args.created_by,
    )
    print(json.dumps(done))


if __name__ == "__main__":
    main()
