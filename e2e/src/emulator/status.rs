//! Status bookkeeping, pure: conditions with CNPG's types, reasons and messages (contract §2),
//! and the JSON merge patch that turns the status we saw into the one we want.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde_json::{Map, Value};
use topology::cnpg::{ClusterStatus, condition, phase};

/// Condition reasons and messages CNPG writes (contract §2).
pub mod text {
    pub const CLUSTER_IS_READY: &str = "ClusterIsReady";
    pub const CLUSTER_IS_READY_MSG: &str = "Cluster is Ready";
    pub const CLUSTER_IS_NOT_READY: &str = "ClusterIsNotReady";
    pub const CLUSTER_IS_NOT_READY_MSG: &str = "Cluster Is Not Ready";
    pub const REPLICA_ENABLED_SET_TRUE: &str = "ReplicaEnabledSetTrue";
    pub const SWITCH_STARTING_MSG: &str = "Starting the Replica cluster transition";
    pub const SWITCH_COMPLETED_MSG: &str = "Completed the Replica cluster transition";
    pub const AFTER_CREATION: &str = "ReplicaClusterAfterCreation";
    pub const TRANSITION_COMPLETED: &str = "TransitionCompleted";
    pub const TRANSITION_COMPLETED_MSG: &str =
        "Instance Manager has completed the DesignatedPrimary transition";
    pub const CONTINUOUS_ARCHIVING: &str = "ContinuousArchiving";
    pub const CONTINUOUS_ARCHIVING_SUCCESS: &str = "ContinuousArchivingSuccess";
    pub const CONTINUOUS_ARCHIVING_FAILING: &str = "ContinuousArchivingFailing";
    pub const INITIALIZED: &str = "Initialized";
    pub const BOOTSTRAP_COMPLETED: &str = "BootstrapCompleted";
    pub const BOOTSTRAP_PENDING: &str = "BootstrapPending";
    pub const UNIQUE: &str = "Unique";
    pub const NOT_FOUND: &str = "NotFound";
}

pub fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// Sets a condition, keeping `lastTransitionTime` unless the status flips (like
/// `meta.SetStatusCondition`).
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
) {
    let status = if status { "True" } else { "False" };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => {
            if existing.status != status {
                existing.status = status.to_owned();
                existing.last_transition_time = now();
            }
            existing.reason = reason.to_owned();
            existing.message = message.to_owned();
        }
        None => conditions.push(Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message: message.to_owned(),
            last_transition_time: now(),
            observed_generation: None,
        }),
    }
}

pub fn remove_condition(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
}

pub fn condition_is(status: &ClusterStatus, type_: &str, value: bool) -> bool {
    let want = if value { "True" } else { "False" };
    status
        .conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == want)
}

/// An operator phase change: the phase, its reason and the `Ready` condition move together
/// (`pkg/resources/status/transactions.go`).
pub fn set_operator_phase(status: &mut ClusterStatus, new_phase: &str, reason: &str) {
    status.phase = Some(new_phase.to_owned());
    status.phase_reason = (!reason.is_empty()).then(|| reason.to_owned());
    let healthy = new_phase == phase::HEALTHY;
    let (why, message) = if healthy {
        (text::CLUSTER_IS_READY, text::CLUSTER_IS_READY_MSG)
    } else {
        (text::CLUSTER_IS_NOT_READY, text::CLUSTER_IS_NOT_READY_MSG)
    };
    set_condition(
        &mut status.conditions,
        condition::READY,
        healthy,
        why,
        message,
    );
}

/// A phase the instance manager patches directly (promotion wait, unrecoverable): `Ready` is
/// left alone.
pub fn set_instance_phase(status: &mut ClusterStatus, new_phase: &str, reason: &str) {
    status.phase = Some(new_phase.to_owned());
    status.phase_reason = (!reason.is_empty()).then(|| reason.to_owned());
}

/// RFC 7386 merge patch turning `old` into `new`: changed keys, `null` for removed ones,
/// recursion into objects (so `switchReplicaClusterStatus: {}` really drops `inProgress`).
/// Arrays (conditions) are atomic, as the CRD declares them.
pub fn merge_diff(old: &Value, new: &Value) -> Option<Value> {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut patch = Map::new();
            for (key, value) in n {
                match o.get(key) {
                    Some(previous) => {
                        if let Some(inner) = merge_diff(previous, value) {
                            patch.insert(key.clone(), inner);
                        }
                    }
                    None => {
                        patch.insert(key.clone(), value.clone());
                    }
                }
            }
            for key in o.keys().filter(|k| !n.contains_key(*k)) {
                patch.insert(key.clone(), Value::Null);
            }
            (!patch.is_empty()).then_some(Value::Object(patch))
        }
        _ if old == new => None,
        _ => Some(new.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_diff_nulls_removed_keys_recursively() {
        let old = json!({"phase": "a", "switchReplicaClusterStatus": {"inProgress": true}, "demotionToken": "t"});
        let new = json!({"phase": "a", "switchReplicaClusterStatus": {}});
        assert_eq!(
            merge_diff(&old, &new),
            Some(
                json!({"switchReplicaClusterStatus": {"inProgress": null}, "demotionToken": null})
            )
        );
        assert_eq!(merge_diff(&new, &new), None);
    }

    #[test]
    fn ready_follows_operator_phases_only() {
        let mut status = ClusterStatus::default();
        set_operator_phase(&mut status, phase::HEALTHY, "");
        assert!(condition_is(&status, condition::READY, true));
        let since = status.conditions[0].last_transition_time.clone();
        set_operator_phase(&mut status, phase::HEALTHY, "");
        assert_eq!(status.conditions[0].last_transition_time, since);
        set_instance_phase(&mut status, phase::UNRECOVERABLE, "x");
        assert!(condition_is(&status, condition::READY, true));
        set_operator_phase(&mut status, phase::PROMOTING, "y");
        assert!(condition_is(&status, condition::READY, false));
        assert_eq!(status.phase_reason.as_deref(), Some("y"));
    }
}
