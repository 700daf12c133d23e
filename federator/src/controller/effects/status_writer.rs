//! The durable step log: the topology's status, replaced with a resourceVersion precondition.
//!
//! The object we write back carries the resourceVersion we read, so the API server refuses the
//! write (409) if anyone — another controller that also believes it leads, a human — wrote in
//! between. Only after this write succeeds does the reconcile send its member patch; a refused
//! write therefore means "our view is stale, do nothing".

use std::time::Duration;

use kube::Api;
use kube::api::PostParams;
use topology::{DistributedTopology, DistributedTopologyStatus};

use crate::controller::error::{Error, Result};
use crate::controller::runtime::leader::Leadership;

/// A status write that takes longer than this is abandoned (and retried by the reconcile).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes `status` onto `topo` iff `topo`'s resourceVersion is still current and we lead.
pub async fn write(
    api: &Api<DistributedTopology>,
    leader: &Leadership,
    topo: &DistributedTopology,
    status: &DistributedTopologyStatus,
) -> Result<DistributedTopology> {
    if !leader.is_leader() {
        return Err(Error::NotLeader);
    }
    let name = topo.metadata.name.clone().unwrap_or_default();
    let key = format!(
        "{}/{name}",
        topo.metadata.namespace.as_deref().unwrap_or_default()
    );
    let mut object = topo.clone();
    object.metadata.managed_fields = None;
    object.status = Some(status.clone());
    let params = PostParams {
        dry_run: false,
        field_manager: Some("federator".into()),
    };
    match tokio::time::timeout(WRITE_TIMEOUT, api.replace_status(&name, &params, &object)).await {
        Err(_) => Err(Error::Timeout {
            action: format!("writing the status of {key}"),
            seconds: WRITE_TIMEOUT.as_secs(),
        }),
        Ok(Err(kube::Error::Api(status))) if status.code == 409 => Err(Error::Conflict(key)),
        Ok(Err(source)) => Err(Error::WriteStatus {
            topology: key,
            source,
        }),
        Ok(Ok(written)) => Ok(written),
    }
}
