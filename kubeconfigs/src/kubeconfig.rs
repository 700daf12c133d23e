//! From a kubeconfig document to a [`MemberCredential`]: pick the context, refuse what the loader's
//! rules forbid (plugins; file references for Secrets), then let kube build its `Config`.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;

use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig, KubeconfigError};
use secrecy::ExposeSecret;

use crate::credential::{AuthMethod, MemberCredential, redact};
use crate::error::{CredentialError, Result};
use crate::origin::Origin;

/// What a kubeconfig may contain, depending on where it came from and on the operator's choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rules {
    /// `exec` and `auth-provider` plugins run programs (or reach identity providers) from the
    /// controller with its privileges; only when the operator opted in.
    pub allow_plugins: bool,
    /// Paths (`tokenFile`, `certificate-authority`, ...) make sense in a file next to its
    /// certificates. From a Secret they would let whoever writes Secrets make the controller read
    /// any local file — its own ServiceAccount token included — and send it to any server.
    pub allow_file_references: bool,
}

/// Hash of a credential's source bytes; see [`MemberCredential::revision`].
pub(crate) fn revision(parts: &[&[u8]]) -> u64 {
    let mut hasher = DefaultHasher::new();
    for part in parts {
        part.hash(&mut hasher);
    }
    hasher.finish()
}

/// Parses kubeconfig YAML held in memory (a Secret's data).
pub(crate) fn parse(text: &str, member: Option<&str>, origin: &Origin) -> Result<Kubeconfig> {
    Kubeconfig::from_yaml(text).map_err(|e| load_error(e, member, origin))
}

/// Reads a kubeconfig file; relative paths in it are resolved against its directory.
pub(crate) fn read(path: &Path, member: &str, origin: &Origin) -> Result<Kubeconfig> {
    Kubeconfig::read_from(path).map_err(|e| load_error(e, Some(member), origin))
}

/// Maps kube's error without its parser message: serde-saphyr quotes the offending input, which
/// may be a token.
fn load_error(error: KubeconfigError, member: Option<&str>, origin: &Origin) -> CredentialError {
    match error {
        KubeconfigError::Parse(e) => CredentialError::Parse {
            member: member.map(str::to_owned),
            origin: origin.clone(),
            format: "kubeconfig (YAML)",
            at: e
                .location()
                .map(|l| format!(" at line {} column {}", l.line(), l.column()))
                .unwrap_or_default(),
        },
        KubeconfigError::ReadConfig(source, path) => CredentialError::Io {
            action: "reading kubeconfig",
            path,
            source,
        },
        other => CredentialError::Invalid {
            member: member.map(str::to_owned),
            origin: origin.clone(),
            message: other.to_string(),
        },
    }
}

