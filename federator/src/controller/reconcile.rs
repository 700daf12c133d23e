//! One reconcile of a `DistributedTopology`, as a pipeline:
//!
//! 1. **observe** (no request: the member pool's watch-fed stores) →
//! 2. **decide** (pure, [`decide`]): an ordered list of effects →
//! 3. **execute** them in order: dry runs, the status write (step log included, with a
//!    resourceVersion precondition) or its hold, Events and metrics, then at most one member
//!    patch or a rotation's `spec.primary`, only after that write succeeded.
//!
//! The writes happen only while this controller leads. Everything a reconcile logs carries the
//! topology and the operation (the `reconcile` span).

use std::sync::Arc;

use kube::Api;
use kube::runtime::controller::Action;
use topology::DistributedTopology;
use topology::autofailover::arm;

use super::Context;
use super::decide::autofailover::{probed, term_of};
use super::decide::{Effect, Input, decide};
use super::effects::{act, finalizer, rotation, status_writer};
use super::error::{Error, Result};
use super::ledger::{View, Write};
use super::observe::observe_during;
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

async fn reconcile_once(topo: Arc<DistributedTopology>, ctx: &Arc<Context>) -> Result<Action> {
    ctx.metrics.reconciled();
    let stored = ctx.ledger.freshest(topo);
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
    let status = view.status_of(&stored);
    let operation = status.and_then(|s| s.operation.as_ref());
    let mut observation = observe_during(ctx.members.as_ref(), &stored.spec.members, operation);
    if !observation.syncing.is_empty() {
        // Deciding on half a picture could misreport (or mis-plan); the end of the first list
        // is announced by the pool and wakes us again.
        tracing::debug!(syncing = ?observation.syncing, "waiting for member watches to sync");
        return Ok(Action::await_change());
    }
    // The hub's vote round (automatic failover armed only): its own ballot, the members'.
    if let Some(Ok(armed)) = arm(&stored.spec) {
        let (term, primary) = term_of(status, &stored.spec);
        let reached = !observation.unreachable.iter().any(|(m, _)| *m == primary);
        // The primary's region is probed on the round's own period and bound (the policy's),
        // not only through the member pool's liveness timeout.
        let within = armed.timing.reach_probe_timeout();
        let key = key_of(&stored);
        let known = probed(status, &stored.spec)
            .into_iter()
            .filter_map(|member| {
                let client = stored
                    .spec
                    .members
                    .iter()
                    .find(|m| m.name == member)
                    .map_or_else(
                        || Err(format!("{member} is not a member of the topology")),
                        |m| ctx.members.client(&m.cluster),
                    );
                ctx.voters.probe(&key, &member, client, within)
            })
            .collect();
        let votes = ctx
            .voters
            .round(&ctx.hub, &stored, &armed, (term, &primary), reached, known)
            .await;
        ctx.metrics.heartbeats(&key_of(&stored), &votes);
        for p in &votes.probes {
            if let Some(failed) = &p.failed {
                // The fact the pool's liveness probe records once its own timeout passed.
                observation.mark_unreachable(&p.member, failed);
            }
        }
        observation.votes = Some(votes);
    }
    // The target's replay position, only while a switchover waits for it (a pods/proxy read).
    super::replay::observe(
        ctx.members.as_ref(),
        &stored.spec.members,
        operation,
        &mut observation.observed,
    )
    .await;
    // The failover report's positions: its target until promoted, the old primary once back.
    super::replay::observe_failover(
        ctx.members.as_ref(),
        &stored.spec.members,
        (stored.spec.failover.as_ref(), stored.status.as_ref()),
        ctx.clock.now(),
        &mut observation.observed,
    )
    .await;

    // The topology's own hook, only while the step log on the hub names it (written before it
    // runs: a restarted controller runs the same hook again, idempotently, never the next).
    observation.hook = super::hooks::observe(ctx, &stored).await;

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
    let mut run = Run {
        ctx,
        stored: &stored,
        view: &view,
        written: None,
    };
    loop {
        match run.execute(&plan.effects).await? {
            Flow::Refused(problems) => plan = decide(&input, Some(&problems)),
            Flow::Stop => return Ok(Action::await_change()),
            Flow::Done => return Ok(deadlines::action(plan.requeue_after)),
        }
    }
}

