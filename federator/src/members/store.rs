//! The Clusters seen on every member, keyed by (member, namespace, name), and which keys a watch
//! event changed — so the controller is woken for real changes only, not for every relist.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use topology::cnpg::Cluster;

use super::key::ClusterKey;
use super::tokens::{RetainedToken, RetainedTokens};

/// Last-seen Clusters of all members, and the last demotion token each showed.
#[derive(Debug, Default)]
pub(crate) struct ClusterStore {
    objects: BTreeMap<ClusterKey, Arc<Cluster>>,
    tokens: RetainedTokens,
}

impl ClusterStore {
    pub fn get(&self, key: &ClusterKey) -> Option<Arc<Cluster>> {
        self.objects.get(key).cloned()
    }

    /// The last non-empty demotion token the Cluster showed, even if its status no longer does.
    pub fn retained_token(&self, key: &ClusterKey) -> Option<RetainedToken> {
        self.tokens.get(key).cloned()
    }

    /// Inserts or replaces; returns whether anything changed (a new resourceVersion).
    pub fn apply(&mut self, member: &str, cluster: Cluster) -> Option<ClusterKey> {
        let key = ClusterKey::of(member, &cluster);
        self.tokens.see(&key, &cluster, Timestamp::now());
        let unchanged = self
            .objects
            .get(&key)
            .is_some_and(|old| old.resource_version() == cluster.resource_version());
        self.objects.insert(key.clone(), Arc::new(cluster));
        (!unchanged).then_some(key)
    }

    pub fn delete(&mut self, key: &ClusterKey) -> Option<ClusterKey> {
        self.tokens.forget(key);
        self.objects.remove(key).map(|_| key.clone())
    }

    /// Replaces everything of `member` in `namespace` (`None`: in every namespace) with `listed`,
    /// as after a full list; returns the keys that were added, changed or removed.
    pub fn replace(
        &mut self,
        member: &str,
        namespace: Option<&str>,
        listed: Vec<Cluster>,
    ) -> Vec<ClusterKey> {
        let stale: Vec<ClusterKey> = self
            .objects
            .keys()
            .filter(|k| k.member == member && namespace.is_none_or(|ns| k.namespace == ns))
            .cloned()
            .collect();
        let mut changed = Vec::new();
        let mut kept = std::collections::BTreeSet::new();
        for cluster in listed {
            let key = ClusterKey::of(member, &cluster);
            kept.insert(key.clone());
            changed.extend(self.apply(member, cluster));
        }
        for key in stale.iter().filter(|k| !kept.contains(*k)) {
            changed.extend(self.delete(key));
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use topology::cnpg::ClusterSpec;

    fn cluster(name: &str, version: &str) -> Cluster {
        let mut c = Cluster::new(name, ClusterSpec::default());
        c.metadata.namespace = Some("databases".into());
        c.metadata.resource_version = Some(version.into());
        c
    }

    fn key(member: &str, name: &str) -> ClusterKey {
        ClusterKey {
            member: member.into(),
            namespace: "databases".into(),
            name: name.into(),
        }
    }

    #[test]
    fn apply_reports_only_new_resource_versions() {
        let mut store = ClusterStore::default();
        assert_eq!(store.apply("eu", cluster("a", "1")), Some(key("eu", "a")));
        assert_eq!(store.apply("eu", cluster("a", "1")), None);
        assert_eq!(store.apply("eu", cluster("a", "2")), Some(key("eu", "a")));
    }

    #[test]
    fn a_relist_reports_changes_and_deletions_of_that_member_only() {
        let mut store = ClusterStore::default();
        store.apply("eu", cluster("a", "1"));
        store.apply("eu", cluster("b", "1"));
        store.apply("us", cluster("a", "1"));
        let changed = store.replace(
            "eu",
            Some("databases"),
            vec![cluster("a", "1"), cluster("c", "1")],
        );
        assert_eq!(changed, [key("eu", "c"), key("eu", "b")]);
        assert!(store.get(&key("eu", "b")).is_none());
        assert!(store.get(&key("us", "a")).is_some());
        let removed = store.replace("eu", None, vec![]);
        assert_eq!(removed, [key("eu", "a"), key("eu", "c")]);
    }
}
