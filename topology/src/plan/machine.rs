//! [`next_step`]: one decision of the switchover state machine.
//!
//! Each call looks at the persisted progress and the latest observation and answers with one
//! thing to do. A step's side effect is never assumed: a patch counts as done only once the
//! member's observed spec shows it, so after a crash the same call simply returns the same patch
//! again (harmless: merge patches are idempotent) or moves on.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

use crate::api::Outcome;
use crate::cnpg::{Role, phase, phase_reason};
use crate::conditions::reason;
use crate::model::Topology;
use crate::observed::{Observed, ObservedMember};
use crate::step::{OperationKind, StepKind};
use crate::token::PromotionToken;
use crate::validate::validate_live;

use super::{Progress, patch};

/// What the state machine needs besides progress and observation.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    pub topology: &'a Topology,
    pub now: Timestamp,
}

/// One decision.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Send `patch` to `member` (after the current step is durably recorded).
    Act(Action),
    /// The current step is complete: record the transition durably, then ask again.
    Advance(Transition),
    /// Nothing to do until a member changes, or until `recheck_after` passes (a deadline or a
    /// retry interval).
    Wait(WaitFor),
    /// Stop and tell a human; `reason` is one of [`crate::conditions::reason`].
    Hold {
        reason: &'static str,
        message: String,
    },
    /// The operation is over.
    Done(Outcome),
}

/// A patch to send.
#[derive(Clone, Debug, PartialEq)]
pub struct Action {
    pub step: StepKind,
    /// Topology name of the member to patch.
    pub member: String,
    /// JSON merge patch of the member's `Cluster`; it touches only `spec.replica`.
    pub patch: Value,
}

/// A move to the next step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub next: StepKind,
    /// A demotion token to persist (set once, the first time it is seen).
    pub token: Option<String>,
    /// This transition starts a rollback to the old primary.
    pub rollback: bool,
}

/// Why the machine waits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaitFor {
    pub reason: String,
    pub recheck_after: Option<Duration>,
}

fn advance(next: StepKind) -> Decision {
    Decision::Advance(Transition {
        next,
        token: None,
        rollback: false,
    })
}

fn hold(reason: &'static str, message: impl Into<String>) -> Decision {
    Decision::Hold {
        reason,
        message: message.into(),
    }
}

/// The next decision for `progress` given what is observed now.
pub fn next_step(observed: &Observed, progress: &Progress, ctx: &Context<'_>) -> Decision {
    let step = progress.step;
    let next = |p: &Progress| {
        let old_reachable = observed.get(&p.from).is_some_and(|m| m.reachable);
        advance(step.next(p.kind, old_reachable))
    };
    match step {
        StepKind::Validate => validate(observed, progress, ctx).unwrap_or_else(|| next(progress)),
        StepKind::Demote => act_until_applied(
            observed,
            progress,
            ctx,
            &progress.from,
            demote_patch(ctx.topology, progress),
            ctx.topology.policies().timeouts.demotion_start.as_std(),
        )
        .unwrap_or_else(|| next(progress)),
        StepKind::AwaitDemotionStarted => await_demotion_started(observed, progress, ctx),
        StepKind::AwaitToken => await_token(observed, progress, ctx),
        StepKind::CheckToken => check_token(observed, progress),
        StepKind::Promote => promote(observed, progress, ctx).unwrap_or_else(|| next(progress)),
        StepKind::AwaitPromotion => await_promotion(observed, progress, ctx),
        StepKind::Bookkeeping => {
            let members = observed.by_member(ctx.topology);
            let pending = bookkeeping_actions(ctx.topology, &members, progress, false);
            let unreachable =
                bookkeeping_actions(ctx.topology, &members, progress, true).len() > pending.len();
            match pending.into_iter().next() {
                Some((member, patch)) => Decision::Act(Action {
                    step,
                    member,
                    patch,
                }),
                None if unreachable => Decision::Wait(WaitFor {
                    reason: "some members cannot be read; their bookkeeping patch is pending"
                        .into(),
                    recheck_after: Some(
                        ctx.topology.policies().timeouts.bookkeeping_retry.as_std(),
                    ),
                }),
                None => next(progress),
            }
        }
        StepKind::ClearToken => clear_token(observed, progress, ctx),
        StepKind::RollbackTarget => act_until_applied(
            observed,
            progress,
            ctx,
            &progress.to,
            patch::rollback_target(&progress.from),
            ctx.topology.policies().timeouts.promotion_wait.as_std(),
        )
        .unwrap_or_else(|| next(progress)),
        StepKind::Done => Decision::Done(if progress.rolled_back {
            Outcome::RolledBack
        } else {
            Outcome::Succeeded
        }),
    }
}

