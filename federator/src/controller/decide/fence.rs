//! Fencing a former primary after a failover. While its member cannot be read nobody can patch
//! its Cluster, which still says it is primary; the moment it can be read again, before anything
//! else, it gets ONE `spec.replica` merge patch naming the current primary (and its source where
//! the shape re-roots, `promotionToken: null` as for a demotion). By CNPG's role rule it is then
//! a replica: CNPG fences and shuts down a running primary instance (contract §5.1) and starts a
//! stopped one as a designated primary in recovery, never writable. It may hold writes past the
//! fork of the new timeline, which PostgreSQL cannot follow and CNPG cannot rewind (§5.3), so it
//! stays listed in `status.fencedMembers` with `needsReclone` until its Cluster is deleted (the
//! first step of a re-clone).
//!
//! Why not CNPG's `cnpg.io/fencedInstances` annotation: CNPG's own demotion removes it at its
//! clean-up (§5.1 step 5), and patching metadata would widen Federator's `spec.replica`-only
//! patches; the role rule alone already keeps the instance out of the primary role.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use topology::api::FencedMember;
use topology::cnpg::Role;
use topology::plan::{Action, patch};
use topology::{DistributedTopologyStatus, StepKind, Topology};

use super::note::Note;
use crate::controller::observe::Observation;

/// Adds `name` to the fenced members (once per failover operation).
pub fn remember(
    status: &mut DistributedTopologyStatus,
    name: &str,
    failover: &str,
    new_primary: &str,
) {
    status.fenced_members.retain(|f| f.name != name);
    status.fenced_members.push(FencedMember {
        name: name.to_owned(),
        failover: failover.to_owned(),
        new_primary: new_primary.to_owned(),
        fenced_at: None,
        needs_reclone: true,
    });
}

/// What fencing needs this reconcile: the patch for the first readable former primary whose
/// spec does not yet name the current primary, Events for fences seen applied and for Clusters
/// deleted (re-clone started). Entries whose member cannot be read wait.
pub fn reconcile(
    status: &mut DistributedTopologyStatus,
    topology: &Topology,
    observation: &Observation,
    now: Timestamp,
    notes: &mut Vec<Note>,
) -> Option<Action> {
    let observed = &observation.observed;
    let deleted = |name: &str| {
        observation
            .members
            .iter()
            .any(|m| m.name == name && m.reachable)
            && observed.get(name).is_none()
    };
    status.fenced_members.retain(|f| {
        if !deleted(&f.name) {
            return true;
        }
        notes.push(Note {
            warning: false,
            reason: "RecloneStarted".into(),
            action: "Unfence",
            message: format!(
                "{}'s Cluster was deleted: re-create it as a replica of {} (bootstrap pg_basebackup or recovery from it); it is no longer listed as fenced",
                f.name, f.new_primary
            ),
        });
        false
    });
    let mut action = None;
    for fenced in &mut status.fenced_members {
        let Some(member) = observed.get(&fenced.name).filter(|m| m.reachable) else {
            continue;
        };
        // The primary now (a switchover may have moved it while this member was away); with
        // none readable, only a member that is itself primary by spec needs the last one named.
        let mut others = observed.primaries().filter(|m| m.name != fenced.name);
        let primary = match (others.next(), others.next()) {
            (Some(p), None) => p.name.clone(),
            _ if member.role() == Some(Role::Primary) => fenced.new_primary.clone(),
            _ => continue,
        };
        let source = topology
            .position(&fenced.name)
            .and_then(|i| topology.desired_sources(&primary).swap_remove(i))
            .filter(|_| topology.shape().reroots());
        let fence = patch::demote(&primary, source.as_deref());
        if !patch::is_applied(member.replica.as_ref(), &fence) {
            fenced.fenced_at = None;
            if action.is_none() {
                action = Some(Action {
                    step: StepKind::Bookkeeping,
                    member: fenced.name.clone(),
                    patch: fence,
                });
            }
            continue;
        }
        fenced.new_primary.clone_from(&primary);
        if fenced.fenced_at.is_none() {
            fenced.fenced_at = Some(MicroTime(now));
            notes.push(Note {
                warning: true,
                reason: "Fenced".into(),
                action: "Fence",
                message: format!(
                    "{} can be read again and is now a replica of {primary} by spec; it must be re-cloned before it serves (it may hold writes past the fork of {primary}'s timeline): delete its Cluster and re-create it from {primary}",
                    fenced.name
                ),
            });
        }
    }
    action
}
