//! Topologies as they are on the hub, with their members' CNPG Clusters read through the member
//! credentials the controller uses (Federator-format Secrets on the hub), for `plan`, `validate`
//! and `switchover --dry-run` without `-f`.

use std::collections::BTreeMap;

use anyhow::Context as _;
use kube::{Api, ResourceExt};
use kubeconfigs::secrets::from_secret;
use kubeconfigs::{MemberCredential, Timeouts};
use topology::DistributedTopology;
use topology::cnpg::Cluster;

use super::hub::Hub;

/// Where the member credentials are.
#[derive(clap::Args, Clone)]
pub struct LiveArgs {
    /// Hub namespace of member credential Secrets (the controller's --secret-namespace), used to
    /// read the members' Clusters.
    #[arg(long, default_value = "federator-system")]
    pub secret_namespace: String,
    /// Run exec or auth-provider plugins of member credentials (the controller's
    /// --allow-auth-plugins).
    #[arg(long)]
    pub allow_auth_plugins: bool,
}

/// A topology from the hub with the Clusters its members name.
pub struct Live {
    pub object: DistributedTopology,
    pub clusters: Vec<Cluster>,
    /// Members whose Cluster could not be read, and why (no credential, unreachable, forbidden).
    pub unread: Vec<String>,
}

/// The member credentials on the hub, by member name; refused ones are reported, not used.
pub async fn credentials(
    hub: &Hub,
    args: &LiveArgs,
) -> anyhow::Result<BTreeMap<String, Result<MemberCredential, String>>> {
    let listed = hub
        .member_secrets(&args.secret_namespace)
        .await
        .context("reading the member credentials (to read the members' Clusters; -f works from files instead)")?;
    let mut out = BTreeMap::new();
    for secret in &listed {
        let name = secret
            .labels()
            .get(kubeconfigs::secrets::CLUSTER_NAME_LABEL)
            .cloned();
        match from_secret(
            secret,
            kubeconfigs::Trust {
                allow_auth_plugins: args.allow_auth_plugins,
                ..kubeconfigs::Trust::default()
            },
        )
        .await
        {
            Some(Ok(credential)) => {
                out.insert(credential.name().to_owned(), Ok(credential));
            }
            Some(Err(e)) => {
                out.insert(
                    name.unwrap_or_else(|| secret.name_any()),
                    Err(e.to_string()),
                );
            }
            None => {}
        }
    }
    Ok(out)
}

/// Topology `namespace/name` and its members' Clusters.
pub async fn read(hub: &Hub, namespace: &str, name: &str, args: &LiveArgs) -> anyhow::Result<Live> {
    let api: Api<DistributedTopology> = Api::namespaced(hub.client.clone(), namespace);
    let object = api.get(name).await.with_context(|| {
        format!(
            "reading DistributedTopology {namespace}/{name} on {}",
            hub.describe
        )
    })?;
    let credentials = credentials(hub, args).await?;
    with_clusters(object, &credentials).await
}

/// Reads the Clusters `object`'s members name.
pub async fn with_clusters(
    object: DistributedTopology,
    credentials: &BTreeMap<String, Result<MemberCredential, String>>,
) -> anyhow::Result<Live> {
    let mut clusters = Vec::new();
    let mut unread = Vec::new();
    for member in &object.spec.members {
        let what = format!(
            "{} (Cluster {}/{} on {})",
            member.name, member.namespace, member.name, member.cluster
        );
        let credential = match credentials.get(&member.cluster) {
            Some(Ok(credential)) => credential,
            Some(Err(e)) => {
                unread.push(format!("{what}: its credential is refused: {e}"));
                continue;
            }
            None => {
                unread.push(format!(
                    "{what}: no credential for member {} on the hub (`federator member join`)",
                    member.cluster
                ));
                continue;
            }
        };
        let client = credential
            .client(Timeouts::REQUESTS)
            .with_context(|| format!("building a client for member {}", member.cluster))?;
        let api: Api<Cluster> = Api::namespaced(client, &member.namespace);
        match api.get_opt(&member.name).await {
            Ok(Some(cluster)) => clusters.push(cluster),
            // Validation names a missing Cluster with its fix.
            Ok(None) => {}
            Err(e) => unread.push(format!("{what}: {}", credential.redact(&e.to_string()))),
        }
    }
    Ok(Live {
        object,
        clusters,
        unread,
    })
}
