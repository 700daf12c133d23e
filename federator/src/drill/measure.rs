//! What the probe writer's log says about one switchover: how long writes were refused
//! (write-unavailability) and which acknowledged writes the new primary lacks (RPO). Pure: the
//! log and the rows found are arguments.

use std::collections::BTreeSet;

use k8s_openapi::jiff::Timestamp;

/// One write attempt of the probe, stamped when its outcome was known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub at: Timestamp,
    /// The row's sequence number, when an INSERT was sent.
    pub seq: Option<i64>,
    pub acknowledged: bool,
}

/// First failed → first successful write after `since`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Unavailability {
    pub first_failed: Option<Timestamp>,
    pub first_succeeded: Option<Timestamp>,
}

impl Unavailability {
    /// Milliseconds between the two; 0 when no write failed; `None` while writes still fail.
    pub fn millis(&self) -> Option<u64> {
        match (self.first_failed, self.first_succeeded) {
            (None, _) => Some(0),
            (Some(failed), Some(ok)) => Some(millis_between(failed, ok)),
            (Some(_), None) => None,
        }
    }
}

/// The first failed attempt at or after `since`, and the first acknowledged one after it.
pub fn unavailability(log: &[Attempt], since: Timestamp) -> Unavailability {
    let mut after = log.iter().filter(|a| a.at >= since);
    let Some(failed) = after.find(|a| !a.acknowledged) else {
        return Unavailability::default();
    };
    let succeeded = after.find(|a| a.acknowledged).map(|a| a.at);
    Unavailability {
        first_failed: Some(failed.at),
        first_succeeded: succeeded,
    }
}

/// Acknowledged writes (up to `until`) compared with the rows a primary has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rpo {
    pub acknowledged: u64,
    pub lost: Vec<i64>,
    /// From the newest kept acknowledged write to the newest lost one, in milliseconds.
    pub millis: u64,
}

pub fn rpo(log: &[Attempt], until: Timestamp, present: &BTreeSet<i64>) -> Rpo {
    let acked: Vec<(i64, Timestamp)> = log
        .iter()
        .filter(|a| a.acknowledged && a.at <= until)
        .filter_map(|a| a.seq.map(|s| (s, a.at)))
        .collect();
    let lost: Vec<(i64, Timestamp)> = acked
        .iter()
        .filter(|(s, _)| !present.contains(s))
        .copied()
        .collect();
    let millis = match lost.iter().map(|(_, at)| *at).max() {
        None => 0,
        Some(newest_lost) => {
            let kept_before = acked
                .iter()
                .filter(|(s, at)| present.contains(s) && *at <= newest_lost)
                .map(|(_, at)| *at)
                .max();
            // Nothing kept before it: everything acknowledged since the first write is lost.
            let from = kept_before.unwrap_or_else(|| acked[0].1);
            millis_between(from, newest_lost)
        }
    };
    Rpo {
        acknowledged: acked.len() as u64,
        lost: lost.into_iter().map(|(s, _)| s).collect(),
        millis,
    }
}

pub fn millis_between(from: Timestamp, to: Timestamp) -> u64 {
    to.duration_since(from).as_millis().max(0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millisecond(1_700_000_000_000 + ms).unwrap()
    }

    fn ok(ms: i64, seq: i64) -> Attempt {
        Attempt {
            at: at(ms),
            seq: Some(seq),
            acknowledged: true,
        }
    }

    fn failed(ms: i64) -> Attempt {
        Attempt {
            at: at(ms),
            seq: None,
            acknowledged: false,
        }
    }

    #[test]
    fn unavailability_is_first_failed_to_first_acknowledged_after_it() {
        let log = [
            failed(0), // before the switchover was asked for: ignored
            ok(10, 1),
            ok(20, 2),
            failed(30),
            failed(40),
            ok(1230, 3),
            failed(1300),
        ];
        let u = unavailability(&log, at(5));
        assert_eq!(u.first_failed, Some(at(30)));
        assert_eq!(u.first_succeeded, Some(at(1230)));
        assert_eq!(u.millis(), Some(1200));
    }

    #[test]
    fn no_failure_is_zero_and_no_recovery_is_unknown() {
        assert_eq!(unavailability(&[ok(10, 1)], at(0)).millis(), Some(0));
        assert_eq!(
            unavailability(&[ok(10, 1), failed(20)], at(0)).millis(),
            None
        );
    }

    #[test]
    fn rpo_counts_acknowledged_writes_the_primary_lacks() {
        let log = [
            ok(10, 1),
            ok(20, 2),
            failed(25),
            ok(30, 3),
            ok(40, 4),
            ok(90, 5),
        ];
        let all: BTreeSet<i64> = [1, 2, 3, 4].into();
        let kept = rpo(&log, at(50), &all);
        assert_eq!(
            (kept.acknowledged, kept.lost.clone(), kept.millis),
            (4, vec![], 0)
        );
        let missing: BTreeSet<i64> = [1, 2].into();
        let lost = rpo(&log, at(50), &missing);
        assert_eq!(lost.lost, vec![3, 4]);
        assert_eq!(lost.millis, 20, "from write 2 (20 ms) to write 4 (40 ms)");
    }
}