/// How executing a plan ended.
enum Flow {
    /// Every effect was executed.
    Done,
    /// A dry run was refused: decide again with the refusals.
    Refused(String),
    /// Nothing more to do until a watch event: a patch or a rotation was sent (its effect comes
    /// back through a watch), or the status write was refused (the newer object is on its way).
    Stop,
}

/// The executor of one reconcile's effects.
struct Run<'a> {
    ctx: &'a Context,
    /// The topology as decided on; its resourceVersion is the status write's precondition.
    stored: &'a Arc<DistributedTopology>,
    view: &'a View,
    /// The hub's answer to this reconcile's status write.
    written: Option<DistributedTopology>,
}

impl Run<'_> {
    async fn execute(&mut self, effects: &[Effect]) -> Result<Flow> {
        let (ctx, stored) = (self.ctx, self.stored);
        let patch_follows = effects.iter().any(|e| matches!(e, Effect::Patch { .. }));
        for effect in effects {
            match effect {
                Effect::DryRun(trials) => {
                    let members = ctx.members.as_ref();
                    if let Err(problems) = act::dry_run(members, &stored.spec.members, trials).await
                    {
                        return Ok(Flow::Refused(problems));
                    }
                }
                Effect::Status(write) => {
                    if !self.record(write, patch_follows).await? {
                        return Ok(Flow::Stop);
                    }
                }
                Effect::Finished {
                    steps,
                    hooks,
                    operation,
                    decided,
                } => {
                    for (step, took) in steps {
                        ctx.metrics.step_finished(*step, *took);
                    }
                    for (phase, ok, took) in hooks {
                        ctx.metrics.hook_finished(phase, *ok, *took);
                    }
                    if let Some((outcome, took)) = operation {
                        ctx.metrics.operation_finished(*outcome, *took);
                    }
                    let before = self.view.on_top(stored);
                    ctx.metrics
                        .rotations(before.as_ref().unwrap_or(stored), decided);
                }
                Effect::Events {
                    notes,
                    during_operation,
                } => {
                    for note in notes {
                        tracing::info!(reason = %note.reason, "{}", note.message);
                    }
                    ctx.events
                        .enqueue(stored.clone(), notes.clone(), *during_operation);
                }
                Effect::Publish(note) => {
                    tracing::info!(reason = %note.reason, "{}", note.message);
                    ctx.events.publish(stored, note).await;
                }
                Effect::StartRotation(start) => {
                    let Some(written) = &self.written else {
                        continue;
                    };
                    leading(ctx)?;
                    rotation::start(&ctx.hub, written, start).await?;
                    tracing::info!(reason = %start.note.reason, "{}", start.note.message);
                    ctx.events.publish(stored, &start.note).await;
                    return Ok(Flow::Stop);
                }
                Effect::StartFailover(start) => {
                    let Some(written) = &self.written else {
                        continue;
                    };
                    leading(ctx)?;
                    rotation::start_failover(&ctx.hub, written, start).await?;
                    tracing::warn!(reason = %start.note.reason, "{}", start.note.message);
                    ctx.metrics.automatic_failover_started();
                    ctx.events.publish(stored, &start.note).await;
                    return Ok(Flow::Stop);
                }
                Effect::AddFinalizer => {
                    leading(ctx)?;
                    stale(ctx, finalizer::add(&ctx.hub, stored).await)?;
                    return Ok(Flow::Stop);
                }
                Effect::Release => {
                    leading(ctx)?;
                    // On the version this reconcile's status write returned, if it wrote.
                    let current = self.written.as_ref().unwrap_or(stored);
                    if stale(ctx, finalizer::remove(&ctx.hub, current).await)? {
                        ctx.ledger.forget(stored);
                        tracing::info!("finalizer removed; the topology is deleted");
                    }
                    return Ok(Flow::Stop);
                }
                Effect::Withheld(action) => {
                    tracing::debug!(step = %action.step, member = %action.member, "patch accepted, not yet seen by the member watch; not sent again");
                }
                Effect::Patch {
                    action,
                    operation,
                    cluster,
                    answers,
                } => {
                    leading(ctx)?;
                    tracing::info!(step = %action.step, member = %action.member, patch = %loggable(&action.patch), "patching member");
                    if let Some(at) = answers {
                        let now = ctx.ledger.now();
                        ctx.metrics
                            .reacted(action.step, now.saturating_duration_since(*at));
                        ctx.metrics
                            .picked_up(action.step, self.view.now.saturating_duration_since(*at));
                    }
                    act::send(ctx.members.as_ref(), &stored.spec.members, action, false).await?;
                    if let (Some(cluster), Some(uid)) = (cluster, &stored.metadata.uid) {
                        let operation = operation.as_deref();
                        ctx.ledger.accepted(uid, operation, action, cluster.clone());
                    }
                    return Ok(Flow::Stop);
                }
            }
        }
        Ok(Flow::Done)
    }

    /// Executes the status decision; false when the write was refused (409: stop here).
    async fn record(&mut self, write: &Write, patch_follows: bool) -> Result<bool> {
        let (ctx, stored) = (self.ctx, self.stored);
        let held = match write {
            Write::Later(held) => Some(held.as_ref().clone()),
            Write::Now(_) | Write::Nothing => None,
        };
        ctx.ledger.hold(stored, held);
        let Write::Now(status) = write else {
            return Ok(true);
        };
        let namespace = stored.metadata.namespace.as_deref().unwrap_or_default();
        let api: Api<DistributedTopology> = Api::namespaced(ctx.hub.clone(), namespace);
        let writing = ctx.ledger.now();
        let result = status_writer::write(&api, &ctx.leader, stored, status).await;
        let took = ctx.ledger.now().saturating_duration_since(writing);
        ctx.metrics.status_written(patch_follows, took);
        match result {
            Ok(object) => {
                ctx.ledger.wrote(stored, object.clone());
                self.written = Some(object);
                Ok(true)
            }
            // A newer version of the topology is on its way through the watch; it re-triggers us.
            Err(Error::Conflict(_)) => {
                ctx.ledger.write_refused(stored);
                ctx.metrics.error("conflict");
                Ok(false)
            }
            // Gone (a stale copy of a topology whose finalizer was just removed): nothing to do.
            Err(Error::WriteStatus {
                source: kube::Error::Api(status),
                ..
            }) if status.code == 404 => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// A write refused because the topology changed since it was read (409) ends the reconcile
/// without an error: the newer version comes through the watch. True when it succeeded.
fn stale(ctx: &Context, result: Result<()>) -> Result<bool> {
    match result {
        Ok(()) => Ok(true),
        Err(Error::Conflict(_)) => {
            ctx.metrics.error("conflict");
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Leadership is checked right before every write (`status_writer` checks its own).
fn leading(ctx: &Context) -> Result<()> {
    if ctx.leader.is_leader() {
        Ok(())
    } else {
        Err(Error::NotLeader)
    }
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

/// The patch as logged: a promotion token is shown by its length only (it is not a credential,
/// but it is the one thing that may promote a replica; it lives in status, not in logs).
fn loggable(patch: &serde_json::Value) -> serde_json::Value {
    let mut shown = patch.clone();
    if let Some(token) = shown.pointer_mut("/spec/replica/promotionToken")
        && let Some(text) = token.as_str()
    {
        *token = serde_json::Value::String(format!("<{} bytes>", text.len()));
    }
    shown
}

#[cfg(test)]
mod tests;
