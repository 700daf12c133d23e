//! What a member region's node gets once it is Ready: a default StorageClass backed by
//! hostPath PersistentVolumes owned by uid 26 (CloudNativePG's postgres), and the CloudNativePG
//! operator from its release manifest, its default PostgreSQL image being the lab's local one
//! (so plain Cluster manifests need no `imageName`).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, HostPathVolumeSource, PersistentVolume, PersistentVolumeSpec,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, DeleteParams, DynamicObject, ObjectMeta, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use kube::{Client, ResourceExt};

use super::plan::{PERSISTENT_VOLUMES, RegionPlan, STORAGE_CLASS};
use crate::lab::bootstrap;
use crate::lab::error::{LabError, Result};
use crate::lab::health::wait_for;
use crate::lab::topology::FIELD_MANAGER;

/// CloudNativePG's uid and gid inside its images.
const POSTGRES_UID: u32 = 26;
/// The operator's namespace and the ConfigMap it reads its settings from (release manifest).
pub const OPERATOR_NAMESPACE: &str = "cnpg-system";
const OPERATOR_CONFIG: &str = "cnpg-controller-manager-config";
pub const OPERATOR_DEPLOYMENT: &str = "cnpg-controller-manager";
const VOLUME_SIZE: &str = "20Gi";

/// The default StorageClass and [`PERSISTENT_VOLUMES`] PersistentVolumes that are Available or
/// Bound. A Released one (its claim deleted) is wiped and made again: a static volume is never
/// reused by Kubernetes itself.
pub async fn storage(client: &Client, region: &RegionPlan) -> Result<()> {
    let class = StorageClass {
        metadata: ObjectMeta {
            name: Some(STORAGE_CLASS.into()),
            annotations: Some(BTreeMap::from([(
                "storageclass.kubernetes.io/is-default-class".to_owned(),
                "true".to_owned(),
            )])),
            ..Default::default()
        },
        provisioner: "kubernetes.io/no-provisioner".into(),
        volume_binding_mode: Some("WaitForFirstConsumer".into()),
        reclaim_policy: Some("Retain".into()),
        ..Default::default()
    };
    bootstrap::apply(client, &class).await?;
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    for i in 0..PERSISTENT_VOLUMES {
        let name = format!("{}-pv{i}", region.member);
        let dir = region.volume_dir(i);
        if let Some(pv) = volumes
            .get_opt(&name)
            .await
            .map_err(LabError::kube(format!("reading PersistentVolume {name}")))?
        {
            let phase = pv.status.and_then(|s| s.phase).unwrap_or_default();
            if phase != "Released" && phase != "Failed" {
                continue;
            }
            volumes
                .delete(&name, &DeleteParams::default())
                .await
                .map_err(LabError::kube(format!("deleting PersistentVolume {name}")))?;
            wait_for(
                &format!("PersistentVolume {name} deleted"),
                Duration::from_secs(30),
                || {
                    let volumes = volumes.clone();
                    let name = name.clone();
                    async move { matches!(volumes.get_opt(&name).await, Ok(None)).then_some(()) }
                },
            )
            .await?;
        }
        fresh_volume_dir(&dir)?;
        let pv = PersistentVolume {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeSpec {
                capacity: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity(VOLUME_SIZE.into()),
                )])),
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                persistent_volume_reclaim_policy: Some("Retain".into()),
                storage_class_name: Some(STORAGE_CLASS.into()),
                host_path: Some(HostPathVolumeSource {
                    path: dir.display().to_string(),
                    type_: Some("Directory".into()),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        volumes
            .create(&PostParams::default(), &pv)
            .await
            .map_err(LabError::kube(format!("creating PersistentVolume {name}")))?;
    }
    Ok(())
}

