//! Whole-region operations (`RegionSwitch`, types in `topology::region_api`): move every
//! topology whose primary runs in one region to its member in another, each through the ordinary
//! planned switchover. Like a drill, a region switch is a client of the switchover: it sets
//! topologies' `spec.primary` and reads their status. See `docs/region-switch.md`.
//!
//! | Module | Holds | I/O |
//! |---|---|---|
//! | `decide` | selection input, a topology's observation, phase, summary, condition | pure |
//! | `controller` | the kube-runtime controller: status first, then `spec.primary` | hub |
//! | `hooks` | scale a topology's applications on a member, and whether they are there | members |
//! | `job` | a Job hook: one Job on a member, awaited | members |
//! | `webhook` | a webhook hook: one signed HTTPS POST | HTTPS |
//! | `drill` | a `RegionDrill` run: canaries, probe writers, a region switch there and back | hub, PostgreSQL |
//! | `drill_report` | a region drill's evidence report as Markdown | pure |
//! | `rotation` | the kube-runtime controller on `RegionRotation`: a RegionSwitch per due time | hub |

pub mod controller;
pub mod decide;
pub mod drill;
pub mod drill_report;
pub mod hooks;
pub mod job;
pub mod rotation;
pub mod webhook;

use std::time::Duration;

use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::{Api, Client, Resource};

/// After a conflicting write: read the object again soon.
const CONFLICT_RETRY: Duration = Duration::from_millis(200);
/// After a failed hub request.
const ERROR_RETRY: Duration = Duration::from_secs(2);

/// Why a reconcile of a region switch or rotation failed (it is retried).
#[derive(Debug, thiserror::Error)]
pub enum RegionError {
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// Someone wrote the object since it was read: nothing was written.
    #[error("{0} changed since it was read; reading it again")]
    Conflict(String),
}

fn kube_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> RegionError {
    let what = what.into();
    move |source| RegionError::Kube { what, source }
}

fn error_policy<K, C>(_: std::sync::Arc<K>, error: &RegionError, _: std::sync::Arc<C>) -> Action {
    match error {
        RegionError::Conflict(_) => Action::requeue(CONFLICT_RETRY),
        RegionError::Kube { .. } => {
            tracing::warn!(%error, "region reconcile");
            Action::requeue(ERROR_RETRY)
        }
    }
}

/// The API of `K` in `namespace` (every namespace: `None`).
fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs `controller` (its watches already set) until `shutdown` resolves: everything is
/// reconciled again when this process gains the lease, a failed reconcile is retried by
/// [`error_policy`], and each result is logged (at debug) as an event of the `what` controller.
async fn serve<K, C, F>(
    controller: kube::runtime::Controller<K>,
    leader: &crate::controller::Leadership,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
    reconcile: impl FnMut(std::sync::Arc<K>, std::sync::Arc<C>) -> F,
    ctx: std::sync::Arc<C>,
    what: &'static str,
) where
    K: Clone + Resource + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: std::fmt::Debug + Eq + std::hash::Hash + Clone + Unpin,
    C: Send + Sync + 'static,
    F: Future<Output = Result<Action, RegionError>> + Send + 'static,
{
    use futures::StreamExt;
    controller
        .reconcile_all_on(leader.gained())
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "{what} controller event");
            }
        })
        .await;
}

/// Events as `federator-region-switch`, with the controller's identity as instance.
fn recorder(client: &Client, identity: String) -> Recorder {
    Recorder::new(
        client.clone(),
        Reporter {
            controller: topology::region_api::FIELD_MANAGER.into(),
            instance: Some(identity),
        },
    )
}
