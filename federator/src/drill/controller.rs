//! Drills in `federator controller`: a kube-runtime `Controller` on `DisasterRecoveryDrill`, woken
//! by changes of the drills, of the topologies running drills point at, by the times it asks for
//! (a scheduled run, a step's deadline) and by gaining the Lease. Only the leader acts.
//!
//! A reconcile reads the drill afresh, then: a run this controller drives goes on with
//! [`Executor::advance`] until it has to wait; a run another controller process left `Running`
//! (it crashed, or stopped) is taken over and goes on from the step its status records; a drill
//! that is not running is started when [`scheduler::plan`] says so. On shutdown every run this
//! process drives records where it stopped, for the next leader.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use topology::DistributedTopology;
use topology::drill_api::{DisasterRecoveryDrill, DrillPhase};

use super::run::{Executor, Next, RunError};
use super::schedule::Schedule;
use super::scheduler::{self, CONTROLLER_RUNNER};
use crate::controller::{Clock, Leadership, Metrics};

/// A scheduled drill looks at its schedule at least this often, so that a clock that jumped
/// (NTP, or the test clock) is noticed within it.
const SCHEDULE_RECHECK: Duration = Duration::from_secs(30);
/// After a conflicting write: read the drill again soon.
const CONFLICT_RETRY: Duration = Duration::from_millis(200);
/// After a failed hub request.
const ERROR_RETRY: Duration = Duration::from_secs(2);
/// Another drill of the same topology runs: look again after this.
const BUSY_RETRY: Duration = Duration::from_secs(5);

struct Ctx {
    executor: Executor,
    leader: Leadership,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    stopping: AtomicBool,
}

/// Runs the drill controller on the drills of `namespace` (all: `None`) until `shutdown`
/// resolves; then records where its running drills stopped.
pub async fn run(
    client: Client,
    namespace: Option<String>,
    leader: Leadership,
    identity: String,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let (drills, topologies): (Api<DisasterRecoveryDrill>, Api<DistributedTopology>) =
        match &namespace {
            Some(ns) => (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
            ),
            None => (Api::all(client.clone()), Api::all(client.clone())),
        };
    let ctx = Arc::new(Ctx {
        executor: Executor::new(client, format!("{CONTROLLER_RUNNER}{identity}")),
        leader: leader.clone(),
        clock,
        metrics,
        stopping: AtomicBool::new(false),
    });
    let controller = Controller::new(drills, watcher::Config::default());
    let store = controller.store();
    ctx.metrics.attach_drills(store.clone());
    // A topology change wakes the drills running on it (a switchover's progress).
    let mapper = move |topo: DistributedTopology| {
        let (ns, name) = (topo.namespace(), topo.name_any());
        store
            .state()
            .iter()
            .filter(|d| d.namespace() == ns && d.spec.topology == name)
            .filter(|d| d.status.as_ref().and_then(|s| s.phase) == Some(DrillPhase::Running))
            .map(|d| ObjectRef::from_obj(d.as_ref()))
            .collect::<Vec<_>>()
    };
    let stop = {
        let ctx = ctx.clone();
        async move {
            shutdown.await;
            ctx.stopping.store(true, Ordering::SeqCst);
        }
    };
    controller
        .watches(topologies, watcher::Config::default(), mapper)
        .reconcile_all_on(leader.gained())
        .graceful_shutdown_on(stop)
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "drill controller event");
            }
        })
        .await;
    ctx.executor.stop_all().await;
}

fn error_policy(_: Arc<DisasterRecoveryDrill>, error: &RunError, _: Arc<Ctx>) -> Action {
    if error.is_conflict() {
        Action::requeue(CONFLICT_RETRY)
    } else {
        tracing::warn!(%error, "drill reconcile");
        Action::requeue(ERROR_RETRY)
    }
}

fn until(t: Timestamp) -> Duration {
    let now = Timestamp::now();
    if t <= now {
        Duration::ZERO
    } else {
        t.duration_since(now).unsigned_abs()
    }
}

