//! `DIR/state.json`: what the lab started, so `down`, `status`, `stop` and `start` act on exactly
//! those processes. Each component records its full command line, so one can be restarted alone
//! (`federator-lab start REGION`) and other components (emulators, PostgreSQL) fit the same model.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::error::{LabError, Result};
use super::layout::LabLayout;
use super::topology::Ports;

/// How to tell that a component is healthy, beyond its process being alive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum HealthCheck {
    /// `GET http://127.0.0.1:<port>/health` answers `"health":"true"`.
    Etcd { port: u16 },
    /// `GET /readyz` with the admin kubeconfig of `region` answers 200.
    Apiserver { region: String },
    /// Something accepts TCP connections on the port.
    Tcp { port: u16 },
    /// Something accepts connections on the unix socket (containerd, the netns proxy).
    UnixSocket { path: PathBuf },
    /// The process being alive is all that can be checked from the host (a node component in a
    /// network namespace; the real tier then waits on what it serves, e.g. the node's Ready).
    Alive,
}

/// One process of the lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Component {
    /// Unique name: `etcd`, the region name for an apiserver, or e.g. `eu-south-emulator`.
    pub name: String,
    /// `etcd`, `apiserver`, or a kind another module adds (`emulator`, `postgres`).
    pub kind: String,
    /// The region this component belongs to (`lab stop REGION` stops all of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Ports it listens on, checked to be free before it starts.
    pub ports: Vec<u16>,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub log: PathBuf,
    pub health: HealthCheck,
    /// Pid while running; `None` once stopped.
    #[serde(default)]
    pub pid: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabState {
    pub ports: Ports,
    /// Start order; stopped in reverse.
    pub components: Vec<Component>,
    /// Unix time of the last successful bootstrap (CRDs, RBAC, member Secrets).
    #[serde(default)]
    pub bootstrapped_at: Option<u64>,
    /// Where the CNPG Cluster CRD came from (module version or the committed fallback).
    #[serde(default)]
    pub cnpg_crd_source: Option<String>,
    /// Fingerprint of what the last bootstrap applied (see `lifecycle`): a rebuilt binary with
    /// changed CRDs re-bootstraps a running lab instead of taking the fast path.
    #[serde(default)]
    pub bootstrap_fingerprint: Option<String>,
    /// Components held down by `lab stop` until `lab start`: `up` (run by any test process)
    /// leaves them stopped instead of restarting them behind the stopper's back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<String>,
    /// The real-CNPG tier's choice, `None` for the emulator tier (docs/lab-real.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub real: Option<super::real::RealOptions>,
}

impl LabState {
    pub fn new(ports: Ports) -> Self {
        Self {
            ports,
            components: Vec::new(),
            bootstrapped_at: None,
            cnpg_crd_source: None,
            bootstrap_fingerprint: None,
            held: Vec::new(),
            real: None,
        }
    }

    pub fn load(layout: &LabLayout) -> Result<Option<Self>> {
        let path = layout.state_file();
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| LabError::Parse {
                    what: path.display().to_string(),
                    message: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(LabError::Io {
                action: "reading",
                path,
                source: e,
            }),
        }
    }

    /// Writes atomically (temp file + rename), so a crash never leaves half a state file.
    pub fn save(&self, layout: &LabLayout) -> Result<()> {
        let path = layout.state_file();
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self).expect("lab state serializes");
        std::fs::write(&tmp, text).map_err(LabError::io("writing", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(LabError::io("renaming into place", &path))
    }

    pub fn component(&self, name: &str) -> Option<&Component> {
        self.components.iter().find(|c| c.name == name)
    }

    /// Adds the component, or replaces the definition of one with the same name while keeping
    /// its recorded pid (so a running process stays tracked when flags change).
    pub fn upsert(&mut self, mut component: Component) {
        match self
            .components
            .iter_mut()
            .find(|c| c.name == component.name)
        {
            Some(existing) => {
                component.pid = existing.pid;
                *existing = component;
            }
            None => self.components.push(component),
        }
    }

    pub fn set_pid(&mut self, name: &str, pid: Option<u32>) {
        if let Some(c) = self.components.iter_mut().find(|c| c.name == name) {
            c.pid = pid;
        }
    }
}
