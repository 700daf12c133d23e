//! One reconcile pass over one Cluster: what it needs at hand (the object, its instance, the
//! kube API) and the two writes it makes (status merge patch, fencing annotation).

use std::sync::Arc;

use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use topology::cnpg::{Cluster, ClusterStatus, FENCED_INSTANCES_ANNOTATION, ReplicaSpec};

use super::config::EmulatorConfig;
use super::error::Result;
use super::faults::Faults;
use super::layout::{EmulatorLayout, InstanceRecord};
use super::postgres::Instance;
use super::status::merge_diff;

/// Field manager of every write the emulator makes.
pub const FIELD_MANAGER: &str = "federator-emulator";

pub struct Pass<'a> {
    pub config: &'a EmulatorConfig,
    pub layout: EmulatorLayout,
    pub api: Api<Cluster>,
    pub cluster: Arc<Cluster>,
    pub name: String,
    pub record: InstanceRecord,
    pub instance: Instance,
    pub faults: Faults,
    /// The status as last seen or written by this pass.
    pub status: ClusterStatus,
}

impl Pass<'_> {
    /// The pod name CNPG gives the first instance, which is the (designated) primary.
    pub fn primary_pod(&self) -> String {
        format!("{}-1", self.name)
    }

    pub fn namespace(&self) -> &str {
        &self.record.namespace
    }

    pub fn instances(&self) -> i64 {
        self.cluster.spec.instances.max(1)
    }

    pub fn replica_spec(&self) -> Option<&ReplicaSpec> {
        self.cluster.spec.replica.as_ref()
    }

    /// `spec.replica.promotionToken` when non-empty.
    pub fn spec_token(&self) -> Option<&str> {
        self.replica_spec()
            .and_then(|r| r.promotion_token.as_deref())
            .filter(|t| !t.is_empty())
    }

    /// The token is pending when it is set and differs from `status.lastPromotionToken`.
    pub fn token_pending(&self) -> Option<&str> {
        self.spec_token()
            .filter(|t| self.status.last_promotion_token.as_deref() != Some(*t))
    }

    pub fn is_fenced(&self) -> bool {
        self.cluster
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(FENCED_INSTANCES_ANNOTATION))
    }

    /// Applies `change` to the status and writes the difference as a merge patch on the status
    /// subresource; nothing is sent when nothing changed.
    pub async fn update_status(&mut self, change: impl FnOnce(&mut ClusterStatus)) -> Result<()> {
        let mut next = self.status.clone();
        change(&mut next);
        let old = serde_json::to_value(&self.status).expect("status serializes");
        let new = serde_json::to_value(&next).expect("status serializes");
        if let Some(diff) = merge_diff(&old, &new) {
            self.api
                .patch_status(
                    &self.name,
                    &PatchParams::apply(FIELD_MANAGER),
                    &Patch::Merge(json!({ "status": diff })),
                )
                .await?;
            self.status = next;
        }
        Ok(())
    }

    /// Fences (`["*"]`) or unfences every instance through the Cluster's annotation, as CNPG's
    /// `pkg/utils/fencing.go` does. Goes through the admission webhook like any metadata update.
    pub async fn set_fenced(&self, fenced: bool) -> Result<()> {
        let value = if fenced {
            json!(r#"["*"]"#)
        } else {
            serde_json::Value::Null
        };
        self.api
            .patch(
                &self.name,
                &PatchParams::apply(FIELD_MANAGER),
                &Patch::Merge(
                    json!({"metadata": {"annotations": {FENCED_INSTANCES_ANNOTATION: value}}}),
                ),
            )
            .await?;
        Ok(())
    }
}
