#!/bin/sh
# Stage everything the image installs into STAGE (one directory, no network needed afterwards):
#   STAGE/build/   pip and setuptools, pinned by build.txt (build and install; not in the image)
#   STAGE/wheels/  the runtime wheels pinned by requirements.txt, for CPython 3.11 on glibc 2.36
#                  (Debian bookworm) and this machine's architecture, plus the project's own wheel;
#                  a pure-Python dependency published only as an sdist is built into a wheel here
#   STAGE/requirements.txt  exactly the staged wheels, by name, version and hash
#   STAGE/install.sh
# Run by build.sh on the host and by the Dockerfile's first stage, so both install the same files.
# PIP is any pip able to download (the hashes in the lock files decide what is accepted).
# SRC is the project (pyproject.toml and operator/), default: this repository.
set -eu
stage=${1:?usage: wheels.sh STAGE}
here=$(cd "$(dirname "$0")" && pwd)
src=${SRC:-$(cd "$here/../.." && pwd)}
pip=${PIP:-python3 -m pip}
# PyPI only, whatever the machine's pip configuration adds (find-links to local wheel directories).
export PIP_FIND_LINKS= PIP_NO_INDEX= PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

case "$(uname -m)" in
  x86_64) arch=x86_64 ;;
  aarch64|arm64) arch=aarch64 ;;
  *) echo "unsupported architecture $(uname -m)" >&2; exit 1 ;;
esac
# The platform tags pip itself would accept on bookworm (glibc 2.36), so that the host's own Python
# and glibc never change which files are chosen.
platforms=""
minor=36
while [ "$minor" -ge 17 ]; do platforms="$platforms --platform manylinux_2_${minor}_${arch}"; minor=$((minor - 1)); done

rm -rf "$stage"
mkdir -p "$stage/build" "$stage/wheels"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
$pip download --quiet --no-deps --only-binary=:all: --require-hashes -r "$here/build.txt" -d "$stage/build"
# Every file is checked against the lock's hashes; a wheel for the target where one exists, else the sdist.
$pip download --quiet --no-deps --require-hashes -r "$here/requirements.txt" -d "$work/downloads" \
  --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none $platforms
mv "$work"/downloads/*.whl "$stage/wheels/"

# Wheels are built by the pinned pip and setuptools only (--no-index: build isolation finds nothing
# else), with fixed time stamps, so that the same sources make the same wheel everywhere.
wheel() { SOURCE_DATE_EPOCH=315532800 python3 "$(echo "$stage"/build/pip-*.whl)/pip" wheel --quiet --no-deps \
  --no-index --find-links "$stage/build" -w "$1" "$2"; }
for sdist in "$work"/downloads/*; do
  [ -e "$sdist" ] || continue
  wheel "$work/built" "$sdist"
done
for built in "$work"/built/*.whl; do
  [ -e "$built" ] || continue
  case "$built" in
    *-py3-none-any.whl|*-py2.py3-none-any.whl) mv "$built" "$stage/wheels/" ;;
    *) echo "$(basename "$built"): compiled here, not for the image's Python; pin a version with a wheel" >&2; exit 1 ;;
  esac
done
{
  echo "# The staged wheels (written by wheels.sh after checking every download against tools/image/*.txt)."
  for f in "$stage"/wheels/*.whl; do
    n=$(basename "$f"); rest=${n#*-}
    echo "${n%%-*}==${rest%%-*} --hash=sha256:$(sha256sum "$f" | cut -d' ' -f1)"
  done
} > "$stage/requirements.txt"

# The project's wheel, from a clean copy (no stale build/ directory can leak into it).
cp "$src/pyproject.toml" "$work/"
cp -r "$src/operator" "$work/"
find "$work/operator" \( -name __pycache__ -o -name '*.egg-info' \) -prune -exec rm -rf {} +
wheel "$stage/project" "$work"

cp "$here/install.sh" "$stage/"
echo "staged $(ls "$stage/wheels" | wc -l) wheels and $(ls "$stage/project") in $stage"
