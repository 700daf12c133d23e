//! CNPG's validating admission webhook `vcluster.cnpg.io`, emulated (contract §4): the rules of
//! CNPG v1.27.1 with its exact messages, served over HTTPS with a certificate from the lab CA
//! and registered in a member apiserver by a `ValidatingWebhookConfiguration`.
//!
//! ```no_run
//! # async fn t(client: kube::Client, dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
//! use e2e::emulator::webhook::{self, WebhookConfig};
//! let (cert_pem, key_pem) = e2e::lab::pki::issue_serving_cert(dir, &["127.0.0.1"])?;
//! let server = webhook::serve(WebhookConfig::new("127.0.0.1:0".parse()?, cert_pem, key_pem)).await?;
//! let ca = e2e::lab::pki::ca_pem(dir)?;
//! webhook::register(client, &ca, &server.url()).await?;
//! # Ok(()) }
//! ```
//!
//! Layout: [`rules`] (pure validation), [`field`] and [`gojson`] (Go's rendering of errors and
//! values), [`token`] (Go's token decoding errors), [`review`] (AdmissionReview and the fault),
//! [`server`] (HTTPS), [`register`] (the `ValidatingWebhookConfiguration`).

pub mod field;
pub mod gojson;
pub mod register;
pub mod review;
pub mod rules;
pub mod server;
pub mod token;

pub use register::{Registration, register, register_with, unregister, wait_until_enforced};
pub use review::{FAIL_TIMES_ANNOTATION, Reviewer};
pub use rules::validate_cluster;
pub use server::{PATH, RunningWebhook, WebhookConfig, serve};

/// The webhook's name, as it appears in every rejection.
pub const WEBHOOK_NAME: &str = "vcluster.cnpg.io";

/// Why the webhook could not start or register.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("invalid serving certificate or key: {0}")]
    Pem(String),
    #[error("building the TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("binding the webhook to {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the webhook server stopped: {0}")]
    Serve(#[source] std::io::Error),
    #[error("{action}: {source}")]
    Kube {
        action: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("the webhook is not enforced in namespace {namespace} after {waited:?}: {last}")]
    NotEnforced {
        namespace: String,
        waited: std::time::Duration,
        last: String,
    },
}

pub type Result<T, E = WebhookError> = std::result::Result<T, E>;
