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
    /// `insecure-skip-tls-verify` lets anyone on the path impersonate the member's apiserver and
    /// collect the token; only when the operator opted in.
    pub allow_insecure_tls: bool,
}

impl Rules {
    /// For a Secret on the hub: self-contained, no plugins or insecure TLS unless `trust` says.
    pub(crate) fn for_secret(trust: Trust) -> Self {
        Self {
            allow_plugins: trust.allow_auth_plugins,
            allow_file_references: false,
            allow_insecure_tls: trust.allow_insecure_tls,
        }
    }

    /// For a file the operator placed: file references and a loopback `http://` server allowed.
    pub(crate) fn for_file(trust: Trust) -> Self {
        Self {
            allow_file_references: true,
            ..Self::for_secret(trust)
        }
    }
}

/// What the operator chose to trust in member credentials beyond the safe default (both off:
/// `--allow-auth-plugins`, `--allow-insecure-member-tls`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Trust {
    /// Accept `exec` / `auth-provider` plugins (and Argo CD's `execProviderConfig`).
    pub allow_auth_plugins: bool,
    /// Accept `insecure-skip-tls-verify: true` (Argo CD: `tlsClientConfig.insecure`).
    pub allow_insecure_tls: bool,
}

/// The largest kubeconfig (or Argo CD `config`) read, in bytes. A Secret cannot exceed 1 MiB on
/// the apiserver anyway; a file could be anything, and a kubeconfig with a large CA bundle is
/// well below this.
pub const MAX_KUBECONFIG_BYTES: usize = 1024 * 1024;

