//! Routing a process's Kubernetes connections through fault proxies: a proxy in front of the
//! hub and of each member apiserver, and kubeconfigs that point at the proxies instead of the
//! apiservers. The lab's serving certificate is for `127.0.0.1`, whatever the port, so TLS
//! verification against the lab CA stays on.
//!
//! ```no_run
//! # async fn t() {
//! use e2e::faults::{Fault, Routes};
//! let lab = e2e::harness::lab().await;
//! let routes = Routes::start(lab).await.unwrap();
//! // federator controller with KUBECONFIG=routes.hub_kubeconfig() and routes.controller_args()
//! routes.member("eu-central").set(Fault::Blackhole);
//! # }
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::proxy::FaultProxy;
use crate::harness::SharedLab;
use crate::lab::{HUB, MEMBERS};

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("kubeconfig {path}: {message}")]
    Kubeconfig { path: PathBuf, message: String },
    #[error("no apiserver port for region {0:?}")]
    UnknownRegion(String),
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RouteError {
    let path = path.to_path_buf();
    move |source| RouteError::Io {
        action,
        path,
        source,
    }
}

/// Rewrites every cluster's `server` of a kubeconfig to `https://<to>`, keeping the CA, the
/// credentials and the contexts.
pub fn redirect_kubeconfig(yaml: &str, to: SocketAddr) -> Result<String, String> {
    let mut doc: serde_json::Value = serde_saphyr::from_str(yaml).map_err(|e| e.to_string())?;
    let clusters = doc
        .get_mut("clusters")
        .and_then(|c| c.as_array_mut())
        .ok_or("no clusters")?;
    for entry in clusters {
        let cluster = entry
            .get_mut("cluster")
            .and_then(|c| c.as_object_mut())
            .ok_or("a cluster entry without `cluster`")?;
        cluster.insert("server".into(), format!("https://{to}").into());
    }
    serde_saphyr::to_string(&doc).map_err(|e| e.to_string())
}

/// Writes `src` redirected to `to` at `dst`, readable only by its owner (it holds a token).
pub fn write_redirected(src: &Path, dst: &Path, to: SocketAddr) -> Result<(), RouteError> {
    let yaml = std::fs::read_to_string(src).map_err(io("reading", src))?;
    let redirected = redirect_kubeconfig(&yaml, to).map_err(|message| RouteError::Kubeconfig {
        path: src.to_path_buf(),
        message,
    })?;
    crate::lab::pki::write_private(dst, &redirected).map_err(|e| RouteError::Io {
        action: "writing",
        path: dst.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })
}

/// A proxy in front of the hub and of every member apiserver, with kubeconfigs through them:
/// the hub's admin kubeconfig and a directory of the members' least-privilege kubeconfigs (the
/// same credentials as the hub Secrets). Everything stops and the files go when dropped.
#[derive(Debug)]
pub struct Routes {
    pub hub: FaultProxy,
    members: BTreeMap<String, FaultProxy>,
    dir: tempfile::TempDir,
}

impl Routes {
    pub async fn start(lab: &SharedLab) -> Result<Self, RouteError> {
        let upstream = |region: &str| -> Result<SocketAddr, RouteError> {
            let port = lab
                .ports
                .apiserver_of(region)
                .ok_or_else(|| RouteError::UnknownRegion(region.into()))?;
            Ok(SocketAddr::from(([127, 0, 0, 1], port)))
        };
        let root = lab.layout.root().join("faults");
        std::fs::create_dir_all(&root).map_err(io("creating", &root))?;
        let dir = tempfile::Builder::new()
            .prefix("routes-")
            .tempdir_in(&root)
            .map_err(io("creating a directory in", &root))?;
        async fn proxy(to: SocketAddr, region: &str) -> Result<FaultProxy, RouteError> {
            FaultProxy::start(to)
                .await
                .map_err(io("starting a fault proxy for", Path::new(region)))
        }
        let hub = proxy(upstream(HUB)?, HUB).await?;
        write_redirected(
            &lab.layout.kubeconfig(HUB),
            &dir.path().join("hub.kubeconfig"),
            hub.addr(),
        )?;
        let members_dir = dir.path().join("members");
        std::fs::create_dir_all(&members_dir).map_err(io("creating", &members_dir))?;
        let mut members = BTreeMap::new();
        for member in MEMBERS {
            let p = proxy(upstream(member)?, member).await?;
            write_redirected(
                &lab.layout.federator_kubeconfig(member),
                &members_dir.join(format!("{member}.kubeconfig")),
                p.addr(),
            )?;
            members.insert(member.to_owned(), p);
        }
        Ok(Self { hub, members, dir })
    }

    /// The proxy in front of `member`'s apiserver. Panics on a name that is not a lab member.
    pub fn member(&self, member: &str) -> &FaultProxy {
        self.members
            .get(member)
            .unwrap_or_else(|| panic!("{member:?} is not a lab member ({MEMBERS:?})"))
    }

    /// The hub's admin kubeconfig through the hub proxy (for `KUBECONFIG`).
    pub fn hub_kubeconfig(&self) -> PathBuf {
        self.dir.path().join("hub.kubeconfig")
    }

    /// The directory of member kubeconfigs through the member proxies.
    pub fn member_kubeconfigs(&self) -> PathBuf {
        self.dir.path().join("members")
    }

    /// `federator controller` flags that take member credentials only from
    /// [`Self::member_kubeconfigs`] (not from the hub Secrets, which name the apiservers).
    pub fn controller_args(&self) -> Vec<String> {
        vec![
            "--member-kubeconfigs".into(),
            self.member_kubeconfigs().display().to_string(),
            "--secret-namespace".into(),
            String::new(),
        ]
    }

    /// A member's admin kubeconfig through its proxy, written next to the others: for a
    /// `federator-emulator run --kubeconfig` whose apiserver connection should see the faults.
    pub fn admin_kubeconfig_of(
        &self,
        lab: &SharedLab,
        member: &str,
    ) -> Result<PathBuf, RouteError> {
        let dst = self.dir.path().join(format!("{member}.admin.kubeconfig"));
        write_redirected(
            &lab.layout.kubeconfig(member),
            &dst,
            self.member(member).addr(),
        )?;
        Ok(dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redirected_kubeconfig_keeps_everything_but_the_server() {
        let yaml = crate::lab::kubeconfig::render(&[crate::lab::kubeconfig::Entry {
            context: "eu-south",
            server: "https://127.0.0.1:26546".into(),
            ca_pem: "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n",
            user: "federator",
            token: "secret-token",
            namespace: Some("databases"),
        }]);
        let out = redirect_kubeconfig(&yaml, "127.0.0.1:40001".parse().unwrap()).unwrap();
        let parsed = kube::config::Kubeconfig::from_yaml(&out).unwrap();
        let cluster = parsed.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:40001"));
        assert!(cluster.certificate_authority_data.is_some());
        assert_eq!(parsed.current_context.as_deref(), Some("eu-south"));
        assert!(out.contains("secret-token"));
    }

    #[test]
    fn a_kubeconfig_without_clusters_is_refused() {
        let err = redirect_kubeconfig(
            "apiVersion: v1\nkind: Config\n",
            "127.0.0.1:1".parse().unwrap(),
        )
        .unwrap_err();
        assert!(err.contains("no clusters"), "{err}");
    }
}
