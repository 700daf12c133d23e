//! The CNPG emulator: one process per member region watches CNPG `Cluster` objects on the
//! member's apiserver and runs one real PostgreSQL 15 instance for each, reproducing CNPG's
//! replica-cluster behaviour (contract `cnpg-replica-contract.md`). See `docs/emulator.md`.

pub mod bootstrap;
pub mod config;
pub mod demotion;
pub mod error;
pub mod faults;
pub mod layout;
pub mod pass;
pub mod pods;
pub mod postgres;
pub mod promotion;
pub mod reconcile;
pub mod run;
pub mod settings;
pub mod stall;
pub mod status;
pub mod status_only;
pub mod steady;
pub mod webhook;

use std::path::Path;

pub use config::{EmulatorConfig, Timing};
pub use error::{EmulatorError, Result};
pub use layout::{EmulatorLayout, InstanceRecord};

/// The libpq URI of the instance of Cluster `namespace/name` on `member` (what
/// `federator-lab dsn` prints): `postgresql://postgres@127.0.0.1:<port>/postgres?sslmode=disable`.
pub fn dsn(lab_dir: &Path, member: &str, namespace: &str, name: &str) -> Result<String> {
    let lab_dir = lab_dir
        .canonicalize()
        .map_err(EmulatorError::io("resolving", lab_dir))?;
    EmulatorLayout::new(lab_dir)
        .record(member, namespace, name)
        .map(|r| postgres::sql::uri(r.port))
        .ok_or_else(|| EmulatorError::NoInstance {
            member: member.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
}
