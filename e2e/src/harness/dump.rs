//! What a failed test leaves on stderr: the objects of its namespace on every apiserver,
//! after a summary of one line per object (CI logs are often cut in the middle: the summary
//! says where every switchover and every Cluster stood even when the YAML is lost).

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
    let mut listed = Vec::new();
    for region in REGIONS {
        let client = lab.admin(region).await;
        for resource in resources {
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, resource);
            if let Ok(list) = api.list(&ListParams::default()).await {
                listed.extend(list.items.into_iter().map(|o| (region, o)));
            }
        }
    }
    for (region, object) in &listed {
        eprintln!("--- summary {region}: {}", summary(object));
    }
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

/// One line: the kind and name, then the fields that say where a switchover stands (the
/// topology's primary and operation step, a Cluster's replica spec, phase and primaries).
fn summary(object: &DynamicObject) -> String {
    let data = &object.data;
    let text = |pointer: &str| match data.pointer(pointer) {
        None | Some(serde_json::Value::Null) => "-".to_owned(),
        Some(serde_json::Value::String(s)) if s.len() > 40 => format!("<{} bytes>", s.len()),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    let kind = object.types.as_ref().map_or("?", |t| t.kind.as_str());
    let name = object.metadata.name.as_deref().unwrap_or("?");
    let version = object.metadata.resource_version.as_deref().unwrap_or("?");
    let fields: &[(&str, &str)] = if kind == "Cluster" {
        &[
            ("replica.primary", "/spec/replica/primary"),
            ("replica.source", "/spec/replica/source"),
            ("promotionToken", "/spec/replica/promotionToken"),
            ("phase", "/status/phase"),
            ("currentPrimary", "/status/currentPrimary"),
            ("targetPrimary", "/status/targetPrimary"),
            ("demotionToken", "/status/demotionToken"),
            ("timeline", "/status/timelineID"),
        ]
    } else {
        &[
            ("primary", "/spec/primary"),
            ("operation", "/status/operation/id"),
            ("step", "/status/operation/step"),
            ("hold", "/status/operation/hold"),
            ("observedGeneration", "/status/observedGeneration"),
        ]
    };
    let fields: Vec<String> = fields
        .iter()
        .map(|(label, pointer)| format!("{label}={}", text(pointer)))
        .collect();
    format!("{kind} {name} rv={version} {}", fields.join(" "))
}
