//! `federator member join | rotate | remove | list | manifests`: onboarding a member cluster
//! without hand-written Secrets (docs/credentials.md). On the member: a ServiceAccount, a Role
//! and RoleBinding per namespace ([`kubeconfigs::member_access`]), and a token bound to a Secret
//! so that deleting that Secret revokes it. On the hub: the member Secret the controller reads.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use kube::config::KubeConfigOptions;
use kubeconfigs::member_access::{MANAGED_BY, MANAGED_BY_LABEL, MEMBER_LABEL};

use super::hub::{KubeArgs, find_context, read_kubeconfig};
use super::{member_join, member_list, member_remove};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Give Federator least-privilege access to a member (ServiceAccount, Role per namespace,
    /// token) and store the credential on the hub.
    Join(member_join::JoinArgs),
    /// Issue a new token for a member, store it on the hub, and revoke the old one. The
    /// controller picks the new one up without a restart.
    Rotate(member_join::RotateArgs),
    /// Delete a member's credential from the hub and Federator's objects from the member.
    Remove(member_remove::Args),
    /// Every member credential on the hub: reachability, server version, token expiry, and the
    /// permissions the credential really has (SelfSubjectAccessReview).
    List(member_list::Args),
    /// Print the member-side RBAC as YAML, for GitOps (what `join` creates, minus the token).
    Manifests(member_join::ManifestArgs),
}

pub fn run(args: Args, kube: &KubeArgs) -> anyhow::Result<ExitCode> {
    if let Command::Manifests(manifests) = &args.command {
        return member_join::manifests(manifests);
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        match args.command {
            Command::Join(join) => member_join::join(join, kube).await,
            Command::Rotate(rotate) => member_join::rotate(rotate, kube).await,
            Command::Remove(remove) => member_remove::remove(remove, kube).await,
            Command::List(list) => member_list::list(list, kube).await,
            Command::Manifests(_) => unreachable!("handled above"),
        }
    })
}

/// How to reach the member as someone who may create ServiceAccounts, Roles and tokens there.
#[derive(clap::Args, Clone)]
pub struct MemberAdmin {
    /// Kubeconfig with an admin context of the member (default: the hub's kubeconfig).
    #[arg(long, value_name = "FILE")]
    pub member_kubeconfig: Option<PathBuf>,
    /// The member's context in that kubeconfig.
    #[arg(long, value_name = "NAME")]
    pub member_context: String,
}

/// The member's admin client, and the kubeconfig cluster entry it uses (server, CA).
pub struct AdminAccess {
    pub client: kube::Client,
    pub cluster: kube::config::Cluster,
    pub describe: String,
}

impl MemberAdmin {
    pub async fn connect(&self, hub: &KubeArgs) -> anyhow::Result<AdminAccess> {
        let kubeconfig = read_kubeconfig(
            self.member_kubeconfig
                .as_deref()
                .or(hub.kubeconfig.as_deref()),
        )?;
        let context = &self.member_context;
        let named = find_context(&kubeconfig, "--member-context", context)?;
        let cluster_name = named
            .context
            .as_ref()
            .map(|c| c.cluster.clone())
            .unwrap_or_default();
        let cluster = kubeconfig
            .clusters
            .iter()
            .find(|c| c.name == cluster_name)
            .and_then(|c| c.cluster.clone())
            .with_context(|| format!("context {context} names cluster {cluster_name:?}, which the kubeconfig does not define"))?;
        let options = KubeConfigOptions {
            context: Some(context.clone()),
            ..KubeConfigOptions::default()
        };
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .with_context(|| format!("loading the member context {context}"))?;
        let describe = format!("member context {context} ({})", config.cluster_url);
        let client = kube::Client::try_from(config)
            .with_context(|| format!("building a client for {context}"))?;
        Ok(AdminAccess {
            client,
            cluster,
            describe,
        })
    }
}

/// Where the credential lives on each side.
#[derive(clap::Args, Clone)]
pub struct Placement {
    /// Hub namespace of member Secrets (the controller's --secret-namespace).
    #[arg(long, default_value = "federator-system")]
    pub secret_namespace: String,
    /// The ServiceAccount Federator uses on the member.
    #[arg(long, default_value = "federator")]
    pub service_account: String,
    /// The ServiceAccount's namespace on the member (created if missing).
    #[arg(long, default_value = "federator-system")]
    pub service_account_namespace: String,
}

/// The hub Secret of a member.
pub fn secret_name(member: &str) -> String {
    format!("member-{member}")
}

/// Labels of everything `join` creates on a member for `member`.
pub fn member_labels(member: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
        (MEMBER_LABEL.to_owned(), member.to_owned()),
    ])
}

/// Field manager of every write the member commands make.
pub const FIELD_MANAGER: &str = "federator-cli";
