//! The lab every test shares, clients for it, and the helpers tests call on it.

use kube::Client;
use kube::discovery::ApiResource;

use crate::lab::{self, LabLayout, Ports};

/// Default etcd port of the test lab (the `make demo` lab uses 23790).
pub const HARNESS_ETCD_PORT: u16 = 23890;
/// Default hub apiserver port of the test lab (the `make demo` lab uses 26443).
pub const HARNESS_APISERVER_PORT: u16 = 26543;

/// The running lab every test of this process shares. Holds only plain data: kube clients are
/// tied to the runtime that made them, and each `#[tokio::test]` has its own runtime.
#[derive(Debug)]
pub struct SharedLab {
    pub layout: LabLayout,
    pub ports: Ports,
    /// The real-CNPG tier (`harness::real_lab`): Clusters run as pods on real nodes, reached
    /// through the regions' netns proxies, not on host ports.
    pub real: bool,
}

impl SharedLab {
    /// Admin (system:masters) client of an apiserver: `hub` or a member.
    pub async fn admin(&self, region: &str) -> Client {
        let path = self.layout.kubeconfig(region);
        lab::kubeconfig::client_from_file(&path)
            .await
            .unwrap_or_else(|e| panic!("admin client for {region}: {e}"))
    }

    /// Client of a member's least-privilege ServiceAccount `databases/federator`.
    pub async fn federator(&self, member: &str) -> Client {
        let path = self.layout.federator_kubeconfig(member);
        lab::kubeconfig::client_from_file(&path)
            .await
            .unwrap_or_else(|e| panic!("least-privilege client for {member}: {e}"))
    }
}

/// The CNPG `Cluster` resource, for `Api::<DynamicObject>::namespaced_with`.
pub fn cnpg_cluster() -> ApiResource {
    ApiResource {
        group: "postgresql.cnpg.io".into(),
        version: "v1".into(),
        api_version: "postgresql.cnpg.io/v1".into(),
        kind: "Cluster".into(),
        plural: "clusters".into(),
    }
}

/// A valid CNPG `Cluster` of the lab's shape: a replica-cluster member of a distributed topology
/// whose `self` is `region` and whose primary is `primary`, with the external clusters, bootstrap
/// and storage a real manifest carries (so tests see what patches do to untouched fields).
pub fn sample_cluster(name: &str, region: &str, primary: &str) -> kube::api::DynamicObject {
    let external = |r: &str| {
        serde_json::json!({
            "name": r,
            "connectionParameters": {"host": format!("{name}-rw.{r}.example"), "user": "streaming_replica", "dbname": "postgres"},
            "sslKey": {"name": format!("{name}-replication"), "key": "tls.key"},
            "sslCert": {"name": format!("{name}-replication"), "key": "tls.crt"},
            "sslRootCert": {"name": format!("{name}-ca"), "key": "ca.crt"},
        })
    };
    let externals: Vec<_> = crate::lab::MEMBERS.iter().map(|r| external(r)).collect();
    // As in a real topology: the primary's cluster is created empty, the others copy it.
    let bootstrap = if region == primary {
        serde_json::json!({"initdb": {"database": "app", "owner": "app"}})
    } else {
        serde_json::json!({"pg_basebackup": {"source": primary}})
    };
    let value = serde_json::json!({
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Cluster",
        "metadata": {"name": name, "labels": {"app": name}, "annotations": {"example.com/owner": "e2e"}},
        "spec": {
            "instances": 3,
            "primaryUpdateMethod": "switchover",
            "storage": {"size": "1Gi"},
            "postgresql": {"parameters": {"max_connections": "100"}},
            "bootstrap": bootstrap,
            "externalClusters": externals,
            "replica": {"primary": primary, "source": primary, "self": region},
        },
    });
    serde_json::from_value(value).expect("the sample Cluster is a valid object")
}

/// How long [`wait_until`] waits: far above what the lab needs on a loaded 2-core machine.
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Polls `check` until it returns `Some` and returns that; panics naming `what` after [`WAIT`].
pub async fn wait_until<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    lab::health::wait_for(what, WAIT, check)
        .await
        .unwrap_or_else(|e| panic!("waiting for {e}"))
}

/// Which endpoint [`patch_pinned`] writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    Main,
    Status,
}

/// Reads the object, then JSON-merge-patches it with `patch` pinned to the resourceVersion just
/// read, retrying on 409 Conflict. Returns `(before, after)` with no other write between them,
/// so a test can compare the two exactly even while a controller (the CNPG emulator) writes
/// the same object.
pub async fn patch_pinned(
    api: &kube::Api<kube::api::DynamicObject>,
    name: &str,
    subresource: Subresource,
    patch: serde_json::Value,
) -> (kube::api::DynamicObject, kube::api::DynamicObject) {
    use kube::api::{Patch, PatchParams};
    wait_until(&format!("a conflict-free patch of {name}"), || {
        let mut patch = patch.clone();
        async move {
            let before = api
                .get(name)
                .await
                .unwrap_or_else(|e| panic!("reading {name}: {e}"));
            patch["metadata"]["resourceVersion"] = before.metadata.resource_version.clone().into();
            let params = PatchParams::default();
            let result = match subresource {
                Subresource::Main => api.patch(name, &params, &Patch::Merge(&patch)).await,
                Subresource::Status => api.patch_status(name, &params, &Patch::Merge(&patch)).await,
            };
            match result {
                Ok(after) => Some((before, after)),
                Err(kube::Error::Api(status)) if status.code == 409 => None,
                Err(e) => panic!("patching {name}: {e}"),
            }
        }
    })
    .await
}

/// Runs `future` to completion on a runtime and thread of its own, and waits for it. For `Drop`
/// impls (clean-up, failure dumps): they cannot await, and the test's runtime may be shutting
/// down around them.
pub fn block_on_detached<F>(future: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let worker = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for clean-up");
        runtime.block_on(future)
    });
    let _ = worker.join();
}
