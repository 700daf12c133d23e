//! Region rotations in `federator controller`: a kube-runtime `Controller` on `RegionRotation`,
//! woken by changes of the rotations, of the region switches they created, by the times the
//! schedule asks for, and by gaining the Lease. Only the leader acts.
//!
//! The schedule is evaluated by the same pure evaluator and bookkeeping as a topology's
//! `spec.rotation` (`policies::rotation`, `controller::schedule_step`), with regions in place of
//! members and the active region (where most selected primaries are) in place of the primary. A
//! due rotation is recorded as handled in the status **before** the RegionSwitch is created (its
//! name is derived from the scheduled time, so a restarted controller that finds it created does
//! not create another): a scheduled time is never acted on twice.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use kube::api::{ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::Recorder;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use policies::rotation::{MemberFacts, RotationDecision, RotationFacts};
use topology::DistributedTopology;
use topology::region_api::{
    FIELD_MANAGER, RegionRotation, RegionRotationStatus, RegionSwitch, RegionSwitchPhase,
    RegionSwitchSpec,
};

use super::{RegionError, kube_err, recorder, scoped};
use crate::controller::{Clock, Leadership, publish_best_effort, schedule_step, whole_second};

/// The label on a RegionSwitch a rotation created: the rotation's name.
pub const ROTATION_LABEL: &str = "federator.dev/region-rotation";
/// Look again at least this often (a clock step, topologies that moved by hand).
const RECHECK: Duration = Duration::from_secs(60);
/// The condition a region rotation carries.
pub const VALID: &str = "Valid";

struct Ctx {
    client: Client,
    leader: Leadership,
    clock: Arc<dyn Clock>,
    recorder: Recorder,
}

/// Runs the region rotation controller on `namespace` (all: `None`) until `shutdown` resolves.
pub async fn run(
    client: Client,
    namespace: Option<String>,
    leader: Leadership,
    identity: String,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let rotations: Api<RegionRotation> = scoped(&client, namespace.as_deref());
    let switches: Api<RegionSwitch> = scoped(&client, namespace.as_deref());
    let recorder = recorder(&client, identity);
    let ctx = Arc::new(Ctx {
        client,
        leader: leader.clone(),
        clock,
        recorder,
    });
    // A region switch it created wakes the rotation (it ended: the next decision may differ).
    let mapper = |rs: RegionSwitch| {
        let name = rs.labels().get(ROTATION_LABEL)?.clone();
        Some(ObjectRef::<RegionRotation>::new(&name).within(&rs.namespace()?))
    };
    let controller = Controller::new(rotations, watcher::Config::default()).watches(
        switches,
        watcher::Config::default().labels(ROTATION_LABEL),
        mapper,
    );
    super::serve(
        controller,
        &leader,
        shutdown,
        reconcile,
        ctx,
        "region rotation",
    )
    .await;
}

/// Pure: the region most of `topologies`' primaries are in (ties: the first in `regions`), among
/// the topologies carrying `labels`.
pub fn active_region(
    topologies: &[DistributedTopology],
    labels: &BTreeMap<String, String>,
    regions: &[String],
) -> Option<String> {
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for t in topologies
        .iter()
        .filter(|t| labels.iter().all(|(k, v)| t.labels().get(k) == Some(v)))
    {
        if let Some(m) = t.spec.members.iter().find(|m| m.name == t.spec.primary) {
            *count.entry(m.cluster.as_str()).or_default() += 1;
        }
    }
    let best = count.values().copied().max()?;
    regions
        .iter()
        .find(|r| count.get(r.as_str()) == Some(&best))
        .cloned()
        .or_else(|| {
            count
                .iter()
                .find(|(_, n)| **n == best)
                .map(|(r, _)| (*r).to_owned())
        })
}

/// Pure: the problems of the spec, each naming its field and fix.
pub fn problems(rr: &RegionRotation) -> Vec<String> {
    let mut out = Vec::new();
    let regions = &rr.spec.regions;
    let distinct: std::collections::BTreeSet<&String> = regions.iter().collect();
    if distinct.len() < 2 {
        out.push(
            "spec.regions: name at least two different regions (member clusters) to rotate between"
                .to_owned(),
        );
    }
    if distinct.len() != regions.len() {
        out.push("spec.regions: a region is listed twice; list each once, in ring order".into());
    }
    let names: Vec<&str> = regions.iter().map(String::as_str).collect();
    if let Err(errors) = rr.spec.rotation.validate(&names) {
        out.extend(errors.0.iter().map(|e| format!("spec.rotation: {e}")));
    }
    out
}

fn condition(ok: bool, reason: &str, message: String, generation: Option<i64>) -> Condition {
    Condition {
        type_: VALID.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: Time(k8s_openapi::jiff::Timestamp::now()),
    }
}

