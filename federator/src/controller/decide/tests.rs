//! The pipeline's pure part driven against a tiny CNPG simulation: every patch the controller
//! decides is applied to fake Clusters, which react the way contract §5 says, and the status
//! the controller decided is fed back as if the write had succeeded.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::ObjectMeta;
use serde_json::json;
use topology::api::{DistributedTopologySpec, FailoverRequest, Member, Outcome, ShapeSpec};
use topology::cnpg::{
    Cluster, ClusterSpec, ClusterStatus, ExternalCluster, InstanceReportedState, ReplicaSpec, Role,
    SwitchReplicaClusterStatus, condition, phase, phase_reason,
};
use topology::conditions::{kind, reason};
use topology::plan::patch;
use topology::token::PromotionToken;
use topology::{DistributedTopology, StepKind};

use super::*;
use crate::controller::observe::fake::FakeMembers;
use crate::controller::observe::observe;

const SYSID: &str = "7400000000000000001";

/// How the fake CNPG behaves.
#[derive(Clone, Copy, Default)]
pub(crate) struct Faults {
    /// The old primary never produces a token.
    pub(crate) no_token: bool,
    /// This member rejects any token as fatal.
    fatal_token_on: Option<&'static str>,
}

pub(crate) struct Sim {
    pub(crate) topo: DistributedTopology,
    clusters: BTreeMap<String, Cluster>,
    pub(crate) now: Timestamp,
    pub(crate) faults: Faults,
    patches: Vec<(StepKind, String)>,
    /// Members whose API server cannot be read.
    down: BTreeSet<String>,
    /// The automatic-failover vote round each reconcile sees.
    votes: Option<super::autofailover::Votes>,
    /// What each member's instance reports at `/pg/status` when the controller reads it.
    wal: BTreeMap<String, topology::InstanceWal>,
}

fn member(name: &str) -> Member {
    Member {
        name: name.into(),
        cluster: format!("k8s-{name}"),
        namespace: "databases".into(),
        cluster_name: None,
    }
}

fn cluster(name: &str, names: &[&str], primary: &str, source: &str) -> Cluster {
    let mut c = Cluster::new(
        name,
        ClusterSpec {
            instances: 1,
            replica: Some(ReplicaSpec {
                source: source.into(),
                primary: Some(primary.into()),
                ..ReplicaSpec::default()
            }),
            external_clusters: names
                .iter()
                .map(|n| {
                    serde_json::from_value::<ExternalCluster>(
                        json!({"name": n, "connectionParameters": {"host": n}}),
                    )
                    .unwrap()
                })
                .collect(),
            ..ClusterSpec::default()
        },
    );
    c.metadata.namespace = Some("databases".into());
    c.status = Some(ClusterStatus {
        phase: Some(phase::HEALTHY.into()),
        ready_instances: Some(1),
        system_id: Some(SYSID.into()),
        timeline_id: (name == primary).then_some(1),
        ..ClusterStatus::default()
    });
    c
}

