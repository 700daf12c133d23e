//! Calendar rules known in advance: weekly maintenance windows (in the policy's time zone) and
//! absolute freeze periods.

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{Timestamp, ToSpan};

use super::policy::FreezePeriod;

/// A maintenance window with its times parsed.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Window {
    pub(crate) days: Vec<Weekday>,
    pub(crate) start: Time,
    pub(crate) end: Time,
}

impl Window {
    /// The opening of this window that starts on `date`, as `[open, close)`, if `date` is one of
    /// its days.
    fn opening_on(&self, tz: &TimeZone, date: Date) -> Option<(Timestamp, Timestamp)> {
        if !self.days.contains(&date.weekday()) {
            return None;
        }
        let close_date = if self.end > self.start {
            date
        } else {
            date.tomorrow().ok()?
        };
        Some((
            local_instant(tz, date, self.start)?,
            local_instant(tz, close_date, self.end)?,
        ))
    }

    /// Whether `t` falls in one of this window's openings. An opening lasts at most a day (and
    /// a DST hour), so only openings that start on `t`'s local date or the day before can hold it.
    pub(crate) fn contains(&self, tz: &TimeZone, t: Timestamp) -> bool {
        let today = t.to_zoned(tz.clone()).date();
        [today.yesterday().ok(), Some(today)]
            .into_iter()
            .flatten()
            .filter_map(|date| self.opening_on(tz, date))
            .any(|(open, close)| open <= t && t < close)
    }

    /// Instants in `(after, until]` at which an opening of this window starts.
    pub(crate) fn openings_between(
        &self,
        tz: &TimeZone,
        after: Timestamp,
        until: Timestamp,
    ) -> Vec<Timestamp> {
        let mut found = Vec::new();
        let Ok(mut date) = after.to_zoned(tz.clone()).date().checked_sub(1.day()) else {
            return found;
        };
        let last = until.to_zoned(tz.clone()).date();
        while date <= last {
            if let Some((open, _)) = self.opening_on(tz, date)
                && after < open
                && open <= until
            {
                found.push(open);
            }
            match date.tomorrow() {
                Ok(next) => date = next,
                Err(_) => break,
            }
        }
        found
    }
}

/// The instant at which the local clock in `tz` first reads `time` on `date`.
///
/// This is the same rule croner applies to a schedule, so windows and schedules agree: in a
/// spring-forward gap the clock never reads `time`, and the first instant at which it reads a
/// later time is the transition itself (02:30 on a Berlin spring-forward day is 03:00 CEST);
/// in a fall-back fold it reads `time` twice, and the first is the earlier instant.
pub(crate) fn local_instant(tz: &TimeZone, date: Date, time: Time) -> Option<Timestamp> {
    let civil = date.to_datetime(time);
    let ambiguous = tz.to_ambiguous_timestamp(civil);
    match ambiguous.offset() {
        AmbiguousOffset::Unambiguous { offset } | AmbiguousOffset::Fold { before: offset, .. } => {
            offset.to_timestamp(civil).ok()
        }
        AmbiguousOffset::Gap { after, .. } => {
            // Read with the offset after the gap, the civil time is an instant before the
            // transition; the next transition from there is the end of the gap.
            let before_transition = after.to_timestamp(civil).ok()?;
            tz.following(before_transition)
                .next()
                .map(|transition| transition.timestamp())
        }
    }
}

impl FreezePeriod {
    /// Whether `t` is in `[start, end)`.
    pub fn contains(&self, t: Timestamp) -> bool {
        self.start <= t && t < self.end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn berlin() -> TimeZone {
        TimeZone::get("Europe/Berlin").unwrap()
    }

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn time(text: &str) -> Time {
        text.parse().unwrap()
    }

    #[test]
    fn local_instant_resolves_gaps_to_the_transition_and_folds_to_the_earlier_instant() {
        let tz = berlin();
        let cases = [
            // (date, local time, expected instant)
            ("2026-03-29", "02:30", "2026-03-29T01:00:00Z"), // gap: 03:00 CEST
            ("2026-03-29", "02:00", "2026-03-29T01:00:00Z"), // gap start: 03:00 CEST
            ("2026-03-29", "03:30", "2026-03-29T01:30:00Z"), // after the gap
            ("2026-10-25", "02:30", "2026-10-25T00:30:00Z"), // fold: 02:30 CEST, not CET
            ("2026-10-25", "03:30", "2026-10-25T02:30:00Z"), // after the fold, CET
            ("2026-06-01", "02:30", "2026-06-01T00:30:00Z"), // summer
        ];
        for (date, local, expected) in cases {
            let got = local_instant(&tz, date.parse().unwrap(), time(local));
            assert_eq!(got, Some(ts(expected)), "{date} {local}");
        }
    }

    #[test]
    fn overnight_window_spans_midnight_and_only_opens_on_its_days() {
        let tz = berlin();
        // Opens Saturday 22:00, closes Sunday 04:00 (local).
        let window = Window {
            days: vec![Weekday::Saturday],
            start: time("22:00"),
            end: time("04:00"),
        };
        let cases = [
            ("2026-06-06T19:59:00Z", false), // Sat 21:59 CEST
            ("2026-06-06T20:00:00Z", true),  // Sat 22:00
            ("2026-06-07T01:59:00Z", true),  // Sun 03:59
            ("2026-06-07T02:00:00Z", false), // Sun 04:00: closed (end is exclusive)
            ("2026-06-07T20:30:00Z", false), // Sun 22:30: Sunday is not a window day
        ];
        for (at, inside) in cases {
            assert_eq!(window.contains(&tz, ts(at)), inside, "{at}");
        }
    }

    #[test]
    fn a_window_over_the_fall_back_hour_lasts_one_real_hour_longer() {
        let tz = berlin();
        let window = Window {
            days: vec![Weekday::Sunday],
            start: time("01:00"),
            end: time("05:00"),
        };
        // 2026-10-25: opens 01:00 CEST (23:00Z), closes 05:00 CET (04:00Z): five real hours.
        assert!(!window.contains(&tz, ts("2026-10-24T22:59:00Z")));
        assert!(window.contains(&tz, ts("2026-10-24T23:00:00Z")));
        assert!(window.contains(&tz, ts("2026-10-25T03:59:00Z")));
        assert!(!window.contains(&tz, ts("2026-10-25T04:00:00Z")));
        let openings =
            window.openings_between(&tz, ts("2026-10-20T00:00:00Z"), ts("2026-11-02T00:00:00Z"));
        assert_eq!(
            openings,
            vec![ts("2026-10-24T23:00:00Z"), ts("2026-11-01T00:00:00Z")]
        );
    }

    #[test]
    fn a_freeze_period_is_half_open() {
        let freeze = FreezePeriod {
            start: ts("2026-12-15T00:00:00+01:00"),
            end: ts("2027-01-05T00:00:00+01:00"),
            reason: "year-end freeze".into(),
        };
        assert!(!freeze.contains(ts("2026-12-14T22:59:59Z")));
        assert!(freeze.contains(ts("2026-12-14T23:00:00Z")));
        assert!(freeze.contains(ts("2027-01-04T22:59:59Z")));
        assert!(!freeze.contains(ts("2027-01-04T23:00:00Z")));
    }
}
