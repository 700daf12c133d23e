//! [`Topology`]: a statically validated `DistributedTopologySpec`, indexed for the planner.

use policies::Policies;

use crate::api::{DistributedTopologySpec, Member};
use crate::name_index::NameIndex;
use crate::shape::Shape;
use crate::validate::{ValidationError, validate_spec};

/// A topology that passed static validation: unique member names, a primary among them and a
/// well-formed shape covering every member.
#[derive(Clone, Debug, PartialEq)]
pub struct Topology {
    members: Vec<Member>,
    names: Vec<String>,
    index: NameIndex,
    shape: Shape,
    /// The shape again, by member position: what `desired_sources` walks.
    links: Links,
    primary: String,
    policies: Policies,
}

/// The shape's edges by member position (validation guarantees every member is in the shape).
#[derive(Clone, Debug, PartialEq)]
enum Links {
    Star,
    /// Each member's predecessor in the ring.
    Ring(Vec<usize>),
    /// A tree: member `i`'s neighbours are `neighbours[offsets[i]..offsets[i + 1]]`.
    Cascade {
        offsets: Vec<usize>,
        neighbours: Vec<usize>,
    },
}

impl Links {
    fn new(shape: &Shape, names: &[String], index: &NameIndex) -> Links {
        let position = |name: &str| {
            index
                .get(name, |i| &names[i])
                .expect("validated shapes name only members")
        };
        match shape {
            Shape::Star => Links::Star,
            Shape::Ring(order) => {
                let at: Vec<usize> = order.iter().map(|name| position(name)).collect();
                let mut previous = vec![0; names.len()];
                for (i, &member) in at.iter().enumerate() {
                    previous[member] = at[(i + at.len() - 1) % at.len()];
                }
                Links::Ring(previous)
            }
            Shape::Cascade(edges) => {
                let edges: Vec<(usize, usize)> = edges
                    .iter()
                    .map(|(member, source)| (position(member), position(source)))
                    .collect();
                let mut offsets = vec![0; names.len() + 1];
                for &(a, b) in &edges {
                    offsets[a + 1] += 1;
                    offsets[b + 1] += 1;
                }
                for i in 0..names.len() {
                    offsets[i + 1] += offsets[i];
                }
                let mut next = offsets.clone();
                let mut neighbours = vec![0; offsets[names.len()]];
                for (a, b) in edges {
                    neighbours[next[a]] = b;
                    next[a] += 1;
                    neighbours[next[b]] = a;
                    next[b] += 1;
                }
                Links::Cascade {
                    offsets,
                    neighbours,
                }
            }
        }
    }
}

impl Topology {
    /// Validates `spec` statically; see [`validate_spec`].
    pub fn from_spec(spec: &DistributedTopologySpec) -> Result<Topology, ValidationError> {
        validate_spec(spec)
    }

    /// Builds without checking; only `validate_spec` calls this, after its checks passed.
    /// `index` indexes the members' names by position.
    pub(crate) fn new_unchecked(
        spec: &DistributedTopologySpec,
        shape: Shape,
        index: NameIndex,
    ) -> Topology {
        let names: Vec<String> = spec.members.iter().map(|m| m.name.clone()).collect();
        let links = Links::new(&shape, &names, &index);
        Topology {
            members: spec.members.clone(),
            names,
            index,
            shape,
            links,
            primary: spec.primary.clone(),
            policies: spec.policies.clone(),
        }
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Member names in spec order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn member(&self, name: &str) -> Option<&Member> {
        self.position(name).map(|i| &self.members[i])
    }

    pub fn position(&self, name: &str) -> Option<usize> {
        self.index.get(name, |i| &self.names[i])
    }

    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    /// The desired primary (`spec.primary`).
    pub fn primary(&self) -> &str {
        &self.primary
    }

    pub fn policies(&self) -> &Policies {
        &self.policies
    }

    /// What each member's `replica.source` should be when `primary` is primary, in member order
    /// (`None`: no opinion, see [`Shape::desired_sources`]).
    pub fn desired_sources(&self, primary: &str) -> Vec<Option<String>> {
        self.desired_source_names(primary)
            .into_iter()
            .map(|s| s.map(str::to_owned))
            .collect()
    }

    /// [`Topology::desired_sources`] without copying the names; the same answers as
    /// [`Shape::desired_sources`], from positions instead of name lookups.
    pub(crate) fn desired_source_names<'a>(&'a self, primary: &'a str) -> Vec<Option<&'a str>> {
        match &self.links {
            Links::Star => self
                .names
                .iter()
                .map(|m| (m != primary).then_some(primary))
                .collect(),
            Links::Ring(previous) => previous
                .iter()
                .map(|&p| Some(self.names[p].as_str()))
                .collect(),
            Links::Cascade {
                offsets,
                neighbours,
            } => {
                let Some(root) = self.position(primary) else {
                    return vec![None; self.names.len()];
                };
                let mut parent: Vec<Option<usize>> = vec![None; self.names.len()];
                // Breadth-first from the new root; in a tree every member has one way up.
                let mut queue = Vec::with_capacity(self.names.len());
                queue.push(root);
                let mut seen = vec![false; self.names.len()];
                seen[root] = true;
                let mut next = 0;
                while let Some(&node) = queue.get(next) {
                    next += 1;
                    for &n in &neighbours[offsets[node]..offsets[node + 1]] {
                        if !seen[n] {
                            seen[n] = true;
                            parent[n] = Some(node);
                            queue.push(n);
                        }
                    }
                }
                parent
                    .into_iter()
                    .map(|p| p.map(|p| self.names[p].as_str()))
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::validate_spec;

    fn spec(shape: serde_json::Value) -> DistributedTopologySpec {
        let members: Vec<serde_json::Value> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|n| serde_json::json!({"name": n, "cluster": n, "namespace": "db"}))
            .collect();
        serde_json::from_value(
            serde_json::json!({"members": members, "shape": shape, "primary": "a"}),
        )
        .unwrap()
    }

    #[test]
    fn positions_answer_what_the_shape_answers_for_every_primary() {
        let shapes = [
            serde_json::json!({"star": {}}),
            serde_json::json!({"ring": ["c", "a", "e", "b", "d"]}),
            serde_json::json!({"cascade": {"b": "a", "c": "b", "d": "b", "e": "a"}}),
            serde_json::json!({"cascade": {"a": "b", "b": "c", "c": "d", "d": "e"}}),
        ];
        for shape in shapes {
            let topology = validate_spec(&spec(shape)).unwrap();
            for primary in ["a", "b", "c", "d", "e", "not-a-member"] {
                assert_eq!(
                    topology.desired_sources(primary),
                    topology.shape().desired_sources(topology.names(), primary),
                    "{} with primary {primary}",
                    topology.shape().name()
                );
            }
        }
    }
}
