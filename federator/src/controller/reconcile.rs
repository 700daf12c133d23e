//! One reconcile of a `DistributedTopology`, as a pipeline:
//!
//! 1. **observe** ([`observe`]: the member pool's watch-fed stores, and at the edge the
//!    automatic-failover vote round, replay positions and the running hook) →
//! 2. **decide** (pure, [`decide`]): an ordered list of effects →
//! 3. **execute** them in order ([`execute`]): dry runs, the status write (step log included,
//!    with a resourceVersion precondition) or its hold, Events and metrics, then at most one
//!    member patch or a rotation's `spec.primary`, only after that write succeeded.
//!
//! The writes happen only while this controller leads. Everything a reconcile logs carries the
//! topology and the operation (the `reconcile` span).

use std::sync::Arc;

use kube::runtime::controller::Action;
use topology::DistributedTopology;

use super::Context;
use super::decide::{Input, decide};
use super::error::{Error, Result};
use super::execute::{Flow, Run};
use super::ledger::View;
use super::observe::{Observation, observe_during};
use super::runtime::deadlines;

#[tracing::instrument(
    name = "reconcile",
    skip_all,
    fields(topology = %key_of(&topo), operation = tracing::field::Empty)
)]
pub async fn reconcile(topo: Arc<DistributedTopology>, ctx: Arc<Context>) -> Result<Action> {
    let done = reconcile_once(topo.clone(), &ctx).await;
    if done.is_ok() {
        ctx.ledger.reconciled(&topo);
    }
    done
}

/// `stored` is the hub store's copy: it may lag this process's own last status write by a few
/// milliseconds, and then the status write's precondition refuses what is decided on it (409).
async fn reconcile_once(stored: Arc<DistributedTopology>, ctx: &Arc<Context>) -> Result<Action> {
    ctx.metrics.reconciled();
    if !ctx.leader.is_leader() {
        // A follower neither writes nor acts; becoming leader re-reconciles everything.
        return Ok(Action::await_change());
    }
    if let Some(credentials) = &ctx.credentials
        && let Err(e) = credentials.refresh_directory().await
    {
        // The last good credentials stay in use; the problem is reported by the set itself.
        tracing::warn!(error = %e, "re-reading the member kubeconfig directory");
    }

    // 1. observe
    let view = ctx.ledger.view(&stored);
    let Some(observation) = observe(ctx, &stored, &view).await else {
        return Ok(Action::await_change());
    };

    // 2. decide (pure)
    let input = Input {
        stored: &stored,
        observation: &observation,
        ledger: &view,
        now: ctx.clock.now(),
    };
    let mut plan = decide(&input, None);
    if let Some(id) = &plan.operation {
        tracing::Span::current().record("operation", id.as_str());
    }

    // 3. execute, in order
    let mut run = Run::new(ctx, &stored, &view);
    loop {
        match run.execute(&plan.effects).await? {
            Flow::Refused(problems) => plan = decide(&input, Some(&problems)),
            Flow::Stop => return Ok(Action::await_change()),
            Flow::Done => return Ok(deadlines::action(plan.requeue_after)),
        }
    }
}

/// Everything this reconcile decides on about the members: the pool's stores, then what is
/// read at the edge. `None` while a member's watch has not finished its first list: deciding on
/// half a picture could misreport (or mis-plan); the end of that list is announced by the pool
/// and wakes the topology again.
async fn observe(ctx: &Context, stored: &DistributedTopology, view: &View) -> Option<Observation> {
    let status = view.status_of(stored);
    let operation = status.and_then(|s| s.operation.as_ref());
    let members = &stored.spec.members;
    let mut observation = observe_during(ctx.members.as_ref(), members, operation);
    if !observation.syncing.is_empty() {
        tracing::debug!(syncing = ?observation.syncing, "waiting for member watches to sync");
        return None;
    }
    super::votes::observe(ctx, stored, status, &key_of(stored), &mut observation).await;
    // The target's replay position, only while a switchover waits for it (a pods/proxy read).
    let observed = &mut observation.observed;
    let schemes = &ctx.status_schemes;
    super::replay::observe(ctx.members.as_ref(), schemes, members, operation, observed).await;
    // The failover report's positions: its target until promoted, the old primary once back.
    let failover = (stored.spec.failover.as_ref(), stored.status.as_ref());
    super::replay::observe_failover(
        ctx.members.as_ref(),
        schemes,
        members,
        failover,
        ctx.clock.now(),
        observed,
    )
    .await;
    // The topology's own hook, only while the step log on the hub names it (written before it
    // runs: a restarted controller runs the same hook again, idempotently, never the next).
    observation.hook = super::hooks::observe(ctx, stored).await;
    Some(observation)
}

/// `namespace/name`.
fn key_of(topo: &DistributedTopology) -> String {
    format!(
        "{}/{}",
        topo.metadata.namespace.as_deref().unwrap_or_default(),
        topo.metadata.name.as_deref().unwrap_or_default()
    )
}

/// After a failed reconcile: count it, log it, retry after a delay that grows with the
/// failures in a row (`ledger::RETRY_FIRST` doubling to `ledger::RETRY_MAX`).
pub fn error_policy(topo: Arc<DistributedTopology>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.error(error.metric_label());
    let (failures, retry) = ctx.ledger.failed(&topo);
    tracing::warn!(
        topology = %key_of(&topo),
        error = %error,
        failures,
        "reconcile failed; retrying in {:.1}s",
        retry.as_secs_f64()
    );
    Action::requeue(retry)
}

#[cfg(test)]
mod tests;
