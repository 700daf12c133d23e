//! The `DistributedTopology` custom resource (`federator.dev/v1alpha1`), served by the hub.
//!
//! `spec` says which CNPG Clusters form one distributed database, how WAL flows between them
//! (the shape) and which one should be primary; `status` is written by the controller only.

mod autofailover;
mod history;
mod status;

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use policies::Policies;
use policies::rotation::RotationPolicy;
use serde::{Deserialize, Serialize};

pub use autofailover::AutomaticFailoverPolicy;
pub use history::StepTiming;
pub use status::{
    AutomaticFailoverDecision, AutomaticFailoverStatus, DataLossWindow, FailoverReport,
    FencedMember, ReturnedPrimary,
};
pub use status::{
    DistributedTopologyStatus, HISTORY_LIMIT, Hold, MemberStatus, Operation, OperationHooks,
    OperationKind, OperationRecord, Outcome, StepRecord,
};
pub use status::{RotationDecisionRecord, RotationRecord, RotationStatus};

/// Which CNPG Clusters form the distributed database, how WAL flows between them, and which one
/// should be primary.
// kube's `printcolumn(...)` repeats `type_ = "string"`, which clippy mistakes for a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "federator.dev",
    version = "v1alpha1",
    kind = "DistributedTopology",
    doc = "A distributed PostgreSQL: CloudNativePG Clusters in several Kubernetes clusters run as one database with exactly one primary. Federator moves the primary between them on request (planned switchover).",
    namespaced,
    status = "DistributedTopologyStatus",
    shortname = "dtop",
    category = "federator",
    printcolumn(name = "Primary", type_ = "string", json_path = ".spec.primary"),
    printcolumn(
        name = "Observed",
        type_ = "string",
        json_path = ".status.observedPrimary"
    ),
    printcolumn(name = "Step", type_ = "string", json_path = ".status.operation.step"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self.members.exists(m, m.name == self.primary)")
    .message("spec.primary must name one of spec.members")
    .field_path(".primary"))]
#[x_kube(validation = Rule::new("!has(self.failover) || self.members.exists(m, m.name == self.failover.to)")
    .message("spec.failover.to must name one of spec.members")
    .field_path(".failover.to"))]
#[x_kube(validation = Rule::new("!has(self.automaticFailover) || !has(self.automaticFailover.promotable) || self.automaticFailover.promotable.all(p, self.members.exists(m, m.name == p))")
    .message("spec.automaticFailover.promotable must list members of spec.members only")
    .field_path(".automaticFailover.promotable"))]
#[serde(rename_all = "camelCase")]
pub struct DistributedTopologySpec {
    /// The CNPG Clusters that form this distributed database, one per region. Names are unique.
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    #[schemars(length(min = 2, max = 64))]
    pub members: Vec<Member>,
    /// How WAL flows between members: exactly one of `star`, `ring` or `cascade`.
    pub shape: ShapeSpec,
    /// The member that should be primary. Changing it asks for a planned switchover.
    #[schemars(length(min = 1, max = 50))]
    pub primary: String,
    /// Timeouts and retry intervals of switchovers; fields left out take Federator's defaults.
    #[serde(default)]
    pub policies: Policies,
    /// Scheduled rotation of the primary between members (cron schedule, order, maintenance
    /// windows, freeze periods, preconditions). Absent: the primary moves only on request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<RotationPolicy>,
    /// An explicit failover: promote `to` WITHOUT the old primary's demotion token, because the
    /// old primary cannot be read. Acted on once, only while `to` equals `primary` and the
    /// current primary's member is unreachable; see docs/failover.md. Set by `federator failover`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<FailoverRequest>,
    /// Automatic region failover (opt-in): an agent per member region holds its member's
    /// heartbeat with a quorum of voters (the hub and every member region); a primary that loses
    /// the quorum fences itself, and a region a majority counts lost has its most advanced
    /// eligible replica promoted without a token. See docs/automatic-failover.md. A policy the
    /// rules refuse leaves failover manual (condition AutomaticFailover).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automatic_failover: Option<AutomaticFailoverPolicy>,
    /// Hooks around this topology's switchover, run by a RegionSwitch that moves it (as a
    /// RegionSwitch's `spec.hooks`: `scale`, `patch`, `webhook` or `job`; region `From` is the
    /// member cluster of the old primary, `To` that of the new one). Before the demotion they
    /// run after the region switch's own hooks, after the promotion before them; a failure
    /// before the demotion stops this topology, one after the promotion is a warning
    /// (docs/region-switch.md, "Hooks declared on a topology").
    #[serde(default, skip_serializing_if = "crate::region_api::Hooks::is_empty")]
    pub hooks: crate::region_api::Hooks,
}

/// A request to promote a member without a demotion token (possible data loss).
#[derive(KubeSchema, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[x_kube(validation = Rule::new("self.acceptDataLoss == true")
    .message("spec.failover.acceptDataLoss must be true: a failover promotes without the old primary's demotion token, so writes it acknowledged after its last archived WAL may be lost; say so explicitly, or use a switchover (change spec.primary only)")
    .field_path(".acceptDataLoss"))]
