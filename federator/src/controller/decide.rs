//! Validate → plan → decide, with no I/O: from one topology object and one observation of its
//! members, compute the status to write (step log included), the single member patch to send
//! after that write, the Events to publish and the timings to record. Everything a reconcile
//! does that can be wrong is here, so it is unit-tested without a cluster.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use topology::api::{HISTORY_LIMIT, Hold, Operation, Outcome};
use topology::conditions::reason;
use topology::plan::{Action, Context};
use topology::validate::validate_live;
use topology::{
    Decision, DistributedTopology, DistributedTopologyStatus, OperationKind, Progress, StepKind,
    Topology, next_step,
};

use super::conditions::{self, Facts};
use super::observe::Observation;

/// At most this many status-only transitions are chained in one reconcile before its single
/// write; a switchover has fewer steps than this, so the bound only guards against a planner bug.
const MAX_TRANSITIONS: usize = 16;

/// What one reconcile should do, in order: write `status`, then send `effect`, then publish
/// `events` and record the timings.
#[derive(Clone, Debug, Default)]
pub struct Decided {
    pub status: DistributedTopologyStatus,
    /// The one member patch of this reconcile; sent only after `status` is durably written.
    pub effect: Option<Action>,
    pub events: Vec<Note>,
    /// Steps closed by this reconcile, with their durations.
    pub finished_steps: Vec<(StepKind, Duration)>,
    /// The operation that ended in this reconcile, with its total duration.
    pub finished_operation: Option<(Outcome, Duration)>,
    /// A timer: re-check after this long even if nothing changes (a deadline or a retry).
    pub requeue_after: Option<Duration>,
    /// What the conditions were computed from, to recompute them after [`refuse`].
    facts: Facts,
}

/// A Kubernetes Event to publish on the topology.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    /// PascalCase reason.
    pub reason: String,
    /// PascalCase action.
    pub action: &'static str,
    pub message: String,
}

impl Decided {
    fn note(
        &mut self,
        warning: bool,
        reason: impl Into<String>,
        action: &'static str,
        message: String,
    ) {
        self.events.push(Note {
            warning,
            reason: reason.into(),
            action,
            message,
        });
    }
}

/// The whole decision for `topo` given `observation`, at `now`.
pub fn decide(topo: &DistributedTopology, observation: &Observation, now: Timestamp) -> Decided {
    let spec = &topo.spec;
    let generation = topo.metadata.generation;
    let mut out = Decided::default();
    let mut status = topo.status.clone().unwrap_or_default();
    status.observed_generation = generation;
    status.members.clone_from(&observation.members);
    status.observed_primary = observation.observed.primary().map(str::to_owned);

    let mut facts = Facts {
        invalid: None,
        unreachable: observation.unreachable.clone(),
        not_ready: observation
            .members
            .iter()
            .filter(|m| m.reachable && !m.ready)
            .map(|m| m.name.clone())
            .collect(),
        observed_primary: status.observed_primary.clone(),
        desired_primary: spec.primary.clone(),
    };

    match Topology::from_spec(spec) {
        // An invalid topology changes nothing anywhere: no operation starts or moves on.
        Err(problems) => facts.invalid = Some(problems.to_string()),
        Ok(topology) => {
            // Mid-switchover the members legitimately break the idle rules (no primary between
            // demotion and promotion); the running operation's own checks apply instead.
            if status.operation.is_none()
                && let Err(problems) = validate_live(&topology, &observation.observed, None)
            {
                facts.invalid = Some(problems.to_string());
            }
            drive(
                &topology,
                generation,
                &mut status,
                observation,
                now,
                facts.invalid.is_none(),
                &mut out,
            );
            if let Some(hold) = status.operation.as_ref().and_then(|op| op.hold.as_ref())
                && hold.reason == reason::VALIDATION_FAILED
            {
                facts.invalid = Some(hold.message.clone());
            }
        }
    }
    let wanted = conditions::wanted(&status, &facts);
    conditions::merge(&mut status.conditions, wanted, generation, now);
    out.status = status;
    out.facts = facts;
    out
}

/// The server-side dry run of the switchover's patches failed (`problems`): instead of sending
/// the Demote patch, the operation holds with `ValidationFailed` — nothing changes on any member.
/// `previous` is the hold the topology carried before this reconcile (to announce a hold once).
pub fn refuse(
    decided: &mut Decided,
    previous: Option<&Hold>,
    problems: String,
    generation: Option<i64>,
    now: Timestamp,
) {
    decided.effect = None;
    let Some(op) = decided.status.operation.as_ref() else {
        return;
    };
    let hold = Hold {
        reason: reason::VALIDATION_FAILED.to_owned(),
        message: format!(
            "a server-side dry run of the switchover's patches was refused, so nothing was changed on any member: {problems}"
        ),
    };
    let announce = format!(
        "switchover {} holds at {}: {}",
        op.id, op.step, hold.message
    );
    if previous != Some(&hold) {
        decided.note(true, reason::VALIDATION_FAILED, "Hold", announce);
    }
    decided.facts.invalid = Some(hold.message.clone());
    if let Some(op) = decided.status.operation.as_mut() {
        op.hold = Some(hold);
    }
    let wanted = conditions::wanted(&decided.status, &decided.facts);
    conditions::merge(&mut decided.status.conditions, wanted, generation, now);
}

