//! Static rules: what a `DistributedTopologySpec` must satisfy on its own. The CRD's CEL rules
//! check a subset of these at admission; this is the complete list, used offline and by the
//! controller before it touches anything.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::api::DistributedTopologySpec;
use crate::model::Topology;
use crate::shape::Shape;

use super::problem::{Problems, ValidationError};

/// CNPG's limit on a Cluster name (contract §4), which also bounds topology names.
const MAX_NAME_LEN: usize = 50;

/// Checks `spec` and returns the indexed [`Topology`], or every problem found.
pub fn validate_spec(spec: &DistributedTopologySpec) -> Result<Topology, ValidationError> {
    let mut problems = Problems::default();
    let names = check_members(spec, &mut problems);

    if !spec.primary.is_empty() && !names.contains_key(spec.primary.as_str()) {
        problems.push(
            "spec.primary",
            format!("{:?} is not a member", spec.primary),
            format!(
                "set spec.primary to one of: {}",
                list(spec.members.iter().map(|m| &m.name))
            ),
        );
    } else if spec.primary.is_empty() {
        problems.push(
            "spec.primary",
            "is empty",
            "name the member that should be primary",
        );
    }

    let shape = Shape::from_spec(&spec.shape);
    match &shape {
        None => problems.push(
            "spec.shape",
            "exactly one of star, ring, cascade must be set",
            "keep one of them, e.g. `shape: {star: {}}`",
        ),
        Some(Shape::Star) => {}
        Some(Shape::Ring(order)) => check_ring(order, &names, &mut problems),
        Some(Shape::Cascade(edges)) => check_cascade(edges, &names, &mut problems),
    }
    let shape = shape.unwrap_or(Shape::Star);
    problems
        .into_result(())
        .map(|()| Topology::new_unchecked(spec, shape))
}

/// Member-level rules; returns the index of each distinct name.
fn check_members<'a>(
    spec: &'a DistributedTopologySpec,
    problems: &mut Problems,
) -> HashMap<&'a str, usize> {
    if spec.members.len() < 2 {
        problems.push(
            "spec.members",
            format!(
                "has {} member(s); a distributed topology needs at least 2",
                spec.members.len()
            ),
            "list every CNPG Cluster of the distributed database, one per region",
        );
    }
    let mut names = HashMap::new();
    let mut locations = HashSet::new();
    for (i, member) in spec.members.iter().enumerate() {
        let path = format!("spec.members[{i}]");
        if let Some(first) = names.insert(member.name.as_str(), i) {
            names.insert(member.name.as_str(), first);
            problems.push(
                format!("{path}.name"),
                format!("{:?} is already used by spec.members[{first}]", member.name),
                "give every member a unique name (its externalClusters entry name)",
            );
        }
        if let Err(why) = dns_label(&member.name) {
            problems.push(
                format!("{path}.name"),
                format!("{:?} {why}", member.name),
                "use lowercase letters, digits and '-', starting with a letter, at most 50 characters",
            );
        }
        if let Some(cluster_name) = &member.cluster_name
            && let Err(why) = dns_label(cluster_name)
        {
            problems.push(
                format!("{path}.clusterName"),
                format!("{cluster_name:?} {why}"),
                "use the CNPG Cluster's metadata.name, or leave clusterName out when it equals name",
            );
        }
        for (field, value) in [
            ("cluster", &member.cluster),
            ("namespace", &member.namespace),
        ] {
            if value.is_empty() {
                problems.push(
                    format!("{path}.{field}"),
                    "is empty",
                    match field {
                        "cluster" => {
                            "name the member Kubernetes cluster (its credentials key on the hub)"
                        }
                        _ => "name the namespace of the CNPG Cluster",
                    },
                );
            }
        }
        if !locations.insert((&member.cluster, &member.namespace, member.cluster_name())) {
            problems.push(
                path,
                format!(
                    "Cluster {}/{} in {} is listed twice",
                    member.namespace,
                    member.cluster_name(),
                    member.cluster
                ),
                "each member must be a different CNPG Cluster",
            );
        }
    }
    names
}

