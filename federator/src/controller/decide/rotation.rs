//! Scheduled rotations (`spec.rotation`) in the reconcile: the pure evaluator of
//! `policies::rotation` fed with what this reconcile observed and decided, its decision recorded
//! in `status.rotation`, announced as an Event when it changes, and turned into a requeue timer.
//!
//! A due rotation is started the declarative way: the controller sets its own topology's
//! `spec.primary` to the target (field manager `federator-rotation`), after the status write that
//! records the scheduled time as handled, and the ordinary planned switchover follows from that
//! spec change. See `docs/rotations.md`.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use policies::rotation::{
    MemberFacts, RotationDecision, RotationErrors, RotationFacts, RotationHistory, RotationInput,
    RotationPolicy, ValidatedRotation,
};
use topology::DistributedTopologyStatus;
use topology::api::{
    DistributedTopologySpec, Outcome, RotationDecisionRecord, RotationRecord, RotationStatus,
};
use topology::conditions::kind;

use super::note::Note;
use crate::controller::observe::Observation;

/// A timer never waits longer than this: a wall-clock step (NTP, a suspended VM) is noticed
/// within the hour even if no watch event arrives.
const MAX_RECHECK: Duration = Duration::from_secs(3600);

/// Appends the problems of `spec.rotation` (each naming its field and fix) to the topology's
/// problems, so that an invalid policy makes `Valid` False and changes nothing.
pub fn add_problems(spec: &DistributedTopologySpec, invalid: &mut Option<String>) {
    let Some(Err(errors)) = validated(spec) else {
        return;
    };
    let n = errors.0.len();
    let mut text = format!(
        "spec.rotation: {n} problem{}:",
        if n == 1 { "" } else { "s" }
    );
    for error in &errors.0 {
        text.push_str("\n  - ");
        text.push_str(&error.to_string());
    }
    *invalid = Some(match invalid.take() {
        Some(problems) => format!("{problems}\n{text}"),
        None => text,
    });
}

fn validated(spec: &DistributedTopologySpec) -> Option<Result<ValidatedRotation, RotationErrors>> {
    let policy = spec.rotation.as_ref()?;
    let names: Vec<&str> = spec.members.iter().map(|m| m.name.as_str()).collect();
    Some(policy.validate(&names))
}

/// A rotation to start once the status that records it is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Start {
    pub from: String,
    pub to: String,
    /// The `RotationStarted` Event, published once `spec.primary` is patched.
    pub note: Note,
}

/// What the rotation policy asks of this reconcile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Evaluated {
    /// Events to publish after the status write (skips and holds; not the start).
    pub events: Vec<Note>,
    /// Evaluate again after this long, if time alone can change the decision.
    pub requeue_after: Option<Duration>,
    pub start: Option<Start>,
}

/// Evaluates `spec.rotation` at `now` against the status this reconcile is about to write
/// (`status`, already decided: operation, conditions, history), and records the decision in
/// `status.rotation`. Pure.
pub fn evaluate(
    spec: &DistributedTopologySpec,
    observation: &Observation,
    status: &mut DistributedTopologyStatus,
    now: Timestamp,
) -> Evaluated {
    let mut out = Evaluated::default();
    let rotation = match validated(spec) {
        None => {
            status.rotation = None;
            return out;
        }
        // `Valid` is False with the problems (see `add_problems`); nothing changes.
        Some(Err(_)) => return out,
        Some(Ok(rotation)) => rotation,
    };
    let now = whole_second(now);
    let policy = spec.rotation.as_ref().expect("validated above");
    let order = member_order(spec);
    let order: Vec<&str> = order.iter().map(String::as_str).collect();
    let facts = facts(spec, observation, status);
    let step = schedule_step(
        policy,
        &rotation,
        status.rotation.take(),
        &spec.primary,
        &order,
        &facts,
        now,
    );
    match &step.decision {
        RotationDecision::Rotate { target, .. } => {
            out.start = Some(Start {
                from: spec.primary.clone(),
                to: target.clone(),
                note: Note {
                    warning: false,
                    reason: "RotationStarted".into(),
                    action: "Rotate",
                    message: step.decided.message.clone(),
                },
            });
        }
        RotationDecision::Skip { .. } => {
            out.events.push(note("RotationSkipped", &step.decided));
        }
        RotationDecision::Hold { .. } if step.changed => {
            out.events.push(note("RotationHeld", &step.decided));
        }
        RotationDecision::Hold { .. } | RotationDecision::Wait { .. } => {}
    }
    out.requeue_after = step.requeue_after;
    status.rotation = Some(step.record);
    out
}

