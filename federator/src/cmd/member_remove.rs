//! `member remove`: the hub Secret, and on the member the RoleBindings, Roles, token Secrets and
//! ServiceAccount `join` created (found by the hub Secret's annotations and the member label).
//! Refused while a DistributedTopology names the member, unless --force.

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, ListParams};
use kube::{Api, ResourceExt};
use kubeconfigs::member_access::{MEMBER_LABEL, NAMESPACES_ANNOTATION, SERVICE_ACCOUNT_ANNOTATION};
use topology::DistributedTopology;

use super::exit;
use super::hub::KubeArgs;
use super::member::{MemberAdmin, secret_name};

#[derive(clap::Args)]
pub struct Args {
    /// The member.
    name: String,
    /// Hub namespace of member Secrets (the controller's --secret-namespace).
    #[arg(long, default_value = "federator-system")]
    secret_namespace: String,
    /// The member's admin context, to delete Federator's objects there. Without it, use
    /// --hub-only (e.g. for a member that is gone).
    #[arg(long, value_name = "NAME", required_unless_present = "hub_only")]
    member_context: Option<String>,
    /// Kubeconfig with the member's admin context (default: the hub's kubeconfig).
    #[arg(long, value_name = "FILE")]
    member_kubeconfig: Option<std::path::PathBuf>,
    /// Only delete the hub Secret; the member keeps the ServiceAccount, Roles and token.
    #[arg(long, conflicts_with = "member_context")]
    hub_only: bool,
    /// Remove even though DistributedTopologies name the member (they lose it at once).
    #[arg(long)]
    force: bool,
}

pub async fn remove(args: Args, kube: &KubeArgs) -> anyhow::Result<ExitCode> {
    let member = args.name.as_str();
    let hub = kube.connect().await?;
    let users = topologies_naming(&hub.client, member).await?;
    if !users.is_empty() && !args.force {
        bail!(
            "member {member} is named by {}; remove it from them first, or pass --force. Nothing \
             was changed.",
            users.join(", ")
        );
    }
    let secrets: Api<Secret> = Api::namespaced(hub.client.clone(), &args.secret_namespace);
    let name = secret_name(member);
    let secret = secrets
        .get_opt(&name)
        .await
        .with_context(|| format!("reading Secret {}/{name} on the hub", args.secret_namespace))?;
    if let Some(context) = &args.member_context {
        let admin = MemberAdmin {
            member_kubeconfig: args.member_kubeconfig.clone(),
            member_context: context.clone(),
        }
        .connect(kube)
        .await?;
        let removed = remove_member_objects(&admin.client, member, secret.as_ref()).await?;
        println!(
            "on {}: deleted {}",
            admin.describe,
            if removed.is_empty() {
                "nothing (no objects of this member found)".to_owned()
            } else {
                removed.join(", ")
            }
        );
    }
    match secret {
        Some(_) => {
            secrets
                .delete(&name, &DeleteParams::default())
                .await
                .with_context(|| format!("deleting Secret {}/{name}", args.secret_namespace))?;
            println!("hub: deleted Secret {}/{name}", args.secret_namespace);
        }
        None => println!(
            "hub: no Secret {}/{name} (already removed)",
            args.secret_namespace
        ),
    }
    Ok(exit::code(exit::OK))
}

/// `namespace/name` of every DistributedTopology with a member on `member`.
async fn topologies_naming(hub: &kube::Client, member: &str) -> anyhow::Result<Vec<String>> {
    let api: Api<DistributedTopology> = Api::all(hub.clone());
    let list = api
        .list(&ListParams::default())
        .await
        .context("listing DistributedTopologies on the hub (to refuse removing a member in use)")?;
    Ok(list
        .items
        .iter()
        .filter(|t| t.spec.members.iter().any(|m| m.cluster == member))
        .map(|t| format!("{}/{}", t.namespace().unwrap_or_default(), t.name_any()))
        .collect())
}

/// Deletes what `join` created for `member`; returns what was deleted.
async fn remove_member_objects(
    admin: &kube::Client,
    member: &str,
    secret: Option<&Secret>,
) -> anyhow::Result<Vec<String>> {
    let annotations = secret.map(ResourceExt::annotations);
    let service_account = annotations
        .and_then(|a| a.get(SERVICE_ACCOUNT_ANNOTATION))
        .and_then(|v| v.split_once('/'))
        .map(|(ns, name)| (ns.to_owned(), name.to_owned()));
    let namespaces: Vec<String> = annotations
        .and_then(|a| a.get(NAMESPACES_ANNOTATION))
        .map(|v| v.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    let Some((sa_ns, sa)) = service_account else {
        bail!(
            "the hub has no record of what `join` created on member {member} (Secret missing or \
             without {SERVICE_ACCOUNT_ANNOTATION}); delete its objects on the member by hand \
             (label {MEMBER_LABEL}={member}), or pass --hub-only"
        );
    };
    let selector = ListParams::default().labels(&format!("{MEMBER_LABEL}={member}"));
    let mut removed = Vec::new();
    for ns in &namespaces {
        let bindings: Api<RoleBinding> = Api::namespaced(admin.clone(), ns);
        for b in bindings
            .list(&selector)
            .await
            .with_context(|| format!("listing RoleBindings in {ns}"))?
        {
            delete(
                &bindings,
                &b.name_any(),
                &mut removed,
                &format!("RoleBinding {ns}/{}", b.name_any()),
            )
            .await?;
        }
        let roles: Api<Role> = Api::namespaced(admin.clone(), ns);
        for r in roles
            .list(&selector)
            .await
            .with_context(|| format!("listing Roles in {ns}"))?
        {
            delete(
                &roles,
                &r.name_any(),
                &mut removed,
                &format!("Role {ns}/{}", r.name_any()),
            )
            .await?;
        }
    }
    // Token Secrets first: deleting them revokes the tokens even if the ServiceAccount stays.
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &sa_ns);
    for s in secrets
        .list(&selector)
        .await
        .with_context(|| format!("listing Secrets in {sa_ns}"))?
    {
        delete(
            &secrets,
            &s.name_any(),
            &mut removed,
            &format!("Secret {sa_ns}/{}", s.name_any()),
        )
        .await?;
    }
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), &sa_ns);
    if let Some(account) = accounts.get_opt(&sa).await? {
        // Only an account join created for this member (another hub's may share the name).
        if account.labels().get(MEMBER_LABEL).map(String::as_str) == Some(member) {
            delete(
                &accounts,
                &sa,
                &mut removed,
                &format!("ServiceAccount {sa_ns}/{sa}"),
            )
            .await?;
        }
    }
    Ok(removed)
}

async fn delete<K>(
    api: &Api<K>,
    name: &str,
    removed: &mut Vec<String>,
    what: &str,
) -> anyhow::Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => removed.push(what.to_owned()),
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => return Err(e).with_context(|| format!("deleting {what}")),
    }
    Ok(())
}
