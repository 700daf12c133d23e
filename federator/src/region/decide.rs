//! Pure: what the region switch controller reads into the rules of `topology::region`, and what
//! it makes of their answer — the selection from the topologies of the namespace, each running
//! topology's observation from its status, the phase, the summary and the condition.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use topology::DistributedTopology;
use topology::region::{self, Choice, Observation, Phase, RegionSwitchRequest, TopologyView};
use topology::region_api::{
    PRIORITY_LABEL, RegionSwitch, RegionSwitchPhase, TopologyProgress, TopologyState,
};

use crate::drill::hub::{Progress as Switchover, progress, succeeded};

/// How long one topology's switchover may take when `spec.timeout` is not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// The condition a region switch carries.
pub const SUCCEEDED: &str = "Succeeded";

/// The region switches of the namespace that are not finished, by the topologies they still
/// hold: a topology they hold cannot be moved by another.
pub fn claims(switches: &[RegionSwitch], except: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for rs in switches.iter().filter(|rs| rs.name_any() != except) {
        let Some(status) = &rs.status else { continue };
        if matches!(
            status.phase,
            None | Some(RegionSwitchPhase::Refused)
                | Some(RegionSwitchPhase::Succeeded)
                | Some(RegionSwitchPhase::Failed)
        ) {
            continue;
        }
        for t in &status.topologies {
            if !t.entry(&rs.spec.moves.hooks).state.finished() || t.state == TopologyState::Held {
                out.insert(t.name.clone(), rs.name_any());
            }
        }
    }
    out
}

/// Selects the topologies `rs` moves (pure `region::select` over the namespace's topologies):
/// the initial `status.topologies`, or why the whole request is refused.
pub fn select(
    rs: &RegionSwitch,
    topologies: &[DistributedTopology],
    claimed: &BTreeMap<String, String>,
) -> Result<Vec<TopologyProgress>, region::SelectError> {
    let spec = &rs.spec;
    let req = RegionSwitchRequest {
        from: spec.from.clone(),
        to: spec.to.clone(),
        match_labels: spec.moves.match_labels.clone(),
        names: spec.topologies.iter().cloned().collect(),
        concurrency: spec.moves.concurrency,
    };
    let views: Vec<TopologyView> = topologies
        .iter()
        .map(|t| TopologyView {
            key: t.name_any(),
            labels: t.labels().clone(),
            priority: t
                .labels()
                .get(PRIORITY_LABEL)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            members: t
                .spec
                .members
                .iter()
                .map(|m| (m.name.clone(), m.cluster.clone()))
                .collect(),
            primary: t.spec.primary.clone(),
            claimed_by: claimed.get(&t.name_any()).cloned(),
        })
        .collect();
    let choices = region::select(&req, &views)?;
    Ok(choices
        .into_iter()
        .map(|c| {
            let primary = topologies
                .iter()
                .find(|t| t.name_any() == c.key())
                .map(|t| t.spec.primary.clone())
                .unwrap_or_default();
            match c {
                Choice::Move { key, member } => {
                    let own = topologies
                        .iter()
                        .find(|t| t.name_any() == key)
                        .map(|t| t.spec.hooks.clone())
                        .unwrap_or_default();
                    let mut moving =
                        TopologyProgress::new(key, primary, member, TopologyState::Pending);
                    moving.topology_hooks = own;
                    moving
                }
                Choice::Skip { key, reason } => {
                    let mut skipped =
                        TopologyProgress::new(key, primary, String::new(), TopologyState::Skipped);
                    skipped.message = Some(reason);
                    skipped
                }
            }
        })
        .collect())
}

/// What one topology that was asked to switch over shows now.
#[derive(Clone, Debug, PartialEq)]
pub enum Seen {
    /// Nothing new (running, or not started and still within the timeout).
    Nothing,
    /// News for the pure rules; with the operation id when one ended.
    News(Observation, Option<String>),
    /// Not started within the timeout: take `spec.primary` back (only while the topology is at
    /// this `resourceVersion`), then report the failure.
    TakeBack {
        resource_version: Option<String>,
        why: String,
    },
}

