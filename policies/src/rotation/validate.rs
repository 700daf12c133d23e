//! Checks a [`RotationPolicy`] against the topology's members and compiles it into a
//! [`ValidatedRotation`] that the evaluator can use without failing.
//!
//! Every problem is reported, not only the first, each naming its field under `spec.rotation`
//! and saying how to fix it, because the message goes verbatim into status and Events.

use std::collections::BTreeSet;
use std::fmt;

use jiff::Timestamp;
use jiff::civil::Time;
use jiff::tz::TimeZone;

use super::calendar::Window;
use super::policy::{FreezePeriod, MissedSchedule, Preconditions, RotationPolicy};
use super::schedule::Schedule;
use crate::Duration;

/// Where the policy lives in a `DistributedTopology`; every error path starts with it.
pub const FIELD_ROOT: &str = "spec.rotation";

/// The shortest `startingDeadline` accepted: below it an ordinary reconcile delay would make
/// every rotation miss its deadline.
pub const MIN_STARTING_DEADLINE: Duration = Duration::from_secs(60);

/// One problem in a rotation policy.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RotationError {
    #[error(
        "{FIELD_ROOT}.schedule: invalid cron expression {expression:?}: {why}; fix: use 5 fields \
         (minute hour day-of-month month day-of-week), e.g. \"0 2 1 1,4,7,10 *\""
    )]
    InvalidSchedule { expression: String, why: String },
    #[error(
        "{FIELD_ROOT}.schedule: cron expression {expression:?} never fires (no such date); \
         fix: check the day-of-month against the month, e.g. there is no 30 February"
    )]
    ScheduleNeverFires { expression: String },
    #[error(
        "{FIELD_ROOT}.timeZone: unknown time zone {name:?}: {why}; fix: use an IANA name such as \
         \"Europe/Berlin\" or \"UTC\""
    )]
    UnknownTimeZone { name: String, why: String },
    #[error("{FIELD_ROOT}.order: both nextInRing and explicit are set; fix: keep only one of them")]
    AmbiguousOrder,
    #[error(
        "{FIELD_ROOT}.order.explicit: the list is empty; fix: list at least two members, or use \
         nextInRing"
    )]
    EmptyExplicitOrder,
    #[error(
        "{FIELD_ROOT}.order.explicit[{index}]: {name:?} is not a member of this topology; fix: \
         use one of {known}"
    )]
    UnknownMember {
        index: usize,
        name: String,
        known: String,
    },
    #[error(
        "{FIELD_ROOT}.order.explicit[{index}]: {name:?} is listed twice; fix: list each member \
         once"
    )]
    DuplicateMember { index: usize, name: String },
    #[error(
        "{FIELD_ROOT}.order.explicit: only one member is listed, so the primary could never \
         move; fix: list at least two members"
    )]
    TooFewMembersInOrder,
    #[error(
        "{FIELD_ROOT}.maintenanceWindows[{index}].days: no day is listed; fix: list the days the \
         window opens, e.g. [Saturday, Sunday]"
    )]
    EmptyWindowDays { index: usize },
    #[error(
        "{FIELD_ROOT}.maintenanceWindows[{index}].{bound}: invalid time {value:?}; fix: write \
         HH:MM on a 24-hour clock, e.g. \"01:30\""
    )]
    InvalidWindowTime {
        index: usize,
        bound: &'static str,
        value: String,
    },
    #[error(
        "{FIELD_ROOT}.freezePeriods[{index}].end: {end} is not after start {start}; fix: set end \
         later than start (end is exclusive)"
    )]
    FreezeEndsBeforeStart {
        index: usize,
        start: Timestamp,
        end: Timestamp,
    },
    #[error(
        "{FIELD_ROOT}.freezePeriods[{index}].reason: empty; fix: say why nothing may move, e.g. \
         \"year-end freeze\""
    )]
    EmptyFreezeReason { index: usize },
    #[error(
        "{FIELD_ROOT}.missedSchedule.startingDeadline: {value} is too short; fix: use at least \
         {MIN_STARTING_DEADLINE}"
    )]
    StartingDeadlineTooShort { value: Duration },
}

