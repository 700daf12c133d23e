//! The HTTPS endpoint: axum over rustls (ring), HTTP/1.1, at CNPG's path.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
// PEM parsing from rustls' own pki-types (rustls-pemfile is unmaintained: RUSTSEC-2025-0134).
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::review::{Outcome, Reviewer};
use super::{Result, WebhookError};

/// CNPG's path for the Cluster validating webhook.
pub const PATH: &str = "/validate-postgresql-cnpg-io-v1-cluster";

/// A TLS handshake that takes longer than this is dropped, so a stuck client holds nothing.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How to run the webhook.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// Where to listen; port 0 picks a free one (see [`RunningWebhook::addr`]).
    pub bind: SocketAddr,
    /// Serving certificate chain (PEM), e.g. from `lab::pki::issue_serving_cert`.
    pub cert_pem: String,
    /// Its private key (PEM).
    pub key_pem: String,
    /// Fault injection for the whole server: the first N admission requests fail with HTTP 500,
    /// whatever the Cluster (per-Cluster: [`super::FAIL_TIMES_ANNOTATION`]).
    pub fail_first_requests: u64,
}

impl WebhookConfig {
    pub fn new(bind: SocketAddr, cert_pem: String, key_pem: String) -> Self {
        WebhookConfig {
            bind,
            cert_pem,
            key_pem,
            fail_first_requests: 0,
        }
    }
}

/// A webhook server running on the current tokio runtime. Dropping it leaves the server running
/// until the runtime ends; [`RunningWebhook::shutdown`] stops it.
#[derive(Debug)]
pub struct RunningWebhook {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<std::io::Result<()>>,
    acceptor: JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Shared {
    reviewer: Reviewer,
    fail_first: u64,
    requests: AtomicU64,
}

impl RunningWebhook {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://<addr><PATH>`, the `clientConfig.url` to register.
    pub fn url(&self) -> String {
        format!("https://{}{PATH}", self.addr)
    }

    /// Admission requests received so far, all Clusters (failed ones included).
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Admission requests received so far for one Cluster.
    pub fn reviewed(&self, namespace: &str, name: &str) -> u64 {
        self.shared.reviewer.reviewed(namespace, name)
    }

    /// Failures the `webhook-fail-times` annotation injected so far for one Cluster.
    pub fn injected(&self, namespace: &str, name: &str) -> u64 {
        self.shared.reviewer.injected(namespace, name)
    }

    /// Stops accepting, lets in-flight requests finish, and waits for the server to end.
    pub async fn shutdown(mut self) -> Result<()> {
        self.acceptor.abort();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match (&mut self.server).await {
            Ok(result) => result.map_err(WebhookError::Serve),
            Err(join) if join.is_cancelled() => Ok(()),
            Err(join) => Err(WebhookError::Serve(std::io::Error::other(join))),
        }
    }

    /// Waits until the server ends on its own (it does not, short of an I/O error).
    pub async fn wait(mut self) -> Result<()> {
        match (&mut self.server).await {
            Ok(result) => result.map_err(WebhookError::Serve),
            Err(join) => Err(WebhookError::Serve(std::io::Error::other(join))),
        }
    }
}

/// Binds, then serves in the background; returns once the port accepts connections.
pub async fn serve(cfg: WebhookConfig) -> Result<RunningWebhook> {
    let tls = TlsAcceptor::from(Arc::new(tls_config(&cfg.cert_pem, &cfg.key_pem)?));
    let tcp = TcpListener::bind(cfg.bind)
        .await
        .map_err(|source| WebhookError::Bind {
            addr: cfg.bind,
            source,
        })?;
    let addr = tcp.local_addr().map_err(|source| WebhookError::Bind {
        addr: cfg.bind,
        source,
    })?;
    let shared = Arc::new(Shared {
        fail_first: cfg.fail_first_requests,
        ..Shared::default()
    });
    let router = Router::new()
        .route(PATH, post(admit))
        .route("/readyz", get(|| async { "ok" }))
        .with_state(shared.clone());
    let (connections, incoming) = mpsc::channel(64);
    let acceptor = tokio::spawn(accept_loop(tcp, tls, connections));
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(TlsListener { incoming, addr }, router)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    Ok(RunningWebhook {
        addr,
        shared,
        stop: Some(stop),
        server,
        acceptor,
    })
}

async fn admit(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let seen = shared.requests.fetch_add(1, Ordering::SeqCst);
    if seen < shared.fail_first {
        let message = format!(
            "injected webhook failure {} of {} (fail_first_requests)",
            seen + 1,
            shared.fail_first
        );
        return (StatusCode::INTERNAL_SERVER_ERROR, message).into_response();
    }
    match shared.reviewer.review(&body) {
        Outcome::Review(review) => axum::Json(review).into_response(),
        Outcome::Fail(message) => (StatusCode::INTERNAL_SERVER_ERROR, message).into_response(),
    }
}

fn tls_config(cert_pem: &str, key_pem: &str) -> Result<rustls::ServerConfig> {
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| WebhookError::Pem(format!("certificate: {e}")))?;
    if certs.is_empty() {
        return Err(WebhookError::Pem("no certificate in the PEM".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| match e {
        pem::Error::NoItemsFound => WebhookError::Pem("no private key in the PEM".into()),
        e => WebhookError::Pem(format!("key: {e}")),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    // Only HTTP/1.1 is built in; advertising it keeps the apiserver from trying h2.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Accepts TCP connections and completes TLS handshakes concurrently, so one slow client does
/// not hold up the others; finished handshakes go to axum through [`TlsListener`].
async fn accept_loop(
    tcp: TcpListener,
    tls: TlsAcceptor,
    connections: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let (stream, peer) = match tcp.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Typically EMFILE: back off briefly instead of spinning.
                tracing::warn!("webhook accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let tls = tls.clone();
        let connections = connections.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                Ok(Ok(stream)) => {
                    let _ = connections.send((stream, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!("webhook TLS handshake with {peer} failed: {e}"),
                Err(_) => tracing::debug!("webhook TLS handshake with {peer} timed out"),
            }
        });
    }
}

struct TlsListener {
    incoming: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    addr: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.incoming.recv().await {
            Some(connection) => connection,
            // The accept loop is gone (shutdown): never yield another connection.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_pem_certificate_and_key_make_a_server_config() {
        let (cert, key) = self_signed();
        let config = tls_config(&cert, &key).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn a_missing_certificate_or_key_is_named() {
        let (cert, key) = self_signed();
        let no_cert = tls_config("", &key).unwrap_err().to_string();
        assert!(no_cert.contains("no certificate"), "{no_cert}");
        // The certificate's PEM holds no private key.
        let no_key = tls_config(&cert, &cert).unwrap_err().to_string();
        assert!(no_key.contains("no private key"), "{no_key}");
    }
}
