//! Objects the lab creates once its apiservers are ready, all by server-side apply under the
//! field manager `federator-lab`, so re-running `up` converges instead of failing on conflicts.
//!
//! Members: the CNPG Cluster CRD, namespace `databases`, ServiceAccount `federator` and a Role
//! allowing only get/list/watch/patch on Clusters there. Hub: Federator's CRDs, namespace
//! `federator-system` and one Secret per member holding the least-privilege kubeconfig.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::Role;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use kubeconfigs::member_access;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::{LabError, Result};
use super::health::wait_for;
use super::topology::{
    CLUSTER_NAME_LABEL, DATABASES_NAMESPACE, FEDERATOR_SERVICE_ACCOUNT, FIELD_MANAGER,
    HUB_NAMESPACE, KUBECONFIG_SECRET_KEY, MEMBER_SECRET_LABEL, member_secret_name,
};

/// Lifetime requested for member ServiceAccount tokens. The lab is long-lived; `up` refreshes
/// them when older than [`TOKEN_REFRESH_AFTER`].
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
pub const TOKEN_REFRESH_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);
const ESTABLISHED_WITHIN: Duration = Duration::from_secs(30);

/// Server-side applies `object` (cluster-scoped or in its own namespace).
pub async fn apply<K>(client: &Client, object: &K) -> Result<K>
where
    K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Clone + std::fmt::Debug,
    K::Scope: ApplyScope,
{
    let name = object.name_any();
    let api: Api<K> = K::Scope::api(client.clone(), object.namespace().as_deref());
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .map_err(LabError::kube(format!("applying {} {name}", K::kind(&()))))
}

/// Chooses `Api::all` or `Api::namespaced` from the resource's scope.
pub trait ApplyScope {
    fn api<K: Resource<Scope = Self, DynamicType = ()>>(
        client: Client,
        namespace: Option<&str>,
    ) -> Api<K>;
}
impl ApplyScope for k8s_openapi::ClusterResourceScope {
    fn api<K: Resource<Scope = Self, DynamicType = ()>>(client: Client, _: Option<&str>) -> Api<K> {
        Api::all(client)
    }
}
impl ApplyScope for k8s_openapi::NamespaceResourceScope {
    fn api<K: Resource<Scope = Self, DynamicType = ()>>(
        client: Client,
        namespace: Option<&str>,
    ) -> Api<K> {
        Api::namespaced(client, namespace.unwrap_or("default"))
    }
}

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        ..Default::default()
    }
}

/// Applies a CRD and waits until it is Established (served), so objects can be created at once.
pub async fn apply_crd(client: &Client, crd: &CustomResourceDefinition) -> Result<()> {
    let mut crd = crd.clone();
    crd.status = None;
    crd.metadata.managed_fields = None;
    let name = crd.name_any();
    apply(client, &crd).await?;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    wait_for(
        &format!("CRD {name} Established"),
        ESTABLISHED_WITHIN,
        || async {
            let crd = api.get(&name).await.ok()?;
            let conditions = crd.status?.conditions?;
            conditions
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        },
    )
    .await
}

/// The Role every member grants Federator in `namespace`: read and patch Clusters, read their
/// status; nothing else (no Secrets, no delete, no other namespaces). The same Role
/// `federator member join` creates ([`kubeconfigs::member_access`]).
pub fn federator_role(namespace: &str) -> Role {
    member_access::role(FEDERATOR_SERVICE_ACCOUNT, namespace, &BTreeMap::new())
}

/// Binds [`federator_role`] in `namespace` to the ServiceAccount `databases/federator`. Tests
/// use it to give the same least privilege in their own namespaces.
pub async fn grant_federator_role(client: &Client, namespace: &str) -> Result<()> {
    apply(client, &federator_role(namespace)).await?;
    let binding = member_access::role_binding(
        FEDERATOR_SERVICE_ACCOUNT,
        namespace,
        (DATABASES_NAMESPACE, FEDERATOR_SERVICE_ACCOUNT),
        &BTreeMap::new(),
    );
    apply(client, &binding).await.map(drop)
}

pub async fn ensure_namespace(
    client: &Client,
    name: &str,
    labels: BTreeMap<String, String>,
) -> Result<()> {
    let mut ns = Namespace {
        metadata: meta(name, None),
        ..Default::default()
    };
    if !labels.is_empty() {
        ns.metadata.labels = Some(labels);
    }
    apply(client, &ns).await.map(drop)
}

/// Sets a member up and returns a token of its least-privilege ServiceAccount.
pub async fn member(client: &Client, cnpg_crd: &CustomResourceDefinition) -> Result<String> {
    apply_crd(client, cnpg_crd).await?;
    ensure_namespace(client, DATABASES_NAMESPACE, BTreeMap::new()).await?;
    let sa = ServiceAccount {
        metadata: meta(FEDERATOR_SERVICE_ACCOUNT, Some(DATABASES_NAMESPACE)),
        ..Default::default()
    };
    apply(client, &sa).await?;
    grant_federator_role(client, DATABASES_NAMESPACE).await?;
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(TOKEN_LIFETIME.as_secs() as i64),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), DATABASES_NAMESPACE);
    let response = api
        .create_token_request(FEDERATOR_SERVICE_ACCOUNT, &PostParams::default(), &request)
        .await
        .map_err(LabError::kube("requesting a token for databases/federator"))?;
    response
        .status
        .map(|s| s.token)
        .ok_or_else(|| LabError::Parse {
            what: "TokenRequest response".into(),
            message: "no status.token".into(),
        })
}

/// Sets the hub up: Federator's CRDs, its namespace, and one Secret per member.
pub async fn hub(
    client: &Client,
    crds: &[CustomResourceDefinition],
    member_kubeconfigs: &[(String, String)],
) -> Result<()> {
    for crd in crds {
        apply_crd(client, crd).await?;
    }
    ensure_namespace(client, HUB_NAMESPACE, BTreeMap::new()).await?;
    for (member, kubeconfig) in member_kubeconfigs {
        let mut secret = Secret {
            metadata: meta(&member_secret_name(member), Some(HUB_NAMESPACE)),
            ..Default::default()
        };
        secret.metadata.labels = Some(BTreeMap::from([
            (MEMBER_SECRET_LABEL.to_owned(), "true".to_owned()),
            (CLUSTER_NAME_LABEL.to_owned(), member.clone()),
        ]));
        secret.type_ = Some("Opaque".into());
        secret.data = Some(BTreeMap::from([(
            KUBECONFIG_SECRET_KEY.to_owned(),
            ByteString(kubeconfig.clone().into_bytes()),
        )]));
        apply(client, &secret).await?;
    }
    Ok(())
}
