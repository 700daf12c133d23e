#!/usr/bin/env bash
# Builds the Federator image without a registry: the layout of the Dockerfile's final stage
# (glibc, libgcc, CA certificates, the `federator` binary, user 65532), assembled from Debian
# packages with mmdebstrap and packed as an OCI image with umoci.
#
#   hack/build-federator-image.sh [--binary PATH]      # default: target/release/federator (built if missing)
#
# Output (printed on stdout): target/image/federator-<version>.oci.tar, an OCI archive that
#   ctr -n k8s.io image import --base-name localhost/federator target/image/federator-<version>.oci.tar
# imports as localhost/federator:<version> (the chart's lab values use that name). The OCI
# layout itself stays in target/image/oci (tag <version>) for `umoci unpack`.
#
# The Debian part (the slow one: downloads) is cached by suite and recipe version under
# ~/.cache/federator/image-base-<suite>-<recipe>/; the binary layer is rebuilt every time.
set -euo pipefail
cd "$(dirname "$0")/.."

SUITE="${FEDERATOR_IMAGE_SUITE:-bookworm}"
# Bump when the package list or the files written below change: it names the cache.
RECIPE=3
PACKAGES=libc6,libgcc-s1,ca-certificates
CACHE_ROOT="${FEDERATOR_CACHE:-$HOME/.cache/federator}"
BASE="$CACHE_ROOT/image-base-$SUITE-r$RECIPE/rootfs.tar"
OUT_DIR="${FEDERATOR_IMAGE_DIR:-target/image}"
UID_GID=65532

binary=target/release/federator
while (($#)); do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    *) echo "usage: $0 [--binary PATH]" >&2; exit 2 ;;
  esac
done

for tool in mmdebstrap umoci; do
  command -v "$tool" >/dev/null || { echo "error: $tool is required (apt-get install mmdebstrap umoci; hack/install-deps.sh does)" >&2; exit 1; }
done
if [[ ! -x "$binary" && "$binary" == target/release/federator ]]; then
  echo "building the release binary..." >&2
  cargo build --release --locked -p federator --bin federator >&2
fi
[[ -x "$binary" ]] || { echo "error: no federator binary at $binary" >&2; exit 1; }
version="$("$binary" --version | awk '{print $2}')"
[[ -n "$version" ]] || { echo "error: $binary --version printed no version" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# 1. The base rootfs. mmdebstrap resolves and downloads the packages (dependencies included:
#    ca-certificates pulls openssl and debconf, which are only for its maintainer scripts), then
#    only the packages named here are unpacked, without maintainer scripts: the image has no
#    shell to run them, so the CA bundle and the users are written here instead.
if [[ ! -s "$BASE" ]]; then
  echo "building the base rootfs ($SUITE: $PACKAGES)..." >&2
  mmdebstrap --quiet --variant=extract --include="$PACKAGES" \
    --skip=download/empty --skip=cleanup/apt "$SUITE" "$work/debian" >&2
  rootfs="$work/base"
  mkdir -p "$rootfs"
  for package in ${PACKAGES//,/ }; do
    deb=("$work/debian/var/cache/apt/archives/${package}_"*.deb)
    [[ -f "${deb[0]}" ]] || { echo "error: mmdebstrap downloaded no $package" >&2; exit 1; }
    dpkg-deb -x "${deb[0]}" "$rootfs"
  done
  # What update-ca-certificates would generate: every Mozilla CA in one PEM bundle.
  mkdir -p "$rootfs/etc/ssl/certs"
  find "$rootfs/usr/share/ca-certificates/mozilla" -name '*.crt' -print0 | sort -z \
    | xargs -0 cat >"$rootfs/etc/ssl/certs/ca-certificates.crt"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%s:%s:nonroot:/home/nonroot:/sbin/nologin\n' "$UID_GID" "$UID_GID" >"$rootfs/etc/passwd"
  printf 'root:x:0:\nnonroot:x:%s:\n' "$UID_GID" >"$rootfs/etc/group"
  mkdir -p "$rootfs/home/nonroot" "$rootfs/tmp"
  chown "$UID_GID:$UID_GID" "$rootfs/home/nonroot"
  chmod 1777 "$rootfs/tmp"
  # Documentation, manuals and update-ca-certificates (a shell script) are not needed.
  rm -rf "$rootfs"/usr/share/{doc,man,info,lintian} "$rootfs"/usr/sbin
  mkdir -p "$(dirname "$BASE")"
  tar -C "$rootfs" --numeric-owner -cf "$BASE.tmp" .
  mv "$BASE.tmp" "$BASE"
fi

# 2. Base + binary, packed as one layer.
rootfs="$work/rootfs"
mkdir -p "$rootfs"
tar -C "$rootfs" --numeric-owner -xf "$BASE"
install -D -m 0755 "$binary" "$rootfs/usr/local/bin/federator"

mkdir -p "$OUT_DIR"
oci="$OUT_DIR/oci"
rm -rf "$oci"
umoci init --layout "$oci"
umoci new --image "$oci:$version"
umoci insert --image "$oci:$version" "$rootfs" /
umoci config --image "$oci:$version" \
  --config.user "$UID_GID:$UID_GID" \
  --config.entrypoint /usr/local/bin/federator \
  --config.cmd controller \
  --config.workingdir / \
  --config.env PATH=/usr/local/bin:/usr/bin:/bin \
  --config.env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  --config.exposedports 9464/tcp \
  --config.label org.opencontainers.image.title=federator \
  --config.label "org.opencontainers.image.version=$version" \
  --author federator
umoci gc --layout "$oci"

archive="$OUT_DIR/federator-$version.oci.tar"
tar -C "$oci" -cf "$archive.tmp" .
mv "$archive.tmp" "$archive"
echo "$archive"
