//! Running a region switch's hooks on a member cluster. A scale hook scales the topology's
//! applications (Deployments or StatefulSets labelled `federator.dev/topology: <topology>` plus
//! the hook's labels) through the `scale` subresource, then reports whether they are there; a
//! patch hook applies a JSON merge patch to one object (traffic); a Job hook (`job`) creates its
//! Job once and waits for it. All are idempotent, so a round after a crash simply runs them
//! again.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::api::{DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use kube::discovery::pinned_kind;
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use topology::region_api::{
    FIELD_MANAGER, Hook, HookRegion, PatchHook, RegionSwitch, ScaleHook, ScaleKind, TOPOLOGY_LABEL,
    TopologyProgress,
};

use crate::controller::Members;
use crate::hub_permissions::{self, Permission};

/// Where one application stands, from its spec and status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct App {
    pub name: String,
    pub generation: Option<i64>,
    pub desired: Option<i32>,
    pub observed_generation: Option<i64>,
    pub replicas: i32,
    pub ready: i32,
}

pub use topology::plan::HookState;

/// Pure: are the applications where the hook wants them?
pub fn settled(apps: &[App], want: i32) -> Result<(), String> {
    let behind: Vec<String> = apps
        .iter()
        .filter(|a| {
            let seen = a.observed_generation >= a.generation;
            let there = if want == 0 {
                a.replicas == 0
            } else {
                a.ready >= want
            };
            !(seen && there && a.desired == Some(want))
        })
        .map(|a| format!("{} ({} replicas, {} ready)", a.name, a.replicas, a.ready))
        .collect();
    if behind.is_empty() {
        Ok(())
    } else {
        Err(format!("waiting for {}", behind.join(", ")))
    }
}

/// The label selector of the applications of `topology` for `hook`.
pub fn selector(hook: &ScaleHook, topology: &str) -> String {
    let mut labels = hook.match_labels.clone();
    labels.insert(TOPOLOGY_LABEL.to_owned(), topology.to_owned());
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// What a scale hook needs on its member, in its namespace (and no more).
pub fn permissions(hook: &ScaleHook) -> Vec<Permission> {
    let (objects, scale) = match hook.kind {
        ScaleKind::Deployment => ("deployments", "deployments/scale"),
        ScaleKind::StatefulSet => ("statefulsets", "statefulsets/scale"),
    };
    let p = |verb, resource: &'static str, why| Permission {
        verb,
        group: "apps".into(),
        resource: resource.into(),
        namespace: Some(hook.namespace.clone()),
        name: None,
        why,
    };
    vec![
        p("list", objects, "a scale hook finds the applications"),
        p("patch", scale, "a scale hook scales them"),
    ]
}

/// Checked before anything moves: every hook's permissions on its member (the region switch's
/// and those the `selected` topologies declare), asked with SelfSubjectAccessReviews through the
/// member credential. Why the region switch must be refused, naming the hook's field, the member,
/// what is missing and the fix; `None` when all is granted (or cannot be checked yet: a member
/// without a client is left to the hook's timeout).
pub async fn refusal(
    members: &dyn Members,
    hub: &Client,
    rs: &RegionSwitch,
    selected: &[TopologyProgress],
) -> Option<String> {
    let mut all: Vec<(String, &Hook)> = Vec::new();
    for (phase, hooks) in [
        ("beforeDemotion", &rs.spec.moves.hooks.before_demotion),
        ("afterPromotion", &rs.spec.moves.hooks.after_promotion),
    ] {
        all.extend(
            hooks
                .iter()
                .enumerate()
                .map(|(i, h)| (format!("spec.hooks.{phase}[{i}] ({})", h.name), h)),
        );
    }
    for t in selected {
        all.extend(t.own_hooks());
    }
    for (field, hook) in all {
        if let Some(why) = hook.invalid() {
            return Some(format!("{field}: {why}"));
        }
        if let Some(webhook) = &hook.webhook {
            let namespace = rs.metadata.namespace.as_deref().unwrap_or_default();
            let secret = super::webhook::secret_value(
                hub,
                namespace,
                &webhook.secret_ref,
                super::webhook::DEFAULT_SECRET_KEY,
                "webhook.secretRef",
            )
            .await;
            if let Err(why) = secret {
                return Some(format!("{field}: {why}"));
            }
            continue;
        }
        let region = region_of(rs, hook.region());
        let Ok(client) = members.client(region) else {
            continue;
        };
        let (needed, namespace) = match (&hook.scale, &hook.patch, &hook.job) {
            (Some(scale), _, _) => (permissions(scale), &scale.namespace),
            (None, Some(patch), _) => match patch_permission(&client, patch).await {
                Ok(p) => (vec![p], &patch.namespace),
                Err(why) => return Some(format!("{field}: {why}")),
            },
            (None, None, Some(job)) => (super::job::permissions(job), &job.namespace),
            (None, None, None) => continue,
        };
        let missing = hub_permissions::missing(&client, &needed).await;
        if !missing.is_empty() {
            let what: Vec<String> = missing.iter().map(ToString::to_string).collect();
            return Some(format!(
                "{field}: the member credential for {region} may not {}; grant it with a \
                 Role in namespace {namespace} on {region} bound to the controller's member \
                 identity (docs/region-switch.md, \"Hooks\"), then edit the region switch to \
                 try again",
                what.join(", "),
            ));
        }
    }
    None
}

