//! What a member grants Federator, written once: the Role (get/list/watch/patch on CNPG
//! `clusters`, get on `clusters/status`, get on `pods` and `pods/proxy` to read a CNPG
//! instance's status, nothing else), its RoleBinding to Federator's
//! ServiceAccount, and the self-contained kubeconfig a hub Secret carries for a ServiceAccount
//! token. `federator member join`, the lab and `deploy/member-rbac/` all use these (a test keeps
//! the YAML equal to them).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::json;

/// CNPG's API group.
pub const CNPG_GROUP: &str = "postgresql.cnpg.io";
/// What Federator does with `clusters`: watch them, read one, patch `spec.replica`.
pub const CLUSTER_VERBS: [&str; 4] = ["get", "list", "watch", "patch"];
/// What Federator does with `clusters/status`: read it.
pub const STATUS_VERBS: [&str; 1] = ["get"];
/// What Federator does with `pods` and `pods/proxy` (core group): read a Cluster's designated
/// primary pod and, through the API server's proxy, its instance manager's `/pg/status` (the
/// replay position an archive-only switchover waits for; `kubectl cnpg status` reads the same).
pub const POD_RESOURCES: [&str; 2] = ["pods", "pods/proxy"];
pub const POD_VERBS: [&str; 1] = ["get"];

/// Every (resource, verb) the member Role grants, in the order `member list` checks them.
pub fn required_access() -> Vec<(&'static str, &'static str)> {
    let clusters = CLUSTER_VERBS.iter().map(|v| ("clusters", *v));
    let status = STATUS_VERBS.iter().map(|v| ("clusters/status", *v));
    let pods = POD_RESOURCES
        .iter()
        .flat_map(|r| POD_VERBS.iter().map(move |v| (*r, *v)));
    clusters.chain(status).chain(pods).collect()
}

/// The API group of a resource [`required_access`] names: core for pods, else CNPG's.
pub fn group_of(resource: &str) -> &'static str {
    if resource == "pods" || resource.starts_with("pods/") {
        ""
    } else {
        CNPG_GROUP
    }
}

/// Labels on every object `federator member join` creates on a member.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "federator";
/// The member name (as the hub knows it) an object on the member was created for.
pub const MEMBER_LABEL: &str = "federator.dev/member";

/// Annotations on the hub Secret `federator member join` writes: what `rotate`, `remove` and
/// `list` need to find the member-side objects again. The controller ignores them.
pub const SERVICE_ACCOUNT_ANNOTATION: &str = "federator.dev/service-account";
pub const NAMESPACES_ANNOTATION: &str = "federator.dev/namespaces";
pub const TOKEN_SECRET_ANNOTATION: &str = "federator.dev/token-secret";
pub const TOKEN_EXPIRES_ANNOTATION: &str = "federator.dev/token-expires";

fn meta(name: &str, namespace: &str, labels: &BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        labels: (!labels.is_empty()).then(|| labels.clone()),
        ..ObjectMeta::default()
    }
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|s| (*s).to_owned()).collect()
}

/// The Role named `name` in `namespace`: read and patch Clusters, read their status, read
/// their pods and (through pods/proxy) their instances' status.
pub fn role(name: &str, namespace: &str, labels: &BTreeMap<String, String>) -> Role {
    Role {
        metadata: meta(name, namespace, labels),
        rules: Some(vec![
            PolicyRule {
                api_groups: Some(strings(&[CNPG_GROUP])),
                resources: Some(strings(&["clusters"])),
                verbs: strings(&CLUSTER_VERBS),
                ..PolicyRule::default()
            },
            PolicyRule {
                api_groups: Some(strings(&[CNPG_GROUP])),
                resources: Some(strings(&["clusters/status"])),
                verbs: strings(&STATUS_VERBS),
                ..PolicyRule::default()
            },
            PolicyRule {
                api_groups: Some(strings(&[""])),
                resources: Some(strings(&POD_RESOURCES)),
                verbs: strings(&POD_VERBS),
                ..PolicyRule::default()
            },
        ]),
    }
}

/// Binds the Role `name` in `namespace` to the ServiceAccount `sa_namespace/sa_name`.
pub fn role_binding(
    name: &str,
    namespace: &str,
    (sa_namespace, sa_name): (&str, &str),
    labels: &BTreeMap<String, String>,
) -> RoleBinding {
    RoleBinding {
        metadata: meta(name, namespace, labels),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: name.to_owned(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: sa_name.to_owned(),
            namespace: Some(sa_namespace.to_owned()),
            ..Subject::default()
        }]),
    }
}

/// A one-context kubeconfig reaching `server` with a bearer token, the CA given as PEM bytes
/// (none: the system roots). Self-contained, as hub Secrets must be (no file references).
pub fn token_kubeconfig(member: &str, server: &str, ca_pem: Option<&[u8]>, token: &str) -> String {
    let mut cluster = json!({ "server": server });
    if let Some(ca) = ca_pem {
        cluster["certificate-authority-data"] = STANDARD.encode(ca).into();
    }
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": member,
        "clusters": [{ "name": member, "cluster": cluster }],
        "users": [{ "name": format!("federator@{member}"), "user": { "token": token } }],
        "contexts": [{
            "name": member,
            "context": { "cluster": member, "user": format!("federator@{member}") },
        }],
    });
    // JSON is YAML; kube and kubectl read it as a kubeconfig.
    serde_json::to_string_pretty(&config).expect("a JSON value serialises") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_grants_exactly_what_federator_uses() {
        let role = role("federator", "databases", &BTreeMap::new());
        let rules = role.rules.unwrap();
        let mut granted = Vec::new();
        for rule in &rules {
            for resource in rule.resources.as_deref().unwrap_or_default() {
                assert_eq!(
                    rule.api_groups.as_deref(),
                    Some(&[group_of(resource).to_owned()][..])
                );
                for verb in &rule.verbs {
                    granted.push((resource.clone(), verb.clone()));
                }
            }
        }
        let required: Vec<(String, String)> = required_access()
            .into_iter()
            .map(|(r, v)| (r.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(granted, required);
    }

    #[tokio::test]
    async fn the_token_kubeconfig_is_accepted_as_a_hub_secret_credential() {
        let text = token_kubeconfig("eu-x", "https://10.0.0.1:6443", None, "a-token-value");
        let origin = crate::Origin::Secret {
            format: crate::SecretFormat::Federator,
            namespace: "federator-system".into(),
            name: "member-eu-x".into(),
        };
        let parsed = crate::kubeconfig::parse(&text, Some("eu-x"), &origin).unwrap();
        let rules = crate::kubeconfig::Rules::for_secret(crate::Trust::default());
        let credential = crate::kubeconfig::credential(parsed, "eu-x", origin, rules, 1)
            .await
            .unwrap();
        assert_eq!(credential.server(), "https://10.0.0.1:6443/");
        assert_eq!(credential.auth_method(), crate::AuthMethod::BearerToken);
        assert!(!format!("{credential:?}").contains("a-token-value"));
    }
}