/// An empty directory owned by postgres, mode 0700 (what initdb wants).
fn fresh_volume_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(LabError::io("wiping", dir))?;
    }
    std::fs::create_dir_all(dir).map_err(LabError::io("creating", dir))?;
    std::os::unix::fs::chown(dir, Some(POSTGRES_UID), Some(POSTGRES_UID))
        .map_err(LabError::io("chown 26:26", dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(LabError::io("chmod 0700", dir))
}

/// The objects of CNPG's release manifest, adapted to the lab: the operator's image is never
/// pulled (it was imported).
pub fn operator_objects(manifest: &Path) -> Result<Vec<serde_json::Value>> {
    let text = std::fs::read_to_string(manifest).map_err(LabError::io("reading", manifest))?;
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_reader_input_bytes: None,
            max_events: 50_000_000,
            max_nodes: 50_000_000,
            max_total_scalar_bytes: 256 * 1024 * 1024,
        },
    };
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple_with_options(&text, options)
        .map_err(|e| LabError::Parse {
            what: manifest.display().to_string(),
            message: e.to_string(),
        })?;
    let mut objects: Vec<serde_json::Value> = docs.into_iter().filter(|d| d.is_object()).collect();
    for object in &mut objects {
        if object["kind"] == "Deployment"
            && let Some(containers) = object
                .pointer_mut("/spec/template/spec/containers")
                .and_then(|c| c.as_array_mut())
        {
            for container in containers {
                container["imagePullPolicy"] = "IfNotPresent".into();
            }
        }
    }
    Ok(objects)
}

fn api_resource(object: &serde_json::Value) -> Result<ApiResource> {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let plural = match kind {
        "CustomResourceDefinition" => "customresourcedefinitions".to_owned(),
        "Namespace" | "ServiceAccount" | "ClusterRole" | "ClusterRoleBinding" | "Role"
        | "RoleBinding" | "ConfigMap" | "Service" | "Deployment" | "Secret" => {
            format!("{}s", kind.to_lowercase())
        }
        "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration" => {
            format!("{}s", kind.to_lowercase())
        }
        other => {
            return Err(LabError::Config(format!(
                "CNPG's release manifest holds a {other}, which the lab does not know how to apply"
            )));
        }
    };
    Ok(ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: api_version.into(),
        kind: kind.into(),
        plural,
    })
}

/// Applies the operator (ConfigMap with the lab's default PostgreSQL image first, so the
/// operator reads it at start) and waits until its Deployment is available and its admission
/// webhook answers (a server-side dry-run create of a Cluster goes through it).
pub async fn install_operator(
    client: &Client,
    manifest: &Path,
    postgres_image: &str,
    within: Duration,
) -> Result<()> {
    let objects = operator_objects(manifest)?;
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let (namespaces, rest): (Vec<_>, Vec<_>) = objects
        .into_iter()
        .partition(|o| o["kind"] == "Namespace" || o["kind"] == "CustomResourceDefinition");
    for object in namespaces.iter().chain(rest.iter()) {
        if object["kind"] == "Deployment" {
            apply_operator_config(client, postgres_image).await?;
        }
        let resource = api_resource(object)?;
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let api: Api<DynamicObject> = match object["metadata"]["namespace"].as_str() {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        api.patch(name, &params, &Patch::Apply(object))
            .await
            .map_err(LabError::kube(format!("applying {} {name}", resource.kind)))?;
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    wait_for("the CloudNativePG operator available", within, || {
        let deployments = deployments.clone();
        async move {
            let d = deployments.get_opt(OPERATOR_DEPLOYMENT).await.ok()??;
            (d.status?.available_replicas? >= 1).then_some(())
        }
    })
    .await?;
    wait_for(
        "CloudNativePG's admission webhook answering",
        within,
        || {
            let client = client.clone();
            async move { webhook_answers(&client).await.then_some(()) }
        },
    )
    .await
}

async fn apply_operator_config(client: &Client, postgres_image: &str) -> Result<()> {
    let config = ConfigMap {
        metadata: ObjectMeta {
            name: Some(OPERATOR_CONFIG.into()),
            namespace: Some(OPERATOR_NAMESPACE.into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            "POSTGRES_IMAGE_NAME".to_owned(),
            postgres_image.to_owned(),
        )])),
        ..Default::default()
    };
    bootstrap::apply(client, &config).await.map(drop)
}

/// A server-side dry-run create of a minimal Cluster: it passes CNPG's mutating and validating
/// webhooks, or fails while they are unreachable.
async fn webhook_answers(client: &Client) -> bool {
    let resource = super::cluster_resource();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &resource);
    let mut probe = DynamicObject::new("lab-webhook-probe", &resource);
    probe.data = serde_json::json!({"spec": {"instances": 1, "storage": {"size": "1Gi"}}});
    let params = PostParams {
        dry_run: true,
        ..Default::default()
    };
    match api.create(&params, &probe).await {
        Ok(created) => created.name_any() == "lab-webhook-probe",
        Err(e) => {
            tracing::debug!("CNPG webhook probe: {e}");
            false
        }
    }
}
