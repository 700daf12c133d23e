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
use crate::cnpg::{Role, SourceChannel, phase, phase_reason};
use crate::conditions::reason;
use crate::model::Topology;
use crate::observed::{Observed, ObservedMember, Replay};
use crate::step::{OperationKind, StepKind};
use crate::token::PromotionToken;
use crate::validate::validate_live;

use super::progress::hooks_of;
use super::{Progress, patch};
use crate::region_api::Hooks;

/// What the state machine needs besides progress and observation.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    pub topology: &'a Topology,
    pub now: Timestamp,
    /// The hooks the operation runs (`status.operation.hooks.declared`, copied from the
    /// topology's `spec.hooks` when the switchover started); [`NO_HOOKS`] for none.
    pub hooks: &'a Hooks,
    /// This reconcile's look at the running hook (the controller runs it only once the step log
    /// on the hub shows that hook's step).
    pub hook: Option<&'a HookLook>,
}

/// No hooks.
pub static NO_HOOKS: Hooks = Hooks {
    before_demotion: Vec::new(),
    after_promotion: Vec::new(),
};

/// A hook's timeout when it names none.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(300);
/// While a hook runs: look at it again this often (applications have no watch here).
pub const HOOK_RECHECK: Duration = Duration::from_secs(1);

/// How a hook stands after one look.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HookState {
    /// Done; what was done.
    Done(String),
    /// Not yet; what is awaited.
    Waiting(String),
    /// It cannot succeed (e.g. the credential may not do it): why, and the fix.
    Failed(String),
}

/// One look at the hook `index` of `step` (a hook step).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookLook {
    pub step: StepKind,
    pub index: usize,
    pub state: HookState,
}