/// The member cluster a hook acts on.
pub fn region_of(rs: &RegionSwitch, region: HookRegion) -> &str {
    match region {
        HookRegion::From => &rs.spec.from,
        HookRegion::To => &rs.spec.to,
    }
}

/// The `patch` permission a patch hook needs, its resource found by discovery on the member.
async fn patch_permission(client: &Client, hook: &PatchHook) -> Result<Permission, String> {
    let (resource, _) = discover(client, hook).await?;
    Ok(Permission {
        verb: "patch",
        group: resource.group.clone().into(),
        resource: resource.plural.clone().into(),
        namespace: Some(hook.namespace.clone()),
        name: None,
        why: "a patch hook",
    })
}

async fn discover(
    client: &Client,
    hook: &PatchHook,
) -> Result<(kube::api::ApiResource, kube::discovery::ApiCapabilities), String> {
    let (group, version) = match hook.api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", hook.api_version.as_str()),
    };
    let gvk = GroupVersionKind::gvk(group, version, &hook.kind);
    pinned_kind(client, &gvk).await.map_err(|e| {
        format!(
            "patch.apiVersion/kind {} {}: the member does not serve it ({e}); check the spelling \
             or install its CRD there",
            hook.api_version, hook.kind
        )
    })
}

/// Runs `hook` once (idempotent: scaling to a count it has, patching what it patched, creating
/// the Job only if it does not exist; a webhook is called again) and looks how it stands: on the
/// member cluster `region` through the member credential, or (a webhook) from the hub with the
/// Secret of `call.namespace`. `uid` names the Job of a Job hook (with the call's topology,
/// phase and hook): the region switch's uid, or the switchover's operation id.
pub async fn perform(
    members: &dyn Members,
    hub: &Client,
    call: super::webhook::Call<'_>,
    uid: &str,
    hook: &Hook,
    region: &str,
) -> HookState {
    if let Some(webhook) = &hook.webhook {
        return super::webhook::run(hub.clone(), call, webhook).await;
    }
    let topology = call.topology;
    match members.client(region) {
        Ok(client) => match &hook.job {
            Some(job) => {
                let run = super::job::JobRun {
                    call,
                    uid,
                    timeout: hook
                        .timeout
                        .map_or(topology::plan::HOOK_TIMEOUT, |d| d.as_std()),
                };
                super::job::run(client, region, job, &run).await
            }
            None => run_hook(client, region, hook, topology).await,
        },
        // No credential for the region (yet): the hook waits, up to its timeout.
        Err(why) => HookState::Waiting(format!("no client for member cluster {region}: {why}")),
    }
}

/// Runs `hook` for `topology` on the member cluster `region` (its `client`).
pub async fn run_hook(client: Client, region: &str, hook: &Hook, topology: &str) -> HookState {
    match (&hook.scale, &hook.patch) {
        (Some(scale), _) => run(client, region, scale, topology).await,
        (None, Some(patch)) => run_patch(client, region, patch, topology).await,
        // Webhooks and Jobs need the region switch's context: `controller::run_hook`.
        (None, None) => {
            HookState::Failed("set exactly one of scale, patch, webhook and job".into())
        }
    }
}

/// Applies a patch hook; done once the member accepted the patch.
pub async fn run_patch(
    client: Client,
    region: &str,
    hook: &PatchHook,
    topology: &str,
) -> HookState {
    let (resource, _) = match discover(&client, hook).await {
        Ok(found) => found,
        Err(why) => return HookState::Failed(why),
    };
    let name = hook.name.replace("${topology}", topology);
    let api: Api<DynamicObject> = Api::namespaced_with(client, &hook.namespace, &resource);
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    match api
        .patch(&name, &params, &Patch::Merge(&hook.merge_patch))
        .await
    {
        Ok(_) => HookState::Done(format!(
            "patched {} {}/{name} on {region}",
            hook.kind, hook.namespace
        )),
        Err(kube::Error::Api(e)) if e.code == 403 => HookState::Failed(format!(
            "the member credential for {region} may not patch {} in namespace {}: grant it \
             (docs/region-switch.md, \"Hooks\")",
            resource.plural, hook.namespace
        )),
        Err(kube::Error::Api(e)) if e.code == 404 => HookState::Failed(format!(
            "{} {}/{name} does not exist on {region}; create it or fix patch.name",
            hook.kind, hook.namespace
        )),
        Err(e) => HookState::Waiting(format!("patching {} {name} on {region}: {e}", hook.kind)),
    }
}

