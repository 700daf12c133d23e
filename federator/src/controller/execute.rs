//! The executor of one reconcile's effects ([`Effect`]), in the order `decide` listed them,
//! stopping at the first that ends the reconcile. It decides nothing: every choice is in the
//! plan; what it adds is the I/O, the leadership check right before every write, and the
//! ledger's record of what happened (`hold`, `accepted`, `forget`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::Api;
use topology::api::Outcome;
use topology::plan::Action;
use topology::{DistributedTopology, DistributedTopologyStatus, StepKind};

use super::Context;
use super::decide::Effect;
use super::effects::{act, finalizer, rotation, status_writer};
use super::error::{Error, Result};
use super::ledger::{View, Write};
use crate::members::ClusterKey;

/// How executing a plan ended.
pub enum Flow {
    /// Every effect was executed.
    Done,
    /// A dry run was refused: decide again with the refusals.
    Refused(String),
    /// Nothing more to do until a watch event: a patch or a rotation was sent (its effect comes
    /// back through a watch), or the status write was refused (the newer object is on its way).
    Stop,
}

/// The executor of one reconcile's effects.
pub struct Run<'a> {
    ctx: &'a Context,
    /// The topology as decided on; its resourceVersion is the status write's precondition.
    stored: &'a Arc<DistributedTopology>,
    view: &'a View,
    /// The hub's answer to this reconcile's status write.
    written: Option<DistributedTopology>,
}

impl<'a> Run<'a> {
    pub fn new(ctx: &'a Context, stored: &'a Arc<DistributedTopology>, view: &'a View) -> Self {
        Self {
            ctx,
            stored,
            view,
            written: None,
        }
    }

    pub async fn execute(&mut self, effects: &[Effect]) -> Result<Flow> {
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
                } => self.finished(steps, hooks, *operation, decided),
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
                    let Some(written) = self.starting()? else {
                        continue;
                    };
                    rotation::start(&ctx.hub, written, start).await?;
                    tracing::info!(reason = %start.note.reason, "{}", start.note.message);
                    ctx.events.publish(stored, &start.note).await;
                    return Ok(Flow::Stop);
                }
                Effect::StartFailover(start) => {
                    let Some(written) = self.starting()? else {
                        continue;
                    };
                    rotation::start_failover(&ctx.hub, written, start).await?;
                    ctx.metrics.automatic_failover_started();
                    tracing::warn!(reason = %start.note.reason, "{}", start.note.message);
                    ctx.events.publish(stored, &start.note).await;
                    return Ok(Flow::Stop);
                }
                Effect::AddFinalizer => {
                    leading(ctx)?;
                    stale(ctx, finalizer::add(&ctx.hub, stored).await)?;
                    return Ok(Flow::Stop);
                }
                Effect::Release => {
                    self.release().await?;
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
                    self.patch(action, operation.as_deref(), cluster.as_ref(), *answers)
                        .await?;
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
                self.written = Some(object);
                Ok(true)
            }
            // A newer version of the topology is on its way through the watch (our own last
            // write, or another writer's); it re-triggers us.
            Err(Error::Conflict(_)) => {
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

    /// What a rotation or an automatic failover starts from: the version this reconcile's
    /// status write returned (`None` when nothing was written: nothing to start from), once
    /// leadership is checked.
    fn starting(&self) -> Result<Option<&DistributedTopology>> {
        match &self.written {
            None => Ok(None),
            Some(written) => {
                leading(self.ctx)?;
                Ok(Some(written))
            }
        }
    }

    /// The durations of what this decision finished, and its rotations (metrics only).
    fn finished(
        &self,
        steps: &[(StepKind, Duration)],
        hooks: &[(&'static str, bool, Duration)],
        operation: Option<(Outcome, Duration)>,
        decided: &DistributedTopologyStatus,
    ) {
        let metrics = &self.ctx.metrics;
        for (step, took) in steps {
            metrics.step_finished(*step, *took);
        }
        for (phase, ok, took) in hooks {
            metrics.hook_finished(phase, *ok, *took);
        }
        if let Some((outcome, took)) = operation {
            metrics.operation_finished(outcome, took);
        }
        let before = self.view.on_top(self.stored);
        metrics.rotations(before.as_ref().unwrap_or(self.stored), decided);
    }

    /// The finalizer removed, on the version this reconcile's status write returned if it
    /// wrote; the ledger forgets the topology once it is gone.
    async fn release(&self) -> Result<()> {
        let ctx = self.ctx;
        leading(ctx)?;
        let current = self.written.as_ref().unwrap_or(self.stored);
        if stale(ctx, finalizer::remove(&ctx.hub, current).await)? {
            ctx.ledger.forget(self.stored);
            tracing::info!("finalizer removed; the topology is deleted");
        }
        Ok(())
    }

    /// The one member patch (after the status write succeeded), its reaction time, and the
    /// ledger's record that the member accepted it (the patch gate's).
    async fn patch(
        &self,
        action: &Action,
        operation: Option<&str>,
        cluster: Option<&ClusterKey>,
        answers: Option<Instant>,
    ) -> Result<()> {
        let (ctx, stored) = (self.ctx, self.stored);
        leading(ctx)?;
        tracing::info!(step = %action.step, member = %action.member, patch = %loggable(&action.patch), "patching member");
        if let Some(at) = answers {
            let now = ctx.ledger.now();
            ctx.metrics
                .reacted(action.step, now.saturating_duration_since(at));
            ctx.metrics
                .picked_up(action.step, self.view.now.saturating_duration_since(at));
        }
        act::send(ctx.members.as_ref(), &stored.spec.members, action, false).await?;
        if let (Some(cluster), Some(uid)) = (cluster, &stored.metadata.uid) {
            ctx.ledger.accepted(uid, operation, action, cluster.clone());
        }
        Ok(())
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

/// The patch as logged: a promotion token is shown by its length only (it is not a credential,
/// but it is the one thing that may promote a replica; it lives in status, not in logs).
pub(super) fn loggable(patch: &serde_json::Value) -> serde_json::Value {
    let mut shown = patch.clone();
    if let Some(token) = shown.pointer_mut("/spec/replica/promotionToken")
        && let Some(text) = token.as_str()
    {
        *token = serde_json::Value::String(format!("<{} bytes>", text.len()));
    }
    shown
}
