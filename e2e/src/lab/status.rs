//! What `federator-lab status` reports, as text or JSON.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::error::{LabError, Result};
use super::health;
use super::layout::LabLayout;
use super::process;
use super::state::{Component, LabState};
use super::topology::{Ports, REGIONS};

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    pub name: String,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub pid: Option<u32>,
    pub running: bool,
    pub healthy: bool,
    /// Why it is not healthy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    pub ports: Vec<u16>,
    pub log: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LabStatus {
    pub dir: PathBuf,
    /// Every component is running and healthy.
    pub healthy: bool,
    pub ports: Ports,
    pub cnpg_crd_source: Option<String>,
    pub components: Vec<ComponentStatus>,
    /// `lab.kubeconfig` (four contexts) first, then one per region.
    pub kubeconfigs: Vec<PathBuf>,
    /// The real tier: each member's node (`federator-lab status` only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<super::real::status::NodeStatus>,
    /// The real tier: every pod of each member (the operator, the Clusters' instances).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<super::real::status::PodStatus>,
}

/// Probes every recorded component (concurrently).
pub async fn status(dir: impl AsRef<Path>) -> Result<LabStatus> {
    let layout = LabLayout::open(dir.as_ref())?;
    let state =
        LabState::load(&layout)?.ok_or_else(|| LabError::NotRunning(dir.as_ref().to_path_buf()))?;
    let mut status = of_state(&layout, &state).await;
    if let Some(real) = &state.real {
        let (nodes, pods) = super::real::status::nodes_and_pods(&layout, &real.members).await;
        status.healthy &= nodes.iter().all(|n| n.ready);
        status.nodes = nodes;
        status.pods = pods;
    }
    Ok(status)
}

pub(crate) async fn of_state(layout: &LabLayout, state: &LabState) -> LabStatus {
    let probes = state.components.iter().map(|c| component(layout, c));
    let components = futures::future::join_all(probes).await;
    let mut kubeconfigs = vec![layout.lab_kubeconfig()];
    kubeconfigs.extend(REGIONS.iter().map(|r| layout.kubeconfig(r)));
    LabStatus {
        dir: layout.root().to_path_buf(),
        healthy: !components.is_empty() && components.iter().all(|c| c.healthy),
        ports: state.ports,
        cnpg_crd_source: state.cnpg_crd_source.clone(),
        components,
        kubeconfigs,
        nodes: Vec::new(),
        pods: Vec::new(),
    }
}

async fn component(layout: &LabLayout, c: &Component) -> ComponentStatus {
    let running = c
        .pid
        .is_some_and(|pid| process::is_ours(pid, layout.root()));
    let problem = if running {
        health::probe(layout, &c.health).await.err()
    } else {
        Some("not running".to_owned())
    };
    ComponentStatus {
        name: c.name.clone(),
        kind: c.kind.clone(),
        region: c.region.clone(),
        pid: c.pid.filter(|_| running),
        running,
        healthy: problem.is_none(),
        problem,
        ports: c.ports.clone(),
        log: c.log.clone(),
    }
}

impl fmt::Display for LabStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.healthy {
            "healthy"
        } else {
            "NOT healthy"
        };
        writeln!(f, "lab {} — {verdict}", self.dir.display())?;
        writeln!(
            f,
            "{:<22} {:<10} {:>8} {:<12} {:<8} problem",
            "COMPONENT", "KIND", "PID", "PORTS", "HEALTH"
        )?;
        for c in &self.components {
            let ports = c
                .ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let pid = c.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
            let health = if c.healthy { "ok" } else { "FAIL" };
            writeln!(
                f,
                "{:<22} {:<10} {:>8} {:<12} {:<8} {}",
                c.name,
                c.kind,
                pid,
                ports,
                health,
                c.problem.as_deref().unwrap_or("")
            )?;
        }
        for n in &self.nodes {
            let ready = if n.ready { "Ready" } else { "NOT Ready" };
            writeln!(f, "node {:<18} {:<12} {ready}", n.name, n.region)?;
        }
        if !self.pods.is_empty() {
            writeln!(
                f,
                "{:<12} {:<24} {:<44} {:<10} {:<6} IP",
                "REGION", "NAMESPACE", "POD", "PHASE", "READY"
            )?;
        }
        for p in &self.pods {
            writeln!(
                f,
                "{:<12} {:<24} {:<44} {:<10} {:<6} {}",
                p.region,
                p.namespace,
                p.name,
                p.phase,
                if p.ready { "yes" } else { "no" },
                p.ip.as_deref().unwrap_or("-")
            )?;
        }
        if let Some(source) = &self.cnpg_crd_source {
            writeln!(f, "CNPG Cluster CRD: {source}")?;
        }
        writeln!(f, "kubeconfigs:")?;
        for k in &self.kubeconfigs {
            writeln!(f, "  {}", k.display())?;
        }
        Ok(())
    }
}
