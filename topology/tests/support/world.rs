//! A small, deterministic stand-in for CNPG, used by the planner's property tests: it applies
//! merge patches to specs and moves statuses the way contract §5 describes (demotion: inProgress
//! → token → clean-up; promotion: token check → lastPromotionToken → healthy), with faults.
//! It also tracks which members *run* as a writable primary, to check invariant 2.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use topology::Topology;
use topology::api::{DistributedTopologySpec, Member, ShapeSpec, StarShape};
use topology::cnpg::{Role, phase, phase_reason, role_of};
use topology::observed::{Observed, ObservedMember};
use topology::plan::patch;
use topology::token::PromotionToken;

pub const SYSID: &str = "7345890123456789012";

/// Faults the emulated CNPG can show (contract §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    None,
    /// PR 11268: the demotion never starts, the old primary keeps accepting writes.
    DemotionNeverStarts,
    /// #5754/#9591: the demotion starts but no token ever appears.
    DemotionStuck,
    /// #11074: the token is wiped at clean-up.
    TokenWiped,
    /// The token names another system.
    ForeignSysid,
    /// The target rejects the token as fatal (e.g. LSN already passed): rollback expected.
    FatalToken,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShapeKind {
    Star,
    Ring,
    Cascade,
}

/// Builds a topology of `n` members `m0..`; `order` permutes members for rings and cascades,
/// `parents[i]` picks the cascade parent of `order[i]` among `order[..i]`.
pub fn topology(
    n: usize,
    shape: ShapeKind,
    primary: usize,
    order: &[usize],
    parents: &[usize],
) -> Topology {
    let name = |i: usize| format!("m{i}");
    let members = (0..n)
        .map(|i| Member {
            name: name(i),
            cluster: format!("k{i}"),
            namespace: "db".into(),
            cluster_name: None,
        })
        .collect();
    let shape = match shape {
        ShapeKind::Star => ShapeSpec {
            star: Some(StarShape {}),
            ..ShapeSpec::default()
        },
        ShapeKind::Ring => ShapeSpec {
            ring: Some(order.iter().map(|&i| name(i)).collect()),
            ..ShapeSpec::default()
        },
        ShapeKind::Cascade => ShapeSpec {
            cascade: Some(
                (1..n)
                    .map(|k| (name(order[k]), name(order[parents[k] % k])))
                    .collect(),
            ),
            ..ShapeSpec::default()
        },
    };
    let spec = DistributedTopologySpec {
        members,
        shape,
        primary: name(primary),
        policies: policies::Policies::default(),
        rotation: None,
        failover: None,
        automatic_failover: None,
        hooks: Default::default(),
    };
    Topology::from_spec(&spec).expect("generated topologies are valid")
}

/// The emulated members.
pub struct World {
    pub truth: BTreeMap<String, ObservedMember>,
    /// Members whose PostgreSQL accepts writes.
    pub running_primary: BTreeSet<String>,
    /// Members the controller cannot read right now.
    pub hidden: BTreeSet<String>,
    /// Demotion progress per member (0: none, 1: in progress, 2: token written, 3: cleaned up).
    demotion: BTreeMap<String, u8>,
    pub fault: Fault,
    /// Tokens a member rejected as fatal; CNPG keeps rejecting the same token on every pass
    /// (contract §3 "Outcomes"), and the fault fires for the first promotion only.
    rejected: BTreeSet<(String, String)>,
    pub now: Timestamp,
    timeline: i64,
    lsn: u64,
}

impl World {
    pub fn new(topology: &Topology, fault: Fault) -> World {
        let observed = Observed::conforming(topology);
        let mut truth = observed.members;
        for m in truth.values_mut() {
            m.status.system_id = Some(SYSID.into());
            m.status.timeline_id = Some(1);
        }
        World {
            truth,
            running_primary: BTreeSet::from([topology.primary().to_owned()]),
            hidden: BTreeSet::new(),
            demotion: BTreeMap::new(),
            fault,
            rejected: BTreeSet::new(),
            now: Timestamp::from_second(1_800_000_000).expect("valid"),
            timeline: 1,
            lsn: 0x3000028,
        }
    }

    /// What the controller sees.
    pub fn snapshot(&self) -> Observed {
        let members = self
            .truth
            .iter()
            .map(|(name, m)| {
                let mut m = m.clone();
                if self.hidden.contains(name) {
                    m.reachable = false;
                }
                (name.clone(), m)
            })
            .collect();
        Observed { members }
    }

    pub fn role(&self, name: &str) -> Role {
        let m = &self.truth[name];
        role_of(&m.cluster_name, m.replica.as_ref())
    }

    pub fn primaries_by_spec(&self, only_visible: bool) -> Vec<String> {
        self.truth
            .keys()
            .filter(|n| !(only_visible && self.hidden.contains(*n)))
            .filter(|n| self.role(n) == Role::Primary)
            .cloned()
            .collect()
    }

