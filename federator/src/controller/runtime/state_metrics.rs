//! The metrics an on-call engineer alerts on, computed at each scrape from what the process
//! knows now, so that none can go stale: leadership from the Lease, member reachability and
//! credential problems from this process's member pool, and, on the leader only, the state of
//! every topology and drill from the status the leader wrote (the hub objects in the
//! controllers' watch stores). A follower reports `federator_leader 0`, its own view of the
//! members, and no topology or drill state (it decides nothing; the leader's series are the
//! ones to alert on). Reference: docs/operations.md.

use std::sync::{Arc, Mutex};

use kube::ResourceExt;
use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use topology::DistributedTopology;
use topology::cnpg::Role;
use topology::conditions::{kind, reason};
use topology::drill_api::{DisasterRecoveryDrill, DrillPhase};
use topology::region_api::{RegionSwitch, RegionSwitchPhase, TopologyState};

use crate::controller::Leadership;
use crate::members::{MemberPool, Reachability};

/// Where the state metrics are read from; each is attached when the process has it.
#[derive(Default, Clone)]
pub(super) struct Sources {
    pub leader: Option<Leadership>,
    pub members: Option<MemberPool>,
    pub topologies: Option<Store<DistributedTopology>>,
    pub drills: Option<Store<DisasterRecoveryDrill>>,
    pub region_switches: Option<Store<RegionSwitch>>,
}

/// The collector registered in the registry; shares [`Sources`] with `Metrics`.
#[derive(Clone, Default)]
pub(super) struct StateMetrics(pub Arc<Mutex<Sources>>);

impl std::fmt::Debug for StateMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateMetrics")
    }
}

