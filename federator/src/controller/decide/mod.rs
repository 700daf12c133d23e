//! Validate → plan → decide, with no I/O: from one topology object, one observation of its
//! members and the ledger's view of it, compute what one reconcile does, in order ([`decide`]:
//! the status to write or hold, dry runs, the single member patch to send after that write, a
//! rotation to start, the Events to publish and the timings to record). Everything a reconcile
//! does that can be wrong is here, so it is unit-tested without a cluster.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use topology::api::{
    FailoverReport, HISTORY_LIMIT, Hold, MemberStatus, Operation, OperationHooks, OperationRecord,
    Outcome,
};
use topology::cnpg::Role;
use topology::conditions::{kind, reason};
use topology::plan::{Action, Context, HookEnd, NO_HOOKS, Transition};
use topology::region_api::Hooks;
use topology::validate::validate_live;
use topology::{
    Decision, DistributedTopology, DistributedTopologyStatus, OperationKind, Progress, StepKind,
    Topology, next_step,
};

use crate::controller::observe::Observation;
use conditions::{Facts, Wanted};

pub(super) mod autofailover;
pub(super) mod conditions;
mod failover;
mod fence;
mod note;
mod plan;
pub(super) mod rotation;
mod unreadable;

use failover::Gate;
pub use note::Note;
pub use plan::{Effect, FINALIZER, Input, decide};

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
    /// Hooks that ended in this reconcile: phase, ok, duration.
    pub finished_hooks: Vec<(&'static str, bool, Duration)>,
    /// A timer: re-check after this long even if nothing changes (a deadline or a retry).
    pub requeue_after: Option<Duration>,
    /// An automatic failover to start once `status` (which records it) is written.
    pub auto_start: Option<autofailover::AutoStart>,
    /// What the conditions were computed from, to recompute them after [`refuse`].
    facts: Facts,
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

/// The status decision for `topo` given `observation`, at `now`: the step log, conditions, the
/// patch the planner asks for and the Events ([`decide`] turns it into a reconcile's effects).
fn decide_status(topo: &DistributedTopology, observation: &Observation, now: Timestamp) -> Decided {
    let spec = &topo.spec;
    let generation = topo.metadata.generation;
    let deleting = topo.metadata.deletion_timestamp.is_some();
    let mut out = Decided::default();
    let previous = topo.status.clone().unwrap_or_default();
    let mut status = previous.clone();
    status.observed_generation = generation;
    status.members.clone_from(&observation.members);
    keep_last_seen(&mut status.members, &previous.members, now);
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
    let mut blocked = None;

    match Topology::from_spec(spec) {
        // An invalid topology changes nothing anywhere: no operation starts or moves on.
        Err(problems) => {
            facts.invalid = Some(problems.to_string());
            rotation::add_problems(spec, &mut facts.invalid);
        }
        Ok(topology) => {
            // Mid-switchover the members legitimately break the idle rules (no primary between
            // demotion and promotion); the running operation's own checks apply instead.
            if status.operation.is_none()
                && let Err(problems) = validate_live(&topology, &observation.observed, None)
            {
                facts.invalid = Some(problems.to_string());
            }
            // An invalid spec.rotation makes the topology invalid too: Valid=False, no change.
            rotation::add_problems(spec, &mut facts.invalid);
            note_promotion(&mut status, observation, now);
            note_return(&mut status, observation, now);
            // A former primary that can be read again is fenced before anything else happens.
            // A topology being deleted starts nothing new: only a running operation is driven.
            let fence = match status.operation {
                None if !deleting => {
                    fence::reconcile(&mut status, &topology, observation, now, &mut out.events)
                }
                _ => None,
            };
            if fence.is_some() {
                out.effect = fence;
            } else {
                let gate = match status.operation {
                    None if !deleting => failover::gate(
                        spec,
                        (
                            status.last_failover.as_ref(),
                            status
                                .automatic_failover
                                .as_ref()
                                .and_then(|a| a.last_decision.as_ref()),
                        ),
                        observation,
                        &previous.members,
                        now,
                    ),
                    _ => Gate::Pass,
                };
                let start = match gate {
                    Gate::Pass => None,
                    Gate::Start(report) => Some(report),
                    Gate::Blocked {
                        reason,
                        message,
                        record,
                    } => {
                        if record.is_some() {
                            status.last_failover = record;
                        }
                        blocked = Some(Wanted::new(kind::READY, false, reason, message));
                        None
                    }
                };
                // A switchover of this very spec that rolled back is not started again by
                // itself: the same cause (a target that refuses the token) would roll it back
                // again, each time with a write outage. A new spec.primary retries it.
                if start.is_none()
                    && blocked.is_none()
                    && status.operation.is_none()
                    && let Some((why, message)) = not_retried(&status, generation, &spec.primary)
                {
                    blocked = Some(Wanted::new(kind::READY, false, why, message));
                }
                let start = match start {
                    Some(report) => Start::Failover(Box::new(report)),
                    None if facts.invalid.is_none() && !deleting => Start::Switchover,
                    None => Start::Nothing,
                };
                if blocked.is_none() {
                    drive(
                        &topology,
                        &spec.hooks,
                        generation,
                        &mut status,
                        observation,
                        now,
                        start,
                        &mut out,
                    );
                }
            }
            if let Some(hold) = status.operation.as_ref().and_then(|op| op.hold.as_ref())
                && hold.reason == reason::VALIDATION_FAILED
            {
                facts.invalid = Some(hold.message.clone());
            }
        }
    }
    let mut wanted = conditions::wanted(&status, &facts);
    if !deleting {
        let automatic = autofailover::evaluate(
            spec,
            &mut status,
            &previous.conditions,
            observation.votes.as_ref(),
            topo.metadata.namespace.as_deref().unwrap_or_default(),
            topo.metadata.name.as_deref().unwrap_or_default(),
            now,
        );
        if let Some(condition) = automatic.condition {
            out.events
                .extend(autofailover::announce(&condition, &previous.conditions));
            wanted.push(condition);
        }
        out.events.extend(automatic.notes);
        let (slow, event) = autofailover::slow_stores(
            spec,
            observation.votes.as_ref(),
            &previous.conditions,
            topo.metadata.namespace.as_deref().unwrap_or_default(),
        );
        wanted.extend(slow);
        out.events.extend(event);
        out.requeue_after = rotation::sooner(out.requeue_after, automatic.requeue_after);
        out.auto_start = automatic.start;
    }
    // One Warning Event when a member starts refusing the credential (not one per reconcile).
    if let Some(degraded) = wanted
        .iter()
        .find(|w| w.type_ == kind::DEGRADED && w.reason == reason::MEMBER_FORBIDDEN)
        && previous
            .conditions
            .iter()
            .find(|c| c.type_ == kind::DEGRADED)
            .is_none_or(|c| c.reason != reason::MEMBER_FORBIDDEN)
    {
        out.note(
            true,
            reason::MEMBER_FORBIDDEN,
            "Observe",
            degraded.message.clone(),
        );
    }
    if let Some(ready) = blocked {
        let before = previous.conditions.iter().find(|c| c.type_ == kind::READY);
        if before.is_none_or(|c| c.reason != ready.reason || c.message != ready.message) {
            out.note(true, ready.reason, "Refuse", ready.message.clone());
        }
        wanted.retain(|w| w.type_ != kind::READY);
        wanted.push(ready);
    }
    conditions::merge(&mut status.conditions, wanted, generation, now);
    out.status = status;
    out.facts = facts;
    out
}

/// A member that cannot be read keeps the values last seen (the status documents them as stale)
/// and says since when it cannot be read: a failover's data-loss window is built from them.
fn keep_last_seen(members: &mut [MemberStatus], previous: &[MemberStatus], now: Timestamp) {
    for member in members.iter_mut().filter(|m| !m.reachable) {
        let Some(last) = previous.iter().find(|p| p.name == member.name) else {
            member.unreachable_since = Some(MicroTime(now));
            continue;
        };
        member.role = last.role;
        member.phase.clone_from(&last.phase);
        member.timeline_id = last.timeline_id;
        member.system_id.clone_from(&last.system_id);
        member.unreachable_since = match (&last.unreachable_since, last.reachable) {
            (Some(since), false) => Some(since.clone()),
            _ => Some(MicroTime(now)),
        };
    }
}

/// Completes the last failover's data-loss window once its target reports the promotion.
fn note_promotion(
    status: &mut DistributedTopologyStatus,
    observation: &Observation,
    now: Timestamp,
) {
    let Some(report) = status.last_failover.as_mut() else {
        return;
    };
    let Some(window) = report
        .data_loss
        .as_mut()
        .filter(|w| w.promoted_at.is_none() && report.operation.is_some())
    else {
        return;
    };
    let Some(target) = observation.observed.get(&report.to) else {
        return;
    };
    // Until the promotion: how far the target got (the fork is at or after it).
    failover::target_read(window, target, &report.from, &report.to);
    if target.role() == Some(Role::Primary) && target.status.instance_is_primary {
        failover::promoted(
            window,
            &report.from,
            &report.to,
            target.status.timeline_id,
            now,
        );
    }
}

/// Completes the last failover's report once its old primary's instance can be read again.
fn note_return(status: &mut DistributedTopologyStatus, observation: &Observation, now: Timestamp) {
    let Some(report) = status
        .last_failover
        .as_mut()
        .filter(|r| r.operation.is_some())
    else {
        return;
    };
    let Some(window) = report
        .data_loss
        .as_mut()
        .filter(|w| w.old_primary_returned.is_none())
    else {
        return;
    };
    if let Some(old) = observation
        .observed
        .get(&report.from)
        .filter(|m| m.reachable)
    {
        failover::returned(window, old, (&report.from, &report.to), now);
    }
}

/// The server-side dry run of the switchover's patches failed (`problems`): instead of sending
/// the Demote patch, the operation holds with `ValidationFailed` — nothing changes on any member.
/// `previous` is the hold the topology carried before this reconcile (to announce a hold once).
fn refuse(
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

/// The topology is being deleted: an operation that holds, or that has not changed any member
/// yet (`Validate`), ends here as `Abandoned`, and nothing more is changed on any member. A
/// running operation is left to finish (its deadlines bound how long that takes).
fn stop_for_deletion(decided: &mut Decided, generation: Option<i64>, now: Timestamp) {
    let Some(op) = decided
        .status
        .operation
        .take_if(|op| op.hold.is_some() || op.step == StepKind::Validate)
    else {
        return;
    };
    let primary = decided
        .status
        .observed_primary
        .clone()
        .unwrap_or_else(|| "none".into());
    decided.note(
        true,
        "OperationStopped",
        "Stop",
        format!(
            "{} {} stopped at {} because the topology is being deleted; nothing more is changed on any member (primary now: {primary})",
            op.kind, op.id, op.step
        ),
    );
    decided.effect = None;
    let mut status = std::mem::take(&mut decided.status);
    finish(&mut status, op, Outcome::Abandoned, now, decided);
    decided.status = status;
    let wanted = conditions::wanted(&decided.status, &decided.facts);
    conditions::merge(&mut decided.status.conditions, wanted, generation, now);
}

/// What may start when no operation runs.
enum Start {
    /// A planned switchover, if `spec.primary` asks for one (the topology is valid).
    Switchover,
    /// The failover the gate allowed (live validation does not apply: the old primary cannot
    /// be read, which it always flags).
    Failover(Box<FailoverReport>),
    /// Nothing: the topology is invalid.
    Nothing,
}

/// `SwitchoverSucceeded`, `FailoverStarted`, …: Event reasons name the operation's kind.
fn reason_for(kind: OperationKind, what: &str) -> String {
    match kind {
        OperationKind::Switchover => format!("Switchover{what}"),
        OperationKind::Failover => format!("Failover{what}"),
    }
}

/// When the last operation was a switchover to `desired` for this `generation` that rolled
/// back, or that a hook before the demotion aborted, and the primary is still elsewhere: the
/// condition reason, why nothing starts, and how to retry.
fn not_retried(
    status: &DistributedTopologyStatus,
    generation: Option<i64>,
    desired: &str,
) -> Option<(&'static str, String)> {
    let last = status.history.last()?;
    let this_spec = last
        .id
        .starts_with(&format!("{}-", generation.unwrap_or_default()));
    if !this_spec || last.to != desired || status.observed_primary.as_deref() == Some(desired) {
        return None;
    }
    let retry = format!(
        "it is not retried for the same spec. Once the cause is fixed, set spec.primary to {} \
         and then to {} again to retry",
        last.from, desired
    );
    match last.outcome? {
        Outcome::RolledBack => Some((
            reason::ROLLED_BACK,
            format!(
                "switchover {} rolled back to {}; {retry}",
                last.id, last.from
            ),
        )),
        Outcome::Aborted => {
            let failed = last
                .hook_runs
                .iter()
                .rfind(|r| !r.ok)
                .map(|r| format!("hook {} failed: {}", r.hook, r.detail))
                .unwrap_or_else(|| "a hook before the demotion failed".into());
            Some((
                reason::HOOK_FAILED,
                format!(
                    "switchover {} was aborted before the demotion ({failed}); {} is still \
                     primary; {retry}",
                    last.id, last.from
                ),
            ))
        }
        _ => None,
    }
}

/// Starts, advances, holds or finishes the operation in `status`.
#[allow(clippy::too_many_arguments)]
fn drive(
    topology: &Topology,
    hooks: &Hooks,
    generation: Option<i64>,
    status: &mut DistributedTopologyStatus,
    observation: &Observation,
    now: Timestamp,
    start: Start,
    out: &mut Decided,
) {
    let observed = &observation.observed;
    let to = topology.primary();
    let mut op = match (status.operation.take(), start) {
        (Some(op), _) => op,
        (None, Start::Nothing) => return,
        (None, Start::Failover(mut report)) => {
            let (from, to) = (report.from.clone(), report.to.clone());
            let id = format!("{}-{from}-to-{to}", generation.unwrap_or_default());
            let old = if observation.observed.get(&from).is_some_and(|m| m.reachable) {
                "is fenced (it takes no write) and is made a replica first"
            } else {
                "cannot be read"
            };
            out.note(
                true,
                "FailoverStarted",
                "Start",
                format!(
                    "failover {id}: {from} {old}; promoting {to} WITHOUT a demotion token (spec.failover.acceptDataLoss). {}",
                    report
                        .data_loss
                        .as_ref()
                        .map(|w| w.summary.as_str())
                        .unwrap_or_default()
                ),
            );
            report.operation = Some(id.clone());
            status.last_failover = Some(*report);
            fence::remember(status, &from, &id, &to);
            Operation::new(id, OperationKind::Failover, &from, &to, now)
        }
        (None, Start::Switchover) => {
            let Some(from) = observed.primary() else {
                return;
            };
            if from == to {
                return;
            }
            let id = format!("{}-{from}-to-{to}", generation.unwrap_or_default());
            out.note(
                false,
                "SwitchoverStarted",
                "Start",
                format!("switchover {id}: {from} → {to}"),
            );
            let mut op = Operation::new(id, OperationKind::Switchover, from, to, now);
            // The hooks as they are now: an edit mid-switchover does not change what it runs.
            op.hooks = (!hooks.is_empty()).then(|| OperationHooks {
                declared: hooks.clone(),
                ..OperationHooks::default()
            });
            op
        }
    };
    let kind = op.kind;

    // spec.primary moved on before this operation touched any member (its hooks before the
    // demotion may have run): drop it; the next reconcile starts the one now asked for.
    if op.to != to && matches!(op.step, StepKind::Validate | StepKind::HooksBeforeDemotion) {
        out.note(
            false,
            reason_for(kind, "Abandoned"),
            "Abandon",
            format!(
                "{kind} {} abandoned before any change: spec.primary is now {to}",
                op.id
            ),
        );
        finish(status, op, Outcome::Abandoned, now, out);
        return;
    }

    let declared = op.hooks.as_ref().map(|h| h.declared.clone());
    let ctx = Context {
        topology,
        now,
        hooks: declared.as_ref().unwrap_or(&NO_HOOKS),
        hook: observation.hook.as_ref(),
    };
    for _ in 0..MAX_TRANSITIONS {
        let progress = Progress::from_operation(&op);
        let mut decision = next_step(observed, &progress, &ctx);
        if let Decision::HookEnded(end) = decision {
            hook_ended(&mut op, &end, now, out);
            decision = Decision::Advance(Transition {
                next: end.next,
                token: None,
                rollback: false,
            });
        }
        if matches!(decision, Decision::Wait(_))
            && failover_left_only_the_old_primary(&op, observation)
        {
            // The planner waits for every member's bookkeeping; a failover is complete once the
            // readable ones follow the new primary. The old one is fenced when it comes back.
            decision = Decision::Done(Outcome::Succeeded);
        }
        match decision {
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
                        "{kind} {}: {} done; step {}{}",
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
            // Turned into the transition it names above.
            Decision::HookEnded(_) => break,
            Decision::Act(action) => {
                if let Some(current) = op.steps.last_mut() {
                    current.member = Some(action.member.clone());
                }
                op.hold = None;
                out.effect = Some(action);
                break;
            }
            Decision::Wait(wait) => {
                // Waiting on a member that cannot be read is a hold to explain, not a wait;
                // the planner keeps its deadline (the recheck), the pool wakes us when it answers.
                match unreadable::hold(&progress, observation) {
                    Some(hold) => set_hold(&mut op, hold, out),
                    None => op.hold = None,
                }
                out.requeue_after = wait.recheck_after;
                break;
            }
            Decision::Hold { reason, message } => {
                let hold = Hold {
                    reason: reason.to_owned(),
                    message,
                };
                set_hold(&mut op, hold, out);
                break;
            }
            Decision::Done(outcome) => {
                let (reason, warning) = match outcome {
                    Outcome::Succeeded => (reason_for(kind, "Succeeded"), false),
                    Outcome::RolledBack => (reason_for(kind, "RolledBack"), true),
                    Outcome::Abandoned => (reason_for(kind, "Abandoned"), false),
                    Outcome::Aborted => (reason_for(kind, "Aborted"), true),
                };
                let stayed = op.rolled_back || outcome == Outcome::Aborted;
                let primary = if stayed { &op.from } else { &op.to };
                let aftermath = match kind {
                    OperationKind::Failover => format!(
                        "; {} is fenced as soon as it can be read and must be re-cloned. {}",
                        op.from,
                        status
                            .last_failover
                            .as_ref()
                            .and_then(|r| r.data_loss.as_ref())
                            .map(|w| w.summary.as_str())
                            .unwrap_or_default()
                    ),
                    OperationKind::Switchover => String::new(),
                };
                out.note(
                    warning,
                    reason,
                    "Finish",
                    format!(
                        "{kind} {} ended {outcome:?} after {:.1}s; {primary} is primary{aftermath}",
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

/// The running hook of `op` ended: its run recorded, a metric and an Event (a Warning when it
/// failed, saying what follows).
fn hook_ended(op: &mut Operation, end: &HookEnd, now: Timestamp, out: &mut Decided) {
    if let Some((phase, _, hook)) = op.running_hook() {
        let took = op
            .steps
            .last()
            .map(|s| elapsed(&s.started_at, now))
            .unwrap_or_default();
        let follows = match (end.ok, op.step) {
            (true, _) => "",
            (false, StepKind::HooksBeforeDemotion) => {
                "; nothing was demoted: the switchover ends Aborted and the primary stays"
            }
            (false, _) => "; the switchover goes on with the next hook",
        };
        out.note(
            !end.ok,
            if end.ok {
                "HookSucceeded"
            } else {
                "HookFailed"
            },
            "Hook",
            format!(
                "{} {}: hook {phase}/{} {} after {:.1}s: {}{follows}",
                op.kind,
                op.id,
                hook.name,
                if end.ok { "done" } else { "failed" },
                took.as_secs_f64(),
                end.detail
            ),
        );
        out.finished_hooks.push((phase, end.ok, took));
    }
    op.end_hook(end.ok, end.detail.clone(), now);
}

/// Holds `op` with `hold`; announced once per distinct hold.
fn set_hold(op: &mut Operation, hold: Hold, out: &mut Decided) {
    if op.hold.as_ref() != Some(&hold) {
        out.note(
            true,
            hold.reason.clone(),
            "Hold",
            format!(
                "{} {} holds at {}: {}",
                op.kind, op.id, op.step, hold.message
            ),
        );
    }
    op.hold = Some(hold);
}

/// A failover at Bookkeeping whose only member left to patch is the unreadable old primary.
fn failover_left_only_the_old_primary(op: &Operation, observation: &Observation) -> bool {
    op.kind == OperationKind::Failover
        && op.step == StepKind::Bookkeeping
        && !observation.unreachable.is_empty()
        && observation.unreachable.iter().all(|(m, _)| *m == op.from)
}

/// The member a step patches or watches, for the step log.
fn member_of(step: StepKind, progress: &Progress) -> Option<String> {
    match step {
        StepKind::Demote | StepKind::AwaitDemotionStarted | StepKind::AwaitToken => {
            Some(progress.loser().to_owned())
        }
        StepKind::CheckToken
        | StepKind::AwaitReplay
        | StepKind::Promote
        | StepKind::AwaitPromotion
        | StepKind::ClearToken => Some(progress.target().to_owned()),
        StepKind::RollbackTarget => Some(progress.to.clone()),
        // A hook step's record names its hook (`Operation::record`).
        StepKind::Validate
        | StepKind::HooksBeforeDemotion
        | StepKind::HooksAfterPromotion
        | StepKind::Bookkeeping
        | StepKind::Done => None,
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
    status.history.push(OperationRecord::of(&op));
    let excess = status.history.len().saturating_sub(HISTORY_LIMIT);
    status.history.drain(..excess);
    status.operation = None;
}

fn elapsed(since: &MicroTime, now: Timestamp) -> Duration {
    now.duration_since(since.0).unsigned_abs()
}

#[cfg(test)]
pub(crate) mod tests;
