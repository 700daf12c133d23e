//! The topology's conditions, computed purely from what one reconcile decided and merged into the
//! existing list so that `lastTransitionTime` moves only when a condition's status flips.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use topology::DistributedTopologyStatus;
use topology::conditions::{kind, reason};

/// One condition as this reconcile sees it (no timestamps yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    pub type_: &'static str,
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Wanted {
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Wanted {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
}

/// Merges `wanted` into `conditions`: a condition whose status is unchanged keeps its
/// `lastTransitionTime`; reason, message and `observedGeneration` are always refreshed.
/// Conditions of other types are kept as they are.
pub fn merge(
    conditions: &mut Vec<Condition>,
    wanted: Vec<Wanted>,
    generation: Option<i64>,
    now: Timestamp,
) {
    for w in wanted {
        let status = if w.status { "True" } else { "False" }.to_owned();
        let fresh = Condition {
            type_: w.type_.to_owned(),
            status,
            reason: w.reason.to_owned(),
            // The API caps messages at 32 KiB; a long problem list must not make the write fail.
            message: truncate(w.message, 4096),
            observed_generation: generation,
            last_transition_time: Time(now),
        };
        match conditions.iter_mut().find(|c| c.type_ == w.type_) {
            Some(existing) if existing.status == fresh.status => {
                let since = existing.last_transition_time.clone();
                *existing = Condition {
                    last_transition_time: since,
                    ..fresh
                };
            }
            Some(existing) => *existing = fresh,
            None => conditions.push(fresh),
        }
    }
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// The facts the four conditions are computed from.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// `Some(problems)`: static or live validation failed (every problem, formatted).
    pub invalid: Option<String>,
    /// `(member, why)` of every member that cannot be read.
    pub unreachable: Vec<(String, String)>,
    /// Members that are readable but not healthy.
    pub not_ready: Vec<String>,
    /// The primary by spec, if exactly one member is.
    pub observed_primary: Option<String>,
    /// `spec.primary`.
    pub desired_primary: String,
}

/// The four conditions for `status` (its `operation` decides `SwitchoverInProgress`).
pub fn wanted(status: &DistributedTopologyStatus, facts: &Facts) -> Vec<Wanted> {
    let valid = match &facts.invalid {
        None => Wanted::new(
            kind::VALID,
            true,
            reason::VALIDATION_PASSED,
            "static and live validation found no problem",
        ),
        Some(problems) => Wanted::new(
            kind::VALID,
            false,
            reason::VALIDATION_FAILED,
            problems.clone(),
        ),
    };
    let in_progress = match &status.operation {
        Some(op) => match &op.hold {
            Some(hold) => Wanted::new(
                kind::SWITCHOVER_IN_PROGRESS,
                true,
                hold_reason(&hold.reason),
                format!(
                    "{} {} {} → {} holds at {}: {}",
                    op.kind, op.id, op.from, op.to, op.step, hold.message
                ),
            ),
            None => Wanted::new(
                kind::SWITCHOVER_IN_PROGRESS,
                true,
                reason::IN_PROGRESS,
                format!(
                    "{} {} {} → {} at step {}",
                    op.kind, op.id, op.from, op.to, op.step
                ),
            ),
        },
        None => Wanted::new(
            kind::SWITCHOVER_IN_PROGRESS,
            false,
            reason::IDLE,
            match status.history.last() {
                Some(last) => format!(
                    "no switchover running; the last one ({} → {}) ended {}",
                    last.from,
                    last.to,
                    last.outcome.map(|o| format!("{o:?}")).unwrap_or_default()
                ),
                None => "no switchover running".to_owned(),
            },
        ),
    };
    // A refusal (401/403) is a permission to grant, not an outage: its own reason, so that
    // alerts and humans tell them apart.
    let refused = facts
        .unreachable
        .iter()
        .any(|(_, why)| crate::members::refused(why));
    // No usable credential on the hub: a Secret to fix, also not an outage.
    let no_credential = facts
        .unreachable
        .iter()
        .any(|(_, why)| crate::members::credential_refused(why));
    let degraded = if !facts.unreachable.is_empty() {
        let list: Vec<String> = facts
            .unreachable
            .iter()
            .map(|(m, why)| format!("{m}: {why}"))
            .collect();
        Wanted::new(
            kind::DEGRADED,
            true,
            if refused {
                reason::MEMBER_FORBIDDEN
            } else if no_credential {
                reason::MEMBER_CREDENTIAL_REFUSED
            } else {
                reason::MEMBER_UNREACHABLE
            },
            format!("cannot read {}", list.join("; ")),
        )
    } else if !facts.not_ready.is_empty() {
        Wanted::new(
            kind::DEGRADED,
            true,
            reason::MEMBER_NOT_READY,
            format!("not healthy: {}", facts.not_ready.join(", ")),
        )
    } else {
        Wanted::new(
            kind::DEGRADED,
            false,
            reason::ALL_MEMBERS_HEALTHY,
            "every member is reachable and healthy",
        )
    };
    let ready = if refused {
        // Validation cannot pass on members it may not read: the refusal is the cause to show.
        Wanted::new(
            kind::READY,
            false,
            reason::MEMBER_FORBIDDEN,
            degraded.message.clone(),
        )
    } else if let Some(problems) = &facts.invalid {
        Wanted::new(
            kind::READY,
            false,
            reason::VALIDATION_FAILED,
            problems.clone(),
        )
    } else if status.operation.is_some() {
        Wanted::new(
            kind::READY,
            false,
            reason::IN_PROGRESS,
            "a switchover is running",
        )
    } else if facts.observed_primary.as_deref() != Some(facts.desired_primary.as_str()) {
        Wanted::new(
            kind::READY,
            false,
            reason::IN_PROGRESS,
            format!(
                "spec.primary is {} but the primary by spec on the members is {}",
                facts.desired_primary,
                facts
                    .observed_primary
                    .as_deref()
                    .unwrap_or("none (or several)")
            ),
        )
    } else if !facts.unreachable.is_empty() {
        Wanted::new(
            kind::READY,
            false,
            degraded.reason,
            degraded.message.clone(),
        )
    } else if !facts.not_ready.is_empty() {
        Wanted::new(
            kind::READY,
            false,
            reason::MEMBER_NOT_READY,
            degraded.message.clone(),
        )
    } else {
        Wanted::new(
            kind::READY,
            true,
            reason::AS_DESIRED,
            format!(
                "{} is primary and every member is healthy",
                facts.desired_primary
            ),
        )
    };
    vec![ready, valid, in_progress, degraded]
}

/// Hold reasons come from the planner as `&'static str` already; this maps an owned copy (read
/// back from status) to the constant, so conditions only ever carry the documented reasons.
fn hold_reason(text: &str) -> &'static str {
    reason::HOLDS
        .into_iter()
        .find(|r| *r == text)
        .unwrap_or(reason::MEMBER_NOT_READY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    #[test]
    fn merge_keeps_transition_time_while_status_is_unchanged() {
        let mut conditions = Vec::new();
        merge(
            &mut conditions,
            vec![Wanted::new(
                kind::VALID,
                true,
                reason::VALIDATION_PASSED,
                "a",
            )],
            Some(1),
            at(10),
        );
        merge(
            &mut conditions,
            vec![Wanted::new(
                kind::VALID,
                true,
                reason::VALIDATION_PASSED,
                "b",
            )],
            Some(2),
            at(20),
        );
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time.0, at(10));
        assert_eq!(conditions[0].message, "b");
        assert_eq!(conditions[0].observed_generation, Some(2));

        merge(
            &mut conditions,
            vec![Wanted::new(
                kind::VALID,
                false,
                reason::VALIDATION_FAILED,
                "c",
            )],
            Some(3),
            at(30),
        );
        assert_eq!(conditions[0].last_transition_time.0, at(30));
        assert_eq!(conditions[0].status, "False");
    }

    /// The conditions for an idle status with `a` primary as desired, plus `unreachable`.
    fn idle_with(unreachable: Vec<(String, String)>) -> Vec<Wanted> {
        let facts = Facts {
            unreachable,
            observed_primary: Some("a".into()),
            desired_primary: "a".into(),
            ..Facts::default()
        };
        wanted(&DistributedTopologyStatus::default(), &facts)
    }

    fn get<'a>(w: &'a [Wanted], type_: &str) -> &'a Wanted {
        w.iter().find(|c| c.type_ == type_).unwrap()
    }

    #[test]
    fn idle_healthy_topology_is_ready_and_not_in_progress() {
        let w = idle_with(Vec::new());
        assert!(get(&w, kind::READY).status);
        assert!(!get(&w, kind::SWITCHOVER_IN_PROGRESS).status);
        assert_eq!(get(&w, kind::SWITCHOVER_IN_PROGRESS).reason, reason::IDLE);
        assert!(!get(&w, kind::DEGRADED).status);
        assert!(get(&w, kind::VALID).status);
    }

    #[test]
    fn unreachable_member_degrades_and_blocks_ready() {
        let w = idle_with(vec![("b".into(), "connection refused".into())]);
        assert!(get(&w, kind::DEGRADED).status);
        assert_eq!(get(&w, kind::DEGRADED).reason, reason::MEMBER_UNREACHABLE);
        assert!(!get(&w, kind::READY).status);
    }

    #[test]
    fn a_refused_member_is_forbidden_not_unreachable() {
        let why = "member b: the credential may not list CNPG clusters (postgresql.cnpg.io) in \
                   namespace payments (403 Forbidden); grant the member Role there";
        let w = idle_with(vec![("b".into(), why.into())]);
        let degraded = get(&w, kind::DEGRADED);
        assert!(degraded.status);
        assert_eq!(degraded.reason, reason::MEMBER_FORBIDDEN);
        assert!(
            degraded.message.contains("payments"),
            "{}",
            degraded.message
        );
        let ready = get(&w, kind::READY);
        assert!(!ready.status);
        assert_eq!(ready.reason, reason::MEMBER_FORBIDDEN);
    }

    #[test]
    fn a_member_without_a_usable_credential_is_a_secret_to_fix_not_an_outage() {
        for why in [
            "no usable credential: member b (Secret db/b): users[0].user.exec is an \
             authentication plugin …; refused. Fix: give the member a ServiceAccount token",
            "no credential for member cluster nowhere",
        ] {
            let w = idle_with(vec![("b".into(), why.into())]);
            let degraded = get(&w, kind::DEGRADED);
            assert!(degraded.status);
            assert_eq!(degraded.reason, reason::MEMBER_CREDENTIAL_REFUSED, "{why}");
            assert!(degraded.message.contains(why), "{}", degraded.message);
            let ready = get(&w, kind::READY);
            assert!(!ready.status);
            assert_eq!(ready.reason, reason::MEMBER_CREDENTIAL_REFUSED);
        }
        // An outage next to it does not hide it, and is still told apart when alone.
        let w = idle_with(vec![
            (
                "b".into(),
                "no credential for member cluster nowhere".into(),
            ),
            ("c".into(), "connection refused".into()),
        ]);
        assert_eq!(
            get(&w, kind::DEGRADED).reason,
            reason::MEMBER_CREDENTIAL_REFUSED
        );
    }
}
