//! Reaching a Kubernetes API the way kubectl does: `--kubeconfig` and `--context` (global flags),
//! else `$KUBECONFIG` (a `:`-separated list, merged) or `~/.kube/config`, else the in-cluster
//! ServiceAccount; the namespace defaults to the context's (`default` if it names none), or to
//! the pod's own namespace in-cluster.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::ListParams;
use kube::config::{KubeConfigOptions, Kubeconfig, NamedContext};
use kubeconfigs::secrets::MEMBER_SECRET_SELECTOR;
use topology::DistributedTopology;

/// kubectl's connection flags; global, so `federator --context hub status pg` and
/// `federator status pg --context hub` both work.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct KubeArgs {
    /// Path of the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then the
    /// in-cluster ServiceAccount).
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current-context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
}

/// A connected client and the namespace commands use when `-n` is not given.
pub struct Hub {
    pub client: kube::Client,
    pub default_namespace: String,
    /// What was connected to, for error messages: `context hub (https://127.0.0.1:6443)`.
    pub describe: String,
}

impl Hub {
    /// `-n` if given, else the context's namespace.
    pub fn namespace(&self, flag: Option<&str>) -> String {
        flag.map_or_else(|| self.default_namespace.clone(), str::to_owned)
    }

    /// The DistributedTopology `name` in `namespace`, or every one there, or (`all`) every one
    /// of the hub.
    pub async fn topologies(
        &self,
        namespace: &str,
        name: Option<&str>,
        all: bool,
    ) -> anyhow::Result<Vec<DistributedTopology>> {
        let api: Api<DistributedTopology> = if all {
            Api::all(self.client.clone())
        } else {
            Api::namespaced(self.client.clone(), namespace)
        };
        Ok(match name {
            Some(name) => vec![api.get(name).await.with_context(|| {
                format!(
                    "reading DistributedTopology {namespace}/{name} on {}",
                    self.describe
                )
            })?],
            None => {
                api.list(&ListParams::default())
                    .await
                    .with_context(|| format!("listing DistributedTopologies on {}", self.describe))?
                    .items
            }
        })
    }

    /// The Federator-format member credential Secrets in `namespace`.
    pub async fn member_secrets(&self, namespace: &str) -> anyhow::Result<Vec<Secret>> {
        self.labelled_secrets(namespace, MEMBER_SECRET_SELECTOR, "member credential")
            .await
    }

    /// Argo CD's cluster Secrets in `namespace` (`argocd.argoproj.io/secret-type=cluster`).
    pub async fn argocd_cluster_secrets(&self, namespace: &str) -> anyhow::Result<Vec<Secret>> {
        self.labelled_secrets(
            namespace,
            kubeconfigs::ARGOCD_CLUSTER_SELECTOR,
            "Argo CD cluster",
        )
        .await
    }

    async fn labelled_secrets(
        &self,
        namespace: &str,
        selector: &str,
        what: &str,
    ) -> anyhow::Result<Vec<Secret>> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        Ok(secrets
            .list(&ListParams::default().labels(selector))
            .await
            .with_context(|| format!("listing {what} Secrets in {namespace} on {}", self.describe))?
            .items)
    }
}

/// The kubeconfig at `path`, else `$KUBECONFIG` / `~/.kube/config`.
pub fn read_kubeconfig(path: Option<&Path>) -> anyhow::Result<Kubeconfig> {
    match path {
        Some(path) => Kubeconfig::read_from(path)
            .with_context(|| format!("reading the kubeconfig {}", path.display())),
        None => {
            Kubeconfig::read().context("reading the kubeconfig ($KUBECONFIG or ~/.kube/config)")
        }
    }
}

/// The context `name` of a kubeconfig; an unknown name is refused listing those there are.
pub fn find_context<'a>(
    kubeconfig: &'a Kubeconfig,
    flag: &str,
    name: &str,
) -> anyhow::Result<&'a NamedContext> {
    kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == name)
        .with_context(|| {
            let names: Vec<&str> = kubeconfig
                .contexts
                .iter()
                .map(|c| c.name.as_str())
                .collect();
            format!(
                "{flag} {name:?} is not in the kubeconfig; its contexts: {}",
                names.join(", ")
            )
        })
}

impl KubeArgs {
    /// The client configuration; in-cluster only when no kubeconfig flag, variable or file exists.
    pub async fn config(&self) -> anyhow::Result<kube::Config> {
        let options = KubeConfigOptions {
            context: self.context.clone(),
            ..KubeConfigOptions::default()
        };
        if self.kubeconfig.is_none() && self.context.is_none() {
            return kube::Config::infer().await.context(
                "no kubeconfig found ($KUBECONFIG, ~/.kube/config) and not running in a cluster; \
                 pass --kubeconfig FILE",
            );
        }
        let kubeconfig = read_kubeconfig(self.kubeconfig.as_deref())?;
        if let Some(context) = &self.context {
            find_context(&kubeconfig, "--context", context)?;
        }
        kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .context("loading the kubeconfig context")
    }

    /// Connects (no request is made yet).
    pub async fn connect(&self) -> anyhow::Result<Hub> {
        let config = self.config().await?;
        let describe = match &self.context {
            Some(context) => format!("context {context} ({})", config.cluster_url),
            None => config.cluster_url.to_string(),
        };
        let default_namespace = config.default_namespace.clone();
        let client = kube::Client::try_from(config)
            .with_context(|| format!("building a client for {describe}"))?;
        Ok(Hub {
            client,
            default_namespace,
            describe,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_CONTEXTS: &str = r#"
apiVersion: v1
kind: Config
current-context: hub
clusters:
- name: hub
  cluster: {server: "https://127.0.0.1:6443"}
- name: eu
  cluster: {server: "https://127.0.0.1:6444"}
users:
- name: admin
  user: {token: abc}
contexts:
- name: hub
  context: {cluster: hub, user: admin, namespace: federator}
- name: eu
  context: {cluster: eu, user: admin}
"#;

    fn args(context: Option<&str>) -> (tempfile::TempDir, KubeArgs) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, TWO_CONTEXTS).unwrap();
        let args = KubeArgs {
            kubeconfig: Some(path),
            context: context.map(str::to_owned),
        };
        (dir, args)
    }

    #[tokio::test]
    async fn the_namespace_comes_from_the_current_context_and_the_context_flag_switches_it() {
        let (_dir, current) = args(None);
        let config = current.config().await.unwrap();
        assert_eq!(config.default_namespace, "federator");
        assert_eq!(config.cluster_url.to_string(), "https://127.0.0.1:6443/");

        let (_dir, eu) = args(Some("eu"));
        let config = eu.config().await.unwrap();
        assert_eq!(config.default_namespace, "default");
        assert_eq!(config.cluster_url.to_string(), "https://127.0.0.1:6444/");
    }

    #[tokio::test]
    async fn an_unknown_context_names_the_ones_there_are() {
        let (_dir, args) = args(Some("nope"));
        let err = format!("{:#}", args.config().await.unwrap_err());
        assert!(err.contains("\"nope\""), "{err}");
        assert!(err.contains("hub, eu"), "{err}");
    }
}
