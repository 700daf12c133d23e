//! TLS to PostgreSQL with rustls, as libpq's `sslmode` asks for it. tokio-postgres knows only
//! `disable`, `prefer` and `require` and leaves certificate checks to the connector, so the URI's
//! `sslmode` (and `sslrootcert`, a file, for URIs given on the command line) are read here and
//! the connector checks what the mode promises:
//!
//! | `sslmode` | TLS | Certificate |
//! |---|---|---|
//! | `disable` | no | - |
//! | `allow`, `prefer` (default) | if the server offers it | not checked |
//! | `require` | yes | not checked; with a CA given, the chain (libpq does the same) |
//! | `verify-ca` | yes | the chain up to the CA |
//! | `verify-full` | yes | the chain, and the host name (or IP) in the certificate |
//!
//! The CA comes from the Secret a drill's `spec.connection[].caSecretRef` names, or from
//! `sslrootcert=FILE`; `verify-ca` and `verify-full` without one are refused before connecting.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

/// libpq's `sslmode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<Self, TlsError> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => return Err(TlsError::Mode(other.to_owned())),
        })
    }

    /// The mode tokio-postgres is given: it only decides whether TLS is tried or required.
    fn for_tokio_postgres(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow | SslMode::Prefer => "prefer",
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => "require",
        }
    }
}

/// Why a connection's TLS settings cannot be used; names the setting and the fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "sslmode={0} is not a libpq sslmode; use disable, allow, prefer, require, verify-ca or verify-full"
    )]
    Mode(String),
    #[error(
        "sslmode={0} needs the CA that signed the server's certificate: set spec.connection[].caSecretRef (a Secret with key ca.crt), or sslrootcert=FILE in a --dsn URI"
    )]
    NoCa(&'static str),
    #[error("the CA ({0}) holds no PEM certificate")]
    EmptyCa(String),
    #[error("the CA ({what}) cannot be used: {reason}")]
    BadCa { what: String, reason: String },
    #[error("sslrootcert={path}: {reason}")]
    RootCertFile { path: String, reason: String },
}

/// A URI split into what tokio-postgres reads and what the TLS connector needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// The URI with `sslmode` mapped to tokio-postgres' modes and `sslrootcert` removed.
    pub uri: String,
    pub mode: SslMode,
    pub root_cert: Option<String>,
}

/// Pure: reads `sslmode` and `sslrootcert` from a libpq URI (`postgresql://…?sslmode=…`) or
/// keyword/value string (`host=… sslmode=…`).
pub fn parse(uri: &str) -> Result<Parsed, TlsError> {
    let mut mode = SslMode::Prefer;
    let mut root_cert = None;
    let is_url = uri.starts_with("postgres://") || uri.starts_with("postgresql://");
    let (head, params, sep) = if is_url {
        match uri.split_once('?') {
            Some((head, query)) => (head, query.split('&').collect::<Vec<_>>(), "&"),
            None => (uri, Vec::new(), "&"),
        }
    } else {
        ("", uri.split_whitespace().collect::<Vec<_>>(), " ")
    };
    let mut kept = Vec::new();
    for param in params {
        match param.split_once('=') {
            Some(("sslmode", value)) => mode = SslMode::parse(&percent_decode(value))?,
            Some(("sslrootcert", value)) => root_cert = Some(percent_decode(value)),
            _ => kept.push(param.to_owned()),
        }
    }
    kept.push(format!("sslmode={}", mode.for_tokio_postgres()));
    let uri = if is_url {
        format!("{head}?{}", kept.join(sep))
    } else {
        kept.join(sep)
    };
    Ok(Parsed {
        uri,
        mode,
        root_cert,
    })
}

