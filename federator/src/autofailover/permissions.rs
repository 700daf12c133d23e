//! The permissions `federator agent` needs, checked once at start with SelfSubjectAccessReviews
//! through each of its credentials (the hub's, its own region's, every other region's): every
//! missing one is logged as an error naming the verb, the resource, the namespace, the store and
//! the fix, before a round fails for want of it (a forbidden renewal would otherwise only look
//! like an unreachable voter, and a forbidden fence only show when the primary must stop).
//!
//! The list is the agent's own requests (`agent.rs`, `store.rs`). The agent chart
//! (`charts/federator-agent`, member side) and the hub chart's `agents.hubAccess` grant exactly
//! these; the e2e test `agent_rbac.rs` removes each rule in turn and expects it named.

use std::fmt;

use crate::hub_permissions::{Permission, missing};
use topology::DistributedTopology;

/// Where a permission is needed: the hub, or a member region's Kubernetes cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    Hub,
    /// Its own region (the Cluster and its own store).
    Own(String),
    /// Another member region's store.
    Peer(String),
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Hub => write!(f, "on the hub (--hub-kubeconfig)"),
            Place::Own(c) => write!(f, "in its own region {c}"),
            Place::Peer(c) => write!(f, "in region {c} (--member-kubeconfigs/{c}.kubeconfig)"),
        }
    }
}

/// A member's store in a region: its Kubernetes cluster and the namespace of its Cluster.
pub struct StoreAt<'a> {
    pub cluster: &'a str,
    pub namespace: &'a str,
}

fn permission(
    verb: &'static str,
    group: &'static str,
    resource: &'static str,
    namespace: &str,
    name: Option<&str>,
    why: &'static str,
) -> Permission {
    Permission {
        verb,
        group: group.into(),
        resource: resource.into(),
        namespace: Some(namespace.to_owned()),
        name: name.map(str::to_owned),
        why,
    }
}

fn lease_permissions(namespace: &str, why: &'static str) -> Vec<Permission> {
    ["get", "create", "patch"]
        .into_iter()
        .map(|verb| permission(verb, "coordination.k8s.io", "leases", namespace, None, why))
        .collect()
}

/// Every permission of the agent of a member whose Cluster `cluster_name` is in `own`, of the
/// topology `topology` in `hub_namespace`, with the other member regions' stores `peers`.
pub fn required(
    hub_namespace: &str,
    topology: &str,
    own: &StoreAt<'_>,
    cluster_name: &str,
    peers: &[StoreAt<'_>],
) -> Vec<(Place, Permission)> {
    let mut all = vec![(
        Place::Hub,
        permission(
            "get",
            "federator.dev",
            "distributedtopologies",
            hub_namespace,
            Some(topology),
            "the voters and the timing of its topology",
        ),
    )];
    all.extend(
        lease_permissions(
            hub_namespace,
            "renewals and ballots in the hub voter's store",
        )
        .into_iter()
        .map(|p| (Place::Hub, p)),
    );
    let own_place = Place::Own(own.cluster.to_owned());
    all.extend(
        lease_permissions(
            own.namespace,
            "renewals in its own region's store, its region's vote and its cached configuration",
        )
        .into_iter()
        .map(|p| (own_place.clone(), p)),
    );
    for (verb, why) in [
        (
            "get",
            "its Cluster's role, the primary it names and its fence",
        ),
        (
            "patch",
            "the fence (cnpg.io/fencedInstances) and its release",
        ),
    ] {
        all.push((
            own_place.clone(),
            permission(
                verb,
                "postgresql.cnpg.io",
                "clusters",
                own.namespace,
                Some(cluster_name),
                why,
            ),
        ));
    }
    for peer in peers.iter().filter(|p| p.cluster != own.cluster) {
        all.extend(
            lease_permissions(peer.namespace, "renewals in another member region's store")
                .into_iter()
                .map(|p| (Place::Peer(peer.cluster.to_owned()), p)),
        );
    }
    all
}

/// The permissions of `member`'s agent as the topology on the hub names its stores.
pub fn for_topology(topo: &DistributedTopology, member: &str) -> Option<Vec<(Place, Permission)>> {
    let own = topo.spec.members.iter().find(|m| m.name == member)?;
    let peers: Vec<StoreAt<'_>> = topo
        .spec
        .members
        .iter()
        .filter(|m| m.name != member)
        .map(|m| StoreAt {
            cluster: &m.cluster,
            namespace: &m.namespace,
        })
        .collect();
    Some(required(
        topo.metadata.namespace.as_deref().unwrap_or_default(),
        topo.metadata.name.as_deref().unwrap_or_default(),
        &StoreAt {
            cluster: &own.cluster,
            namespace: &own.namespace,
        },
        own.cluster_name(),
        &peers,
    ))
}

/// Asks each place's API (`client_of`; a place without a client is skipped) about its
/// permissions; logs every missing one (error) or that all are there (info). Returns the missing.
pub async fn check(
    required: &[(Place, Permission)],
    client_of: impl Fn(&Place) -> Option<kube::Client>,
) -> Vec<(Place, Permission)> {
    let mut places: Vec<Place> = Vec::new();
    for (place, _) in required {
        if !places.contains(place) {
            places.push(place.clone());
        }
    }
    let mut absent = Vec::new();
    for place in places {
        let Some(client) = client_of(&place) else {
            continue;
        };
        let asked: Vec<Permission> = required
            .iter()
            .filter(|(p, _)| *p == place)
            .map(|(_, permission)| permission.clone())
            .collect();
        for permission in missing(&client, &asked).await {
            tracing::error!(
                verb = permission.verb,
                resource = permission.resource.as_ref(),
                namespace = permission.namespace.as_deref().unwrap_or("*"),
                "missing agent permission: {permission} {place}, needed for {}; grant it to the agent's credential there (charts/federator-agent, and agents.hubAccess of charts/federator on the hub: docs/automatic-failover.md, \"Installing the agent\")",
                permission.why
            );
            absent.push((place.clone(), permission));
        }
    }
    if absent.is_empty() {
        tracing::info!(
            checked = required.len(),
            "agent permissions: every one the agent uses is granted"
        );
    }
    absent
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_asks_for_leases_everywhere_and_its_own_cluster_only_at_home() {
        let all = required(
            "db",
            "pg",
            &StoreAt {
                cluster: "eu-central",
                namespace: "databases",
            },
            "pg-a",
            &[
                StoreAt {
                    cluster: "eu-central",
                    namespace: "databases",
                },
                StoreAt {
                    cluster: "eu-western",
                    namespace: "pg",
                },
            ],
        );
        let described: Vec<String> = all.iter().map(|(w, p)| format!("{p} {w}")).collect();
        assert_eq!(all.len(), 1 + 3 + 3 + 2 + 3, "{described:#?}");
        assert!(described.contains(
            &"get distributedtopologies (federator.dev) named pg in namespace db on the hub (--hub-kubeconfig)".to_owned()
        ));
        assert!(described.contains(
            &"patch clusters (postgresql.cnpg.io) named pg-a in namespace databases in its own region eu-central".to_owned()
        ));
        assert!(
            all.iter()
                .filter(|(w, _)| matches!(w, Place::Peer(_)))
                .all(|(w, p)| p.resource == "leases"
                    && p.namespace.as_deref() == Some("pg")
                    && *w == Place::Peer("eu-western".into()))
        );
        assert!(
            all.iter()
                .all(|(_, p)| p.verb != "list" && p.verb != "delete")
        );
    }
}
