#!/usr/bin/env bash
# `make demo`: the lab up, the blog's ring of three applied (CNPG Clusters on the three regions,
# the DistributedTopology on the hub), the controller started in the background, one planned
# switchover pg16-eu-central -> pg16-eu-western, then the status table with its step timings.
# Everything stays up for exploring; `make lab-down` stops it all.
set -euo pipefail
cd "$(dirname "$0")/.."

LAB_DIR="${LAB_DIR:-.lab}"
FEDERATOR="${FEDERATOR:-target/debug/federator}"
FEDERATOR_LAB="${FEDERATOR_LAB:-target/debug/federator-lab}"
MANIFEST="${DEMO_MANIFEST:-examples/ring-of-three.yaml}"
TARGET="${DEMO_TARGET:-pg16-eu-western}"

command -v kubectl >/dev/null || {
  echo "error: the demo applies its manifests with kubectl, which is not on PATH; install it (Debian: kubernetes-client) and rerun make demo" >&2
  exit 1
}

step() { printf '\n==> %s\n' "$*"; }

step "lab up ($LAB_DIR)"
"$FEDERATOR_LAB" up --dir "$LAB_DIR"

# Split the multi-document manifest: the topology goes to the hub, each Cluster to the region
# the topology names for it.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
awk -v dir="$work" 'BEGIN{n=0} /^---/{n++; next} {print > (dir "/doc-" n ".yaml")}' "$MANIFEST"

hub=(kubectl --kubeconfig "$LAB_DIR/hub.kubeconfig")
topo_name="$(awk '/^kind: DistributedTopology/{t=1} t && /^  name:/{print $2; exit}' "$MANIFEST")"
ns="$(awk '/^kind: DistributedTopology/{t=1} t && /^  namespace:/{print $2; exit}' "$MANIFEST")"
# A second `make demo` on a running lab must not re-apply the manifests: they name the original
# primary, and re-applying them over a switched topology would rewrite spec.replica behind the
# controller's back. The existing topology is used as it is.
if "${hub[@]}" get distributedtopology "$topo_name" -n "$ns" >/dev/null 2>&1; then
  step "the ring of three already exists on this lab: using it as it is"
else
  step "the ring of three: CNPG Clusters on the members"
  for doc in "$work"/doc-*.yaml; do
    kind="$(awk '/^kind:/{print $2; exit}' "$doc")"
    name="$(awk '/^  name:/{print $2; exit}' "$doc")"
    case "$kind" in
      DistributedTopology) cp "$doc" "$work/topology.yaml" ;;
      Cluster)
        region="$(awk -v m="$name" '$0 ~ "name: " m "," {for (i=1;i<=NF;i++) if ($i=="cluster:") {gsub(",","",$(i+1)); print $(i+1)}}' "$MANIFEST")"
        [[ -n "$region" ]] || { echo "error: no member of the topology names Cluster $name" >&2; exit 1; }
        kubectl --kubeconfig "$LAB_DIR/$region.kubeconfig" create -f "$doc" ;;
    esac
  done

  step "the DistributedTopology on the hub"
  "${hub[@]}" create namespace "$ns" --dry-run=client -o yaml | "${hub[@]}" apply -f -
  "${hub[@]}" create -f "$work/topology.yaml"
fi

step "federator controller (log: $LAB_DIR/logs/controller.log)"
pidfile="$LAB_DIR/controller.pid"
if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  echo "already running (pid $(cat "$pidfile"))"
else
  KUBECONFIG="$LAB_DIR/hub.kubeconfig" RUST_LOG="${RUST_LOG:-info}" \
    setsid "$FEDERATOR" controller --metrics-addr 127.0.0.1:9464 \
    >"$LAB_DIR/logs/controller.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  echo "started (pid $!), metrics on http://127.0.0.1:9464/metrics"
fi

step "waiting for the topology to be Ready (three PostgreSQL instances, the ring replicating)"
"${hub[@]}" wait --for=condition=Ready "distributedtopology/$topo_name" -n "$ns" --timeout=300s
KUBECONFIG="$LAB_DIR/hub.kubeconfig" "$FEDERATOR" status "$topo_name" -n "$ns"

current="$("${hub[@]}" get distributedtopology "$topo_name" -n "$ns" -o jsonpath='{.spec.primary}')"
if [[ "$current" == "$TARGET" ]]; then
  TARGET="$(awk '/ring:/{gsub(/[\[\],]/," "); print $2; exit}' "$MANIFEST")"
fi
step "planned switchover $current -> $TARGET"
KUBECONFIG="$LAB_DIR/hub.kubeconfig" "$FEDERATOR" switchover "$topo_name" -n "$ns" --to "$TARGET" --wait

step "status"
KUBECONFIG="$LAB_DIR/hub.kubeconfig" "$FEDERATOR" status "$topo_name" -n "$ns"

cat <<TXT

The lab, the emulators and the controller keep running. Try:
  export KUBECONFIG=$PWD/$LAB_DIR/lab.kubeconfig     # contexts: hub, eu-central, eu-western, eu-south
  kubectl --context hub -n $ns get distributedtopologies
  kubectl --context eu-western -n databases get clusters
  KUBECONFIG=$LAB_DIR/hub.kubeconfig $FEDERATOR switchover $topo_name -n $ns --to pg16-eu-south --wait
  psql "\$($FEDERATOR_LAB dsn eu-western databases/pg16-eu-western --dir $LAB_DIR)" -c 'select pg_is_in_recovery()'
  make lab-down
TXT
