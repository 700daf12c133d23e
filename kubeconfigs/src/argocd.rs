//! Argo CD's declarative cluster Secret, so clusters already registered with Argo CD can be used
//! as members without a second copy of their credentials.
//!
//! Label `argocd.argoproj.io/secret-type: cluster`; data `name` (the member name), `server`, and
//! `config`, a JSON object: `bearerToken`, `username`/`password`, `tlsClientConfig` {`caData`,
//! `certData`, `keyData` (base64 PEM), `insecure`, `serverName`}, `execProviderConfig`,
//! `awsAuthConfig`, `proxyUrl`, `disableCompression`. It is translated into a one-context
//! kubeconfig, so it passes the same refusal rules as every other source.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::config::Kubeconfig;
use serde::Deserialize;
use serde_json::json;

use crate::credential::MemberCredential;
use crate::directory::is_member_name;
use crate::error::{CredentialError, Result};
use crate::kubeconfig::{self, Rules, Trust};
use crate::origin::Origin;
use crate::secret_data::data;

pub const SECRET_TYPE_LABEL: &str = "argocd.argoproj.io/secret-type";
pub const SECRET_TYPE_CLUSTER: &str = "cluster";
/// Label selecting Argo CD cluster Secrets.
pub const CLUSTER_SECRET_SELECTOR: &str = "argocd.argoproj.io/secret-type=cluster";