#[tracing::instrument(skip_all, fields(region_rotation = %object.name_any(), namespace = ?object.namespace()))]
async fn reconcile(object: Arc<RegionRotation>, ctx: Arc<Ctx>) -> Result<Action, RegionError> {
    if !ctx.leader.is_leader() {
        return Ok(Action::await_change());
    }
    let namespace = object.namespace().unwrap_or_default();
    let name = object.name_any();
    let rotations: Api<RegionRotation> = Api::namespaced(ctx.client.clone(), &namespace);
    let switches: Api<RegionSwitch> = Api::namespaced(ctx.client.clone(), &namespace);
    let topologies: Api<DistributedTopology> = Api::namespaced(ctx.client.clone(), &namespace);
    let Some(rr) = rotations
        .get_opt(&name)
        .await
        .map_err(kube_err(format!("reading region rotation {name}")))?
    else {
        return Ok(Action::await_change());
    };
    let mut status = rr.status.clone().unwrap_or_default();
    let before = status.clone();
    status.observed_generation = rr.metadata.generation;

    let problems = problems(&rr);
    if !problems.is_empty() {
        let message = problems.join("\n");
        set_condition(
            &mut status,
            condition(false, "Invalid", message.clone(), rr.metadata.generation),
        );
        if status != before {
            save(&rotations, &rr, status).await?;
            publish_best_effort(&ctx.recorder, &rr, "Rotate", true, "Invalid", &message).await;
        }
        return Ok(Action::await_change());
    }
    let all = topologies
        .list(&ListParams::default())
        .await
        .map_err(kube_err(
            "listing the DistributedTopologies of the namespace",
        ))?
        .items;
    let Some(active) = active_region(&all, &rr.spec.template.match_labels, &rr.spec.regions) else {
        let message = "no DistributedTopology of the namespace matches spec.template.matchLabels; \
                       nothing to rotate"
            .to_owned();
        set_condition(
            &mut status,
            condition(false, "NoTopology", message, rr.metadata.generation),
        );
        if status != before {
            save(&rotations, &rr, status).await?;
        }
        return Ok(Action::requeue(RECHECK));
    };
    status.active_region = Some(active.clone());
    if !rr.spec.regions.contains(&active) {
        let message = format!(
            "the selected primaries are mostly in {active}, which spec.regions does not list; add \
             it to spec.regions or move them first (federator region switch)"
        );
        set_condition(
            &mut status,
            condition(
                false,
                "ActiveRegionNotListed",
                message,
                rr.metadata.generation,
            ),
        );
        if status != before {
            save(&rotations, &rr, status).await?;
        }
        return Ok(Action::requeue(RECHECK));
    }
    set_condition(
        &mut status,
        condition(
            true,
            "Valid",
            format!("active region {active}"),
            rr.metadata.generation,
        ),
    );

    let owned = switches
        .list(&ListParams::default().labels(&format!("{ROTATION_LABEL}={name}")))
        .await
        .map_err(kube_err("listing the region switches of the rotation"))?
        .items;
    let running = owned.iter().any(|s| {
        !matches!(
            s.status.as_ref().and_then(|st| st.phase),
            Some(
                RegionSwitchPhase::Succeeded
                    | RegionSwitchPhase::Failed
                    | RegionSwitchPhase::Refused
            )
        )
    });
    let facts = RotationFacts {
        members: rr
            .spec
            .regions
            .iter()
            .map(|r| {
                (
                    r.clone(),
                    MemberFacts {
                        ready: true,
                        replay_lag: None,
                        replay_lag_bytes: None,
                    },
                )
            })
            .collect(),
        operation_in_progress: running,
        last_failure: None,
        replay_lag_unobservable: true,
        topology_invalid: None,
    };
    let validated = rr
        .spec
        .rotation
        .validate(
            &rr.spec
                .regions
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )
        .expect("validated above");
    let order: Vec<&str> = rr.spec.regions.iter().map(String::as_str).collect();
    let now = whole_second(ctx.clock.now());
    let mut step = schedule_step(
        &rr.spec.rotation,
        &validated,
        status.rotation.take(),
        &active,
        &order,
        &facts,
        now,
    );
    let mut create = None;
    if let RotationDecision::Rotate {
        target,
        scheduled_for,
    } = &step.decision
    {
        let switch = format!("{name}-{}", scheduled_for.as_second());
        let message = format!(
            "rotation scheduled for {scheduled_for}: region switch {switch} moves the primaries in \
             {active} to {target}"
        );
        step.decided.message = message.clone();
        if let Some(last) = step.record.last_decision.as_mut() {
            last.message = message;
        }
        status.last_switch = Some(switch.clone());
        create = Some((switch, target.clone()));
    }
    status.rotation = Some(step.record);
    // Recorded as handled first: a scheduled time is never acted on twice.
    let written = if status != before {
        save(&rotations, &rr, status).await?
    } else {
        rr.clone()
    };
    match &step.decision {
        RotationDecision::Skip { .. } => {
            publish_best_effort(
                &ctx.recorder,
                &written,
                "Rotate",
                true,
                "RotationSkipped",
                &step.decided.message,
            )
            .await
        }
        RotationDecision::Hold { .. } if step.changed => {
            publish_best_effort(
                &ctx.recorder,
                &written,
                "Rotate",
                true,
                "RotationHeld",
                &step.decided.message,
            )
            .await
        }
        _ => {}
    }
    if let Some((switch, target)) = create {
        let mut rs = RegionSwitch::new(
            &switch,
            RegionSwitchSpec {
                from: active.clone(),
                to: target,
                paused: false,
                abort: false,
                topologies: vec![],
                moves: rr.spec.template.clone(),
            },
        );
        rs.metadata.namespace = Some(namespace.clone());
        rs.metadata.labels = Some([(ROTATION_LABEL.to_owned(), name.clone())].into());
        rs.metadata.owner_references = Some(vec![owner(&rr)]);
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PostParams::default()
        };
        match switches.create(&params, &rs).await {
            Ok(_) => {}
            // A previous process created it and stopped before it could say so.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(kube_err(format!("creating region switch {switch}"))(e)),
        }
        tracing::info!(%switch, "region rotation started a region switch");
        publish_best_effort(
            &ctx.recorder,
            &written,
            "Rotate",
            false,
            "RotationStarted",
            &step.decided.message,
        )
        .await;
    }
    let wait = step.requeue_after.unwrap_or(RECHECK).min(RECHECK);
    Ok(Action::requeue(wait))
}

