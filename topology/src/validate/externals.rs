//! The members' `spec.externalClusters` names (contract §1.2): every member lists every member,
//! and all list the same names.
//!
//! Members normally share one list (see `ObservedMember::external_clusters`), so each distinct
//! list is indexed and compared once: checking n members stays linear in n.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::model::Topology;
use crate::name_index::{NameHashBuilder, NameIndex};
use crate::observed::ObservedMember;

use super::problem::{Problems, cluster_path};
use super::spec_rules::list;

/// One externalClusters list, indexed by name.
pub(super) struct ExternalNames<'a> {
    list: &'a [String],
    lookup: Lookup<'a>,
}

enum Lookup<'a> {
    /// The list is the members' names in member order (what Federator's manifests and the
    /// conforming snapshot write): the topology's own index answers, nothing to build.
    Members(&'a Topology),
    Own {
        index: NameIndex,
        /// Positions of the first occurrence of each name.
        distinct: Vec<usize>,
    },
}

impl<'a> ExternalNames<'a> {
    fn new(list: &'a [String], topology: &'a Topology) -> Self {
        let lookup = if list == topology.names() {
            Lookup::Members(topology)
        } else {
            let mut index = NameIndex::with_capacity(list.len());
            let distinct = (0..list.len())
                .filter(|&i| index.insert(&list[i], i, |j| &list[j]).is_none())
                .collect();
            Lookup::Own { index, distinct }
        };
        ExternalNames { list, lookup }
    }

    pub(super) fn contains(&self, name: &str) -> bool {
        match &self.lookup {
            Lookup::Members(topology) => topology.position(name).is_some(),
            Lookup::Own { index, .. } => index.get(name, |i| &self.list[i]).is_some(),
        }
    }

    /// Each name once, in list order.
    fn names(&self) -> Box<dyn Iterator<Item = &'a str> + '_> {
        match &self.lookup {
            Lookup::Members(_) => Box::new(self.list.iter().map(String::as_str)),
            Lookup::Own { distinct, .. } => {
                Box::new(distinct.iter().map(|&i| self.list[i].as_str()))
            }
        }
    }

    fn distinct_len(&self) -> usize {
        match &self.lookup {
            Lookup::Members(_) => self.list.len(),
            Lookup::Own { distinct, .. } => distinct.len(),
        }
    }

    /// Member names the list lacks, in member order.
    fn missing(&self, topology: &'a Topology) -> Vec<&'a str> {
        match &self.lookup {
            Lookup::Members(_) => Vec::new(),
            Lookup::Own { .. } => topology
                .names()
                .iter()
                .map(String::as_str)
                .filter(|n| !self.contains(n))
                .collect(),
        }
    }

    /// Same names, ignoring order and repeats.
    fn same_names(&self, other: &ExternalNames<'_>) -> bool {
        self.distinct_len() == other.distinct_len() && self.names().all(|n| other.contains(n))
    }
}

/// The distinct lists of the members, keyed by the shared allocation.
pub(super) struct ExternalLists<'a> {
    topology: &'a Topology,
    lists: HashMap<*const String, ExternalNames<'a>, NameHashBuilder>,
}

impl<'a> ExternalLists<'a> {
    pub(super) fn new(topology: &'a Topology) -> Self {
        ExternalLists {
            topology,
            lists: HashMap::default(),
        }
    }

    /// The indexed list of `member`.
    pub(super) fn of(&mut self, member: &'a ObservedMember) -> &ExternalNames<'a> {
        let list: &'a Arc<[String]> = &member.external_clusters;
        let topology = self.topology;
        self.lists
            .entry(list.as_ptr())
            .or_insert_with(|| ExternalNames::new(list, topology))
    }

    /// Every member must list every member, and all must list the same names.
    pub(super) fn check(
        &mut self,
        members: &[(usize, &'a ObservedMember)],
        problems: &mut Problems,
    ) {
        let mut reachable = members.iter().map(|(_, m)| *m).filter(|m| m.reachable);
        let Some(first) = reachable.next() else {
            return;
        };
        self.of(first);
        let mut checked: HashSet<*const String, NameHashBuilder> = HashSet::default();
        for m in std::iter::once(first).chain(reachable) {
            let key = m.external_clusters.as_ptr();
            if !checked.insert(key) {
                continue;
            }
            self.of(m);
            let names = &self.lists[&key];
            let reference = &self.lists[&first.external_clusters.as_ptr()];
            let path = || format!("{}: spec.externalClusters", cluster_path(m));
            let missing = names.missing(self.topology);
            if !missing.is_empty() {
                problems.push(
                    path(),
                    format!("does not list member(s) {}", list(&missing)),
                    "list every member, itself included, so primary/self/source resolve everywhere",
                );
            }
            if names.distinct_len() < names.list.len() {
                problems.push(
                    path(),
                    "contains duplicate names",
                    "keep one entry per name",
                );
            }
            if !std::ptr::eq(first, m) && !names.same_names(reference) {
                let mut differ: Vec<&str> = names
                    .names()
                    .filter(|n| !reference.contains(n))
                    .chain(reference.names().filter(|n| !names.contains(n)))
                    .collect();
                differ.sort_unstable();
                problems.push(
                    path(),
                    format!("names differ from {}'s: {}", first.name, list(&differ)),
                    "give every member the same externalClusters names",
                );
            }
        }
    }
}
