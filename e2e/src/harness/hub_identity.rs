//! The controller's hub identity in e2e tests: a ServiceAccount with exactly the hub RBAC of the
//! Helm chart (`charts/federator`, rendered by helm for the test's namespace and Lease), not the
//! lab's admin. So every controller test also proves the chart grants enough, and
//! `controller_rbac.rs` removes one rule at a time to prove each is needed and that its absence
//! is named.
//!
//! Each controller gets a release of its own (`e2e-<random>`): its ServiceAccount, its
//! ClusterRole and its Roles (in `federator-system`, where the Lease and the member credential
//! Secrets are) are deleted when the [`HubIdentity`] is dropped, without touching another
//! controller's.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Client;
use kube::api::{
    Api, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::config::Kubeconfig;
use kube::discovery::ApiResource;
use serde_json::Value;

use super::fixture::SharedLab;
use crate::lab::kubeconfig::{self, Entry};
use crate::lab::topology::HUB_NAMESPACE;

/// The kinds of the chart a controller's identity consists of (not its Deployment or Service).
const IDENTITY_KINDS: [&str; 5] = [
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
];
const FIELD_MANAGER: &str = "federator-e2e";

/// One rule of the chart's RBAC: the `index`th rule of the Role or ClusterRole named
/// `<release's full name><role>` (`role`: `""`, `-leader-election`, ...), so that a rule found in
/// one release's render names the same rule in another's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleRef {
    pub kind: String,
    pub role: String,
    pub index: usize,
    /// The rule as rendered (apiGroups, resources, verbs, resourceNames).
    pub rule: Value,
}

impl RuleRef {
    pub fn resources(&self) -> Vec<String> {
        strings(&self.rule["resources"])
    }
    pub fn verbs(&self) -> Vec<String> {
        strings(&self.rule["verbs"])
    }
}

