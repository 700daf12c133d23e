//! A region switch's webhook hook: one signed HTTPS POST per try, over rustls (no OpenSSL). The
//! signature lets the receiver check that the call comes from the hub and is recent:
//! `X-Federator-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use serde_json::json;
use topology::drill_api::SecretKeyRef;
use topology::region_api::WebhookHook;

use super::hooks::HookState;
use crate::drill::tls::{SslMode, client_config};

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-federator-signature";
/// Key of the shared secret when `secretRef.key` is not set.
pub const DEFAULT_SECRET_KEY: &str = "secret";
/// One try: connect, TLS, request and answer.
const TRY_TIMEOUT: Duration = Duration::from_secs(20);

/// What the call is about (its JSON body).
pub struct Call<'a> {
    pub region_switch: &'a str,
    pub namespace: &'a str,
    pub topology: &'a str,
    pub hook: &'a str,
    pub phase: &'a str,
    pub from: &'a str,
    pub to: &'a str,
}

/// Pure: the signature header's value for `body` sent at `timestamp`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    let tag = ctx.sign();
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={timestamp},v1={hex}")
}

/// The value under `key` (default `default_key`) of Secret `secret_ref` in `namespace` on the
/// hub, or why it cannot be read (naming the Secret, the field and the fix).
pub async fn secret_value(
    hub: &Client,
    namespace: &str,
    secret_ref: &SecretKeyRef,
    default_key: &str,
    field: &str,
) -> Result<Vec<u8>, String> {
    let api: Api<Secret> = Api::namespaced(hub.clone(), namespace);
    let key = secret_ref.key.as_deref().unwrap_or(default_key);
    let secret = match api.get(&secret_ref.name).await {
        Ok(s) => s,
        Err(kube::Error::Api(e)) if e.code == 404 => {
            return Err(format!(
                "{field}: Secret {namespace}/{} does not exist; create it with the key {key}",
                secret_ref.name
            ));
        }
        Err(kube::Error::Api(e)) if e.code == 403 => {
            return Err(format!(
                "{field}: the controller may not read Secret {namespace}/{} ({}); grant `get` on \
                 secrets in {namespace}",
                secret_ref.name, e.message
            ));
        }
        Err(e) => return Err(format!("{field}: reading Secret {}: {e}", secret_ref.name)),
    };
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| v.0.clone())
        .ok_or_else(|| {
            format!(
                "{field}: Secret {namespace}/{} has no key {key}; put the value there",
                secret_ref.name
            )
        })
}

/// The TLS configuration: the CA of `caSecretRef`, else the system's roots.
async fn tls(
    hub: &Client,
    namespace: &str,
    hook: &WebhookHook,
) -> Result<Arc<ClientConfig>, String> {
    if let Some(ca) = &hook.ca_secret_ref {
        let pem = secret_value(hub, namespace, ca, "ca.crt", "webhook.caSecretRef").await?;
        let what = format!("Secret {namespace}/{}", ca.name);
        return client_config(SslMode::VerifyFull, Some((&what, &pem))).map_err(|e| e.to_string());
    }
    let mut roots = RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(
            "webhook: no system CA certificates found; set webhook.caSecretRef to the endpoint's CA"
                .into(),
        );
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
        .map_err(|e| e.to_string())
}

/// Calls the webhook once: done on 2xx, failed on 4xx, waiting (try again) otherwise.
pub async fn run(hub: Client, call: Call<'_>, hook: &WebhookHook) -> HookState {
    let secret = match secret_value(
        &hub,
        call.namespace,
        &hook.secret_ref,
        DEFAULT_SECRET_KEY,
        "webhook.secretRef",
    )
    .await
    {
        Ok(s) => s,
        Err(why) => return HookState::Failed(why),
    };
    let config = match tls(&hub, call.namespace, hook).await {
        Ok(c) => c,
        Err(why) => return HookState::Failed(why),
    };
    let body = json!({
        "regionSwitch": call.region_switch,
        "namespace": call.namespace,
        "topology": call.topology,
        "hook": call.hook,
        "phase": call.phase,
        "from": call.from,
        "to": call.to,
    })
    .to_string();
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let signed = signature(&secret, now, body.as_bytes());
    match tokio::time::timeout(TRY_TIMEOUT, post(config, &hook.url, body, signed)).await {
        Ok(Ok((status, _))) if (200..300).contains(&status) => {
            HookState::Done(format!("POST {} answered {status}", hook.url))
        }
        Ok(Ok((status, answer))) if (400..500).contains(&status) => HookState::Failed(format!(
            "POST {} answered {status}: {}",
            hook.url,
            answer.chars().take(300).collect::<String>()
        )),
        Ok(Ok((status, _))) => HookState::Waiting(format!("POST {} answered {status}", hook.url)),
        Ok(Err(e)) => HookState::Waiting(format!("POST {}: {e}", hook.url)),
        Err(_) => HookState::Waiting(format!(
            "POST {}: no answer within {}s",
            hook.url,
            TRY_TIMEOUT.as_secs()
        )),
    }
}

/// One HTTP/1.1 POST over TLS; returns the status and the body (lossy UTF-8).
async fn post(
    config: Arc<ClientConfig>,
    url: &str,
    body: String,
    signed: String,
) -> Result<(u16, String), String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("webhook.url: {e}"))?;
    let host = uri.host().ok_or("webhook.url has no host")?.to_owned();
    let port = uri.port_u16().unwrap_or(443);
    let name = ServerName::try_from(host.trim_matches(['[', ']']).to_owned())
        .map_err(|e| format!("webhook.url host {host}: {e}"))?;
    let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS with {host}:{port}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let request = hyper::Request::post(path)
        .header(hyper::header::HOST, &host)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signed)
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let answer = response
        .into_body()
        .collect()
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
        .unwrap_or_default();
    Ok((status, answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hmac_sha256_of_timestamp_dot_body() {
        // The value any receiver computes (here Python's hmac module, for the same input).
        assert_eq!(
            signature(b"Jefe", 1_765_000_000, br#"{"a":1}"#),
            "t=1765000000,v1=6bb3cb1699279da80009a27df666cb60e96ff2b17ba0bd46bf75653d2f22889a"
        );
        // Another secret, another signature.
        assert_ne!(
            signature(b"jefe", 1_765_000_000, br#"{"a":1}"#),
            signature(b"Jefe", 1_765_000_000, br#"{"a":1}"#)
        );
    }
}