/// The observation of `entry` (state `Switching` or `Held`, its generation recorded) from its
/// topology as the hub has it now.
pub fn observe(
    entry: &TopologyProgress,
    topology: Option<&DistributedTopology>,
    now: Timestamp,
    timeout: Duration,
) -> Seen {
    let Some(generation) = entry.generation else {
        return Seen::Nothing;
    };
    let Some(topo) = topology else {
        return Seen::News(
            Observation::SwitchoverEnded("the DistributedTopology was deleted".into()),
            None,
        );
    };
    match progress(topo, generation, &entry.from, &entry.to) {
        Switchover::Ended(op) if succeeded(&op) => {
            Seen::News(Observation::SwitchoverSucceeded, Some(op.id.clone()))
        }
        Switchover::Ended(op) => Seen::News(
            Observation::SwitchoverEnded(format!(
                "operation {} ended {}",
                op.id,
                op.outcome
                    .map(|o| format!("{o:?}"))
                    .unwrap_or_else(|| "without an outcome".into())
            )),
            Some(op.id.clone()),
        ),
        Switchover::Held {
            step,
            reason,
            message,
        } => Seen::News(
            Observation::SwitchoverHeld(format!("holds at {step} ({reason}): {message}")),
            None,
        ),
        Switchover::Running { .. } => Seen::Nothing,
        Switchover::NotStarted => {
            let asked = entry.requested_at.as_ref().map(|t| t.0).unwrap_or(now);
            if now.duration_since(asked).unsigned_abs() < timeout {
                return Seen::Nothing;
            }
            Seen::TakeBack {
                resource_version: topo.metadata.resource_version.clone(),
                why: format!(
                    "the controller did not start the switchover {} → {} within {}s (is \
                     `federator controller` running and leading? see `federator status {}`); \
                     spec.primary was set back to {}",
                    entry.from,
                    entry.to,
                    timeout.as_secs(),
                    entry.name,
                    entry.from
                ),
            }
        }
    }
}

/// The CRD's phase for the pure rules' phase and entries.
pub fn phase(pure: Phase, topologies: &[TopologyProgress]) -> RegionSwitchPhase {
    match pure {
        Phase::Running => RegionSwitchPhase::Running,
        Phase::Paused => RegionSwitchPhase::Paused,
        Phase::Stopped => RegionSwitchPhase::Holding,
        Phase::Done => {
            if topologies.iter().any(|t| t.state == TopologyState::Held) {
                RegionSwitchPhase::Holding
            } else if topologies
                .iter()
                .all(|t| matches!(t.state, TopologyState::Moved | TopologyState::Skipped))
            {
                RegionSwitchPhase::Succeeded
            } else {
                RegionSwitchPhase::Failed
            }
        }
    }
}

/// `moved/selected`: skipped topologies are not counted.
pub fn summary(topologies: &[TopologyProgress]) -> String {
    let selected = topologies
        .iter()
        .filter(|t| t.state != TopologyState::Skipped)
        .count();
    let moved = topologies
        .iter()
        .filter(|t| t.state == TopologyState::Moved)
        .count();
    format!("{moved}/{selected}")
}

/// The `Succeeded` condition for a phase.
pub fn condition(
    phase: RegionSwitchPhase,
    topologies: &[TopologyProgress],
    message: Option<&str>,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let first = |state: TopologyState| {
        topologies
            .iter()
            .find(|t| t.state == state)
            .map(|t| format!("{}: {}", t.name, t.message.as_deref().unwrap_or("")))
    };
    let (status, reason, message) = match phase {
        RegionSwitchPhase::Running => ("Unknown", "Running", summary(topologies) + " moved"),
        RegionSwitchPhase::Paused => ("Unknown", "Paused", "spec.paused is true".into()),
        RegionSwitchPhase::Holding => (
            "Unknown",
            "SwitchoverHeld",
            first(TopologyState::Held).unwrap_or_default(),
        ),
        RegionSwitchPhase::Succeeded => ("True", "Moved", summary(topologies) + " moved"),
        RegionSwitchPhase::Failed => (
            "False",
            "TopologyNotMoved",
            first(TopologyState::Failed)
                .or_else(|| first(TopologyState::Aborted).map(|m| format!("aborted ({m})")))
                .unwrap_or_default(),
        ),
        RegionSwitchPhase::Refused => ("False", "Refused", message.unwrap_or_default().to_owned()),
    };
    Condition {
        type_: SUCCEEDED.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: Time(now),
    }
}

/// The time a topology's state changed, for `finishedAt`.
pub fn stamp(now: Timestamp) -> MicroTime {
    MicroTime(now)
}

#[cfg(test)]
mod tests;
