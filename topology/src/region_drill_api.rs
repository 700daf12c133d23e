//! The `RegionDrill` custom resource (`federator.dev/v1alpha1`, short name `rdrill`): a region
//! switch there and back, with a canary and a probe writer in every database it moves, and one
//! evidence report in its status (per-database write-unavailability and RPO, hook timings, total
//! time, the objects that moved, pass/fail per check). A region drill is a *client* of
//! `RegionSwitch`, as a `DisasterRecoveryDrill` is a client of the switchover: it creates one
//! region switch per direction (named `<drill>-there`, `<drill>-back`) and reads their status.
//! Its pure rules are in [`crate::region::drill`].

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime};
use kube::{CustomResource, KubeSchema};
use policies::Duration;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::drill_api::{DrillPhase, WriteCounts};
use crate::region_api::MovePolicy;

/// Field manager of every write a region drill makes (its status, the region switches it creates).
pub const FIELD_MANAGER: &str = "federator-region-drill";
/// `${member}` in `spec.connection.secretName` is replaced by each member's name.
pub const MEMBER_PLACEHOLDER: &str = "${member}";

/// Switch a region there and back with a canary in every database, and report the evidence.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "federator.dev",
    version = "v1alpha1",
    kind = "RegionDrill",
    doc = "A region-level disaster-recovery drill: a RegionSwitch from spec.from to spec.to and back, with a canary row and a probe writer in every database it moves, and one evidence report in status (per-database write-unavailability and RPO, hook timings, total time, the objects that moved, pass/fail per check).",
    namespaced,
    status = "RegionDrillStatus",
    shortname = "rdrill",
    category = "federator",
    printcolumn(name = "From", type_ = "string", json_path = ".spec.from"),
    printcolumn(name = "To", type_ = "string", json_path = ".spec.to"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Step", type_ = "string", json_path = ".status.step"),
    printcolumn(name = "Checks", type_ = "string", json_path = ".status.summary")
)]
#[serde(rename_all = "camelCase")]
pub struct RegionDrillSpec {
    /// The region whose primaries move during the drill (a member cluster, as in the topologies'
    /// `spec.members[].cluster`).
    #[schemars(length(min = 1, max = 63))]
    pub from: String,
    /// The region they move to.
    #[schemars(length(min = 1, max = 63))]
    pub to: String,
    /// Switch back to `from` afterwards and verify again (default true).
    #[serde(default = "yes", rename = "return")]
    pub return_to_original: bool,
    /// What moves and how, as in a RegionSwitch (`matchLabels`, `concurrency`, `onHold`,
    /// `timeout`, `hooks`); both region switches of the drill get it (the way back with the
    /// regions swapped, so `From`/`To` hooks act in the region left/entered each time).
    #[serde(flatten)]
    pub moves: MovePolicy,
    /// How the drill reaches each database: one hub Secret per member.
    #[serde(default)]
    pub connection: ConnectionTemplate,
    /// Limits the report checks besides "every database moved, kept its canary and lost no
    /// acknowledged write".
    #[serde(default, skip_serializing_if = "DrillLimits::is_empty")]
    pub limits: DrillLimits,
}

fn yes() -> bool {
    true
}

/// The hub Secret holding each member's libpq URI (CloudNativePG's `<cluster>-app` Secret copied
/// to the hub has it under `uri`).
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionTemplate {
    /// The Secret's name, in the drill's namespace; `${member}` is replaced by the member's
    /// name (default `${member}-app`).
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    /// The key of the URI (default `uri`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl Default for ConnectionTemplate {
    fn default() -> Self {
        ConnectionTemplate {
            secret_name: format!("{MEMBER_PLACEHOLDER}-app"),
            key: None,
        }
    }
}

impl ConnectionTemplate {
    /// The Secret of `member`.
    pub fn secret_of(&self, member: &str) -> String {
        self.secret_name.replace(MEMBER_PLACEHOLDER, member)
    }
}

/// Upper bounds the report checks (absent: not checked).
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DrillLimits {
    /// The most any database may refuse writes during one switchover, e.g. `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_write_unavailability: Option<Duration>,
    /// The most the whole drill may take, e.g. `30m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_total: Option<Duration>,
}

impl DrillLimits {
    pub fn is_empty(&self) -> bool {
        self.max_write_unavailability.is_none() && self.max_total.is_none()
    }
}

