//! `federator version [--client] [-o text|json]`: this CLI's version and, from the hub, its
//! Kubernetes version, whether Federator's CRDs are installed, and the version of each Federator
//! controller Deployment (label `app.kubernetes.io/name=federator`, as the chart sets).

use std::process::ExitCode;

use anyhow::Context as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use serde::Serialize;

use super::exit;
use super::hub::KubeArgs;

/// The label the chart puts on the controller's Deployment and pods.
const CONTROLLER_SELECTOR: &str = "app.kubernetes.io/name=federator";
const CRD: &str = "distributedtopologies.federator.dev";

#[derive(clap::Args)]
pub struct Args {
    /// Only this CLI's version (no hub needed).
    #[arg(long)]
    client: bool,
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Versions {
    client: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    server: Option<Server>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Server {
    kubernetes: String,
    /// The API versions of `distributedtopologies.federator.dev` the hub serves; empty: not installed.
    crd_versions: Vec<String>,
    /// `namespace/name: version` of each controller Deployment, or why they could not be listed.
    controllers: Result<Vec<String>, String>,
}

pub fn run(args: Args, kube: &KubeArgs) -> anyhow::Result<ExitCode> {
    let mut versions = Versions {
        client: env!("CARGO_PKG_VERSION").to_owned(),
        server: None,
    };
    if !args.client {
        let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
        versions.server = Some(runtime.block_on(server(kube))?);
    }
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&versions)?),
        Output::Text => print!("{}", text(&versions)),
    }
    Ok(exit::code(exit::OK))
}

async fn server(kube: &KubeArgs) -> anyhow::Result<Server> {
    let hub = kube.connect().await?;
    let kubernetes = hub
        .client
        .apiserver_version()
        .await
        .with_context(|| format!("reading the version of {}", hub.describe))?
        .git_version;
    let crds: Api<CustomResourceDefinition> = Api::all(hub.client.clone());
    let crd_versions = match crds.get_opt(CRD).await {
        Ok(Some(crd)) => crd
            .spec
            .versions
            .iter()
            .filter(|v| v.served)
            .map(|v| v.name.clone())
            .collect(),
        Ok(None) => Vec::new(),
        Err(e) => vec![format!("unknown ({e})")],
    };
    let deployments: Api<Deployment> = Api::all(hub.client.clone());
    let controllers = deployments
        .list(&ListParams::default().labels(CONTROLLER_SELECTOR))
        .await
        .map(|list| list.items.iter().map(describe).collect())
        .map_err(|e| format!("cannot list Deployments ({e})"));
    Ok(Server {
        kubernetes,
        crd_versions,
        controllers,
    })
}

fn describe(d: &Deployment) -> String {
    let labels = d.labels();
    let version = labels
        .get("app.kubernetes.io/version")
        .cloned()
        .or_else(|| {
            let containers = &d.spec.as_ref()?.template.spec.as_ref()?.containers;
            containers.first()?.image.clone()
        })
        .unwrap_or_else(|| "unknown".into());
    format!(
        "{}/{}: {version}",
        d.namespace().unwrap_or_default(),
        d.name_any()
    )
}

fn text(v: &Versions) -> String {
    let mut out = format!("Client: federator {}\n", v.client);
    if let Some(s) = &v.server {
        out += &format!("Hub Kubernetes: {}\n", s.kubernetes);
        out += &match s.crd_versions.as_slice() {
            [] => format!("Federator CRDs: not installed ({CRD})\n"),
            served => format!("Federator CRDs: {} served\n", served.join(", ")),
        };
        out += &match &s.controllers {
            Ok(list) if list.is_empty() => {
                format!("Controller: no Deployment labelled {CONTROLLER_SELECTOR}\n")
            }
            Ok(list) => format!("Controller: {}\n", list.join("; ")),
            Err(e) => format!("Controller: {e}\n"),
        };
    }
    out
}
