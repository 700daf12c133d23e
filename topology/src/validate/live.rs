//! Live rules: the topology against its members' CNPG Clusters (contract §1, §4, §6).

use std::collections::HashMap;

use crate::cnpg::{Cluster, Role};
use crate::model::Topology;
use crate::observed::{Observed, ObservedMember};

use super::externals::{ExternalLists, ExternalNames};
use super::problem::{Problem, Problems, ValidationError, cluster_path};
use super::spec_rules::list;

/// Checks raw Clusters (e.g. from files): each must be a member and appear once, then applies
/// [`validate_live`]. Returns the snapshot the planner needs.
pub fn validate_clusters(
    topology: &Topology,
    clusters: &[Cluster],
    target: Option<&str>,
) -> Result<Observed, ValidationError> {
    let mut problems = Problems::default();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, cluster) in clusters.iter().enumerate() {
        let name = cluster.topology_name();
        let path = cluster_path_of(cluster);
        if topology.member(name).is_none() {
            problems.push(
                path,
                format!("topology name {name:?} is not a member of the topology"),
                "add it to spec.members, or set its spec.replica.self to a member name",
            );
        } else if let Some(first) = seen.insert(name, i) {
            problems.push(
                path,
                format!("is the second Cluster with topology name {name:?} (document {first} is the first)"),
                "keep one Cluster per member",
            );
        }
    }
    let observed = Observed::from_clusters(clusters);
    if let Err(live) = validate_live(topology, &observed, target) {
        problems.extend(live.problems);
    }
    problems.into_result(observed)
}

/// Checks every member's observed Cluster against the topology. With `target`, also checks that
/// the member can be the target of a switchover now.
pub fn validate_live(
    topology: &Topology,
    observed: &Observed,
    target: Option<&str>,
) -> Result<(), ValidationError> {
    validate_live_members(topology, observed, &observed.by_member(topology), target)
}

/// [`validate_live`] with `observed.by_member(topology)` already at hand.
pub(crate) fn validate_live_members(
    topology: &Topology,
    observed: &Observed,
    observed_members: &[Option<&ObservedMember>],
    target: Option<&str>,
) -> Result<(), ValidationError> {
    let mut problems = Problems::default();
    let members: Vec<(usize, &ObservedMember)> = observed_members
        .iter()
        .enumerate()
        .filter_map(|(i, m)| match m {
            Some(m) => Some((i, *m)),
            None => {
                let spec = &topology.members()[i];
                problems.push(
                    format!("spec.members[{i}]"),
                    format!(
                        "no CNPG Cluster {}/{} with topology name {:?} was found",
                        spec.namespace,
                        spec.cluster_name(),
                        spec.name
                    ),
                    "create it, or fix the member's name, clusterName or namespace",
                );
                None
            }
        })
        .collect();

    let mut externals = ExternalLists::new(topology);
    for &(i, member) in &members {
        check_member(topology, i, member, externals.of(member), &mut problems);
    }
    externals.check(&members, &mut problems);
    check_system_ids(&members, &mut problems);
    if let Some(primary) = check_single_primary(&members, &mut problems) {
        check_follow_primary(topology, observed_members, &members, primary, &mut problems);
    }
    if let Some(target) = target {
        check_target(topology, observed, target, &mut problems);
    }
    problems.into_result(())
}

fn cluster_path_of(cluster: &Cluster) -> String {
    format!(
        "Cluster {}/{}",
        cluster.metadata.namespace.as_deref().unwrap_or("?"),
        cluster.metadata.name.as_deref().unwrap_or("?")
    )
}