impl Sim {
    /// A ring of `names`, the first one primary.
    pub(crate) fn ring(names: &[&str]) -> Sim {
        let spec = DistributedTopologySpec {
            members: names.iter().map(|n| member(n)).collect(),
            shape: ShapeSpec {
                ring: Some(names.iter().map(|n| (*n).to_owned()).collect()),
                ..ShapeSpec::default()
            },
            primary: names[0].into(),
            policies: policies::load_defaults().unwrap(),
            rotation: None,
            failover: None,
            automatic_failover: None,
            hooks: Default::default(),
        };
        let mut topo = DistributedTopology::new("pg", spec);
        topo.metadata = ObjectMeta {
            name: Some("pg".into()),
            namespace: Some("db".into()),
            generation: Some(1),
            ..ObjectMeta::default()
        };
        let clusters = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let source = names[(i + names.len() - 1) % names.len()];
                (n.to_string(), cluster(n, names, names[0], source))
            })
            .collect();
        Sim {
            topo,
            clusters,
            now: Timestamp::from_second(1_800_000_000).unwrap(),
            faults: Faults::default(),
            patches: Vec::new(),
            down: BTreeSet::new(),
            votes: None,
            wal: BTreeMap::new(),
        }
    }

    pub(crate) fn pool(&self) -> FakeMembers {
        let pool = FakeMembers::default();
        for (name, c) in self
            .clusters
            .iter()
            .filter(|(n, _)| !self.down.contains(*n))
        {
            pool.put(&format!("k8s-{name}"), c.clone());
        }
        // Members listed in the topology without a Cluster: their API server answers "none".
        for m in &self.topo.spec.members {
            if !self.clusters.contains_key(&m.name) && !self.down.contains(&m.name) {
                let key = (m.cluster.clone(), m.namespace.clone(), m.name.clone());
                pool.clusters
                    .lock()
                    .unwrap()
                    .insert(key, crate::controller::observe::MemberRead::Missing);
            }
        }
        pool
    }

    fn decide(&mut self) -> Decided {
        let mut observation = observe(&self.pool(), &self.topo.spec.members);
        observation.votes.clone_from(&self.votes);
        for (name, wal) in &self.wal {
            if let Some(m) = observation.observed.members.get_mut(name) {
                m.status.wal = Some(wal.clone());
            }
        }
        let decided = decide_status(&self.topo, &observation, self.now);
        // As if the status write succeeded.
        self.topo.status = Some(decided.status.clone());
        decided
    }

    /// Primaries by spec among the readable members (an unreadable old primary keeps saying
    /// primary until it can be fenced).
    fn primaries_by_spec(&self) -> usize {
        self.clusters
            .iter()
            .filter(|(n, _)| !self.down.contains(*n))
            .map(|(_, c)| c)
            .filter(|c| c.role() == Role::Primary)
            .count()
    }

    /// Applies a merge patch, then lets the fake CNPG react.
    pub(crate) fn patch(&mut self, step: StepKind, name: &str, p: &serde_json::Value) {
        assert!(
            !self.down.contains(name),
            "{step} patch sent to unreadable {name}"
        );
        self.patches.push((step, name.to_owned()));
        let c = self.clusters.get_mut(name).unwrap();
        let was = c.role();
        let replica = patch::apply(c.spec.replica.as_ref(), p);
        c.spec.replica = replica;
        let now = self.now;
        let role = c.role();
        let spec_token = c
            .spec
            .replica
            .as_ref()
            .and_then(|r| r.promotion_token.clone());
        let status = c.status.get_or_insert_with(ClusterStatus::default);
        match (was, role) {
            (Role::Primary, Role::Replica) => {
                status.switch_replica_cluster_status =
                    Some(SwitchReplicaClusterStatus { in_progress: true });
                if !self.faults.no_token {
                    let tl = status.timeline_id.unwrap_or(1);
                    let token = PromotionToken {
                        latest_checkpoint_timeline_id: tl.to_string(),
                        redo_wal_file: format!("{tl:08X}0000000000000005"),
                        database_system_identifier: SYSID.into(),
                        latest_checkpoint_redo_location: "0/5000028".into(),
                        time_of_latest_checkpoint: "Mon Nov 23 06:00:00 2026".into(),
                        operator_version: "1.27.1".into(),
                    };
                    status.demotion_token = Some(token.encode());
                    status.switch_replica_cluster_status =
                        Some(SwitchReplicaClusterStatus { in_progress: false });
                    status.conditions = vec![Condition {
                        type_: condition::REPLICA_CLUSTER_SWITCH.into(),
                        status: "True".into(),
                        reason: "ReplicaEnabledSetTrue".into(),
                        message: "Completed the Replica cluster transition".into(),
                        observed_generation: None,
                        last_transition_time: Time(now),
                    }];
                }
            }
            (_, Role::Primary) => match spec_token {
                Some(_) if self.faults.fatal_token_on == Some(name) => {
                    status.phase = Some(phase::UNRECOVERABLE.into());
                    status.phase_reason = Some(phase_reason::TOKEN_NOT_CORRECT.into());
                }
                Some(t) if status.last_promotion_token.as_ref() != Some(&t) => {
                    let tl = PromotionToken::parse(&t).unwrap().timeline().unwrap();
                    status.last_promotion_token = Some(t);
                    status.timeline_id = Some(i64::from(tl) + 1);
                    status.demotion_token = None;
                    status.phase = Some(phase::HEALTHY.into());
                    status.phase_reason = None;
                }
                // A failover: the designated primary is promoted at once (contract §5.3).
                None if was == Role::Replica => {
                    let tl = status.timeline_id.unwrap_or(1) + 1;
                    status.timeline_id = Some(tl);
                    status.instances_reported_state = Some(BTreeMap::from([(
                        format!("{name}-1"),
                        InstanceReportedState {
                            is_primary: true,
                            timeline_id: Some(tl),
                            ip: None,
                        },
                    )]));
                }
                None => status.last_promotion_token = None,
                Some(_) => {}
            },
            (Role::Replica, Role::Replica) => {
                if spec_token.is_none() {
                    // A fatal token error clears once the token is removed.
                    if status.phase.as_deref() == Some(phase::UNRECOVERABLE) {
                        status.phase = Some(phase::HEALTHY.into());
                        status.phase_reason = None;
                    }
                }
            }
        }
    }

    /// Reconciles until the controller stops acting; returns the last decision.
    fn run(&mut self, limit: usize) -> Decided {
        for _ in 0..limit {
            self.now += SignedDuration::from_millis(100);
            let decided = self.decide();
            assert!(self.primaries_by_spec() <= 1, "two primaries by spec");
            match &decided.effect {
                Some(action) => {
                    let (step, member, p) =
                        (action.step, action.member.clone(), action.patch.clone());
                    self.patch(step, &member, &p);
                    assert!(
                        self.primaries_by_spec() <= 1,
                        "two primaries by spec after {step} on {member}"
                    );
                }
                None => return decided,
            }
        }
        panic!("no quiescence after {limit} reconciles");
    }

    /// Member `name`'s Cluster, to change what the members show.
    pub(crate) fn cluster_mut(&mut self, name: &str) -> &mut Cluster {
        self.clusters.get_mut(name).expect("a member")
    }

    pub(crate) fn switch_to(&mut self, to: &str) {
        self.topo.spec.primary = to.into();
        self.topo.metadata.generation = self.topo.metadata.generation.map(|g| g + 1);
    }

    fn condition(&self, type_: &str) -> Condition {
        let status = self.topo.status.as_ref().unwrap();
        status
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .unwrap()
            .clone()
    }
}

#[test]
fn idle_topology_is_ready_and_changes_nothing() {
    let mut sim = Sim::ring(&["a", "b", "c"]);
    let decided = sim.run(5);
    assert!(decided.effect.is_none());
    assert!(sim.patches.is_empty());
    assert_eq!(sim.condition(kind::READY).status, "True");
    assert_eq!(sim.condition(kind::SWITCHOVER_IN_PROGRESS).status, "False");
    assert_eq!(sim.condition(kind::VALID).status, "True");
    assert_eq!(sim.condition(kind::READY).observed_generation, Some(1));
}

#[test]
fn full_ring_rotation_demotes_before_promoting_and_clears_tokens() {
    let mut sim = Sim::ring(&["a", "b", "c"]);
    for to in ["b", "c", "a"] {
        sim.patches.clear();
        sim.switch_to(to);
        let decided = sim.run(40);
        assert!(decided.effect.is_none());
        let status = sim.topo.status.clone().unwrap();
        assert!(status.operation.is_none(), "{:?}", status.operation);
        let last = status.history.last().unwrap();
        assert_eq!(last.outcome, Some(Outcome::Succeeded));
        assert_eq!(last.to, to);
        let steps: Vec<StepKind> = last.steps().unwrap().iter().map(|s| s.step).collect();
        assert_eq!(
            steps,
            [
                StepKind::Validate,
                StepKind::Demote,
                StepKind::AwaitDemotionStarted,
                StepKind::AwaitToken,
                StepKind::CheckToken,
                StepKind::Promote,
                StepKind::AwaitPromotion,
                StepKind::Bookkeeping,
                StepKind::ClearToken,
                StepKind::Done,
            ]
        );
        // Demote strictly before Promote; every patch is one member.
        let kinds: Vec<StepKind> = sim.patches.iter().map(|(s, _)| *s).collect();
        let demote = kinds.iter().position(|k| *k == StepKind::Demote).unwrap();
        let promote = kinds.iter().position(|k| *k == StepKind::Promote).unwrap();
        assert!(demote < promote, "{kinds:?}");
        assert_eq!(sim.clusters[to].role(), Role::Primary);
        assert!(
            sim.clusters[to]
                .spec
                .replica
                .as_ref()
                .unwrap()
                .promotion_token
                .is_none()
        );
        assert_eq!(
            sim.condition(kind::READY).status,
            "True",
            "{:?}",
            sim.condition(kind::READY)
        );
        assert_eq!(
            sim.condition(kind::SWITCHOVER_IN_PROGRESS).reason,
            reason::IDLE
        );
    }
    assert_eq!(sim.topo.status.unwrap().history.len(), 3);
}

