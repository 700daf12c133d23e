//! Reaching a Cluster's PostgreSQL on the real tier from the host: the instance pod's IP from the
//! member's API, a tunnel through the region's netns proxy, then the PostgreSQL protocol over it
//! (no TLS: CNPG's default `pg_hba` accepts password logins without it).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::DynamicObject;

use super::netns_proxy::connect_through;
use super::plan::RealPlan;
use crate::lab::error::{LabError, Result};
use crate::lab::kubeconfig;
use crate::lab::layout::LabLayout;
use crate::lab::state::LabState;

const POSTGRES_PORT: u16 = 5432;

/// The pod CloudNativePG reports as the Cluster's current (or designated) primary.
pub async fn current_primary_pod(
    client: &kube::Client,
    namespace: &str,
    cluster: &str,
) -> Result<Pod> {
    let clusters: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &super::cluster_resource());
    let object = clusters.get(cluster).await.map_err(LabError::kube(format!(
        "reading Cluster {namespace}/{cluster}"
    )))?;
    let pod = object.data["status"]["currentPrimary"]
        .as_str()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            LabError::Config(format!(
                "Cluster {namespace}/{cluster} has no currentPrimary yet"
            ))
        })?
        .to_owned();
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    pods.get(&pod)
        .await
        .map_err(LabError::kube(format!("reading Pod {namespace}/{pod}")))
}

/// A connection as `user`/`password` to database `dbname` on the Cluster's current primary pod
/// in `member`, made within `within`.
pub async fn connect(
    layout: &LabLayout,
    member: &str,
    namespace: &str,
    cluster: &str,
    (user, password, dbname): (&str, &str, &str),
    within: Duration,
) -> Result<tokio_postgres::Client> {
    let state =
        LabState::load(layout)?.ok_or_else(|| LabError::NotRunning(layout.root().into()))?;
    let real = state.real.ok_or_else(|| {
        LabError::Config(format!(
            "the lab in {} is not a real tier",
            layout.root().display()
        ))
    })?;
    let plan = RealPlan::new(layout, &real.members);
    let region = plan
        .region(member)
        .ok_or_else(|| LabError::Config(format!("{member} has no node in this lab")))?;
    let client = kubeconfig::client_from_file(&layout.kubeconfig(member)).await?;
    let pod = current_primary_pod(&client, namespace, cluster).await?;
    let ip: IpAddr = pod
        .status
        .and_then(|s| s.pod_ip)
        .and_then(|ip| ip.parse().ok())
        .ok_or_else(|| LabError::Config(format!("the primary pod of {cluster} has no IP yet")))?;
    let target = SocketAddr::new(ip, POSTGRES_PORT);
    let timeout = |what: &str| LabError::Timeout(what.to_owned(), within.as_secs());
    let stream = tokio::time::timeout(within, connect_through(&region.egress_socket(), target))
        .await
        .map_err(|_| timeout(&format!("a tunnel to {target}")))?
        .map_err(|e| LabError::Config(format!("tunnel to {target}: {e}")))?;
    let mut config = tokio_postgres::Config::new();
    config
        .user(user)
        .password(password)
        .dbname(dbname)
        .application_name("federator-e2e");
    let (pg, connection) =
        tokio::time::timeout(within, config.connect_raw(stream, tokio_postgres::NoTls))
            .await
            .map_err(|_| timeout(&format!("PostgreSQL at {target}")))?
            .map_err(|e| LabError::Config(format!("PostgreSQL at {target}: {e}")))?;
    tokio::spawn(connection);
    Ok(pg)
}