/// Builds the credential of `member` from the current context of `kubeconfig` (or its only
/// context when none is current).
pub(crate) async fn credential(
    kubeconfig: Kubeconfig,
    member: &str,
    origin: Origin,
    rules: Rules,
    revision: u64,
) -> Result<MemberCredential> {
    let invalid = |message: String| CredentialError::Invalid {
        member: Some(member.to_owned()),
        origin: origin.clone(),
        message,
    };
    let context_name = match (&kubeconfig.current_context, kubeconfig.contexts.as_slice()) {
        (Some(current), _) if !current.is_empty() => current.clone(),
        (_, [only]) => only.name.clone(),
        _ => {
            return Err(invalid(
                "no current-context, and not exactly one context to default to; set \
                 current-context (one kubeconfig reaches one member)"
                    .into(),
            ));
        }
    };
    let context = kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .and_then(|c| c.context.as_ref())
        .ok_or_else(|| invalid(format!("context {context_name:?} is not defined")))?;
    let cluster_index = kubeconfig
        .clusters
        .iter()
        .position(|c| c.name == context.cluster)
        .ok_or_else(|| invalid(format!("cluster {:?} is not defined", context.cluster)))?;
    let user = context.user.as_ref().and_then(|name| {
        let index = kubeconfig.auth_infos.iter().position(|u| &u.name == name)?;
        Some((index, kubeconfig.auth_infos[index].auth_info.as_ref()?))
    });

    let refuse = |field: String, plugin: bool| {
        if plugin {
            CredentialError::PluginRefused {
                member: member.to_owned(),
                origin: origin.clone(),
                field,
            }
        } else {
            CredentialError::FileReference {
                member: member.to_owned(),
                origin: origin.clone(),
                field,
            }
        }
    };
    if let Some((i, user)) = user {
        if !rules.allow_plugins {
            if user.exec.is_some() {
                return Err(refuse(format!("users[{i}].user.exec"), true));
            }
            if user.auth_provider.is_some() {
                return Err(refuse(format!("users[{i}].user.auth-provider"), true));
            }
        }
        if !rules.allow_file_references {
            let files = [
                ("tokenFile", user.token_file.is_some()),
                ("client-certificate", user.client_certificate.is_some()),
                ("client-key", user.client_key.is_some()),
            ];
            if let Some((field, _)) = files.iter().find(|(_, set)| *set) {
                return Err(refuse(format!("users[{i}].user.{field}"), false));
            }
        }
    }
    if !rules.allow_file_references
        && kubeconfig.clusters[cluster_index]
            .cluster
            .as_ref()
            .is_some_and(|c| c.certificate_authority.is_some())
    {
        return Err(refuse(
            format!("clusters[{cluster_index}].cluster.certificate-authority"),
            false,
        ));
    }

    let (auth, secrets) = user
        .map(|(_, u)| (auth_method(u), secrets_of(u)))
        .unwrap_or((AuthMethod::Anonymous, Vec::new()));
    let options = KubeConfigOptions {
        context: Some(context_name),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| match load_error(e, Some(member), &origin) {
            // kube's messages do not quote secrets today; scrub anyway in case a version does.
            CredentialError::Invalid {
                member,
                origin,
                message,
            } => CredentialError::Invalid {
                member,
                origin,
                message: redact(&message, &secrets),
            },
            other => other,
        })?;
    Ok(MemberCredential::new(
        member.to_owned(),
        origin,
        config,
        auth,
        revision,
        secrets,
    ))
}

fn auth_method(user: &AuthInfo) -> AuthMethod {
    if user.exec.is_some() || user.auth_provider.is_some() {
        AuthMethod::Plugin
    } else if user.token.is_some() {
        AuthMethod::BearerToken
    } else if user.token_file.is_some() {
        AuthMethod::TokenFile
    } else if user.client_certificate.is_some() || user.client_certificate_data.is_some() {
        AuthMethod::ClientCertificate
    } else if user.username.is_some() {
        AuthMethod::BasicAuth
    } else {
        AuthMethod::Anonymous
    }
}

