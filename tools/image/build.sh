#!/bin/sh
# `make image`: the operator's image, built from Debian packages and PyPI only, written as an image
# archive that `docker load`, `podman load` and `ctr images import` read:
#   build/image/rtc-recording-operator-<version>.oci.tar
#   build/image/rtc-recording-operator-<version>.packages   the Debian and Python versions inside
# How: wheels.sh stages the pinned wheels; mmdebstrap builds a Debian bookworm minbase root file
# system with tools/image/debian-packages and runs install.sh in it (as the Dockerfile does on
# debian:bookworm-slim); oci.py writes it as one layer with the Dockerfile's runtime configuration.
# Installs what it needs with apt-get (as root, or with sudo). Environment:
#   DEBIAN_MIRROR, DEBIAN_SECURITY_MIRROR  e.g. a snapshot.debian.org URL, for a bit-identical rebuild
#   PIP                                    the pip that downloads (default: python3 -m pip)
#   OUT                                    output directory (default: build/image)
# `build.sh --base FILE` writes only the Debian part (minbase, slimmed, merged /usr: what
# debian:bookworm-slim is) as a root file system tarball: the stand-in base on which the test of
# the Dockerfile builds it, since Docker Hub is no registry this project builds from.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${OUT:-$root/build/image}
name=rtc-recording-operator
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/pyproject.toml")
archive="$out/$name-$version.oci.tar"
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
# The image's time stamps are the last commit's, so that a rebuild of a commit is the same image.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || echo 0)}
export SOURCE_DATE_EPOCH

# What this script runs, from Debian.
missing=""
command -v mmdebstrap >/dev/null || missing="$missing mmdebstrap"
[ -e /usr/share/keyrings/debian-archive-keyring.gpg ] || missing="$missing debian-archive-keyring"
[ "$(id -u)" = 0 ] || command -v newuidmap >/dev/null || missing="$missing uidmap"  # mmdebstrap's unshare mode
python3 -m pip --version >/dev/null 2>&1 || [ -n "${PIP:-}" ] || missing="$missing python3-pip"
if [ -n "$missing" ]; then
  echo "installing$missing with apt-get" >&2
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# Debian bookworm, minbase (what debian:bookworm-slim holds), slimmed like it; merged /usr by
# directory symlinks, as debootstrap and so debian:bookworm-slim do it (otherwise apt picks the
# usrmerge package, which brings perl, 50 MB, along). The build host's resolv.conf and hostname
# must not stay; device nodes are the runtime's business (--skip=output/dev leaves them out;
# `tar --delete` afterwards drops other members too).
# debian TARBALL [mmdebstrap options]
debian() {
  tarball=$1
  shift
  mmdebstrap --quiet --variant=minbase --format=tar --skip=output/dev --dpkgopt="$here/dpkg-slim.cfg" \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr "$@" \
    --customize-hook='rm -f "$1/etc/resolv.conf" "$1/etc/hostname"' \
    bookworm "$tarball" \
    "deb $mirror bookworm main" "deb $mirror bookworm-updates main" "deb $security bookworm-security main"
}

if [ "${1:-}" = "--base" ]; then
  debian "${2:?usage: build.sh --base FILE}"
  exit 0
fi

mkdir -p "$out"
work=$(mktemp -d "$out/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT
started=$(date +%s)

"$here/wheels.sh" "$work/stage"

packages=$(grep -v '^#' "$here/debian-packages" | xargs | tr ' ' ',')
# mmdebstrap empties /tmp, the stage's place, at the end.
debian "$work/rootfs.tar" --include="$packages" \
  --customize-hook='mkdir "$1/tmp/rtcrec-stage"' \
  --customize-hook="sync-in $work/stage /tmp/rtcrec-stage" \
  --customize-hook='chroot "$1" sh /tmp/rtcrec-stage/install.sh' \
  --customize-hook="chroot \"\$1\" dpkg-query -W -f '\${Package}=\${Version}\\n' > $work/debian.txt"

python3 "$here/oci.py" --rootfs "$work/rootfs.tar" --out "$archive" --name "$name" --tag "$version" \
  --epoch "$SOURCE_DATE_EPOCH" --dockerfile "$root/Dockerfile" \
  --label "org.opencontainers.image.version=$version" \
  --created-by "tools/image/build.sh: mmdebstrap bookworm minbase + $packages, tools/image/install.sh" \
  > "$work/written.json"
{
  echo "# $name $version: Debian packages (dpkg-query), then Python distributions (staged by wheels.sh)"
  cat "$work/debian.txt"
  grep -v '^#' "$work/stage/requirements.txt" | cut -d' ' -f1
  ls "$work/stage/project"
} > "$out/$name-$version.packages"

python3 - "$work/written.json" "$archive" "$(( $(date +%s) - started ))" <<'PY'
import json, os, sys
written, archive, seconds = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
mb = lambda n: f"{n / 1e6:.0f} MB"
print(f"wrote {archive} in {seconds} s: {mb(os.path.getsize(archive))} archive, layer {mb(written['layer']['size'])} "
      f"compressed, {mb(written['uncompressed'])} unpacked; manifest {written['manifest']}")
PY
