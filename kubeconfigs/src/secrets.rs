//! Member credentials from Secrets on the hub, in Federator's format or Argo CD's.
//!
//! Federator's format: label `federator.dev/member-cluster: "true"`, the member's name in label
//! `federator.dev/cluster-name` (else the Secret's name), a kubeconfig under data key
//! `kubeconfig`. The kubeconfig must be self-contained: file references are refused.

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use crate::argocd;
use crate::credential::MemberCredential;
use crate::directory::is_member_name;
use crate::error::{CredentialError, Result};
use crate::kubeconfig::{self, Rules, Trust};
use crate::origin::{Origin, SecretFormat};
use crate::secret_data::data;

/// Label marking a hub Secret as a member credential in Federator's format (value `"true"`).
pub const MEMBER_SECRET_LABEL: &str = "federator.dev/member-cluster";
/// Label naming the member a Federator-format Secret reaches.
pub const CLUSTER_NAME_LABEL: &str = "federator.dev/cluster-name";
/// Data key of a Federator-format Secret holding the kubeconfig.
pub const KUBECONFIG_KEY: &str = "kubeconfig";
/// Label selecting Federator-format Secrets.
pub const MEMBER_SECRET_SELECTOR: &str = "federator.dev/member-cluster=true";

/// The format a Secret's labels declare, if any.
pub fn format_of(secret: &Secret) -> Option<SecretFormat> {
    let labels = secret.labels();
    if labels.get(argocd::SECRET_TYPE_LABEL).map(String::as_str)
        == Some(argocd::SECRET_TYPE_CLUSTER)
    {
        Some(SecretFormat::ArgoCd)
    } else if labels.get(MEMBER_SECRET_LABEL).map(String::as_str) == Some("true") {
        Some(SecretFormat::Federator)
    } else {
        None
    }
}

/// The credential a labelled Secret holds; `None` for a Secret of neither format.
pub async fn from_secret(secret: &Secret, trust: Trust) -> Option<Result<MemberCredential>> {
    let format = format_of(secret)?;
    let origin = Origin::Secret {
        format,
        namespace: secret.namespace().unwrap_or_default(),
        name: secret.name_any(),
    };
    Some(match format {
        SecretFormat::Federator => federator_format(secret, origin, trust).await,
        SecretFormat::ArgoCd => argocd::from_secret(secret, origin, trust).await,
    })
}

async fn federator_format(
    secret: &Secret,
    origin: Origin,
    trust: Trust,
) -> Result<MemberCredential> {
    let member = secret
        .labels()
        .get(CLUSTER_NAME_LABEL)
        .cloned()
        .unwrap_or_else(|| secret.name_any());
    if !is_member_name(&member) {
        return Err(CredentialError::Invalid {
            member: None,
            origin,
            message: format!("{member:?} is not a member name (a DNS-1123 label)"),
        });
    }
    let invalid = |message: &str| CredentialError::Invalid {
        member: Some(member.clone()),
        origin: origin.clone(),
        message: message.to_owned(),
    };
    let bytes = data(secret, KUBECONFIG_KEY).ok_or_else(|| invalid("no data key `kubeconfig`"))?;
    kubeconfig::check_size(bytes.len(), Some(&member), &origin, "data `kubeconfig`")?;
    let text = std::str::from_utf8(bytes).map_err(|_| invalid("data `kubeconfig` is not UTF-8"))?;
    let parsed = kubeconfig::parse(text, Some(&member), &origin)?;
    let rules = Rules::for_secret(trust);
    let revision = kubeconfig::revision(&[b"federator", member.as_bytes(), bytes]);
    kubeconfig::credential(parsed, &member, origin, rules, revision).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::argocd::tests::argo_secret;

    #[tokio::test]
    async fn the_argo_cd_label_selects_the_argo_cd_format() {
        let secret = argo_secret(r#"{"bearerToken":"t"}"#);
        assert_eq!(format_of(&secret), Some(SecretFormat::ArgoCd));
        let credential = from_secret(&secret, Trust::default())
            .await
            .expect("the label selects the Argo CD format")
            .unwrap();
        assert!(matches!(
            credential.origin(),
            Origin::Secret {
                format: SecretFormat::ArgoCd,
                ..
            }
        ));
    }
}