#[serde(rename_all = "camelCase")]
pub struct FailoverRequest {
    /// The member to promote; it must be a member and equal `spec.primary`.
    #[schemars(length(min = 1, max = 50))]
    pub to: String,
    /// Must be true: the acknowledgement that writes acknowledged by the old primary after its
    /// last archived WAL segment may be lost, and that the old primary must be re-cloned.
    pub accept_data_loss: bool,
    /// When the request was made (RFC 3339). A request is acted on once; to ask again for the
    /// same member, set a new value (`federator failover` does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub requested_at: Option<String>,
}

/// One CNPG Cluster taking part in the distributed topology.
#[derive(KubeSchema, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// Topology name: the CNPG `externalClusters` entry that designates this cluster everywhere
    /// (its `spec.replica.self`, or its `metadata.name` when `self` is unset).
    #[schemars(length(min = 1, max = 50), pattern(r"^[a-z]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// The member Kubernetes cluster that runs it (the key of its credentials on the hub): a
    /// DNS-1123 label.
    #[schemars(length(min = 1, max = 63), pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub cluster: String,
    /// Namespace of the CNPG Cluster in that Kubernetes cluster.
    #[schemars(length(min = 1, max = 63), pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub namespace: String,
    /// `metadata.name` of the CNPG Cluster when it differs from `name`; its `spec.replica.self`
    /// must then equal `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 50), pattern(r"^[a-z]([-a-z0-9]*[a-z0-9])?$"))]
    pub cluster_name: Option<String>,
}

impl Member {
    /// The CNPG Cluster's `metadata.name`.
    pub fn cluster_name(&self) -> &str {
        self.cluster_name.as_deref().unwrap_or(&self.name)
    }
}

/// The replication shape. Exactly one field is set.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[x_kube(validation = Rule::new("[has(self.star), has(self.ring), has(self.cascade)].filter(x, x).size() == 1")
    .message("set exactly one of star, ring, cascade"))]
#[serde(rename_all = "camelCase")]
pub struct ShapeSpec {
    /// Every replica follows the primary directly; a switchover re-points them all at the new
    /// primary. A pair is a star of two.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub star: Option<StarShape>,
    /// Members in circular order: each member's source is the previous one (the first follows
    /// the last). Sources never change; a switchover only moves `primary`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 64), inner(length(min = 1, max = 50)))]
    pub ring: Option<Vec<String>>,
    /// A tree of `member: source` edges. It is read as undirected and rooted at the primary, so a
    /// switchover re-roots it: sources on the path between the old and new primary flip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 64, "x-kubernetes-validations" = [{
        "rule": "self.all(m, size(m) >= 1 && size(m) <= 50 && size(self[m]) >= 1 && size(self[m]) <= 50)",
        "message": "every key and value of spec.shape.cascade must be a member name (1 to 50 characters)",
    }]))]
    pub cascade: Option<BTreeMap<String, String>>,
}

/// Marker for the star shape; it has no settings.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StarShape {}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;

    use super::*;

    fn rules_at(schema: &serde_json::Value) -> Vec<String> {
        schema["x-kubernetes-validations"]
            .as_array()
            .map(|rules| {
                rules
                    .iter()
                    .map(|r| r["rule"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn crd_carries_cel_rules_list_map_keys_and_docs() {
        let crd = serde_json::to_value(DistributedTopology::crd()).unwrap();
        assert_eq!(
            crd["metadata"]["name"],
            "distributedtopologies.federator.dev"
        );
        let version = &crd["spec"]["versions"][0];
        assert_eq!(version["name"], "v1alpha1");
        assert_eq!(version["subresources"]["status"], serde_json::json!({}));
        let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
        assert!(
            rules_at(spec)
                .iter()
                .any(|r| r.contains("m.name == self.primary"))
        );
        assert!(
            rules_at(&spec["properties"]["shape"])
                .iter()
                .any(|r| r.contains("size() == 1"))
        );
        let members = &spec["properties"]["members"];
        assert_eq!(members["x-kubernetes-list-type"], "map");
        assert_eq!(
            members["x-kubernetes-list-map-keys"],
            serde_json::json!(["name"])
        );
        assert_eq!(members["maxItems"], 64);
    }

    /// Every property in the schema has a description, because it is `kubectl explain` text.
    #[test]
    fn every_schema_property_is_documented() {
        fn walk(path: &str, schema: &serde_json::Value, missing: &mut Vec<String>) {
            if let Some(props) = schema["properties"].as_object() {
                for (name, sub) in props {
                    let here = format!("{path}.{name}");
                    if sub["description"].as_str().unwrap_or_default().is_empty() {
                        missing.push(here.clone());
                    }
                    walk(&here, sub, missing);
                }
            }
            for key in ["items", "additionalProperties"] {
                if schema[key].is_object() {
                    walk(&format!("{path}[]"), &schema[key], missing);
                }
            }
        }
        let crd = serde_json::to_value(DistributedTopology::crd()).unwrap();
        let root = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        let mut missing = Vec::new();
        for top in ["spec", "status"] {
            walk(top, &root["properties"][top], &mut missing);
        }
        assert!(missing.is_empty(), "undocumented fields: {missing:#?}");
    }
}
