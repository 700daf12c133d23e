//! Condition types and reasons Federator writes on a `DistributedTopology`, in one place so the
//! controller, the CLI and the docs use the same words, and the one rule for writing them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// Condition types.
pub mod kind {
    /// The observed primary is the desired one, every member is reachable and ready.
    pub const READY: &str = "Ready";
    /// Static and live validation found no problem.
    pub const VALID: &str = "Valid";
    /// A switchover or failover is running (False when idle).
    pub const SWITCHOVER_IN_PROGRESS: &str = "SwitchoverInProgress";
    /// At least one member is unreachable or unhealthy.
    pub const DEGRADED: &str = "Degraded";
    /// `spec.automaticFailover` is set: True when armed (every rule holds and every member's
    /// agent renews), False with the field and the fix when failover stays manual.
    pub const AUTOMATIC_FAILOVER: &str = "AutomaticFailover";
    /// Automatic failover is armed and an agent's renewal got no answer within its bound from a
    /// voter's store (True, naming the store, the agent, the bound and the fix), or every store
    /// answered within it (False). Informational: nothing is moved or fenced because of it.
    pub const VOTER_STORE_SLOW: &str = "VoterStoreSlow";
}

/// Condition reasons (CamelCase, as metav1.Condition requires). Hold reasons double as
/// `status.operation.hold.reason`.
pub mod reason {
    pub const AS_DESIRED: &str = "AsDesired";
    pub const VALIDATION_PASSED: &str = "ValidationPassed";
    pub const VALIDATION_FAILED: &str = "ValidationFailed";
    pub const IDLE: &str = "Idle";
    pub const IN_PROGRESS: &str = "InProgress";
    pub const MEMBER_UNREACHABLE: &str = "MemberUnreachable";
    /// A member's credential may not read (list/watch) the Clusters of a member namespace: a
    /// permission to grant, not an outage (the message names member, namespace, verb and fix).
    pub const MEMBER_FORBIDDEN: &str = "MemberForbidden";
    /// The hub holds no usable credential for a member cluster (none names it, or the one that
    /// does is refused before any request: an auth plugin, a file reference, clear text…): a
    /// Secret to fix, not an outage (the message names the Secret, the field and the fix).
    pub const MEMBER_CREDENTIAL_REFUSED: &str = "MemberCredentialRefused";
    pub const MEMBER_NOT_READY: &str = "MemberNotReady";
    pub const ALL_MEMBERS_HEALTHY: &str = "AllMembersHealthy";
    pub const SUCCEEDED: &str = "Succeeded";
    pub const ROLLED_BACK: &str = "RolledBack";
    /// A hook before the demotion failed: the switchover ended `Aborted`, nothing demoted.
    pub const HOOK_FAILED: &str = "HookFailed";
    /// The old primary did not show `inProgress` nor a token before the deadline.
    pub const DEMOTION_NOT_STARTED: &str = "DemotionNotStarted";
    /// The demotion completed but its token is gone (CNPG #11074).
    pub const TOKEN_LOST: &str = "TokenLost";
    /// No token before the token deadline (CNPG #5754/#6317/#9591).
    pub const TOKEN_TIMEOUT: &str = "TokenTimeout";
    /// The token does not decode or does not belong to the target's system/timeline.
    pub const TOKEN_INVALID: &str = "TokenInvalid";
    /// The target did not report the promotion before the deadline.
    pub const PROMOTION_TIMEOUT: &str = "PromotionTimeout";
    /// Archive-only: the target did not replay the token's LSN before the deadline, so it was
    /// not promoted (once promoted, CNPG would restore from its own store and wait forever).
    pub const REPLAY_TIMEOUT: &str = "ReplayTimeout";
    /// A member's spec changed under the operation in a way that makes the next step unsafe.
    pub const UNEXPECTED_SPEC: &str = "UnexpectedSpec";
    /// A member the next step needs cannot be read.
    pub const MEMBER_UNREACHABLE_HOLD: &str = "StepMemberUnreachable";
    /// The rollback's own promotion failed too: only a human can decide now.
    pub const ROLLBACK_FAILED: &str = "RollbackFailed";

    /// `spec.automaticFailover` passes its rules (AutomaticFailover=True).
    pub const ARMED: &str = "Armed";
    /// `spec.automaticFailover` breaks a rule: failover stays manual (the message names the
    /// field and the fix).
    pub const POLICY_REFUSED: &str = "PolicyRefused";
    /// `spec.automaticFailover` was removed: failover is manual.
    pub const DISABLED: &str = "Disabled";
    /// A voter's store gave an agent's renewal no answer within its bound (VoterStoreSlow=True).
    pub const STORE_SLOWER_THAN_BOUND: &str = "StoreSlowerThanRenewalBound";
    /// Every voter's store answered every agent's last renewal within its bound
    /// (VoterStoreSlow=False).
    pub const STORES_WITHIN_BOUND: &str = "StoresWithinRenewalBound";

    /// Every reason an operation holds with (`status.operation.hold.reason`).
    pub const HOLDS: [&str; 10] = [
        DEMOTION_NOT_STARTED,
        TOKEN_LOST,
        TOKEN_TIMEOUT,
        TOKEN_INVALID,
        PROMOTION_TIMEOUT,
        REPLAY_TIMEOUT,
        UNEXPECTED_SPEC,
        MEMBER_UNREACHABLE_HOLD,
        ROLLBACK_FAILED,
        VALIDATION_FAILED,
    ];
}

/// Puts `next` into `conditions` in place of the condition of the same type, keeping that
/// condition's `lastTransitionTime` when its status did not change (metav1.Condition's rule:
/// the time is when the status last changed, so `kubectl get` and alerts can tell how long a
/// condition has held; a reason or message change alone is not a transition).
pub fn set(conditions: &mut Vec<Condition>, mut next: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == next.type_) {
        Some(old) => {
            if old.status == next.status {
                next.last_transition_time = old.last_transition_time.clone();
            }
            *old = next;
        }
        None => conditions.push(next),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
    }

    fn cond(type_: &str, status: &str, reason: &str, when: i64) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: format!("{reason} at {when}"),
            observed_generation: Some(when),
            last_transition_time: at(when),
        }
    }

    #[test]
    fn the_transition_time_moves_only_when_the_status_changes() {
        let mut conditions = vec![cond("Succeeded", "Unknown", "Running", 10)];
        // Progress under the same status: new reason, message and generation, same time.
        set(&mut conditions, cond("Succeeded", "Unknown", "Resumed", 20));
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].reason, "Resumed");
        assert_eq!(conditions[0].observed_generation, Some(20));
        assert_eq!(conditions[0].last_transition_time, at(10));
        // A change of status is a transition.
        set(&mut conditions, cond("Succeeded", "True", "Passed", 30));
        assert_eq!(conditions[0].last_transition_time, at(30));
    }

    #[test]
    fn other_types_are_kept_and_a_new_type_is_added() {
        let mut conditions = vec![cond("Ready", "True", "AsDesired", 10)];
        set(&mut conditions, cond("Succeeded", "False", "Failed", 20));
        assert_eq!(conditions.len(), 2);
        assert_eq!(conditions[0].reason, "AsDesired");
        assert_eq!(conditions[1].last_transition_time, at(20));
    }
}
