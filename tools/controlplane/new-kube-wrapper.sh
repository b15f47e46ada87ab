#!/usr/bin/env bash
# Create (or refresh) the wrapper module tools/controlplane/kube-<minor> for k8s.io/kubernetes <version>,
# e.g. `tools/controlplane/new-kube-wrapper.sh v1.34.4`. k8s.io/kubernetes requires its staging modules
# at v0.0.0 and replaces them with ./staging paths that do not exist outside its repository, so the
# wrapper pins each staging module to its real tag (v0.<minor>.<patch>), read from that version's go.mod.
# Then `go mod tidy` writes go.sum; commit both files and add the version to binaries.py.
set -euo pipefail
version=${1:?usage: $0 vX.Y.Z}
minor=$(echo "$version" | cut -d. -f1-2 | tr -d v)
staging="v0.${version#v1.}"
dir="$(cd "$(dirname "$0")" && pwd)/kube-$minor"
mkdir -p "$dir"
cd "$dir"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod
upstream=$(go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
{
  echo "module rtcrec/controlplane/kube-$minor"
  echo
  grep -m1 '^go ' "$upstream"
  echo
  grep -m1 '^godebug ' "$upstream" && echo  # the GODEBUG defaults upstream builds with
  echo "require k8s.io/kubernetes $version"
  echo
  echo "// k8s.io/kubernetes requires its staging modules at v0.0.0; pin each to its real tag."
  echo "replace ("
  awk '$2 == "=>" && $3 ~ /^\.\/staging\// {print "\t" $1 " => " $1 " '"$staging"'"}' "$upstream"
  echo ")"
  echo
  echo "tool ("
  echo "	k8s.io/kubernetes/cmd/kube-apiserver"
  echo "	k8s.io/kubernetes/cmd/kubectl"
  echo ")"
} > go.mod
go mod tidy
echo "wrote $dir/go.mod and go.sum"
