#!/usr/bin/env bash
# `make deny`: cargo deny with deny.toml. Licences, bans (no OpenSSL, known-bad crates) and
# sources are checked offline, always. Advisories are checked against the RustSec database on
# disk, which hack/install-deps.sh fetches from github.com; on a machine that cannot reach
# github.com and has no copy, they are NOT checked and this says so (docs/dependencies.md).
set -euo pipefail
cd "$(dirname "$0")/.."

deny="$(bash hack/install-cargo-deny.sh)"
"$deny" --offline check bans licenses sources

db_root="${FEDERATOR_ADVISORY_DBS:-${CARGO_HOME:-$HOME/.cargo}/advisory-dbs}"
if compgen -G "$db_root/advisory-db-*/crates" >/dev/null; then
  for db in "$db_root"/advisory-db-*; do
    echo "deny: advisories from $db (last commit $(git -C "$db" log -1 --format=%cs 2>/dev/null || echo unknown))"
  done
  "$deny" --offline check advisories
else
  echo "deny: advisories NOT checked: no RustSec database in $db_root (github.com was unreachable" \
    "when hack/install-deps.sh ran; set FEDERATOR_ADVISORY_DBS to a directory holding a clone" \
    "named advisory-db-<hash>). The bans in deny.toml still keep out the known-bad crates."
fi
