//! What a failed test leaves on stderr: the objects of its namespace on every apiserver.

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, DynamicObject, ListParams};
use kube::discovery::ApiResource;

use super::fixture::SharedLab;
use crate::lab::topology::REGIONS;

pub(super) async fn namespace(lab: &SharedLab, namespace: &str, resources: &[ApiResource]) {
    eprintln!(
        "\n===== e2e failure dump: namespace {namespace} (kept for inspection; lab {}) =====",
        lab.layout.root().display()
    );
    for region in REGIONS {
        let client = lab.admin(region).await;
        for resource in resources {
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, resource);
            match api.list(&ListParams::default()).await {
                Ok(list) if list.items.is_empty() => {}
                Ok(list) => {
                    for mut object in list.items {
                        object.metadata.managed_fields = None;
                        eprintln!(
                            "--- {region}: {} {}",
                            resource.kind,
                            object.metadata.name.as_deref().unwrap_or("?")
                        );
                        eprintln!(
                            "{}",
                            serde_saphyr::to_string(&object).unwrap_or_else(|e| e.to_string())
                        );
                    }
                }
                // A resource that is not installed on this apiserver (e.g. Clusters on the hub).
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => eprintln!("--- {region}: listing {}: {e}", resource.plural),
            }
        }
        let events: Api<Event> = Api::namespaced(client, namespace);
        if let Ok(list) = events.list(&ListParams::default()).await {
            for e in list.items {
                eprintln!(
                    "--- {region}: event {} {}/{}: {} {}",
                    e.type_.unwrap_or_default(),
                    e.involved_object.kind.unwrap_or_default(),
                    e.involved_object.name.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.message.unwrap_or_default()
                );
            }
        }
    }
    eprintln!("===== end of dump =====\n");
}
