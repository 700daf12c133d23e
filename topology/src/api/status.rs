//! `status` of a `DistributedTopology`: what the controller saw and how far the current
//! operation got. The operation log is written **before** each side effect (with a
//! resourceVersion precondition), so a restarted controller resumes exactly where it stopped.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::cnpg::Role;
pub use crate::step::{OperationKind, StepKind};

/// How many finished operations `status.history` keeps (oldest dropped first).
pub const HISTORY_LIMIT: usize = 10;

/// Observed state of a distributed topology, written by the Federator controller.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DistributedTopologyStatus {
    /// The `metadata.generation` of the spec this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The member whose CNPG Cluster is primary by its spec (contract §1.1), if exactly one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_primary: Option<String>,
    /// Per-member observations, in `spec.members` order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberStatus>,
    /// Standard conditions (`Ready`, `Valid`, `SwitchoverInProgress`, `Degraded`); types and
    /// reasons are listed in Federator's `topology::conditions` module.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The switchover or failover in progress, as a durable step log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<Operation>,
    /// The last finished operations, newest last, with their step timings (bounded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<OperationRecord>,
    /// The last failover request acted on (or refused), with what is known of its data loss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failover: Option<FailoverReport>,
    /// Former primaries left behind by a failover: made replicas of the new primary as soon as
    /// they can be read again, and to be re-cloned before they serve again (CNPG has no rewind).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fenced_members: Vec<FencedMember>,
    /// Scheduled rotations (`spec.rotation`): what was decided and what comes next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<RotationStatus>,
    /// Automatic failover (`spec.automaticFailover`): the term the voters count in and its
    /// primary. Absent until the hub arms it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automatic_failover: Option<AutomaticFailoverStatus>,
}

/// The hub's record of automatic failover for one topology.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutomaticFailoverStatus {
    /// The number of the current primary's reign: raised by every change of primary (automatic
    /// failover, failover, switchover). A voter's "lost" vote is about one term; renewals of
    /// older terms are refused.
    pub term: u64,
    /// The primary of `term`: the member whose heartbeat the voters watch.
    pub primary: String,
    /// The last automatic failover the hub decided (the votes, the election, the loss bound).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_decision: Option<AutomaticFailoverDecision>,
}

/// One automatic failover as decided: recorded before `spec.primary` and `spec.failover` are set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutomaticFailoverDecision {
    /// The term whose primary was declared lost (the new primary's term is one more).
    pub term: u64,
    /// The lost primary.
    pub from: String,
    /// The elected replica.
    pub to: String,
    pub decided_at: MicroTime,
    /// The voters that counted `from` lost.
    pub voters: Vec<String>,
    /// Bytes of WAL `from` reported flushed beyond what `to` received; absent when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behind_bytes: Option<u64>,
    /// `spec.failover.requestedAt` of the request it set (`automatic-term-<n>`).
    pub request: String,
}

/// What Federator did with a failover request, and the possible data loss.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailoverReport {
    /// The request (`spec.failover`) this report answers; the same request is not acted on twice.
    pub request: crate::api::FailoverRequest,
    /// The old primary (the last member the reachable members named as primary).
    pub from: String,
    /// The promoted member.
    pub to: String,
    /// When Federator decided.
    pub decided_at: MicroTime,
    /// The failover operation started (`status.operation` / `status.history` id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// Why the request was refused (nothing was changed), if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// What CNPG's status lets Federator know of the writes that may be lost, and what it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_loss: Option<DataLossWindow>,
}

/// The possible data-loss window of a failover, from CNPG `Cluster` status fields only.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataLossWindow {
    /// `status.timelineID` the old primary last reported before it became unreachable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_primary_timeline: Option<i64>,
    /// `status.systemID` the old primary last reported.
    #[serde(
        rename = "oldPrimarySystemID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub old_primary_system_id: Option<String>,
    /// When the hub lost sight of the old primary's member (its last successful read is before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_primary_unreachable_since: Option<MicroTime>,
    /// `status.systemID` of the target when it was promoted (must equal the old primary's).
    #[serde(
        rename = "targetSystemID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub target_system_id: Option<String>,
    /// `status.timelineID` of the new primary once it reported the promotion: the timeline
    /// that forked off the old primary's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_primary_timeline: Option<i64>,
    /// When the new primary reported the promotion: writes go there from this instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_at: Option<MicroTime>,
    /// The most WAL the target reported received from the old primary before its promotion
    /// (`receivedLsn` of its instance status, read through the member's `pods/proxy` while the
    /// failover was about to promote it): its new timeline forks at or after this LSN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_received_lsn: Option<String>,
    /// What the old primary's instance reported the first time it could be read after the
    /// failover (in the reconcile that fences it, or as soon as its instance answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_primary_returned: Option<ReturnedPrimary>,
    /// The window in words: which writes may be lost.
    pub summary: String,
    /// What Federator cannot know from CNPG's status, and where to look instead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unknown: Vec<String>,
}

