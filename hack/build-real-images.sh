#!/usr/bin/env bash
# Assembles the real-CNPG lab tier's two OCI images without a registry, cached under
# ~/.cache/federator/images/, and prints one line per image: `<reference> <oci-archive>`.
#
#   localhost/postgresql:<15.x>                     PostgreSQL 15 + barman-cli-cloud from Debian,
#                                                   user postgres = uid/gid 26 (what CNPG runs as)
#   ghcr.io/cloudnative-pg/cloudnative-pg:<cnpg>    the operator, laid out as upstream's image
#   localhost/pause:lab-r<recipe>                   the pod sandbox (containerd's sandbox_image)
#
# Import into a containerd with
#   ctr -n k8s.io image import --base-name <reference without :tag> <oci-archive>
# (the archive's ref name is the tag). CNPG reads PostgreSQL's major version from the image
# tag, so the tag is Debian's upstream version of postgresql-15.
#
#   build-real-images.sh [postgresql] [pause] [operator]    (default: all three)
set -euo pipefail
cd "$(dirname "$0")/.."

SUITE="${FEDERATOR_IMAGE_SUITE:-bookworm}"
PG_MAJOR=15
# Bump when a package list or the files written below change: it names the cache entries.
RECIPE=1
CACHE_ROOT="${FEDERATOR_CACHE:-$HOME/.cache/federator}"
OUT="$CACHE_ROOT/images"

for tool in mmdebstrap umoci cc; do
  command -v "$tool" >/dev/null || { echo "error: $tool is required (make deps installs it)" >&2; exit 1; }
done
[[ $(id -u) -eq 0 ]] || { echo "error: building the images needs root (files owned by uid 26)" >&2; exit 1; }
wanted=" ${*:-postgresql pause operator} "
want() { [[ "$wanted" == *" $1 "* ]]; }
mkdir -p "$OUT"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# pack ROOTFS TAG ARCHIVE UMOCI-CONFIG-ARGS...: one layer, written atomically.
pack() {
  local rootfs="$1" tag="$2" archive="$3"
  shift 3
  local oci="$work/oci"
  rm -rf "$oci"
  umoci init --layout "$oci"
  umoci new --image "$oci:$tag"
  umoci insert --image "$oci:$tag" "$rootfs" /
  umoci config --image "$oci:$tag" --author federator-lab "$@"
  umoci gc --layout "$oci"
  tar -C "$oci" -cf "$archive.tmp" .
  mv "$archive.tmp" "$archive"
}

