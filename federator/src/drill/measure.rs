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

/// Sorted inclusive ranges (`[first, last]`) of the given sequence numbers.
pub fn ranges(seqs: impl IntoIterator<Item = i64>) -> Vec<[i64; 2]> {
    let sorted: BTreeSet<i64> = seqs.into_iter().collect();
    let mut out: Vec<[i64; 2]> = Vec::new();
    for seq in sorted {
        match out.last_mut() {
            Some(last) if last[1] + 1 == seq => last[1] = seq,
            _ => out.push([seq, seq]),
        }
    }
    out
}

/// Every sequence number of `ranges`.
pub fn expand(ranges: &[[i64; 2]]) -> impl Iterator<Item = i64> + '_ {
    ranges.iter().flat_map(|[first, last]| *first..=*last)
}

/// `ranges` with the acknowledged writes of `log` added.
pub fn with_acknowledged(ranges: &[[i64; 2]], log: &[Attempt]) -> Vec<[i64; 2]> {
    let acked = log.iter().filter(|a| a.acknowledged).filter_map(|a| a.seq);
    self::ranges(expand(ranges).chain(acked))
}

/// [`rpo`] of this process's `log`, plus the writes acknowledged before it took the run over
/// (`earlier`, no timestamps: they count as acknowledged and lost, not in the milliseconds).
pub fn rpo_with_earlier(
    log: &[Attempt],
    earlier: &[[i64; 2]],
    until: Timestamp,
    present: &BTreeSet<i64>,
) -> Rpo {
    let mut rpo = rpo(log, until, present);
    let seen: BTreeSet<i64> = log.iter().filter_map(|a| a.seq).collect();
    for seq in expand(earlier).filter(|s| !seen.contains(s)) {
        rpo.acknowledged += 1;
        if !present.contains(&seq) {
            rpo.lost.push(seq);
        }
    }
    rpo.lost.sort_unstable();
    rpo
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
    fn acknowledged_writes_are_kept_as_ranges_and_checked_after_a_takeover() {
        assert_eq!(ranges([5, 1, 2, 3, 7, 6]), vec![[1, 3], [5, 7]]);
        let log = [ok(10, 10), failed(20), ok(30, 12)];
        assert_eq!(
            with_acknowledged(&[[1, 3]], &log),
            vec![[1, 3], [10, 10], [12, 12]]
        );
        // A takeover: writes 1..=3 acknowledged by the previous process, 10 and 12 by this one.
        let present: BTreeSet<i64> = [1, 3, 10, 12].into();
        let r = rpo_with_earlier(&log, &[[1, 3]], at(50), &present);
        assert_eq!((r.acknowledged, r.lost), (5, vec![2]));
        let all: BTreeSet<i64> = [1, 2, 3, 10, 12].into();
        assert!(
            rpo_with_earlier(&log, &[[1, 3]], at(50), &all)
                .lost
                .is_empty()
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
