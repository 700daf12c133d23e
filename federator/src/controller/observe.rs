//! Observe: what the members' CNPG `Cluster`s look like right now, read from the member pool's
//! watch-fed stores (no request is made here), turned into the planner's pure [`Observed`]
//! snapshot and the per-member part of the topology's status.
//!
//! One exception to "right now": while a switchover waits for the old primary's demotion token,
//! a token that member showed after the Demote step began but that a later update wiped (CNPG
//! #11074, possibly before any reconcile ran) is observed as if still there, so the planner
//! persists it instead of holding `TokenLost`.

use std::sync::Arc;

use topology::api::{Member, MemberStatus, Operation};
use topology::cnpg::Cluster;
use topology::{Observed, ObservedMember, OperationKind, StepKind};

use crate::members::RetainedToken;

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
    /// The last non-empty demotion token the Cluster showed, even if its status no longer does.
    fn retained_demotion_token(
        &self,
        _cluster: &str,
        _namespace: &str,
        _name: &str,
    ) -> Option<RetainedToken> {
        None
    }
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

    fn retained_demotion_token(
        &self,
        cluster: &str,
        namespace: &str,
        name: &str,
    ) -> Option<RetainedToken> {
        crate::members::MemberPool::retained_demotion_token(self, cluster, namespace, name)
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
    /// The automatic-failover vote round of this reconcile (hub ballot, members' ballots, agent
    /// reports), when `spec.automaticFailover` is armed; collected at the edge.
    pub votes: Option<crate::autofailover::hub::Votes>,
    /// This reconcile's look at the switchover's running hook (`spec.hooks`), run at the edge.
    pub hook: Option<topology::plan::HookLook>,
}

impl Observation {
    /// Counts `member` as unreadable, as if the pool's watches had failed with `why`: the hub's
    /// automatic-failover reach probe found its API server silent before the pool's liveness
    /// timeout did. What the pool last saw of it becomes stale (the status keeps it as such).
    pub fn mark_unreachable(&mut self, member: &str, why: &str) {
        if self.unreachable.iter().any(|(m, _)| m == member) {
            return;
        }
        let Some(seen) = self.observed.members.get_mut(member) else {
            return;
        };
        *seen = ObservedMember::unreachable(&seen.name, &seen.cluster_name);
        if let Some(line) = self.members.iter_mut().find(|m| m.name == member) {
            *line = MemberStatus {
                name: line.name.clone(),
                cluster: line.cluster.clone(),
                ..MemberStatus::default()
            };
        }
        self.unreachable.push((member.to_owned(), why.to_owned()));
    }
}

/// Reads every member of `members` from the pool, as they are now.
#[cfg_attr(not(test), allow(dead_code))]
pub fn observe(pool: &dyn Members, members: &[Member]) -> Observation {
    observe_during(pool, members, None)
}