/// The drill's run and its evidence report.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegionDrillStatus {
    /// The `metadata.generation` the run was started for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Running`, `Succeeded` (every check passed) or `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<DrillPhase>,
    /// The step the run is at (or ended at).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<RegionDrillStep>,
    /// Who runs it: `cli/<host>-<pid>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<String>,
    /// Unique id of the run; the canaries and probe rows carry it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<MicroTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<MicroTime>,
    /// Start to end, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_millis: Option<u64>,
    /// `passed/checks`, e.g. `5/5`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// The region switches of the run, in order (there, and back).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub legs: Vec<Leg>,
    /// Every database the first region switch selected to move, with its evidence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub databases: Vec<DatabaseEvidence>,
    /// Every hook the region switches ran, with its timing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<HookTiming>,
    /// The objects that moved: each topology's primary, per leg.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub moved: Vec<MovedObject>,
    /// Pass/fail per check, once the run ended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckResult>,
    /// Why the run stopped early (a region switch did not succeed, a database was unreachable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// Each time a run was continued by another process (`federator region drill --resume`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resumes: Vec<MicroTime>,
    /// `Succeeded`: True when every check passed; False with the failed checks; Unknown while
    /// running.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// Steps of a region drill, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum RegionDrillStep {
    /// The first region switch is created paused and selects the databases; every database's
    /// members are read from the topology and their URIs from the hub Secrets.
    Select,
    /// A canary row is written on every database's primary and a probe writer starts in each.
    WriteCanaries,
    /// The first region switch is resumed, until it ended.
    SwitchThere,
    /// Every new primary has its canary and every acknowledged write; measured per database.
    VerifyThere,
    /// The second region switch (regions swapped) runs, until it ended.
    SwitchBack,
    /// Every original primary has its canary and every acknowledged write again.
    VerifyBack,
    /// The report's checks were computed; the run ended.
    Done,
}

impl RegionDrillStep {
    pub fn as_str(self) -> &'static str {
        match self {
            RegionDrillStep::Select => "Select",
            RegionDrillStep::WriteCanaries => "WriteCanaries",
            RegionDrillStep::SwitchThere => "SwitchThere",
            RegionDrillStep::VerifyThere => "VerifyThere",
            RegionDrillStep::SwitchBack => "SwitchBack",
            RegionDrillStep::VerifyBack => "VerifyBack",
            RegionDrillStep::Done => "Done",
        }
    }
}

impl std::fmt::Display for RegionDrillStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One region switch of the drill.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Leg {
    /// The RegionSwitch (same namespace).
    pub region_switch: String,
    pub from: String,
    pub to: String,
    /// When the drill let it move (resumed it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<MicroTime>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<MicroTime>,
    /// Its phase when it ended (`Succeeded`, `Failed`, `Holding`, `Refused`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

/// One database of the drill.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseEvidence {
    /// The DistributedTopology.
    pub topology: String,
    /// Its primary at the start (in `spec.from`).
    pub primary: String,
    /// Its member in `spec.to`.
    pub target: String,
    /// The canary value (`<run id>-<topology>-canary`), once written on `primary`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<String>,
    /// Per leg, whether the new primary had the canary (in leg order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub canary_found: Vec<bool>,
    /// Per leg, what the switchover cost this database.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub switchovers: Vec<DatabaseSwitchover>,
    /// The probe writer's counts (acknowledged sequence numbers as ranges, for a resumed run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writes: Option<WriteCounts>,
}

/// What one switchover cost one database.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSwitchover {
    pub from: String,
    pub to: String,
    /// Write-unavailability: the probe's first refused write after the switchover was asked
    /// for → the first acknowledged one after it, in milliseconds (0: no write refused; absent:
    /// writes did not come back, or the probe did not run then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable_millis: Option<u64>,
    /// Probe writes acknowledged before the new primary was checked.
    pub acknowledged_writes: u64,
    /// Of those, how many the new primary lacks (non-zero: data loss).
    pub lost_writes: u64,
    /// RPO: newest acknowledged write kept → newest lost, in milliseconds (0: none lost).
    pub rpo_millis: u64,
}

/// One hook one region switch ran for one topology.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HookTiming {
    /// The RegionSwitch that ran it.
    pub region_switch: String,
    pub topology: String,
    /// `beforeDemotion/<name>` or `afterPromotion/<name>`.
    pub hook: String,
    pub millis: u64,
    pub ok: bool,
    /// What it did (the objects it scaled or patched) or why it failed.
    pub detail: String,
}

/// An object the drill moved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MovedObject {
    /// The RegionSwitch that moved it.
    pub region_switch: String,
    /// `DistributedTopology/<name>` (its primary).
    pub object: String,
    pub from: String,
    pub to: String,
    /// The topology's switchover operation, once it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// `Moved`, `Failed`, `Held`, `Aborted`, ... (the region switch's state of the topology).
    pub state: String,
}

/// One check of the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckResult {
    /// `EveryDatabaseMoved`, `CanariesKept`, `NoAcknowledgedWriteLost`, `HooksSucceeded`,
    /// `WriteUnavailabilityWithinLimit`, `TotalTimeWithinLimit`.
    pub name: String,
    pub passed: bool,
    /// What was measured against what, and which databases failed it.
    pub detail: String,
}

/// Condition type and reasons written on a region drill.
pub mod condition {
    /// True: every check passed; False: a check failed or the run stopped; Unknown: running.
    pub const SUCCEEDED: &str = "Succeeded";
    pub const REASON_RUNNING: &str = "Running";
    pub const REASON_PASSED: &str = "ChecksPassed";
    pub const REASON_FAILED: &str = "ChecksFailed";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_defaults_return_and_use_the_app_secret_of_each_member() {
        let spec: RegionDrillSpec =
            serde_json::from_value(serde_json::json!({"from": "eu-central", "to": "eu-western"}))
                .unwrap();
        assert!(spec.return_to_original);
        assert_eq!(spec.connection.secret_of("db1-c"), "db1-c-app");
        assert_eq!(spec.moves.concurrency, 1);
        assert!(spec.limits.is_empty());
    }
}