#[test]
fn a_token_that_never_comes_holds_past_the_deadline_and_never_promotes() {
    let mut sim = Sim::ring(&["a", "b"]);
    sim.faults.no_token = true;
    sim.switch_to("b");
    let decided = sim.run(20);
    let wait = decided.requeue_after.expect("a deadline timer");
    assert!(wait > std::time::Duration::from_secs(60), "{wait:?}");
    // The timer fires after the deadline.
    sim.now += SignedDuration::from_secs(400);
    let decided = sim.run(5);
    let op = sim.topo.status.as_ref().unwrap().operation.clone().unwrap();
    assert_eq!(op.hold.as_ref().unwrap().reason, reason::TOKEN_TIMEOUT);
    assert!(
        decided
            .events
            .iter()
            .any(|e| e.warning && e.reason == reason::TOKEN_TIMEOUT)
    );
    assert!(!sim.patches.iter().any(|(s, _)| *s == StepKind::Promote));
    assert_eq!(sim.primaries_by_spec(), 0);
    let in_progress = sim.condition(kind::SWITCHOVER_IN_PROGRESS);
    assert_eq!(
        (in_progress.status.as_str(), in_progress.reason.as_str()),
        ("True", reason::TOKEN_TIMEOUT)
    );
    // The hold is not re-announced on every reconcile.
    let again = sim.run(2);
    assert!(again.events.is_empty(), "{:?}", again.events);
}

#[test]
fn a_fatal_token_error_rolls_back_to_the_old_primary() {
    let mut sim = Sim::ring(&["a", "b"]);
    sim.faults.fatal_token_on = Some("b");
    sim.switch_to("b");
    // b rejects a's token; b is put back, then a is promoted with its own token.
    let decided = sim.run(30);
    assert!(decided.effect.is_none());
    let status = sim.topo.status.clone().unwrap();
    let last = status
        .history
        .last()
        .unwrap_or_else(|| panic!("not finished: {:#?}\n{:#?}", status.operation, sim.patches));
    assert_eq!(last.outcome, Some(Outcome::RolledBack));
    assert!(
        last.steps()
            .unwrap()
            .iter()
            .any(|s| s.step == StepKind::RollbackTarget)
    );
    assert_eq!(sim.clusters["a"].role(), Role::Primary);
    assert_eq!(sim.clusters["b"].role(), Role::Replica);
    assert!(
        sim.patches
            .iter()
            .any(|(s, m)| *s == StepKind::RollbackTarget && m == "b")
    );
    // Not started again for the same spec (it would roll back again, each time with an
    // outage): later reconciles send nothing and Ready says why and how to retry.
    let patches = sim.patches.len();
    for _ in 0..3 {
        let again = sim.run(5);
        assert!(again.effect.is_none() && again.status.operation.is_none());
    }
    assert_eq!(sim.patches.len(), patches, "{:?}", &sim.patches[patches..]);
    let ready = sim.condition(kind::READY);
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", reason::ROLLED_BACK)
    );
    assert!(
        ready.message.contains("set spec.primary to a"),
        "{}",
        ready.message
    );
    // A new spec lifts it (here: back to the primary there is).
    sim.switch_to("a");
    sim.run(5);
    assert_ne!(sim.condition(kind::READY).reason, reason::ROLLED_BACK);
}

#[test]
fn an_invalid_topology_changes_nothing_and_says_why() {
    let mut sim = Sim::ring(&["a", "b"]);
    sim.topo.spec.shape.ring = Some(vec!["a".into(), "zz".into()]);
    sim.switch_to("b");
    let decided = sim.run(3);
    assert!(decided.effect.is_none() && sim.patches.is_empty());
    let valid = sim.condition(kind::VALID);
    assert_eq!(
        (valid.status.as_str(), valid.reason.as_str()),
        ("False", reason::VALIDATION_FAILED)
    );
    assert!(valid.message.contains("zz"), "{}", valid.message);
    assert!(sim.topo.status.unwrap().operation.is_none());
}

#[test]
fn a_refused_dry_run_holds_before_the_first_change() {
    let mut sim = Sim::ring(&["a", "b"]);
    sim.switch_to("b");
    sim.now += SignedDuration::from_millis(100);
    let observation = observe(&sim.pool(), &sim.topo.spec.members);
    let mut decided = decide_status(&sim.topo, &observation, sim.now);
    assert_eq!(
        decided.effect.as_ref().map(|a| a.step),
        Some(StepKind::Demote)
    );
    refuse(
        &mut decided,
        None,
        "denied by the webhook".into(),
        Some(2),
        sim.now,
    );
    assert!(decided.effect.is_none());
    let op = decided.status.operation.clone().unwrap();
    let hold = op.hold.clone().unwrap();
    assert_eq!(hold.reason, reason::VALIDATION_FAILED);
    assert!(hold.message.contains("denied by the webhook"));
    assert!(
        decided
            .events
            .iter()
            .any(|e| e.warning && e.reason == reason::VALIDATION_FAILED)
    );
    let valid = decided
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == kind::VALID)
        .unwrap();
    assert_eq!(valid.status, "False");

    // The same refusal on the next reconcile is not announced again.
    let mut again = decide_status(&sim.topo, &observation, sim.now);
    refuse(
        &mut again,
        Some(&hold),
        "denied by the webhook".into(),
        Some(2),
        sim.now,
    );
    assert!(
        !again
            .events
            .iter()
            .any(|e| e.reason == reason::VALIDATION_FAILED)
    );
}

