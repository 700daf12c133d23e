//! The member patch each topology sent last, so that it is not sent again before the member's
//! watch has shown it.
//!
//! A reconcile decides from the member pool's watch-fed stores. Right after a member patch was
//! answered, the store can still show the Cluster without it; a reconcile woken in between by
//! anything else — most often the watch event of our own status write — decides the same patch
//! again and sends it a second time. Harmless (patches are idempotent), but it is a second
//! server-side dry run, admission webhook call and write on the member exactly while that
//! member's operator is fencing, demoting or promoting PostgreSQL, i.e. inside the outage.
//!
//! The same patch is held back only while no change of that Cluster has been delivered since the
//! patch was answered: the watch event our patch causes is such a change, and so is anything
//! that could have undone it. Safety does not depend on this (a skipped patch is one that the
//! member already accepted); the worst a wrong guess does is send a patch twice, as before.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use topology::plan::Action;

use crate::members::ClusterKey;

struct Sent {
    operation: Option<String>,
    action: Action,
    cluster: ClusterKey,
    answered: Instant,
}

/// The last member patch per topology (by uid) that the member accepted.
#[derive(Default)]
pub struct SentPatches {
    last: Mutex<HashMap<String, Sent>>,
}

impl SentPatches {
    /// True when `action` of `operation` is the patch last accepted for topology `uid`, and no
    /// change of `cluster` was delivered after it was answered (`delivered`: when the latest
    /// was): the member has it; its watch has not shown it yet.
    pub fn awaiting_watch(
        &self,
        uid: &str,
        operation: Option<&str>,
        action: &Action,
        cluster: &ClusterKey,
        delivered: Option<Instant>,
    ) -> bool {
        let last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        last.get(uid).is_some_and(|sent| {
            sent.operation.as_deref() == operation
                && sent.action == *action
                && sent.cluster == *cluster
                && delivered.is_none_or(|at| at <= sent.answered)
        })
    }

    /// Records that the member accepted `action` (answered now).
    pub fn accepted(
        &self,
        uid: &str,
        operation: Option<&str>,
        action: &Action,
        cluster: ClusterKey,
    ) {
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                uid.to_owned(),
                Sent {
                    operation: operation.map(str::to_owned),
                    action: action.clone(),
                    cluster,
                    answered: Instant::now(),
                },
            );
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;
    use topology::StepKind;

    use super::*;

    fn promote(token: &str) -> Action {
        Action {
            step: StepKind::Promote,
            member: "pg-b".into(),
            patch: json!({"spec": {"replica": {"primary": "pg-b", "promotionToken": token}}}),
        }
    }

    fn cluster() -> ClusterKey {
        ClusterKey {
            member: "eu-west".into(),
            namespace: "db".into(),
            name: "pg-b".into(),
        }
    }

    #[test]
    fn the_same_patch_waits_for_the_members_watch() {
        let sent = SentPatches::default();
        let before = Instant::now();
        sent.accepted("uid", Some("op-1"), &promote("T"), cluster());
        // Nothing delivered since the answer: the store is behind our own patch.
        assert!(sent.awaiting_watch("uid", Some("op-1"), &promote("T"), &cluster(), None));
        assert!(sent.awaiting_watch("uid", Some("op-1"), &promote("T"), &cluster(), Some(before)));
        // A change delivered after the answer: decide on it, and send again if it says so.
        let later = Instant::now() + Duration::from_millis(1);
        assert!(!sent.awaiting_watch("uid", Some("op-1"), &promote("T"), &cluster(), Some(later)));
    }

    #[test]
    fn another_patch_operation_or_topology_is_sent() {
        let sent = SentPatches::default();
        sent.accepted("uid", Some("op-1"), &promote("T"), cluster());
        assert!(!sent.awaiting_watch("uid", Some("op-1"), &promote("U"), &cluster(), None));
        assert!(!sent.awaiting_watch("uid", Some("op-2"), &promote("T"), &cluster(), None));
        assert!(!sent.awaiting_watch("other", Some("op-1"), &promote("T"), &cluster(), None));
    }
}