/// Rules about one member's own Cluster.
fn check_member(
    topology: &Topology,
    i: usize,
    m: &ObservedMember,
    externals: &ExternalNames<'_>,
    problems: &mut Problems,
) {
    let spec = &topology.members()[i];
    // Formatted only for a problem: this runs for every member on every reconcile.
    let path = || cluster_path(m);
    if !m.reachable {
        problems.push(
            format!("spec.members[{i}]"),
            format!("member {} in {} could not be read", spec.name, spec.cluster),
            "check the member cluster's API server and Federator's credentials for it",
        );
        return;
    }
    if m.cluster_name != spec.cluster_name() {
        problems.push(
            format!("{}: metadata.name", path()),
            format!(
                "is {:?} but spec.members[{i}] expects {:?}",
                m.cluster_name,
                spec.cluster_name()
            ),
            format!("set spec.members[{i}].clusterName: {}", m.cluster_name),
        );
    }
    if let Some(ns) = &m.namespace
        && *ns != spec.namespace
    {
        problems.push(
            format!("{}: metadata.namespace", path()),
            format!(
                "is {ns:?} but spec.members[{i}].namespace is {:?}",
                spec.namespace
            ),
            format!("set spec.members[{i}].namespace: {ns}"),
        );
    }
    let Some(replica) = &m.replica else {
        problems.push(
            format!("{}: spec.replica", path()),
            "is missing, so CNPG treats this Cluster as a standalone primary",
            format!(
                "add spec.replica with primary: {}, source: <a member> and self: {}",
                topology.primary(),
                spec.name
            ),
        );
        return;
    };
    let field = |f: &str| format!("{}: spec.replica.{f}", path());
    if let Some(enabled) = replica.enabled {
        problems.push(
            field("enabled"),
            format!("legacy `enabled: {enabled}` is set; it decides the role alone and cannot be combined with primary"),
            "remove it (merge patch `enabled: null`) and set primary/self instead",
        );
    }
    if replica.source.is_empty() {
        problems.push(
            field("source"),
            "is empty",
            "name the externalClusters entry to replicate from",
        );
    } else if !externals.contains(replica.source.as_str()) {
        problems.push(
            field("source"),
            format!(
                "external cluster {:?} not found in spec.externalClusters",
                replica.source
            ),
            format!(
                "add an externalClusters entry named {:?} or change source",
                replica.source
            ),
        );
    }
    match replica.primary.as_deref() {
        None | Some("") => problems.push(
            field("primary"),
            "is unset; in a distributed topology every member names the primary",
            format!("set spec.replica.primary: {}", topology.primary()),
        ),
        Some(p) if !externals.contains(p) => problems.push(
            field("primary"),
            format!("external cluster {p:?} not found in spec.externalClusters"),
            format!("add an externalClusters entry named {p:?}"),
        ),
        Some(_) => {}
    }
    if let Some(self_name) = replica.self_name.as_deref().filter(|s| !s.is_empty())
        && !externals.contains(self_name)
    {
        problems.push(
            field("self"),
            format!("external cluster {self_name:?} not found in spec.externalClusters"),
            format!("add an externalClusters entry named {self_name:?}"),
        );
    }
    if m.cluster_name != spec.name && replica.self_name.as_deref() != Some(spec.name.as_str()) {
        problems.push(
            field("self"),
            format!(
                "must be {:?} because metadata.name {:?} differs from the member name",
                spec.name, m.cluster_name
            ),
            format!("set spec.replica.self: {}", spec.name),
        );
    }
    if let Some(delay) = &replica.min_apply_delay
        && replica.promotion_token.is_some()
    {
        problems.push(
            field("minApplyDelay"),
            format!("{delay:?} is set together with a promotionToken; CNPG rejects this"),
            "remove minApplyDelay (merge patch null)",
        );
    }
    if replica.promotion_token.is_some() && m.role() == Some(Role::Replica) {
        problems.push(
            field("promotionToken"),
            "is set on a replica; CNPG rejects every update of this Cluster until it is removed (#9273)",
            "remove it with a merge patch `promotionToken: null`",
        );
    }
}

fn check_system_ids(members: &[(usize, &ObservedMember)], problems: &mut Problems) {
    let mut ids: Vec<(&str, &str)> = members
        .iter()
        .filter_map(|(_, m)| Some((m.name.as_str(), m.status.system_id.as_deref()?)))
        .collect();
    ids.sort_by_key(|(_, id)| *id);
    ids.dedup_by_key(|(_, id)| *id);
    if ids.len() > 1 {
        let shown: Vec<String> = ids.iter().map(|(n, id)| format!("{n}={id}")).collect();
        problems.push(
            "status.systemID",
            format!("members report different PostgreSQL system identifiers: {}", list(&shown)),
            "every member must be a physical copy of the same database; re-clone the odd ones from the primary",
        );
    }
}

