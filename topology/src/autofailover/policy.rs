//! `spec.automaticFailover` checked against the rules automatic failover rests on: at least three
//! failure domains vote (the hub and one per member region), a detection time the timing rule
//! accepts, a data-loss budget that parses, promotable members that exist. A refused policy
//! names the field and the fix; the topology keeps running with manual failover only.

use std::collections::BTreeMap;
use std::time::Duration;

use super::quorum::MIN_VOTERS;
use super::{DataLossBudget, Drift, Timing, TimingError, TimingMargins};
use crate::api::{AutomaticFailoverPolicy, DistributedTopologySpec};

/// The name the hub votes under (member names are DNS labels, so no member can take it: a
/// member name may not contain `:`).
pub const HUB_VOTER: &str = "hub:";

/// A policy the rules accept: what the controller and the agents act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Armed {
    pub timing: Timing,
    pub margins: TimingMargins,
    pub budget: DataLossBudget,
    /// Members that may be promoted (every member when the policy lists none).
    pub promotable: Vec<String>,
    /// The voters: the hub, then every member in `spec.members` order.
    pub electorate: Vec<String>,
}

impl Armed {
    pub fn may_promote(&self, member: &str) -> bool {
        self.promotable.iter().any(|m| m == member)
    }
}

/// Why `spec.automaticFailover` is refused; each names the field and the fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "spec.automaticFailover needs at least {MIN_VOTERS} failure domains to vote (the hub and \
         one per member Kubernetes cluster) but this topology has {voters} ({detail}): with two, \
         one cut off from the other cannot tell its own isolation from the other's death. Put \
         the members in distinct Kubernetes clusters (spec.members[].cluster) or add a member \
         in a third one; until then failover is manual only"
    )]
    TooFewVoters { voters: usize, detail: String },
    #[error(
        "spec.members: {a} and {b} run in the same Kubernetes cluster {cluster}, one failure \
         domain that would vote twice; automatic failover needs one member per cluster (move \
         one, or remove spec.automaticFailover)"
    )]
    SharedCluster {
        a: String,
        b: String,
        cluster: String,
    },
    #[error("{0}")]
    Timing(#[from] TimingError),
    #[error(
        "spec.automaticFailover.dataLossBudget {0:?} is not a byte count (0, 16Mi, 1Gi) or Any"
    )]
    Budget(String),
    #[error(
        "spec.automaticFailover.promotable names {0}, which is not one of spec.members; list \
         member names only (or leave it empty: every member may be promoted)"
    )]
    UnknownPromotable(String),
}

