//! Writing kubeconfig files and building kube clients from them.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use kube::config::{KubeConfigOptions, Kubeconfig};

use super::error::{LabError, Result};

/// One context of a kubeconfig: a server reached with a bearer token, verified against a CA.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    pub context: &'a str,
    pub server: String,
    pub ca_pem: &'a str,
    pub user: &'a str,
    pub token: &'a str,
    pub namespace: Option<&'a str>,
}

/// Renders a kubeconfig with the entries as contexts; the first is the current context.
pub fn render(entries: &[Entry<'_>]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let clusters: Vec<_> = entries
        .iter()
        .map(|e| {
            serde_json::json!({
                "name": e.context,
                "cluster": {"server": e.server, "certificate-authority-data": b64.encode(e.ca_pem)},
            })
        })
        .collect();
    let users: Vec<_> = entries
        .iter()
        .map(|e| serde_json::json!({"name": format!("{}-{}", e.user, e.context), "user": {"token": e.token}}))
        .collect();
    let contexts: Vec<_> = entries
        .iter()
        .map(|e| {
            let mut context = serde_json::json!({"cluster": e.context, "user": format!("{}-{}", e.user, e.context)});
            if let Some(ns) = e.namespace {
                context["namespace"] = ns.into();
            }
            serde_json::json!({"name": e.context, "context": context})
        })
        .collect();
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": clusters,
        "users": users,
        "contexts": contexts,
        "current-context": entries.first().map(|e| e.context).unwrap_or_default(),
    });
    serde_saphyr::to_string(&doc).expect("a JSON value serializes to YAML")
}

/// Writes a kubeconfig readable only by its owner (it holds a token).
pub fn write(path: &Path, entries: &[Entry<'_>]) -> Result<()> {
    super::pki::write_private(path, &render(entries))
}

/// A client for the current context of kubeconfig YAML; `what` names it in errors.
pub async fn client_from_yaml(yaml: &str, what: &Path) -> Result<kube::Client> {
    let kubeconfig = Kubeconfig::from_yaml(yaml).map_err(|source| LabError::Kubeconfig {
        path: what.to_path_buf(),
        source,
    })?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|source| LabError::Kubeconfig {
                path: what.to_path_buf(),
                source,
            })?;
    // Loopback: anything slower than this is a hung server, and readiness polls must not stall.
    config.connect_timeout = Some(Duration::from_secs(2));
    config.read_timeout = Some(Duration::from_secs(30));
    kube::Client::try_from(config).map_err(LabError::kube(format!(
        "building a client from {}",
        what.display()
    )))
}

/// A client for the current context of the kubeconfig file at `path`.
pub async fn client_from_file(path: &Path) -> Result<kube::Client> {
    let yaml = std::fs::read_to_string(path).map_err(LabError::io("reading kubeconfig", path))?;
    client_from_yaml(&yaml, path).await
}
