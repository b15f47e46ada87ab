#!/usr/bin/env bash
# Re-pin what the image build takes from PyPI, with every file's hash (so --require-hashes holds on
# amd64 and arm64 alike): requirements.txt, pyproject.toml's runtime dependencies (for Python 3.11,
# Debian bookworm's), installed into the image; build.txt, the pip and setuptools that build the
# project's wheel and install (pip runs from its wheel file; neither ends up in the image).
# Run after changing dependencies in pyproject.toml, then commit both files.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export PIP_FIND_LINKS= PIP_NO_INDEX= PIP_DISABLE_PIP_VERSION_CHECK=1  # PyPI only, whatever the machine adds
python=${PYTHON:-python3}
# Markers resolve for the interpreter that locks: it must be the image's (Debian bookworm: 3.11).
"$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { echo "lock with Python 3.11 (PYTHON=...)" >&2; exit 1; }
"$python" -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --upgrade pip
"$work/venv/bin/pip" install --quiet "pip-tools==7.6.2"
compile() { "$work/venv/bin/pip-compile" --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
  --no-emit-find-links --newline=LF "$@"; }
cd "$root"
CUSTOM_COMPILE_COMMAND="tools/image/lock.sh" compile -o tools/image/requirements.txt pyproject.toml
printf 'pip\nsetuptools\n' > "$work/build.in"
CUSTOM_COMPILE_COMMAND="tools/image/lock.sh" compile -o tools/image/build.txt "$work/build.in"
sed -i "s|-r $work/build.in|tools/image/lock.sh|" tools/image/build.txt
echo "pinned: $(grep -c '==' tools/image/requirements.txt) runtime packages; $(grep -o '^[a-z]*==[^ ]*' tools/image/build.txt | tr '\n' ' ')"
