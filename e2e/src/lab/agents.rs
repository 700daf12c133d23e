//! Automatic-failover agents in the lab (`federator-lab agents NAMESPACE/NAME`): one
//! `federator agent` per member of a topology, recorded in `state.json` like the emulators
//! (kind `agent`, region = the member's Kubernetes cluster), so `lab stop REGION` stops a
//! region's agent with its apiserver, emulator and PostgreSQL, and `lab start REGION` brings
//! them back together, as a region returning whole after a power loss. The agents use the lab's
//! admin kubeconfigs (the hub's and every region's); their PostgreSQL URI is the emulator's.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::Api;
use topology::DistributedTopology;

use super::error::{LabError, Result};
use super::layout::LabLayout;
use super::state::{Component, HealthCheck, LabState};
use super::{HUB, MEMBERS};

/// An agent is a process; alive is all the lab checks (its heartbeat is the hub's business).
const AGENT_UP_WITHIN: Duration = Duration::from_secs(30);

pub fn component_name(region: &str, namespace: &str, topology: &str) -> String {
    format!("{region}-agent-{namespace}-{topology}")
}

/// `$FEDERATOR_BIN`, else `federator` next to the running binary (or one level up).
pub fn binary() -> Result<PathBuf> {
    super::binaries::sibling(
        "FEDERATOR_BIN",
        "federator",
        "finding federator (build it: cargo build -p federator, or set FEDERATOR_BIN)",
    )
}

/// Records and starts the agents of topology `namespace/name` (read from the hub).
pub async fn start_for(dir: &Path, namespace: &str, name: &str) -> Result<Vec<String>> {
    let layout = LabLayout::open(dir)?;
    let _lock = super::running::lock(&layout).await?;
    let mut state =
        LabState::load(&layout)?.ok_or_else(|| LabError::NotRunning(dir.to_path_buf()))?;
    let program = binary()?;
    let hub = super::kubeconfig::client_from_file(&layout.kubeconfig(HUB)).await?;
    let topo = Api::<DistributedTopology>::namespaced(hub, namespace)
        .get(name)
        .await
        .map_err(|source| LabError::Kube {
            action: format!("reading DistributedTopology {namespace}/{name} on the hub"),
            source,
        })?;
    let regions = layout
        .root()
        .join("agents")
        .join(format!("{namespace}.{name}"));
    std::fs::create_dir_all(&regions).map_err(LabError::io("creating", &regions))?;
    for region in MEMBERS {
        let to = regions.join(format!("{region}.kubeconfig"));
        std::fs::copy(layout.kubeconfig(region), &to).map_err(LabError::io("writing", &to))?;
    }
    let mut names = Vec::new();
    for m in &topo.spec.members {
        if !MEMBERS.contains(&m.cluster.as_str()) {
            return Err(LabError::Config(format!(
                "member {} runs in {}, which is not a lab region ({MEMBERS:?})",
                m.name, m.cluster
            )));
        }
        let postgres =
            crate::emulator::dsn(layout.root(), &m.cluster, &m.namespace, m.cluster_name())
                .map_err(|e| LabError::Config(format!("the PostgreSQL of {}: {e}", m.name)))?;
        let component = component_name(&m.cluster, namespace, name);
        state.upsert(Component {
            name: component.clone(),
            kind: "agent".into(),
            region: Some(m.cluster.clone()),
            ports: Vec::new(),
            program: program.clone(),
            args: vec![
                "agent".into(),
                format!("--topology={namespace}/{name}"),
                format!("--member={}", m.name),
                format!("--cluster={}", m.cluster),
                format!("--namespace={}", m.namespace),
                format!("--postgres={postgres}"),
                format!("--hub-kubeconfig={}", layout.kubeconfig(HUB).display()),
                format!("--member-kubeconfigs={}", regions.display()),
            ],
            log: layout.log_file(&component),
            health: HealthCheck::Alive,
            pid: None,
        });
        names.push(component);
    }
    state.save(&layout)?;
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    super::running::ensure_running(&layout, &mut state, &names, AGENT_UP_WITHIN).await
}