/// The running hook ended: record its run, then move to `next`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookEnd {
    pub ok: bool,
    /// What it did, or why it failed.
    pub detail: String,
    /// The same hook step (the next hook), the step after the hooks, or `Done` (a hook before
    /// the demotion failed: the operation ends `Aborted`).
    pub next: StepKind,
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
    /// The running hook ended: record its run durably, then the transition to `next`.
    HookEnded(HookEnd),
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
        let next = step.next(p.kind, old_reachable);
        // A switchover of a topology with hooks before the demotion runs them first.
        if next == StepKind::Demote
            && p.kind == OperationKind::Switchover
            && !ctx.hooks.before_demotion.is_empty()
        {
            return advance(StepKind::HooksBeforeDemotion);
        }
        advance(next)
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
        StepKind::AwaitReplay => await_replay(observed, progress, ctx),
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
        StepKind::HooksBeforeDemotion | StepKind::HooksAfterPromotion => run_hooks(progress, ctx),
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
        } else if progress.aborted {
            Outcome::Aborted
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
/// `expired` builds from the step's limit. The limit, not the time elapsed: a hold's text stays
/// the same at every reconcile while it lasts (every member change decides it again), so it is
/// announced once — one Warning Event and one status write, not one per member change.
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
        Err(_) => hold(reason, expired(limit)),
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
    // A failover from a primary that cannot be read, or that can be read but is fenced (every
    // instance stopped: it takes no write, whether its spec still says primary or a demotion
    // already made it a replica): only the target must be usable. The next step demotes a
    // readable old primary by spec before the target is promoted, so the specs never name two.
    let old_stopped = reachable(observed, &progress.from).is_none_or(|m| m.status.fenced);
    if failover && old_stopped {
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
        |limit| {
            format!(
                "{} shows no demotion {}s after the demote patch (no inProgress, no token). Check the CNPG operator in that cluster; the primary may still accept writes (PR 11268). Federator will not promote.",
                progress.from,
                limit.as_secs()
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
        |limit| {
            format!(
                "no demotion token from {} after {}s (CNPG #5754/#9591: demotion stuck). Check its pods (fenced?) and operator log.",
                progress.from,
                limit.as_secs()
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
        // An object store in the target's channel: it must have replayed the token's LSN before
        // the promote patch takes that store away (with streaming too: a standby that was not
        // streaming when the old primary shut down has the last WAL only in the archive).
        if target.source.has_archive() && !progress.rolled_back {
            return advance(StepKind::AwaitReplay);
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

/// How often the target's replay position is read again while [`StepKind::AwaitReplay`] waits
/// on an archive-only channel: CNPG's instance status has no watch. One `pods/proxy` request
/// per interval.
pub const REPLAY_RECHECK: Duration = Duration::from_secs(1);

/// The same with streaming beside the archive: the WAL is usually replayed already, or a few
/// milliseconds later; a short first wait keeps a switchover near the physical floor.
pub const REPLAY_RECHECK_STREAMING: Duration = Duration::from_millis(100);

/// A channel with an object store: the target must have replayed the old primary's shutdown
/// checkpoint (the token's REDO location) while it still restores from the old primary's
/// object store. Its replay position past that LSN is the only proof; until then, wait
/// (deadline: promotion's). The controller reads the position in the reconcile that enters this
/// step, so a target that replayed already goes on to Promote without a second reconcile.
fn await_replay(observed: &Observed, progress: &Progress, ctx: &Context<'_>) -> Decision {
    let target = progress.target();
    let limit = ctx.topology.policies().timeouts.promotion_wait.as_std();
    let Some(m) = reachable(observed, target) else {
        return wait_unreadable(progress, ctx, limit, target);
    };
    let Some(wanted) = progress
        .token
        .as_deref()
        .and_then(|t| PromotionToken::parse(t).ok())
        .and_then(|t| t.redo_lsn())
    else {
        return hold(
            reason::TOKEN_INVALID,
            "the persisted token has no usable REDO location to wait for",
        );
    };
    let seen = match &m.status.replay {
        // The checkpoint record starts at the REDO location; replayed, the position is past it.
        Some(Replay::At(lsn)) if *lsn > wanted => return advance(StepKind::Promote),
        Some(Replay::At(lsn)) => format!("it replayed up to {lsn}"),
        Some(Replay::Unknown(why)) => format!("its instance status cannot be read: {why}"),
        None => "its instance status has not been read yet".to_owned(),
    };
    let (channel, recheck) = match m.source {
        SourceChannel::StreamingAndArchive => (
            "streaming and archive; it was not streaming when the old primary shut down, or has not replayed yet",
            REPLAY_RECHECK_STREAMING,
        ),
        _ => ("archive-only channel", REPLAY_RECHECK),
    };
    let waiting = format!(
        "waiting for {target} to replay the demotion token's LSN {wanted} from {}'s object store before promoting it ({channel}; once promoted CNPG restores from {target}'s own store); {seen}",
        progress.from
    );
    match deadline(progress, ctx, limit) {
        Ok(left) => Decision::Wait(WaitFor {
            reason: waiting,
            recheck_after: Some(left.min(recheck)),
        }),
        Err(_) => hold(
            reason::REPLAY_TIMEOUT,
            format!(
                "{target} has not replayed the demotion token's LSN {wanted} after {}s; {seen}. Check its WAL restore from {}'s object store (instance-manager log, barman-cloud-wal-restore) and, if the status cannot be read, that Federator may get pods and pods/proxy in its namespace. Federator does not promote it before: CNPG would then restore from {target}'s own store and wait for the LSN forever.",
                limit.as_secs(),
                progress.from
            ),
        ),
    }
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
        |limit| {
            format!(
                "{target} has not reported the promotion after {}s. It may still be replaying WAL up to the token's LSN; check its instance-manager log (tokenStatus).",
                limit.as_secs()
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
        // The new primary accepts writes: its applications may start (not after a rollback).
        let hooks = !progress.rolled_back && !ctx.hooks.after_promotion.is_empty();
        return advance(if hooks {
            StepKind::HooksAfterPromotion
        } else {
            StepKind::Done
        });
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

/// A hook step: waits for the running hook (the controller runs it and reports a [`HookLook`])
/// until its timeout, then records how it ended. A hook before the demotion that fails ends the
/// operation (nothing was demoted); one after the promotion is recorded and the next runs.
fn run_hooks(progress: &Progress, ctx: &Context<'_>) -> Decision {
    let step = progress.step;
    let list = hooks_of(ctx.hooks, step);
    let after_all = step.next(progress.kind, true);
    let Some(hook) = list.get(progress.hook) else {
        return advance(after_all);
    };
    let phase = step.hook_phase().unwrap_or_default();
    let limit = hook.timeout.map_or(HOOK_TIMEOUT, |d| d.as_std());
    let look = ctx
        .hook
        .filter(|l| l.step == step && l.index == progress.hook)
        .map(|l| &l.state);
    let (ok, detail) = match look {
        Some(HookState::Done(done)) => (true, done.clone()),
        Some(HookState::Failed(why)) => (false, why.clone()),
        waiting => {
            let why = match waiting {
                Some(HookState::Waiting(why)) => why.clone(),
                _ => "not run yet".to_owned(),
            };
            match deadline(progress, ctx, limit) {
                Ok(left) => {
                    return Decision::Wait(WaitFor {
                        reason: format!("hook {phase}/{}: {why}", hook.name),
                        recheck_after: Some(left.min(HOOK_RECHECK)),
                    });
                }
                Err(_) => (
                    false,
                    format!("timed out after {}s: {why}", limit.as_secs()),
                ),
            }
        }
    };
    let next = if !ok && step == StepKind::HooksBeforeDemotion {
        StepKind::Done
    } else if progress.hook + 1 < list.len() {
        step
    } else {
        after_all
    };
    Decision::HookEnded(HookEnd { ok, detail, next })
}
