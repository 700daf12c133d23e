#!/usr/bin/env bash
# Builds Kubernetes binaries from the published k8s.io/kubernetes Go module and caches them by
# version under ~/.cache/federator/<version>/. Prints the binary's path on stdout.
#
#   build-kube.sh [apiserver]  kube-apiserver (the lab's four control planes)
#   build-kube.sh node         kube-node: kubelet, kube-controller-manager, kube-scheduler and
#                              kube-proxy in one multi-call binary (the real-CNPG tier's nodes),
#                              with a link per command next to it; `kube-node kubelet ...` works too
#
# Why a wrapper module: k8s.io/kubernetes replaces its staging modules (k8s.io/api, ...) with
# local paths in its own go.mod, and Go ignores a dependency's replace directives, so
# `go install k8s.io/kubernetes/cmd/kube-apiserver@v1.x` cannot resolve. Our wrapper pins every
# staging module to the matching v0.x release instead.
# Why one binary for the node: the four share most of their packages, and linking them once
# takes a quarter of the time and disk of four links.
set -euo pipefail

VERSION="${KUBE_VERSION:-v1.34.4}"
CACHE_ROOT="${FEDERATOR_CACHE:-$HOME/.cache/federator}"
OUT_DIR="$CACHE_ROOT/$VERSION"
TARGET="${1:-apiserver}"

case "$TARGET" in
  apiserver) BIN="$OUT_DIR/kube-apiserver"; probe=("$BIN") ;;
  node) BIN="$OUT_DIR/kube-node"; probe=("$BIN" kubelet) ;;
  *) echo "error: unknown target '$TARGET' (expected apiserver or node)" >&2; exit 2 ;;
esac
node_commands=(kubelet kube-controller-manager kube-scheduler kube-proxy)

link_node_commands() {
  local c
  for c in "${node_commands[@]}"; do ln -sfn kube-node "$OUT_DIR/$c"; done
}

if [[ -x "$BIN" ]] && "${probe[@]}" --version 2>/dev/null | grep -q "$VERSION"; then
  [[ "$TARGET" == node ]] && link_node_commands
  echo "$BIN"
  exit 0
fi

command -v go >/dev/null || { echo "error: go is required to build kube-$TARGET $VERSION (or set KUBEBUILDER_ASSETS / KUBE_APISERVER)" >&2; exit 1; }

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
  echo "module federator.dev/kube-$TARGET-build"
  echo
  echo "go 1.24"
  echo
  echo "require k8s.io/kubernetes $VERSION"
  echo
  for m in "${staging[@]}"; do echo "replace k8s.io/$m => k8s.io/$m $staging_version"; done
} >"$work/go.mod"

if [[ "$TARGET" == apiserver ]]; then
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
else
  # The blank imports are the ones upstream's own main packages make (log formats, metrics).
  cat >"$work/main.go" <<'GO'
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	_ "time/tzdata"

	"github.com/spf13/cobra"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

func command(name string) *cobra.Command {
	switch name {
	case "kubelet":
		return kubelet.NewKubeletCommand(context.Background())
	case "kube-controller-manager":
		return controllermanager.NewControllerManagerCommand()
	case "kube-scheduler":
		return scheduler.NewSchedulerCommand()
	case "kube-proxy":
		return proxy.NewProxyCommand()
	}
	return nil
}

// Called through a link named after the command, or as `kube-node <command> [flags]`.
func main() {
	name := filepath.Base(os.Args[0])
	if cmd := command(name); cmd != nil {
		os.Exit(cli.Run(cmd))
	}
	if len(os.Args) > 1 {
		if cmd := command(os.Args[1]); cmd != nil {
			os.Args = os.Args[1:]
			os.Exit(cli.Run(cmd))
		}
	}
	fmt.Fprintln(os.Stderr, "usage: kube-node kubelet|kube-controller-manager|kube-scheduler|kube-proxy [flags]")
	os.Exit(2)
}
GO
fi

echo "building kube-$TARGET $VERSION (cold build takes several minutes on 2 cores)..." >&2
cd "$work"
export GOFLAGS="-mod=mod"
go mod tidy >&2
pkg=k8s.io/component-base/version
mkdir -p "$OUT_DIR"
CGO_ENABLED=0 go build -trimpath -o "$BIN.tmp" \
  -ldflags "-s -w -X $pkg.gitVersion=$VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean" . >&2
mv "$BIN.tmp" "$BIN"
[[ "$TARGET" == node ]] && link_node_commands
echo "$BIN"
