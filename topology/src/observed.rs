//! What the controller (or the CLI, from files) sees of the members: a plain snapshot built from
//! CNPG `Cluster` objects, so the planner and live validation stay pure and testable.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;

use crate::cnpg::{self, Cluster, ReplicaSpec, Role, SourceChannel, condition, phase};
use crate::model::Topology;

fn fenced_entirely(cluster: &Cluster) -> bool {
    cluster
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(cnpg::FENCED_INSTANCES_ANNOTATION))
        .and_then(|v| serde_json::from_str::<Vec<String>>(v).ok())
        .is_some_and(|names| names.iter().any(|n| n == "*"))
}

/// The members as last seen, keyed by topology name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    pub members: BTreeMap<String, ObservedMember>,
}

/// One member's CNPG Cluster as last seen, or the fact that it could not be read.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedMember {
    /// Topology name (`replica.self`, else `metadata.name`).
    pub name: String,
    /// `metadata.name` of the Cluster.
    pub cluster_name: String,
    pub namespace: Option<String>,
    /// False when the member's API server could not be read; the rest is then stale or default.
    pub reachable: bool,
    pub replica: Option<ReplicaSpec>,
    pub instances: i64,
    /// `spec.externalClusters[].name`, in order. Shared between members that list the same
    /// names (the normal case), so a snapshot of n members stays O(n) and identical lists are
    /// compared once.
    pub external_clusters: Arc<[String]>,
    /// How the `externalClusters` entry named by `spec.replica.source` reaches the source.
    /// With an object store among them, CNPG restores from that store only while the Cluster
    /// is a replica by spec; the promote patch switches it to the Cluster's own store.
    pub source: SourceChannel,
    pub status: MemberState,
}

/// The parts of CNPG's `status` the planner reads (contract §2).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MemberState {
    pub demotion_token: Option<String>,
    pub last_promotion_token: Option<String>,
    pub phase: Option<String>,
    pub phase_reason: Option<String>,
    pub system_id: Option<String>,
    pub timeline_id: Option<i64>,
    pub ready_instances: Option<i64>,
    /// `switchReplicaClusterStatus.inProgress`.
    pub switch_in_progress: bool,
    /// Some instance reports `isPrimary: true` in `instancesReportedState`. A designated primary
    /// (the standby leading a replica cluster) reports false, so this turns true only once the
    /// cluster really promoted: the signal of a failover, which has no token to compare.
    pub instance_is_primary: bool,
    /// `ReplicaClusterSwitch` condition: its status and last transition, when present. It stays
    /// True forever after the first demotion, so only a transition newer than the demote patch
    /// says "this demotion completed".
    pub replica_switch: Option<(bool, Timestamp)>,
    /// What the (designated) primary instance reports of its WAL replay, from CNPG's instance
    /// status (`/pg/status` through the member's `pods/proxy`). Not part of the Cluster object:
    /// the controller reads it only while a switchover waits for it ([`StepKind::AwaitReplay`]).
    ///
    /// [`StepKind::AwaitReplay`]: crate::StepKind::AwaitReplay
    pub replay: Option<Replay>,
    /// What the member's (designated) primary instance reported of its role and WAL, from the
    /// same instance status: read only around a failover — its target until it is promoted
    /// (how far it had received the old primary's WAL) and the old primary once it can be read
    /// again (whether it went on writing). Not part of the Cluster object.
    pub wal: Option<InstanceWal>,
    /// CNPG's fencing covers every instance (`cnpg.io/fencedInstances: '["*"]'`, what the
    /// automatic-failover agent writes): the instances are stopped and take no write, whatever
    /// the spec says. A metadata fact, not a status one: it holds as soon as CNPG honours it
    /// (within the policy's `fenceBound`).
    pub fenced: bool,
}

/// The replay position a (designated) primary instance reported, or why it is not known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Replay {
    /// `replayLsn`: the end of the last WAL record the instance replayed.
    At(crate::token::Lsn),
    /// The instance status could not be read or used; the text says why (safe to show).
    Unknown(String),
}

/// An instance's role and WAL position as its instance manager reported them (`/pg/status`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InstanceWal {
    /// `isPrimary`; `lsn`: `currentLsn` on a primary, else the later of `receivedLsn` and
    /// `replayLsn`; `timeline`: `timeLineID` (the latest checkpoint's: on a standby it may
    /// lag the timeline it replays).
    At {
        primary: bool,
        lsn: crate::token::Lsn,
        timeline: Option<i64>,
    },
    /// The instance status could not be read or used; the text says why (safe to show).
    Unknown(String),
}

impl ObservedMember {
    /// Builds the snapshot of one Cluster.
    pub fn from_cluster(cluster: &Cluster) -> Self {
        let status = cluster.status.clone().unwrap_or_default();
        let replica_switch = cluster
            .condition(condition::REPLICA_CLUSTER_SWITCH)
            .map(|c| (c.status == "True", c.last_transition_time.0));
        ObservedMember {
            name: cluster.topology_name().to_owned(),
            cluster_name: cluster.metadata.name.clone().unwrap_or_default(),
            namespace: cluster.metadata.namespace.clone(),
            reachable: true,
            replica: cluster.spec.replica.clone(),
            instances: cluster.spec.instances,
            external_clusters: cluster
                .spec
                .external_clusters
                .iter()
                .map(|e| e.name.clone())
                .collect(),
            source: cluster.source_channel(),
            status: MemberState {
                demotion_token: status.demotion_token.filter(|t| !t.is_empty()),
                last_promotion_token: status.last_promotion_token.filter(|t| !t.is_empty()),
                phase: status.phase,
                phase_reason: status.phase_reason,
                system_id: status.system_id.filter(|s| !s.is_empty()),
                timeline_id: status.timeline_id,
                ready_instances: status.ready_instances,
                switch_in_progress: status
                    .switch_replica_cluster_status
                    .is_some_and(|s| s.in_progress),
                instance_is_primary: status
                    .instances_reported_state
                    .is_some_and(|r| r.values().any(|i| i.is_primary)),
                replica_switch,
                replay: None,
                wal: None,
                fenced: fenced_entirely(cluster),
            },
        }
    }

