//! `spec.rotation`: the manifest form of a rotation policy, exactly as a user writes it.
//!
//! Text fields (schedule, time zone, window times) stay strings here so that a typo never makes
//! the whole `DistributedTopology` unreadable: [`RotationPolicy::validate`] reports them with the
//! field's path and a fix, and the controller shows that in status.

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Duration;

/// Default of `missedSchedule.startingDeadline`: long enough to absorb a controller restart or a
/// leader-election hand-over, short enough that a rotation never starts far from its slot.
pub const DEFAULT_STARTING_DEADLINE: Duration = Duration::from_secs(15 * 60);
/// Default of `preconditions.maxReplayLag`: a target further behind than this would make the
/// switchover's write-unavailability (the target replaying up to the demotion token) too long.
pub const DEFAULT_MAX_REPLAY_LAG: Duration = Duration::from_secs(30);
/// Default of `preconditions.failureCooldown`: after a failed operation a human looks first.
pub const DEFAULT_FAILURE_COOLDOWN: Duration = Duration::from_secs(24 * 3600);

/// Scheduled rotation of the primary between members: when, in which order, in which windows,
/// never during a freeze, and only when the topology is healthy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RotationPolicy {
    /// When rotations are due: a standard 5-field cron expression (minute hour day-of-month
    /// month day-of-week), read in `timeZone`. Example: `0 2 1 1,4,7,10 *` is 02:00 on the first
    /// day of each quarter. Names (`JAN`, `SAT`), ranges, lists, steps and `L`/`#`/`W` are allowed;
    /// seconds and years are not.
    #[schemars(length(min = 1, max = 256))]
    pub schedule: String,
    /// IANA time zone in which `schedule` and `maintenanceWindows` are read, e.g.
    /// `Europe/Berlin` or `UTC`. Across daylight-saving changes a time that does not exist
    /// (spring forward) happens at the first instant after the gap, and a time that happens twice
    /// (fall back) happens once, at the first of the two.
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: String,
    /// Which member becomes primary at each rotation. Defaults to `nextInRing`.
    #[serde(default)]
    pub order: RotationOrder,
    /// When a rotation may start. A due rotation outside every window is held back
    /// (`OutsideMaintenanceWindow`). Empty or absent: at any time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub maintenance_windows: Vec<MaintenanceWindow>,
    /// Periods in which no rotation starts, e.g. a year-end freeze (`FreezePeriod`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub freeze_periods: Vec<FreezePeriod>,
    /// What must hold for a rotation to start; defaults apply to fields left out.
    #[serde(default)]
    pub preconditions: Preconditions,
    /// What happens to a rotation that cannot start at its scheduled time.
    #[serde(default)]
    pub missed_schedule: MissedSchedule,
    /// True stops rotations: each scheduled time that passes while suspended is skipped
    /// (`Suspended`) and never run later, unlike a CronJob.
    #[serde(default)]
    pub suspend: bool,
}

/// The order of rotation. Set at most one field; none means `nextInRing`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!(has(self.nextInRing) && has(self.explicit))",
    "message": "set at most one of nextInRing, explicit",
}]))]
pub struct RotationOrder {
    /// The member after the current primary in the topology's order becomes primary: the order
    /// of `spec.shape.ring` for a ring, of `spec.members` otherwise, wrapping around.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_in_ring: Option<NextInRing>,
    /// The members to rotate through, in this order, wrapping around: the entry after the
    /// current primary becomes primary (the first entry when the primary is not listed).
    /// At least two distinct members of `spec.members`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 50)))]
    pub explicit: Option<Vec<String>>,
}

/// Marker for `order.nextInRing`; it has no settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NextInRing {}