/// The old primary of a failover as its instance reported itself once it could be read again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReturnedPrimary {
    /// When it was read.
    pub read_at: MicroTime,
    /// It still ran as a primary (`isPrimary`): it had been cut off, not down, and could take
    /// writes the whole time.
    pub primary: bool,
    /// `currentLsn` on a primary; in recovery the later of `receivedLsn` and `replayLsn`.
    pub lsn: String,
    /// `timeLineID` (its latest checkpoint's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<i64>,
    /// A primary's WAL past `targetReceivedLsn`, in bytes (0 when it went no further): WAL the
    /// new primary never had. Absent in recovery or when the target's position is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_past_target_bytes: Option<u64>,
}

/// A former primary fenced (or to be fenced) after a failover.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FencedMember {
    /// Topology name of the former primary.
    pub name: String,
    /// The failover operation that left it behind.
    pub failover: String,
    /// The primary it must follow (and be re-cloned from).
    pub new_primary: String,
    /// When its spec was seen to name the new primary; absent while it cannot be read (pending).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fenced_at: Option<MicroTime>,
    /// Always true: it may hold writes past the fork of the new timeline, which CNPG cannot
    /// rewind. Delete and re-create its Cluster from the new primary (`pg_basebackup`); the entry
    /// goes away when its Cluster is deleted.
    pub needs_reclone: bool,
}

/// What the controller last saw of one member's CNPG Cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    /// Topology name of the member.
    pub name: String,
    /// The member Kubernetes cluster it runs in.
    pub cluster: String,
    /// Role by the CNPG role rule applied to its spec (`primary` or `replica`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// CNPG `status.phase`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// CNPG `status.timelineID` (on a replica: the last value seen while it was primary).
    #[serde(
        rename = "timelineID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub timeline_id: Option<i64>,
    /// CNPG `status.systemID`: the PostgreSQL system identifier.
    #[serde(rename = "systemID", default, skip_serializing_if = "Option::is_none")]
    pub system_id: Option<String>,
    /// True when the phase is healthy and all instances are ready.
    #[serde(default)]
    pub ready: bool,
    /// False when the member's API server could not be read; the other fields are then stale.
    #[serde(default)]
    pub reachable: bool,
    /// Since when it cannot be read (absent while reachable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreachable_since: Option<MicroTime>,
}

/// The durable log of one switchover or failover.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    /// Unique id, e.g. `<generation>-<from>-to-<to>`; events and metrics carry it.
    pub id: String,
    /// `switchover` (token-gated) or `failover` (explicit, no token).
    pub kind: OperationKind,
    /// The member that was primary when the operation started.
    pub from: String,
    /// The member that should become primary.
    pub to: String,
    /// The current step; its side effect may or may not have happened yet.
    pub step: StepKind,
    /// The demotion token of `from`, persisted the first time it was seen (CNPG #11074 can wipe it
    /// from the member's status afterwards).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// True once a fatal token error sent the operation back to `from`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rolled_back: bool,
    /// When the operation started.
    pub started_at: MicroTime,
    /// When the operation finished (set together with `outcome`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<MicroTime>,
    /// Every step entered so far, with its timings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepRecord>,
    /// Why the operation is stopped waiting for a human, if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<Hold>,
    /// How the operation ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// A switchover of a topology with `spec.hooks`: the hooks as they were when it started
    /// (editing the topology mid-switchover does not change what it runs), the one running, and
    /// every hook run that ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<OperationHooks>,
}

/// The hooks of one switchover (`status.operation.hooks`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationHooks {
    /// The topology's `spec.hooks` when the switchover started.
    #[serde(default, skip_serializing_if = "crate::region_api::Hooks::is_empty")]
    pub declared: crate::region_api::Hooks,
    /// The index of the hook running, in the current hook step's list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<u32>,
    /// Every hook run that ended: which, when, how.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<crate::region_api::HookRun>,
}