impl Sim {
    fn request_failover(&mut self, to: &str, accept_data_loss: bool, at: &str) {
        self.topo.spec.primary = to.into();
        self.topo.spec.failover = Some(FailoverRequest {
            to: to.into(),
            accept_data_loss,
            requested_at: Some(at.into()),
        });
        self.topo.metadata.generation = self.topo.metadata.generation.map(|g| g + 1);
    }

    fn ready(&self) -> Condition {
        self.condition(kind::READY)
    }
}

#[test]
fn without_a_failover_request_an_unreadable_primary_blocks_the_switchover_and_says_how() {
    let mut sim = Sim::ring(&["a", "b", "c"]);
    sim.run(3);
    sim.down.insert("a".into());
    sim.switch_to("b");
    let decided = sim.run(3);
    assert!(sim.patches.is_empty(), "{:?}", sim.patches);
    assert!(decided.effect.is_none());
    let ready = sim.ready();
    assert_eq!(ready.reason, "PrimaryUnreachable");
    assert!(
        ready.message.contains("--accept-data-loss"),
        "{}",
        ready.message
    );
    let status = sim.topo.status.clone().unwrap();
    assert!(status.operation.is_none() && status.last_failover.is_none());
    // The stale values of the unreadable member are kept, with since when.
    let a = status.members.iter().find(|m| m.name == "a").unwrap();
    assert!(!a.reachable && a.unreachable_since.is_some());
    assert_eq!((a.role, a.timeline_id), (Some(Role::Primary), Some(1)));
}

#[test]
fn an_unacknowledged_failover_changes_nothing_and_says_what_is_missing() {
    let mut sim = Sim::ring(&["a", "b"]);
    sim.run(3);
    sim.down.insert("a".into());
    sim.request_failover("b", false, "t1");
    let decided = sim.decide();
    assert!(decided.effect.is_none());
    assert_eq!(sim.ready().reason, "FailoverNotAcknowledged");
    assert!(sim.ready().message.contains("acceptDataLoss"));
    assert!(
        decided
            .events
            .iter()
            .any(|e| e.warning && e.reason == "FailoverNotAcknowledged")
    );
    // Announced once, not at every reconcile.
    assert!(
        sim.decide()
            .events
            .iter()
            .all(|e| e.reason != "FailoverNotAcknowledged")
    );
    assert!(sim.topo.status.as_ref().unwrap().last_failover.is_none());
}

#[test]
fn a_failover_is_refused_while_the_primary_can_be_read() {
    let mut sim = Sim::ring(&["a", "b"]);
    sim.run(3);
    sim.request_failover("b", true, "t1");
    let decided = sim.run(3);
    assert!(decided.effect.is_none());
    assert!(sim.patches.is_empty(), "{:?}", sim.patches);
    assert_eq!(sim.ready().reason, "FailoverRefused");
    assert!(
        sim.ready().message.contains("switchover"),
        "{}",
        sim.ready().message
    );
    let last = sim.topo.status.clone().unwrap().last_failover.unwrap();
    assert!(last.refused.is_some() && last.operation.is_none());
    // The primary going away later does not revive a refused request.
    sim.down.insert("a".into());
    sim.run(3);
    assert!(sim.patches.is_empty(), "{:?}", sim.patches);
    // Removing the request lets the planned switchover run once a is back.
    sim.down.clear();
    sim.topo.spec.failover = None;
    sim.run(40);
    assert_eq!(sim.clusters["b"].role(), Role::Primary);
    assert_eq!(
        sim.topo.status.unwrap().history.last().unwrap().kind,
        OperationKind::Switchover
    );
}

#[test]
fn a_failover_promotes_without_a_token_records_the_window_and_fences_the_old_primary_on_return() {
    let mut sim = Sim::ring(&["a", "b", "c"]);
    sim.run(3);
    sim.down.insert("a".into());
    sim.run(3);
    sim.request_failover("b", true, "t1");
    let decided = sim.run(20);
    assert!(decided.effect.is_none());
    // One promotion without a token, then c follows b; a is never patched while unreadable.
    assert_eq!(
        sim.patches,
        [
            (StepKind::Promote, "b".to_owned()),
            (StepKind::Bookkeeping, "c".to_owned())
        ]
    );
    let b = &sim.clusters["b"];
    assert_eq!(b.role(), Role::Primary);
    assert!(b.spec.replica.as_ref().unwrap().promotion_token.is_none());
    let status = sim.topo.status.clone().unwrap();
    assert!(status.operation.is_none());
    let op = status.history.last().unwrap();
    assert_eq!(
        (op.kind, op.outcome),
        (OperationKind::Failover, Some(Outcome::Succeeded))
    );
    let steps: Vec<StepKind> = op.steps().unwrap().iter().map(|s| s.step).collect();
    assert!(!steps.contains(&StepKind::Demote) && !steps.contains(&StepKind::AwaitToken));
    let report = status.last_failover.clone().unwrap();
    assert_eq!(report.operation.as_deref(), Some(op.id.as_str()));
    let window = report.data_loss.unwrap();
    assert_eq!(window.old_primary_timeline, Some(1));
    assert_eq!(window.new_primary_timeline, Some(2));
    assert!(window.promoted_at.is_some() && window.old_primary_unreachable_since.is_some());
    assert!(
        window.summary.contains("Writes a acknowledged"),
        "{}",
        window.summary
    );
    assert!(
        window
            .unknown
            .iter()
            .any(|u| u.contains("00000002.history"))
    );
    assert_eq!(status.fenced_members.len(), 1);
    assert!(status.fenced_members[0].fenced_at.is_none());

    // a comes back still primary by its own spec: the very next patch fences it.
    sim.down.clear();
    let decided = sim.decide();
    let fence = decided.effect.expect("a fence patch");
    assert_eq!(fence.member, "a");
    assert_eq!(fence.patch["spec"]["replica"]["primary"], "b");
    sim.patch(fence.step, "a", &fence.patch);
    assert_eq!(sim.primaries_by_spec(), 1);
    let decided = sim.decide();
    assert!(decided.effect.is_none());
    assert!(decided.events.iter().any(|e| e.reason == "Fenced"));
    let fenced = &sim.topo.status.as_ref().unwrap().fenced_members[0];
    assert!(fenced.fenced_at.is_some() && fenced.needs_reclone);

    // The same request is never acted on twice: moving to c and back to b while c is away
    // asks for a switchover, which cannot start.
    sim.switch_to("c");
    sim.run(40);
    assert_eq!(sim.clusters["c"].role(), Role::Primary);
    sim.patches.clear();
    sim.down.insert("c".into());
    sim.switch_to("b");
    sim.run(3);
    assert!(sim.patches.is_empty(), "{:?}", sim.patches);
    assert_eq!(sim.ready().reason, "PrimaryUnreachable");

    // Deleting a's Cluster (a re-clone) clears its entry.
    sim.down.clear();
    sim.clusters.remove("a");
    let decided = sim.decide();
    assert!(
        decided.events.iter().any(|e| e.reason == "RecloneStarted"),
        "{:?} {:?}",
        decided.events,
        sim.topo.status
    );
    assert!(sim.topo.status.unwrap().fenced_members.is_empty());
}

