//! Status-only Clusters, for scale tests of the controller alone: a Cluster annotated
//! [`STATUS_ONLY`] gets the status of a healthy member in its role (primary or replica by its
//! spec, as CNPG decides it) and no PostgreSQL, so that hundreds of them fit on one lab machine.
//! Nothing else is emulated for them: no pods, no demotion, no token (a switchover of such a
//! topology would wait for a token forever). Never used by a test of switchover behaviour.

use std::collections::BTreeMap;

use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use serde_json::json;
use topology::cnpg::{Cluster, InstanceReportedState, Role, condition, phase};

use super::error::Result;
use super::pass::FIELD_MANAGER;
use super::status::{merge_diff, set_condition, set_operator_phase, text};
use super::steady::timestamp;

/// The annotation; its value is the database system identifier the status reports (the members
/// of one topology carry the same one, as physical replicas do).
pub const STATUS_ONLY: &str = "emulator.federator.dev/status-only";

/// The system identifier of a status-only Cluster, `None` for a real one.
pub fn system_id(cluster: &Cluster) -> Option<&str> {
    cluster
        .metadata
        .annotations
        .as_ref()?
        .get(STATUS_ONLY)
        .map(String::as_str)
}

/// Writes the healthy status of `cluster`'s role when it differs from what it shows.
pub async fn reconcile(
    cluster: &Cluster,
    client: &kube::Client,
    system_id: &str,
) -> Result<Action> {
    let namespace = cluster.metadata.namespace.as_deref().unwrap_or_default();
    let name = cluster.metadata.name.as_deref().unwrap_or_default();
    let old = cluster.status.clone().unwrap_or_default();
    let mut new = old.clone();
    let count = cluster.spec.instances.max(1);
    let names: Vec<String> = (1..=count).map(|i| format!("{name}-{i}")).collect();
    let primary = cluster.role() == Role::Primary;
    new.instances = Some(count);
    new.ready_instances = Some(count);
    new.instance_names = Some(names.clone());
    new.instances_status = Some(BTreeMap::from([("healthy".to_owned(), names.clone())]));
    new.instances_reported_state = Some(
        names
            .iter()
            .map(|n| {
                let state = InstanceReportedState {
                    is_primary: primary && *n == names[0],
                    timeline_id: Some(1),
                    ip: None,
                };
                (n.clone(), state)
            })
            .collect(),
    );
    new.current_primary.get_or_insert_with(|| names[0].clone());
    new.target_primary.get_or_insert_with(|| names[0].clone());
    if new.current_primary_timestamp.is_none() {
        new.current_primary_timestamp = Some(timestamp());
        new.target_primary_timestamp = new.current_primary_timestamp.clone();
    }
    new.timeline_id = primary.then_some(1);
    new.system_id = Some(system_id.to_owned());
    set_condition(
        &mut new.conditions,
        condition::CONSISTENT_SYSTEM_ID,
        true,
        text::UNIQUE,
        "A single, unique system ID was found across reporting instances.",
    );
    set_condition(
        &mut new.conditions,
        text::INITIALIZED,
        true,
        text::BOOTSTRAP_COMPLETED,
        "Cluster Is Ready",
    );
    set_operator_phase(&mut new, phase::HEALTHY, "");
    let old = serde_json::to_value(&old).expect("status serializes");
    let new = serde_json::to_value(&new).expect("status serializes");
    if let Some(diff) = merge_diff(&old, &new) {
        let api: Api<Cluster> = Api::namespaced(client.clone(), namespace);
        api.patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Merge(json!({ "status": diff })),
        )
        .await?;
    }
    // Nothing changes on its own: the next spec change (or a restart) brings it back.
    Ok(Action::await_change())
}
