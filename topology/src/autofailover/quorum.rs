//! The quorum: the hub and every member region vote on whether the primary's region is lost.
//!
//! A voter keeps a [`VoterMemory`] per topology: the term it knows (the number of the current
//! primary's reign, raised by every failover), when it last accepted the primary agent's
//! heartbeat, and whether it has already voted that region lost in this term. Two rules make a
//! renewal and a "lost" verdict exclude each other, by quorum intersection:
//! - a voter that has voted "lost" in a term refuses every later renewal of that term;
//! - a voter votes "lost" only once a whole `lease` has passed on its clock since it last accepted
//!   a renewal (or since it started: a restarted voter waits a whole lease).
//!
//! So if a majority accepted a renewal, no majority can have voted "lost" before it, and none can
//! until a lease has passed again at the voter they share.

use std::collections::BTreeSet;
use std::time::Duration;

/// Whether a voter reaches the primary's region (its apiserver or its PostgreSQL).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    Reachable,
    Unreachable,
}

/// One voter's view of the primary, as sent to the hub.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ballot {
    pub voter: String,
    /// The term this ballot is about.
    pub term: u64,
    /// True when this voter counts the region lost: it cannot reach the primary and a whole
    /// lease passed since it last accepted a renewal. Casting it is a promise: the voter refuses
    /// every renewal of this term from then on.
    pub lost: bool,
    /// Since the voter last accepted the primary agent's heartbeat, on the voter's clock.
    pub heartbeat_age: Duration,
}

/// What a voter remembers of one topology's primary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoterMemory {
    pub term: u64,
    /// When the voter last accepted a renewal, or when it started or learnt the term.
    pub heartbeat_at: Duration,
    /// The voter has voted this term's primary lost, and refuses its renewals.
    pub voted_lost: bool,
}

impl VoterMemory {
    /// A voter that starts now: it counts a whole lease from now before it can vote "lost".
    pub fn new(term: u64, now: Duration) -> Self {
        Self {
            term,
            heartbeat_at: now,
            voted_lost: false,
        }
    }

    /// A renewal of `term` sent by the primary's agent: refused if it is of an older term or the
    /// voter already voted this term lost. A newer term (only the hub starts one, after a "lost"
    /// verdict) is adopted: the newly promoted primary's agent may reach a voter before the hub.
    pub fn renew(&mut self, term: u64, now: Duration) -> bool {
        self.new_term(term, now);
        if term != self.term || self.voted_lost {
            return false;
        }
        self.heartbeat_at = self.heartbeat_at.max(now);
        true
    }

    /// The voter's ballot now, given whether it reaches the primary.
    pub fn ballot(&mut self, voter: &str, reach: Reach, now: Duration, lease: Duration) -> Ballot {
        let age = now.saturating_sub(self.heartbeat_at);
        if reach == Reach::Unreachable && age >= lease {
            self.voted_lost = true;
        }
        Ballot {
            voter: voter.to_owned(),
            term: self.term,
            lost: self.voted_lost,
            heartbeat_age: age,
        }
    }

    /// Withdraws this voter's "lost" ballot once its evidence is gone: it reaches the primary
    /// again. Only for the voter that counts the ballots (the hub), and only while no `Lost`
    /// verdict was reached in the term: then no promotion rests on the ballot, and none ever
    /// will, since the counter's later verdicts see its fresh ballot instead. The voter then
    /// counts from `now` as after a restart (renewals it refused meanwhile were never
    /// heartbeats), so a new "lost" ballot again needs a whole lease without an accepted
    /// renewal: every majority that accepts a renewal after the withdrawal shares a voter with
    /// any later "lost" majority whose ballot is newer than that renewal by a lease — the
    /// timing rule holds as before. Member voters never withdraw: the hub may be counting
    /// their ballots at that moment. Returns whether the ballot was withdrawn.
    pub fn retract(&mut self, reach: Reach, now: Duration) -> bool {
        if !self.voted_lost || reach != Reach::Reachable {
            return false;
        }
        self.voted_lost = false;
        self.heartbeat_at = self.heartbeat_at.max(now);
        true
    }

    /// A failover promoted a new primary: a new term, counted from now.
    pub fn new_term(&mut self, term: u64, now: Duration) {
        if term > self.term {
            *self = Self::new(term, now);
        }
    }
}

/// The hub's verdict from the ballots it could collect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Fewer voters than the rule needs, or fewer answered than a majority: promote nothing.
    /// A hub that is itself cut off always ends here.
    NoQuorum { answered: usize, needed: usize },
    /// A majority answered, but not a majority counts the region lost.
    Alive { lost: usize, needed: usize },
    /// A majority of the electorate counts the primary's region lost in `term`.
    Lost { term: u64, voters: Vec<String> },
}

/// The smallest electorate automatic failover accepts: with two voters, one cut off from the
/// other can never tell its own isolation from the other's death.
pub const MIN_VOTERS: usize = 3;