fn wal_at(primary: bool, lsn: &str) -> topology::InstanceWal {
    topology::InstanceWal::At {
        primary,
        lsn: lsn.parse().unwrap(),
        timeline: Some(1),
    }
}

/// The last failover's data-loss window.
fn window(sim: &Sim) -> topology::api::DataLossWindow {
    let status = sim.topo.status.clone().unwrap();
    status.last_failover.unwrap().data_loss.unwrap()
}

#[test]
fn the_failover_report_says_how_far_a_returned_old_primary_wrote_past_the_target() {
    let mut sim = Sim::ring(&["a", "b", "c"]);
    sim.run(3);
    sim.down.insert("a".into());
    sim.run(3);
    // b had received a's WAL up to 0/5000000 when the failover started.
    sim.wal.insert("b".into(), wal_at(false, "0/5000000"));
    sim.request_failover("b", true, "t1");
    sim.run(20);
    let w = window(&sim);
    assert_eq!(w.target_received_lsn.as_deref(), Some("0/5000000"));
    assert!(
        w.summary.contains("up to 0/5000000 before its promotion"),
        "{}",
        w.summary
    );
    assert!(
        w.unknown[0].contains("at or after 0/5000000"),
        "{:?}",
        w.unknown
    );
    assert!(w.old_primary_returned.is_none());
    // Kept while a is away: what it did is not known yet.
    assert!(
        w.unknown
            .iter()
            .any(|u| u.contains("kept accepting writes"))
    );

    // a was cut off, not down: back, it is still a primary, 4 KiB of WAL past b.
    sim.down.clear();
    sim.wal.insert("a".into(), wal_at(true, "0/5001000"));
    let fence = sim.decide().effect.expect("the fence");
    assert_eq!(fence.member, "a");
    sim.patch(fence.step, "a", &fence.patch);
    let w = window(&sim);
    let back = w.old_primary_returned.clone().expect("a's return recorded");
    assert!(back.primary);
    assert_eq!(back.lsn, "0/5001000");
    assert_eq!(back.wal_past_target_bytes, Some(4096));
    assert!(
        w.summary.contains("still running as a primary")
            && w.summary
                .contains("up to 4096 bytes of WAL past the 0/5000000"),
        "{}",
        w.summary
    );
    assert!(
        !w.unknown
            .iter()
            .any(|u| u.contains("kept accepting writes") || u.contains("how far a wrote")),
        "answered, no longer unknown: {:?}",
        w.unknown
    );
    // Recorded once: later reads (a fenced, in recovery) do not replace what it was on return.
    sim.wal.insert("a".into(), wal_at(false, "0/6000000"));
    sim.run(5);
    assert_eq!(window(&sim).old_primary_returned, Some(back));
}

#[test]
fn a_returned_old_primary_that_wrote_nothing_past_the_target_or_came_back_in_recovery_is_said_so() {
    for (a, says, unknown_kept) in [
        (wal_at(true, "0/5000000"), "nothing it wrote is lost", false),
        (
            wal_at(false, "0/5002000"),
            "it was in recovery, replaying at 0/5002000",
            true,
        ),
    ] {
        let mut sim = Sim::ring(&["a", "b", "c"]);
        sim.run(3);
        sim.down.insert("a".into());
        sim.run(3);
        sim.wal.insert("b".into(), wal_at(false, "0/5000000"));
        sim.request_failover("b", true, "t1");
        sim.run(20);
        // An instance that cannot be read yet changes nothing; the next read that answers does.
        sim.down.clear();
        sim.wal.insert(
            "a".into(),
            topology::InstanceWal::Unknown("pod not running".into()),
        );
        let fence = sim.decide().effect.expect("the fence");
        sim.patch(fence.step, "a", &fence.patch);
        sim.run(5);
        assert!(window(&sim).old_primary_returned.is_none());
        sim.wal.insert("a".into(), a.clone());
        sim.decide();
        let w = window(&sim);
        assert!(w.summary.contains(says), "{a:?}: {}", w.summary);
        assert_eq!(
            w.unknown
                .iter()
                .any(|u| u.contains("kept accepting writes")),
            unknown_kept,
            "{a:?}: {:?}",
            w.unknown
        );
    }
}

