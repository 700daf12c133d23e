//! When rotations are due: a cron expression read in an IANA time zone.
//!
//! croner walks the wall clock of a `jiff::Zoned`, so daylight-saving changes follow its rules
//! for a fixed-time pattern (one hour, one minute): a time that falls in a spring-forward gap
//! happens at the first instant after the gap, and a time that happens twice on a fall-back day
//! happens once, at the earlier instant. Interval patterns (`*/30 …`) run on both instants of
//! a repeated hour; rotations are months apart, so that case only matters for tests.

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::Timestamp;
use jiff::tz::TimeZone;

/// A parsed cron expression bound to its time zone.
#[derive(Clone, Debug)]
pub(crate) struct Schedule {
    cron: Cron,
    tz: TimeZone,
}

impl Schedule {
    /// Parses a 5-field expression; seconds and years are refused so that the syntax is the one
    /// a Kubernetes CronJob accepts.
    pub(crate) fn parse(expression: &str, tz: TimeZone) -> Result<Self, croner::errors::CronError> {
        let parser = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build();
        Ok(Schedule {
            cron: parser.parse(expression)?,
            tz,
        })
    }

    pub(crate) fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    /// The first scheduled instant strictly after `t`; `None` if the expression never matches
    /// again (croner gives up at year 5000).
    pub(crate) fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        self.cron
            .find_next_occurrence(&t.to_zoned(self.tz.clone()), false)
            .ok()
            .map(|z| z.timestamp())
    }

    /// The latest scheduled instant at or before `t`.
    pub(crate) fn latest_at_or_before(&self, t: Timestamp) -> Option<Timestamp> {
        self.cron
            .find_previous_occurrence(&t.to_zoned(self.tz.clone()), true)
            .ok()
            .map(|z| z.timestamp())
    }
}
