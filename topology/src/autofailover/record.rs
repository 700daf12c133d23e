//! What the voters' stores hold, as plain data: one `coordination.k8s.io/v1` Lease per member in
//! every voter's store (the hub: the topology's namespace; a member region: its Cluster's
//! namespace), named [`lease_name`]. The member's agent writes its renewal and its report into
//! it; the store's voter writes its "lost" promise into it. Both writes carry the
//! resourceVersion they read (compare-and-swap), so a renewal and a "lost" vote can never both
//! land on the same version: promise 2 of `quorum` is kept by the store.
//!
//! Pure: parsing and composing the annotations, and the store-side rule for a renewal.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::token::Lsn;

/// The term the renewal is of (decimal).
pub const TERM: &str = "federator.dev/term";
/// Changes on every renewal: the agent's incarnation and a counter (`<id>/<n>`).
pub const RENEWAL: &str = "federator.dev/renewal";
/// The agent's report, JSON ([`Report`]).
pub const REPORT: &str = "federator.dev/report";
/// Written by the store's voter only: the term in which it voted this member lost. From then
/// on it refuses the member's renewals of that term and older.
pub const LOST_TERM: &str = "federator.dev/lost-term";
/// The ballot of the member's voter about the primary, JSON ([`BallotReport`]), written by the
/// member's agent into its own Lease on the hub (the hub counts them).
pub const BALLOT: &str = "federator.dev/ballot";
/// Label on every such Lease: the topology (`<hub namespace>.<name>`).
pub const TOPOLOGY_LABEL: &str = "federator.dev/topology";
/// The agent's fence marker on its Cluster, next to CNPG's `cnpg.io/fencedInstances`: the term
/// the agent fenced in. The agent lifts only a fence it set.
pub const FENCED_BY_AGENT: &str = "federator.dev/fenced-by-agent";

/// The Lease of `member` of the topology `hub_namespace/topology`, the same name in every store.
pub fn lease_name(hub_namespace: &str, topology: &str, member: &str) -> String {
    format!("federator.{hub_namespace}.{topology}.{member}")
}

/// What an agent reports of its member, on every renewal.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Its CNPG Cluster is primary by spec (`spec.replica.primary` names itself, or no replica).
    pub primary: bool,
    /// The member its Cluster names as primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub names_primary: Option<String>,
    /// PostgreSQL answered `pg_is_in_recovery() = false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<u32>,
    /// `pg_current_wal_flush_lsn()` on a primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flushed: Option<String>,
    /// `pg_last_wal_receive_lsn()` on a replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received: Option<String>,
    /// `pg_last_wal_replay_lsn()` on a replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayed: Option<String>,
    /// The agent's fence is on its Cluster.
    pub fenced: bool,
    /// How long its last fence took to stop writes, in milliseconds (measured by the agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fence_ms: Option<u64>,
    /// The voters' stores that gave the agent's previous round's renewal no answer within its
    /// bound (`renewEvery`): slower than the bound, or cut off. Such a store does not count for
    /// the round's majority, so the hub names it in a condition before it fences a healthy
    /// primary (docs/automatic-failover.md, "Limits").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slow_stores: Vec<SlowStore>,
}

/// One voter's store that did not answer an agent's renewal within the bound.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlowStore {
    /// The voter whose store it is: `hub:` or a member's name.
    pub voter: String,
    /// The renewal's bound, in milliseconds: the store's answer took longer than this.
    pub bound_ms: u64,
    /// How many rounds in a row it gave no answer within the bound (1: only the last one).
    pub rounds: u32,
}

impl Report {
    pub fn lsn(text: Option<&String>) -> Option<Lsn> {
        text.and_then(|t| t.parse().ok())
    }
}

/// A member voter's ballot about the primary, as its agent posts it to the hub.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BallotReport {
    /// The member the ballot is about (the primary its own Cluster names).
    pub about: String,
    pub term: u64,
    pub lost: bool,
    /// Since the voter last saw a renewal of `about`, on its clock.
    pub heartbeat_age_ms: u64,
}

/// One Lease's annotations, read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub term: u64,
    pub renewal: Option<String>,
    pub report: Option<Report>,
    pub lost_term: Option<u64>,
    pub ballot: Option<BallotReport>,
}

impl Record {
    /// Reads the annotations; malformed values count as absent (a store is outside input).
    pub fn parse(annotations: &BTreeMap<String, String>) -> Self {
        let num = |k: &str| annotations.get(k).and_then(|v| v.parse::<u64>().ok());
        Record {
            term: num(TERM).unwrap_or(0),
            renewal: annotations.get(RENEWAL).cloned(),
            report: annotations
                .get(REPORT)
                .and_then(|v| serde_json::from_str(v).ok()),
            lost_term: num(LOST_TERM),
            ballot: annotations
                .get(BALLOT)
                .and_then(|v| serde_json::from_str(v).ok()),
        }
    }

    /// The store-side rule for a renewal of `term`: refused when this store's voter voted the
    /// member lost in this term or a later one, or the store already holds a newer term.
    pub fn accepts(&self, term: u64) -> bool {
        term >= self.term && self.lost_term.is_none_or(|lost| lost < term)
    }

    /// The annotations of a renewal of `term` (the voter's `lost-term` is kept as it is).
    pub fn renewal_annotations(
        term: u64,
        renewal: &str,
        report: &Report,
        ballot: Option<&BallotReport>,
    ) -> BTreeMap<String, String> {
        let mut a = BTreeMap::from([
            (TERM.to_owned(), term.to_string()),
            (RENEWAL.to_owned(), renewal.to_owned()),
            (
                REPORT.to_owned(),
                serde_json::to_string(report).unwrap_or_default(),
            ),
        ]);
        if let Some(b) = ballot {
            a.insert(
                BALLOT.to_owned(),
                serde_json::to_string(b).unwrap_or_default(),
            );
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_refuses_renewals_of_a_term_its_voter_voted_lost_and_older_terms() {
        let mut r = Record {
            term: 3,
            ..Record::default()
        };
        assert!(r.accepts(3) && r.accepts(4) && !r.accepts(2));
        r.lost_term = Some(3);
        assert!(!r.accepts(3));
        assert!(r.accepts(4), "a newer term starts afresh");
    }

    #[test]
    fn annotations_round_trip_and_garbage_counts_as_absent() {
        let report = Report {
            primary: true,
            timeline: Some(2),
            flushed: Some("0/3000060".into()),
            slow_stores: vec![SlowStore {
                voter: "b".into(),
                bound_ms: 2000,
                rounds: 3,
            }],
            ..Report::default()
        };
        let ballot = BallotReport {
            about: "a".into(),
            term: 2,
            lost: true,
            heartbeat_age_ms: 10_500,
        };
        let a = Record::renewal_annotations(2, "x/7", &report, Some(&ballot));
        let r = Record::parse(&a);
        assert_eq!(r.term, 2);
        assert_eq!(r.report.as_ref(), Some(&report));
        assert_eq!(r.ballot.as_ref(), Some(&ballot));
        assert_eq!(
            Report::lsn(r.report.as_ref().unwrap().flushed.as_ref()),
            Some(Lsn(0x3000060))
        );
        let junk = BTreeMap::from([
            (TERM.to_owned(), "-1".to_owned()),
            (REPORT.to_owned(), "{".to_owned()),
            (LOST_TERM.to_owned(), "x".to_owned()),
        ]);
        assert_eq!(Record::parse(&junk), Record::default());
        assert_eq!(lease_name("fed", "pg", "a"), "federator.fed.pg.a");
    }
}
