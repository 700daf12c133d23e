//! Member tokens that can be revoked one by one: each is a TokenRequest bound to a Secret of its
//! own (its "anchor"); the API server accepts the token only while that Secret exists, so
//! deleting it revokes exactly that token, and the token also expires on its own.

use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{DeleteParams, PostParams};

use super::member::member_labels;

/// An issued token and the Secret it is bound to.
pub struct Issued {
    pub token: String,
    pub anchor: String,
    pub expires: Option<Timestamp>,
}

/// Creates an anchor Secret next to the ServiceAccount and a token bound to it.
pub async fn issue(
    admin: &kube::Client,
    member: &str,
    (namespace, service_account): (&str, &str),
    lifetime: Duration,
) -> anyhow::Result<Issued> {
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), namespace);
    let anchor = Secret {
        metadata: ObjectMeta {
            generate_name: Some(format!("{service_account}-token-")),
            labels: Some(member_labels(member)),
            annotations: Some(
                [(
                    "federator.dev/purpose".to_owned(),
                    format!(
                        "Federator's token for {service_account} is valid only while this Secret exists; delete it to revoke the token"
                    ),
                )]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        ..Secret::default()
    };
    let anchor = secrets
        .create(&PostParams::default(), &anchor)
        .await
        .with_context(|| format!("creating the token's Secret in {namespace}"))?;
    let anchor_name = anchor.metadata.name.clone().unwrap_or_default();
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: Vec::new(),
            expiration_seconds: Some(i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX)),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Secret".into()),
                name: Some(anchor_name.clone()),
                uid: anchor.metadata.uid.clone(),
            }),
        },
        ..TokenRequest::default()
    };
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), namespace);
    let response = match accounts
        .create_token_request(service_account, &PostParams::default(), &request)
        .await
    {
        Ok(response) => response,
        Err(e) => {
            // No token: the anchor is of no use.
            let _ = secrets.delete(&anchor_name, &DeleteParams::default()).await;
            return Err(e).with_context(|| {
                format!("requesting a token for ServiceAccount {namespace}/{service_account}")
            });
        }
    };
    let status = response
        .status
        .context("the TokenRequest answer has no status")?;
    Ok(Issued {
        token: status.token,
        anchor: anchor_name,
        expires: Some(status.expiration_timestamp.0),
    })
}

/// Deletes an anchor Secret (revoking its token); one already gone is fine.
pub async fn revoke(admin: &kube::Client, namespace: &str, anchor: &str) -> anyhow::Result<()> {
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), namespace);
    match secrets.delete(anchor, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("deleting the token Secret {namespace}/{anchor}")),
    }
}

/// Whether `client` may do `verb` on `resource` (a CNPG resource) in `namespace`.
pub async fn can(
    client: &kube::Client,
    namespace: &str,
    resource: &str,
    verb: &str,
) -> Result<bool, kube::Error> {
    let (resource, subresource) = match resource.split_once('/') {
        Some((r, s)) => (r, Some(s.to_owned())),
        None => (resource, None),
    };
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                group: Some(kubeconfigs::member_access::group_of(resource).into()),
                resource: Some(resource.into()),
                subresource,
                verb: Some(verb.into()),
                namespace: Some(namespace.into()),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let answer = api.create(&PostParams::default(), &review).await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

/// Waits until the API server refuses `client` (401), which a revoked token gets once the
/// server's cache of successful authentications (10 s by default) has let it go.
pub async fn wait_refused(client: &kube::Client, within: Duration) -> anyhow::Result<Duration> {
    let started = tokio::time::Instant::now();
    loop {
        match can(client, "default", "clusters", "get").await {
            Err(kube::Error::Api(e)) if e.code == 401 => return Ok(started.elapsed()),
            _ if started.elapsed() >= within => anyhow::bail!(
                "the old token is still accepted after {within:?}; check the member's \
                 --service-account-lookup (it must be true, the default)"
            ),
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}