impl StateMetrics {
    fn sources(&self) -> Sources {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Topo {
    namespace: String,
    topology: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopoReason {
    namespace: String,
    topology: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MemberLabel {
    member: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MemberCode {
    member: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Drill {
    namespace: String,
    drill: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SwitchLabel {
    namespace: String,
    region_switch: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SwitchState {
    namespace: String,
    region_switch: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildInfo {
    version: String,
}

/// Hold and condition reasons are a fixed set; anything else (a status written by another
/// version) is reported as `Other`, so a label never takes arbitrary values.
fn bounded(text: &str) -> String {
    const CONDITIONS: [&str; 16] = [
        reason::AS_DESIRED,
        reason::VALIDATION_PASSED,
        reason::IDLE,
        reason::IN_PROGRESS,
        reason::MEMBER_UNREACHABLE,
        reason::MEMBER_FORBIDDEN,
        reason::MEMBER_CREDENTIAL_REFUSED,
        reason::MEMBER_NOT_READY,
        reason::ALL_MEMBERS_HEALTHY,
        reason::SUCCEEDED,
        reason::ROLLED_BACK,
        "PrimaryUnreachable",
        "FailoverNotAcknowledged",
        "FailoverRefused",
        "FailoverBlocked",
        "none",
    ];
    CONDITIONS
        .iter()
        .chain(reason::HOLDS.iter())
        .find(|k| **k == text)
        .map_or_else(|| "Other".to_owned(), |k| (*k).to_owned())
}

fn gauges<L>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (L, i64)>,
) -> std::fmt::Result
where
    L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static,
{
    let family = Family::<L, Gauge>::default();
    for (labels, value) in values {
        family.get_or_create(&labels).set(value);
    }
    family.encode(encoder.encode_descriptor(name, help, None, family.metric_type())?)
}

impl Collector for StateMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let sources = self.sources();
        gauges(
            &mut encoder,
            "build_info",
            "1, with the version of the running binary",
            [(
                BuildInfo {
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                },
                1,
            )],
        )?;
        let leader = sources.leader.as_ref().is_none_or(Leadership::is_leader);
        let gauge = Gauge::<i64>::default();
        gauge.set(i64::from(leader));
        gauge.encode(encoder.encode_descriptor(
            "leader",
            "1 while this replica holds the Lease (acts), 0 otherwise; read at each scrape",
            None,
            gauge.metric_type(),
        )?)?;
        if let Some(pool) = &sources.members {
            encode_members(&mut encoder, pool)?;
        }
        let topologies = match (&sources.topologies, leader) {
            (Some(store), true) => store.state(),
            _ => Vec::new(),
        };
        encode_topologies(&mut encoder, &topologies)?;
        let drills = match (&sources.drills, leader) {
            (Some(store), true) => store.state(),
            _ => Vec::new(),
        };
        encode_drills(&mut encoder, &drills)?;
        let switches = match (&sources.region_switches, leader) {
            (Some(store), true) => store.state(),
            _ => Vec::new(),
        };
        encode_region_switches(&mut encoder, &switches)
    }
}

/// Every state a region switch's topology can be in, as `status.topologies[].state` spells it.
const TOPOLOGY_STATES: [TopologyState; 9] = [
    TopologyState::Pending,
    TopologyState::BeforeDemotion,
    TopologyState::Switching,
    TopologyState::AfterPromotion,
    TopologyState::Moved,
    TopologyState::Skipped,
    TopologyState::Held,
    TopologyState::Failed,
    TopologyState::Aborted,
];

fn encode_region_switches(
    encoder: &mut DescriptorEncoder,
    switches: &[Arc<RegionSwitch>],
) -> std::fmt::Result {
    let label = |rs: &RegionSwitch| SwitchLabel {
        namespace: rs.namespace().unwrap_or_default(),
        region_switch: rs.name_any(),
    };
    let phase = |rs: &RegionSwitch| rs.status.as_ref().and_then(|s| s.phase);
    gauges(
        encoder,
        "region_switch_running",
        "1 while the region switch is unfinished (Running, Paused or Holding), 0 once it ended \
         (Succeeded, Failed, Refused); absent before its first status",
        switches.iter().filter_map(|rs| {
            let running = matches!(
                phase(rs)?,
                RegionSwitchPhase::Running | RegionSwitchPhase::Paused | RegionSwitchPhase::Holding
            );
            Some((label(rs), i64::from(running)))
        }),
    )?;
    gauges(
        encoder,
        "region_switch_topologies",
        "Topologies of the region switch in each state (status.topologies[].state): its \
         progress, e.g. Moved out of all but Skipped",
        switches.iter().flat_map(|rs| {
            let topologies = rs
                .status
                .as_ref()
                .map(|s| s.topologies.clone())
                .unwrap_or_default();
            TOPOLOGY_STATES.iter().map(move |state| {
                let count = topologies.iter().filter(|t| t.state == *state).count();
                (
                    SwitchState {
                        namespace: rs.namespace().unwrap_or_default(),
                        region_switch: rs.name_any(),
                        state: format!("{state:?}"),
                    },
                    count as i64,
                )
            })
        }),
    )
}

fn encode_members(encoder: &mut DescriptorEncoder, pool: &MemberPool) -> std::fmt::Result {
    let member = |m: &String| MemberLabel { member: m.clone() };
    // Known states only: a member whose watches have not answered yet (or that this replica
    // does not watch) is not claimed either way.
    let reachable = pool
        .reachability()
        .into_iter()
        .filter(|(_, h)| h.reachability != Reachability::Connecting)
        .map(|(m, h)| (member(&m), i64::from(h.reachability.is_reachable())));
    gauges(
        encoder,
        "member_reachable",
        "1 when this replica reads the member's Clusters and its API server answers the liveness \
         probe, 0 when it does not answer, refuses the credential everywhere, or has no \
         credential; absent until known",
        reachable,
    )?;
    let problems = pool.credential_problems();
    let known = pool.reachability().into_keys();
    gauges(
        encoder,
        "member_credential_problems",
        "Credential problems of the member now: 1 without a usable credential, else the \
         namespaces whose reads the member's API server refuses (401/403)",
        known.map(|m| {
            let n = problems.get(&m).copied().unwrap_or_default();
            (member(&m), i64::try_from(n).unwrap_or(i64::MAX))
        }),
    )?;
    let refusals = Family::<MemberCode, Counter>::default();
    for ((m, code), n) in pool.refusals() {
        refusals
            .get_or_create(&MemberCode {
                member: m,
                code: code.to_string(),
            })
            .inc_by(n);
    }
    refusals.encode(encoder.encode_descriptor(
        "member_credential_failures",
        "Requests (watch lists and watches) the member's API server refused: code 401 (the \
         credential is not accepted) or 403 (a permission is missing)",
        None,
        refusals.metric_type(),
    )?)
}

fn topo(t: &DistributedTopology) -> Topo {
    Topo {
        namespace: t.namespace().unwrap_or_default(),
        topology: t.name_any(),
    }
}

fn with_reason(t: &DistributedTopology, reason: &str) -> TopoReason {
    let Topo {
        namespace,
        topology,
    } = topo(t);
    TopoReason {
        namespace,
        topology,
        reason: bounded(reason),
    }
}

/// `(True?, reason)` of condition `type_`, if the status has it.
fn condition<'a>(t: &'a DistributedTopology, type_: &str) -> Option<(bool, &'a str)> {
    t.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status == "True", c.reason.as_str()))
}

fn encode_topologies(
    encoder: &mut DescriptorEncoder,
    topologies: &[Arc<DistributedTopology>],
) -> std::fmt::Result {
    for (name, type_, help) in [
        (
            "topology_ready",
            kind::READY,
            "1 when the topology's Ready condition is True; reason: the condition's reason",
        ),
        (
            "topology_degraded",
            kind::DEGRADED,
            "1 when the topology's Degraded condition is True (a member unreachable, refused or \
             unhealthy); reason: the condition's reason",
        ),
    ] {
        gauges(
            encoder,
            name,
            help,
            topologies.iter().filter_map(|t| {
                let (yes, why) = condition(t, type_)?;
                Some((with_reason(t, why), i64::from(yes)))
            }),
        )?;
    }
    gauges(
        encoder,
        "topology_primaries",
        "Members that are primary by their CNPG spec, as last observed (an unreachable member \
         counts with its last known role): 0 is no primary, more than 1 is two primaries",
        topologies.iter().filter(|t| t.status.is_some()).map(|t| {
            let status = t.status.as_ref().expect("filtered");
            let n = status
                .members
                .iter()
                .filter(|m| m.role == Some(Role::Primary))
                .count();
            (topo(t), i64::try_from(n).unwrap_or(i64::MAX))
        }),
    )?;
    let operation = |t: &DistributedTopology| t.status.as_ref().and_then(|s| s.operation.clone());
    gauges(
        encoder,
        "operation_running",
        "1 while a switchover or failover of the topology runs (held or not)",
        topologies
            .iter()
            .map(|t| (topo(t), i64::from(operation(t).is_some()))),
    )?;
    gauges(
        encoder,
        "operation_held",
        "1 while the topology's operation holds, with the hold's reason; 0 (reason \"none\") \
         otherwise",
        topologies
            .iter()
            .map(|t| match operation(t).and_then(|op| op.hold) {
                Some(hold) => (with_reason(t, &hold.reason), 1),
                None => (with_reason(t, "none"), 0),
            }),
    )
}

fn encode_drills(
    encoder: &mut DescriptorEncoder,
    drills: &[Arc<DisasterRecoveryDrill>],
) -> std::fmt::Result {
    let label = |d: &DisasterRecoveryDrill| Drill {
        namespace: d.namespace().unwrap_or_default(),
        drill: d.name_any(),
    };
    let phase = |d: &DisasterRecoveryDrill| d.status.as_ref().and_then(|s| s.phase);
    gauges(
        encoder,
        "drill_failed",
        "1 when the drill's last run failed, 0 when it succeeded or runs; absent before its \
         first run",
        drills.iter().filter_map(|d| {
            let failed = match phase(d)? {
                DrillPhase::Failed => 1,
                DrillPhase::Succeeded | DrillPhase::Running => 0,
            };
            Some((label(d), failed))
        }),
    )?;
    gauges(
        encoder,
        "drill_running",
        "1 while a run of the drill is in progress",
        drills.iter().filter_map(|d| {
            let running = phase(d)? == DrillPhase::Running;
            Some((label(d), i64::from(running)))
        }),
    )?;
    gauges(
        encoder,
        "drill_last_finished_timestamp_seconds",
        "When the drill's last run ended (Unix time)",
        drills.iter().filter_map(|d| {
            let at = d.status.as_ref()?.finished_at.as_ref()?;
            Some((label(d), at.0.as_second()))
        }),
    )
}

#[cfg(test)]
mod tests {
    //! What a leader reports is checked with the chart's expressions (tests/chart_metrics.rs).

    use kube::runtime::{reflector, watcher};
    use topology::DistributedTopologySpec;

    use super::*;
    use crate::controller::Metrics;

    #[test]
    fn a_follower_reports_leader_0_and_no_topology_state() {
        let spec: DistributedTopologySpec = serde_json::from_value(serde_json::json!({
            "members": [], "shape": {"star": {}}, "primary": "a"
        }))
        .unwrap();
        let mut t = DistributedTopology::new("pg", spec);
        t.metadata.namespace = Some("db".into());
        t.status = Some(topology::DistributedTopologyStatus::default());
        let (store, mut writer) = reflector::store::<DistributedTopology>();
        writer.apply_watcher_event(&watcher::Event::Apply(t));
        let render = |leader| {
            let m = Metrics::new();
            m.attach_leadership(Leadership::fixed(leader));
            m.attach_topologies(store.clone());
            m.render()
        };
        let leading = render(true);
        assert!(leading.contains("federator_leader 1"), "{leading}");
        assert!(leading.contains("topology=\"pg\""), "{leading}");
        let following = render(false);
        assert!(following.contains("federator_leader 0"), "{following}");
        assert!(!following.contains("topology=\"pg\""), "{following}");
    }

    #[test]
    fn reasons_outside_the_known_set_are_other() {
        assert_eq!(bounded(reason::TOKEN_LOST), "TokenLost");
        assert_eq!(bounded("something a future version wrote"), "Other");
    }
}
