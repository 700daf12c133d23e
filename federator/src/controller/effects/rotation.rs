//! Starting a due rotation: the controller's own `spec.primary` patch on its topology, after the
//! status write that recorded the rotation as handled (`decide::rotation` decides it).

use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use topology::DistributedTopology;

use crate::controller::decide::autofailover::AutoStart;
use crate::controller::decide::rotation::Start;
use crate::controller::error::{Error, Result};

/// The field manager of the `spec.primary` patch that starts a rotation; GitOps tools that own
/// `spec.primary` must ignore changes by it (see `docs/rotations.md`).
pub const FIELD_MANAGER: &str = "federator-rotation";

/// Sets `spec.primary` to the rotation's target with a merge patch that carries the
/// resourceVersion of the status write that recorded it: if anyone changed the topology in
/// between, nothing is patched (and the scheduled time stays handled: never started twice).
pub async fn start(hub: &Client, written: &DistributedTopology, start: &Start) -> Result<()> {
    let spec = serde_json::json!({"primary": start.to});
    patch_spec(hub, written, FIELD_MANAGER, spec)
        .await
        .map_err(|source| Error::StartRotation {
            topology: key(written),
            to: start.to.clone(),
            source,
        })
}

/// The field manager of the `spec.primary` + `spec.failover` patch of an automatic failover.
pub const FAILOVER_FIELD_MANAGER: &str = "federator-autofailover";

/// Sets `spec.primary` and `spec.failover` (`acceptDataLoss: true`) for an automatic failover,
/// on the version of the status write that recorded the decision (a 409 leaves the decision in
/// status: the next reconcile sets it again).
pub async fn start_failover(
    hub: &Client,
    written: &DistributedTopology,
    start: &AutoStart,
) -> Result<()> {
    let spec = serde_json::json!({
        "primary": start.to,
        "failover": {"to": start.to, "acceptDataLoss": true, "requestedAt": start.requested_at},
    });
    patch_spec(hub, written, FAILOVER_FIELD_MANAGER, spec)
        .await
        .map_err(|source| Error::StartFailover {
            topology: key(written),
            to: start.to.clone(),
            source,
        })
}

fn key(written: &DistributedTopology) -> String {
    format!(
        "{}/{}",
        written.metadata.namespace.as_deref().unwrap_or_default(),
        written.metadata.name.as_deref().unwrap_or_default()
    )
}

/// A merge patch of the topology's own `spec`, preconditioned on `written`'s resourceVersion.
async fn patch_spec(
    hub: &Client,
    written: &DistributedTopology,
    manager: &str,
    spec: serde_json::Value,
) -> Result<(), kube::Error> {
    let name = written.metadata.name.clone().unwrap_or_default();
    let api: Api<DistributedTopology> = Api::namespaced(
        hub.clone(),
        written.metadata.namespace.as_deref().unwrap_or_default(),
    );
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": written.metadata.resource_version},
        "spec": spec,
    });
    let params = PatchParams {
        field_manager: Some(manager.into()),
        ..PatchParams::default()
    };
    api.patch(&name, &params, &Patch::Merge(&patch))
        .await
        .map(|_| ())
}