/// All problems found in a policy, one per line when displayed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct RotationErrors(pub Vec<RotationError>);

impl fmt::Display for RotationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

/// The rotation order after validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Order {
    /// The topology's own order (ring order, or `spec.members`).
    NextInRing,
    /// These members, in this order.
    Explicit(Vec<String>),
}

/// A policy that passed validation, with its texts parsed. Only [`RotationPolicy::validate`]
/// makes one, so the evaluator never meets a malformed field.
#[derive(Clone, Debug)]
pub struct ValidatedRotation {
    pub(crate) schedule: Schedule,
    pub(crate) order: Order,
    pub(crate) windows: Vec<Window>,
    pub(crate) freezes: Vec<FreezePeriod>,
    pub(crate) preconditions: Preconditions,
    pub(crate) missed: MissedSchedule,
    pub(crate) suspend: bool,
}

impl ValidatedRotation {
    /// The rotation order.
    pub fn order(&self) -> &Order {
        &self.order
    }

    /// The time zone the schedule and windows are read in.
    pub fn time_zone(&self) -> &TimeZone {
        self.schedule.time_zone()
    }
}

impl RotationPolicy {
    /// Checks every field; `members` are the topology's member names (`spec.members[].name`).
    pub fn validate(&self, members: &[&str]) -> Result<ValidatedRotation, RotationErrors> {
        let mut errors = Vec::new();
        let tz = match TimeZone::get(&self.time_zone) {
            Ok(tz) => Some(tz),
            Err(e) => {
                errors.push(RotationError::UnknownTimeZone {
                    name: self.time_zone.clone(),
                    why: e.to_string(),
                });
                None
            }
        };
        // The schedule is parsed even when the zone is unknown, so both errors are reported.
        let schedule = match Schedule::parse(&self.schedule, tz.clone().unwrap_or(TimeZone::UTC)) {
            Ok(schedule) => Some(schedule),
            Err(e) => {
                errors.push(RotationError::InvalidSchedule {
                    expression: self.schedule.clone(),
                    why: e.to_string(),
                });
                None
            }
        };
        if let Some(schedule) = &schedule
            && schedule.next_after(Timestamp::UNIX_EPOCH).is_none()
        {
            errors.push(RotationError::ScheduleNeverFires {
                expression: self.schedule.clone(),
            });
        }
        let order = self.validate_order(members, &mut errors);
        let windows = self.validate_windows(&mut errors);
        for (index, freeze) in self.freeze_periods.iter().enumerate() {
            if freeze.end <= freeze.start {
                errors.push(RotationError::FreezeEndsBeforeStart {
                    index,
                    start: freeze.start,
                    end: freeze.end,
                });
            }
            if freeze.reason.trim().is_empty() {
                errors.push(RotationError::EmptyFreezeReason { index });
            }
        }
        let deadline = self.missed_schedule.starting_deadline;
        if deadline < MIN_STARTING_DEADLINE {
            errors.push(RotationError::StartingDeadlineTooShort { value: deadline });
        }
        match (schedule, tz.is_some() && errors.is_empty()) {
            (Some(schedule), true) => Ok(ValidatedRotation {
                schedule,
                order,
                windows,
                freezes: self.freeze_periods.clone(),
                preconditions: self.preconditions.clone(),
                missed: self.missed_schedule.clone(),
                suspend: self.suspend,
            }),
            _ => Err(RotationErrors(errors)),
        }
    }

    fn validate_order(&self, members: &[&str], errors: &mut Vec<RotationError>) -> Order {
        let Some(explicit) = &self.order.explicit else {
            return Order::NextInRing;
        };
        if self.order.next_in_ring.is_some() {
            errors.push(RotationError::AmbiguousOrder);
        }
        if explicit.is_empty() {
            errors.push(RotationError::EmptyExplicitOrder);
            return Order::Explicit(Vec::new());
        }
        let mut seen = BTreeSet::new();
        for (index, name) in explicit.iter().enumerate() {
            if !members.contains(&name.as_str()) {
                errors.push(RotationError::UnknownMember {
                    index,
                    name: name.clone(),
                    known: members.join(", "),
                });
            } else if !seen.insert(name.as_str()) {
                errors.push(RotationError::DuplicateMember {
                    index,
                    name: name.clone(),
                });
            }
        }
        if explicit.len() == 1 {
            errors.push(RotationError::TooFewMembersInOrder);
        }
        Order::Explicit(explicit.clone())
    }