/// `%XX` escapes of a URI query value (a path may carry them).
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls configuration for `mode`, trusting `ca_pem` (`what` names where it came from).
pub fn client_config(
    mode: SslMode,
    ca_pem: Option<(&str, &[u8])>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = match ca_pem {
        Some((what, pem)) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| TlsError::BadCa {
                    what: what.to_owned(),
                    reason: e.to_string(),
                })?;
                roots.add(cert).map_err(|e| TlsError::BadCa {
                    what: what.to_owned(),
                    reason: e.to_string(),
                })?;
            }
            if roots.is_empty() {
                return Err(TlsError::EmptyCa(what.to_owned()));
            }
            Some(Arc::new(roots))
        }
        None => None,
    };
    let verifier: Arc<dyn ServerCertVerifier> = match (mode, roots) {
        (SslMode::VerifyFull, Some(roots)) => webpki(roots)?,
        (SslMode::VerifyCa | SslMode::Require, Some(roots)) => Arc::new(ChainOnly(webpki(roots)?)),
        (SslMode::VerifyFull, None) => return Err(TlsError::NoCa("verify-full")),
        (SslMode::VerifyCa, None) => return Err(TlsError::NoCa("verify-ca")),
        (_, _) => Arc::new(Unchecked(provider())),
    };
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::BadCa {
            what: "TLS protocol versions".into(),
            reason: e.to_string(),
        })?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn webpki(roots: Arc<RootCertStore>) -> Result<Arc<WebPkiServerVerifier>, TlsError> {
    WebPkiServerVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| TlsError::BadCa {
            what: "the CA".into(),
            reason: e.to_string(),
        })
}

/// `verify-ca`: the chain must reach the CA; the name in the certificate is not compared.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` and `require` without a CA: encrypted, the certificate not checked (libpq's
/// meaning of these modes); the handshake signatures are still verified.
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// tokio-postgres' TLS connector over rustls.
#[derive(Clone)]
pub struct RustlsConnect(pub Arc<ClientConfig>);

impl<S> MakeTlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnectTo;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> io::Result<RustlsConnectTo> {
        let name = ServerName::try_from(domain.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(RustlsConnectTo {
            config: self.0.clone(),
            name,
        })
    }
}

/// The connector for one host.
pub struct RustlsConnectTo {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnectTo
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let tls = tokio_rustls::TlsConnector::from(self.config)
                .connect(self.name, stream)
                .await?;
            Ok(RustlsStream(tls))
        })
    }
}

/// An established TLS connection.
pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for RustlsStream<S> {
    // SCRAM without channel binding: tokio-postgres then authenticates as libpq does with
    // `channel_binding=prefer` against a server that does not offer it.
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_is_read_from_uris_and_keyword_strings_and_mapped_for_tokio_postgres() {
        let p =
            parse("postgresql://app:pw@db.example:5432/app?sslmode=verify-full&application_name=x")
                .unwrap();
        assert_eq!(p.mode, SslMode::VerifyFull);
        assert_eq!(
            p.uri,
            "postgresql://app:pw@db.example:5432/app?application_name=x&sslmode=require"
        );
        let p =
            parse("postgresql://app@h/app?sslrootcert=%2Fetc%2Fca.crt&sslmode=verify-ca").unwrap();
        assert_eq!(
            (p.mode, p.root_cert.as_deref()),
            (SslMode::VerifyCa, Some("/etc/ca.crt"))
        );
        assert_eq!(p.uri, "postgresql://app@h/app?sslmode=require");
        let p = parse("host=127.0.0.1 port=5432 user=app sslmode=disable").unwrap();
        assert_eq!(p.mode, SslMode::Disable);
        assert_eq!(p.uri, "host=127.0.0.1 port=5432 user=app sslmode=disable");
        let p = parse("postgres://h/app").unwrap();
        assert_eq!(
            (p.mode, p.uri.as_str()),
            (SslMode::Prefer, "postgres://h/app?sslmode=prefer")
        );
        let e = parse("postgres://h/app?sslmode=verify_full").unwrap_err();
        assert!(e.to_string().contains("verify-full"), "{e}");
    }

    #[test]
    fn verifying_modes_need_a_ca_and_a_ca_must_hold_a_certificate() {
        let e = client_config(SslMode::VerifyFull, None).unwrap_err();
        assert!(e.to_string().contains("caSecretRef"), "{e}");
        assert!(client_config(SslMode::VerifyCa, None).is_err());
        assert!(client_config(SslMode::Require, None).is_ok());
        let e = client_config(SslMode::VerifyFull, Some(("Secret pg-ca", b"not pem"))).unwrap_err();
        assert!(e.to_string().contains("Secret pg-ca"), "{e}");
    }
}
