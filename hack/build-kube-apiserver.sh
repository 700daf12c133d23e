#!/usr/bin/env bash
# Builds kube-apiserver from the published k8s.io/kubernetes Go module and caches the binary by
# version under ~/.cache/federator/<version>/. Prints the binary's path on stdout.
#
# Why a wrapper module: k8s.io/kubernetes replaces its staging modules (k8s.io/api, ...) with
# local paths in its own go.mod, and Go ignores a dependency's replace directives, so
# `go install k8s.io/kubernetes/cmd/kube-apiserver@v1.x` cannot resolve. Our wrapper pins every
# staging module to the matching v0.x release instead.
set -euo pipefail

VERSION="${KUBE_VERSION:-v1.34.4}"
CACHE_ROOT="${FEDERATOR_CACHE:-$HOME/.cache/federator}"
OUT_DIR="$CACHE_ROOT/$VERSION"
BIN="$OUT_DIR/kube-apiserver"

if [[ -x "$BIN" ]] && "$BIN" --version 2>/dev/null | grep -q "$VERSION"; then
  echo "$BIN"
  exit 0
fi

command -v go >/dev/null || { echo "error: go is required to build kube-apiserver $VERSION (or set KUBEBUILDER_ASSETS / KUBE_APISERVER)" >&2; exit 1; }

minor="${VERSION#v1.}"; minor="${minor%%.*}"
staging_version="v0.${VERSION#v1.}"
staging=(api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider
  cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api
  cri-client csi-translation-lib dynamic-resource-allocation endpointslice externaljwt kms
  kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics
  mount-utils pod-security-admission sample-apiserver sample-cli-plugin sample-controller)

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
{
  echo "module federator.dev/kube-apiserver-build"
  echo
  echo "go 1.24"
  echo
  echo "require k8s.io/kubernetes $VERSION"
  echo
  for m in "${staging[@]}"; do echo "replace k8s.io/$m => k8s.io/$m $staging_version"; done
} >"$work/go.mod"
cat >"$work/main.go" <<'GO'
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
GO

echo "building kube-apiserver $VERSION (cold build takes several minutes on 2 cores)..." >&2
cd "$work"
export GOFLAGS="-mod=mod"
go mod tidy >&2
pkg=k8s.io/component-base/version
mkdir -p "$OUT_DIR"
CGO_ENABLED=0 go build -trimpath -o "$BIN.tmp" \
  -ldflags "-s -w -X $pkg.gitVersion=$VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean" . >&2
mv "$BIN.tmp" "$BIN"
echo "$BIN"