/// The Demote patch: `primary: to`, plus the old primary's new source where the shape re-roots.
pub(super) fn demote_patch(topology: &Topology, progress: &Progress) -> Value {
    let source = if topology.shape().reroots() {
        topology
            .position(&progress.from)
            .and_then(|i| topology.desired_source_names(&progress.to)[i])
    } else {
        None
    };
    patch::demote(&progress.to, source)
}

/// Bookkeeping patches still needed, in member order: every member except the target (and the
/// old primary, whose Demote patch already did it — unless a failover skipped the demotion)
/// must name the target as primary and, where the shape re-roots, take its new source.
/// With `include_unreachable`, members that cannot be read are listed too. `observed` is
/// `Observed::by_member(topology)`.
pub(super) fn bookkeeping_actions(
    topology: &Topology,
    observed: &[Option<&ObservedMember>],
    progress: &Progress,
    include_unreachable: bool,
) -> Vec<(String, Value)> {
    let target = progress.target();
    let reroots = topology.shape().reroots();
    topology
        .names()
        .iter()
        .zip(topology.desired_source_names(target))
        .zip(observed)
        .filter(|((name, _), _)| name.as_str() != target)
        .filter_map(|((name, source), member)| {
            let source = source.filter(|_| reroots);
            let pending = match member {
                Some(m) if m.reachable => {
                    !patch::bookkeeping_applied(m.replica.as_ref(), target, source)
                }
                _ => include_unreachable,
            };
            pending.then(|| (name.clone(), patch::bookkeeping(target, source)))
        })
        .collect()
}

/// Elapsed time in the current step, and the time left before `limit`.
fn deadline(progress: &Progress, ctx: &Context<'_>, limit: Duration) -> Result<Duration, Duration> {
    let elapsed = ctx
        .now
        .duration_since(progress.step_started_at)
        .unsigned_abs();
    match limit.checked_sub(elapsed) {
        Some(left) if !left.is_zero() => Ok(left),
        _ => Err(elapsed),
    }
}

/// Waits while the step's deadline has not passed; past it, holds with `reason` and the message
/// `expired` builds from the elapsed time.
fn wait_until_deadline(
    progress: &Progress,
    ctx: &Context<'_>,
    limit: Duration,
    waiting: String,
    reason: &'static str,
    expired: impl FnOnce(Duration) -> String,
) -> Decision {
    match deadline(progress, ctx, limit) {
        Ok(left) => Decision::Wait(WaitFor {
            reason: waiting,
            recheck_after: Some(left),
        }),
        Err(elapsed) => hold(reason, expired(elapsed)),
    }
}

/// Waits for an unreadable member until the step's deadline, then holds.
fn wait_unreadable(
    progress: &Progress,
    ctx: &Context<'_>,
    limit: Duration,
    member: &str,
) -> Decision {
    let why = format!("{member} cannot be read");
    let message = format!("{why}, past the step's deadline");
    wait_until_deadline(
        progress,
        ctx,
        limit,
        why,
        reason::MEMBER_UNREACHABLE_HOLD,
        |_| message,
    )
}

fn reachable<'a>(observed: &'a Observed, name: &str) -> Option<&'a ObservedMember> {
    observed.get(name).filter(|m| m.reachable)
}

/// `None` when the step may advance.
fn validate(observed: &Observed, progress: &Progress, ctx: &Context<'_>) -> Option<Decision> {
    if observed.primary() == Some(progress.to.as_str()) {
        return Some(Decision::Done(Outcome::Succeeded));
    }
    let failover = progress.kind == OperationKind::Failover;
    let old_reachable = reachable(observed, &progress.from).is_some();
    if failover && !old_reachable {
        // An explicit failover from an unreachable primary: only the target must be usable.
        return match reachable(observed, &progress.to) {
            Some(_) => None,
            None => Some(hold(
                reason::MEMBER_UNREACHABLE_HOLD,
                format!("the failover target {} cannot be read", progress.to),
            )),
        };
    }
    if let Err(problems) = validate_live(ctx.topology, observed, Some(&progress.to)) {
        return Some(hold(reason::VALIDATION_FAILED, problems.to_string()));
    }
    if observed.primary() != Some(progress.from.as_str()) {
        return Some(hold(
            reason::UNEXPECTED_SPEC,
            format!("{} is no longer the primary by spec", progress.from),
        ));
    }
    let target = reachable(observed, &progress.to)?;
    if !failover && !target.is_healthy() {
        return Some(hold(
            reason::MEMBER_NOT_READY,
            format!(
                "the target {} is not healthy (phase {:?}); a planned switchover needs a ready replica",
                progress.to,
                target.status.phase.as_deref().unwrap_or("unknown")
            ),
        ));
    }
    None
}