/// Every problem of a refused policy, in one line (for a condition, an Event, a log).
pub fn describe(problems: &[PolicyError]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Parses a data-loss budget: `Any`, or bytes with an optional binary suffix.
pub fn parse_budget(text: &str) -> Option<DataLossBudget> {
    if text == "Any" {
        return Some(DataLossBudget::Any);
    }
    let (digits, shift) = match text.len().checked_sub(2).map(|i| text.split_at(i)) {
        Some((d, "Ki")) => (d, 10),
        Some((d, "Mi")) => (d, 20),
        Some((d, "Gi")) => (d, 30),
        _ => (text, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    n.checked_mul(1u64 << shift).map(DataLossBudget::Bytes)
}

/// The timing a policy asks for: its fields over [`Timing::DEFAULT`].
pub fn timing_of(policy: &AutomaticFailoverPolicy) -> Timing {
    let d = Timing::DEFAULT;
    let or = |v: Option<policies::Duration>, default: Duration| v.map_or(default, |v| v.0);
    Timing {
        renew_every: or(policy.renew_every, d.renew_every),
        lease: or(policy.detection_time, d.lease),
        fence_after: or(policy.fence_after, d.fence_after),
        fence_bound: or(policy.fence_bound, d.fence_bound),
        agent_restart_bound: or(policy.agent_restart_bound, d.agent_restart_bound),
        drift: policy.clock_drift_ppm.map_or(d.drift, |ppm| Drift { ppm }),
        margin: or(policy.safety_margin, d.margin),
    }
}

/// Checks `spec.automaticFailover`: `None` when it is not set, every problem otherwise.
pub fn arm(spec: &DistributedTopologySpec) -> Option<Result<Armed, Vec<PolicyError>>> {
    let policy = spec.automatic_failover.as_ref()?;
    let mut problems = Vec::new();
    let mut clusters: BTreeMap<&str, &str> = BTreeMap::new();
    for m in &spec.members {
        if let Some(first) = clusters.insert(m.cluster.as_str(), m.name.as_str()) {
            problems.push(PolicyError::SharedCluster {
                a: first.to_owned(),
                b: m.name.clone(),
                cluster: m.cluster.clone(),
            });
            clusters.insert(m.cluster.as_str(), first);
        }
    }
    let voters = 1 + clusters.len();
    if voters < MIN_VOTERS {
        problems.push(PolicyError::TooFewVoters {
            voters,
            detail: format!(
                "the hub and {}",
                clusters.keys().copied().collect::<Vec<_>>().join(", ")
            ),
        });
    }
    let timing = timing_of(policy);
    let margins = timing.check().map_err(|e| problems.push(e.into())).ok();
    let budget = parse_budget(&policy.data_loss_budget);
    if budget.is_none() {
        problems.push(PolicyError::Budget(policy.data_loss_budget.clone()));
    }
    for name in &policy.promotable {
        if !spec.members.iter().any(|m| &m.name == name) {
            problems.push(PolicyError::UnknownPromotable(name.clone()));
        }
    }
    let (Some(margins), Some(budget), true) = (margins, budget, problems.is_empty()) else {
        return Some(Err(problems));
    };
    let members = spec.members.iter().map(|m| m.name.clone());
    let promotable = if policy.promotable.is_empty() {
        members.clone().collect()
    } else {
        policy.promotable.clone()
    };
    Some(Ok(Armed {
        timing,
        margins,
        budget,
        promotable,
        electorate: std::iter::once(HUB_VOTER.to_owned())
            .chain(members)
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(clusters: &[&str], policy: serde_json::Value) -> DistributedTopologySpec {
        let members: Vec<_> = clusters
            .iter()
            .enumerate()
            .map(|(i, c)| serde_json::json!({"name": format!("m{i}"), "cluster": c, "namespace": "db"}))
            .collect();
        serde_json::from_value(serde_json::json!({
            "members": members,
            "shape": {"star": {}},
            "primary": "m0",
            "automaticFailover": policy,
        }))
        .unwrap()
    }

    fn refused(s: &DistributedTopologySpec) -> String {
        describe(&arm(s).expect("set").expect_err("refused"))
    }

    #[test]
    fn a_pair_in_two_clusters_is_armed_with_the_defaults() {
        let s = spec(&["r1", "r2"], serde_json::json!({"dataLossBudget": "16Mi"}));
        let armed = arm(&s).unwrap().unwrap();
        assert_eq!(armed.timing, Timing::DEFAULT);
        assert_eq!(armed.budget, DataLossBudget::Bytes(16 << 20));
        assert_eq!(armed.electorate, [HUB_VOTER, "m0", "m1"]);
        assert_eq!(armed.promotable, ["m0", "m1"]);
    }

    #[test]
    fn two_members_in_one_cluster_are_two_voters_only() {
        let text = refused(&spec(
            &["r1", "r1"],
            serde_json::json!({"dataLossBudget": "Any"}),
        ));
        assert!(
            text.contains("m0 and m1 run in the same Kubernetes cluster r1"),
            "{text}"
        );
        assert!(text.contains("at least 3 failure domains"), "{text}");
        assert!(text.contains("spec.members[].cluster"), "{text}");
    }

    #[test]
    fn a_detection_time_the_rule_refuses_names_the_one_it_accepts() {
        let text = refused(&spec(
            &["r1", "r2"],
            serde_json::json!({"dataLossBudget": "0", "detectionTime": "3s"}),
        ));
        assert!(
            text.contains("spec.automaticFailover.detectionTime") && text.contains("at least"),
            "{text}"
        );
        // The tightest documented settings are accepted.
        let tight = spec(
            &["r1", "r2", "r3"],
            serde_json::json!({"dataLossBudget": "0", "detectionTime": "3s", "renewEvery": "250ms",
                "fenceAfter": "1s", "fenceBound": "750ms", "agentRestartBound": "500ms",
                "safetyMargin": "200ms", "promotable": ["m1"]}),
        );
        let armed = arm(&tight).unwrap().unwrap();
        assert_eq!(armed.timing, Timing::TIGHT);
        assert!(armed.may_promote("m1") && !armed.may_promote("m2"));
    }

    #[test]
    fn budgets_and_promotable_members_are_checked() {
        assert_eq!(parse_budget("Any"), Some(DataLossBudget::Any));
        assert_eq!(parse_budget("0"), Some(DataLossBudget::Bytes(0)));
        assert_eq!(parse_budget("2Ki"), Some(DataLossBudget::Bytes(2048)));
        assert_eq!(parse_budget("1Gi"), Some(DataLossBudget::Bytes(1 << 30)));
        for bad in ["", "Mi", "-1", "1Ti", "any", "99999999999999999999Gi"] {
            assert_eq!(parse_budget(bad), None, "{bad}");
        }
        let text = refused(&spec(
            &["r1", "r2"],
            serde_json::json!({"dataLossBudget": "lots", "promotable": ["nope"]}),
        ));
        assert!(text.contains("dataLossBudget \"lots\""), "{text}");
        assert!(text.contains("promotable names nope"), "{text}");
    }

    #[test]
    fn no_policy_is_no_automatic_failover() {
        let mut s = spec(&["r1", "r2"], serde_json::json!({"dataLossBudget": "0"}));
        s.automatic_failover = None;
        assert!(arm(&s).is_none());
    }
}
