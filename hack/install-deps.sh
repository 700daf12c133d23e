#!/usr/bin/env bash
# Installs what building, the lab and the tests need, skipping whatever is already there, so
# it is a quick no-op on a prepared machine. Used by `make demo`, `make test` and .ci/run.
# Debian/Ubuntu: etcd-server (the lab's etcd), postgresql-15 (the CNPG emulator's databases),
# make and a C compiler (ring), mmdebstrap and umoci (the image). helm is built from its Go
# module (hack/install-helm.sh). kubectl is optional: the lab and the tests use kube-rs.
#
# `install-deps.sh --real` (`make deps-real`) also prepares the real-CNPG lab tier
# (docs/lab-real.md): containerd, runc, the CNI plugins and iptables, then builds the node
# binaries, CoreDNS, the CNPG operator and the images (all cached by version).
set -euo pipefail
real=false
case "${1:-}" in
  --real) real=true ;;
  "") ;;
  *) echo "usage: $0 [--real]" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."

sudo_() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo -n "$@"; fi; }

packages=()
command -v etcd >/dev/null || packages+=(etcd-server)
command -v make >/dev/null || packages+=(make)
command -v cc >/dev/null || packages+=(gcc libc6-dev)
dpkg -s postgresql-15 >/dev/null 2>&1 || packages+=(postgresql-15)
dpkg -s postgresql-client-15 >/dev/null 2>&1 || packages+=(postgresql-client-15)
# The image built without a registry (hack/build-federator-image.sh).
command -v mmdebstrap >/dev/null || packages+=(mmdebstrap)
command -v umoci >/dev/null || packages+=(umoci)
if $real; then
  for package in containerd runc containernetworking-plugins iptables; do
    dpkg -s "$package" >/dev/null 2>&1 || packages+=("$package")
  done
fi
if ((${#packages[@]})); then
  echo "installing ${packages[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  sudo_ apt-get update -q
  sudo_ apt-get install -y -q --no-install-recommends "${packages[@]}"
fi

command -v cargo >/dev/null || { echo "error: cargo is required (install Rust with rustup)" >&2; exit 1; }
if command -v rustup >/dev/null; then
  for component in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
  done
fi

# kube-apiserver: honour KUBEBUILDER_ASSETS / KUBE_APISERVER, else build once and cache.
if [[ -z "${KUBEBUILDER_ASSETS:-}" && -z "${KUBE_APISERVER:-}" ]]; then
  command -v go >/dev/null || { echo "error: Go is required to build kube-apiserver (or set KUBE_APISERVER)" >&2; exit 1; }
  bash hack/build-kube.sh apiserver >/dev/null
fi

# helm, for the chart's checks: built once from its Go module and cached by version.
bash hack/install-helm.sh >/dev/null

# cargo-deny (make deny): built once from crates.io and cached by version. The RustSec advisory
# database is never fetched here: this project's machines reach only the package registries, and
# the lab sends no traffic anywhere else. `make deny` uses a copy on disk when one is provided
# (FEDERATOR_ADVISORY_DBS) and says plainly when advisories were not checked.
bash hack/install-cargo-deny.sh >/dev/null

if $real; then
  bash hack/build-kube.sh node >/dev/null
  bash hack/build-coredns.sh >/dev/null
  bash hack/build-real-images.sh >/dev/null   # builds the CNPG operator first (hack/build-cnpg.sh)
  bash hack/install-moto.sh >/dev/null        # the S3 endpoint of the WAL-archive channel (PyPI)
fi
