//! A region switch's Job hook: one Job on a member cluster per region switch, topology and hook,
//! created through the member credential and awaited. Its name carries a hash of the three, so a
//! round after a crash (or after a status write that lost a race) finds the Job it created
//! instead of starting a second one.

use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::EnvVar;
use kube::api::PostParams;
use kube::{Api, Client};
use topology::region_api::{FIELD_MANAGER, JobHook, TOPOLOGY_LABEL};

use super::hooks::HookState;
use super::webhook::Call;
use crate::hub_permissions::Permission;

/// Label on a hook's Job: the region switch that created it.
pub const REGION_SWITCH_LABEL: &str = "federator.dev/region-switch";
/// Label on a hook's Job: the hook (its name, as a label value).
pub const HOOK_LABEL: &str = "federator.dev/hook";

/// What a Job hook runs for: its Job's identity and environment.
pub struct JobRun<'a> {
    /// The region switch, topology, hook and phase (as a webhook's call names them).
    pub call: Call<'a>,
    /// The region switch's uid: a region switch deleted and created again under the same name
    /// runs new Jobs.
    pub uid: &'a str,
    /// The hook's timeout: the Job's `activeDeadlineSeconds` when its template sets none.
    pub timeout: Duration,
}

/// `s` as a DNS label part: lower case, `[a-z0-9-]`, at most `max` characters, no `-` at the ends.
fn label_part(s: &str, max: usize) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() { c } else { '-' }
        })
        .take(max)
        .collect();
    cleaned.trim_matches('-').to_owned()
}

/// Pure: the Job's name, `<topology>-<hook>-<10 hex>` (≤ 63 characters, a valid label value as
/// the Job controller's `job-name` pod label needs); the hex is the start of the SHA-256 of the
/// region switch's uid, the topology, the phase and the hook.
pub fn job_name(run: &JobRun) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!(
            "{}/{}/{}/{}",
            run.uid, run.call.topology, run.call.phase, run.call.hook
        )
        .as_bytes(),
    );
    let hex: String = digest.as_ref()[..5]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let parts: Vec<String> = [
        label_part(run.call.topology, 25),
        label_part(run.call.hook, 25),
    ]
    .into_iter()
    .filter(|p| !p.is_empty())
    .collect();
    if parts.is_empty() {
        format!("hook-{hex}")
    } else {
        format!("{}-{hex}", parts.join("-"))
    }
}

/// Pure: the Job a hook creates, from its template: the environment in every container, the
/// labels, and the hook's timeout as `activeDeadlineSeconds` unless the template sets one.
pub fn job(hook: &JobHook, run: &JobRun) -> Result<Job, String> {
    let mut spec: JobSpec = serde_json::from_value(hook.template.clone())
        .map_err(|e| format!("job.template is not a batch/v1 Job spec: {e}"))?;
    spec.active_deadline_seconds
        .get_or_insert(run.timeout.as_secs().max(1) as i64);
    let env = [
        ("FEDERATOR_TOPOLOGY", run.call.topology),
        ("FEDERATOR_REGION_SWITCH", run.call.region_switch),
        ("FEDERATOR_HOOK", run.call.hook),
        ("FEDERATOR_PHASE", run.call.phase),
        ("FEDERATOR_FROM", run.call.from),
        ("FEDERATOR_TO", run.call.to),
    ];
    if let Some(pod) = spec.template.spec.as_mut() {
        for c in &mut pod.containers {
            let vars = c.env.get_or_insert_with(Vec::new);
            vars.retain(|v| !env.iter().any(|(name, _)| v.name == *name));
            vars.extend(env.iter().map(|(name, value)| EnvVar {
                name: (*name).into(),
                value: Some((*value).into()),
                value_from: None,
            }));
        }
    }
    let labels = [
        (TOPOLOGY_LABEL.to_owned(), label_part(run.call.topology, 63)),
        (
            REGION_SWITCH_LABEL.to_owned(),
            label_part(run.call.region_switch, 63),
        ),
        (HOOK_LABEL.to_owned(), label_part(run.call.hook, 63)),
    ]
    .into_iter()
    .collect();
    let mut job = Job {
        spec: Some(spec),
        ..Job::default()
    };
    job.metadata.name = Some(job_name(run));
    job.metadata.namespace = Some(hook.namespace.clone());
    job.metadata.labels = Some(labels);
    Ok(job)
}

/// Pure: where a Job stands, from its status.
pub fn state(job: &Job, region: &str) -> HookState {
    let name = format!(
        "Job {}/{}",
        job.metadata.namespace.as_deref().unwrap_or_default(),
        job.metadata.name.as_deref().unwrap_or_default()
    );
    let status = job.status.clone().unwrap_or_default();
    let condition = |kind: &str| {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == kind && c.status == "True")
            .cloned()
    };
    let counts = format!(
        "{} active, {} succeeded, {} failed",
        status.active.unwrap_or(0),
        status.succeeded.unwrap_or(0),
        status.failed.unwrap_or(0)
    );
    if condition("Complete").is_some() {
        return HookState::Done(format!("{name} on {region} complete ({counts})"));
    }
    if let Some(c) = condition("Failed") {
        return HookState::Failed(format!(
            "{name} on {region} failed: {}: {} ({counts})",
            c.reason.unwrap_or_default(),
            c.message.unwrap_or_default()
        ));
    }
    HookState::Waiting(format!("{name} on {region}: {counts}"))
}

/// What a Job hook needs on its member, in its namespace (and no more).
pub fn permissions(hook: &JobHook) -> Vec<Permission> {
    let p = |verb, why| Permission {
        verb,
        group: "batch".into(),
        resource: "jobs".into(),
        namespace: Some(hook.namespace.clone()),
        name: None,
        why,
    };
    vec![
        p("create", "a job hook creates its Job"),
        p("get", "a job hook waits for its Job"),
    ]
}