#[tracing::instrument(skip_all, fields(drill = %object.name_any(), namespace = ?object.namespace()))]
async fn reconcile(object: Arc<DisasterRecoveryDrill>, ctx: Arc<Ctx>) -> Result<Action, RunError> {
    let executor = &ctx.executor;
    let acting = || ctx.leader.is_leader() && !ctx.stopping.load(Ordering::SeqCst);
    if !acting() {
        // Not leading: whatever this process held for the drill stops (the leader drives it).
        executor.runs.forget(&object).await;
        return Ok(Action::await_change());
    }
    // The store may lag behind this controller's own last write; decide on the hub's copy.
    let Some(mut drill) = executor.hub(&object).drill(&object.name_any()).await? else {
        executor.runs.forget(&object).await;
        return Ok(Action::await_change());
    };
    let status = drill.status.clone().unwrap_or_default();
    if status.phase == Some(DrillPhase::Running) {
        let runner = status.runner.clone().unwrap_or_default();
        if !runner.starts_with(CONTROLLER_RUNNER) {
            // `federator drill` runs it in its own process.
            return Ok(Action::await_change());
        }
        if runner != executor.runner || !executor.runs.knows(&drill) {
            drill = executor.take_over(&drill).await?;
        }
        return drive(&ctx, drill).await;
    }
    let action = scheduler::plan(&drill, ctx.clock.now());
    match action {
        scheduler::Action::Nothing => {}
        scheduler::Action::Run { scheduled_for } => {
            if let Some(other) = running_on_same_topology(&ctx, &drill).await? {
                tracing::info!(drill = %drill.name_any(), %other, "waiting for another drill of the same topology");
                return Ok(Action::requeue(BUSY_RETRY));
            }
            tracing::info!(drill = %drill.name_any(), namespace = ?drill.namespace(), ?scheduled_for, "starting a drill");
            let started = executor.start(&drill, scheduled_for).await?;
            return drive(&ctx, started).await;
        }
        scheduler::Action::SetNext(next) => executor.set_next(&drill, next).await?,
        scheduler::Action::Invalid(message) => {
            executor.invalid_schedule(&drill, &message).await?;
        }
    }
    Ok(match drill.spec.schedule.as_ref().filter(|s| !s.suspend) {
        Some(spec) => {
            let next = Schedule::parse(spec)
                .ok()
                .and_then(|s| s.next_after(ctx.clock.now()));
            let wait = next
                .map(|n| {
                    let now = ctx.clock.now();
                    if n <= now {
                        Duration::ZERO
                    } else {
                        n.duration_since(now).unsigned_abs()
                    }
                })
                .unwrap_or(SCHEDULE_RECHECK);
            Action::requeue(wait.min(SCHEDULE_RECHECK))
        }
        None => Action::await_change(),
    })
}

/// Advances a run until it waits or ends (each step's status write tells the watch).
async fn drive(ctx: &Ctx, mut drill: DisasterRecoveryDrill) -> Result<Action, RunError> {
    loop {
        if !ctx.leader.is_leader() || ctx.stopping.load(Ordering::SeqCst) {
            return Ok(Action::await_change());
        }
        let (written, next) = ctx.executor.advance(drill).await?;
        drill = written;
        match next {
            Next::Continue => {}
            Next::Wait(t) => return Ok(Action::requeue(until(t))),
            // A scheduled drill goes on to record its next time.
            Next::Done => {
                ctx.metrics.drill_finished(&drill);
                return Ok(Action::requeue(Duration::ZERO));
            }
        }
    }
}

/// The name of another running drill of the same topology: two drills of one topology would
/// fight over its `spec.primary` (read when a run is about to start, not periodically).
async fn running_on_same_topology(
    ctx: &Ctx,
    drill: &DisasterRecoveryDrill,
) -> Result<Option<String>, RunError> {
    let hub = ctx.executor.hub(drill);
    let list = hub
        .drills
        .list(&ListParams::default())
        .await
        .map_err(|source| super::hub::HubError::Kube {
            what: "listing the drills of the namespace".into(),
            source,
        })?;
    Ok(list
        .items
        .into_iter()
        .filter(|d| d.name_any() != drill.name_any() && d.spec.topology == drill.spec.topology)
        .find(|d| d.status.as_ref().and_then(|s| s.phase) == Some(DrillPhase::Running))
        .map(|d| d.name_any()))
}
