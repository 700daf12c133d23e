//! The key of one CNPG Cluster seen on one member: what the store, the retained tokens and the
//! change events all index by.

use kube::ResourceExt;
use topology::cnpg::Cluster;

/// Identifies one CNPG Cluster on one member Kubernetes cluster.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterKey {
    /// The member Kubernetes cluster (the name its credential has).
    pub member: String,
    pub namespace: String,
    pub name: String,
}

impl ClusterKey {
    pub(crate) fn of(member: &str, cluster: &Cluster) -> Self {
        Self {
            member: member.to_owned(),
            namespace: cluster.namespace().unwrap_or_default(),
            name: cluster.name_any(),
        }
    }

    /// The Cluster a topology member stands for.
    pub fn of_member(m: &topology::api::Member) -> Self {
        Self {
            member: m.cluster.clone(),
            namespace: m.namespace.clone(),
            name: m.cluster_name().to_owned(),
        }
    }
}