/// Creates the hook's Job on the member cluster `region` unless it exists, then looks at it.
pub async fn run(client: Client, region: &str, hook: &JobHook, run: &JobRun<'_>) -> HookState {
    let api: Api<Job> = Api::namespaced(client, &hook.namespace);
    let name = job_name(run);
    let forbidden = |verb: &str| {
        HookState::Failed(format!(
            "the member credential for {region} may not {verb} jobs (batch) in namespace {}: \
             grant it (a Role in {} on {region} bound to the controller's member identity; \
             docs/region-switch.md, \"Permissions\")",
            hook.namespace, hook.namespace
        ))
    };
    let found = match api.get_opt(&name).await {
        Ok(found) => found,
        Err(kube::Error::Api(e)) if e.code == 403 => return forbidden("get"),
        Err(e) => return HookState::Waiting(format!("reading Job {name} on {region}: {e}")),
    };
    let job = match found {
        Some(job) => job,
        None => {
            let new = match job(hook, run) {
                Ok(j) => j,
                Err(why) => return HookState::Failed(why),
            };
            let params = PostParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..PostParams::default()
            };
            match api.create(&params, &new).await {
                Ok(created) => {
                    tracing::info!(%region, job = %name, topology = %run.call.topology, hook = %run.call.hook, "job hook created its Job");
                    created
                }
                // Created by a round racing this one: look at it next round.
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    return HookState::Waiting(format!("Job {name} on {region}: just created"));
                }
                Err(kube::Error::Api(e)) if e.code == 403 => return forbidden("create"),
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 422 => {
                    return HookState::Failed(format!(
                        "creating Job {}/{name} on {region}: {}; fix job.template or \
                         job.namespace",
                        hook.namespace, e.message
                    ));
                }
                Err(e) => {
                    return HookState::Waiting(format!("creating Job {name} on {region}: {e}"));
                }
            }
        }
    };
    state(&job, region)
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use topology::region_api::HookRegion;

    use super::*;

    fn run<'a>(uid: &'a str, topology: &'a str, hook: &'a str) -> JobRun<'a> {
        JobRun {
            call: Call {
                region_switch: "move-west",
                namespace: "databases",
                topology,
                hook,
                phase: "beforeDemotion",
                from: "eu-central",
                to: "eu-western",
            },
            uid,
            timeout: Duration::from_secs(120),
        }
    }

    fn hook(template: serde_json::Value) -> JobHook {
        JobHook {
            region: HookRegion::From,
            namespace: "shop".into(),
            template,
        }
    }

    #[test]
    fn the_name_is_stable_per_switch_topology_and_hook_and_a_valid_label() {
        let a = job_name(&run("u1", "db1", "Drain Queue"));
        assert_eq!(a, job_name(&run("u1", "db1", "Drain Queue")));
        assert!(a.starts_with("db1-drain-queue-"), "{a}");
        assert_ne!(a, job_name(&run("u2", "db1", "Drain Queue")));
        assert_ne!(a, job_name(&run("u1", "db2", "Drain Queue")));
        let long = job_name(&run("u1", &"t".repeat(63), &"h".repeat(63)));
        assert!(long.len() <= 63, "{long}");
        assert!(
            long.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
    }

    #[test]
    fn the_job_carries_the_environment_labels_and_the_hooks_deadline() {
        let h = hook(json!({"template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "c", "image": "busybox",
                            "env": [{"name": "FEDERATOR_TOPOLOGY", "value": "stale"}, {"name": "X", "value": "1"}]}]}}}));
        let j = job(&h, &run("u1", "db1", "drain")).unwrap();
        let spec = j.spec.unwrap();
        assert_eq!(spec.active_deadline_seconds, Some(120));
        let env = spec.template.spec.unwrap().containers[0]
            .env
            .clone()
            .unwrap();
        let get = |n: &str| {
            env.iter()
                .filter(|v| v.name == n)
                .map(|v| v.value.clone().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(get("FEDERATOR_TOPOLOGY"), ["db1"]);
        assert_eq!(get("FEDERATOR_PHASE"), ["beforeDemotion"]);
        assert_eq!(get("X"), ["1"]);
        assert_eq!(j.metadata.labels.unwrap()[TOPOLOGY_LABEL], "db1");
        // A template's own deadline wins.
        let h =
            hook(json!({"activeDeadlineSeconds": 30, "template": {"spec": {"containers": []}}}));
        assert_eq!(
            job(&h, &run("u1", "db1", "drain"))
                .unwrap()
                .spec
                .unwrap()
                .active_deadline_seconds,
            Some(30)
        );
    }

    #[test]
    fn complete_is_done_failed_fails_with_the_reason_anything_else_waits() {
        let with = |status: serde_json::Value| -> Job {
            serde_json::from_value(json!({"metadata": {"name": "j", "namespace": "shop"},
                                          "status": status}))
            .unwrap()
        };
        assert!(matches!(
            state(
                &with(
                    json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]})
                ),
                "w"
            ),
            HookState::Done(_)
        ));
        match state(
            &with(
                json!({"failed": 2, "conditions": [{"type": "Failed", "status": "True",
                "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}),
            ),
            "w",
        ) {
            HookState::Failed(why) => {
                assert!(
                    why.contains("BackoffLimitExceeded") && why.contains("2 failed"),
                    "{why}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            state(&with(json!({"active": 1})), "w"),
            HookState::Waiting(_)
        ));
    }
}
