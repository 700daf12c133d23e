//! The topology's finalizer ([`FINALIZER`]): added before the controller does anything for a
//! topology, removed once a deletion found nothing in flight. Both are merge patches of
//! `metadata.finalizers` that carry the resourceVersion the reconcile decided on (or its own
//! status write returned), so a concurrent change of the list is refused (409, like a refused
//! status write: the reconcile stops and the newer version comes through the watch), never
//! overwritten.

use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use topology::DistributedTopology;

use crate::controller::decide::FINALIZER;
use crate::controller::error::{Error, Result};

/// Adds [`FINALIZER`] to `topo`.
pub async fn add(hub: &Client, topo: &DistributedTopology) -> Result<()> {
    let mut list = topo.metadata.finalizers.clone().unwrap_or_default();
    list.push(FINALIZER.to_owned());
    set(hub, topo, list, "adding").await
}

/// Removes [`FINALIZER`] from `topo`: the API server deletes it if no other finalizer is left.
/// A topology already gone (a reconcile of a stale copy after the removal) is not an error.
pub async fn remove(hub: &Client, topo: &DistributedTopology) -> Result<()> {
    let mut list = topo.metadata.finalizers.clone().unwrap_or_default();
    list.retain(|f| f != FINALIZER);
    match set(hub, topo, list, "removing").await {
        Err(Error::Finalizer {
            source: kube::Error::Api(status),
            ..
        }) if status.code == 404 => Ok(()),
        other => other,
    }
}

async fn set(
    hub: &Client,
    topo: &DistributedTopology,
    list: Vec<String>,
    action: &'static str,
) -> Result<()> {
    let name = topo.metadata.name.clone().unwrap_or_default();
    let namespace = topo.metadata.namespace.clone().unwrap_or_default();
    let api: Api<DistributedTopology> = Api::namespaced(hub.clone(), &namespace);
    let patch = json!({
        "metadata": {"resourceVersion": topo.metadata.resource_version, "finalizers": list},
    });
    let params = PatchParams {
        field_manager: Some("federator".into()),
        ..PatchParams::default()
    };
    let topology = format!("{namespace}/{name}");
    match api.patch(&name, &params, &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        // Changed since it was read: the newer version comes through the watch.
        Err(kube::Error::Api(status)) if status.code == 409 => Err(Error::Conflict(topology)),
        Err(source) => Err(Error::Finalizer {
            action,
            topology,
            source,
        }),
    }
}
