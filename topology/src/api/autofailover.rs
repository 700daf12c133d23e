//! `spec.automaticFailover`: the opt-in policy of automatic region failover
//! (docs/automatic-failover.md). Its rules are checked by `autofailover::policy::arm`; a policy
//! they refuse leaves the topology running with manual failover only.

use kube::KubeSchema;
use policies::Duration;
use serde::{Deserialize, Serialize};

/// Automatic region failover: the hub and an agent per member region vote; a primary whose
/// agent cannot renew its heartbeat with a majority fences itself, and once a majority counts
/// its region lost the most advanced eligible replica is promoted without a demotion token.
/// Fields left out take the defaults of docs/automatic-failover.md (detection 10 s).
#[derive(KubeSchema, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AutomaticFailoverPolicy {
    /// How long a voter waits without a heartbeat from the primary's agent before it counts the
    /// primary's region lost (the lease). It must leave the primary's agent time to fence first:
    /// a value the timing rule refuses names the smallest one it accepts. Default 10s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detection_time: Option<Duration>,
    /// How much WAL a promoted replica may be behind the old primary's last reported flush
    /// position: a byte count (`0`, `16Mi`, `1Gi`) or `Any` (promote the most advanced replica
    /// however far behind, also when the old primary's position is unknown).
    #[schemars(length(min = 1, max = 32), pattern(r"^(Any|[0-9]+(Ki|Mi|Gi)?)$"))]
    pub data_loss_budget: String,
    /// The members that may be promoted automatically; empty or left out: every member.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 50)))]
    pub promotable: Vec<String>,
    /// How often an agent renews its member's heartbeat with every voter. Default 1s; at most
    /// half of `fenceAfter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_every: Option<Duration>,
    /// How long the primary's agent goes without a renewal a majority accepted before it fences
    /// its primary. Default 4s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence_after: Option<Duration>,
    /// The longest a fence may take to stop writes once the agent decided it (assumed, and
    /// measured by the agent). Default 2s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence_bound: Option<Duration>,
    /// The longest a crashed agent stays down before its replacement runs (assumed: the agent's
    /// Deployment restarts it). Default 2s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_restart_bound: Option<Duration>,
    /// Real time kept between the latest fence and the earliest promotion. Default 400ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_margin: Option<Duration>,
    /// Bound on the rate drift of every clock involved, in parts per million. Default 1000.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "clockDriftPPM"
    )]
    #[schemars(range(max = 99_999))]
    pub clock_drift_ppm: Option<u32>,
}
