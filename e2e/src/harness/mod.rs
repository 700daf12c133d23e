//! The e2e fixture: one lab per test run, shared by every test (and attached to by every test
//! binary), a namespace of its own for each test, and a dump of what the test touched when it
//! fails.
//!
//! ```no_run
//! # async fn t() {
//! use e2e::harness::{self, TestNamespace};
//! let lab = harness::lab().await;                      // starts or attaches, panics if it cannot
//! let ns = TestNamespace::create("my-test").await;     // on all four apiservers
//! let admin = lab.admin("eu-south").await;
//! # }
//! ```
//!
//! Beside the lab and namespaces: [`testkit`] (CNPG Clusters on the emulators: manifests, the
//! pair, waiting on status, SQL), [`controller`] (`federator controller` and the CLI as child
//! processes, the writer and the two-primaries sampler, topology helpers), [`setup`] (the set-up
//! most controller tests start from, as one builder: `Setup::pair("test").ready().await`) and
//! [`scale`] (hundreds of status-only pairs, the controller's memory and CPU).
//!
//! Environment: `FEDERATOR_LAB_DIR` (default `<workspace>/target/e2e-lab`) picks the lab;
//! `FEDERATOR_LAB_ETCD_PORT` / `FEDERATOR_LAB_APISERVER_PORT` its ports when it has to start
//! (defaults 23890 / 26543, apart from the `make demo` lab so both can run at once).

pub mod agent;
pub mod agent_identity;
mod attach;
pub mod controller;
pub mod drill;
mod dump;
mod fixture;
pub mod gc;
pub mod hub_identity;
mod namespace;
pub mod region;
pub mod scale;
pub mod setup;
pub mod testkit;
pub mod watch;

pub use attach::{REAL_PORT_OFFSET, lab, lab_dir, real_lab, real_lab_dir};
pub use fixture::{
    HARNESS_APISERVER_PORT, HARNESS_ETCD_PORT, SharedLab, Subresource, WAIT, block_on_detached,
    cnpg_cluster, patch_pinned, sample_cluster, wait_until,
};
pub use namespace::TestNamespace;
