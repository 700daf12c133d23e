//! The election: which replica an automatic failover promotes.
//!
//! The most advanced eligible replica wins: highest timeline, then most WAL received (a promoted
//! replica replays everything it received before it opens for writes), then most replayed, then
//! the name (so two hubs deciding on the same reports pick the same member). A replica is
//! eligible when the policy lists it, its agent reported recently, it is not fenced, and it is
//! no further behind the old primary than the data-loss budget allows.

use std::time::Duration;

use crate::token::Lsn;

/// How much data loss an automatic failover may accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataLossBudget {
    /// Promote the most advanced replica however far behind it is.
    Any,
    /// At most this many bytes of WAL behind the old primary's last reported flush position.
    Bytes(u64),
}

/// A replica as its agent last reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub member: String,
    /// Listed in `spec.automaticFailover.promotable` (or the list is empty: every member).
    pub allowed: bool,
    /// Fenced or waiting for a re-clone: never promoted.
    pub fenced: bool,
    /// How old the agent's report is, on the hub's clock.
    pub report_age: Duration,
    pub timeline: u32,
    pub received: Option<Lsn>,
    pub replayed: Option<Lsn>,
}

/// The replica to promote and what is known of the loss.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Elected {
    pub member: String,
    /// Bytes of WAL the old primary reported flushed beyond what the winner received; `None`
    /// when the old primary's position is unknown (budget `Any` only).
    pub behind_bytes: Option<u64>,
}

/// Why no replica may be promoted; names each candidate and the reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no replica may be promoted automatically: {}", .refused.iter().map(|(m, why)| format!("{m}: {why}")).collect::<Vec<_>>().join("; "))]
pub struct ElectionError {
    pub refused: Vec<(String, String)>,
}

/// Chooses the replica to promote. `primary_flushed` is the old primary's last flush position
/// its agent reported (on `primary_timeline`), `max_report_age` how stale a replica's report may
/// be.
pub fn elect(
    candidates: &[Candidate],
    primary_timeline: u32,
    primary_flushed: Option<Lsn>,
    budget: DataLossBudget,
    max_report_age: Duration,
) -> Result<Elected, ElectionError> {
    let mut refused = Vec::new();
    let mut best: Option<(&Candidate, Option<u64>)> = None;
    for c in candidates {
        let behind = match (primary_flushed, c.received) {
            (Some(p), Some(r)) if c.timeline == primary_timeline => Some(p.0.saturating_sub(r.0)),
            _ => None,
        };
        let why = if !c.allowed {
            Some("not in spec.automaticFailover.promotable".to_owned())
        } else if c.fenced {
            Some("fenced: it must be re-cloned first".to_owned())
        } else if c.report_age > max_report_age {
            // The age itself is left out: the text goes into a condition, which must not
            // change with every vote round.
            Some(format!(
                "its agent has not reported for more than {max_report_age:?}"
            ))
        } else if c.received.is_none() {
            Some("its agent reported no received WAL position".to_owned())
        } else if c.timeline < primary_timeline {
            Some(format!(
                "on timeline {} behind the primary's {primary_timeline}",
                c.timeline
            ))
        } else {
            match (budget, behind) {
                (DataLossBudget::Any, _) => None,
                (DataLossBudget::Bytes(_), None) => Some(
                    "the old primary's last WAL position is unknown, so the loss cannot be \
                     bounded (set spec.automaticFailover.dataLossBudget: Any to accept that)"
                        .to_owned(),
                ),
                (DataLossBudget::Bytes(max), Some(b)) if b > max => Some(format!(
                    "{b} bytes behind the old primary, more than the budget of {max}"
                )),
                (DataLossBudget::Bytes(_), Some(_)) => None,
            }
        };
        if let Some(why) = why {
            refused.push((c.member.clone(), why));
            continue;
        }
        let better = match best {
            None => true,
            Some((b, _)) => rank(c) > rank(b),
        };
        if better {
            best = Some((c, behind));
        }
    }
    match best {
        Some((c, behind_bytes)) => Ok(Elected {
            member: c.member.clone(),
            behind_bytes,
        }),
        None => Err(ElectionError { refused }),
    }
}

/// Larger is more advanced; the name breaks ties the same way on every hub (smaller wins).
fn rank(c: &Candidate) -> (u32, Option<Lsn>, Option<Lsn>, std::cmp::Reverse<&str>) {
    (
        c.timeline,
        c.received,
        c.replayed,
        std::cmp::Reverse(c.member.as_str()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(member: &str, received: u64, replayed: u64) -> Candidate {
        Candidate {
            member: member.to_owned(),
            allowed: true,
            fenced: false,
            report_age: Duration::from_secs(1),
            timeline: 1,
            received: Some(Lsn(received)),
            replayed: Some(Lsn(replayed)),
        }
    }

    const FRESH: Duration = Duration::from_secs(5);

    #[test]
    fn the_most_advanced_replica_wins_and_the_name_breaks_ties() {
        let c = [
            replica("b", 100, 90),
            replica("c", 120, 80),
            replica("d", 120, 80),
        ];
        let e = elect(&c, 1, Some(Lsn(130)), DataLossBudget::Bytes(64), FRESH).unwrap();
        assert_eq!(
            e,
            Elected {
                member: "c".into(),
                behind_bytes: Some(10)
            }
        );
    }

    #[test]
    fn each_refusal_names_the_member_and_the_reason() {
        let mut fenced = replica("a", 500, 500);
        fenced.fenced = true;
        let mut stale = replica("b", 400, 400);
        stale.report_age = Duration::from_secs(30);
        let mut barred = replica("c", 400, 400);
        barred.allowed = false;
        let far = replica("d", 100, 100);
        let err = elect(
            &[fenced, stale, barred, far],
            1,
            Some(Lsn(1_000)),
            DataLossBudget::Bytes(512),
            FRESH,
        )
        .unwrap_err();
        let text = err.to_string();
        for want in [
            "a: fenced",
            "b: its agent has not reported for more than 5s",
            "c: not in spec.automaticFailover.promotable",
            "d: 900 bytes behind the old primary, more than the budget of 512",
        ] {
            assert!(text.contains(want), "{want:?} missing from {text}");
        }
    }

    #[test]
    fn an_unknown_primary_position_needs_the_any_budget() {
        let c = [replica("b", 100, 100)];
        assert!(elect(&c, 1, None, DataLossBudget::Bytes(1 << 20), FRESH).is_err());
        let e = elect(&c, 1, None, DataLossBudget::Any, FRESH).unwrap();
        assert_eq!(e.behind_bytes, None);
    }
}