impl std::fmt::Display for RuleRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} <release>{} rule {}: {} {}",
            self.kind,
            self.role,
            self.index,
            self.verbs().join(","),
            self.resources().join(",")
        )
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// `helm template <release> charts/<chart> --namespace <namespace> <args>`, every document.
pub fn helm_template(chart: &str, release: &str, namespace: &str, args: &[String]) -> Vec<Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let helm = std::env::var("FEDERATOR_HELM").ok().unwrap_or_else(|| {
        let out = std::process::Command::new("bash")
            .arg(root.join("hack/install-helm.sh"))
            .output()
            .expect("running hack/install-helm.sh");
        assert!(
            out.status.success(),
            "hack/install-helm.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    });
    let out = std::process::Command::new(helm)
        .args(["template", release])
        .arg(root.join("charts").join(chart))
        .args(["--namespace", namespace])
        .args(args)
        .output()
        .expect("running helm template");
    assert!(
        out.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("helm output is UTF-8");
    serde_saphyr::from_multiple(&text).expect("helm output is YAML")
}

/// Only the identity objects (ServiceAccounts, Roles and their bindings) of `docs`.
pub fn identity_objects(docs: Vec<Value>) -> Vec<Value> {
    docs.into_iter()
        .filter(|d| {
            d["kind"]
                .as_str()
                .is_some_and(|k| IDENTITY_KINDS.contains(&k))
        })
        .collect()
}

/// The chart's identity objects for a controller of topology namespace `namespace` holding the
/// Lease `lease`, as release `release` in `federator-system`.
pub fn render(release: &str, namespace: &str, lease: &str) -> Vec<Value> {
    let sets = [
        format!("topologyNamespace={namespace}"),
        format!("leaderElection.leaseName={lease}"),
        format!("members.hubSecrets.namespace={HUB_NAMESPACE}"),
    ];
    let args: Vec<String> = sets
        .into_iter()
        .flat_map(|s| ["--set".to_owned(), s])
        .collect();
    identity_objects(helm_template("federator", release, HUB_NAMESPACE, &args))
}

/// The release's full name: the chart names its ServiceAccount so, and its Roles after it.
pub fn full_name(objects: &[Value]) -> String {
    objects
        .iter()
        .find(|o| o["kind"] == "ServiceAccount")
        .and_then(|o| o["metadata"]["name"].as_str())
        .expect("the chart's ServiceAccount")
        .to_owned()
}

/// Every rule of the Roles and ClusterRoles in `objects`.
pub fn rules(objects: &[Value]) -> Vec<RuleRef> {
    let full = full_name(objects);
    objects
        .iter()
        .filter(|o| matches!(o["kind"].as_str(), Some("Role" | "ClusterRole")))
        .flat_map(|o| {
            let kind = o["kind"].as_str().unwrap_or_default().to_owned();
            let name = o["metadata"]["name"].as_str().unwrap_or_default();
            let role = name.strip_prefix(full.as_str()).unwrap_or(name).to_owned();
            o["rules"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .enumerate()
                .map(move |(index, rule)| RuleRef {
                    kind: kind.clone(),
                    role: role.clone(),
                    index,
                    rule,
                })
        })
        .collect()
}

/// A controller's identity on the lab hub; deleted on drop.
pub struct HubIdentity {
    lab: &'static SharedLab,
    objects: Vec<Value>,
    kubeconfig: PathBuf,
    service_account: String,
}

impl HubIdentity {
    /// Applies the chart's identity for `release` (minus the rule `without`, if given), and
    /// writes a kubeconfig with a token of its ServiceAccount.
    pub async fn create(
        lab: &'static SharedLab,
        release: &str,
        namespace: &str,
        lease: &str,
        without: Option<&RuleRef>,
    ) -> Self {
        let mut objects = render(release, namespace, lease);
        let service_account = full_name(&objects);
        if let Some(rule) = without {
            remove_rule(&mut objects, rule);
        }
        let hub = lab.admin("hub").await;
        for object in &objects {
            apply(&hub, object).await;
        }
        let token = token(&hub, HUB_NAMESPACE, &service_account).await;
        let kubeconfig = lab
            .layout
            .root()
            .join(format!("{release}.hub-serviceaccount.kubeconfig"));
        write_kubeconfig(&lab.layout.kubeconfig("hub"), &kubeconfig, &token);
        HubIdentity {
            lab,
            objects,
            kubeconfig,
            service_account,
        }
    }

    /// The kubeconfig of the ServiceAccount (hub server and CA of the lab).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// `system:serviceaccount:federator-system:<name>`, as 403 messages name it.
    pub fn user(&self) -> String {
        format!(
            "system:serviceaccount:{HUB_NAMESPACE}:{}",
            self.service_account
        )
    }
}

impl Drop for HubIdentity {
    fn drop(&mut self) {
        let (lab, objects) = (self.lab, std::mem::take(&mut self.objects));
        let _ = std::fs::remove_file(&self.kubeconfig);
        super::block_on_detached(async move {
            delete_all(&lab.admin("hub").await, &objects).await;
        });
    }
}

/// Removes `rule` from its Role or ClusterRole among `objects` (the release's full name is its
/// first ServiceAccount's).
pub fn remove_rule(objects: &mut [Value], rule: &RuleRef) {
    let name = format!("{}{}", full_name(objects), rule.role);
    let role = objects
        .iter_mut()
        .find(|o| o["kind"] == rule.kind.as_str() && o["metadata"]["name"] == name.as_str())
        .unwrap_or_else(|| panic!("no {} {name} in the chart", rule.kind));
    let rules = role["rules"].as_array_mut().expect("rules");
    assert_eq!(rules[rule.index], rule.rule, "the chart's rule {rule}");
    rules.remove(rule.index);
}

/// Deletes `objects` (in reverse order), ignoring errors.
pub async fn delete_all(client: &Client, objects: &[Value]) {
    for object in objects.iter().rev() {
        let (api, name) = api_for(client, object);
        let _ = api.delete(&name, &DeleteParams::default()).await;
    }
}

fn api_for(hub: &Client, object: &Value) -> (Api<DynamicObject>, String) {
    let (group, version) = match object["apiVersion"]
        .as_str()
        .unwrap_or_default()
        .split_once('/')
    {
        Some((g, v)) => (g.to_owned(), v.to_owned()),
        None => (
            String::new(),
            object["apiVersion"].as_str().unwrap_or_default().to_owned(),
        ),
    };
    let kind = object["kind"].as_str().unwrap_or_default();
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(&group, &version, kind));
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let api = match object["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(hub.clone(), ns, &resource),
        None => Api::all_with(hub.clone(), &resource),
    };
    (api, name)
}

/// Server-side applies `object` as the e2e field manager.
pub async fn apply(hub: &Client, object: &Value) {
    let (api, name) = api_for(hub, object);
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .unwrap_or_else(|e| panic!("applying {} {name}: {e}", object["kind"]));
}

/// A one-hour token of `service_account` in `namespace`.
pub async fn token(hub: &Client, namespace: &str, service_account: &str) -> String {
    let api: Api<ServiceAccount> = Api::namespaced(hub.clone(), namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: Vec::new(),
            expiration_seconds: Some(Duration::from_secs(3600).as_secs() as i64),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let answer = api
        .create_token_request(service_account, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("a token for {service_account}: {e}"));
    answer.status.map(|s| s.token).expect("status.token")
}

/// The admin kubeconfig's server and CA, with `token` as the user.
pub fn write_kubeconfig(admin: &Path, path: &Path, token: &str) {
    let config = Kubeconfig::read_from(admin).expect("the lab's hub kubeconfig");
    let cluster = config.clusters[0].cluster.as_ref().expect("a cluster");
    let server = cluster.server.clone().expect("a server");
    let ca = cluster
        .certificate_authority_data
        .as_ref()
        .expect("certificate-authority-data");
    let ca_pem = base64::engine::general_purpose::STANDARD
        .decode(ca)
        .expect("base64 CA");
    let ca_pem = String::from_utf8(ca_pem).expect("PEM CA");
    kubeconfig::write(
        path,
        &[Entry {
            context: "hub",
            server,
            ca_pem: &ca_pem,
            user: "federator",
            token,
            namespace: None,
        }],
    )
    .expect("writing the ServiceAccount's kubeconfig");
}
