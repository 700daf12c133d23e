//! Read-your-own-writes for the step log.
//!
//! A reconcile is handed the topology from the controller's watch-fed store. Right after a status
//! write the store can still hold the version that write replaced, because the write's watch
//! event is a few milliseconds behind the write's answer. A member change arriving in those
//! milliseconds (the demotion token, during a switchover) would reconcile that stale version and
//! its status write would be refused with 409; the reconcile then waits for the watch and runs
//! again — one more hub round trip on the critical path, every time.
//!
//! So every successful write's answer is kept, with the resourceVersions it superseded. A store
//! version that is one of those is exactly "the store has not seen our writes yet", and the
//! kept answer is used instead. resourceVersions are only compared for equality (they are
//! opaque). Any other version in the store — a spec edit, another writer — wins, and the kept
//! answer is forgotten. Safety does not rest on this: every write still carries the
//! resourceVersion precondition, so a wrong guess costs a 409, never a lost update.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use topology::DistributedTopology;

/// How many superseded versions are remembered per topology: the store lags by one or two writes.
const CHAIN: usize = 8;

struct Kept {
    written: Arc<DistributedTopology>,
    /// resourceVersions older than `written`, as written by this process, newest last.
    superseded: Vec<String>,
}

/// The last status write per topology (by uid).
#[derive(Default)]
pub struct OwnWrites {
    kept: Mutex<HashMap<String, Kept>>,
}

impl OwnWrites {
    /// The freshest version of `from_store` this process knows: its own last write when the store
    /// has not caught up with it, else `from_store` itself.
    pub fn freshest(&self, from_store: Arc<DistributedTopology>) -> Arc<DistributedTopology> {
        let Some(uid) = from_store.metadata.uid.as_deref() else {
            return from_store;
        };
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(entry) = kept.get(uid) else {
            return from_store;
        };
        let store_version = from_store.metadata.resource_version.as_deref();
        if store_version.is_some_and(|v| entry.superseded.iter().any(|s| s == v)) {
            return entry.written.clone();
        }
        // Caught up, or moved past us: the store is the truth from here on.
        kept.remove(uid);
        from_store
    }

    /// Records a successful write of `before`'s status, answered with `written`.
    pub fn wrote(&self, before: &DistributedTopology, written: DistributedTopology) {
        let (Some(uid), Some(old)) = (
            written.metadata.uid.clone(),
            before.metadata.resource_version.clone(),
        ) else {
            return;
        };
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let mut superseded = match kept.remove(&uid) {
            // Writing on top of our own last write extends the chain.
            Some(entry)
                if entry.written.metadata.resource_version.as_deref() == Some(old.as_str()) =>
            {
                entry.superseded
            }
            _ => Vec::new(),
        };
        superseded.push(old);
        if superseded.len() > CHAIN {
            superseded.remove(0);
        }
        kept.insert(
            uid,
            Kept {
                written: Arc::new(written),
                superseded,
            },
        );
    }

    /// Forgets `topo`: a write was refused, so what we kept may be stale too.
    pub fn forget(&self, topo: &DistributedTopology) {
        if let Some(uid) = topo.metadata.uid.as_deref() {
            self.kept
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(uid);
        }
    }
}

#[cfg(test)]
mod tests {
    use kube::api::ObjectMeta;
    use topology::DistributedTopologySpec;

    use super::*;

    fn at(version: &str, primary: &str) -> DistributedTopology {
        let spec: DistributedTopologySpec = serde_json::from_value(serde_json::json!({
            "primary": primary,
            "members": [],
            "shape": {"star": {}},
        }))
        .expect("a spec");
        DistributedTopology {
            metadata: ObjectMeta {
                name: Some("pg".into()),
                uid: Some("uid-1".into()),
                resource_version: Some(version.into()),
                ..ObjectMeta::default()
            },
            spec,
            status: None,
        }
    }

    fn version(t: &DistributedTopology) -> &str {
        t.metadata.resource_version.as_deref().unwrap_or_default()
    }

    #[test]
    fn a_store_behind_our_writes_is_replaced_by_the_last_write() {
        let writes = OwnWrites::default();
        writes.wrote(&at("10", "a"), at("11", "a"));
        writes.wrote(&at("11", "a"), at("12", "a"));
        // The store has seen neither write, or only the first.
        assert_eq!(version(&writes.freshest(Arc::new(at("10", "a")))), "12");
        assert_eq!(version(&writes.freshest(Arc::new(at("11", "a")))), "12");
    }

    #[test]
    fn a_store_that_caught_up_or_moved_on_wins() {
        let writes = OwnWrites::default();
        writes.wrote(&at("10", "a"), at("11", "a"));
        assert_eq!(version(&writes.freshest(Arc::new(at("11", "a")))), "11");
        // Forgotten once caught up: a later stale version is not "ours" any more.
        assert_eq!(version(&writes.freshest(Arc::new(at("10", "a")))), "10");

        writes.wrote(&at("20", "a"), at("21", "a"));
        // Someone else wrote (a spec edit): the store's version is used, ours is dropped.
        let edited = writes.freshest(Arc::new(at("22", "b")));
        assert_eq!(
            (version(&edited), edited.spec.primary.as_str()),
            ("22", "b")
        );
        assert_eq!(version(&writes.freshest(Arc::new(at("20", "a")))), "20");
    }

    #[test]
    fn a_write_on_another_base_starts_a_new_chain_and_a_refusal_forgets() {
        let writes = OwnWrites::default();
        writes.wrote(&at("10", "a"), at("11", "a"));
        // Written on top of a version we did not write: 10 is no longer known as ours.
        writes.wrote(&at("15", "a"), at("16", "a"));
        assert_eq!(version(&writes.freshest(Arc::new(at("10", "a")))), "10");
        writes.wrote(&at("20", "a"), at("21", "a"));
        writes.forget(&at("20", "a"));
        assert_eq!(version(&writes.freshest(Arc::new(at("20", "a")))), "20");
    }
}
