//! Starting a due rotation: the controller's own `spec.primary` patch on its topology, after the
//! status write that recorded the rotation as handled (`decide::rotation` decides it).

use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use topology::DistributedTopology;

use crate::controller::decide::rotation::Start;
use crate::controller::error::{Error, Result};

/// The field manager of the `spec.primary` patch that starts a rotation; GitOps tools that own
/// `spec.primary` must ignore changes by it (see `docs/rotations.md`).
pub const FIELD_MANAGER: &str = "federator-rotation";

/// Sets `spec.primary` to the rotation's target with a merge patch that carries the
/// resourceVersion of the status write that recorded it: if anyone changed the topology in
/// between, nothing is patched (and the scheduled time stays handled: never started twice).
pub async fn start(hub: &Client, written: &DistributedTopology, start: &Start) -> Result<()> {
    let name = written.metadata.name.clone().unwrap_or_default();
    let api: Api<DistributedTopology> = Api::namespaced(
        hub.clone(),
        written.metadata.namespace.as_deref().unwrap_or_default(),
    );
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": written.metadata.resource_version},
        "spec": {"primary": start.to},
    });
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    api.patch(&name, &params, &Patch::Merge(&patch))
        .await
        .map(|_| ())
        .map_err(|source| Error::StartRotation {
            topology: format!(
                "{}/{name}",
                written.metadata.namespace.as_deref().unwrap_or_default()
            ),
            to: start.to.clone(),
            source,
        })
}
