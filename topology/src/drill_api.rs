//! The `DisasterRecoveryDrill` custom resource (`federator.dev/v1alpha1`, short name `drill`):
//! a rehearsed, measured planned switchover of one `DistributedTopology`, on demand or on a
//! schedule. The drill is a *client* of the ordinary switchover: it only sets the topology's
//! `spec.primary` and reads its status; the controller does the rest. `status` is the drill's
//! report (steps with timestamps, canary, write-unavailability, RPO, result).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, Time};
use kube::{CustomResource, KubeSchema};
use policies::Duration;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Field manager of every write a drill makes (the topology's `spec.primary`, the drill status).
pub const FIELD_MANAGER: &str = "federator-drill";
/// Annotation set by `federator drill` on the drills it runs itself: the controller leaves
/// those alone unless they carry a schedule.
pub const RUN_BY_ANNOTATION: &str = "federator.dev/drill-run-by";
/// Secret key read when a connection names no key (CNPG's `<cluster>-app` Secret has it).
pub const DEFAULT_URI_KEY: &str = "uri";
/// Secret key read when a CA reference names no key (CNPG's `<cluster>-ca` Secret has it).
pub const DEFAULT_CA_KEY: &str = "ca.crt";
/// Name of the table a drill writes its canary and probe rows to.
pub const TABLE: &str = "federator_drill";

/// A disaster-recovery drill: switch the primary of a topology to `to`, prove that a canary
/// written on the old primary is on the new one and that it takes writes, measure how long writes
/// were refused and whether acknowledged writes were lost, and optionally switch back.
// kube's `printcolumn(...)` repeats `type_ = "string"`, which clippy mistakes for a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "federator.dev",
    version = "v1alpha1",
    kind = "DisasterRecoveryDrill",
    doc = "A disaster-recovery drill of a DistributedTopology: a measured planned switchover (and optionally back), with a canary row, write-unavailability and RPO in its status report. Run on demand or on a cron schedule.",
    namespaced,
    status = "DisasterRecoveryDrillStatus",
    shortname = "drill",
    category = "federator",
    printcolumn(name = "Topology", type_ = "string", json_path = ".spec.topology"),
    printcolumn(name = "To", type_ = "string", json_path = ".spec.to"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Last run", type_ = "date", json_path = ".status.startedAt")
)]
#[serde(rename_all = "camelCase")]
pub struct DisasterRecoveryDrillSpec {
    /// Name of the DistributedTopology (same namespace) whose primary the drill moves.
    #[schemars(length(min = 1, max = 253))]
    pub topology: String,
    /// The member that becomes primary during the drill. It must not be the primary when the
    /// drill starts.
    #[schemars(length(min = 1, max = 50))]
    pub to: String,
    /// Switch back to the member that was primary when the drill started, and verify it again.
    #[serde(default, rename = "return")]
    pub return_to_original: bool,
    /// Run the drill on a cron schedule (controller only). Absent: the drill runs once, when it
    /// is created (by the controller, or by `federator drill` in-process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<DrillSchedule>,
    /// How to reach each member's PostgreSQL: at least the primary and `to`; every member listed
    /// lets the probe writer find the writable instance wherever it is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connection: Vec<MemberConnection>,
    /// How long each switchover of the drill may take before the drill fails (default `10m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

/// When a scheduled drill runs.
#[derive(KubeSchema, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DrillSchedule {
    /// Standard 5-field cron (minute hour day-of-month month day-of-week), read in `timeZone`;
    /// same syntax as a rotation's schedule (`0 3 * * SUN#1`).
    #[schemars(length(min = 1, max = 100))]
    pub cron: String,
    /// IANA time zone the schedule is read in (`Europe/Berlin`, `UTC`).
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: String,
    /// Stop scheduling runs (a running drill finishes).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
}

/// Where one member's libpq URI is kept.
#[derive(KubeSchema, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberConnection {
    /// Topology name of the member.
    #[schemars(length(min = 1, max = 50))]
    pub member: String,
    /// A Secret in the drill's namespace on the hub holding a libpq URI
    /// (`postgresql://user:password@host:5432/dbname`), e.g. a copy of CNPG's `<cluster>-app`
    /// Secret. The user needs CREATE on the database's public schema (for the `federator_drill`
    /// table) or the table created beforehand. With `sslmode=require`, `verify-ca` or
    /// `verify-full` in the URI the drill connects with TLS.
    pub secret_ref: SecretKeyRef,
    /// A Secret in the drill's namespace on the hub holding the PEM CA certificate(s) that
    /// signed the server's certificate (key defaults to `ca.crt`, the key of CNPG's
    /// `<cluster>-ca` Secret). Needed by `sslmode=verify-ca` and `verify-full`; with `require`
    /// it makes the drill check the chain too (libpq's behaviour with a root certificate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
}