/// One evaluation of a schedule and its bookkeeping, shared by a topology's `spec.rotation` and
/// a `RegionRotation` (whose "members" are regions).
pub(crate) struct ScheduleStep {
    /// The bookkeeping to write: the scheduled time handled, the last rotation or skip, the
    /// latest decision, the next rotation time.
    pub record: RotationStatus,
    pub decision: RotationDecision,
    /// The decision as recorded (its message names a topology's `spec.primary`; a region
    /// rotation words its own).
    pub decided: RotationDecisionRecord,
    /// The decision differs from the last one recorded (announce it).
    pub changed: bool,
    /// Evaluate again after this long, if time alone can change the decision.
    pub requeue_after: Option<Duration>,
}

/// Evaluates `rotation` at `now` (whole seconds) for `primary` among `order`, on top of the
/// bookkeeping `previous` (started over when the schedule or time zone changed). Pure.
pub(crate) fn schedule_step(
    policy: &RotationPolicy,
    rotation: &ValidatedRotation,
    previous: Option<RotationStatus>,
    primary: &str,
    order: &[&str],
    facts: &RotationFacts,
    now: Timestamp,
) -> ScheduleStep {
    let digest = digest(&policy.schedule, &policy.time_zone);
    let mut record = match previous {
        Some(previous) if previous.schedule_digest == digest => previous,
        previous => RotationStatus {
            schedule_digest: digest,
            active_since: Time(now),
            last_schedule_time: None,
            next_rotation_time: None,
            last_decision: None,
            last_skip: previous.as_ref().and_then(|p| p.last_skip.clone()),
            last_rotation: previous.and_then(|p| p.last_rotation),
        },
    };
    let decision = rotation.decide(&RotationInput {
        now,
        history: RotationHistory {
            last_handled: record.last_schedule_time.as_ref().map(|t| t.0),
            active_since: record.active_since.0,
        },
        primary,
        members: order,
        facts,
    });
    let decided = decision_record(&decision, now);
    let changed = record
        .last_decision
        .as_ref()
        .is_none_or(|last| !same_decision(last, &decided));
    match &decision {
        RotationDecision::Rotate {
            target,
            scheduled_for,
        } => {
            record.last_schedule_time = Some(Time(*scheduled_for));
            record.last_rotation = Some(RotationRecord {
                scheduled_for: Time(*scheduled_for),
                started_at: Time(now),
                from: primary.to_owned(),
                to: target.clone(),
            });
        }
        RotationDecision::Skip { scheduled_for, .. } => {
            record.last_schedule_time = Some(Time(*scheduled_for));
            record.last_skip = Some(decided.clone());
        }
        RotationDecision::Hold { .. } | RotationDecision::Wait { .. } => {}
    }
    if changed {
        record.last_decision = Some(decided.clone());
    }
    record.next_rotation_time = rotation.next_rotation_after(now).map(Time);
    let requeue_after = rotation
        .recheck_at(&decision, now)
        .map(|at| now.duration_until(at).unsigned_abs().min(MAX_RECHECK));
    ScheduleStep {
        record,
        decision,
        decided,
        changed,
        requeue_after,
    }
}