#[test]
fn a_target_that_cannot_be_read_holds_the_switchover_with_the_cause_then_it_resumes() {
    let mut sim = Sim::ring(&["a", "b"]);
    sim.run(3);
    sim.switch_to("b");
    // Up to the Demote patch, then b's API server stops answering.
    while sim.patches.is_empty() {
        sim.now += SignedDuration::from_millis(100);
        let decided = sim.decide();
        if let Some(action) = &decided.effect {
            let (step, member, p) = (action.step, action.member.clone(), action.patch.clone());
            sim.patch(step, &member, &p);
        }
    }
    sim.down.insert("b".into());
    let mut holds = 0;
    for _ in 0..5 {
        let decided = sim.run(3);
        holds += decided
            .events
            .iter()
            .filter(|e| e.reason == reason::MEMBER_UNREACHABLE_HOLD && e.warning)
            .count();
    }
    assert_eq!(sim.patches, [(StepKind::Demote, "a".to_owned())]);
    let op = sim.topo.status.clone().unwrap().operation.unwrap();
    let hold = op.hold.expect("held while b cannot be read");
    assert_eq!(hold.reason, reason::MEMBER_UNREACHABLE_HOLD);
    assert!(
        hold.message.starts_with("b cannot be read"),
        "{}",
        hold.message
    );
    assert!(
        hold.message.contains("k8s-b is not in the fake"),
        "{}",
        hold.message
    );
    assert_eq!(
        holds, 1,
        "one Warning Event for the hold, not one per reconcile"
    );
    let in_progress = sim.condition(kind::SWITCHOVER_IN_PROGRESS);
    assert_eq!(in_progress.reason, reason::MEMBER_UNREACHABLE_HOLD);
    assert_eq!(
        sim.condition(kind::DEGRADED).reason,
        reason::MEMBER_UNREACHABLE
    );

    sim.down.clear();
    sim.run(20);
    let status = sim.topo.status.clone().unwrap();
    assert!(status.operation.is_none(), "{:?}", status.operation);
    assert_eq!(
        status.history.last().unwrap().outcome,
        Some(Outcome::Succeeded)
    );
    assert_eq!(sim.condition(kind::READY).status, "True");
}

#[test]
fn a_refused_automatic_failover_policy_says_why_and_failover_stays_manual() {
    let mut sim = Sim::ring(&["a", "b"]);
    // Two members in one Kubernetes cluster and a detection time the timing rule refuses.
    sim.topo.spec.members[1].cluster = "k8s-a".into();
    sim.topo.spec.automatic_failover = Some(
        serde_json::from_value(json!({"dataLossBudget": "16Mi", "detectionTime": "5s"})).unwrap(),
    );
    let decided = sim.run(3);
    assert!(decided.effect.is_none() && sim.patches.is_empty());
    let auto = sim.condition(kind::AUTOMATIC_FAILOVER);
    assert_eq!(
        (auto.status.as_str(), auto.reason.as_str()),
        ("False", reason::POLICY_REFUSED)
    );
    assert_eq!(auto.observed_generation, Some(1));
    for want in [
        "failover stays manual",
        "at least 3 failure domains",
        "spec.automaticFailover.detectionTime (5s) is too short",
        "raise detectionTime to at least",
    ] {
        assert!(
            auto.message.contains(want),
            "{want:?} not in {}",
            auto.message
        );
    }
    // (The shared cluster also breaks this simulation's member reads; with the members in their
    // own clusters again, only the detection time is refused.) The topology itself keeps
    // running: Valid and Ready as before.
    sim.topo.spec.members[1].cluster = "k8s-b".into();
    sim.run(3);
    let auto = sim.condition(kind::AUTOMATIC_FAILOVER);
    assert_eq!(auto.reason, reason::POLICY_REFUSED);
    assert!(
        !auto.message.contains("failure domains"),
        "{}",
        auto.message
    );
    assert_eq!(sim.condition(kind::VALID).status, "True");
    assert_eq!(sim.condition(kind::READY).status, "True");

    // Fixed: armed, with the margins it guarantees; removed: Disabled.
    sim.topo.spec.automatic_failover = Some(
        serde_json::from_value(json!({"dataLossBudget": "16Mi", "detectionTime": "10s"})).unwrap(),
    );
    sim.run(2);
    let auto = sim.condition(kind::AUTOMATIC_FAILOVER);
    assert_eq!(
        (auto.status.as_str(), auto.reason.as_str()),
        ("True", reason::ARMED)
    );
    assert!(
        auto.message.contains("fences itself within 9.0s"),
        "{}",
        auto.message
    );
    sim.topo.spec.automatic_failover = None;
    let decided = sim.run(2);
    let auto = sim.condition(kind::AUTOMATIC_FAILOVER);
    assert_eq!(
        (auto.status.as_str(), auto.reason.as_str()),
        ("False", reason::DISABLED)
    );
    assert!(
        decided
            .events
            .iter()
            .any(|e| !e.warning && e.reason == reason::DISABLED),
        "{:?}",
        decided.events
    );
}

/// Agents that renewed `age` ago, with their reports; ballots of `lost` voters about `a`.
fn votes(lost: &[&str], received_b: &str) -> super::autofailover::Votes {
    use std::time::Duration;

    use topology::autofailover::quorum::Ballot;
    use topology::autofailover::record::Report;
    let fresh = |report: Report| crate::autofailover::hub::AgentSeen {
        report: Some(report),
        present: true,
        age: Duration::from_millis(900),
    };
    super::autofailover::Votes {
        ballots: lost
            .iter()
            .map(|v| Ballot {
                voter: (*v).to_owned(),
                term: 1,
                lost: true,
                heartbeat_age: Duration::from_secs(11),
            })
            .collect(),
        agents: [
            (
                "a".to_owned(),
                fresh(Report {
                    primary: true,
                    timeline: Some(1),
                    flushed: Some("0/3000100".into()),
                    ..Report::default()
                }),
            ),
            (
                "b".to_owned(),
                fresh(Report {
                    received: Some(received_b.into()),
                    replayed: Some(received_b.into()),
                    ..Report::default()
                }),
            ),
        ]
        .into(),
        store_unreadable: false,
        probes: Vec::new(),
    }
}

