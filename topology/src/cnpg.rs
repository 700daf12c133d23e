//! The slice of CloudNativePG's `Cluster` API (postgresql.cnpg.io/v1) that Federator reads and
//! writes, and the role rule of contract §1.1.
//!
//! Fields Federator never inspects are kept in `other` maps so that a round trip through these
//! types loses nothing; Federator itself only ever writes `spec.replica` (JSON merge patches).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `spec` of a CNPG `Cluster`.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "postgresql.cnpg.io",
    version = "v1",
    kind = "Cluster",
    namespaced,
    status = "ClusterStatus",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    #[serde(default = "one")]
    pub instances: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<ReplicaSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_clusters: Vec<ExternalCluster>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<Bootstrap>,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

fn one() -> i64 {
    1
}

/// `spec.replica` (Go: `ReplicaClusterConfiguration`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaSpec {
    /// The `externalClusters` entry this cluster replicates from; required even on a primary.
    #[serde(default)]
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
    #[serde(rename = "self", default, skip_serializing_if = "Option::is_none")]
    pub self_name: Option<String>,
    /// Legacy standalone-replica switch; when present it alone decides the role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_apply_delay: Option<String>,
}

/// One `spec.externalClusters[]` entry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalCluster {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_parameters: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub barman_object_store: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_cert: Option<SecretKeySelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_key: Option<SecretKeySelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_root_cert: Option<SecretKeySelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretKeySelector>,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

impl ExternalCluster {
    /// The folder-like destination of its object store (`s3://bucket/`), when it has one.
    pub fn destination_path(&self) -> Option<&str> {
        self.barman_object_store
            .as_ref()?
            .get("destinationPath")?
            .as_str()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeySelector {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// `spec.bootstrap`: only the method and its source matter to Federator and the emulator.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Bootstrap {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initdb: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_basebackup: Option<BootstrapSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<BootstrapSource>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BootstrapSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// `status` of a CNPG `Cluster` (contract §2).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub demotion_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_promotion_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_primary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_primary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_primary_timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_primary_timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_reason: Option<String>,
    #[serde(rename = "systemID", default, skip_serializing_if = "Option::is_none")]
    pub system_id: Option<String>,
    #[serde(
        rename = "timelineID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub timeline_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_instances: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch_replica_cluster_status: Option<SwitchReplicaClusterStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_names: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances_status: Option<BTreeMap<String, Vec<String>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances_reported_state: Option<BTreeMap<String, InstanceReportedState>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SwitchReplicaClusterStatus {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub in_progress: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceReportedState {
    #[serde(rename = "isPrimary")]
    pub is_primary: bool,
    #[serde(
        rename = "timeLineID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub timeline_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

/// Exact phase strings (contract §2).
pub mod phase {
    pub const HEALTHY: &str = "Cluster in healthy state";
    pub const PROMOTING: &str = "Promoting to primary cluster";
    pub const UNRECOVERABLE: &str = "Cluster is unrecoverable and needs manual intervention";
    pub const RESTARTING_IN_PLACE: &str = "Primary instance is being restarted in-place";
    pub const SETTING_UP_PRIMARY: &str = "Setting up primary";
    pub const CREATING_REPLICA: &str = "Creating a new replica";
    pub const WAITING_FOR_INSTANCES: &str = "Waiting for the instances to become active";
    pub const INVALID_DEFINITION: &str = "Invalid cluster definition";
}

/// Exact phase reasons (contract §2).
pub mod phase_reason {
    pub const PROMOTION_IN_PROGRESS: &str = "Replica cluster promotion in progress";
    pub const TOKEN_NOT_CORRECT: &str =
        "Promotion token content is not correct for current instance";
}

/// Condition types and reasons CNPG uses around replica switches (contract §2).
pub mod condition {
    pub const READY: &str = "Ready";
    pub const REPLICA_CLUSTER_SWITCH: &str = "ReplicaClusterSwitch";
    pub const DESIGNATED_PRIMARY_TRANSITION: &str = "ReplicaClusterDesignatedPrimaryTransition";
    pub const REPLICA_CLUSTER_FENCING: &str = "ReplicaClusterFencing";
    pub const CONSISTENT_SYSTEM_ID: &str = "ConsistentSystemID";
}

/// The annotation CNPG uses to fence instances during a demotion.
pub const FENCED_INSTANCES_ANNOTATION: &str = "cnpg.io/fencedInstances";

/// What the role rule (contract §1.1) makes of a cluster's spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Primary,
    Replica,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
        })
    }
}