/// Counts `ballots` (from the voters of `electorate`, about `term`) into a verdict. Ballots from
/// outside the electorate, of another term, or repeated, count once or not at all.
pub fn verdict(electorate: &[String], term: u64, ballots: &[Ballot]) -> Verdict {
    let voters: BTreeSet<&str> = electorate.iter().map(String::as_str).collect();
    let needed = voters.len() / 2 + 1;
    let mut seen = BTreeSet::new();
    let mut lost = Vec::new();
    for b in ballots {
        if b.term != term || !voters.contains(b.voter.as_str()) || !seen.insert(b.voter.as_str()) {
            continue;
        }
        if b.lost {
            lost.push(b.voter.clone());
        }
    }
    if voters.len() < MIN_VOTERS || seen.len() < needed {
        return Verdict::NoQuorum {
            answered: seen.len(),
            needed: needed.max(MIN_VOTERS / 2 + 1),
        };
    }
    if lost.len() >= needed {
        Verdict::Lost { term, voters: lost }
    } else {
        Verdict::Alive {
            lost: lost.len(),
            needed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(10);

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn electorate() -> Vec<String> {
        ["hub", "eu-central", "eu-western"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn a_voter_counts_a_whole_lease_from_its_start_before_it_votes_lost() {
        let mut v = VoterMemory::new(1, s(100));
        assert!(!v.ballot("hub", Reach::Unreachable, s(109), LEASE).lost);
        assert!(v.ballot("hub", Reach::Unreachable, s(110), LEASE).lost);
    }

    #[test]
    fn a_reachable_primary_is_never_voted_lost_and_a_lost_vote_refuses_renewals() {
        let mut v = VoterMemory::new(1, s(0));
        assert!(!v.ballot("hub", Reach::Reachable, s(60), LEASE).lost);
        assert!(v.renew(1, s(60)));
        assert!(v.ballot("hub", Reach::Unreachable, s(70), LEASE).lost);
        // The promise: this term's renewals are refused from now on, even if the link heals.
        assert!(!v.renew(1, s(71)));
        assert!(v.ballot("hub", Reach::Reachable, s(72), LEASE).lost);
        // A new term starts afresh; an old term's renewal is refused.
        v.new_term(2, s(80));
        assert!(!v.renew(1, s(81)));
        assert!(v.renew(2, s(81)));
        assert!(!v.ballot("hub", Reach::Unreachable, s(82), LEASE).lost);
    }

    #[test]
    fn a_withdrawn_lost_ballot_needs_reach_and_counts_a_whole_lease_again() {
        let mut v = VoterMemory::new(1, s(0));
        assert!(v.ballot("hub", Reach::Unreachable, s(10), LEASE).lost);
        assert!(
            !v.retract(Reach::Unreachable, s(11)),
            "no evidence came back"
        );
        assert!(!v.renew(1, s(12)));
        assert!(v.retract(Reach::Reachable, s(20)));
        assert!(
            !v.retract(Reach::Reachable, s(21)),
            "nothing left to withdraw"
        );
        // Renewals count again; and a new "lost" needs a whole lease from the withdrawal.
        assert!(v.renew(1, s(22)));
        assert!(!v.ballot("hub", Reach::Unreachable, s(31), LEASE).lost);
        assert!(v.ballot("hub", Reach::Unreachable, s(32), LEASE).lost);
        let mut quiet = VoterMemory::new(1, s(0));
        quiet.ballot("hub", Reach::Unreachable, s(10), LEASE);
        quiet.retract(Reach::Reachable, s(20));
        assert!(!quiet.ballot("hub", Reach::Unreachable, s(29), LEASE).lost);
    }

    fn ballot(voter: &str, term: u64, lost: bool) -> Ballot {
        Ballot {
            voter: voter.to_owned(),
            term,
            lost,
            heartbeat_age: s(11),
        }
    }

    #[test]
    fn a_majority_of_lost_ballots_is_needed_and_a_cut_off_hub_decides_nothing() {
        let e = electorate();
        // Only the hub answers (it is cut off): nothing.
        assert_eq!(
            verdict(&e, 1, &[ballot("hub", 1, true)]),
            Verdict::NoQuorum {
                answered: 1,
                needed: 2
            }
        );
        assert_eq!(
            verdict(
                &e,
                1,
                &[ballot("hub", 1, true), ballot("eu-western", 1, true)]
            ),
            Verdict::Lost {
                term: 1,
                voters: vec!["hub".into(), "eu-western".into()]
            }
        );
        assert_eq!(
            verdict(
                &e,
                1,
                &[ballot("hub", 1, true), ballot("eu-western", 1, false)]
            ),
            Verdict::Alive { lost: 1, needed: 2 }
        );
    }

    #[test]
    fn repeated_stale_and_foreign_ballots_do_not_make_a_majority() {
        let e = electorate();
        let ballots = [
            ballot("hub", 1, true),
            ballot("hub", 1, true),
            ballot("eu-western", 0, true),
            ballot("intruder", 1, true),
        ];
        assert_eq!(
            verdict(&e, 1, &ballots),
            Verdict::NoQuorum {
                answered: 1,
                needed: 2
            }
        );
    }

    #[test]
    fn two_voters_are_never_a_quorum() {
        let e = ["hub", "eu-central"].map(String::from).to_vec();
        let v = verdict(
            &e,
            1,
            &[ballot("hub", 1, true), ballot("eu-central", 1, true)],
        );
        assert!(matches!(v, Verdict::NoQuorum { .. }), "{v:?}");
    }
}
