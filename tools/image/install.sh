#!/bin/sh
# Runs inside the image's root file system, as root: the Dockerfile's RUN, or mmdebstrap's chroot
# hook in build.sh. Its directory is the stage written by wheels.sh; nothing is downloaded here.
#   /opt/rtcrec   a virtual environment (no pip in it) with the pinned wheels and the project's wheel
#   uid/gid 10001 the user the image runs as (numeric in the image config, so runAsNonRoot can check it)
set -eu
stage=$(cd "$(dirname "$0")" && pwd)
pip="$(echo "$stage"/build/pip-*.whl)/pip"
# The build host's pip configuration means nothing here.
for var in $(env | sed -n 's/^\(PIP_[A-Z_]*\)=.*/\1/p'); do unset "$var"; done
export PIP_CONFIG_FILE=/dev/null

python3 -m venv --without-pip /opt/rtcrec
# pip runs from its wheel file with the environment's interpreter, so it installs there and is not
# installed itself. It compiles bytecode: the root file system is read-only at run time.
/opt/rtcrec/bin/python "$pip" install --quiet --no-index --no-cache-dir --disable-pip-version-check \
  --find-links "$stage/wheels" --no-deps --only-binary=:all: --require-hashes -r "$stage/requirements.txt"
/opt/rtcrec/bin/python "$pip" install --quiet --no-index --no-cache-dir --disable-pip-version-check \
  --no-deps "$stage"/project/rtc_recording_operator-*.whl
/opt/rtcrec/bin/python -m pip --version >/dev/null 2>&1 && { echo "pip must not be in the image" >&2; exit 1; }
/opt/rtcrec/bin/rtcrec --help >/dev/null

groupadd --gid 10001 rtcrec
useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin rtcrec