/// Refuses `len` bytes of credential source over [`MAX_KUBECONFIG_BYTES`].
pub(crate) fn check_size(
    len: usize,
    member: Option<&str>,
    origin: &Origin,
    what: &str,
) -> Result<()> {
    if len <= MAX_KUBECONFIG_BYTES {
        return Ok(());
    }
    Err(CredentialError::Invalid {
        member: member.map(str::to_owned),
        origin: origin.clone(),
        message: format!(
            "{what} is {len} bytes, over the {MAX_KUBECONFIG_BYTES}-byte limit; not read. Fix: \
             a kubeconfig for one member needs one cluster, one user and one context"
        ),
    })
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

/// Reads a kubeconfig file; relative paths in it are resolved against its directory. The caller
/// checked its size ([`check_size`]).
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

    check_unique_names(&kubeconfig, member, &origin)?;
    let cluster = kubeconfig.clusters[cluster_index].cluster.as_ref();
    check_transport(
        cluster,
        &format!("clusters[{cluster_index}].cluster"),
        member,
        &origin,
        rules,
    )?;

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

    if let Some((i, user)) = user
        && user
            .token
            .as_ref()
            .is_some_and(|t| !is_header_safe(t.expose_secret()))
    {
        // kube puts the token into an `Authorization` header when it builds the client, and
        // panics on a value no header may hold (found by fuzzing: fuzz/regressions/argocd_secret/).
        return Err(CredentialError::Invalid {
            member: Some(member.to_owned()),
            origin: origin.clone(),
            message: format!(
                "users[{i}].user.token contains a line break or another control character, which \
                 no HTTP header may carry. Fix: store the token without them (a token captured \
                 with `echo` or a heredoc keeps its trailing newline)"
            ),
        });
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

/// Two entries of one list with the same name: which one a client uses is a guess (kube takes the
/// first, a merge takes the last), so the checks here could examine one and kube use another.
fn check_unique_names(kubeconfig: &Kubeconfig, member: &str, origin: &Origin) -> Result<()> {
    let lists: [(&str, Vec<&str>); 3] = [
        (
            "clusters",
            kubeconfig
                .clusters
                .iter()
                .map(|c| c.name.as_str())
                .collect(),
        ),
        (
            "contexts",
            kubeconfig
                .contexts
                .iter()
                .map(|c| c.name.as_str())
                .collect(),
        ),
        (
            "users",
            kubeconfig
                .auth_infos
                .iter()
                .map(|u| u.name.as_str())
                .collect(),
        ),
    ];
    for (list, names) in lists {
        let mut seen = std::collections::HashMap::with_capacity(names.len());
        for (i, name) in names.into_iter().enumerate() {
            if let Some(first) = seen.insert(name, i) {
                return Err(CredentialError::Invalid {
                    member: Some(member.to_owned()),
                    origin: origin.clone(),
                    message: format!(
                        "{list}[{i}].name repeats the name of {list}[{first}]; refused, because \
                         which entry is used would be a guess. Fix: give every entry of {list} a \
                         unique name"
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Why each transport setting is refused, and the fix.
const HTTP_SERVER: [&str; 2] = [
    "is an http:// URL: the credential and every request would cross the network in clear text",
    "use the member apiserver's https:// URL with certificate-authority-data",
];
const NOT_HTTPS: [&str; 2] = [
    "is not an https:// URL",
    "set it to the member apiserver's https:// URL (https://host:port)",
];
pub(crate) const INSECURE_TLS: [&str; 2] = [
    "turns off verification of the member apiserver's certificate: anyone on the path could \
     impersonate the member and collect the credential",
    "remove it and give the member's CA (kubeconfig: certificate-authority-data; Argo CD: \
     tlsClientConfig.caData), or start the controller with --allow-insecure-member-tls for a \
     test cluster",
];
pub(crate) const PROXY: [&str; 2] = [
    "sends the member's traffic through a proxy, which Federator does not support (a proxy \
     named by whoever writes the Secret could also reach any address from the controller's \
     network)",
    "remove proxy-url (Argo CD: proxyUrl) so that Federator reaches the member apiserver directly",
];

/// How the member's apiserver is reached: https (http only to loopback, from a file), verified
/// TLS unless the operator opted out, no proxy.
fn check_transport(
    cluster: Option<&kube::config::Cluster>,
    at: &str,
    member: &str,
    origin: &Origin,
    rules: Rules,
) -> Result<()> {
    let unsafe_ = |field: &str, why| CredentialError::Unsafe {
        member: member.to_owned(),
        origin: origin.clone(),
        field: format!("{at}.{field}"),
        why,
    };
    let server = cluster
        .and_then(|c| c.server.as_deref())
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| CredentialError::Invalid {
            member: Some(member.to_owned()),
            origin: origin.clone(),
            message: format!(
                "{at}.server is missing. Fix: set it to the member apiserver's https:// URL"
            ),
        })?;
    let cluster = cluster.expect("a server implies a cluster entry");
    match url_scheme_and_host(server) {
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => {}
        Some((scheme, host))
            if scheme.eq_ignore_ascii_case("http")
                && rules.allow_file_references
                && is_loopback_host(host) => {}
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("http") => {
            return Err(unsafe_("server", &HTTP_SERVER));
        }
        _ => return Err(unsafe_("server", &NOT_HTTPS)),
    }
    if cluster.insecure_skip_tls_verify == Some(true) && !rules.allow_insecure_tls {
        return Err(unsafe_("insecure-skip-tls-verify", &INSECURE_TLS));
    }
    if cluster.proxy_url.as_deref().is_some_and(|p| !p.is_empty()) {
        return Err(unsafe_("proxy-url", &PROXY));
    }
    Ok(())
}

/// `(scheme, host)` of `scheme://[userinfo@]host[:port][/path]`; the host of an IPv6 literal
/// without its brackets.
fn url_scheme_and_host(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(bracketed) = host_port.strip_prefix('[') {
        bracketed.split_once(']')?.0
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    (!scheme.is_empty() && !host.is_empty()).then_some((scheme, host))
}

fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether `value` can be sent in an HTTP header: no control character but tab.
fn is_header_safe(value: &str) -> bool {
    !value.chars().any(|c| c.is_ascii_control() && c != '\t')
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
             clusters:\n- name: k\n  cluster:\n    server: https://127.0.0.1:1\n\
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
        allow_insecure_tls: false,
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

    /// `token_kubeconfig` with `edit` applied to its cluster entry (YAML lines under `cluster:`).
    fn with_cluster(extra: &str) -> String {
        token_kubeconfig().replace(
            "    server: https://127.0.0.1:1\n",
            &format!("    server: https://127.0.0.1:1\n{extra}"),
        )
    }

    #[tokio::test]
    async fn local_files_are_never_named_from_a_secret() {
        // Each would make the controller read a local file (and send it to the named server).
        let cases = [
            (
                with_cluster("    certificate-authority: /etc/shadow\n"),
                "clusters[0].cluster.certificate-authority",
            ),
            (
                kubeconfig_with_user("    tokenFile: /etc/shadow\n"),
                "users[0].user.tokenFile",
            ),
            (
                kubeconfig_with_user(
                    "    client-certificate: /etc/shadow\n    client-key: /etc/shadow\n",
                ),
                "users[0].user.client-certificate",
            ),
            (
                kubeconfig_with_user(
                    "    client-key: /var/run/secrets/kubernetes.io/serviceaccount/token\n",
                ),
                "users[0].user.client-key",
            ),
        ];
        for (text, field) in cases {
            let message = build(&text, STRICT).await.unwrap_err().to_string();
            assert!(message.contains(field), "{field}: {message}");
            assert!(message.contains("inline"), "{field}: {message}");
            assert!(!message.contains("/etc/shadow"), "{field}: {message}");
        }
    }

    #[tokio::test]
    async fn clear_text_unverified_and_proxied_transports_are_refused_with_field_and_fix() {
        let cases = [
            (
                token_kubeconfig().replace("https://127.0.0.1:1", "http://10.0.0.1:6443"),
                "clusters[0].cluster.server is an http:// URL",
                "https://",
            ),
            (
                token_kubeconfig().replace("https://127.0.0.1:1", "http://127.0.0.1:8001"),
                "clusters[0].cluster.server is an http:// URL",
                "https://",
            ),
            (
                token_kubeconfig().replace("https://127.0.0.1:1", "ftp://127.0.0.1:1"),
                "clusters[0].cluster.server is not an https:// URL",
                "https://host:port",
            ),
            (
                with_cluster("    insecure-skip-tls-verify: true\n"),
                "clusters[0].cluster.insecure-skip-tls-verify",
                "--allow-insecure-member-tls",
            ),
            (
                with_cluster("    proxy-url: http://attacker.example:3128\n"),
                "clusters[0].cluster.proxy-url",
                "remove proxy-url",
            ),
            (
                with_cluster("    proxy-url: socks5://127.0.0.1:1080\n"),
                "clusters[0].cluster.proxy-url",
                "remove proxy-url",
            ),
            (
                token_kubeconfig().replace(
                    "    server: https://127.0.0.1:1\n",
                    "    tls-server-name: x\n",
                ),
                "clusters[0].cluster.server is missing",
                "https:// URL",
            ),
        ];
        for (text, problem, fix) in cases {
            let error = build(&text, STRICT).await.unwrap_err();
            let message = error.to_string();
            assert!(message.contains(problem), "{problem}: {message}");
            assert!(message.contains(fix), "{fix}: {message}");
            assert!(message.contains("eu-south"), "{message}");
            assert!(
                !message.contains("attacker"),
                "the value is not echoed: {message}"
            );
            assert!(!message.contains(TOKEN), "{message}");
        }
        let insecure = with_cluster("    insecure-skip-tls-verify: true\n");
        let trusting = Rules {
            allow_insecure_tls: true,
            ..STRICT
        };
        build(&insecure, trusting)
            .await
            .expect("allowed when opted in");
    }

    #[tokio::test]
    async fn an_operator_file_may_use_http_to_loopback_only() {
        let file = Rules::for_file(Trust::default());
        let local = token_kubeconfig().replace("https://127.0.0.1:1", "http://127.0.0.1:8001");
        build(&local, file)
            .await
            .expect("kubectl proxy on loopback");
        let ipv6 = token_kubeconfig().replace("https://127.0.0.1:1", "http://[::1]:8001");
        build(&ipv6, file).await.expect("IPv6 loopback");
        for remote in [
            "http://10.0.0.1:8001",
            "http://127.0.0.1.evil.example:80",
            "http://user@10.0.0.1",
        ] {
            let text = token_kubeconfig().replace("https://127.0.0.1:1", remote);
            let message = build(&text, file).await.unwrap_err().to_string();
            assert!(message.contains("http:// URL"), "{remote}: {message}");
        }
    }

    #[tokio::test]
    async fn repeated_names_are_refused_because_the_entry_used_would_be_a_guess() {
        // A second user `u` with an exec plugin: kube takes the first, a merge the last.
        let text = token_kubeconfig()
            + "- name: u\n  user:\n    exec:\n      command: /bin/sh\n      apiVersion: client.authentication.k8s.io/v1\n";
        let message = build(&text, STRICT).await.unwrap_err().to_string();
        assert!(
            message.contains("users[1].name repeats the name of users[0]"),
            "{message}"
        );
        let text = token_kubeconfig().replace(
            "contexts:\n",
            "contexts:\n- name: c\n  context:\n    cluster: k\n",
        );
        let message = build(&text, STRICT).await.unwrap_err().to_string();
        assert!(message.contains("contexts[1].name repeats"), "{message}");
    }

    #[tokio::test]
    async fn a_token_no_header_can_carry_is_refused_instead_of_crashing_the_client() {
        for token in ["abc0123456\n", "abc\r\nX-Injected: 1", "abc\u{8}def012"] {
            let text = kubeconfig_with_user(&format!(
                "    token: {}\n",
                serde_json::to_string(token).unwrap()
            ));
            let message = build(&text, STRICT).await.unwrap_err().to_string();
            assert!(
                message.contains("users[0].user.token contains a line break"),
                "{message}"
            );
            assert!(!message.contains("abc"), "{message}");
        }
        let tab = kubeconfig_with_user("    token: \"abc\\tdef0123\"\n");
        let credential = build(&tab, STRICT)
            .await
            .expect("a tab is a valid header byte");
        credential.client(crate::Timeouts::REQUESTS).unwrap();
    }

    #[test]
    fn url_hosts_are_read_like_a_client_would() {
        for (url, expected) in [
            ("https://127.0.0.1:6443", Some(("https", "127.0.0.1"))),
            ("http://user:pw@[::1]:80/x", Some(("http", "::1"))),
            ("HTTP://LOCALHOST", Some(("HTTP", "LOCALHOST"))),
            ("http://a@b@10.0.0.1/", Some(("http", "10.0.0.1"))),
            ("http://127.0.0.1#@10.0.0.1", Some(("http", "127.0.0.1"))),
            ("127.0.0.1:6443", None),
            ("https://", None),
            ("https://[::1", None),
        ] {
            assert_eq!(url_scheme_and_host(url), expected, "{url}");
        }
        assert!(is_loopback_host("localhost") && is_loopback_host("127.8.0.1"));
        assert!(!is_loopback_host("127.0.0.1.nip.io") && !is_loopback_host("0.0.0.0"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Any combination of transport settings from a Secret is accepted exactly when it is
        /// https, verified (or insecure with the opt-in), without a proxy and without local files;
        /// a refusal names a field and never echoes the server, the proxy or the token.
        #[test]
        fn a_secret_kubeconfig_is_accepted_exactly_when_its_transport_is_safe(
            scheme in proptest::sample::select(vec!["https", "http", "HTTPS", "ftp", "", "unix"]),
            host in proptest::sample::select(vec!["127.0.0.1", "10.9.8.7", "[::1]", "api.example", "localhost"]),
            insecure in proptest::option::of(proptest::bool::ANY),
            proxy in proptest::option::of(proptest::sample::select(vec!["", "http://10.9.9.9:3128", "socks5://127.0.0.1:1"])),
            ca_file in proptest::bool::ANY,
            opted_in in proptest::bool::ANY,
        ) {
            let mut cluster = format!("    server: {scheme}://{host}:6443\n");
            if let Some(insecure) = insecure {
                cluster += &format!("    insecure-skip-tls-verify: {insecure}\n");
            }
            if let Some(proxy) = proxy {
                cluster += &format!("    proxy-url: \"{proxy}\"\n");
            }
            if ca_file {
                cluster += "    certificate-authority: /etc/shadow\n";
            }
            let text = token_kubeconfig().replace("    server: https://127.0.0.1:1\n", &cluster);
            let rules = Rules { allow_insecure_tls: opted_in, ..STRICT };
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let result = runtime.block_on(build(&text, rules));
            let safe = scheme.eq_ignore_ascii_case("https")
                && (insecure != Some(true) || opted_in)
                && proxy.is_none_or(str::is_empty)
                && !ca_file;
            match result {
                Ok(_) => proptest::prop_assert!(safe, "accepted: {text}"),
                Err(error) => {
                    proptest::prop_assert!(!safe, "refused: {error}");
                    let message = error.to_string();
                    proptest::prop_assert!(message.contains("clusters[0].cluster."), "{message}");
                    for secret in [TOKEN, "10.9.8.7", "10.9.9.9", "api.example", "/etc/shadow"] {
                        proptest::prop_assert!(!message.contains(secret), "{secret} in {message}");
                    }
                }
            }
        }
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
