//! Test fixtures of drills and topologies, as the hub would return them (JSON).

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use topology::DistributedTopology;
use topology::drill_api::DisasterRecoveryDrill;

pub const T0: &str = "2026-11-23T09:00:00Z";

pub fn at(secs: i64) -> Timestamp {
    T0.parse::<Timestamp>().unwrap() + SignedDuration::from_secs(secs)
}

pub fn micro(secs: i64) -> String {
    at(secs).to_string()
}

pub fn drill(return_: bool, status: Value) -> DisasterRecoveryDrill {
    serde_json::from_value(json!({
        "apiVersion": "federator.dev/v1alpha1",
        "kind": "DisasterRecoveryDrill",
        "metadata": {"name": "d", "namespace": "ns", "generation": 1, "resourceVersion": "1"},
        "spec": {"topology": "pg", "to": "pg-b", "return": return_, "timeout": "5m"},
        "status": status,
    }))
    .unwrap()
}

pub fn step(name: &str, started: i64, outcome: &str) -> Value {
    let mut s = json!({"name": name, "startedAt": micro(started), "outcome": outcome});
    if outcome != "Running" {
        s["finishedAt"] = json!(micro(started + 1));
    }
    s
}

/// A run at `steps` (the last one running), canary written, primary pg-a.
pub fn running(steps: &[&str], switchovers: Value) -> Value {
    let n = steps.len();
    let steps: Vec<Value> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            step(
                s,
                i as i64,
                if i + 1 == n { "Running" } else { "Succeeded" },
            )
        })
        .collect();
    json!({
        "phase": "Running", "runId": "d-1", "from": "pg-a", "to": "pg-b",
        "steps": steps,
        "canary": {"value": "d-1-canary", "writtenOn": "pg-a", "writtenAt": micro(1)},
        "switchovers": switchovers,
    })
}

/// The topology `pg` at `generation` with `primary` in spec and observed, Ready, and the
/// given operation and history.
pub fn topo(
    generation: i64,
    primary: &str,
    operation: Value,
    history: Value,
) -> DistributedTopology {
    serde_json::from_value(json!({
        "apiVersion": "federator.dev/v1alpha1",
        "kind": "DistributedTopology",
        "metadata": {"name": "pg", "namespace": "ns", "generation": generation,
                     "resourceVersion": format!("{generation}00")},
        "spec": {
            "members": [
                {"name": "pg-a", "cluster": "eu-central", "namespace": "ns"},
                {"name": "pg-b", "cluster": "eu-western", "namespace": "ns"}
            ],
            "shape": {"star": {}},
            "primary": primary
        },
        "status": {
            "observedPrimary": primary,
            "conditions": [{"type": "Ready", "status": "True", "reason": "AsDesired", "message": "m",
                "observedGeneration": generation, "lastTransitionTime": T0}],
            "operation": operation,
            "history": history,
        },
    }))
    .unwrap()
}

pub fn op(generation: i64, step: &str, extra: Value) -> Value {
    let mut op = json!({
        "id": format!("{generation}-pg-a-to-pg-b"), "kind": "switchover", "from": "pg-a",
        "to": "pg-b", "step": step, "startedAt": "2026-11-23T09:00:05.000000Z"
    });
    for (k, v) in extra.as_object().unwrap() {
        op[k] = v.clone();
    }
    op
}