#[test]
fn a_store_slower_than_a_renewals_bound_is_named_in_a_condition_and_nothing_moves() {
    use topology::autofailover::record::SlowStore;
    let mut sim = Sim::ring(&["a", "b"]);
    sim.topo.spec.automatic_failover = Some(
        serde_json::from_value(json!({"dataLossBudget": "Any", "detectionTime": "20s",
            "renewEvery": "2s", "fenceAfter": "8s"}))
        .unwrap(),
    );
    // a's agent saw b's store miss the bound in `rounds` rounds in a row (0: none).
    let reporting = |rounds: u32| {
        let mut v = votes(&[], "0/3000100");
        let a = v.agents.get_mut("a").unwrap().report.as_mut().unwrap();
        if rounds > 0 {
            a.slow_stores = vec![SlowStore {
                voter: "b".into(),
                bound_ms: 2000,
                rounds,
            }];
        }
        v
    };
    // One round of reports: the condition's status and reason, and the Events about it.
    let round = |sim: &mut Sim, rounds: u32| {
        sim.votes = Some(reporting(rounds));
        let decided = sim.run(3);
        let c = sim.condition(kind::VOTER_STORE_SLOW);
        let events: Vec<(bool, String)> = decided
            .events
            .iter()
            .filter(|e| e.reason.starts_with("Store"))
            .map(|e| (e.warning, e.reason.clone()))
            .collect();
        (c.status, c.reason, events)
    };
    let (within, slower) = (
        reason::STORES_WITHIN_BOUND.to_owned(),
        reason::STORE_SLOWER_THAN_BOUND.to_owned(),
    );
    let quiet = Vec::new();
    assert_eq!(
        round(&mut sim, 0),
        ("False".into(), within.clone(), quiet.clone())
    );
    // One late round is noise: no change, no Event.
    assert_eq!(
        round(&mut sim, 1),
        ("False".into(), within.clone(), quiet.clone())
    );
    // Two in a row: True, naming the store, the agent, the bound and the fix; one Warning.
    assert_eq!(
        round(&mut sim, 2),
        ("True".into(), slower.clone(), vec![(true, slower.clone())])
    );
    let c = sim.condition(kind::VOTER_STORE_SLOW);
    assert_eq!(c.observed_generation, sim.topo.metadata.generation);
    for want in [
        "b's store (namespace",
        "the renewals of the agent of a no answer within their bound of 2.00s",
        "fenceAfter (8.00s)",
        "within renewEvery/2 (1.00s)",
        "raise renewEvery",
        "Nothing is fenced or moved",
    ] {
        assert!(c.message.contains(want), "{want:?} not in {}", c.message);
    }
    // Still slow: no second Event; one more missed round keeps it True.
    assert_eq!(
        round(&mut sim, 3),
        ("True".into(), slower.clone(), quiet.clone())
    );
    assert_eq!(round(&mut sim, 1), ("True".into(), slower, quiet));
    // Nothing moved: no patch, no failover, no fence, a still the primary and Ready.
    assert!(sim.patches.is_empty());
    let status = sim.topo.status.clone().unwrap();
    assert!(status.fenced_members.is_empty() && status.operation.is_none());
    assert_eq!(status.automatic_failover.unwrap().term, 1);
    assert_eq!(sim.condition(kind::READY).status, "True");
    // Fast again: False, one Normal Event.
    assert_eq!(
        round(&mut sim, 0),
        ("False".into(), within.clone(), vec![(false, within)])
    );
    // Policy removed: False, Disabled.
    sim.topo.spec.automatic_failover = None;
    sim.votes = None;
    sim.run(3);
    let c = sim.condition(kind::VOTER_STORE_SLOW);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", reason::DISABLED)
    );
}

#[test]
fn a_majority_counting_the_primary_lost_promotes_the_replica_through_the_failover_path() {
    let mut sim = Sim::ring(&["a", "b"]);
    sim.topo.spec.automatic_failover =
        Some(serde_json::from_value(json!({"dataLossBudget": "1Ki"})).unwrap());
    sim.votes = Some(votes(&[], "0/3000100"));
    let decided = sim.run(3);
    assert!(decided.effect.is_none() && decided.auto_start.is_none());
    let auto = sim
        .topo
        .status
        .as_ref()
        .unwrap()
        .automatic_failover
        .clone()
        .unwrap();
    assert_eq!((auto.term, auto.primary.as_str()), (1, "a"));
    assert_eq!(
        sim.condition(kind::AUTOMATIC_FAILOVER).reason,
        reason::ARMED
    );

    // a's region is cut off. The hub alone counts it lost: no majority, nothing happens.
    sim.down.insert("a".into());
    sim.votes = Some(votes(&["hub:"], "0/3000000"));
    let decided = sim.run(3);
    assert!(decided.auto_start.is_none() && sim.patches.is_empty());

    // b too, but b is further behind than the budget: refused, with the reason, nothing done.
    sim.votes = Some(votes(&["hub:", "b"], "0/2000000"));
    let decided = sim.run(3);
    assert!(decided.auto_start.is_none() && sim.patches.is_empty());
    let auto = sim.condition(kind::AUTOMATIC_FAILOVER);
    assert_eq!(
        (auto.status.as_str(), auto.reason.as_str()),
        ("False", "NoEligibleReplica")
    );
    assert!(
        auto.message.contains("more than the budget of 1024"),
        "{}",
        auto.message
    );

    // Within the budget: decided, recorded (term 2, primary b) before spec is set.
    sim.votes = Some(votes(&["hub:", "b"], "0/3000000"));
    let decided = sim.decide();
    let start = decided.auto_start.clone().expect("an automatic failover");
    assert_eq!(
        (start.to.as_str(), start.requested_at.as_str()),
        ("b", "automatic-term-1")
    );
    assert!(
        start.note.message.contains("256 bytes of WAL behind"),
        "{}",
        start.note.message
    );
    let auto = decided.status.automatic_failover.clone().unwrap();
    assert_eq!((auto.term, auto.primary.as_str()), (2, "b"));
    assert_eq!(auto.last_decision.as_ref().unwrap().voters, ["hub:", "b"]);
    // Until the spec change lands, every reconcile asks for it again; never for a.
    let again = sim.decide();
    assert_eq!(again.auto_start.map(|s| s.to), Some("b".to_owned()));

    // The controller's spec patch: the explicit failover path promotes b without a token.
    sim.request_failover("b", true, "automatic-term-1");
    sim.votes = None;
    sim.run(20);
    assert_eq!(sim.clusters["b"].role(), Role::Primary);
    assert_eq!(sim.patches, [(StepKind::Promote, "b".to_owned())]);
    let status = sim.topo.status.clone().unwrap();
    assert_eq!(
        status
            .last_failover
            .unwrap()
            .request
            .requested_at
            .as_deref(),
        Some("automatic-term-1")
    );
    assert_eq!(status.fenced_members[0].name, "a");
    // The term stays b's; a coming back is fenced (the very next patch) and never becomes the
    // term's primary again.
    sim.down.clear();
    let fence = sim.decide().effect.expect("a fence patch");
    assert_eq!(fence.member, "a");
    sim.patch(fence.step, "a", &fence.patch);
    assert_eq!(sim.primaries_by_spec(), 1);
    sim.run(5);
    let auto = sim.topo.status.clone().unwrap().automatic_failover.unwrap();
    assert_eq!((auto.term, auto.primary.as_str()), (2, "b"));
}

