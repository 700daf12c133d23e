//! What `federator-lab status` adds for the real tier: each node's Ready condition and every pod
//! of each member region (the CNPG operator, each Cluster's instances), read from the members'
//! apiservers.

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::ListParams;
use serde::Serialize;

use crate::lab::kubeconfig;
use crate::lab::layout::LabLayout;

/// One pod of a member region.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    pub region: String,
    pub namespace: String,
    pub name: String,
    pub phase: String,
    pub ready: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

/// One member region's node.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    pub region: String,
    pub name: String,
    pub ready: bool,
}

/// Nodes and pods of `members`; a member whose apiserver does not answer contributes nothing.
pub async fn nodes_and_pods(
    layout: &LabLayout,
    members: &[String],
) -> (Vec<NodeStatus>, Vec<PodStatus>) {
    let mut nodes = Vec::new();
    let mut pods = Vec::new();
    for member in members {
        let Ok(client) = kubeconfig::client_from_file(&layout.kubeconfig(member)).await else {
            continue;
        };
        if let Ok(list) = Api::<Node>::all(client.clone())
            .list(&ListParams::default())
            .await
        {
            nodes.extend(list.items.into_iter().map(|n| {
                NodeStatus {
                    region: member.clone(),
                    name: n.metadata.name.unwrap_or_default(),
                    ready: n
                        .status
                        .and_then(|s| s.conditions)
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True"),
                }
            }));
        }
        if let Ok(list) = Api::<Pod>::all(client).list(&ListParams::default()).await {
            pods.extend(list.items.into_iter().map(|p| {
                let status = p.status.unwrap_or_default();
                PodStatus {
                    region: member.clone(),
                    namespace: p.metadata.namespace.unwrap_or_default(),
                    name: p.metadata.name.unwrap_or_default(),
                    phase: status.phase.unwrap_or_default(),
                    ready: status
                        .conditions
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True"),
                    ip: status.pod_ip,
                }
            }));
        }
    }
    (nodes, pods)
}
