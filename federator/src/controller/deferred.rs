//! Status changes held back while a switchover runs.
//!
//! While an operation runs, the members change many times without anything for Federator to do
//! (the old primary fencing, shutting down and restarting as a replica; the target promoting):
//! each such change used to be a status write of the whole topology, about ten per switchover,
//! most of them inside the write outage. Each write costs the hub's API server and etcd, and
//! keeps this topology's reconcile busy when the next member change (the token) is the one that
//! matters.
//!
//! So, while an operation runs and neither holds nor ends, a decided status that leads to no
//! member patch is kept here instead of written, and the next reconcile decides on top of it.
//! It reaches the hub with the next write that precedes a patch (that write carries the whole
//! status), when the operation holds or ends, or at the latest [`MAX_DELAY`] after it was
//! first held back (a timer). Nothing is lost that safety needs: the step log the hub holds is
//! still written before every side effect with its resourceVersion precondition, and a
//! controller that restarts without what was held here decides it again from the members.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use topology::{DistributedTopology, DistributedTopologyStatus};

/// The longest a status change waits for a write that carries it: the step display of
/// `federator switchover --wait` and `federator status` lag by at most this. Longer than a
/// switchover's write outage on purpose: at 250 ms, the flush of the changes seen while the old
/// primary shuts down falls due about when its token arrives, and the reconcile that answers
/// the token has to wait for that write (one bench run at 250 ms measured a wait of 81 ms
/// before the Promote reaction could start).
pub const MAX_DELAY: Duration = Duration::from_secs(1);

struct Held {
    /// resourceVersion of the hub's object the status was decided on.
    base: String,
    status: DistributedTopologyStatus,
    since: Instant,
}

/// Held-back statuses per topology (by uid).
#[derive(Default)]
pub struct Deferred {
    held: Mutex<HashMap<String, Held>>,
}

/// What to do with a decided status.
#[derive(Debug, PartialEq, Eq)]
pub enum Write {
    /// Write it now.
    Now,
    /// Keep it; reconcile again within this long to write it if nothing else does.
    Later(Duration),
    /// Nothing to write: the hub already holds it.
    Nothing,
}

impl Deferred {
    /// `topo` with the status held back for it, if that status was decided on this very
    /// version of the object; a held status on another version is dropped (somebody wrote).
    pub fn on_top(&self, topo: &DistributedTopology) -> Option<DistributedTopology> {
        let uid = topo.metadata.uid.as_deref()?;
        let mut held = self.lock();
        let entry = held.get(uid)?;
        if topo.metadata.resource_version.as_deref() != Some(entry.base.as_str()) {
            held.remove(uid);
            return None;
        }
        let mut with = topo.clone();
        with.status = Some(entry.status.clone());
        Some(with)
    }

    /// Decides whether `decided` is written now. `stored` is the object as the hub has it,
    /// `patch_follows` whether a member patch comes after the write.
    pub fn decide(
        &self,
        stored: &DistributedTopology,
        decided: &DistributedTopologyStatus,
        patch_follows: bool,
        now: Instant,
    ) -> Write {
        let Some(uid) = stored.metadata.uid.clone() else {
            return Write::Now;
        };
        let mut held = self.lock();
        let since = held.get(&uid).map(|h| h.since);
        if patch_follows {
            held.remove(&uid);
            return Write::Now;
        }
        if stored.status.as_ref() == Some(decided) {
            held.remove(&uid);
            return Write::Nothing;
        }
        if !may_wait(stored.status.as_ref(), decided) {
            held.remove(&uid);
            return Write::Now;
        }
        let since = since.unwrap_or(now);
        let waited = now.saturating_duration_since(since);
        if waited >= MAX_DELAY {
            held.remove(&uid);
            return Write::Now;
        }
        held.insert(
            uid,
            Held {
                base: stored.metadata.resource_version.clone().unwrap_or_default(),
                status: decided.clone(),
                since,
            },
        );
        Write::Later(MAX_DELAY - waited)
    }

