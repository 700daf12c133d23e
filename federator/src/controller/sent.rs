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
//! The same patch is held back while no change of that Cluster has been delivered since the
//! patch was answered (the watch event our patch causes is such a change, and so is anything
//! that could have undone it), and in any case for [`SETTLE`] after the answer: a change that
//! was already on its way when the patch was answered (a status update the member's operator
//! wrote just before) is delivered after the answer while the store still lacks the patch. The
//! bench saw that send a Promote twice, 30 ms apart, in 2 of 40 ring switchovers. A reconcile
//! that holds a patch back comes back within [`SETTLE`], so a patch somebody undid is sent
//! again then. Safety does not depend on this (a skipped patch is one that the member already
//! accepted); the worst a wrong guess does is send a patch twice, as before.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use topology::plan::Action;

use crate::members::ClusterKey;

struct Sent {
    operation: Option<String>,
    action: Action,
    cluster: ClusterKey,
    answered: Instant,
}

/// How long after its answer a patch is held back even though a change of its Cluster was
/// delivered meanwhile.
pub const SETTLE: Duration = Duration::from_secs(1);

/// The last member patch per topology (by uid) that the member accepted.
#[derive(Default)]
pub struct SentPatches {
    last: Mutex<HashMap<String, Sent>>,
}

impl SentPatches {
    /// True when `action` of `operation` is the patch last accepted for topology `uid`, and
    /// either no change of `cluster` was delivered after it was answered (`delivered`: when the
    /// latest was) or it was answered less than [`SETTLE`] before `now`: the member has it; its
    /// watch has not shown it yet.
    pub fn awaiting_watch(
        &self,
        uid: &str,
        operation: Option<&str>,
        action: &Action,
        cluster: &ClusterKey,
        delivered: Option<Instant>,
        now: Instant,
    ) -> bool {
        let last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        last.get(uid).is_some_and(|sent| {
            sent.operation.as_deref() == operation
                && sent.action == *action
                && sent.cluster == *cluster
                && (delivered.is_none_or(|at| at <= sent.answered)
                    || now.saturating_duration_since(sent.answered) < SETTLE)
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
        let waits = |delivered, now| {
            sent.awaiting_watch(
                "uid",
                Some("op-1"),
                &promote("T"),
                &cluster(),
                delivered,
                now,
            )
        };
        let settled = Instant::now() + SETTLE;
        // Nothing delivered since the answer: the store is behind our own patch, however long.
        assert!(waits(None, before));
        assert!(waits(Some(before), settled));
        // A change delivered after the answer may have been on its way before the patch: it
        // does not open the gate until SETTLE has passed.
        let later = Instant::now() + Duration::from_millis(1);
        assert!(waits(Some(later), later));
        // After that, decide on it, and send again if it says so.
        assert!(!waits(Some(later), settled));
    }

    #[test]
    fn another_patch_operation_or_topology_is_sent() {
        let sent = SentPatches::default();
        sent.accepted("uid", Some("op-1"), &promote("T"), cluster());
        let now = Instant::now();
        for (uid, op, action) in [
            ("uid", "op-1", promote("U")),
            ("uid", "op-2", promote("T")),
            ("other", "op-1", promote("T")),
        ] {
            assert!(!sent.awaiting_watch(uid, Some(op), &action, &cluster(), None, now));
        }
    }
}