fn owner(rr: &RegionRotation) -> OwnerReference {
    OwnerReference {
        api_version: RegionRotation::api_version(&()).into_owned(),
        kind: RegionRotation::kind(&()).into_owned(),
        name: rr.name_any(),
        uid: rr.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: None,
    }
}

fn set_condition(status: &mut RegionRotationStatus, next: Condition) {
    topology::conditions::set(&mut status.conditions, next);
}

async fn save(
    api: &Api<RegionRotation>,
    rr: &RegionRotation,
    status: RegionRotationStatus,
) -> Result<RegionRotation, RegionError> {
    let name = rr.name_any();
    let mut next = rr.clone();
    next.status = Some(status);
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    match api.replace_status(&name, &params, &next).await {
        Ok(written) => Ok(written),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            Err(RegionError::Conflict(format!("region rotation {name}")))
        }
        Err(e) => Err(kube_err(format!(
            "writing the status of region rotation {name}"
        ))(e)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn topo(name: &str, primary_region: &str, labels: serde_json::Value) -> DistributedTopology {
        let other = if primary_region == "a" { "b" } else { "a" };
        serde_json::from_value(json!({
            "apiVersion": "federator.dev/v1alpha1", "kind": "DistributedTopology",
            "metadata": {"name": name, "namespace": "ns", "labels": labels},
            "spec": {"members": [
                {"name": format!("{name}-{primary_region}"), "cluster": primary_region, "namespace": "ns"},
                {"name": format!("{name}-{other}"), "cluster": other, "namespace": "ns"}],
                "shape": {"star": {}}, "primary": format!("{name}-{primary_region}")}
        }))
        .unwrap()
    }

    #[test]
    fn the_active_region_is_where_most_selected_primaries_are() {
        let regions = vec!["a".to_owned(), "b".to_owned()];
        let all = [
            topo("x", "b", json!({"team": "pay"})),
            topo("y", "b", json!({"team": "pay"})),
            topo("z", "a", json!({"team": "pay"})),
            topo("w", "a", json!({})),
        ];
        let pay: BTreeMap<String, String> = [("team".to_owned(), "pay".to_owned())].into();
        assert_eq!(active_region(&all, &pay, &regions).as_deref(), Some("b"));
        // A tie goes to the first region of the ring.
        assert_eq!(
            active_region(&all, &BTreeMap::new(), &regions).as_deref(),
            Some("a")
        );
        let nobody: BTreeMap<String, String> = [("team".to_owned(), "x".to_owned())].into();
        assert_eq!(active_region(&all, &nobody, &regions), None);
    }

    #[test]
    fn a_bad_spec_names_each_field_and_the_fix() {
        let rr: RegionRotation = serde_json::from_value(json!({
            "apiVersion": "federator.dev/v1alpha1", "kind": "RegionRotation",
            "metadata": {"name": "r", "namespace": "ns"},
            "spec": {"regions": ["a", "a"], "rotation": {"schedule": "0 3 1 * *", "timeZone": "Europe/Nowhere"}}
        }))
        .unwrap();
        let p = problems(&rr);
        assert!(
            p.iter()
                .any(|m| m.contains("at least two different regions")),
            "{p:?}"
        );
        assert!(p.iter().any(|m| m.contains("listed twice")), "{p:?}");
        assert!(
            p.iter()
                .any(|m| m.starts_with("spec.rotation:") && m.contains("Europe/Nowhere")),
            "{p:?}"
        );
    }
}