/// The earlier of two optional timers.
pub fn sooner(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// What the evaluator needs to know, from this reconcile's observation and decided status.
fn facts(
    spec: &DistributedTopologySpec,
    observation: &Observation,
    status: &DistributedTopologyStatus,
) -> RotationFacts {
    let members: BTreeMap<String, MemberFacts> = observation
        .members
        .iter()
        .map(|m| {
            let facts = MemberFacts {
                ready: m.reachable && m.ready,
                replay_lag: None,
                replay_lag_bytes: None,
            };
            (m.name.clone(), facts)
        })
        .collect();
    // A requested switchover that has not started yet counts as one in progress.
    let operation_in_progress = status.operation.is_some()
        || status.observed_primary.as_deref() != Some(spec.primary.as_str());
    let last_failure = status
        .history
        .iter()
        .rev()
        .find(|op| op.outcome == Some(Outcome::RolledBack))
        .and_then(|op| op.finished_at.as_ref())
        .map(|t| t.0);
    let topology_invalid = status
        .conditions
        .iter()
        .find(|c| c.type_ == kind::VALID && c.status == "False")
        .map(|c| c.message.clone());
    RotationFacts {
        members,
        operation_in_progress,
        last_failure,
        replay_lag_unobservable: true,
        topology_invalid,
    }
}

/// The topology's member order: the ring's for a ring, else `spec.members`.
fn member_order(spec: &DistributedTopologySpec) -> Vec<String> {
    match &spec.shape.ring {
        Some(ring) => ring.clone(),
        None => spec.members.iter().map(|m| m.name.clone()).collect(),
    }
}

fn decision_record(decision: &RotationDecision, now: Timestamp) -> RotationDecisionRecord {
    let (kind, reason, message, scheduled_for) = match decision {
        RotationDecision::Rotate {
            target,
            scheduled_for,
        } => (
            "Rotate",
            None,
            format!(
                "rotation scheduled for {scheduled_for}: spec.primary set to {target}; a planned switchover follows"
            ),
            Some(*scheduled_for),
        ),
        RotationDecision::Wait { next_at } => (
            "Wait",
            None,
            match next_at {
                Some(at) => format!("nothing is due; the next scheduled time is {at}"),
                None => "nothing is due; the schedule never fires again".to_owned(),
            },
            None,
        ),
        RotationDecision::Hold {
            scheduled_for,
            reason,
            deadline,
        } => (
            "Hold",
            Some(reason.reason()),
            format!(
                "rotation scheduled for {scheduled_for} held back: {reason}; it starts as soon as that clears, until {deadline}"
            ),
            Some(*scheduled_for),
        ),
        RotationDecision::Skip {
            scheduled_for,
            reason,
        } => (
            "Skip",
            Some(reason.reason()),
            format!("rotation scheduled for {scheduled_for} skipped: {reason}"),
            Some(*scheduled_for),
        ),
    };
    RotationDecisionRecord {
        decision: kind.to_owned(),
        reason: reason.map(str::to_owned),
        message,
        scheduled_for: scheduled_for.map(Time),
        time: Time(now),
    }
}

/// The same decision for the same scheduled time and the same reason: not announced again.
fn same_decision(a: &RotationDecisionRecord, b: &RotationDecisionRecord) -> bool {
    a.decision == b.decision
        && a.reason == b.reason
        && a.scheduled_for == b.scheduled_for
        && a.message == b.message
}

fn note(reason: &str, record: &RotationDecisionRecord) -> Note {
    Note {
        warning: true,
        reason: reason.to_owned(),
        action: "Rotate",
        message: format!(
            "{} ({})",
            record.message,
            record.reason.as_deref().unwrap_or_default()
        ),
    }
}

/// `metav1.Time` holds whole seconds on the wire; recording the same in memory keeps the status
/// we compare against the one we read back.
pub(crate) fn whole_second(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// FNV-1a of the schedule and time zone: stable across builds and Rust versions (unlike
/// `DefaultHasher`), so a restarted controller recognises the schedule it recorded.
fn digest(schedule: &str, time_zone: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in schedule.bytes().chain([0]).chain(time_zone.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests;
