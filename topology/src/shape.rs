//! Replication shapes and what each wants every member's `replica.source` to be for a given
//! primary. Pure functions over names; validation guarantees the inputs are well-formed.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use crate::api::ShapeSpec;

/// A replication shape, parsed from [`ShapeSpec`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Every replica follows the primary.
    Star,
    /// Circular order; member `i` follows member `i - 1` (the first follows the last), always.
    Ring(Vec<String>),
    /// Undirected tree edges written as `member: source`; oriented away from the primary.
    Cascade(BTreeMap<String, String>),
}

impl Shape {
    /// The shape a spec sets, or `None` unless exactly one of star/ring/cascade is set.
    pub fn from_spec(spec: &ShapeSpec) -> Option<Shape> {
        match (&spec.star, &spec.ring, &spec.cascade) {
            (Some(_), None, None) => Some(Shape::Star),
            (None, Some(ring), None) => Some(Shape::Ring(ring.clone())),
            (None, None, Some(edges)) => Some(Shape::Cascade(edges.clone())),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Shape::Star => "star",
            Shape::Ring(_) => "ring",
            Shape::Cascade(_) => "cascade",
        }
    }

    /// Whether a switchover changes sources (star and cascade re-root; a ring never does).
    pub fn reroots(&self) -> bool {
        !matches!(self, Shape::Ring(_))
    }

    /// The source each of `members` should replicate from when `primary` is primary, in the
    /// same order. `None` means "no opinion": the primary's source in a star or cascade is unused
    /// until it is demoted, so Federator leaves it as it is. Members the shape does not reach also
    /// get `None` (static validation reports them).
    pub fn desired_sources(&self, members: &[String], primary: &str) -> Vec<Option<String>> {
        match self {
            Shape::Star => members
                .iter()
                .map(|m| (m != primary).then(|| primary.to_owned()))
                .collect(),
            Shape::Ring(order) => {
                let previous: HashMap<&str, &str> = order
                    .iter()
                    .enumerate()
                    .map(|(i, m)| {
                        (
                            m.as_str(),
                            order[(i + order.len() - 1) % order.len()].as_str(),
                        )
                    })
                    .collect();
                members
                    .iter()
                    .map(|m| previous.get(m.as_str()).map(|s| (*s).to_owned()))
                    .collect()
            }
            Shape::Cascade(edges) => {
                let parents = orient_tree(edges, primary);
                members
                    .iter()
                    .map(|m| parents.get(m.as_str()).map(|s| (*s).to_owned()))
                    .collect()
            }
        }
    }
}

/// Breadth-first orientation of the undirected `edges` from `root`: child → parent (its source).
fn orient_tree<'a>(edges: &'a BTreeMap<String, String>, root: &str) -> HashMap<&'a str, &'a str> {
    let mut adjacent: HashMap<&str, Vec<&str>> = HashMap::new();
    for (a, b) in edges {
        adjacent.entry(a).or_default().push(b);
        adjacent.entry(b).or_default().push(a);
    }
    let mut parent = HashMap::new();
    let Some((&root, _)) = adjacent.get_key_value(root) else {
        return parent;
    };
    let mut seen = HashSet::from([root]);
    let mut queue = VecDeque::from([root]);
    while let Some(node) = queue.pop_front() {
        for &next in adjacent.get(node).into_iter().flatten() {
            if seen.insert(next) {
                parent.insert(next, node);
                queue.push_back(next);
            }
        }
    }
    parent
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn expect(list: &[Option<&str>]) -> Vec<Option<String>> {
        list.iter().map(|s| s.map(str::to_owned)).collect()
    }

    #[test]
    fn star_points_every_replica_at_the_primary() {
        let members = names(&["a", "b", "c"]);
        assert_eq!(
            Shape::Star.desired_sources(&members, "b"),
            expect(&[Some("b"), None, Some("b")])
        );
    }

    #[test]
    fn ring_sources_do_not_depend_on_the_primary() {
        let members = names(&["a", "b", "c"]);
        let ring = Shape::Ring(names(&["a", "b", "c"]));
        let expected = expect(&[Some("c"), Some("a"), Some("b")]);
        for primary in ["a", "b", "c"] {
            assert_eq!(ring.desired_sources(&members, primary), expected);
        }
    }

    #[test]
    fn cascade_reroots_at_the_new_primary() {
        let members = names(&["a", "b", "c", "d"]);
        let edges: BTreeMap<String, String> = [("b", "a"), ("c", "b"), ("d", "b")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let cascade = Shape::Cascade(edges);
        assert_eq!(
            cascade.desired_sources(&members, "a"),
            expect(&[None, Some("a"), Some("b"), Some("b")])
        );
        assert_eq!(
            cascade.desired_sources(&members, "c"),
            expect(&[Some("b"), Some("c"), None, Some("b")])
        );
    }
}