/// Applies `hook` for `topology` on the member cluster `region` (its `client`), then looks.
pub async fn run(client: Client, region: &str, hook: &ScaleHook, topology: &str) -> HookState {
    let kind = match hook.kind {
        ScaleKind::Deployment => "deployments",
        ScaleKind::StatefulSet => "statefulsets",
    };
    let selector = selector(hook, topology);
    let forbidden = |verb: &str, resource: &str| {
        HookState::Failed(format!(
            "the member credential for {region} may not {verb} {resource} in namespace {}: \
             grant it (a Role in {} on {region} bound to the controller's member identity; \
             docs/region-switch.md, \"Permissions\")",
            hook.namespace, hook.namespace
        ))
    };
    let apps = match list(&client, hook, &selector).await {
        Ok(apps) => apps,
        Err(kube::Error::Api(e)) if e.code == 403 => return forbidden("list", kind),
        Err(e) => return HookState::Waiting(format!("listing {kind} on {region}: {e}")),
    };
    if apps.is_empty() {
        return HookState::Done(format!(
            "no {kind} in namespace {} on {region} match {selector}; nothing to scale",
            hook.namespace
        ));
    }
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    let patch = Patch::Merge(json!({"spec": {"replicas": hook.replicas}}));
    for app in apps.iter().filter(|a| a.desired != Some(hook.replicas)) {
        let patched = match hook.kind {
            ScaleKind::Deployment => {
                Api::<Deployment>::namespaced(client.clone(), &hook.namespace)
                    .patch_scale(&app.name, &params, &patch)
                    .await
            }
            ScaleKind::StatefulSet => {
                Api::<StatefulSet>::namespaced(client.clone(), &hook.namespace)
                    .patch_scale(&app.name, &params, &patch)
                    .await
            }
        };
        match patched {
            Ok(_) => tracing::info!(%region, app = %app.name, replicas = hook.replicas, "scaled"),
            Err(kube::Error::Api(e)) if e.code == 403 => {
                return forbidden("patch", &format!("{kind}/scale"));
            }
            Err(e) => return HookState::Waiting(format!("scaling {} on {region}: {e}", app.name)),
        }
    }
    // Look again after the patches: the counts the apiserver now holds.
    let apps = match list(&client, hook, &selector).await {
        Ok(apps) => apps,
        Err(e) => return HookState::Waiting(format!("listing {kind} on {region}: {e}")),
    };
    match settled(&apps, hook.replicas) {
        Ok(()) => HookState::Done(format!(
            "{} scaled to {} on {region}: {}",
            kind,
            hook.replicas,
            apps.iter()
                .map(|a| a.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Err(waiting) => HookState::Waiting(waiting),
    }
}

async fn list(client: &Client, hook: &ScaleHook, selector: &str) -> Result<Vec<App>, kube::Error> {
    let params = ListParams::default().labels(selector);
    Ok(match hook.kind {
        ScaleKind::Deployment => Api::<Deployment>::namespaced(client.clone(), &hook.namespace)
            .list(&params)
            .await?
            .items
            .into_iter()
            .map(|d| {
                let status = d.status.clone().unwrap_or_default();
                App {
                    name: d.name_any(),
                    generation: d.metadata.generation,
                    desired: d.spec.as_ref().and_then(|s| s.replicas),
                    observed_generation: status.observed_generation,
                    replicas: status.replicas.unwrap_or(0),
                    ready: status.ready_replicas.unwrap_or(0),
                }
            })
            .collect(),
        ScaleKind::StatefulSet => Api::<StatefulSet>::namespaced(client.clone(), &hook.namespace)
            .list(&params)
            .await?
            .items
            .into_iter()
            .map(|s| {
                let status = s.status.clone().unwrap_or_default();
                App {
                    name: s.name_any(),
                    generation: s.metadata.generation,
                    desired: s.spec.as_ref().and_then(|s| s.replicas),
                    observed_generation: status.observed_generation,
                    replicas: status.replicas,
                    ready: status.ready_replicas.unwrap_or(0),
                }
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(desired: i32, observed: i64, replicas: i32, ready: i32) -> App {
        App {
            name: "web".into(),
            generation: Some(2),
            desired: Some(desired),
            observed_generation: Some(observed),
            replicas,
            ready,
        }
    }

    #[test]
    fn scaled_down_means_no_replica_left_for_the_current_generation() {
        assert!(settled(&[app(0, 2, 0, 0)], 0).is_ok());
        // The controller has not seen the new count yet: its old status does not count.
        assert!(settled(&[app(0, 1, 0, 0)], 0).is_err());
        // A pod still terminating.
        assert!(settled(&[app(0, 2, 1, 0)], 0).is_err());
    }

    #[test]
    fn scaled_up_means_the_replicas_ready() {
        assert!(settled(&[app(3, 2, 3, 3)], 3).is_ok());
        let err = settled(&[app(3, 2, 3, 1)], 3).unwrap_err();
        assert!(err.contains("web (3 replicas, 1 ready)"), "{err}");
        // Someone else set another count: not what the hook wants.
        assert!(settled(&[app(2, 2, 2, 2)], 3).is_err());
    }

    #[test]
    fn the_selector_adds_the_topology_label() {
        let hook: ScaleHook = serde_json::from_value(json!({
            "region": "From", "namespace": "shop", "matchLabels": {"tier": "web"}, "replicas": 0
        }))
        .unwrap();
        assert_eq!(
            selector(&hook, "db1"),
            "federator.dev/topology=db1,tier=web"
        );
    }
}
