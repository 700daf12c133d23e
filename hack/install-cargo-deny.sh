#!/usr/bin/env bash
# Builds cargo-deny from crates.io (`cargo install --locked`, pinned) and caches the binary by
# version under ~/.cache/federator/cargo-deny-<version>/. Prints the binary's path on stdout.
# Used by `make deny` (hack/deny.sh). The first build takes about 5-10 minutes on 2 cores; link-
# time optimisation is turned off for it, which only makes the checker a little slower.
set -euo pipefail

VERSION="${CARGO_DENY_VERSION:-0.20.2}"
CACHE_ROOT="${FEDERATOR_CACHE:-$HOME/.cache/federator}"
ROOT="$CACHE_ROOT/cargo-deny-$VERSION"
BIN="$ROOT/bin/cargo-deny"

if [[ -x "$BIN" ]] && "$BIN" --version 2>/dev/null | grep -qx "cargo-deny $VERSION"; then
  echo "$BIN"
  exit 0
fi
echo "building cargo-deny $VERSION from crates.io (once; about 5-10 minutes)..." >&2
CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
  cargo install --locked --quiet cargo-deny --version "$VERSION" --root "$ROOT" >&2
"$BIN" --version | grep -qx "cargo-deny $VERSION" || { echo "error: $BIN does not report $VERSION" >&2; exit 1; }
echo "$BIN"
