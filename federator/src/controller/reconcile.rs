//! One reconcile of a `DistributedTopology`, as a pipeline:
//!
//! 1. **observe** (no request: the member pool's watch-fed stores) →
//! 2. **validate, plan, decide** (pure, [`decide`]) →
//! 3. **record**: write the status, step log included, with a resourceVersion precondition →
//! 4. **act**: at most one member patch, only after step 3 succeeded →
//! 5. **tell**: Events and metrics for what was recorded.
//!
//! Steps 3 and 4 are the only writes, and both happen only while this controller leads.

use std::sync::Arc;
use std::time::Instant;

use kube::Api;
use kube::runtime::controller::Action;
use topology::api::Member;
use topology::{DistributedTopology, StepKind, Topology};

use super::decide::rotation;
use super::decide::{decide, refuse};
use super::effects::{act, status_writer};
use super::error::{Error, Result};
use super::ledger::{self, Write};
use super::observe::observe_during;
use super::runtime::deadlines;
use super::{Context, effects};
use crate::members::ClusterKey;

pub async fn reconcile(topo: Arc<DistributedTopology>, ctx: Arc<Context>) -> Result<Action> {
    ctx.metrics.reconciled();
    let topo = ctx.ledger.freshest(topo);
    if !ctx.leader.is_leader() {
        // A follower neither writes nor acts; becoming leader re-reconciles everything.
        return Ok(Action::await_change());
    }
    let key = format!(
        "{}/{}",
        topo.metadata.namespace.as_deref().unwrap_or_default(),
        topo.metadata.name.as_deref().unwrap_or_default()
    );
    // Decide on top of what was held back, not yet written (the hub's object is `stored`).
    let stored = topo;
    let topo = ctx
        .ledger
        .on_top(&stored)
        .map_or_else(|| stored.clone(), Arc::new);

    if let Some(credentials) = &ctx.credentials
        && let Err(e) = credentials.refresh_directory().await
    {
        // The last good credentials stay in use; the problem is reported by the set itself.
        tracing::warn!(error = %e, "re-reading the member kubeconfig directory");
    }

    // 1. observe
    let operation = topo.status.as_ref().and_then(|s| s.operation.as_ref());
    let observation = observe_during(ctx.members.as_ref(), &topo.spec.members, operation);
    let changed_at = last_member_change(&ctx.ledger, &topo.spec.members);
    let picked_up = changed_at.map(|at| ctx.ledger.now().saturating_duration_since(at));
    if !observation.syncing.is_empty() {
        // Deciding on half a picture could misreport (or mis-plan); the end of the first list
        // is announced by the pool and wakes us again.
        tracing::debug!(topology = %key, syncing = ?observation.syncing, "waiting for member watches to sync");
        return Ok(Action::await_change());
    }

    // 2. validate → plan → decide (pure)
    let now = ctx.clock.now();
    let mut decided = decide(&topo, &observation, now);
    let uid = topo.metadata.uid.clone().unwrap_or_default();
    let operation_id = decided.status.operation.as_ref().map(|op| op.id.clone());
    let effect_cluster = decided
        .effect
        .as_ref()
        .and_then(|a| cluster_of(&topo.spec.members, &a.member));
    if let Some(action) = &decided.effect
        && let Some(cluster) = &effect_cluster
        && ctx
            .ledger
            .awaiting_watch(&uid, operation_id.as_deref(), action, cluster)
    {
        // Accepted already; the member's watch event (on its way) wakes us with it applied, and
        // if it never shows it, this reconcile comes back when the hold-back ends.
        tracing::debug!(topology = %key, step = %action.step, member = %action.member, "patch accepted, not yet seen by the member watch; not sent again");
        decided.effect = None;
        decided.requeue_after = rotation::sooner(decided.requeue_after, Some(ledger::SETTLE));
    }

    // Before the first change of a switchover: would every member accept its patch?
    if decided
        .effect
        .as_ref()
        .is_some_and(|a| a.step == StepKind::Demote)
        && let Ok(topology) = Topology::from_spec(&topo.spec)
        && let Err(problems) =
            act::dry_run_switchover(ctx.members.as_ref(), &topology, &observation.observed).await
    {
        let previous = topo
            .status
            .as_ref()
            .and_then(|s| s.operation.as_ref())
            .and_then(|op| op.hold.as_ref());
        refuse(
            &mut decided,
            previous,
            problems,
            topo.metadata.generation,
            now,
        );
    }

    // Scheduled rotations, against the status about to be written (pure): a due rotation is
    // recorded as handled in that write, before `spec.primary` is set.
    let rotation = rotation::evaluate(&topo.spec, &observation, &mut decided.status, now);

    // 3. record, before any side effect. The write also runs when the status is unchanged but a
    // patch follows: its precondition proves our view of the step log is still the latest.
    // Inside a running operation, a change with no patch after it may wait (`ledger.rs`).
    let mut written = None;
    let patch_follows = decided.effect.is_some() || rotation.start.is_some();
    let write = ctx
        .ledger
        .hold_or_write(&stored, &decided.status, patch_follows);
    let flush_after = match write {
        Write::Later(after) => Some(after),
        Write::Now | Write::Nothing => None,
    };
    if write == Write::Now {
        let api: Api<DistributedTopology> = Api::namespaced(
            ctx.hub.clone(),
            topo.metadata.namespace.as_deref().unwrap_or_default(),
        );
        let writing = ctx.ledger.now();
        let result = status_writer::write(&api, &ctx.leader, &topo, &decided.status).await;
        ctx.metrics.status_written(
            decided.effect.is_some(),
            ctx.ledger.now().saturating_duration_since(writing),
        );
        match result {
            Ok(object) => {
                ctx.ledger.wrote(&topo, object.clone());
                written = Some(object);
            }
            // A newer version of the topology is on its way through the watch; it re-triggers us.
            Err(Error::Conflict(_)) => {
                ctx.ledger.write_refused(&topo);
                ctx.metrics.error("conflict");
                return Ok(Action::await_change());
            }
            Err(e) => return Err(e),
        }
    }
    for (step, took) in &decided.finished_steps {
        ctx.metrics.step_finished(*step, *took);
    }
    if let Some((outcome, took)) = decided.finished_operation {
        ctx.metrics.operation_finished(outcome, took);
    }
    ctx.metrics.rotations(&topo, &decided.status);
    for note in &decided.events {
        tracing::info!(topology = %key, reason = %note.reason, "{}", note.message);
    }
    // Events go to the ordered publisher (`events.rs`), off this path: the member patch below
    // does not wait for them, and while a switchover runs they wait for it to finish or hold.
    let during_operation = decided
        .status
        .operation
        .as_ref()
        .is_some_and(|op| op.outcome.is_none() && op.hold.is_none());
    ctx.events
        .enqueue(topo.clone(), decided.events.clone(), during_operation);
    for note in &rotation.events {
        tracing::info!(topology = %key, reason = %note.reason, "{}", note.message);
        ctx.events.publish(&topo, note).await;
    }
    if let Some(start) = &rotation.start
        && let Some(written) = &written
    {
        if !ctx.leader.is_leader() {
            return Err(Error::NotLeader);
        }
        effects::rotation::start(&ctx.hub, written, start).await?;
        tracing::info!(topology = %key, reason = %start.note.reason, "{}", start.note.message);
        ctx.events.publish(&topo, &start.note).await;
        // The spec change comes back through the watch and starts the switchover.
        return Ok(Action::await_change());
    }

    // 4. act: the single side effect, now that the step log says it is about to happen.
    if let Some(action) = &decided.effect {
        if !ctx.leader.is_leader() {
            return Err(Error::NotLeader);
        }
        tracing::info!(topology = %key, step = %action.step, member = %action.member, patch = %loggable(&action.patch), "patching member");
        // Demote answers the hub's spec change, not a member's: its reaction is not a member's.
        if action.step != StepKind::Demote
            && let Some(at) = changed_at
        {
            ctx.metrics
                .reacted(action.step, ctx.ledger.now().saturating_duration_since(at));
            if let Some(picked_up) = picked_up {
                ctx.metrics.picked_up(action.step, picked_up);
            }
        }
        act::send(ctx.members.as_ref(), &topo.spec.members, action, false).await?;
        if let Some(cluster) = effect_cluster {
            ctx.ledger
                .accepted(&uid, operation_id.as_deref(), action, cluster);
        }
        // The member's watcher sees the change and wakes us; no timer needed.
        return Ok(Action::await_change());
    }
    Ok(deadlines::action(rotation::sooner(
        rotation::sooner(decided.requeue_after, rotation.requeue_after),
        flush_after,
    )))
}

/// When the member pool last delivered a change of one of `members`' Clusters: the change a
/// patch of this reconcile answers (the start of `federator_reaction_seconds`).
fn last_member_change(ledger: &ledger::Ledger, members: &[Member]) -> Option<Instant> {
    members
        .iter()
        .filter_map(|m| ledger.last_delivered(&ClusterKey::of_member(m)))
        .max()
}

/// The Cluster that topology member `name` stands for.
fn cluster_of(members: &[Member], name: &str) -> Option<ClusterKey> {
    members
        .iter()
        .find(|m| m.name == name)
        .map(ClusterKey::of_member)
}

/// After a failed reconcile: count it, log it, retry soon.
pub fn error_policy(topo: Arc<DistributedTopology>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.error(error.metric_label());
    tracing::warn!(
        topology = %topo.metadata.name.as_deref().unwrap_or_default(),
        error = %error,
        "reconcile failed; retrying in {}s",
        deadlines::RETRY.as_secs()
    );
    Action::requeue(deadlines::RETRY)
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