/// The name a cluster has in the distributed topology: `replica.self`, else `metadata.name`.
pub fn topology_name<'a>(metadata_name: &'a str, replica: Option<&'a ReplicaSpec>) -> &'a str {
    match replica.and_then(|r| r.self_name.as_deref()) {
        Some(name) if !name.is_empty() => name,
        _ => metadata_name,
    }
}

/// CNPG's `Cluster.IsReplica()`: no `replica` → primary; `enabled` present → its value;
/// otherwise replica iff the topology name differs from `primary` (so `primary` unset → replica).
pub fn role_of(metadata_name: &str, replica: Option<&ReplicaSpec>) -> Role {
    let Some(r) = replica else {
        return Role::Primary;
    };
    if let Some(enabled) = r.enabled {
        return if enabled {
            Role::Replica
        } else {
            Role::Primary
        };
    }
    let name = topology_name(metadata_name, Some(r));
    if r.primary.as_deref() == Some(name) {
        Role::Primary
    } else {
        Role::Replica
    }
}

impl Cluster {
    pub fn role(&self) -> Role {
        role_of(
            self.metadata.name.as_deref().unwrap_or_default(),
            self.spec.replica.as_ref(),
        )
    }

    pub fn topology_name(&self) -> &str {
        topology_name(
            self.metadata.name.as_deref().unwrap_or_default(),
            self.spec.replica.as_ref(),
        )
    }

    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.status
            .as_ref()?
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
    }

    /// How WAL from the source reaches this Cluster while it is a replica: the channels of the
    /// `externalClusters` entry `spec.replica.source` names (`connectionParameters`: streaming;
    /// `barmanObjectStore` or a plugin: the source's object store).
    pub fn source_channel(&self) -> SourceChannel {
        let Some(replica) = &self.spec.replica else {
            return SourceChannel::None;
        };
        let Some(entry) = self
            .spec
            .external_clusters
            .iter()
            .find(|e| e.name == replica.source)
        else {
            return SourceChannel::None;
        };
        let archive = entry.barman_object_store.is_some() || entry.plugin.is_some();
        match (entry.connection_parameters.is_some(), archive) {
            (true, true) => SourceChannel::StreamingAndArchive,
            (true, false) => SourceChannel::Streaming,
            (false, true) => SourceChannel::ArchiveOnly,
            (false, false) => SourceChannel::None,
        }
    }

    /// WAL from the source arrives only through the archive.
    pub fn source_is_archive_only(&self) -> bool {
        self.source_channel() == SourceChannel::ArchiveOnly
    }
}

/// The channels a replica Cluster's source entry declares (see [`Cluster::source_channel`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SourceChannel {
    /// No source entry (a primary by spec, or a source the Cluster does not list).
    #[default]
    None,
    /// `connectionParameters` only.
    Streaming,
    /// An object store only.
    ArchiveOnly,
    /// Both: streaming when connected, the archive when not.
    StreamingAndArchive,
}

