#![forbid(unsafe_code)]
//! Member cluster credentials: where they come from (a directory of kubeconfig files, labelled
//! Secrets on the hub in Federator's or Argo CD's format), what is refused (auth plugins unless
//! allowed; file references from Secrets), how they reload without a restart ([`CredentialSet`]),
//! and the clients built from them ([`MemberCredential::client`]).
//!
//! No credential content ever reaches a `Debug` or `Display` output of this crate: credentials
//! format by name and origin only, and errors carry field paths and positions, never values.

mod argocd;
mod credential;
pub mod directory;
mod error;
mod kubeconfig;
pub mod member_access;
mod origin;
mod secret_data;
pub mod secrets;
mod set;

pub use argocd::{
    CLUSTER_SECRET_SELECTOR as ARGOCD_CLUSTER_SELECTOR,
    SECRET_TYPE_LABEL as ARGOCD_SECRET_TYPE_LABEL,
};
pub use credential::{AuthMethod, MemberCredential, Timeouts};
pub use error::{CredentialError, Result};
pub use kubeconfig::{MAX_KUBECONFIG_BYTES, Trust};
pub use origin::{Origin, SecretFormat};
pub use set::{CredentialOptions, CredentialSet, Snapshot};
