#!/bin/sh
# What the container test (tests/chart/test_chart_image.py) runs the image with: podman, and runc
# (crun fails on cgroups in hybrid mode on some hosts). Installed with apt-get when missing and
# this is root (or sudo works without a password); otherwise the test says why it is skipped.
set -eu
missing=""
command -v podman >/dev/null || missing="$missing podman"
command -v runc >/dev/null || [ -x /usr/sbin/runc ] || missing="$missing runc"
[ -n "$missing" ] || exit 0
if [ "$(id -u)" = 0 ]; then sudo=""
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo"
else echo "not installing$missing (not root): the container test will be skipped" >&2; exit 0
fi
echo "installing$missing with apt-get" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