/// Sends `patch` to `member` until its spec shows it. `None`: applied, advance.
fn act_until_applied(
    observed: &Observed,
    progress: &Progress,
    ctx: &Context<'_>,
    member: &str,
    patch: Value,
    limit: Duration,
) -> Option<Decision> {
    let Some(m) = reachable(observed, member) else {
        return Some(wait_unreadable(progress, ctx, limit, member));
    };
    if patch::is_applied(m.replica.as_ref(), &patch) {
        return None;
    }
    Some(Decision::Act(Action {
        step: progress.step,
        member: member.to_owned(),
        patch,
    }))
}

/// A `ReplicaClusterSwitch` transition to True after the Demote step began.
fn demotion_completed(m: &ObservedMember, progress: &Progress) -> bool {
    match (m.status.replica_switch, progress.demote_started_at) {
        (Some((true, at)), Some(since)) => at > since && !m.status.switch_in_progress,
        _ => false,
    }
}

fn await_demotion_started(observed: &Observed, progress: &Progress, ctx: &Context<'_>) -> Decision {
    let limit = ctx.topology.policies().timeouts.demotion_start.as_std();
    let Some(old) = reachable(observed, &progress.from) else {
        return wait_unreadable(progress, ctx, limit, &progress.from);
    };
    if old.role() == Some(Role::Primary) {
        return hold(
            reason::UNEXPECTED_SPEC,
            format!(
                "{}'s spec is primary again; someone reverted the demotion",
                progress.from
            ),
        );
    }
    if old.status.switch_in_progress
        || old.status.demotion_token.is_some()
        || progress.token.is_some()
        || demotion_completed(old, progress)
    {
        return advance(StepKind::AwaitToken);
    }
    wait_until_deadline(
        progress,
        ctx,
        limit,
        format!("waiting for {} to start its demotion", progress.from),
        reason::DEMOTION_NOT_STARTED,
        |elapsed| {
            format!(
                "{} shows no demotion {}s after the demote patch (no inProgress, no token). Check the CNPG operator in that cluster; the primary may still accept writes (PR 11268). Federator will not promote.",
                progress.from,
                elapsed.as_secs()
            )
        },
    )
}

fn await_token(observed: &Observed, progress: &Progress, ctx: &Context<'_>) -> Decision {
    if progress.token.is_some() {
        return advance(StepKind::CheckToken);
    }
    let limit = ctx.topology.policies().timeouts.token_wait.as_std();
    let Some(old) = reachable(observed, &progress.from) else {
        return wait_unreadable(progress, ctx, limit, &progress.from);
    };
    if let Some(token) = &old.status.demotion_token {
        return Decision::Advance(Transition {
            next: StepKind::CheckToken,
            token: Some(token.clone()),
            rollback: false,
        });
    }
    if demotion_completed(old, progress) {
        return hold(
            reason::TOKEN_LOST,
            format!(
                "{}'s demotion completed but its demotion token is empty (CNPG #11074). Promote {} back, or rebuild the token from its pg_controldata; Federator will not guess it.",
                progress.from, progress.from
            ),
        );
    }
    wait_until_deadline(
        progress,
        ctx,
        limit,
        format!("waiting for {}'s demotion token", progress.from),
        reason::TOKEN_TIMEOUT,
        |elapsed| {
            format!(
                "no demotion token from {} after {}s (CNPG #5754/#9591: demotion stuck). Check its pods (fenced?) and operator log.",
                progress.from,
                elapsed.as_secs()
            )
        },
    )
}

fn check_token(observed: &Observed, progress: &Progress) -> Decision {
    let Some(encoded) = &progress.token else {
        return hold(
            reason::TOKEN_LOST,
            "no token was persisted for this demotion",
        );
    };
    let token = match PromotionToken::parse(encoded) {
        Ok(t) => t,
        Err(e) => {
            return hold(
                reason::TOKEN_INVALID,
                format!("the demotion token is unusable: {e}"),
            );
        }
    };
    if let Some(target) = reachable(observed, &progress.to) {
        if let Some(sysid) = &target.status.system_id
            && *sysid != token.database_system_identifier
        {
            return hold(
                reason::TOKEN_INVALID,
                format!(
                    "the token's system id {} differs from {}'s {sysid}; it is not a copy of {}",
                    token.database_system_identifier, progress.to, progress.from
                ),
            );
        }
        if let (Some(current), Some(wanted)) = (target.status.timeline_id, token.timeline())
            && i64::from(wanted) < current
        {
            return hold(
                reason::TOKEN_INVALID,
                format!(
                    "the token's timeline {wanted} is behind {}'s timeline {current}; CNPG would refuse it",
                    progress.to
                ),
            );
        }
    } else {
        return Decision::Wait(WaitFor {
            reason: format!(
                "{} cannot be read to check the token against it",
                progress.to
            ),
            recheck_after: None,
        });
    }
    advance(StepKind::Promote)
}

