//! Act: the one member patch of a reconcile. A JSON merge patch limited to `spec.replica`,
//! under field manager `federator` — never a full-object update, which could undo CNPG's own
//! fencing annotation mid-demotion (contract §6).

use std::time::Duration;

use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::Value;
use topology::api::Member;
use topology::cnpg::Cluster;
use topology::plan::Action;

use crate::controller::error::{Error, Result};
use crate::controller::observe::Members;

/// A member patch that takes longer than this is abandoned (and retried by the reconcile).
const PATCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends `action` to its member's Cluster (`dry_run`: server-side dry run only).
pub async fn send(
    pool: &dyn Members,
    members: &[Member],
    action: &Action,
    dry_run: bool,
) -> Result<()> {
    only_replica(&action.patch)
        .then_some(())
        .ok_or_else(|| Error::PatchOutsideReplica(action.member.clone()))?;
    let member = members
        .iter()
        .find(|m| m.name == action.member)
        .ok_or_else(|| Error::UnknownMember(action.member.clone()))?;
    let client = pool
        .client(&member.cluster)
        .map_err(|reason| Error::MemberClient {
            cluster: member.cluster.clone(),
            reason,
        })?;
    let api: Api<Cluster> = Api::namespaced(client, &member.namespace);
    let params = PatchParams {
        field_manager: Some("federator".into()),
        dry_run,
        ..PatchParams::default()
    };
    let name = member.cluster_name();
    let failed = |message: String| Error::PatchMember {
        cluster: member.cluster.clone(),
        namespace: member.namespace.clone(),
        name: name.to_owned(),
        message,
    };
    match tokio::time::timeout(
        PATCH_TIMEOUT,
        api.patch(name, &params, &Patch::Merge(&action.patch)),
    )
    .await
    {
        Err(_) => Err(failed(format!(
            "no answer within {}s",
            PATCH_TIMEOUT.as_secs()
        ))),
        // Redacted anyway: the text goes to status, Events and logs.
        Ok(Err(kube::Error::Api(status))) => Err(failed(pool.redact(
            &member.cluster,
            &format!("{} ({})", status.message, status.code),
        ))),
        Ok(Err(other)) => Err(failed(pool.redact(&member.cluster, &other.to_string()))),
        Ok(Ok(_)) => Ok(()),
    }
}

/// Sends every one of `trials` (the switchover's Demote and Bookkeeping patches, decided by
/// `decide`) to its member as a server-side dry run (`dryRun=All`), all at once: each on its own
/// member, so together they cost one round trip. Returns every refusal.
pub async fn dry_run(
    pool: &dyn Members,
    members: &[Member],
    trials: &[Action],
) -> std::result::Result<(), String> {
    let answers =
        futures::future::join_all(trials.iter().map(|trial| send(pool, members, trial, true)))
            .await;
    let refusals: Vec<String> = trials
        .iter()
        .zip(answers)
        .filter_map(|(trial, answer)| {
            answer
                .err()
                .map(|e| format!("{} on {}: {e}", trial.step, trial.member))
        })
        .collect();
    tracing::info!(
        patches = trials.len(),
        refused = refusals.len(),
        "server-side dry run of the switchover's patches"
    );
    if refusals.is_empty() {
        Ok(())
    } else {
        Err(refusals.join("; "))
    }
}

/// True when `patch` is `{"spec": {"replica": {...}}}` and nothing else.
fn only_replica(patch: &Value) -> bool {
    let single = |v: &Value, key: &str| {
        v.as_object()
            .is_some_and(|o| o.len() == 1 && o.contains_key(key))
    };
    single(patch, "spec")
        && single(&patch["spec"], "replica")
        && patch["spec"]["replica"].is_object()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_spec_replica_patches_pass() {
        assert!(only_replica(
            &json!({"spec": {"replica": {"primary": "b"}}})
        ));
        assert!(!only_replica(
            &json!({"spec": {"replica": {"primary": "b"}, "instances": 3}})
        ));
        assert!(!only_replica(
            &json!({"metadata": {}, "spec": {"replica": {}}})
        ));
        assert!(!only_replica(&json!({"spec": {"replica": null}})));
    }
}