impl SourceChannel {
    /// The source's object store is a channel: once promoted by spec, CNPG restores from the
    /// Cluster's *own* store instead, so WAL the target has not replayed by then may never come
    /// (with streaming too: a standby that was not streaming when the old primary shut down
    /// has that WAL only in the source's store).
    pub fn has_archive(self) -> bool {
        matches!(self, Self::ArchiveOnly | Self::StreamingAndArchive)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(
        primary: Option<&str>,
        self_name: Option<&str>,
        enabled: Option<bool>,
    ) -> ReplicaSpec {
        ReplicaSpec {
            source: "x".into(),
            primary: primary.map(Into::into),
            self_name: self_name.map(Into::into),
            enabled,
            ..Default::default()
        }
    }

    #[test]
    fn an_archive_only_source_has_an_object_store_and_no_connection_parameters() {
        let cluster = |entry: serde_json::Value| -> Cluster {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "postgresql.cnpg.io/v1",
                "kind": "Cluster",
                "metadata": {"name": "pg-b"},
                "spec": {
                    "instances": 1,
                    "replica": {"primary": "pg-a", "source": "pg-a"},
                    "externalClusters": [
                        {"name": "pg-b", "connectionParameters": {"host": "b"}},
                        entry,
                    ],
                },
            }))
            .unwrap()
        };
        let store = serde_json::json!({"destinationPath": "s3://pg-a/"});
        let archive = cluster(serde_json::json!({"name": "pg-a", "barmanObjectStore": store}));
        assert!(archive.source_is_archive_only());
        let plugin = serde_json::json!({"name": "barman-cloud.cloudnative-pg.io"});
        assert!(
            cluster(serde_json::json!({"name": "pg-a", "plugin": plugin})).source_is_archive_only()
        );
        let both = cluster(serde_json::json!({
            "name": "pg-a", "barmanObjectStore": store, "connectionParameters": {"host": "a"},
        }));
        assert!(!both.source_is_archive_only());
        assert_eq!(both.source_channel(), SourceChannel::StreamingAndArchive);
        assert!(both.source_channel().has_archive());
        assert!(archive.source_channel().has_archive());
        let streaming =
            cluster(serde_json::json!({"name": "pg-a", "connectionParameters": {"host": "a"}}));
        assert!(!streaming.source_is_archive_only());
        assert!(!streaming.source_channel().has_archive());
        let mut primary = archive.clone();
        primary.spec.replica = None;
        assert!(!primary.source_is_archive_only());
        assert_eq!(primary.source_channel(), SourceChannel::None);
    }

    #[test]
    fn role_rule_follows_contract() {
        assert_eq!(role_of("a", None), Role::Primary);
        assert_eq!(
            role_of("a", Some(&replica(None, None, None))),
            Role::Replica
        );
        assert_eq!(
            role_of("a", Some(&replica(Some("a"), None, None))),
            Role::Primary
        );
        assert_eq!(
            role_of("a", Some(&replica(Some("b"), None, None))),
            Role::Replica
        );
        assert_eq!(
            role_of("k8s-name", Some(&replica(Some("b"), Some("b"), None))),
            Role::Primary
        );
        assert_eq!(
            role_of("a", Some(&replica(Some("a"), None, Some(true)))),
            Role::Replica
        );
        assert_eq!(
            role_of("a", Some(&replica(Some("b"), None, Some(false)))),
            Role::Primary
        );
    }

    #[test]
    fn cluster_round_trips_unknown_fields() {
        let json = serde_json::json!({
            "apiVersion": "postgresql.cnpg.io/v1",
            "kind": "Cluster",
            "metadata": {"name": "pg16-eu-central", "namespace": "databases"},
            "spec": {
                "instances": 3,
                "storage": {"size": "1Gi"},
                "replica": {"primary": "pg16-eu-central", "source": "pg16-eu-south"},
                "externalClusters": [{"name": "pg16-eu-south", "barmanObjectStore": {"destinationPath": "s3://pg16-eu-south/"}}]
            },
            "status": {"systemID": "7345", "timelineID": 3, "switchReplicaClusterStatus": {}}
        });
        let cluster: Cluster = serde_json::from_value(json.clone()).expect("parses");
        assert_eq!(cluster.role(), Role::Primary);
        assert_eq!(
            cluster.spec.external_clusters[0].destination_path(),
            Some("s3://pg16-eu-south/")
        );
        assert_eq!(cluster.spec.other["storage"]["size"], "1Gi");
        let back = serde_json::to_value(&cluster).expect("serializes");
        assert_eq!(back["spec"]["storage"], json["spec"]["storage"]);
        assert_eq!(back["status"]["systemID"], "7345");
    }
}