    /// Whether the Cluster's fencing annotation names every instance (`["*"]`).
    pub fn is_fenced(cluster: &Cluster) -> bool {
        fenced_entirely(cluster)
    }

    /// A member whose API server could not be read.
    pub fn unreachable(name: &str, cluster_name: &str) -> Self {
        ObservedMember {
            name: name.to_owned(),
            cluster_name: cluster_name.to_owned(),
            namespace: None,
            reachable: false,
            replica: None,
            instances: 0,
            external_clusters: Arc::new([]),
            source: SourceChannel::None,
            status: MemberState::default(),
        }
    }

    /// Role by the CNPG role rule; `None` when the member could not be read.
    pub fn role(&self) -> Option<Role> {
        self.reachable
            .then(|| cnpg::role_of(&self.cluster_name, self.replica.as_ref()))
    }

    /// Healthy phase and every instance ready (contract §2 "Healthy").
    pub fn is_healthy(&self) -> bool {
        self.reachable
            && self.status.phase.as_deref() == Some(phase::HEALTHY)
            && self.status.ready_instances == Some(self.instances)
    }

    pub fn spec_primary(&self) -> Option<&str> {
        self.replica.as_ref()?.primary.as_deref()
    }

    pub fn spec_source(&self) -> Option<&str> {
        self.replica.as_ref().map(|r| r.source.as_str())
    }

    pub fn promotion_token(&self) -> Option<&str> {
        self.replica.as_ref()?.promotion_token.as_deref()
    }
}

impl Observed {
    /// Builds the snapshot from Clusters; a later Cluster with the same topology name replaces
    /// an earlier one (live validation reports duplicates from the raw list instead).
    pub fn from_clusters<'a>(clusters: impl IntoIterator<Item = &'a Cluster>) -> Self {
        let mut interned: HashMap<Arc<[String]>, Arc<[String]>> = HashMap::new();
        let members = clusters
            .into_iter()
            .map(ObservedMember::from_cluster)
            .map(|mut m| {
                let shared = interned
                    .entry(m.external_clusters.clone())
                    .or_insert_with(|| m.external_clusters.clone());
                m.external_clusters = shared.clone();
                (m.name.clone(), m)
            })
            .collect();
        Observed { members }
    }

    /// The snapshot a topology describes when every member is healthy and its Cluster matches
    /// the shape for `spec.primary`: what `federator plan` assumes without Cluster files, and
    /// what the bench and property tests start from.
    pub fn conforming(topology: &Topology) -> Self {
        let primary = topology.primary();
        let names: Arc<[String]> = topology.names().into();
        let sources = topology.desired_sources(primary);
        let members = topology
            .members()
            .iter()
            .zip(sources)
            .map(|(member, source)| {
                // The primary's source is unused; any member other than itself will do.
                let source = source.unwrap_or_else(|| {
                    let other = topology.names().iter().find(|n| *n != primary);
                    other.cloned().unwrap_or_default()
                });
                let observed = ObservedMember {
                    name: member.name.clone(),
                    cluster_name: member.cluster_name().to_owned(),
                    namespace: Some(member.namespace.clone()),
                    reachable: true,
                    replica: Some(ReplicaSpec {
                        source,
                        primary: Some(primary.to_owned()),
                        self_name: Some(member.name.clone()),
                        ..ReplicaSpec::default()
                    }),
                    instances: 1,
                    external_clusters: names.clone(),
                    source: SourceChannel::None,
                    status: MemberState {
                        phase: Some(phase::HEALTHY.to_owned()),
                        ready_instances: Some(1),
                        instance_is_primary: member.name == primary,
                        ..MemberState::default()
                    },
                };
                (member.name.clone(), observed)
            })
            .collect();
        Observed { members }
    }

    pub fn get(&self, name: &str) -> Option<&ObservedMember> {
        self.members.get(name)
    }

    /// Each topology member's Cluster, in member order (`None`: not observed). One pass over
    /// the snapshot instead of a map lookup per member, which at thousands of members cost
    /// more than the checks themselves.
    pub fn by_member(&self, topology: &Topology) -> Vec<Option<&ObservedMember>> {
        let mut found = vec![None; topology.names().len()];
        for (name, member) in &self.members {
            if let Some(i) = topology.position(name) {
                found[i] = Some(member);
            }
        }
        found
    }

    /// Members that are primary by their spec.
    pub fn primaries(&self) -> impl Iterator<Item = &ObservedMember> {
        self.members
            .values()
            .filter(|m| m.role() == Some(Role::Primary))
    }

    /// The single member that is primary by spec, if exactly one is.
    pub fn primary(&self) -> Option<&str> {
        let mut primaries = self.primaries();
        match (primaries.next(), primaries.next()) {
            (Some(only), None) => Some(only.name.as_str()),
            _ => None,
        }
    }
}