/// Starts, advances, holds or finishes the operation in `status`.
fn drive(
    topology: &Topology,
    generation: Option<i64>,
    status: &mut DistributedTopologyStatus,
    observation: &Observation,
    now: Timestamp,
    valid: bool,
    out: &mut Decided,
) {
    let observed = &observation.observed;
    let to = topology.primary();
    let mut op = match status.operation.take() {
        Some(op) => op,
        None => {
            let Some(from) = observed.primary() else {
                return;
            };
            if from == to || !valid {
                return;
            }
            let id = format!("{}-{from}-to-{to}", generation.unwrap_or_default());
            out.note(
                false,
                "SwitchoverStarted",
                "Start",
                format!("switchover {id}: {from} → {to}"),
            );
            Operation::new(id, OperationKind::Switchover, from, to, now)
        }
    };

    // spec.primary moved on before this operation touched any member: drop it; the next
    // reconcile starts the one now asked for.
    if op.to != to && op.step == StepKind::Validate {
        out.note(
            false,
            "SwitchoverAbandoned",
            "Abandon",
            format!(
                "switchover {} abandoned before any change: spec.primary is now {to}",
                op.id
            ),
        );
        finish(status, op, Outcome::Abandoned, now, out);
        return;
    }

    let ctx = Context { topology, now };
    for _ in 0..MAX_TRANSITIONS {
        let progress = Progress::from_operation(&op);
        match next_step(observed, &progress, &ctx) {
            Decision::Advance(transition) => {
                let after = progress.advance(&transition, now);
                if transition.token.is_some() && op.token.is_none() {
                    // Never the token itself: it goes to status only.
                    out.note(
                        false,
                        "TokenPersisted",
                        "PersistToken",
                        format!(
                            "switchover {}: {}'s demotion token is saved in status (CNPG #11074)",
                            op.id, op.from
                        ),
                    );
                }
                if transition.rollback {
                    out.note(
                        true,
                        "RollingBack",
                        "Rollback",
                        format!(
                            "switchover {}: {} rejected the demotion token as fatal (phase unrecoverable); rolling back: {} returns to primary: {} without a token, then {} is promoted with its own token (contract §6)",
                            op.id, op.to, op.to, op.from, op.from
                        ),
                    );
                }
                if let Some(done) = op.steps.last() {
                    out.finished_steps
                        .push((done.step, elapsed(&done.started_at, now)));
                }
                let member = member_of(transition.next, &after);
                out.note(
                    false,
                    transition.next.as_str(),
                    "Step",
                    format!(
                        "switchover {}: {} done; step {}{}",
                        op.id,
                        op.step,
                        transition.next,
                        member
                            .as_deref()
                            .map(|m| format!(" on {m}"))
                            .unwrap_or_default()
                    ),
                );
                op.record(&transition, member, now);
            }
            Decision::Act(action) => {
                if let Some(current) = op.steps.last_mut() {
                    current.member = Some(action.member.clone());
                }
                op.hold = None;
                out.effect = Some(action);
                break;
            }
            Decision::Wait(wait) => {
                op.hold = None;
                out.requeue_after = wait.recheck_after;
                break;
            }
            Decision::Hold { reason, message } => {
                let hold = Hold {
                    reason: reason.to_owned(),
                    message,
                };
                if op.hold.as_ref() != Some(&hold) {
                    out.note(
                        true,
                        reason,
                        "Hold",
                        format!(
                            "switchover {} holds at {}: {}",
                            op.id, op.step, hold.message
                        ),
                    );
                }
                op.hold = Some(hold);
                break;
            }
            Decision::Done(outcome) => {
                let (reason, warning) = match outcome {
                    Outcome::Succeeded => ("SwitchoverSucceeded", false),
                    Outcome::RolledBack => ("SwitchoverRolledBack", true),
                    Outcome::Abandoned => ("SwitchoverAbandoned", false),
                };
                let primary = if op.rolled_back { &op.from } else { &op.to };
                out.note(
                    warning,
                    reason,
                    "Finish",
                    format!(
                        "switchover {} ended {outcome:?} after {:.1}s; {primary} is primary",
                        op.id,
                        elapsed(&op.started_at, now).as_secs_f64()
                    ),
                );
                finish(status, op, outcome, now, out);
                return;
            }
        }
    }
    status.operation = Some(op);
}

/// The member a step patches or watches, for the step log.
fn member_of(step: StepKind, progress: &Progress) -> Option<String> {
    match step {
        StepKind::Demote | StepKind::AwaitDemotionStarted | StepKind::AwaitToken => {
            Some(progress.loser().to_owned())
        }
        StepKind::CheckToken
        | StepKind::Promote
        | StepKind::AwaitPromotion
        | StepKind::ClearToken => Some(progress.target().to_owned()),
        StepKind::RollbackTarget => Some(progress.to.clone()),
        StepKind::Validate | StepKind::Bookkeeping | StepKind::Done => None,
    }
}

fn finish(
    status: &mut DistributedTopologyStatus,
    mut op: Operation,
    outcome: Outcome,
    now: Timestamp,
    out: &mut Decided,
) {
    if let Some(last) = op.steps.last_mut()
        && last.finished_at.is_none()
    {
        last.finished_at = Some(MicroTime(now));
        out.finished_steps
            .push((last.step, elapsed(&last.started_at, now)));
    }
    op.finished_at = Some(MicroTime(now));
    op.outcome = Some(outcome);
    op.hold = None;
    out.finished_operation = Some((outcome, elapsed(&op.started_at, now)));
    status.history.push(op);
    let excess = status.history.len().saturating_sub(HISTORY_LIMIT);
    status.history.drain(..excess);
    status.operation = None;
}

fn elapsed(since: &MicroTime, now: Timestamp) -> Duration {
    now.duration_since(since.0).unsigned_abs()
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
