//! Observe: what the members' CNPG `Cluster`s look like right now, read from the member pool's
//! watch-fed stores (no request is made here), turned into the planner's pure [`Observed`]
//! snapshot and the per-member part of the topology's status.

use std::sync::Arc;

use topology::api::{Member, MemberStatus};
use topology::cnpg::Cluster;
use topology::{Observed, ObservedMember};

/// One member Cluster as the pool last saw it.
#[derive(Clone, Debug)]
pub enum MemberRead {
    /// The watcher on the member has the object.
    Seen(Arc<Cluster>),
    /// The member answers, but has no such Cluster.
    Missing,
    /// The member's first list has not completed: nothing is known yet (a change event follows).
    Syncing,
    /// The member's API server cannot be read (no credential, connection refused, watch failing).
    /// The text is safe to show: it never holds credential content.
    Unreachable(String),
}

/// What the controller needs from the member pool: the last-seen Cluster objects (kept current by
/// watchers, which also wake the controller on every change) and a client per member cluster for
/// the few patches it sends.
pub trait Members: Send + Sync + 'static {
    /// The Cluster `namespace/name` on member Kubernetes cluster `cluster`.
    fn read(&self, cluster: &str, namespace: &str, name: &str) -> MemberRead;
    /// A client for requests (not watches) to member cluster `cluster`, or why there is none.
    fn client(&self, cluster: &str) -> Result<kube::Client, String>;
    /// `text` (an error of a request made with [`client`](Self::client)) without any secret of
    /// `cluster`'s credential, so that it may go to status, Events and logs.
    fn redact(&self, cluster: &str, text: &str) -> String;
}

impl Members for crate::members::MemberPool {
    fn read(&self, cluster: &str, namespace: &str, name: &str) -> MemberRead {
        use crate::members::Lookup;
        match crate::members::MemberPool::read(self, cluster, namespace, name) {
            Lookup::Seen(object) => MemberRead::Seen(object),
            Lookup::Missing => MemberRead::Missing,
            Lookup::Syncing => MemberRead::Syncing,
            Lookup::Unreachable(why) => MemberRead::Unreachable(why),
        }
    }

    fn client(&self, cluster: &str) -> Result<kube::Client, String> {
        crate::members::MemberPool::client(self, cluster)
    }

    fn redact(&self, cluster: &str, text: &str) -> String {
        crate::members::MemberPool::redact(self, cluster, text)
    }
}

/// The members of one topology at one moment.
#[derive(Clone, Debug, Default)]
pub struct Observation {
    /// The planner's snapshot, keyed by topology name. Missing Clusters are absent (live
    /// validation reports them); unreachable members are present with `reachable: false`.
    pub observed: Observed,
    /// Per-member status lines, in `spec.members` order.
    pub members: Vec<MemberStatus>,
    /// `(member, why)` for every member that cannot be read.
    pub unreachable: Vec<(String, String)>,
    /// Members whose watcher has not completed its first list: the observation is incomplete,
    /// and the reconcile waits for the change event that follows the list.
    pub syncing: Vec<String>,
}

/// Reads every member of `members` from the pool.
pub fn observe(pool: &dyn Members, members: &[Member]) -> Observation {
    let mut observation = Observation::default();
    for member in members {
        let read = pool.read(&member.cluster, &member.namespace, member.cluster_name());
        let seen = match read {
            MemberRead::Seen(cluster) => Some(ObservedMember::from_cluster(&cluster)),
            MemberRead::Missing => None,
            MemberRead::Syncing => {
                observation.syncing.push(member.name.clone());
                Some(ObservedMember::unreachable(
                    &member.name,
                    member.cluster_name(),
                ))
            }
            MemberRead::Unreachable(why) => {
                observation.unreachable.push((member.name.clone(), why));
                Some(ObservedMember::unreachable(
                    &member.name,
                    member.cluster_name(),
                ))
            }
        };
        observation
            .members
            .push(member_status(member, seen.as_ref()));
        if let Some(m) = seen {
            observation.observed.members.insert(m.name.clone(), m);
        }
    }
    observation
}

fn member_status(member: &Member, seen: Option<&ObservedMember>) -> MemberStatus {
    let mut status = MemberStatus {
        name: member.name.clone(),
        cluster: member.cluster.clone(),
        ..MemberStatus::default()
    };
    if let Some(m) = seen.filter(|m| m.reachable) {
        status.role = m.role();
        status.phase.clone_from(&m.status.phase);
        status.timeline_id = m.status.timeline_id;
        status.system_id.clone_from(&m.status.system_id);
        status.ready = m.is_healthy();
        status.reachable = true;
    } else {
        // A missing Cluster is on a reachable member: say so, so that "unreachable" stays exact.
        status.reachable = seen.is_none();
    }
    status
}

#[cfg(test)]
pub(crate) mod fake {
    //! An in-memory member pool for unit tests of the pipeline.

    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    pub struct FakeMembers {
        pub clusters: Mutex<BTreeMap<(String, String, String), MemberRead>>,
    }

    impl FakeMembers {
        pub fn put(&self, cluster: &str, object: Cluster) {
            let key = (
                cluster.to_owned(),
                object.metadata.namespace.clone().unwrap_or_default(),
                object.metadata.name.clone().unwrap_or_default(),
            );
            self.clusters
                .lock()
                .unwrap()
                .insert(key, MemberRead::Seen(Arc::new(object)));
        }
    }

    impl Members for FakeMembers {
        fn read(&self, cluster: &str, namespace: &str, name: &str) -> MemberRead {
            let key = (cluster.to_owned(), namespace.to_owned(), name.to_owned());
            self.clusters
                .lock()
                .unwrap()
                .get(&key)
                .cloned()
                .unwrap_or(MemberRead::Unreachable(format!(
                    "{cluster} is not in the fake"
                )))
        }

        fn client(&self, cluster: &str) -> Result<kube::Client, String> {
            Err(format!("no client for {cluster} in unit tests"))
        }

        fn redact(&self, _cluster: &str, text: &str) -> String {
            text.to_owned()
        }
    }
}
