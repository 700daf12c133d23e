//! Static rules: what a `DistributedTopologySpec` must satisfy on its own. The CRD's CEL rules
//! check a subset of these at admission; this is the complete list, used offline and by the
//! controller before it touches anything.

use std::collections::{BTreeMap, HashSet};

use crate::api::DistributedTopologySpec;
use crate::model::Topology;
use crate::name_index::{NameHashBuilder, NameIndex};
use crate::shape::Shape;

use super::problem::{Problems, ValidationError};

/// CNPG's limit on a Cluster name (contract §4), which also bounds topology names.
const MAX_NAME_LEN: usize = 50;

/// Checks `spec` and returns the indexed [`Topology`], or every problem found.
pub fn validate_spec(spec: &DistributedTopologySpec) -> Result<Topology, ValidationError> {
    let mut problems = Problems::default();
    let names = check_members(spec, &mut problems);

    if !spec.primary.is_empty() && names.position(&spec.primary).is_none() {
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
        .map(|()| Topology::new_unchecked(spec, shape, names.index))
}

/// The members' names by position. A repeated name counts at its first position only.
struct MemberNames<'a> {
    spec: &'a DistributedTopologySpec,
    index: NameIndex,
    /// For each member, the position of the first member with its name.
    first: Vec<usize>,
}

impl MemberNames<'_> {
    fn position(&self, name: &str) -> Option<usize> {
        self.index.get(name, |i| &self.spec.members[i].name)
    }

    fn name(&self, position: usize) -> &str {
        &self.spec.members[position].name
    }

    /// Positions of the distinct names.
    fn distinct(&self) -> impl Iterator<Item = usize> + '_ {
        self.first
            .iter()
            .enumerate()
            .filter(|(i, f)| i == *f)
            .map(|(i, _)| i)
    }
}

/// Member-level rules; returns the position of each distinct name.
fn check_members<'a>(
    spec: &'a DistributedTopologySpec,
    problems: &mut Problems,
) -> MemberNames<'a> {
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
    let mut index = NameIndex::with_capacity(spec.members.len());
    let mut first = Vec::with_capacity(spec.members.len());
    let mut locations =
        HashSet::with_capacity_and_hasher(spec.members.len(), NameHashBuilder::default());
    for (i, member) in spec.members.iter().enumerate() {
        let path = || format!("spec.members[{i}]");
        match index.insert(&member.name, i, |j| &spec.members[j].name) {
            None => first.push(i),
            Some(earlier) => {
                first.push(earlier);
                problems.push(
                    format!("{}.name", path()),
                    format!(
                        "{:?} is already used by spec.members[{earlier}]",
                        member.name
                    ),
                    "give every member a unique name (its externalClusters entry name)",
                );
            }
        }
        if let Err(why) = dns_label(&member.name) {
            problems.push(
                format!("{}.name", path()),
                format!("{:?} {why}", member.name),
                "use lowercase letters, digits and '-', starting with a letter, at most 50 characters",
            );
        }
        if let Some(cluster_name) = &member.cluster_name
            && let Err(why) = dns_label(cluster_name)
        {
            problems.push(
                format!("{}.clusterName", path()),
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
                    format!("{}.{field}", path()),
                    "is empty",
                    match field {
                        "cluster" => {
                            "name the member Kubernetes cluster (its credentials key on the hub)"
                        }
                        _ => "name the namespace of the CNPG Cluster",
                    },
                );
            } else if let Err(why) = dns1123_label(value) {
                problems.push(
                    format!("{}.{field}", path()),
                    format!("{value:?} {why}"),
                    match field {
                        "cluster" => {
                            "use the member cluster's name as `federator member list` shows it: \
                             lowercase letters, digits and '-', at most 63 characters"
                        }
                        _ => {
                            "use the namespace's name: lowercase letters, digits and '-', at \
                             most 63 characters"
                        }
                    },
                );
            }
        }
        if !locations.insert((&member.cluster, &member.namespace, member.cluster_name())) {
            problems.push(
                path(),
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
    MemberNames { spec, index, first }
}

fn check_ring(order: &[String], names: &MemberNames<'_>, problems: &mut Problems) {
    let mut seen = vec![false; names.first.len()];
    for (i, name) in order.iter().enumerate() {
        match names.position(name) {
            None => problems.push(
                format!("spec.shape.ring[{i}]"),
                format!("{name:?} is not a member"),
                "list only names from spec.members",
            ),
            Some(p) if seen[p] => problems.push(
                format!("spec.shape.ring[{i}]"),
                format!("{name:?} appears twice"),
                "list every member exactly once, in replication order",
            ),
            Some(p) => seen[p] = true,
        }
    }
    let mut missing: Vec<&str> = names
        .distinct()
        .filter(|&p| !seen[p])
        .map(|p| names.name(p))
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
    names: &MemberNames<'_>,
    problems: &mut Problems,
) {
    let mut valid_edges = Vec::with_capacity(edges.len());
    for (member, source) in edges {
        let path = || format!("spec.shape.cascade.{member}");
        let ends = [("member", member), ("source", source)].map(|(what, name)| {
            let position = names.position(name);
            if position.is_none() {
                problems.push(
                    path(),
                    format!("{what} {name:?} is not a member"),
                    "use only names from spec.members",
                );
            }
            position
        });
        if member == source {
            problems.push(
                path(),
                "a member cannot be its own source",
                "name another member",
            );
        } else if let [Some(m), Some(s)] = ends {
            valid_edges.push((m, s));
        }
    }
    // Union-find over positions: a second path between two members is a cycle.
    let mut parent: Vec<usize> = (0..names.first.len()).collect();
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    for (member, source) in valid_edges {
        let (a, b) = (find(&mut parent, member), find(&mut parent, source));
        if a == b {
            let (member, source) = (names.name(member), names.name(source));
            problems.push(
                format!("spec.shape.cascade.{member}"),
                format!("{member} -> {source} closes a cycle"),
                "a cascade is a tree; use `ring` for circular replication",
            );
        } else {
            parent[a] = b;
        }
    }
    let mut components: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
    for p in names.distinct() {
        let root = find(&mut parent, p);
        components.entry(root).or_default().push(names.name(p));
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

/// DNS-1123 label (what Kubernetes namespaces and Federator's member cluster names are).
fn dns1123_label(name: &str) -> Result<(), String> {
    const MAX: usize = 63;
    if name.len() > MAX {
        return Err(format!("is {} characters long (max {MAX})", name.len()));
    }
    let bytes = name.as_bytes();
    let valid_chars = bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    if !valid_chars || bytes[0] == b'-' || bytes[bytes.len() - 1] == b'-' {
        return Err("is not a DNS-1123 label".into());
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