fn check_ring(order: &[String], names: &HashMap<&str, usize>, problems: &mut Problems) {
    let mut seen = HashSet::new();
    for (i, name) in order.iter().enumerate() {
        if !names.contains_key(name.as_str()) {
            problems.push(
                format!("spec.shape.ring[{i}]"),
                format!("{name:?} is not a member"),
                "list only names from spec.members",
            );
        } else if !seen.insert(name.as_str()) {
            problems.push(
                format!("spec.shape.ring[{i}]"),
                format!("{name:?} appears twice"),
                "list every member exactly once, in replication order",
            );
        }
    }
    let mut missing: Vec<&str> = names
        .keys()
        .copied()
        .filter(|n| !seen.contains(n))
        .collect();
    missing.sort_unstable();
    if !missing.is_empty() {
        problems.push(
            "spec.shape.ring",
            format!("does not include {}", list(&missing)),
            "list every member exactly once, in replication order",
        );
    }
}

/// The cascade must be a tree over all members: every edge between two distinct members, one
/// source per member (a map guarantees that), n - 1 edges and everything connected.
fn check_cascade(
    edges: &BTreeMap<String, String>,
    names: &HashMap<&str, usize>,
    problems: &mut Problems,
) {
    let mut valid_edges = Vec::new();
    for (member, source) in edges {
        let path = format!("spec.shape.cascade.{member}");
        let mut ok = true;
        for (what, name) in [("member", member), ("source", source)] {
            if !names.contains_key(name.as_str()) {
                ok = false;
                problems.push(
                    path.clone(),
                    format!("{what} {name:?} is not a member"),
                    "use only names from spec.members",
                );
            }
        }
        if member == source {
            ok = false;
            problems.push(
                path.clone(),
                "a member cannot be its own source",
                "name another member",
            );
        }
        if ok {
            valid_edges.push((member.as_str(), source.as_str()));
        }
    }
    // Union-find over the edges: a second path between two members is a cycle.
    let mut parent: HashMap<&str, &str> = names.keys().map(|n| (*n, *n)).collect();
    fn find<'a>(parent: &mut HashMap<&'a str, &'a str>, mut x: &'a str) -> &'a str {
        while parent[x] != x {
            let up = parent[parent[x]];
            parent.insert(x, up);
            x = up;
        }
        x
    }
    for (member, source) in valid_edges {
        let (a, b) = (find(&mut parent, member), find(&mut parent, source));
        if a == b {
            problems.push(
                format!("spec.shape.cascade.{member}"),
                format!("{member} -> {source} closes a cycle"),
                "a cascade is a tree; use `ring` for circular replication",
            );
        } else {
            parent.insert(a, b);
        }
    }
    let mut components: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let all: Vec<&str> = names.keys().copied().collect();
    for name in all {
        let root = find(&mut parent, name);
        components.entry(root).or_default().push(name);
    }
    if components.len() > 1 {
        let mut groups: Vec<String> = components
            .into_values()
            .map(|mut g| {
                g.sort_unstable();
                format!("[{}]", g.join(", "))
            })
            .collect();
        groups.sort();
        problems.push(
            "spec.shape.cascade",
            format!(
                "does not connect all members; separate groups: {}",
                groups.join(" ")
            ),
            "give every member except one a source so that all members form one tree",
        );
    }
}

/// DNS-1035 label of at most 50 characters (CNPG's Cluster name rule, contract §4).
fn dns_label(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "is {} characters long (max {MAX_NAME_LEN})",
            name.len()
        ));
    }
    let bytes = name.as_bytes();
    let valid_chars = bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    if !valid_chars || !bytes[0].is_ascii_lowercase() || bytes[bytes.len() - 1] == b'-' {
        return Err("is not a DNS-1035 label".into());
    }
    Ok(())
}

pub(super) fn list<T: AsRef<str>>(items: impl IntoIterator<Item = T>) -> String {
    items
        .into_iter()
        .map(|s| s.as_ref().to_owned())
        .collect::<Vec<_>>()
        .join(", ")
}
