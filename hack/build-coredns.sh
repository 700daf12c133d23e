#!/usr/bin/env bash
# Builds CoreDNS with only the plugins the real-CNPG lab tier uses (cluster DNS from the
# kubernetes plugin, forward for the other regions' zones, and the usual health/ready/cache/
# errors/log), from the published Go module. Cached under ~/.cache/federator/coredns-<version>/.
# Prints the binary's path on stdout.
set -euo pipefail

VERSION="${COREDNS_VERSION:-v1.12.4}"
CACHE_ROOT="${FEDERATOR_CACHE:-$HOME/.cache/federator}"
OUT_DIR="$CACHE_ROOT/coredns-$VERSION"
BIN="$OUT_DIR/coredns"
plugins=(kubernetes forward cache errors health ready log)

if [[ -x "$BIN" ]] && "$BIN" -version 2>/dev/null | grep -q "CoreDNS-${VERSION#v}"; then
  echo "$BIN"
  exit 0
fi

command -v go >/dev/null || { echo "error: Go is required to build CoreDNS $VERSION" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
printf 'module federator.dev/coredns-build\n\ngo 1.24\n\nrequire github.com/coredns/coredns %s\n' "$VERSION" >"$work/go.mod"
{
  echo "package main"
  echo
  echo "import ("
  echo "	\"github.com/coredns/coredns/coremain\""
  for p in "${plugins[@]}"; do echo "	_ \"github.com/coredns/coredns/plugin/$p\""; done
  echo ")"
  echo
  echo "func main() { coremain.Run() }"
} >"$work/main.go"

echo "building CoreDNS $VERSION (${plugins[*]})..." >&2
cd "$work"
export GOFLAGS="-mod=mod"
go mod tidy >&2
mkdir -p "$OUT_DIR"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$BIN.tmp" . >&2
mv "$BIN.tmp" "$BIN"
echo "$BIN"