    fn validate_windows(&self, errors: &mut Vec<RotationError>) -> Vec<Window> {
        let mut windows = Vec::new();
        for (index, window) in self.maintenance_windows.iter().enumerate() {
            if window.days.is_empty() {
                errors.push(RotationError::EmptyWindowDays { index });
            }
            let mut time_of = |bound: &'static str, value: &str| {
                let parsed = parse_hh_mm(value);
                if parsed.is_none() {
                    errors.push(RotationError::InvalidWindowTime {
                        index,
                        bound,
                        value: value.to_owned(),
                    });
                }
                parsed
            };
            let start = time_of("start", &window.start);
            let end = time_of("end", &window.end);
            if let (Some(start), Some(end)) = (start, end) {
                windows.push(Window {
                    days: window.days.iter().map(|d| d.to_jiff()).collect(),
                    start,
                    end,
                });
            }
        }
        windows
    }
}

/// Parses exactly `HH:MM` (24-hour clock). Stricter than jiff's parser, which also accepts
/// seconds and fractions a reader of the manifest would not expect to matter.
fn parse_hh_mm(text: &str) -> Option<Time> {
    let (hour, minute) = text.split_once(':')?;
    let two_digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !two_digits(hour) || !two_digits(minute) {
        return None;
    }
    Time::new(hour.parse().ok()?, minute.parse().ok()?, 0, 0).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rotation::policy::{MaintenanceWindow, RotationOrder, Weekday};

    const MEMBERS: [&str; 3] = ["eu-west", "eu-central", "us-east"];

    fn policy() -> RotationPolicy {
        serde_json::from_value(serde_json::json!({
            "schedule": "0 2 1 1,4,7,10 *",
            "timeZone": "Europe/Berlin",
        }))
        .unwrap()
    }

    fn errors_of(policy: &RotationPolicy) -> Vec<String> {
        match policy.validate(&MEMBERS) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn a_minimal_policy_is_valid_and_takes_the_defaults() {
        let valid = policy().validate(&MEMBERS).unwrap();
        assert_eq!(valid.order(), &Order::NextInRing);
        assert_eq!(valid.missed.starting_deadline, Duration::from_secs(900));
        assert_eq!(valid.time_zone().iana_name(), Some("Europe/Berlin"));
    }

    /// Each broken field yields one message that starts with its path and carries a fix.
    #[test]
    fn each_error_names_its_field_and_a_fix() {
        type Edit = fn(&mut RotationPolicy);
        let cases: [(Edit, &str); 12] = [
            (
                |p| p.schedule = "0 2 * *".into(),
                "spec.rotation.schedule: invalid cron expression \"0 2 * *\"",
            ),
            (
                |p| p.schedule = "0 0 5 * * *".into(),
                "spec.rotation.schedule: invalid cron",
            ),
            (
                |p| p.schedule = "0 0 30 2 *".into(),
                "spec.rotation.schedule: cron expression \"0 0 30 2 *\" never fires",
            ),
            (
                |p| p.time_zone = "Europe/Berlim".into(),
                "spec.rotation.timeZone: unknown time zone \"Europe/Berlim\"",
            ),
            (
                |p| {
                    p.order = RotationOrder {
                        explicit: Some(vec![]),
                        next_in_ring: None,
                    }
                },
                "spec.rotation.order.explicit: the list is empty",
            ),
            (
                |p| p.order.explicit = Some(vec!["eu-west".into(), "ap-south".into()]),
                "spec.rotation.order.explicit[1]: \"ap-south\" is not a member of this topology; fix: use one of eu-west, eu-central, us-east",
            ),
            (
                |p| {
                    p.order.explicit =
                        Some(vec!["eu-west".into(), "us-east".into(), "eu-west".into()])
                },
                "spec.rotation.order.explicit[2]: \"eu-west\" is listed twice",
            ),
            (
                |p| p.order.explicit = Some(vec!["eu-west".into()]),
                "spec.rotation.order.explicit: only one member is listed",
            ),
            (
                |p| {
                    p.maintenance_windows = vec![MaintenanceWindow {
                        days: vec![],
                        start: "01:00".into(),
                        end: "05:00".into(),
                    }]
                },
                "spec.rotation.maintenanceWindows[0].days: no day is listed",
            ),
            (
                |p| {
                    p.maintenance_windows = vec![MaintenanceWindow {
                        days: vec![Weekday::Sunday],
                        start: "1:00".into(),
                        end: "05:00".into(),
                    }]
                },
                "spec.rotation.maintenanceWindows[0].start: invalid time \"1:00\"",
            ),
            (
                |p| {
                    p.freeze_periods = vec![FreezePeriod {
                        start: "2027-01-05T00:00:00Z".parse().unwrap(),
                        end: "2026-12-15T00:00:00Z".parse().unwrap(),
                        reason: "year end".into(),
                    }]
                },
                "spec.rotation.freezePeriods[0].end: 2026-12-15T00:00:00Z is not after start",
            ),
            (
                |p| p.missed_schedule.starting_deadline = Duration::from_secs(10),
                "spec.rotation.missedSchedule.startingDeadline: 10s is too short; fix: use at least 1m",
            ),
        ];
        for (edit, expected) in cases {
            let mut broken = policy();
            edit(&mut broken);
            let errors = errors_of(&broken);
            assert_eq!(errors.len(), 1, "{expected}: {errors:#?}");
            assert!(
                errors[0].starts_with(expected),
                "{}\n  should start with\n{expected}",
                errors[0]
            );
            assert!(errors[0].contains("; fix: "), "{}", errors[0]);
        }
    }

    #[test]
    fn all_problems_are_reported_together() {
        let mut broken = policy();
        broken.schedule = "every quarter".into();
        broken.time_zone = "Mars/Olympus".into();
        broken.order = RotationOrder {
            next_in_ring: Some(Default::default()),
            explicit: Some(vec!["eu-west".into(), "us-east".into()]),
        };
        broken.freeze_periods = vec![FreezePeriod {
            start: "2026-12-15T00:00:00Z".parse().unwrap(),
            end: "2027-01-05T00:00:00Z".parse().unwrap(),
            reason: "  ".into(),
        }];
        let errors = broken.validate(&MEMBERS).unwrap_err();
        let fields: Vec<&str> = errors
            .0
            .iter()
            .map(|e| match e {
                RotationError::UnknownTimeZone { .. } => "timeZone",
                RotationError::InvalidSchedule { .. } => "schedule",
                RotationError::AmbiguousOrder => "order",
                RotationError::EmptyFreezeReason { .. } => "freeze",
                _ => "other",
            })
            .collect();
        assert_eq!(fields, ["timeZone", "schedule", "order", "freeze"]);
        assert_eq!(errors.to_string().lines().count(), 4);
    }

    /// Controller images may lack /usr/share/zoneinfo; the bundled copy must then answer.
    #[test]
    fn time_zones_resolve_without_a_system_tz_database() {
        let bundled = jiff::tz::TimeZoneDatabase::bundled();
        for name in ["Europe/Berlin", "America/New_York", "Asia/Singapore", "UTC"] {
            assert!(
                bundled.get(name).is_ok(),
                "{name} missing from the bundled tzdb"
            );
        }
    }

    #[test]
    fn window_times_must_be_hh_mm() {
        for good in ["00:00", "01:30", "23:59"] {
            assert!(parse_hh_mm(good).is_some(), "{good}");
        }
        for bad in ["24:00", "1:30", "01:60", "01:30:00", "0130", "", "aa:bb"] {
            assert!(parse_hh_mm(bad).is_none(), "{bad}");
        }
    }
}