/// `config` of an Argo CD cluster Secret (Argo CD's `ClusterConfig`). Unknown fields are ignored,
/// as Argo CD does.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ClusterConfig {
    username: Option<String>,
    password: Option<String>,
    bearer_token: Option<String>,
    #[serde(default)]
    tls_client_config: TlsClientConfig,
    aws_auth_config: Option<serde_json::Value>,
    exec_provider_config: Option<ExecProviderConfig>,
    proxy_url: Option<String>,
    disable_compression: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct TlsClientConfig {
    #[serde(default)]
    insecure: bool,
    server_name: Option<String>,
    /// base64 of PEM, exactly what kubeconfig `*-data` fields hold.
    ca_data: Option<String>,
    cert_data: Option<String>,
    key_data: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExecProviderConfig {
    command: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    api_version: Option<String>,
    install_hint: Option<String>,
}

pub(crate) async fn from_secret(
    secret: &Secret,
    origin: Origin,
    trust: Trust,
) -> Result<MemberCredential> {
    let allow_plugins = trust.allow_auth_plugins;
    let text =
        |key: &str| -> Option<&str> { data(secret, key).and_then(|b| std::str::from_utf8(b).ok()) };
    let invalid = |member: Option<&str>, message: String| CredentialError::Invalid {
        member: member.map(str::to_owned),
        origin: origin.clone(),
        message,
    };
    let member = text("name").ok_or_else(|| invalid(None, "no data key `name`".into()))?;
    if !is_member_name(member) {
        return Err(invalid(
            None,
            format!("name {member:?} is not a member name (a DNS-1123 label)"),
        ));
    }
    let server =
        text("server").ok_or_else(|| invalid(Some(member), "no data key `server`".into()))?;
    let config_bytes = data(secret, "config").unwrap_or(b"{}");
    kubeconfig::check_size(config_bytes.len(), Some(member), &origin, "data `config`")?;
    let config: ClusterConfig =
        serde_json::from_slice(config_bytes).map_err(|e| CredentialError::Parse {
            member: Some(member.to_owned()),
            origin: origin.clone(),
            format: "Argo CD cluster config (JSON in data `config`)",
            // serde_json's message can quote the input; keep only the position.
            at: format!(" at line {} column {}", e.line(), e.column()),
        })?;
    if config.aws_auth_config.is_some() && !allow_plugins {
        return Err(CredentialError::PluginRefused {
            member: member.to_owned(),
            origin,
            field: "config.awsAuthConfig".into(),
        });
    }
    if config.aws_auth_config.is_some() {
        return Err(invalid(
            Some(member),
            "config.awsAuthConfig is not supported; use execProviderConfig with \
             `argocd-k8s-auth aws` or a kubeconfig"
                .into(),
        ));
    }
    if config.exec_provider_config.is_some() && !allow_plugins {
        return Err(CredentialError::PluginRefused {
            member: member.to_owned(),
            origin,
            field: "config.execProviderConfig".into(),
        });
    }
    // Refused here with Argo CD's field names; the kubeconfig checks would refuse them too,
    // naming the kubeconfig fields they were translated to.
    let unsafe_ = |field: &str, why| CredentialError::Unsafe {
        member: member.to_owned(),
        origin: origin.clone(),
        field: field.to_owned(),
        why,
    };
    if config.tls_client_config.insecure && !trust.allow_insecure_tls {
        return Err(unsafe_(
            "config.tlsClientConfig.insecure",
            &kubeconfig::INSECURE_TLS,
        ));
    }
    if config.proxy_url.as_deref().is_some_and(|p| !p.is_empty()) {
        return Err(unsafe_("config.proxyUrl", &kubeconfig::PROXY));
    }
    let kubeconfig =
        to_kubeconfig(member, server, &config).map_err(|message| invalid(Some(member), message))?;
    let rules = Rules::for_secret(trust);
    let revision = kubeconfig::revision(&[
        b"argocd",
        member.as_bytes(),
        server.as_bytes(),
        config_bytes,
    ]);
    kubeconfig::credential(kubeconfig, member, origin, rules, revision).await
}

/// The one-context kubeconfig equivalent to an Argo CD cluster entry.
fn to_kubeconfig(member: &str, server: &str, config: &ClusterConfig) -> Result<Kubeconfig, String> {
    let tls = &config.tls_client_config;
    // `null` for an absent field deserializes as absent, so every field can be set directly.
    let cluster = json!({
        "server": server,
        "insecure-skip-tls-verify": tls.insecure,
        "certificate-authority-data": tls.ca_data,
        "tls-server-name": tls.server_name,
        "proxy-url": config.proxy_url,
        "disable-compression": config.disable_compression,
    });
    let mut user = json!({
        "token": config.bearer_token,
        "username": config.username,
        "password": config.password,
        "client-certificate-data": tls.cert_data,
        "client-key-data": tls.key_data,
    });
    if let Some(exec) = &config.exec_provider_config {
        let env: Vec<_> = exec
            .env
            .iter()
            .map(|(name, value)| json!({"name": name, "value": value}))
            .collect();
        user["exec"] = json!({
            "command": exec.command,
            "args": exec.args,
            "env": env,
            "apiVersion": exec.api_version.as_deref().unwrap_or("client.authentication.k8s.io/v1beta1"),
            "installHint": exec.install_hint,
        });
    }
    let document = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": member, "cluster": cluster}],
        "users": [{"name": member, "user": user}],
        "contexts": [{"name": member, "context": {"cluster": member, "user": member}}],
        "current-context": member,
    });
    // Built here from typed fields, so a failure is a bug of this function; serde's message is
    // left out because it can quote a value.
    serde_json::from_value(document)
        .map_err(|_| "could not be translated into a kubeconfig (a Federator bug)".to_owned())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;
    use crate::kubeconfig::tests::TOKEN;
    use crate::{AuthMethod, SecretFormat};

    pub(crate) fn argo_secret(config: &str) -> Secret {
        let data = [
            ("name", "eu-western"),
            ("server", "https://127.0.0.1:2"),
            ("config", config),
        ];
        Secret {
            metadata: ObjectMeta {
                name: Some("cluster-eu-western".into()),
                namespace: Some("argocd".into()),
                labels: Some(BTreeMap::from([(
                    SECRET_TYPE_LABEL.to_owned(),
                    SECRET_TYPE_CLUSTER.to_owned(),
                )])),
                ..Default::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn origin() -> Origin {
        Origin::Secret {
            format: SecretFormat::ArgoCd,
            namespace: "argocd".into(),
            name: "cluster-eu-western".into(),
        }
    }

    async fn load(config: &str, allow_plugins: bool) -> Result<MemberCredential> {
        let trust = Trust {
            allow_auth_plugins: allow_plugins,
            ..Trust::default()
        };
        from_secret(&argo_secret(config), origin(), trust).await
    }

    #[tokio::test]
    async fn a_bearer_token_cluster_secret_becomes_a_credential() {
        let config =
            format!(r#"{{"bearerToken":"{TOKEN}","tlsClientConfig":{{"insecure":false}}}}"#);
        let credential = load(&config, false).await.unwrap();
        assert_eq!(credential.name(), "eu-western");
        assert_eq!(credential.server(), "https://127.0.0.1:2/");
        assert_eq!(credential.auth_method(), AuthMethod::BearerToken);
        assert!(matches!(
            credential.origin(),
            Origin::Secret {
                format: SecretFormat::ArgoCd,
                ..
            }
        ));
        assert!(!format!("{credential:?}").contains(TOKEN));
        credential.client(crate::Timeouts::REQUESTS).unwrap();
    }

    #[tokio::test]
    async fn exec_provider_config_is_a_plugin() {
        let config = r#"{"execProviderConfig":{"command":"argocd-k8s-auth","args":["gcp"],"env":{"K":"V"}}}"#;
        let message = load(config, false).await.unwrap_err().to_string();
        assert!(message.contains("config.execProviderConfig"), "{message}");
        assert!(
            message.contains("Argo CD cluster Secret argocd/cluster-eu-western"),
            "{message}"
        );
        let credential = load(config, true).await.unwrap();
        assert_eq!(credential.auth_method(), AuthMethod::Plugin);
    }

    #[tokio::test]
    async fn aws_auth_config_is_refused() {
        let config = r#"{"awsAuthConfig":{"clusterName":"x"}}"#;
        let message = load(config, false).await.unwrap_err().to_string();
        assert!(message.contains("config.awsAuthConfig"), "{message}");
        assert!(load(config, true).await.is_err());
    }

    #[tokio::test]
    async fn insecure_tls_and_a_proxy_are_refused_with_argo_cd_field_names() {
        let insecure =
            format!(r#"{{"bearerToken":"{TOKEN}","tlsClientConfig":{{"insecure":true}}}}"#);
        let message = load(&insecure, false).await.unwrap_err().to_string();
        for needle in [
            "config.tlsClientConfig.insecure",
            "caData",
            "--allow-insecure-member-tls",
        ] {
            assert!(message.contains(needle), "{needle:?} not in {message}");
        }
        assert!(!message.contains(TOKEN), "{message}");
        let trusting = Trust {
            allow_insecure_tls: true,
            ..Trust::default()
        };
        from_secret(&argo_secret(&insecure), origin(), trusting)
            .await
            .expect("accepted when the operator opted in");

        let proxy = r#"{"bearerToken":"t","proxyUrl":"http://10.1.2.3:3128"}"#;
        let message = load(proxy, false).await.unwrap_err().to_string();
        assert!(message.contains("config.proxyUrl"), "{message}");
        assert!(!message.contains("10.1.2.3"), "{message}");
    }

    #[tokio::test]
    async fn an_http_server_is_refused() {
        let mut secret = argo_secret(r#"{"bearerToken":"t"}"#);
        secret.data.as_mut().unwrap().insert(
            "server".into(),
            ByteString(b"http://10.0.0.1:6443".to_vec()),
        );
        let message = from_secret(&secret, origin(), Trust::default())
            .await
            .unwrap_err()
            .to_string();
        assert!(message.contains(".server is an http:// URL"), "{message}");
        assert!(message.contains("https://"), "{message}");
    }

    #[tokio::test]
    async fn an_oversized_config_is_not_parsed() {
        let config = format!(
            r#"{{"bearerToken":"t","padding":"{}"}}"#,
            "x".repeat(crate::kubeconfig::MAX_KUBECONFIG_BYTES)
        );
        let message = load(&config, false).await.unwrap_err().to_string();
        assert!(message.contains("data `config` is"), "{message}");
        assert!(message.contains("limit"), "{message}");
    }

    #[tokio::test]
    async fn malformed_config_json_is_reported_without_its_content() {
        let config = format!(r#"{{"bearerToken": {TOKEN}}}"#);
        let message = load(&config, false).await.unwrap_err().to_string();
        assert!(message.contains("line 1 column"), "{message}");
        assert!(!message.contains("sekrit"), "{message}");
    }
}
