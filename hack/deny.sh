#!/usr/bin/env bash
# `make deny`: cargo deny with deny.toml. Licences, bans (no OpenSSL, known-bad crates) and
# sources are checked offline, always. Advisories are checked against a RustSec database already
# on disk (FEDERATOR_ADVISORY_DBS, or cargo deny's default folder); nothing is fetched, and
# without a copy they are NOT checked and this says so (docs/dependencies.md).
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
  echo "deny: advisories NOT checked: no RustSec database in $db_root (nothing is fetched:" \
    "set FEDERATOR_ADVISORY_DBS to a directory holding a clone" \
    "named advisory-db-<hash>). The bans in deny.toml still keep out the known-bad crates."
fi