    pub fn apply(&mut self, member: &str, patch_value: &serde_json::Value) {
        let m = self.truth.get_mut(member).expect("known member");
        m.replica = patch::apply(m.replica.as_ref(), patch_value);
    }

    fn token(&self, sysid: &str) -> String {
        let lsn = topology::token::Lsn(self.lsn);
        PromotionToken {
            latest_checkpoint_timeline_id: self.timeline.to_string(),
            redo_wal_file: topology::token::wal_file_name(self.timeline as u32, lsn),
            database_system_identifier: sysid.into(),
            latest_checkpoint_redo_location: lsn.to_string(),
            time_of_latest_checkpoint: "Mon 23 Nov 2026 06:00:00 AM UTC".into(),
            operator_version: "1.27.1".into(),
        }
        .encode()
    }

    /// One reconcile pass of every member's emulated CNPG.
    pub fn tick(&mut self, seconds: i64) {
        self.now += SignedDuration::from_secs(seconds);
        let names: Vec<String> = self.truth.keys().cloned().collect();
        for name in names {
            if self.truth[&name].status.fenced {
                // CNPG's fencing: every instance stays stopped, whatever the spec says.
                self.running_primary.remove(&name);
                self.truth
                    .get_mut(&name)
                    .expect("known")
                    .status
                    .instance_is_primary = false;
                continue;
            }
            let role = self.role(&name);
            let running = self.running_primary.contains(&name);
            self.truth
                .get_mut(&name)
                .expect("known")
                .status
                .instance_is_primary = running;
            if role == Role::Replica && running {
                self.demote_one_stage(&name);
            } else if role == Role::Primary && !running {
                self.promote(&name);
            } else if role == Role::Primary {
                // Cleared on every status refresh while primary (contract §2).
                let m = self.truth.get_mut(&name).expect("known");
                m.status.demotion_token = None;
                if m.status.phase.as_deref() != Some(phase::HEALTHY)
                    && m.status.phase_reason.is_none()
                {
                    m.status.phase = Some(phase::HEALTHY.into());
                }
            }
            let m = self.truth.get_mut(&name).expect("known");
            if m.promotion_token().is_none() {
                m.status.last_promotion_token = None;
                if m.status.phase_reason.as_deref() == Some(phase_reason::TOKEN_NOT_CORRECT) {
                    m.status.phase = Some(phase::HEALTHY.into());
                    m.status.phase_reason = None;
                }
            }
        }
    }

    fn demote_one_stage(&mut self, name: &str) {
        let stage = self.demotion.get(name).copied().unwrap_or(0);
        let fault = self.fault;
        let token = self.token(if fault == Fault::ForeignSysid {
            "1111"
        } else {
            SYSID
        });
        let now = self.now;
        let m = self.truth.get_mut(name).expect("known");
        match (stage, fault) {
            (_, Fault::DemotionNeverStarts) => return,
            (0, _) => m.status.switch_in_progress = true,
            (1, Fault::DemotionStuck) => return,
            (1, _) => m.status.demotion_token = Some(token),
            (2, _) => {
                m.status.switch_in_progress = false;
                m.status.replica_switch = Some((true, now));
                if fault == Fault::TokenWiped {
                    m.status.demotion_token = None;
                }
                // Shut down cleanly: from here on it is a replica following its source.
                self.running_primary.remove(name);
                self.demotion.remove(name);
                return;
            }
            _ => return,
        }
        self.demotion.insert(name.to_owned(), stage + 1);
    }

    fn promote(&mut self, name: &str) {
        if self.demotion.contains_key(name) {
            return; // still shutting down from an earlier demotion
        }
        let first_promotion = self.rejected.is_empty() && self.timeline == 1;
        let m = self.truth.get_mut(name).expect("known");
        let token = m.promotion_token().map(str::to_owned);
        if let Some(token) = &token {
            if m.status.last_promotion_token.as_ref() == Some(token) {
                return;
            }
            let decoded = PromotionToken::parse(token).expect("tokens in tests decode");
            let key = (name.to_owned(), token.clone());
            if self.rejected.contains(&key)
                || (self.fault == Fault::FatalToken && first_promotion)
                || decoded.database_system_identifier != SYSID
            {
                self.rejected.insert(key);
                m.status.phase = Some(phase::UNRECOVERABLE.into());
                m.status.phase_reason = Some(phase_reason::TOKEN_NOT_CORRECT.into());
                return;
            }
            m.status.last_promotion_token = Some(token.clone());
        }
        // Promoted (with a verified token, or without one: a failover).
        self.timeline += 1;
        self.lsn += 0x1000000;
        m.status.timeline_id = Some(self.timeline);
        m.status.phase = Some(phase::HEALTHY.into());
        m.status.phase_reason = None;
        m.status.instance_is_primary = true;
        self.running_primary.insert(name.to_owned());
    }
}