# PostgreSQL. The postgres account is created before the packages are installed, so every file
# they own belongs to 26:26 (postgresql-common's postinst keeps an existing account). The "main"
# cluster its postinst creates is removed: CNPG runs initdb itself on the volume.
if want postgresql; then
pg_archive="$OUT/postgresql-$PG_MAJOR-$SUITE-r$RECIPE.oci.tar"
pg_tag_file="$pg_archive.tag"
if [[ ! -s "$pg_archive" || ! -s "$pg_tag_file" ]]; then
  echo "building the PostgreSQL $PG_MAJOR image ($SUITE, with barman-cli-cloud; about 3 minutes)..." >&2
  rootfs="$work/pg"
  mmdebstrap --quiet --variant=minbase \
    --include="postgresql-$PG_MAJOR,barman-cli-cloud,ca-certificates" \
    --aptopt='Acquire::Check-Valid-Until "false"' \
    --essential-hook='echo "postgres:x:26:26:PostgreSQL administrator:/var/lib/postgresql:/bin/bash" >>"$1/etc/passwd"; echo "postgres:x:26:" >>"$1/etc/group"; if [ -f "$1/etc/shadow" ]; then echo "postgres:*:19000:0:99999:7:::" >>"$1/etc/shadow"; fi; if [ -f "$1/etc/gshadow" ]; then echo "postgres:!::" >>"$1/etc/gshadow"; fi' \
    --customize-hook="chroot \"\$1\" dpkg-query -W -f='\${Version}' postgresql-$PG_MAJOR >$work/pg-version" \
    --customize-hook="rm -rf \"\$1\"/var/lib/postgresql/$PG_MAJOR \"\$1\"/etc/postgresql/$PG_MAJOR \"\$1\"/usr/share/doc \"\$1\"/usr/share/man \"\$1\"/usr/share/locale \"\$1\"/var/cache/apt/* \"\$1\"/var/log/*.log" \
    --customize-hook='mkdir -p "$1/var/lib/postgresql" "$1/var/run/postgresql" && chown 26:26 "$1/var/lib/postgresql" "$1/var/run/postgresql"' \
    "$SUITE" "$rootfs" \
    "deb http://deb.debian.org/debian $SUITE main" \
    "deb http://deb.debian.org/debian $SUITE-updates main" \
    "deb http://deb.debian.org/debian-security $SUITE-security main" >&2
  owner="$(stat -c %u:%g "$rootfs/usr/lib/postgresql/$PG_MAJOR/bin/postgres" "$rootfs/var/lib/postgresql" | tr '\n' ' ')"
  [[ "$(grep '^postgres:' "$rootfs/etc/passwd" | cut -d: -f3,4)" == 26:26 ]] \
    || { echo "error: postgres is not uid/gid 26 in the image" >&2; exit 1; }
  [[ "$owner" == "0:0 26:26 " ]] || { echo "error: unexpected owners in the image: $owner" >&2; exit 1; }
  version="$(cat "$work/pg-version")"   # e.g. 15.20-0+deb12u1
  tag="${version%%-*}"
  [[ "$tag" =~ ^$PG_MAJOR\.[0-9]+$ ]] || { echo "error: cannot derive a tag from postgresql-$PG_MAJOR $version" >&2; exit 1; }
  pack "$rootfs" "$tag" "$pg_archive" \
    --config.user 26:26 --config.workingdir / \
    --config.env "PATH=/usr/lib/postgresql/$PG_MAJOR/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --config.env LANG=C.UTF-8 \
    --config.label "org.opencontainers.image.version=$version"
  echo "$tag" >"$pg_tag_file"
fi
echo "localhost/postgresql:$(cat "$pg_tag_file") $pg_archive"
fi

# The pod sandbox: holds a pod's namespaces and reaps orphans, nothing else (what upstream's
# registry.k8s.io/pause does; there is no registry to pull it from).
if want pause; then
pause_archive="$OUT/pause-r$RECIPE.oci.tar"
if [[ ! -s "$pause_archive" ]]; then
  echo "building the pause image..." >&2
  cat >"$work/pause.c" <<'C'
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) { (void)sig; _exit(0); }
static void reap(int sig) {
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(void) {
  struct sigaction term = {.sa_handler = stop}, child = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP};
  sigaction(SIGINT, &term, NULL);
  sigaction(SIGTERM, &term, NULL);
  sigaction(SIGCHLD, &child, NULL);
  for (;;) pause();
}
C
  rootfs="$work/pause"
  mkdir -p "$rootfs"
  cc -static -Os -s -o "$rootfs/pause" "$work/pause.c"
  pack "$rootfs" "lab-r$RECIPE" "$pause_archive" --config.user 65535:65535 --config.entrypoint /pause
fi
echo "localhost/pause:lab-r$RECIPE $pause_archive"
fi

# The operator: a static binary. The bootstrap init container of every instance pod runs it as
# `/manager bootstrap` and copies /operator/manager_<arch> into the pod, so upstream's layout
# is kept (with another layout it loops on "invalid architecture").
if want operator; then
CNPG_DIR="$(bash hack/build-cnpg.sh)"
CNPG_VERSION="${CNPG_DIR##*/cnpg-}"
op_archive="$OUT/cnpg-operator-$CNPG_VERSION-r$RECIPE.oci.tar"
if [[ ! -s "$op_archive" ]]; then
  echo "building the CloudNativePG $CNPG_VERSION operator image..." >&2
  rootfs="$work/operator"
  install -D -m 0755 "$CNPG_DIR/manager" "$rootfs/operator/manager_amd64"
  ln -s operator/manager_amd64 "$rootfs/manager"
  install -d -m 1777 "$rootfs/tmp"
  pack "$rootfs" "$CNPG_VERSION" "$op_archive" \
    --config.user 10001:10001 --config.workingdir / --config.entrypoint /manager \
    --config.label "org.opencontainers.image.version=$CNPG_VERSION"
fi
echo "ghcr.io/cloudnative-pg/cloudnative-pg:$CNPG_VERSION $op_archive"
fi