/// `None` when the promotion patch is applied.
fn promote(observed: &Observed, progress: &Progress, ctx: &Context<'_>) -> Option<Decision> {
    let target = progress.target();
    // Never two primaries by spec: every other readable member must already be a replica. Only
    // an explicit failover may go ahead while the old primary cannot be read.
    let other_primary = observed
        .primaries()
        .find(|m| m.name != target)
        .map(|m| m.name.clone());
    if let Some(other) = other_primary {
        return Some(hold(
            reason::UNEXPECTED_SPEC,
            format!("{other} is still primary by spec; promoting {target} would make two"),
        ));
    }
    let token = match (progress.kind, &progress.token) {
        (_, Some(t)) => Some(t.as_str()),
        (OperationKind::Failover, None) => None,
        (OperationKind::Switchover, None) => {
            return Some(hold(
                reason::TOKEN_LOST,
                "no persisted token; a switchover never promotes without one",
            ));
        }
    };
    act_until_applied(
        observed,
        progress,
        ctx,
        target,
        patch::promote(target, token),
        ctx.topology.policies().timeouts.promotion_wait.as_std(),
    )
}

fn await_promotion(observed: &Observed, progress: &Progress, ctx: &Context<'_>) -> Decision {
    let target = progress.target();
    let limit = ctx.topology.policies().timeouts.promotion_wait.as_std();
    let Some(m) = reachable(observed, target) else {
        return wait_unreadable(progress, ctx, limit, target);
    };
    let promoted = match &progress.token {
        Some(token) => m.status.last_promotion_token.as_ref() == Some(token),
        // A failover has no token: the promoted instance reporting itself primary is the fact.
        None => m.role() == Some(Role::Primary) && m.status.instance_is_primary,
    };
    if promoted && m.is_healthy() {
        return advance(StepKind::Bookkeeping);
    }
    let fatal = m.status.phase.as_deref() == Some(phase::UNRECOVERABLE)
        && m.status.phase_reason.as_deref() == Some(phase_reason::TOKEN_NOT_CORRECT);
    if fatal && !progress.rolled_back && progress.kind == OperationKind::Switchover {
        return Decision::Advance(Transition {
            next: StepKind::RollbackTarget,
            token: None,
            rollback: true,
        });
    }
    if fatal {
        return hold(
            reason::ROLLBACK_FAILED,
            format!(
                "{target} rejected the token too; both clusters are replicas. Inspect pg_controldata on {} and {}.",
                progress.from, progress.to
            ),
        );
    }
    wait_until_deadline(
        progress,
        ctx,
        limit,
        format!(
            "waiting for {target} to promote (phase {:?})",
            m.status.phase.as_deref().unwrap_or("unknown")
        ),
        reason::PROMOTION_TIMEOUT,
        |elapsed| {
            format!(
                "{target} has not reported the promotion after {}s. It may still be replaying WAL up to the token's LSN; check its instance-manager log (tokenStatus).",
                elapsed.as_secs()
            )
        },
    )
}

fn clear_token(observed: &Observed, progress: &Progress, ctx: &Context<'_>) -> Decision {
    let target = progress.target();
    let limit = ctx.topology.policies().timeouts.promotion_wait.as_std();
    let Some(m) = reachable(observed, target) else {
        return wait_unreadable(progress, ctx, limit, target);
    };
    if m.promotion_token().is_none() {
        return advance(StepKind::Done);
    }
    // #9273: clearing earlier would let a pending promotion skip the LSN check.
    if m.status.last_promotion_token.as_deref() != m.promotion_token() {
        return Decision::Wait(WaitFor {
            reason: format!("{target} has not reported lastPromotionToken for its token yet"),
            recheck_after: None,
        });
    }
    Decision::Act(Action {
        step: StepKind::ClearToken,
        member: target.to_owned(),
        patch: patch::clear_token(),
    })
}
