//! The last non-empty `status.demotionToken` each member Cluster showed (CNPG #11074).
//!
//! A demotion token can appear and be wiped again between two reconciles: the controller reads
//! the store when it runs, not at every watch event, and CNPG's clean-up may empty the token a
//! few milliseconds after writing it. Every watch event passes through here, so a token that was
//! visible for one event is kept. A token belongs to one demotion: it is kept with the Cluster's
//! uid (a re-created Cluster never inherits it) and its own timeline (each demotion of a Cluster
//! happens on a new timeline), and with when it was first seen, so a reader can refuse a token
//! older than the operation that wants it.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;
use topology::cnpg::Cluster;
use topology::token::PromotionToken;

use super::key::ClusterKey;

/// A demotion token a Cluster showed at some point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetainedToken {
    /// `metadata.uid` of the Cluster that showed it.
    pub uid: String,
    /// The token's `latestCheckpointTimelineID` (`None`: the token does not decode; it is kept
    /// anyway, the controller's token check refuses it with the reason).
    pub timeline: Option<u32>,
    pub token: String,
    /// When this process first saw this token on this Cluster.
    pub seen_at: Timestamp,
}

/// The last non-empty demotion token per Cluster.
#[derive(Debug, Default)]
pub(crate) struct RetainedTokens {
    last: BTreeMap<ClusterKey, RetainedToken>,
}

impl RetainedTokens {
    /// Records what `cluster` (seen at `now`) shows: a new non-empty token replaces the kept one;
    /// an empty token keeps it; a Cluster with another uid (deleted and re-created) drops it.
    pub fn see(&mut self, key: &ClusterKey, cluster: &Cluster, now: Timestamp) {
        let uid = cluster.metadata.uid.clone().unwrap_or_default();
        if self.last.get(key).is_some_and(|kept| kept.uid != uid) {
            self.last.remove(key);
        }
        let Some(token) = cluster
            .status
            .as_ref()
            .and_then(|s| s.demotion_token.as_deref())
            .filter(|t| !t.is_empty())
        else {
            return;
        };
        if self.last.get(key).is_some_and(|kept| kept.token == token) {
            return;
        }
        let timeline = PromotionToken::decode(token)
            .ok()
            .and_then(|t| t.timeline());
        self.last.insert(
            key.clone(),
            RetainedToken {
                uid,
                timeline,
                token: token.to_owned(),
                seen_at: now,
            },
        );
    }

    pub fn forget(&mut self, key: &ClusterKey) {
        self.last.remove(key);
    }

    pub fn get(&self, key: &ClusterKey) -> Option<&RetainedToken> {
        self.last.get(key)
    }
}

#[cfg(test)]
mod tests {
    use topology::cnpg::{ClusterSpec, ClusterStatus};

    use super::*;

    fn key() -> ClusterKey {
        ClusterKey {
            member: "eu-central".into(),
            namespace: "databases".into(),
            name: "pg-a".into(),
        }
    }

    fn token(timeline: &str) -> String {
        PromotionToken {
            latest_checkpoint_timeline_id: timeline.into(),
            redo_wal_file: format!("0000000{timeline}0000000000000003"),
            database_system_identifier: "7300000000000000001".into(),
            latest_checkpoint_redo_location: "0/3000028".into(),
            time_of_latest_checkpoint: "Mon Nov 23 08:00:00 2026".into(),
            operator_version: "test".into(),
        }
        .encode()
    }

    fn cluster(uid: &str, demotion_token: Option<&str>) -> Cluster {
        let mut c = Cluster::new("pg-a", ClusterSpec::default());
        c.metadata.namespace = Some("databases".into());
        c.metadata.uid = Some(uid.into());
        c.status = Some(ClusterStatus {
            demotion_token: demotion_token.map(str::to_owned),
            ..ClusterStatus::default()
        });
        c
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).unwrap()
    }

    #[test]
    fn a_wiped_token_is_kept_with_its_uid_timeline_and_first_sighting() {
        let mut tokens = RetainedTokens::default();
        let t2 = token("2");
        tokens.see(&key(), &cluster("u1", None), at(0));
        assert_eq!(tokens.get(&key()), None);
        tokens.see(&key(), &cluster("u1", Some(&t2)), at(1));
        // The same token again (a status update of another field) keeps the first sighting.
        tokens.see(&key(), &cluster("u1", Some(&t2)), at(2));
        // #11074: clean-up wipes it.
        tokens.see(&key(), &cluster("u1", Some("")), at(3));
        tokens.see(&key(), &cluster("u1", None), at(4));
        assert_eq!(
            tokens.get(&key()),
            Some(&RetainedToken {
                uid: "u1".into(),
                timeline: Some(2),
                token: t2,
                seen_at: at(1),
            })
        );
    }

    #[test]
    fn a_newer_demotion_replaces_the_token_and_a_recreated_cluster_drops_it() {
        let mut tokens = RetainedTokens::default();
        tokens.see(&key(), &cluster("u1", Some(&token("2"))), at(1));
        tokens.see(&key(), &cluster("u1", Some(&token("4"))), at(9));
        let kept = tokens.get(&key()).expect("kept");
        assert_eq!((kept.timeline, kept.seen_at), (Some(4), at(9)));
        // Deleted and re-created under the same name: the old instance's token is not its own.
        tokens.see(&key(), &cluster("u2", None), at(10));
        assert_eq!(tokens.get(&key()), None);
        tokens.see(&key(), &cluster("u2", Some("not base64")), at(11));
        assert_eq!(tokens.get(&key()).and_then(|k| k.timeline), None);
        tokens.forget(&key());
        assert_eq!(tokens.get(&key()), None);
    }
}