#[test]
fn an_automatic_failovers_lost_primary_readable_again_is_failed_over_once_fenced() {
    let mut sim = Sim::ring(&["a", "b"]);
    sim.topo.spec.automatic_failover =
        Some(serde_json::from_value(json!({"dataLossBudget": "Any"})).unwrap());
    sim.votes = Some(votes(&[], "0/3000100"));
    sim.run(3);
    // a's region is cut off; a majority counts it lost: decided, and the spec change lands.
    sim.down.insert("a".into());
    sim.votes = Some(votes(&["hub:", "b"], "0/3000100"));
    let start = sim.decide().auto_start.expect("an automatic failover");
    sim.request_failover(&start.to, true, &start.requested_at);
    sim.votes = None;
    // ... but a's link heals before the gate: a can be read, still primary by spec, not fenced
    // yet. Nothing is promoted and the request stays (it is not refused).
    sim.down.clear();
    let decided = sim.run(3);
    assert!(decided.effect.is_none() && sim.patches.is_empty());
    let ready = sim.ready();
    assert_eq!(ready.reason, super::failover::reason::BLOCKED, "{ready:?}");
    assert!(ready.message.contains("waits for a's fence"), "{ready:?}");
    assert!(sim.topo.status.as_ref().unwrap().last_failover.is_none());
    // Its agent fences it (CNPG's fencing of every instance): a is made a replica of b by spec
    // first, then b is promoted without a token. Never two primaries by spec (Sim::run).
    sim.cluster_mut("a").metadata.annotations = Some(BTreeMap::from([(
        "cnpg.io/fencedInstances".to_owned(),
        r#"["*"]"#.to_owned(),
    )]));
    sim.run(20);
    assert_eq!(
        sim.patches,
        [
            (StepKind::Demote, "a".to_owned()),
            (StepKind::Promote, "b".to_owned())
        ]
    );
    assert_eq!(sim.clusters["b"].role(), Role::Primary);
    assert_eq!(sim.clusters["a"].role(), Role::Replica);
    let status = sim.topo.status.clone().unwrap();
    assert_eq!(status.observed_primary.as_deref(), Some("b"));
    assert_eq!(status.last_failover.unwrap().refused, None);

    // The explicit gate is unchanged: a manual request while the primary (b) can be read is
    // refused, fenced or not.
    sim.request_failover("a", true, "by-hand");
    sim.run(3);
    assert_eq!(sim.ready().reason, super::failover::reason::REFUSED);
}

/// Found by the nemesis (e2e autofailover, seed 2): a majority counted the primary lost but no
/// replica could be promoted (here: too far behind; there: the only replica left behind by an
/// earlier failover). The voters refuse the primary's renewals for the rest of that term, so its
/// agent kept it fenced for good. Nothing was promoted: once the hub reads the primary again, a
/// new term starts with the same primary (its agent can renew with a majority again), and never
/// while it cannot be read.
#[test]
fn a_lost_primary_no_replica_could_replace_gets_a_new_term_once_the_hub_reads_it_again() {
    let mut sim = Sim::ring(&["a", "b"]);
    sim.topo.spec.automatic_failover =
        Some(serde_json::from_value(json!({"dataLossBudget": "1Ki"})).unwrap());
    sim.votes = Some(votes(&[], "0/3000100"));
    sim.run(3);
    let term = |sim: &Sim| {
        let auto = sim.topo.status.clone().unwrap().automatic_failover.unwrap();
        (auto.term, auto.primary)
    };
    assert_eq!(term(&sim), (1, "a".to_owned()));

    // a's region cut off, counted lost by a majority; b is too far behind: nothing promoted.
    sim.down.insert("a".into());
    sim.votes = Some(votes(&["hub:", "b"], "0/2000000"));
    let decided = sim.run(3);
    assert!(decided.auto_start.is_none() && sim.patches.is_empty());
    let condition = sim.condition(kind::AUTOMATIC_FAILOVER);
    assert_eq!(condition.reason, "NoEligibleReplica", "{condition:?}");
    assert!(
        condition.message.contains("a new term starts"),
        "{condition:?}"
    );
    assert_eq!(
        term(&sim),
        (1, "a".to_owned()),
        "no new term while a is unread"
    );

    // The links heal; the ballots of term 1 still count a lost. The hub reads a: term 2 starts
    // with a still the primary, announced; nothing is promoted or patched.
    sim.down.clear();
    let decided = sim.decide();
    assert!(decided.auto_start.is_none() && decided.effect.is_none());
    let auto = decided.status.automatic_failover.clone().unwrap();
    assert_eq!((auto.term, auto.primary.as_str()), (2, "a"));
    assert!(auto.last_decision.is_none(), "{auto:?}");
    assert!(
        decided.events.iter().any(|e| e.warning
            && e.reason == "AutomaticFailoverResumed"
            && e.message.contains("term 2 starts with a still the primary")),
        "{:?}",
        decided.events
    );
    sim.run(3);
    assert_eq!(term(&sim), (2, "a".to_owned()));
    // The ballots of term 1 no longer count: armed in term 2, a renewing again.
    let mut fresh = votes(&[], "0/2000000");
    for b in &mut fresh.ballots {
        b.term = 2;
    }
    sim.votes = Some(fresh);
    sim.run(3);
    assert_eq!(term(&sim), (2, "a".to_owned()));
    let condition = sim.condition(kind::AUTOMATIC_FAILOVER);
    assert_eq!(condition.reason, reason::ARMED, "{condition:?}");
    assert!(sim.patches.is_empty());
}