/// A weekly window in `timeZone` during which a rotation may start (it may finish after the
/// window closes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceWindow {
    /// The days on which the window opens, e.g. `[Saturday, Sunday]`.
    #[schemars(length(min = 1, max = 7))]
    pub days: Vec<Weekday>,
    /// Local time at which the window opens, `HH:MM` (24-hour clock), e.g. `01:00`.
    #[schemars(pattern(r"^([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    pub start: String,
    /// Local time at which the window closes, `HH:MM`. When it is not after `start` the window
    /// closes on the next day (`22:00`–`04:00`); equal to `start` means 24 hours.
    #[schemars(pattern(r"^([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    pub end: String,
}

/// A day of the week.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum Weekday {
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
    Sunday,
}

impl Weekday {
    pub(crate) fn to_jiff(self) -> jiff::civil::Weekday {
        use jiff::civil::Weekday as J;
        match self {
            Weekday::Monday => J::Monday,
            Weekday::Tuesday => J::Tuesday,
            Weekday::Wednesday => J::Wednesday,
            Weekday::Thursday => J::Thursday,
            Weekday::Friday => J::Friday,
            Weekday::Saturday => J::Saturday,
            Weekday::Sunday => J::Sunday,
        }
    }
}

/// An absolute period in which no rotation starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FreezePeriod {
    /// First instant of the freeze, RFC 3339 with an offset, e.g. `2026-12-15T00:00:00+01:00`.
    #[schemars(schema_with = "date_time_schema")]
    pub start: Timestamp,
    /// First instant after the freeze (exclusive), RFC 3339 with an offset.
    #[schemars(schema_with = "date_time_schema")]
    pub end: Timestamp,
    /// Why nothing may move, shown in the skip Event and status, e.g. `year-end freeze`.
    #[schemars(length(min = 1, max = 256))]
    pub reason: String,
}

fn date_time_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "string", "format": "date-time"})
}

/// What must hold, when a rotation is due, for it to start. An operation in progress always
/// holds a rotation back; that is not configurable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Preconditions {
    /// Every member must be Ready (default true). The target must be Ready whatever this says.
    pub all_members_ready: bool,
    /// Largest replay lag, as time behind the primary, the target may have (default `30s`); a
    /// target whose lag is unknown does not take over. Not checked by Federator's controller
    /// yet: CNPG's Cluster status does not publish replay lag (docs/rotations.md).
    pub max_replay_lag: Duration,
    /// Largest replay lag, in bytes of WAL, the target may have. Unset (the default): not
    /// checked. Not checked by Federator's controller yet, as `maxReplayLag`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_replay_lag_bytes: Option<u64>,
    /// No rotation starts until this long after the last failed operation (default `24h`).
    pub failure_cooldown: Duration,
}

impl Default for Preconditions {
    fn default() -> Self {
        Preconditions {
            all_members_ready: true,
            max_replay_lag: DEFAULT_MAX_REPLAY_LAG,
            max_replay_lag_bytes: None,
            failure_cooldown: DEFAULT_FAILURE_COOLDOWN,
        }
    }
}

/// What happens to a rotation that cannot start at its scheduled time, because something held
/// it back or because the controller was not running then.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct MissedSchedule {
    /// `Skip` (default): a rotation held back when due is skipped at once, with the reason.
    /// `RunOnce`: it is retried and starts once, as soon as nothing holds it back.
    pub policy: MissedSchedulePolicy,
    /// How late after its scheduled time a rotation may still start (default `15m`, at least
    /// `1m`), like a CronJob's `startingDeadlineSeconds`. Past it the rotation is skipped
    /// (`MissedDeadline`).
    pub starting_deadline: Duration,
}

impl Default for MissedSchedule {
    fn default() -> Self {
        MissedSchedule {
            policy: MissedSchedulePolicy::Skip,
            starting_deadline: DEFAULT_STARTING_DEADLINE,
        }
    }
}

/// See [`MissedSchedule::policy`]. Variants carry no `///` docs on purpose: schemars would turn
/// documented variants into a `oneOf`, which a structural CRD schema does not allow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum MissedSchedulePolicy {
    // A rotation held back when due is skipped at once.
    #[default]
    Skip,
    // A held-back or late rotation starts once, as soon as it can, within the deadline.
    RunOnce,
}
