//! What the evaluator decides, and why a rotation did not start. The `reason()` strings are
//! stable: they are Kubernetes Event and condition reasons, and alerts match on them.

use std::fmt;

use jiff::Timestamp;

/// The outcome of evaluating a rotation policy at one instant.
///
/// The controller records `scheduled_for` as handled after `Rotate` and `Skip` (so that
/// scheduled time is never decided again), and records nothing after `Wait` and `Hold`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RotationDecision {
    /// Start a switchover to `target` now, for the rotation scheduled at `scheduled_for`.
    Rotate {
        target: String,
        scheduled_for: Timestamp,
    },
    /// Nothing is due. Evaluate again at `next_at`, the next scheduled time (`None`: the
    /// schedule never fires again).
    Wait { next_at: Option<Timestamp> },
    /// A rotation is due but held back (`missedSchedule.policy: RunOnce`); it starts as soon as
    /// `reason` clears, provided that is no later than `deadline`. Evaluate again when the facts
    /// change or after a poll interval.
    Hold {
        scheduled_for: Timestamp,
        reason: SkipReason,
        deadline: Timestamp,
    },
    /// The rotation scheduled at `scheduled_for` will not happen.
    Skip {
        scheduled_for: Timestamp,
        reason: SkipReason,
    },
}

/// Why a due rotation was skipped or held back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// `spec.rotation.suspend` is true.
    Suspended,
    /// No member other than the primary can take over in the configured order.
    NoTarget,
    /// A freeze period covers the instant.
    FreezePeriod { reason: String, until: Timestamp },
    /// The instant is in no maintenance window.
    OutsideMaintenanceWindow,
    /// Another operation (switchover, drill, failover) is running.
    OperationInProgress,
    /// A configured precondition does not hold.
    PreconditionFailed(PreconditionFailure),
    /// The starting deadline passed before the rotation could start.
    MissedDeadline { deadline: Timestamp },
    /// The topology fails validation (`Valid`=False), so nothing may change.
    TopologyInvalid { problems: String },
}

impl SkipReason {
    /// The stable, CamelCase reason for Events and conditions.
    pub fn reason(&self) -> &'static str {
        match self {
            SkipReason::Suspended => "Suspended",
            SkipReason::NoTarget => "NoTarget",
            SkipReason::FreezePeriod { .. } => "FreezePeriod",
            SkipReason::OutsideMaintenanceWindow => "OutsideMaintenanceWindow",
            SkipReason::OperationInProgress => "OperationInProgress",
            SkipReason::PreconditionFailed(_) => "PreconditionFailed",
            SkipReason::MissedDeadline { .. } => "MissedDeadline",
            SkipReason::TopologyInvalid { .. } => "TopologyInvalid",
        }
    }
}

impl fmt::Display for SkipReason {
    /// The human message that goes with [`SkipReason::reason`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::Suspended => f.write_str("rotations are suspended (spec.rotation.suspend)"),
            SkipReason::NoTarget => {
                f.write_str("no member other than the primary can take over in the rotation order")
            }
            SkipReason::FreezePeriod { reason, until } => {
                write!(f, "freeze period until {until}: {reason}")
            }
            SkipReason::OutsideMaintenanceWindow => {
                f.write_str("outside every maintenance window (spec.rotation.maintenanceWindows)")
            }
            SkipReason::OperationInProgress => f.write_str("another operation is in progress"),
            SkipReason::PreconditionFailed(failure) => {
                write!(f, "precondition {} failed: {failure}", failure.name())
            }
            SkipReason::MissedDeadline { deadline } => write!(
                f,
                "the starting deadline passed at {deadline} \
                 (spec.rotation.missedSchedule.startingDeadline)"
            ),
            SkipReason::TopologyInvalid { problems } => {
                write!(f, "the topology is not valid: {problems}")
            }
        }
    }
}

/// Which precondition failed, with what was seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PreconditionFailure {
    /// These members are not Ready (or their readiness is unknown).
    MembersNotReady { members: Vec<String> },
    /// The target is further behind than allowed.
    ReplayLagTooHigh {
        member: String,
        lag: String,
        max: String,
    },
    /// A replay-lag limit is set but the target's lag is not known.
    ReplayLagUnknown { member: String },
    /// An operation failed less than `failureCooldown` ago.
    RecentFailure {
        failed_at: Timestamp,
        cooldown_until: Timestamp,
    },
}

impl PreconditionFailure {
    /// A stable CamelCase name for the failed precondition, for messages and metrics labels.
    pub fn name(&self) -> &'static str {
        match self {
            PreconditionFailure::MembersNotReady { .. } => "MembersNotReady",
            PreconditionFailure::ReplayLagTooHigh { .. } => "ReplayLagTooHigh",
            PreconditionFailure::ReplayLagUnknown { .. } => "ReplayLagUnknown",
            PreconditionFailure::RecentFailure { .. } => "RecentFailure",
        }
    }
}

impl fmt::Display for PreconditionFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PreconditionFailure::MembersNotReady { members } => {
                write!(f, "not Ready: {}", members.join(", "))
            }
            PreconditionFailure::ReplayLagTooHigh { member, lag, max } => {
                write!(f, "{member} replay lag {lag} exceeds {max}")
            }
            PreconditionFailure::ReplayLagUnknown { member } => {
                write!(f, "{member} replay lag is unknown")
            }
            PreconditionFailure::RecentFailure {
                failed_at,
                cooldown_until,
            } => write!(
                f,
                "an operation failed at {failed_at}; cool-down until {cooldown_until}"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kubernetes requires condition reasons to match `^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$`;
    /// ours are plain CamelCase, which is stricter.
    fn is_camel_case(reason: &str) -> bool {
        reason.starts_with(|c: char| c.is_ascii_uppercase())
            && reason.chars().all(|c| c.is_ascii_alphanumeric())
    }

    #[test]
    fn reasons_are_stable_camel_case_strings() {
        let at = Timestamp::UNIX_EPOCH;
        let cases = [
            (SkipReason::Suspended, "Suspended"),
            (SkipReason::NoTarget, "NoTarget"),
            (
                SkipReason::FreezePeriod {
                    reason: "year end".into(),
                    until: at,
                },
                "FreezePeriod",
            ),
            (
                SkipReason::OutsideMaintenanceWindow,
                "OutsideMaintenanceWindow",
            ),
            (SkipReason::OperationInProgress, "OperationInProgress"),
            (
                SkipReason::PreconditionFailed(PreconditionFailure::ReplayLagUnknown {
                    member: "b".into(),
                }),
                "PreconditionFailed",
            ),
            (
                SkipReason::MissedDeadline { deadline: at },
                "MissedDeadline",
            ),
            (
                SkipReason::TopologyInvalid {
                    problems: "spec.members[1]: unreachable".into(),
                },
                "TopologyInvalid",
            ),
        ];
        for (skip, expected) in cases {
            assert_eq!(skip.reason(), expected);
            assert!(is_camel_case(skip.reason()));
        }
    }

    #[test]
    fn messages_name_what_failed() {
        let skip = SkipReason::PreconditionFailed(PreconditionFailure::MembersNotReady {
            members: vec!["eu-west".into(), "us-east".into()],
        });
        assert_eq!(
            skip.to_string(),
            "precondition MembersNotReady failed: not Ready: eu-west, us-east"
        );
        let freeze = SkipReason::FreezePeriod {
            reason: "year-end freeze".into(),
            until: "2027-01-05T00:00:00Z".parse().unwrap(),
        };
        assert_eq!(
            freeze.to_string(),
            "freeze period until 2027-01-05T00:00:00Z: year-end freeze"
        );
    }
}