/// A key of a Secret in the drill's namespace.
#[derive(KubeSchema, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key to read (default `uri` for a connection's URI, `ca.crt` for a CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// The report of the drill's last run, and when it is scheduled next.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DisasterRecoveryDrillStatus {
    /// The `metadata.generation` the last run was started for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Running`, `Succeeded` or `Failed` (absent: never run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<DrillPhase>,
    /// Who ran it: `cli/<host>-<pid>` or `controller/<identity>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<String>,
    /// Unique id of the run; the canary value and the probe rows carry it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The member that was primary when the run started (where it returns to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The member the run moved the primary to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// When the run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<MicroTime>,
    /// When the run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<MicroTime>,
    /// Every step entered, in order, with timings and what it found.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<DrillStep>,
    /// The canary row written on the old primary and whether the new primary has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
    /// One entry per switchover of the run (there, and back with `return`): its operation, how
    /// long writes were refused, and how many acknowledged writes the new primary lacks (RPO).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub switchovers: Vec<SwitchoverMeasurement>,
    /// Each time another controller process took the run over (the one running it stopped or
    /// crashed): when, who, and at which step. The run goes on from the step its status records.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resumes: Vec<DrillResume>,
    /// Counts of the probe writer over the whole run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writes: Option<WriteCounts>,
    /// Why the run failed: the step and what it found. Absent when it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<DrillFailure>,
    /// The scheduled time the last scheduled run was started for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// The next scheduled time, if the drill has a schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_schedule_time: Option<Time>,
    /// `Succeeded` (True / False with the failure reason / Unknown while running).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// A run taken over by another controller process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrillResume {
    /// When the run was taken over.
    pub at: MicroTime,
    /// The runner that took it over (`controller/<identity>`).
    pub runner: String,
    /// The step the run was at.
    pub step: DrillStepName,
}

/// Phase of the last run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DrillPhase {
    Running,
    Succeeded,
    Failed,
}

/// Steps of a drill, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum DrillStepName {
    /// The topology is Ready with no operation; the primary takes writes and `to` is a replica.
    Preflight,
    /// The canary row is written and acknowledged on the primary; the probe writer starts.
    WriteCanary,
    /// `spec.primary` = `to`, until the topology's history shows the switchover Succeeded.
    Switchover,
    /// The new primary takes writes and has the canary and every acknowledged write.
    Verify,
    /// `spec.primary` back to the original member, until that switchover Succeeded.
    SwitchBack,
    /// The original member takes writes again and has the canary and every acknowledged write.
    VerifyReturn,
}

impl DrillStepName {
    pub fn as_str(self) -> &'static str {
        match self {
            DrillStepName::Preflight => "Preflight",
            DrillStepName::WriteCanary => "WriteCanary",
            DrillStepName::Switchover => "Switchover",
            DrillStepName::Verify => "Verify",
            DrillStepName::SwitchBack => "SwitchBack",
            DrillStepName::VerifyReturn => "VerifyReturn",
        }
    }
}

impl std::fmt::Display for DrillStepName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrillStep {
    pub name: DrillStepName,
    pub started_at: MicroTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<MicroTime>,
    /// `Running`, `Succeeded` or `Failed`.
    pub outcome: DrillPhase,
    /// What the step found (or why it failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The canary row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Canary {
    /// The value written (`<run id>-canary`).
    pub value: String,
    /// The member it was written on (the primary at the start).
    pub written_on: String,
    /// When its INSERT was acknowledged.
    pub written_at: MicroTime,
    /// Whether the new primary had it (absent until checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found_on_new_primary: Option<bool>,
    /// With `return`: whether the original primary had it after switching back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found_after_return: Option<bool>,
}

/// What one switchover of the drill cost.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SwitchoverMeasurement {
    pub from: String,
    pub to: String,
    /// When the drill asked for this switchover (recorded before it set `spec.primary`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_at: Option<MicroTime>,
    /// The topology's `metadata.generation` once `spec.primary` was set: the operation of this
    /// switchover is the one whose id starts with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// Set when the probe writer was restarted after the switchover was asked for (the run was
    /// taken over by another controller): unavailability and RPO cover only the writes from
    /// this instant on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_from: Option<MicroTime>,
    /// `status.history[].id` of the topology's operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_id: Option<String>,
    /// The operation's own duration (its `startedAt` → `finishedAt`), in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_millis: Option<u64>,
    /// The probe's first refused or failed write after the switchover was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_failed_write_at: Option<MicroTime>,
    /// The first write acknowledged after that (on the new primary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_successful_write_at: Option<MicroTime>,
    /// Write-unavailability: first failed → first successful write, in milliseconds (0 when no
    /// write failed; resolution about the probe's 10 ms cadence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable_millis: Option<u64>,
    /// Probe writes acknowledged before the new primary was checked.
    pub acknowledged_writes: u64,
    /// Of those, how many the new primary does not have. Non-zero means data loss.
    pub lost_writes: u64,
    /// RPO: from the newest acknowledged write the new primary has to the newest acknowledged
    /// write it lacks, in milliseconds (0 when nothing acknowledged was lost).
    pub rpo_millis: u64,
}

/// Counts of the probe writer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WriteCounts {
    pub attempted: u64,
    pub acknowledged: u64,
    pub failed: u64,
    /// The sequence numbers of the acknowledged probe writes, as sorted inclusive ranges
    /// (`[first, last]`), as of the last status write. A controller that takes the run over
    /// starts a new probe writer; it checks these on the new primary too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acknowledged_seqs: Vec<[i64; 2]>,
}

/// Where and why a run stopped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrillFailure {
    pub step: DrillStepName,
    /// CamelCase reason (e.g. `TargetUnreachable`, `SwitchoverHeld`, `CanaryMissing`).
    pub reason: String,
    /// What was found, what the drill did about it and what to check.
    pub message: String,
}

/// Condition type and reasons written on a drill.
pub mod condition {
    /// True: the last run succeeded; False: it failed (reason = the failure's); Unknown: running.
    pub const SUCCEEDED: &str = "Succeeded";
    pub const REASON_RUNNING: &str = "Running";
    pub const REASON_SUCCEEDED: &str = "DrillSucceeded";
    /// Unknown: the controller running the drill stopped (SIGTERM) at the step the message names;
    /// the next leader resumes it.
    pub const REASON_STOPPED: &str = "ControllerStopped";
    /// Unknown: a controller took the run over and goes on from the step the message names.
    pub const REASON_RESUMED: &str = "Resumed";
}
