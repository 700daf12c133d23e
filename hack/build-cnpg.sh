#!/usr/bin/env bash
# Builds the CloudNativePG operator (`manager`: the controller and the instance manager in one
# binary) from the published Go module, and keeps the module's release manifest next to it.
# Cached by version under ~/.cache/federator/cnpg-<version>/. Prints the cache directory.
#
# v1.28.1 is the newest release the Go module proxy serves here, and 1.28 is the last minor with
# the in-tree barmanObjectStore (the WAL archive channel of the real-CNPG lab tier).
set -euo pipefail

VERSION="${CNPG_VERSION:-1.28.1}"
CACHE_ROOT="${FEDERATOR_CACHE:-$HOME/.cache/federator}"
OUT_DIR="$CACHE_ROOT/cnpg-$VERSION"
BIN="$OUT_DIR/manager"
MANIFEST="$OUT_DIR/cnpg-$VERSION.yaml"
module=github.com/cloudnative-pg/cloudnative-pg

if [[ -x "$BIN" && -s "$MANIFEST" ]] && "$BIN" version 2>/dev/null | grep -q "Version:$VERSION"; then
  echo "$OUT_DIR"
  exit 0
fi

command -v go >/dev/null || { echo "error: Go is required to build the CloudNativePG operator $VERSION" >&2; exit 1; }

echo "building the CloudNativePG operator $VERSION (a few minutes on 2 cores)..." >&2
src="$(go mod download -json "$module@v$VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
[[ -d "$src" ]] || { echo "error: the Go module proxy did not serve $module@v$VERSION (try another release; see docs/lab-real.md)" >&2; exit 1; }
mkdir -p "$OUT_DIR"
# Built inside a copy of the released module, with its own go.mod and go.sum: `go install
# pkg@version` would also ask the proxy for the module's version list (to look for a deprecation
# notice), which this proxy refuses (403).
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp -r "$src" "$work/cnpg"
chmod -R u+w "$work/cnpg"
(cd "$work/cnpg" && CGO_ENABLED=0 go build -trimpath -o "$BIN.tmp" \
  -ldflags "-s -w -X $module/pkg/versions.buildVersion=$VERSION -X $module/pkg/versions.buildCommit=v$VERSION" \
  ./cmd/manager)
cp "$src/releases/cnpg-$VERSION.yaml" "$MANIFEST.tmp"
chmod u+w "$MANIFEST.tmp"
mv "$MANIFEST.tmp" "$MANIFEST"
mv "$BIN.tmp" "$BIN"
echo "$OUT_DIR"
