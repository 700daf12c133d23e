//! `member list`: every member credential on the hub, whether it reaches its member, and what it
//! may really do there, asked of the member itself (SelfSubjectAccessReview), not read from the
//! Role: an admission policy, an aggregated ClusterRole or a Role edited by hand all show.

use std::process::ExitCode;

use comfy_table::Table;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kubeconfigs::SecretFormat;
use kubeconfigs::Timeouts;
use kubeconfigs::member_access::{
    NAMESPACES_ANNOTATION, TOKEN_EXPIRES_ANNOTATION, required_access,
};
use kubeconfigs::secrets::{format_of, from_secret};
use serde::Serialize;

use super::exit;
use super::hub::KubeArgs;
use super::member_token::can;

#[derive(clap::Args)]
pub struct Args {
    /// Hub namespace of member Secrets (the controller's --secret-namespace).
    #[arg(long, default_value = "federator-system")]
    secret_namespace: String,
    /// Namespaces to check on members whose Secret does not record them (Secrets not written by
    /// `member join`).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "databases",
        value_name = "NS"
    )]
    namespaces: Vec<String>,
    /// Hub namespace of Argo CD cluster Secrets to list too (the controller's
    /// --argocd-namespace: they are member credentials as well).
    #[arg(long, value_name = "NS")]
    argocd_namespace: Option<String>,
    /// Check credentials that use exec or auth-provider plugins (runs them, as the controller's
    /// --allow-auth-plugins would).
    #[arg(long)]
    allow_auth_plugins: bool,
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Output {
    Table,
    Json,
}

/// One permission the controller needs, and whether the credential has it.
#[derive(Serialize)]
pub struct Access {
    pub resource: &'static str,
    pub verb: &'static str,
    pub allowed: bool,
}

/// Asks the member, as the credential behind `client`, for every permission the member Role
/// grants in `namespace`.
pub async fn check_access(
    client: &kube::Client,
    namespace: &str,
) -> Result<Vec<Access>, kube::Error> {
    let mut out = Vec::new();
    for (resource, verb) in required_access() {
        let allowed = can(client, namespace, resource, verb).await?;
        out.push(Access {
            resource,
            verb,
            allowed,
        });
    }
    Ok(out)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Row {
    member: String,
    secret: String,
    /// Where the credential comes from: `federator` (a member Secret) or `argocd` (an Argo CD
    /// cluster Secret).
    source: &'static str,
    server: Option<String>,
    reachable: bool,
    version: Option<String>,
    token_expires: Option<String>,
    /// Why the credential could not be used or the member not reached.
    error: Option<String>,
    namespaces: Vec<NamespaceAccess>,
}

#[derive(Serialize)]
struct NamespaceAccess {
    namespace: String,
    access: Vec<Access>,
}

impl Row {
    fn missing(&self) -> Vec<String> {
        self.namespaces
            .iter()
            .flat_map(|ns| {
                ns.access
                    .iter()
                    .filter(|a| !a.allowed)
                    .map(move |a| format!("{} {} in {}", a.verb, a.resource, ns.namespace))
            })
            .collect()
    }

    fn healthy(&self) -> bool {
        self.reachable && self.error.is_none() && self.missing().is_empty()
    }
}

pub async fn list(args: Args, kube: &KubeArgs) -> anyhow::Result<ExitCode> {
    let hub = kube.connect().await?;
    let mut listed = hub.member_secrets(&args.secret_namespace).await?;
    if let Some(namespace) = &args.argocd_namespace {
        listed.extend(hub.argocd_cluster_secrets(namespace).await?);
    }
    let mut rows = Vec::new();
    for secret in &listed {
        rows.push(row(secret, &args).await);
    }
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        Output::Table => print!("{}", render(&rows)),
    }
    Ok(exit::code(if rows.iter().all(Row::healthy) {
        exit::OK
    } else {
        exit::ERROR
    }))
}

async fn row(secret: &Secret, args: &Args) -> Row {
    let annotations = secret.annotations();
    let namespaces: Vec<String> = annotations
        .get(NAMESPACES_ANNOTATION)
        .map(|v| v.split(',').map(str::to_owned).collect())
        .unwrap_or_else(|| args.namespaces.clone());
    let mut row = Row {
        member: secret.name_any(),
        secret: format!(
            "{}/{}",
            secret.namespace().unwrap_or_default(),
            secret.name_any()
        ),
        source: match format_of(secret) {
            Some(SecretFormat::ArgoCd) => "argocd",
            _ => "federator",
        },
        server: None,
        reachable: false,
        version: None,
        token_expires: annotations.get(TOKEN_EXPIRES_ANNOTATION).cloned(),
        error: None,
        namespaces: Vec::new(),
    };
    let credential = match from_secret(
        secret,
        kubeconfigs::Trust {
            allow_auth_plugins: args.allow_auth_plugins,
            ..kubeconfigs::Trust::default()
        },
    )
    .await
    {
        Some(Ok(credential)) => credential,
        Some(Err(e)) => {
            row.error = Some(e.to_string());
            return row;
        }
        None => {
            row.error = Some("not a member Secret".into());
            return row;
        }
    };
    row.member = credential.name().to_owned();
    row.server = Some(credential.server());
    let client = match credential.client(Timeouts::REQUESTS) {
        Ok(client) => client,
        Err(e) => {
            row.error = Some(e.to_string());
            return row;
        }
    };
    match client.apiserver_version().await {
        Ok(version) => {
            row.reachable = true;
            row.version = Some(version.git_version);
        }
        Err(e) => {
            row.error = Some(credential.redact(&e.to_string()));
            return row;
        }
    }
    for namespace in namespaces {
        match check_access(&client, &namespace).await {
            Ok(access) => row.namespaces.push(NamespaceAccess { namespace, access }),
            Err(e) => {
                row.error = Some(credential.redact(&format!(
                    "asking the member what the credential may do in {namespace}: {e}"
                )));
                break;
            }
        }
    }
    row
}

fn render(rows: &[Row]) -> String {
    if rows.is_empty() {
        return "no member Secrets on the hub (`federator member join` adds one; \
                --argocd-namespace lists Argo CD cluster Secrets too)\n"
            .into();
    }
    let mut table = Table::new();
    table.set_header([
        "MEMBER",
        "SOURCE",
        "REACHABLE",
        "VERSION",
        "TOKEN EXPIRES",
        "NAMESPACES",
        "MISSING",
        "SERVER",
    ]);
    for row in rows {
        let missing = row.missing();
        let missing = match (&row.error, missing.is_empty()) {
            (Some(e), _) => format!("error: {e}"),
            (None, true) => "-".into(),
            (None, false) => missing.join(", "),
        };
        table.add_row([
            row.member.clone(),
            row.source.into(),
            if row.reachable { "yes" } else { "no" }.into(),
            row.version.clone().unwrap_or_else(|| "-".into()),
            row.token_expires.clone().unwrap_or_else(|| "-".into()),
            row.namespaces
                .iter()
                .map(|n| n.namespace.as_str())
                .collect::<Vec<_>>()
                .join(","),
            missing,
            row.server.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    format!("{table}\n")
}
