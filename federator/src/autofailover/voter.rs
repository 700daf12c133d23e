//! A voter's memory of the primary's heartbeat in its own store: it sees a renewal when the
//! Lease's renewal annotation changes, on its own monotonic clock (after the write, so never
//! before the agent sent it), and decides its ballot with `quorum::VoterMemory`. A "lost" ballot
//! is only kept once the store took the vote (compare-and-swap on the version it was decided
//! on): a renewal that landed in between wins, and the voter sees it on its next read.
//!
//! Used by the agents (their region's store) and the hub controller (the hub's store).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use topology::autofailover::quorum::{Ballot, Reach, VoterMemory};

use super::store::Read;

#[derive(Clone, Debug)]
struct Seen {
    renewal: Option<String>,
    memory: VoterMemory,
}

/// What a voter remembers of each member it was asked about, by member name.
#[derive(Clone, Debug, Default)]
pub struct Voter {
    seen: BTreeMap<String, Seen>,
    /// Terms in which this voter (the hub, which counts) reached a `Lost` verdict: its "lost"
    /// ballot of such a term is never withdrawn.
    lost_verdicts: BTreeSet<u64>,
}

/// A ballot to cast: `write` when the store must first take the "lost" promise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    pub ballot: Ballot,
    pub write: bool,
    memory: VoterMemory,
}

impl Voter {
    /// Takes in what the store holds for `member` now (`read`), `term` the newest term the
    /// voter knows of, at `now` on its clock.
    pub fn observe(&mut self, member: &str, read: Option<&Read>, term: u64, now: Duration) {
        let term = term.max(read.map_or(0, |r| r.record.term));
        let renewal = read.and_then(|r| r.record.renewal.clone());
        let seen = self.seen.entry(member.to_owned()).or_insert_with(|| Seen {
            renewal: renewal.clone(),
            memory: VoterMemory::new(term, now),
        });
        seen.memory.new_term(term, now);
        if let Some(read) = read {
            if renewal.is_some() && renewal != seen.renewal {
                // Any renewal in the store was accepted by the store's rule when it was written.
                seen.memory.renew(read.record.term, now);
            }
            if read.record.lost_term == Some(seen.memory.term) {
                seen.memory.voted_lost = true;
            }
        }
        seen.renewal = renewal;
    }

    /// The ballot about `member` now; `None` before it was observed.
    pub fn propose(
        &self,
        voter: &str,
        member: &str,
        reach: Reach,
        now: Duration,
        lease: Duration,
    ) -> Option<Proposal> {
        let seen = self.seen.get(member)?;
        let mut memory = seen.memory.clone();
        let ballot = memory.ballot(voter, reach, now, lease);
        Some(Proposal {
            write: ballot.lost && !seen.memory.voted_lost,
            ballot,
            memory,
        })
    }

    /// The store took the proposal's "lost" promise (or it needed none).
    pub fn commit(&mut self, member: &str, proposal: Proposal) {
        if let Some(seen) = self.seen.get_mut(member) {
            seen.memory = proposal.memory;
        }
    }

    /// The counting voter reached a `Lost` verdict in `term`.
    pub fn verdict_lost(&mut self, term: u64) {
        self.lost_verdicts.insert(term);
    }

    /// Whether the counting voter may withdraw its "lost" ballot about `member` in `term`
    /// (`quorum::VoterMemory::retract`): it voted lost in that term, reaches the member again,
    /// and no `Lost` verdict was reached in that term.
    pub fn may_retract(&self, member: &str, term: u64, reach: Reach) -> bool {
        self.seen.get(member).is_some_and(|s| {
            s.memory.voted_lost
                && s.memory.term == term
                && reach == Reach::Reachable
                && !self.lost_verdicts.contains(&term)
        })
    }

    /// The store took the withdrawal: the ballot is withdrawn in memory (counted from `now`).
    pub fn retract(&mut self, member: &str, reach: Reach, now: Duration) -> bool {
        self.seen
            .get_mut(member)
            .is_some_and(|s| s.memory.retract(reach, now))
    }

    /// Since the voter last saw a renewal of `member` (or first looked), on its clock.
    pub fn age(&self, member: &str, now: Duration) -> Option<Duration> {
        self.seen
            .get(member)
            .map(|s| now.saturating_sub(s.memory.heartbeat_at))
    }
}

#[cfg(test)]
mod tests {
    use topology::autofailover::record::Record;

    use super::*;

    const LEASE: Duration = Duration::from_secs(10);

    fn read(term: u64, renewal: &str, lost: Option<u64>) -> Read {
        Read {
            record: Record {
                term,
                renewal: Some(renewal.into()),
                lost_term: lost,
                ..Record::default()
            },
            version: "1".into(),
        }
    }

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn a_changed_renewal_resets_the_heartbeat_and_lost_needs_a_whole_lease_and_no_reach() {
        let mut v = Voter::default();
        v.observe("a", Some(&read(1, "x/1", None)), 1, s(0));
        v.observe("a", Some(&read(1, "x/2", None)), 1, s(5));
        let p = v
            .propose("hub:", "a", Reach::Unreachable, s(14), LEASE)
            .unwrap();
        assert!(!p.ballot.lost);
        let p = v
            .propose("hub:", "a", Reach::Reachable, s(16), LEASE)
            .unwrap();
        assert!(!p.ballot.lost, "a reachable primary is never voted lost");
        let p = v
            .propose("hub:", "a", Reach::Unreachable, s(15), LEASE)
            .unwrap();
        assert!(p.ballot.lost && p.write);
        // The store refused the vote (a renewal landed): nothing is kept; the renewal is seen.
        v.observe("a", Some(&read(1, "x/3", None)), 1, s(16));
        let p = v
            .propose("hub:", "a", Reach::Unreachable, s(17), LEASE)
            .unwrap();
        assert!(!p.ballot.lost);
        // Taken: the promise holds, later renewals of the term are not heartbeats.
        let p = v
            .propose("hub:", "a", Reach::Unreachable, s(26), LEASE)
            .unwrap();
        v.commit("a", p);
        v.observe("a", Some(&read(1, "x/3", Some(1))), 1, s(27));
        let p = v
            .propose("hub:", "a", Reach::Reachable, s(27), LEASE)
            .unwrap();
        assert!(p.ballot.lost && !p.write);
        // A new term starts afresh.
        v.observe("a", Some(&read(2, "y/1", None)), 2, s(30));
        let p = v
            .propose("hub:", "a", Reach::Unreachable, s(31), LEASE)
            .unwrap();
        assert!(!p.ballot.lost && p.ballot.term == 2);
    }

    #[test]
    fn a_voter_that_never_saw_a_renewal_waits_a_whole_lease_from_its_start() {
        let mut v = Voter::default();
        v.observe("a", None, 1, s(100));
        assert!(
            !v.propose("b", "a", Reach::Unreachable, s(109), LEASE)
                .unwrap()
                .ballot
                .lost
        );
        assert!(
            v.propose("b", "a", Reach::Unreachable, s(110), LEASE)
                .unwrap()
                .ballot
                .lost
        );
    }
}
