//! The `ValidatingWebhookConfiguration` that makes a member apiserver call the emulated webhook,
//! shaped like CNPG's `config/webhook/manifests.yaml` but with a URL instead of a Service (the
//! lab has no Services that route anywhere).

use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    RuleWithOperations, ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use super::{Result, WEBHOOK_NAME, WebhookError};

/// Field manager of everything the emulator applies.
const FIELD_MANAGER: &str = "federator-emulator";

/// What to register.
#[derive(Clone, Debug)]
pub struct Registration {
    /// `metadata.name` of the configuration; CNPG's is `cnpg-validating-webhook-configuration`,
    /// the emulator uses the webhook's name.
    pub configuration_name: String,
    /// `https://127.0.0.1:PORT/validate-postgresql-cnpg-io-v1-cluster`.
    pub url: String,
    /// PEM of the CA that signed the server's certificate (the lab CA).
    pub ca_bundle_pem: String,
    /// Restrict the webhook to one namespace (tests running their own server); `None`: all.
    pub namespace: Option<String>,
}

impl Registration {
    /// The member-wide registration, as a CNPG install has it.
    pub fn cnpg(ca_bundle_pem: &str, url: &str) -> Self {
        Registration {
            configuration_name: WEBHOOK_NAME.to_owned(),
            url: url.to_owned(),
            ca_bundle_pem: ca_bundle_pem.to_owned(),
            namespace: None,
        }
    }

    pub fn to_configuration(&self) -> ValidatingWebhookConfiguration {
        let namespace_selector = self.namespace.as_ref().map(|ns| LabelSelector {
            match_labels: Some([("kubernetes.io/metadata.name".to_owned(), ns.clone())].into()),
            ..LabelSelector::default()
        });
        ValidatingWebhookConfiguration {
            metadata: ObjectMeta {
                name: Some(self.configuration_name.clone()),
                ..ObjectMeta::default()
            },
            webhooks: Some(vec![ValidatingWebhook {
                name: WEBHOOK_NAME.to_owned(),
                admission_review_versions: vec!["v1".to_owned()],
                client_config: WebhookClientConfig {
                    url: Some(self.url.clone()),
                    ca_bundle: Some(ByteString(self.ca_bundle_pem.clone().into_bytes())),
                    service: None,
                },
                failure_policy: Some("Fail".to_owned()),
                match_policy: Some("Equivalent".to_owned()),
                side_effects: "None".to_owned(),
                timeout_seconds: Some(10),
                namespace_selector,
                rules: Some(vec![RuleWithOperations {
                    api_groups: Some(vec!["postgresql.cnpg.io".to_owned()]),
                    api_versions: Some(vec!["v1".to_owned()]),
                    operations: Some(vec!["CREATE".to_owned(), "UPDATE".to_owned()]),
                    resources: Some(vec!["clusters".to_owned()]),
                    scope: None,
                }]),
                ..ValidatingWebhook::default()
            }]),
        }
    }
}

/// Server-side-applies the member-wide `vcluster.cnpg.io` configuration.
pub async fn register(
    client: Client,
    ca_bundle_pem: &str,
    url: &str,
) -> Result<ValidatingWebhookConfiguration> {
    register_with(client, &Registration::cnpg(ca_bundle_pem, url)).await
}

/// Server-side-applies `registration`.
pub async fn register_with(
    client: Client,
    registration: &Registration,
) -> Result<ValidatingWebhookConfiguration> {
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client);
    let mut config = registration.to_configuration();
    // Server-side apply needs the type information in the body.
    let mut body = serde_json::to_value(&config).unwrap_or_default();
    body["apiVersion"] = json!("admissionregistration.k8s.io/v1");
    body["kind"] = json!("ValidatingWebhookConfiguration");
    config = api
        .patch(
            &registration.configuration_name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(body),
        )
        .await
        .map_err(|source| WebhookError::Kube {
            action: "applying the ValidatingWebhookConfiguration",
            source,
        })?;
    Ok(config)
}

/// Deletes a configuration; absent is fine.
pub async fn unregister(client: Client, configuration_name: &str) -> Result<()> {
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client);
    match api
        .delete(configuration_name, &DeleteParams::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(source) => Err(WebhookError::Kube {
            action: "deleting the ValidatingWebhookConfiguration",
            source,
        }),
    }
}

/// Waits until the apiserver calls the webhook for Clusters in `namespace`: a registration
/// reaches the apiserver's admission chain asynchronously (an informer), so this dry-run
/// creates an invalid Cluster until the webhook's rejection comes back, or `timeout` passes.
pub async fn wait_until_enforced(client: Client, namespace: &str, timeout: Duration) -> Result<()> {
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client,
        namespace,
        &kube::discovery::ApiResource {
            group: "postgresql.cnpg.io".into(),
            version: "v1".into(),
            api_version: "postgresql.cnpg.io/v1".into(),
            kind: "Cluster".into(),
            plural: "clusters".into(),
        },
    );
    // A valid name for the apiserver (DNS subdomain) that CNPG rejects (not a DNS-1035 label).
    let probe: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Cluster",
        "metadata": {"name": "0-webhook-probe"},
        "spec": {"instances": 1},
    }))
    .unwrap_or_else(|_| unreachable!("a static object"));
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let denied = format!("admission webhook \"{WEBHOOK_NAME}\" denied the request");
    let start = Instant::now();
    loop {
        let last = match api.create(&params, &probe).await {
            Err(kube::Error::Api(e)) if e.message.contains(&denied) => return Ok(()),
            Err(e) => e.to_string(),
            Ok(_) => "the probe Cluster was admitted".to_owned(),
        };
        if start.elapsed() > timeout {
            return Err(WebhookError::NotEnforced {
                namespace: namespace.to_owned(),
                waited: timeout,
                last,
            });
        }
        // The informer has no completion signal to wait on; poll it.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
