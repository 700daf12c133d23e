//! The local lab: one etcd and four real kube-apiservers (`hub`, `eu-central`, `eu-western`,
//! `eu-south`) on loopback, with the CNPG Cluster CRD and least-privilege credentials set up.
//! Driven by `federator-lab up | down | status | stop | start` and by the e2e harness.
//!
//! Layout of the lab directory (see [`LabLayout`]): `state.json` (processes and ports),
//! `lab.lock`, `pki/` (CA, serving cert, ServiceAccount keys, admin token), `logs/<component>.log`,
//! `etcd-data/` (a link to a memory directory by default, see [`etcd_storage`]), `<region>.kubeconfig` (admin), `lab.kubeconfig` (four contexts) and
//! `<member>.federator.kubeconfig` (least privilege, same as the hub Secret).

pub mod agents;
pub mod binaries;
pub mod bootstrap;
pub mod cnpg_crd;
pub mod emulators;
pub mod error;
pub mod etcd_storage;
pub mod health;
pub mod hub_crds;
pub mod kubeconfig;
pub mod layout;
pub mod lifecycle;
pub mod pki;
pub mod process;
pub mod real;
pub mod running;
pub mod state;
pub mod status;
pub mod topology;

pub use error::{LabError, Result};
pub use layout::LabLayout;
pub use lifecycle::{
    POSTGRES_PREFIX, UpOptions, UpReport, down, start, start_component, start_control_plane, stop,
    stop_component, up,
};
pub use status::{ComponentStatus, LabStatus, status};
pub use topology::*;