/// Exactly one member may be primary by the role rule (contract §1.1); returns it and its
/// position.
fn check_single_primary<'a>(
    members: &[(usize, &'a ObservedMember)],
    problems: &mut Problems,
) -> Option<(usize, &'a ObservedMember)> {
    let primaries: Vec<(usize, &ObservedMember)> = members
        .iter()
        .copied()
        .filter(|(_, m)| m.role() == Some(Role::Primary))
        .collect();
    match primaries.as_slice() {
        [one] => Some(*one),
        [] => {
            problems.push(
                "members",
                "no member is primary by its spec (replica.primary equals its own name on none)",
                "set spec.replica.primary to the same member on every Cluster",
            );
            None
        }
        many => {
            problems.push(
                "members",
                format!(
                    "{} members are primary by their spec: {}",
                    many.len(),
                    list(many.iter().map(|(_, m)| &m.name))
                ),
                "set spec.replica.primary to the same single member on every Cluster",
            );
            None
        }
    }
}

/// Replicas name the primary, sources match the shape, and following sources from every
/// member reaches the primary.
fn check_follow_primary(
    topology: &Topology,
    observed_members: &[Option<&ObservedMember>],
    members: &[(usize, &ObservedMember)],
    (primary_at, primary): (usize, &ObservedMember),
    problems: &mut Problems,
) {
    let desired = topology.desired_source_names(&primary.name);
    for &(i, m) in members {
        if !m.reachable || m.replica.is_none() {
            continue;
        }
        let path = || cluster_path(m);
        if m.name != primary.name && m.spec_primary().is_some_and(|p| p != primary.name) {
            problems.push(
                format!("{}: spec.replica.primary", path()),
                format!(
                    "is {:?} but the primary is {}",
                    m.spec_primary().unwrap_or_default(),
                    primary.name
                ),
                format!("set spec.replica.primary: {}", primary.name),
            );
        }
        if let (Some(want), Some(have)) = (desired[i], m.spec_source())
            && want != have
        {
            problems.push(
                format!("{}: spec.replica.source", path()),
                format!(
                    "is {have:?} but the {} shape with primary {} wants {want:?}",
                    topology.shape().name(),
                    primary.name
                ),
                format!("set spec.replica.source: {want}"),
            );
        }
    }
    problems.extend(unreachable_from_primary(
        topology,
        observed_members,
        members,
        (primary_at, primary),
    ));
}

/// Members whose chain of sources never reaches the primary (a cycle or a non-member source).
fn unreachable_from_primary(
    topology: &Topology,
    observed_members: &[Option<&ObservedMember>],
    members: &[(usize, &ObservedMember)],
    (primary_at, primary): (usize, &ObservedMember),
) -> Vec<Problem> {
    let unfed: Vec<&ObservedMember> = not_fed_by(topology, observed_members, primary_at)
        .into_iter()
        .filter_map(|i| observed_members[i])
        .filter(|m| m.reachable && m.replica.is_some())
        .collect();
    if unfed.is_empty() {
        return Vec::new();
    }
    let source_of: HashMap<&str, &str> = members
        .iter()
        .filter(|(_, m)| m.name != primary.name)
        .filter_map(|(_, m)| Some((m.name.as_str(), m.spec_source()?)))
        .collect();
    unfed
        .into_iter()
        .map(|m| {
            let mut chain = vec![m.name.as_str()];
            let mut at = m.name.as_str();
            while let Some(&next) = source_of.get(at) {
                chain.push(next);
                if chain.len() > 6 || chain[..chain.len() - 1].contains(&next) {
                    break;
                }
                at = next;
            }
            Problem::new(
                format!("{}: spec.replica.source", cluster_path(m)),
                format!(
                    "following sources ({}) never reaches the primary {}",
                    chain.join(" -> "),
                    primary.name
                ),
                "point source at a member whose chain reaches the primary",
            )
        })
        .collect()
}

/// Positions of the members that WAL from the primary (at `primary`) does not reach by following each member's
/// observed `replica.source` (the edges `TopologyGraph::observed` draws), in member order.
/// A member has one source, so "fed" means its chain of sources ends at the primary.
fn not_fed_by(
    topology: &Topology,
    observed_members: &[Option<&ObservedMember>],
    primary: usize,
) -> Vec<usize> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        Unknown,
        OnPath,
        Fed,
        NotFed,
    }
    let source = |i: usize| {
        observed_members[i]
            .and_then(ObservedMember::spec_source)
            .and_then(|s| topology.position(s))
    };
    let mut state = vec![State::Unknown; observed_members.len()];
    state[primary] = State::Fed;
    let mut path = Vec::new();
    for start in 0..state.len() {
        let mut at = start;
        let verdict = loop {
            match state[at] {
                State::Fed => break State::Fed,
                State::NotFed | State::OnPath => break State::NotFed,
                State::Unknown => {
                    state[at] = State::OnPath;
                    path.push(at);
                    match source(at) {
                        Some(next) => at = next,
                        None => break State::NotFed,
                    }
                }
            }
        };
        for i in path.drain(..) {
            state[i] = verdict;
        }
    }
    (0..state.len())
        .filter(|&i| state[i] == State::NotFed)
        .collect()
}

/// A switchover target must be a reachable replica member without a replay delay.
fn check_target(topology: &Topology, observed: &Observed, target: &str, problems: &mut Problems) {
    let Some(member) = topology.member(target) else {
        problems.push(
            "target",
            format!("{target:?} is not a member"),
            format!("choose one of: {}", list(topology.names())),
        );
        return;
    };
    let Some(m) = observed.get(target).filter(|m| m.reachable) else {
        return; // already reported as missing or unreachable
    };
    let path = cluster_path(m);
    if let Some(delay) = m
        .replica
        .as_ref()
        .and_then(|r| r.min_apply_delay.as_deref())
    {
        problems.push(
            format!("{path}: spec.replica.minApplyDelay"),
            format!(
                "the target {} replays WAL {delay} late, so the promotion would wait at least that long for the token's LSN",
                member.name
            ),
            "remove minApplyDelay from the target and let it catch up before switching over",
        );
    }
}
