#!/usr/bin/env bash
# Builds helm from its Go module (helm.sh/helm/v3, pinned) and caches the binary by version under
# ~/.cache/federator/helm-<version>/. Prints the binary's path on stdout. Used by the chart checks
# (`make chart-check`): `helm lint` and the render check of deploy/federator.yaml.
set -euo pipefail

VERSION="${HELM_VERSION:-v3.19.0}"
CACHE_ROOT="${FEDERATOR_CACHE:-$HOME/.cache/federator}"
BIN="$CACHE_ROOT/helm-$VERSION/helm"

if [[ -x "$BIN" ]] && "$BIN" version --short 2>/dev/null | grep -q "^$VERSION"; then
  echo "$BIN"
  exit 0
fi
command -v go >/dev/null || { echo "error: go is required to build helm $VERSION (or put helm $VERSION at $BIN)" >&2; exit 1; }
echo "building helm $VERSION from the Go module proxy (about a minute)..." >&2
mkdir -p "$(dirname "$BIN")"
GOBIN="$(dirname "$BIN")" GOFLAGS=-mod=mod CGO_ENABLED=0 go install -trimpath \
  -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$VERSION" \
  "helm.sh/helm/v3/cmd/helm@$VERSION" >&2
"$BIN" version --short | grep -q "^$VERSION" || { echo "error: $BIN does not report $VERSION" >&2; exit 1; }
echo "$BIN"
