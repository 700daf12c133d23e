//! When a scheduled drill is due: its cron expression read in its time zone, against an injected
//! instant (the controller passes the clock; tests pass fixed instants).
//!
//! A drill runs at most once per scheduled time. A run that was missed (no leader, controller
//! down) runs once when the controller sees it, if it is not older than [`STARTING_DEADLINE`];
//! older missed times are skipped, so a controller that was down for a week does not start a
//! burst of drills.

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::jiff::tz::TimeZone;
use topology::drill_api::DrillSchedule;

/// How late after its scheduled time a drill may still start.
pub const STARTING_DEADLINE: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Why a schedule cannot be used; names the field and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "spec.schedule.cron {cron:?} is not a 5-field cron expression ({reason}); e.g. \"0 3 * * SUN#1\""
    )]
    Cron { cron: String, reason: String },
    #[error(
        "spec.schedule.timeZone {zone:?} is not an IANA time zone ({reason}); e.g. Europe/Berlin or UTC"
    )]
    TimeZone { zone: String, reason: String },
}

/// A parsed schedule.
#[derive(Clone, Debug)]
pub struct Schedule {
    cron: Cron,
    tz: TimeZone,
}

/// What the controller should do about a scheduled drill now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Due {
    /// Start a run for the scheduled instant `at`.
    Now { at: Timestamp },
    /// Nothing until `next` (if the schedule ever matches again).
    Later { next: Option<Timestamp> },
}

impl Schedule {
    pub fn parse(spec: &DrillSchedule) -> Result<Self, ScheduleError> {
        let tz = TimeZone::get(&spec.time_zone).map_err(|e| ScheduleError::TimeZone {
            zone: spec.time_zone.clone(),
            reason: e.to_string(),
        })?;
        let parser = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build();
        let cron = parser.parse(&spec.cron).map_err(|e| ScheduleError::Cron {
            cron: spec.cron.clone(),
            reason: e.to_string(),
        })?;
        Ok(Schedule { cron, tz })
    }

    /// The first scheduled instant strictly after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        self.cron
            .find_next_occurrence(&t.to_zoned(self.tz.clone()), false)
            .ok()
            .map(|z| z.timestamp())
    }

    /// The latest scheduled instant at or before `t`.
    fn latest_at_or_before(&self, t: Timestamp) -> Option<Timestamp> {
        self.cron
            .find_previous_occurrence(&t.to_zoned(self.tz.clone()), true)
            .ok()
            .map(|z| z.timestamp())
    }

    /// Whether a run is due at `now`. `last` is the scheduled instant of the last scheduled run,
    /// `created` the drill's creation time (nothing scheduled before it runs).
    pub fn due(&self, last: Option<Timestamp>, created: Timestamp, now: Timestamp) -> Due {
        let floor = last.unwrap_or(created);
        if let Some(at) = self.latest_at_or_before(now)
            && at > floor
            && (last.is_some() || at >= created)
            && now.duration_since(at).unsigned_abs() <= STARTING_DEADLINE
        {
            return Due::Now { at };
        }
        Due::Later {
            next: self.next_after(now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(cron: &str, tz: &str) -> Schedule {
        Schedule::parse(&DrillSchedule {
            cron: cron.into(),
            time_zone: tz.into(),
            suspend: false,
        })
        .unwrap()
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn due_once_per_scheduled_time() {
        let s = schedule("0 3 * * *", "Europe/Berlin");
        let created = t("2026-11-01T00:00:00Z");
        // 03:00 Berlin is 02:00Z in November.
        assert_eq!(
            s.due(None, created, t("2026-11-02T01:59:00Z")),
            Due::Later {
                next: Some(t("2026-11-02T02:00:00Z"))
            }
        );
        let Due::Now { at } = s.due(None, created, t("2026-11-02T02:00:30Z")) else {
            panic!("not due at 02:00:30Z");
        };
        assert_eq!(at, t("2026-11-02T02:00:00Z"));
        // Once recorded, the same instant is not due again.
        assert_eq!(
            s.due(Some(at), created, t("2026-11-02T02:05:00Z")),
            Due::Later {
                next: Some(t("2026-11-03T02:00:00Z"))
            }
        );
    }

    #[test]
    fn a_missed_time_runs_once_within_the_starting_deadline_only() {
        let s = schedule("0 3 * * *", "UTC");
        let created = t("2026-11-01T00:00:00Z");
        assert!(matches!(
            s.due(None, created, t("2026-11-02T03:14:00Z")),
            Due::Now { .. }
        ));
        assert!(matches!(
            s.due(None, created, t("2026-11-02T03:16:00Z")),
            Due::Later { .. }
        ));
    }

    #[test]
    fn nothing_scheduled_before_creation_runs() {
        let s = schedule("* * * * *", "UTC");
        let created = t("2026-11-02T03:00:30Z");
        assert!(matches!(
            s.due(None, created, t("2026-11-02T03:00:40Z")),
            Due::Later { .. }
        ));
        assert!(matches!(
            s.due(None, created, t("2026-11-02T03:01:00Z")),
            Due::Now { .. }
        ));
    }

    #[test]
    fn errors_name_the_field_and_an_example() {
        let bad_cron = Schedule::parse(&DrillSchedule {
            cron: "0 0 3 * * *".into(),
            time_zone: "UTC".into(),
            suspend: false,
        })
        .unwrap_err();
        assert!(
            bad_cron.to_string().contains("spec.schedule.cron"),
            "{bad_cron}"
        );
        let bad_zone = Schedule::parse(&DrillSchedule {
            cron: "0 3 * * *".into(),
            time_zone: "Mars/Olympus".into(),
            suspend: false,
        })
        .unwrap_err();
        assert!(
            bad_zone.to_string().contains("spec.schedule.timeZone"),
            "{bad_zone}"
        );
    }
}
