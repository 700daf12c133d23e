//! The hub controller: a kube-runtime `Controller` on `DistributedTopology`, woken by changes of
//! the topologies themselves and of their members' CNPG `Cluster`s (watchers in the member pool),
//! by deadlines (timers), and by gaining the lease. See `docs/controller.md`.

mod decide;
mod effects;
mod error;
mod execute;
mod hooks;
mod ledger;
mod observe;
mod reconcile;
mod replay;
mod runtime;
mod votes;

use std::sync::Arc;

use futures::{Stream, StreamExt};
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client};
use topology::DistributedTopology;
use topology::api::Member;

use crate::members::MemberEvent;

pub(crate) use decide::rotation::{schedule_step, whole_second};
pub use effects::events::{Events, publish_best_effort};
pub use error::Error;
pub use ledger::Ledger;
pub use observe::{MemberRead, Members};
pub use runtime::clock::{Clock, FileClock, Monotonic, SystemClock, SystemMonotonic};
pub use runtime::leader::{Leadership, LeaseOptions};
pub use runtime::metrics::{Metrics, Readiness, serve as serve_metrics};

/// What every reconcile shares.
pub struct Context {
    /// The hub: topologies, their status, Events.
    pub hub: Client,
    /// Member Clusters (watch-fed) and member clients.
    pub members: Arc<dyn Members>,
    pub leader: Leadership,
    pub events: Events,
    pub metrics: Arc<Metrics>,
    /// Member credentials; a directory of kubeconfigs is re-checked (a cheap `stat`) at every
    /// reconcile, so an edited file takes effect without a restart or a SIGHUP.
    pub credentials: Option<kubeconfigs::CredentialSet>,
    /// "Now" for every reconcile: [`SystemClock`] in production, a test clock in tests.
    pub clock: Arc<dyn Clock>,
    /// What is remembered between reconciles (held status changes, patches sent, delivery
    /// times), on its own monotonic clock; see `ledger.rs`.
    pub ledger: Ledger,
    /// The hub voter's memory of the agents' heartbeats (automatic failover), on its own
    /// monotonic clock.
    pub voters: crate::autofailover::hub::HubVoters,
    /// Each instance pod's status scheme, so the replay read before Promote is one request.
    pub status_schemes: replay::StatusSchemes,
}

/// Runs the controller on the topologies of `namespace` (all namespaces: `None`) until
/// `shutdown` resolves. `member_changes` yields every change the
/// member pool sees; each wakes exactly the topologies concerned.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<&str>,
    member_changes: impl Stream<Item = MemberEvent> + Send + 'static,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let api: Api<DistributedTopology> = match namespace {
        Some(ns) => Api::namespaced(ctx.hub.clone(), ns),
        None => Api::all(ctx.hub.clone()),
    };
    let controller = Controller::new(api, watcher::Config::default());
    let store = controller.store();
    ctx.metrics.attach_topologies(store.clone());
    let delivered = ctx.clone();
    let triggers = member_changes.flat_map(move |event| {
        // The delivery time is where a reaction starts, and what reopens the patch gate.
        if let MemberEvent::Cluster(key) = &event {
            delivered.ledger.delivered(key);
        }
        futures::stream::iter(topologies_of(&store, &event))
    });
    controller
        .reconcile_on(triggers)
        .reconcile_all_on(ctx.leader.gained())
        .graceful_shutdown_on(shutdown)
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "controller event");
            }
        })
        .await;
}

/// The topologies in `store` a member event concerns: those listing the changed Cluster, those
/// with a member in a cluster whose reachability or credential changed, or all after a resync.
fn topologies_of(
    store: &Store<DistributedTopology>,
    event: &MemberEvent,
) -> Vec<ObjectRef<DistributedTopology>> {
    let concerns = |member: &Member| match event {
        MemberEvent::Cluster(key) => {
            member.cluster == key.member
                && member.namespace == key.namespace
                && member.cluster_name() == key.name
        }
        MemberEvent::Member(cluster) => member.cluster == *cluster,
        MemberEvent::Resync => true,
    };
    store
        .state()
        .iter()
        .filter(|t| t.spec.members.iter().any(concerns))
        .map(|t| ObjectRef::from_obj(t.as_ref()))
        .collect()
}