/// Every secret string of a user entry, to scrub from messages.
fn secrets_of(user: &AuthInfo) -> Vec<String> {
    let mut secrets: Vec<String> = [&user.token, &user.password, &user.client_key_data]
        .into_iter()
        .flatten()
        .map(|s| s.expose_secret().to_owned())
        .collect();
    if let Some(provider) = &user.auth_provider {
        secrets.extend(provider.config.values().cloned());
    }
    if let Some(env) = user.exec.as_ref().and_then(|e| e.env.as_ref()) {
        secrets.extend(env.iter().filter_map(|var| var.get("value").cloned()));
    }
    secrets
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const TOKEN: &str = "sekrit-token-0123456789abcdef";

    /// A one-context kubeconfig whose user entry is `user` (YAML, indented under `user:`).
    pub(crate) fn kubeconfig_with_user(user: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\n\
             clusters:\n- name: k\n  cluster:\n    server: https://127.0.0.1:1\n    insecure-skip-tls-verify: true\n\
             contexts:\n- name: c\n  context:\n    cluster: k\n    user: u\n    namespace: databases\n\
             users:\n- name: u\n  user:\n{user}"
        )
    }

    pub(crate) fn token_kubeconfig() -> String {
        kubeconfig_with_user(&format!("    token: {TOKEN}\n"))
    }

    fn secret_origin() -> Origin {
        Origin::Secret {
            format: crate::SecretFormat::Federator,
            namespace: "federator-system".into(),
            name: "member-eu-south".into(),
        }
    }

    const STRICT: Rules = Rules {
        allow_plugins: false,
        allow_file_references: false,
    };

    async fn build(text: &str, rules: Rules) -> Result<MemberCredential> {
        let origin = secret_origin();
        let parsed = parse(text, Some("eu-south"), &origin)?;
        credential(
            parsed,
            "eu-south",
            origin,
            rules,
            revision(&[text.as_bytes()]),
        )
        .await
    }

    #[tokio::test]
    async fn a_token_kubeconfig_becomes_a_credential_whose_debug_hides_the_token() {
        let credential = build(&token_kubeconfig(), STRICT).await.unwrap();
        assert_eq!(credential.name(), "eu-south");
        assert_eq!(credential.server(), "https://127.0.0.1:1/");
        assert_eq!(credential.auth_method(), AuthMethod::BearerToken);
        let debug = format!("{credential:?}");
        assert!(!debug.contains(TOKEN), "{debug}");
        assert!(!debug.contains("sekrit"), "{debug}");
        assert!(debug.contains("eu-south"), "{debug}");
    }

    #[tokio::test]
    async fn redact_scrubs_the_token_from_a_message() {
        let credential = build(&token_kubeconfig(), STRICT).await.unwrap();
        let message = format!("request failed: Authorization: Bearer {TOKEN}");
        assert_eq!(
            credential.redact(&message),
            "request failed: Authorization: Bearer <redacted>"
        );
    }

    #[tokio::test]
    async fn exec_is_refused_with_member_origin_field_and_fix() {
        let text = kubeconfig_with_user(
            "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: aws\n      args: [eks, get-token]\n",
        );
        let message = build(&text, STRICT).await.unwrap_err().to_string();
        for needle in [
            "eu-south",
            "Secret federator-system/member-eu-south",
            "users[0].user.exec",
            "--allow-auth-plugins",
        ] {
            assert!(message.contains(needle), "{needle:?} not in {message}");
        }
        let allowed = Rules {
            allow_plugins: true,
            ..STRICT
        };
        let credential = build(&text, allowed).await.unwrap();
        assert_eq!(credential.auth_method(), AuthMethod::Plugin);
    }

    #[tokio::test]
    async fn auth_provider_is_refused_and_its_config_never_printed() {
        let text = kubeconfig_with_user(&format!(
            "    auth-provider:\n      name: oidc\n      config:\n        id-token: {TOKEN}\n"
        ));
        let error = build(&text, STRICT).await.unwrap_err();
        let message = error.to_string();
        assert!(message.contains("users[0].user.auth-provider"), "{message}");
        assert!(!format!("{error:?}").contains(TOKEN));
        let allowed = Rules {
            allow_plugins: true,
            ..STRICT
        };
        let credential = build(&text, allowed).await.unwrap();
        assert!(!format!("{credential:?}").contains(TOKEN));
        assert!(!credential.redact(TOKEN).contains(TOKEN));
    }

    #[tokio::test]
    async fn file_references_are_refused_from_secrets_only() {
        let text = kubeconfig_with_user(
            "    tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token\n",
        );
        let message = build(&text, STRICT).await.unwrap_err().to_string();
        assert!(message.contains("users[0].user.tokenFile"), "{message}");
        assert!(message.contains("inline"), "{message}");
        let files_ok = Rules {
            allow_file_references: true,
            ..STRICT
        };
        let credential = build(&text, files_ok).await.unwrap();
        assert_eq!(credential.auth_method(), AuthMethod::TokenFile);
    }

    #[tokio::test]
    async fn a_parse_error_gives_a_position_and_never_the_text() {
        let text = format!("users: [ {{ name: u, user: {{ token: {TOKEN} }}\nclusters: : :");
        let error = build(&text, STRICT).await.unwrap_err();
        let message = error.to_string();
        assert!(message.contains("not a valid kubeconfig"), "{message}");
        assert!(!message.contains("sekrit"), "{message}");
        assert!(!format!("{error:?}").contains("sekrit"));
    }

    #[tokio::test]
    async fn without_current_context_a_single_context_is_used_and_several_are_refused() {
        let single = token_kubeconfig().replace("current-context: c\n", "");
        assert!(build(&single, STRICT).await.is_ok());
        let two = single.replace(
            "contexts:\n",
            "contexts:\n- name: other\n  context:\n    cluster: k\n",
        );
        let message = build(&two, STRICT).await.unwrap_err().to_string();
        assert!(message.contains("current-context"), "{message}");
    }

    #[tokio::test]
    async fn clients_build_with_the_requested_timeouts() {
        let credential = build(&token_kubeconfig(), STRICT).await.unwrap();
        credential.client(crate::Timeouts::REQUESTS).unwrap();
        credential.client(crate::Timeouts::WATCHES).unwrap();
    }
}