/// Reads every member of `members` from the pool; `operation` is the topology's operation in
/// progress (it decides whether a wiped demotion token is still observed).
pub fn observe_during(
    pool: &dyn Members,
    members: &[Member],
    operation: Option<&Operation>,
) -> Observation {
    let mut observation = Observation::default();
    for member in members {
        let read = pool.read(&member.cluster, &member.namespace, member.cluster_name());
        let seen = match read {
            MemberRead::Seen(cluster) => {
                let mut seen = ObservedMember::from_cluster(&cluster);
                if seen.status.demotion_token.is_none() {
                    seen.status.demotion_token = pool
                        .retained_demotion_token(
                            &member.cluster,
                            &member.namespace,
                            member.cluster_name(),
                        )
                        .filter(|kept| belongs_to(kept, &member.name, &cluster, operation))
                        .map(|kept| {
                            tracing::info!(
                                member = %member.name,
                                "the demotion token is no longer in the member's status; using the one its watch saw during this demotion (CNPG #11074)"
                            );
                            kept.token
                        });
                }
                Some(seen)
            }
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

/// Whether `kept`, a demotion token member `member` (`cluster` now) showed earlier, is the token
/// of `operation`'s demotion: only while a switchover waits for the token of its old primary (the
/// persisted token takes over after), only from the same Cluster object (uid), on the timeline
/// it reports, and first seen after the Demote step began — never an older demotion's token.
fn belongs_to(
    kept: &RetainedToken,
    member: &str,
    cluster: &Cluster,
    operation: Option<&Operation>,
) -> bool {
    let Some(op) = operation else {
        return false;
    };
    let waiting = matches!(
        op.step,
        StepKind::Demote | StepKind::AwaitDemotionStarted | StepKind::AwaitToken
    );
    if op.kind != OperationKind::Switchover
        || !waiting
        || op.rolled_back
        || op.token.is_some()
        || op.from != member
    {
        return false;
    }
    let Some(demote_started) = op
        .steps
        .iter()
        .rev()
        .find(|s| s.step == StepKind::Demote)
        .map(|s| s.started_at.0)
    else {
        return false;
    };
    let same_object = cluster.metadata.uid.as_deref() == Some(kept.uid.as_str());
    let same_timeline = match (
        kept.timeline,
        cluster.status.as_ref().and_then(|s| s.timeline_id),
    ) {
        (Some(token), Some(reported)) => i64::from(token) == reported,
        _ => true,
    };
    same_object && same_timeline && kept.seen_at >= demote_started
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
        /// What the pool's watch kept of wiped demotion tokens.
        pub retained: Mutex<BTreeMap<(String, String, String), RetainedToken>>,
        /// Clients for requests to member clusters (`crate::fake_api`), by cluster.
        pub clients: Mutex<BTreeMap<String, kube::Client>>,
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
            self.clients
                .lock()
                .unwrap()
                .get(cluster)
                .cloned()
                .ok_or_else(|| format!("no client for {cluster} in this test"))
        }

        fn redact(&self, _cluster: &str, text: &str) -> String {
            text.to_owned()
        }

        fn retained_demotion_token(
            &self,
            cluster: &str,
            namespace: &str,
            name: &str,
        ) -> Option<RetainedToken> {
            let key = (cluster.to_owned(), namespace.to_owned(), name.to_owned());
            self.retained.lock().unwrap().get(&key).cloned()
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;
    use topology::api::Operation;
    use topology::cnpg::{ClusterSpec, ClusterStatus};
    use topology::plan::Transition;

    use super::fake::FakeMembers;
    use super::*;

    const TOKEN: &str = "the-token-of-this-demotion";

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).unwrap()
    }

    fn members() -> Vec<Member> {
        ["a", "b"]
            .map(|name| Member {
                name: name.into(),
                cluster: format!("k8s-{name}"),
                namespace: "databases".into(),
                cluster_name: None,
            })
            .to_vec()
    }

    /// a (uid `uid-a`, timeline 1) demoted, its token wiped; b a replica; the pool kept `kept`.
    fn pool(kept: RetainedToken) -> FakeMembers {
        let pool = FakeMembers::default();
        for name in ["a", "b"] {
            let mut c = Cluster::new(name, ClusterSpec::default());
            c.metadata.namespace = Some("databases".into());
            c.metadata.uid = Some(format!("uid-{name}"));
            c.status = Some(ClusterStatus {
                timeline_id: Some(1),
                ..ClusterStatus::default()
            });
            pool.put(&format!("k8s-{name}"), c);
        }
        pool.retained
            .lock()
            .unwrap()
            .insert(("k8s-a".into(), "databases".into(), "a".into()), kept);
        pool
    }

    fn kept(seen_at: Timestamp) -> RetainedToken {
        RetainedToken {
            uid: "uid-a".into(),
            timeline: Some(1),
            token: TOKEN.into(),
            seen_at,
        }
    }

    /// A switchover a → b whose Demote step began at second 10, now at `step`.
    fn operation(step: StepKind) -> Operation {
        let mut op = Operation::new(
            "1-a-to-b".into(),
            OperationKind::Switchover,
            "a",
            "b",
            at(0),
        );
        if step == StepKind::Validate {
            return op;
        }
        for next in [
            StepKind::Demote,
            StepKind::AwaitDemotionStarted,
            StepKind::AwaitToken,
        ] {
            let transition = Transition {
                next,
                token: None,
                rollback: false,
            };
            op.record(&transition, Some("a".into()), at(10));
            if next == step {
                break;
            }
        }
        op
    }

    fn token_of(observation: &Observation, member: &str) -> Option<String> {
        observation.observed.members[member]
            .status
            .demotion_token
            .clone()
    }

    #[test]
    fn a_wiped_token_of_this_demotion_is_observed_while_awaiting_it() {
        let pool = pool(kept(at(11)));
        for step in [
            StepKind::Demote,
            StepKind::AwaitDemotionStarted,
            StepKind::AwaitToken,
        ] {
            let op = operation(step);
            let observation = observe_during(&pool, &members(), Some(&op));
            assert_eq!(
                token_of(&observation, "a").as_deref(),
                Some(TOKEN),
                "{step}"
            );
            assert_eq!(token_of(&observation, "b"), None);
        }
        // Without an operation, the members are observed as they are.
        assert_eq!(token_of(&observe(&pool, &members()), "a"), None);
    }

    #[test]
    fn a_kept_token_is_refused_when_it_may_not_belong_to_this_demotion() {
        let op = operation(StepKind::AwaitToken);
        let refused = |pool: &FakeMembers, op: &Operation, why: &str| {
            let observation = observe_during(pool, &members(), Some(op));
            assert_eq!(token_of(&observation, "a"), None, "{why}");
        };
        // Seen before the Demote step began: an earlier demotion's token.
        refused(&pool(kept(at(9))), &op, "older than the operation");
        // A Cluster re-created under the same name.
        let other_object = RetainedToken {
            uid: "uid-old".into(),
            ..kept(at(11))
        };
        refused(&pool(other_object), &op, "another uid");
        // A token of another timeline than the one the Cluster reports.
        let other_timeline = RetainedToken {
            timeline: Some(3),
            ..kept(at(11))
        };
        refused(&pool(other_timeline), &op, "another timeline");

        let pool = pool(kept(at(11)));
        let mut persisted = op.clone();
        persisted.token = Some("persisted".into());
        refused(&pool, &persisted, "the persisted token rules");
        let mut rolled_back = op.clone();
        rolled_back.rolled_back = true;
        refused(&pool, &rolled_back, "after a rollback");
        let mut failover = op.clone();
        failover.kind = OperationKind::Failover;
        refused(&pool, &failover, "a failover has no token");
        let mut later = op.clone();
        later.step = StepKind::CheckToken;
        refused(&pool, &later, "past AwaitToken");
        let mut reversed = op.clone();
        (reversed.from, reversed.to) = ("b".into(), "a".into());
        refused(&pool, &reversed, "a is not the member being demoted");
        let validate = operation(StepKind::Validate);
        refused(&pool, &validate, "before the Demote step");
    }

    #[test]
    fn a_member_the_reach_probe_finds_silent_is_unreadable_like_a_failed_watch() {
        let pool = pool(kept(at(11)));
        let mut observation = observe(&pool, &members());
        assert!(observation.observed.members["a"].reachable);
        observation.mark_unreachable("a", "did not answer GET /version within 1.00s");
        let a = &observation.observed.members["a"];
        assert!(!a.reachable);
        assert_eq!(a.replica, None, "nothing stale is decided on");
        assert!(!observation.members[0].reachable);
        assert_eq!(observation.members[0].timeline_id, None);
        assert_eq!(
            observation.unreachable,
            vec![(
                "a".into(),
                "did not answer GET /version within 1.00s".into()
            )]
        );
        // Once is enough: the pool's own reason, when it has one, stays.
        observation.mark_unreachable("a", "again");
        assert_eq!(observation.unreachable.len(), 1);
        assert!(observation.observed.members["b"].reachable);
    }
}
