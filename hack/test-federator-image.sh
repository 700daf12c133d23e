#!/usr/bin/env bash
# Checks the image hack/build-federator-image.sh builds, as a container runtime would see it:
# unpacked with umoci into a runtime bundle, its config runs as user 65532 (not root) with the
# `federator` entrypoint, the binary runs as that user in the rootfs (chroot: glibc and libgcc
# are the image's own), and the image holds no shell and no OpenSSL.
#
#   hack/test-federator-image.sh [--binary PATH]     # make test passes target/debug/federator
set -euo pipefail
cd "$(dirname "$0")/.."

archive="$(bash hack/build-federator-image.sh "$@")"
oci="$(dirname "$archive")/oci"
version="$(basename "$archive" .oci.tar)"; version="${version#federator-}"
bundle="$(mktemp -d)"
trap 'rm -rf "$bundle"' EXIT
fail() { echo "image check FAILED: $*" >&2; exit 1; }

umoci unpack --image "$oci:$version" "$bundle/b" >/dev/null
config="$bundle/b/config.json"
python3 - "$config" <<'PY' || fail "runtime config (above)"
import json, sys
process = json.load(open(sys.argv[1]))["process"]
user, args = process["user"], process["args"]
problems = []
if (user.get("uid"), user.get("gid")) != (65532, 65532):
    problems.append(f"user is {user}, want uid/gid 65532")
if args[:2] != ["/usr/local/bin/federator", "controller"]:
    problems.append(f"args are {args}, want /usr/local/bin/federator controller")
for p in problems:
    print(p, file=sys.stderr)
sys.exit(1 if problems else 0)
PY

rootfs="$bundle/b/rootfs"
[[ "$(stat -c %u "$rootfs/usr/local/bin/federator")" == 0 ]] || fail "the binary is not owned by root (the non-root user could replace it)"
for absent in bin/sh bin/bash usr/bin/openssl; do
  [[ ! -e "$rootfs/$absent" ]] || fail "/$absent is in the image"
done
if find "$rootfs" -name 'libssl*' | grep -q .; then fail "libssl is in the image"; fi
[[ -s "$rootfs/etc/ssl/certs/ca-certificates.crt" ]] || fail "no CA bundle"

got="$(chroot --userspec=65532:65532 "$rootfs" /usr/local/bin/federator --version)" \
  || fail "federator --version did not run as 65532 in the image's rootfs"
[[ "$got" == "federator $version" ]] || fail "federator --version printed '$got', want 'federator $version'"
chroot --userspec=65532:65532 "$rootfs" /usr/local/bin/federator controller --help >/dev/null \
  || fail "federator controller --help did not run in the image"

# `ctr image import --base-name localhost/federator` names the image from this tag.
grep -q "\"org.opencontainers.image.ref.name\":\"$version\"" "$oci/index.json" || fail "index.json has no ref name $version"
echo "image check: ok ($archive: runs as 65532, federator $version, no shell, no OpenSSL)"
