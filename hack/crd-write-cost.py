#!/usr/bin/env python3
"""What a status write costs a real kube-apiserver, by how the status holds a list of step records.

Why `status.history[].stepTimings` is one line of text (docs/benchmarks.md, "Session 4"): the
step log is written before every side effect, and the API server's CPU per write grows with the
objects a status holds, not its bytes. This creates one scratch CRD per representation in the
group `scratch.federator.dev` on a lab's hub, PUTs the same ten history entries N times through
/status, and prints the hub apiserver's CPU seconds per write (from /proc) and the client's p50.
The first row is the baseline: a status without history. It removes its CRDs when done.

    federator-lab up --dir .lab    # or the e2e lab: --lab target/e2e-lab
    python3 hack/crd-write-cost.py --lab .lab --writes 300
"""

import argparse
import json
import os
import ssl
import time
import urllib.error
import urllib.request

CRDS_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
STEPS = ["Validate", "Demote", "AwaitDemotionStarted", "AwaitToken", "CheckToken", "Promote",
         "AwaitPromotion", "ClearToken", "Done"]
GROUP = "scratch.federator.dev"


def ts(i):
    return "2026-12-04T15:%02d:%02d.123456Z" % (i // 60 % 60, i % 60)


# name -> (schema of one history entry's steps, the steps' value for entry i)
VARIANTS = {
    "no history (baseline)": (None, None),
    "step objects, date-time": (
        {"type": "array", "items": {"type": "object", "properties": {
            "step": {"type": "string", "enum": STEPS}, "member": {"type": "string"},
            "startedAt": {"type": "string", "format": "date-time"},
            "finishedAt": {"type": "string", "format": "date-time"}}}},
        lambda i: [{"step": s, "member": "pg-b", "startedAt": ts(i), "finishedAt": ts(i)}
                   for s in STEPS]),
    "step objects, integer ms": (
        {"type": "array", "items": {"type": "object", "properties": {
            "step": {"type": "string", "enum": STEPS}, "member": {"type": "string"},
            "tookMs": {"type": "integer"}}}},
        lambda i: [{"step": s, "member": "pg-b", "tookMs": 41} for s in STEPS]),
    "list of strings": (
        {"type": "array", "items": {"type": "string"}},
        lambda i: ["%s pg-b 41.0ms" % s for s in STEPS]),
    "one string (stepTimings)": (
        {"type": "string"},
        lambda i: ", ".join("%s pg-b 41.0ms" % s for s in STEPS)),
}


class Hub:
    def __init__(self, lab):
        config = open(os.path.join(lab, "hub.kubeconfig")).read().splitlines()
        field = lambda key: next(l.split(":", 1)[1].strip() for l in config if l.strip().startswith(key + ":"))
        self.server = field("server")
        self.token = field("token")
        # The lab CA (the kubeconfig holds it too, as folded YAML this script does not parse).
        self.tls = ssl.create_default_context(cafile=os.path.join(lab, "pki", "ca.crt"))
        self.pid = next(p for p in os.listdir("/proc") if p.isdigit() and _cmdline(p).find(
            b"--etcd-prefix=/hub") >= 0 and b"kube-apiserver" in _cmdline(p))

    def call(self, method, path, body=None):
        request = urllib.request.Request(
            self.server + path, method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": "Bearer " + self.token, "Content-Type": "application/json"})
        with urllib.request.urlopen(request, context=self.tls) as response:
            return json.loads(response.read())

    def cpu_seconds(self):
        fields = open(f"/proc/{self.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cmdline(pid):
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read()
    except OSError:
        return b""


def crd(index, steps_schema):
    kind = "CostProbe%d" % index
    entry = {"type": "object", "properties": {
        "id": {"type": "string"}, "from": {"type": "string"}, "to": {"type": "string"},
        "startedAt": {"type": "string", "format": "date-time"}, "outcome": {"type": "string"}}}
    if steps_schema is not None:
        entry["properties"]["steps"] = steps_schema
    schema = {"type": "object", "properties": {
        "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        "status": {"type": "object", "properties": {
            "n": {"type": "integer"}, "history": {"type": "array", "items": entry}}}}}
    return kind, {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": kind.lower() + "s." + GROUP},
        "spec": {"group": GROUP, "scope": "Namespaced",
                 "names": {"kind": kind, "plural": kind.lower() + "s", "singular": kind.lower()},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "subresources": {"status": {}},
                               "schema": {"openAPIV3Schema": schema}}]}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", default=".lab")
    parser.add_argument("--writes", type=int, default=300)
    args = parser.parse_args()
    hub = Hub(args.lab)
    made = []
    try:
        for index, (name, (steps_schema, steps)) in enumerate(VARIANTS.items()):
            kind, definition = crd(index, steps_schema)
            hub.call("POST", CRDS_PATH, definition)
            made.append((name, kind, definition["metadata"]["name"], steps))
        deadline = time.monotonic() + 60
        for _, _, crd_name, _ in made:
            while not any(c["type"] == "Established" and c["status"] == "True" for c in
                          hub.call("GET", f"{CRDS_PATH}/{crd_name}").get("status", {}).get("conditions", [])):
                if time.monotonic() > deadline:
                    raise SystemExit(f"{crd_name} not Established within 60 s")
                time.sleep(0.2)
        print("| status holds | stored bytes | hub CPU ms / write | ratio | client p50 ms |")
        print("|---|--:|--:|--:|--:|")
        baseline = None
        for name, kind, crd_name, steps in made:
            plural = kind.lower() + "s"
            base = f"/apis/{GROUP}/v1/namespaces/default/{plural}"
            obj = hub.call("POST", base, {"apiVersion": f"{GROUP}/v1", "kind": kind,
                                          "metadata": {"name": "probe"}, "spec": {}})
            history = [] if steps is None else [
                {"id": "op-%d" % i, "from": "pg-a", "to": "pg-b", "startedAt": ts(i),
                 "outcome": "Succeeded", "steps": steps(i)} for i in range(10)]
            latencies = []
            before = hub.cpu_seconds()
            for n in range(args.writes):
                obj["status"] = {"n": n, "history": history}
                started = time.perf_counter()
                obj = hub.call("PUT", f"{base}/probe/status", obj)
                latencies.append(time.perf_counter() - started)
            cpu_ms = 1000 * (hub.cpu_seconds() - before) / args.writes
            baseline = baseline or cpu_ms
            latencies.sort()
            print(f"| {name} | {len(json.dumps(obj))} | {cpu_ms:.1f} | {cpu_ms / baseline:.2f} | "
                  f"{1000 * latencies[len(latencies) // 2]:.1f} |")
    finally:
        for _, _, crd_name, _ in made:
            try:
                hub.call("DELETE", f"{CRDS_PATH}/{crd_name}")
            except urllib.error.HTTPError as e:
                print(f"could not delete {crd_name}: {e}")


if __name__ == "__main__":
    main()