/// A finished operation as `status.history` keeps it. Its step timings are one line of text, not
/// one object per step: the API server's cost of every status write — the step log is written
/// before each side effect, inside a switchover's write outage — grows with the objects the
/// status holds. Ten histories of nine timestamped step objects doubled the hub's CPU per write
/// (17 → 8.5 ms, measured on the lab; docs/benchmarks.md). The demotion token is not kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationRecord {
    /// The operation's id (`<generation>-<from>-to-<to>`).
    pub id: String,
    /// `switchover` or `failover`.
    pub kind: OperationKind,
    /// The member that was primary when the operation started.
    pub from: String,
    /// The member that was to become primary.
    pub to: String,
    /// True if a fatal token error sent the operation back to `from`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rolled_back: bool,
    /// When the operation started.
    pub started_at: MicroTime,
    /// When the operation finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<MicroTime>,
    /// How the operation ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// Every step in order, `<Step>[ <member>] <milliseconds>ms`, separated by `, `; e.g.
    /// `Validate 1.2ms, Demote pg-a 41.0ms, AwaitToken pg-a 180.4ms`. A hook step names its
    /// hook instead of a member: `HooksBeforeDemotion stop-apps 812.0ms`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub step_timings: String,
    /// The hook runs of the operation (a switchover of a topology with `spec.hooks`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hook_runs: Vec<crate::region_api::HookRun>,
}

/// Timings of one step of an operation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepRecord {
    /// The step.
    pub step: StepKind,
    /// The member the step patches or watches, when there is one; for a hook step, the hook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// When the controller entered the step (recorded before its side effect).
    pub started_at: MicroTime,
    /// When the step's completion was observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<MicroTime>,
}

/// A stopped operation: what happened and what an operator should check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Hold {
    /// Machine-readable reason (one of `topology::conditions::reason`).
    pub reason: String,
    /// Human-readable explanation, including what to check.
    pub message: String,
}

/// How an operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Outcome {
    /// The target is primary and every member agrees.
    Succeeded,
    /// A fatal token error made Federator promote the old primary back.
    RolledBack,
    /// Abandoned by a human (e.g. `spec.primary` set back while holding).
    Abandoned,
    /// A hook before the demotion failed or timed out: nothing was demoted, the old primary
    /// stays. Not retried for the same spec.
    Aborted,
}

/// What the controller decided about `spec.rotation`. `lastScheduleTime` is written before a
/// rotation starts, with the same resourceVersion-checked write as the step log, so a scheduled
/// time is never acted on twice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RotationStatus {
    /// Fingerprint of `spec.rotation.schedule` and `timeZone` in effect; when it changes, the
    /// schedule starts over at `activeSince`.
    pub schedule_digest: String,
    /// When the current schedule took effect (first seen, or last changed). Scheduled times at
    /// or before it are never due, so a new schedule does not act on the past.
    pub active_since: Time,
    /// The scheduled time of the last rotation that was started or skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// The next time a rotation would start if the members allow it (freezes and maintenance
    /// windows taken into account); absent while suspended or when the schedule never fires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_rotation_time: Option<Time>,
    /// The latest decision; it changes only when the decision does, not at every reconcile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_decision: Option<RotationDecisionRecord>,
    /// The last scheduled time that was skipped, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_skip: Option<RotationDecisionRecord>,
    /// The last rotation started: `spec.primary` was set to its target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation: Option<RotationRecord>,
}

/// One decision of the rotation scheduler.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RotationDecisionRecord {
    /// `Rotate`, `Wait`, `Hold` or `Skip`.
    pub decision: String,
    /// Why a rotation was held or skipped (CamelCase, e.g. `FreezePeriod`, `PreconditionFailed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable explanation.
    pub message: String,
    /// The scheduled time the decision is about (absent for `Wait`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_for: Option<Time>,
    /// When the controller first made this decision.
    pub time: Time,
}

/// A rotation that was started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RotationRecord {
    /// The scheduled time it was started for.
    pub scheduled_for: Time,
    /// When the controller set `spec.primary` to the target.
    pub started_at: Time,
    /// The member that was primary.
    pub from: String,
    /// The member that became the desired primary.
    pub to: String,
}
