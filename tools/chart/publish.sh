#!/bin/sh
# `make chart`: package the chart and push it to an OCI registry, where `helm install oci://...` finds it:
#   build/chart/rtc-recording-operator-<version>.tgz
#   oci://$CHART_REGISTRY/rtc-recording-operator:<version>
# Environment:
#   CHART_REGISTRY     registry host and repository path, e.g. registry.example.com/charts (required)
#   CHART_PUSH_FLAGS   more `helm push` flags, e.g. --plain-http for a registry without TLS
#   HELM               the helm binary (default: helm on PATH; make passes the one built from Go modules)
#   OUT                where the package goes (default: build/chart)
# Log in first where the registry asks for it: helm registry login <host>.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
helm=${HELM:-helm}
out=${OUT:-$root/build/chart}
registry=${CHART_REGISTRY:?set CHART_REGISTRY, e.g. CHART_REGISTRY=registry.example.com/charts}
mkdir -p "$out"
"$helm" lint --strict "$root/charts/rtc-recording-operator"
package=$("$helm" package "$root/charts/rtc-recording-operator" --destination "$out" | sed -n 's/^Successfully packaged chart and saved it to: //p')
# shellcheck disable=SC2086 # CHART_PUSH_FLAGS is a list of flags
"$helm" push "$package" "oci://$registry" ${CHART_PUSH_FLAGS:-}