    /// Forgets what is held for `topo` (its write was refused, or it was written).
    pub fn forget(&self, topo: &DistributedTopology) {
        if let Some(uid) = topo.metadata.uid.as_deref() {
            self.lock().remove(uid);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A change may wait only inside one running operation: the hub already records it as running
/// (so `SwitchoverInProgress` is there), and it neither holds nor ends with this change.
fn may_wait(
    stored: Option<&DistributedTopologyStatus>,
    decided: &DistributedTopologyStatus,
) -> bool {
    let running = |s: &DistributedTopologyStatus| {
        s.operation
            .as_ref()
            .filter(|op| op.outcome.is_none() && op.hold.is_none())
            .map(|op| op.id.clone())
    };
    match (stored.and_then(running), running(decided)) {
        (Some(before), Some(after)) => before == after,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;
    use kube::core::ObjectMeta;
    use topology::DistributedTopologySpec;
    use topology::api::{Hold, Operation};
    use topology::{OperationKind, StepKind};

    fn t0() -> Timestamp {
        "2026-12-04T18:00:00Z".parse().expect("timestamp")
    }

    fn running(step: StepKind) -> DistributedTopologyStatus {
        let mut op = Operation::new("3-a-to-b".into(), OperationKind::Switchover, "a", "b", t0());
        op.step = step;
        DistributedTopologyStatus {
            operation: Some(op),
            ..Default::default()
        }
    }

    fn holding_at(step: StepKind) -> DistributedTopologyStatus {
        let mut status = running(step);
        if let Some(op) = status.operation.as_mut() {
            op.hold = Some(Hold {
                reason: "TokenTimeout".into(),
                message: "no token".into(),
            });
        }
        status
    }

    fn stored(version: &str, status: DistributedTopologyStatus) -> DistributedTopology {
        let spec: DistributedTopologySpec = serde_json::from_value(serde_json::json!({
            "members": [],
            "shape": {"star": {}},
            "primary": "a",
        }))
        .expect("a spec");
        let mut topo = DistributedTopology::new("pg", spec);
        topo.metadata = ObjectMeta {
            name: Some("pg".into()),
            namespace: Some("db".into()),
            uid: Some("uid-1".into()),
            resource_version: Some(version.into()),
            ..Default::default()
        };
        topo.status = Some(status);
        topo
    }

    fn with_phase(
        mut status: DistributedTopologyStatus,
        observed_primary: &str,
    ) -> DistributedTopologyStatus {
        status.observed_primary = Some(observed_primary.into());
        status
    }

    #[test]
    fn a_change_inside_a_running_operation_waits_and_the_next_reconcile_builds_on_it() {
        let d = Deferred::default();
        let hub = stored("10", running(StepKind::AwaitToken));
        let decided = with_phase(running(StepKind::AwaitToken), "none");
        let start = Instant::now();
        assert_eq!(
            d.decide(&hub, &decided, false, start),
            Write::Later(MAX_DELAY)
        );
        let next = d.on_top(&hub).expect("held status");
        assert_eq!(next.status.as_ref(), Some(&decided));
        assert_eq!(next.metadata.resource_version.as_deref(), Some("10"));
        // Still held 100 ms later: the timer shrinks to what is left.
        let later = start + Duration::from_millis(100);
        assert_eq!(
            d.decide(&hub, &decided, false, later),
            Write::Later(MAX_DELAY - Duration::from_millis(100))
        );
    }

    #[test]
    fn a_patch_a_hold_an_end_or_the_delay_writes_at_once() {
        let d = Deferred::default();
        let hub = stored("10", running(StepKind::AwaitToken));
        let start = Instant::now();
        let decided = with_phase(running(StepKind::AwaitToken), "none");
        // Before a patch: always written (the step log precedes every side effect).
        assert_eq!(
            d.decide(&hub, &running(StepKind::Promote), true, start),
            Write::Now
        );
        assert!(d.on_top(&hub).is_none(), "a write forgets what was held");
        // The delay runs out.
        assert!(matches!(
            d.decide(&hub, &decided, false, start),
            Write::Later(_)
        ));
        assert_eq!(
            d.decide(&hub, &decided, false, start + MAX_DELAY),
            Write::Now
        );
        // A hold, and an end.
        let held = holding_at(StepKind::AwaitToken);
        assert_eq!(d.decide(&hub, &held, false, start), Write::Now);
        let mut ended = running(StepKind::Done);
        ended.operation = None;
        assert_eq!(d.decide(&hub, &ended, false, start), Write::Now);
    }

    #[test]
    fn outside_a_running_operation_every_change_is_written() {
        let d = Deferred::default();
        let now = Instant::now();
        let idle = stored("10", DistributedTopologyStatus::default());
        let changed = with_phase(DistributedTopologyStatus::default(), "a");
        assert_eq!(d.decide(&idle, &changed, false, now), Write::Now);
        // The first write of an operation records it as running before anything waits.
        assert_eq!(
            d.decide(&idle, &running(StepKind::Validate), false, now),
            Write::Now
        );
        // An operation that holds on the hub: its changes are written.
        let holding = holding_at(StepKind::AwaitToken);
        let hub = stored("11", holding.clone());
        assert_eq!(
            d.decide(&hub, &with_phase(holding, "none"), false, now),
            Write::Now
        );
    }

    #[test]
    fn nothing_is_written_when_the_hub_holds_it_already() {
        let d = Deferred::default();
        let hub = stored("10", running(StepKind::AwaitToken));
        assert_eq!(
            d.decide(&hub, &running(StepKind::AwaitToken), false, Instant::now()),
            Write::Nothing
        );
    }

    #[test]
    fn a_held_status_on_an_older_version_is_dropped() {
        let d = Deferred::default();
        let hub = stored("10", running(StepKind::AwaitToken));
        let decided = with_phase(running(StepKind::AwaitToken), "none");
        assert!(matches!(
            d.decide(&hub, &decided, false, Instant::now()),
            Write::Later(_)
        ));
        // Somebody wrote the object (a spec edit, another controller): what was held is stale.
        let moved = stored("11", running(StepKind::AwaitToken));
        assert!(d.on_top(&moved).is_none());
        assert!(d.on_top(&hub).is_none(), "dropped, not kept for later");
        assert!(matches!(
            d.decide(&hub, &decided, false, Instant::now()),
            Write::Later(_)
        ));
        d.forget(&hub);
        assert!(d.on_top(&hub).is_none());
    }
}
