//! What the controller remembers between reconciles, per topology, and the one clock it measures
//! that memory with.
//!
//! A reconcile decides from two watch-fed stores: the hub's (topologies) and the member pool's
//! (Clusters). Both lag the controller's own writes by a few milliseconds. A reconcile that runs
//! in between decides on the hub's older version, and its status write is refused (409) by its
//! resourceVersion precondition: the newer version is on its way through the watch and
//! reconciles again. Deciding on our own write's answer instead ("read-your-writes") was
//! removed in session 8: switched off, it cost a 409 in a few switchovers of a hundred and no
//! measurable outage (`docs/benchmarks.md`, "The four windows switched off one at a time").
//! The ledger holds, per topology (by uid):
//!
//! - **held**: a decided status not written yet, because it is inside a running operation and no
//!   member patch follows it. The next reconcile decides on top of it, if the hub's object is
//!   still the version it was decided on. It is written with the next write (every write carries
//!   the whole status), when the operation holds or ends, or [`MAX_DELAY`] after it was first
//!   held (a timer).
//! - **sent**: the last member patch the member accepted, and when it answered. The same patch
//!   is not sent again while no change of that Cluster has been delivered since the answer, and
//!   in any case for [`SETTLE`] after it.
//!
//! and, per member Cluster, when the member pool last **delivered** a change of it (the start of
//! `federator_reaction_seconds`, and what reopens the patch gate).
//!
//! Every instant comes from one injected [`Monotonic`] clock; nothing here is process-global.
//! Why the two combine safely is `docs/controller.md` ("The ledger").

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use topology::plan::Action;
use topology::{DistributedTopology, DistributedTopologyStatus};

use super::runtime::clock::Monotonic;
use crate::members::ClusterKey;

/// The longest a status change waits for a write that carries it: the step display of
/// `federator switchover --wait` and `federator status` lag by at most this. Longer than a
/// switchover's write outage on purpose: at 250 ms, the flush of the changes seen while the old
/// primary shuts down fell due about when its token arrived, and the reconcile that answered the
/// token had to wait for that write.
pub const MAX_DELAY: Duration = Duration::from_secs(1);

/// How long after its answer a patch is not sent again even though a change of its Cluster was
/// delivered meanwhile: a change already on its way when the patch was answered is delivered
/// after the answer while the store still lacks the patch.
pub const SETTLE: Duration = Duration::from_secs(1);

/// The retry after a first failed reconcile; each further failure in a row doubles it, up to
/// [`RETRY_MAX`]. A hub that answers 429 (API Priority and Fairness) or is away then sees each
/// topology back off on its own instead of every topology retrying every 2 s.
pub const RETRY_FIRST: Duration = Duration::from_secs(2);

/// The longest retry delay: an operation's deadlines are minutes, and a watch event (the hub's
/// or a member's) reconciles sooner anyway.
pub const RETRY_MAX: Duration = Duration::from_secs(30);

/// What to do with a decided status ([`View::write`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    /// Write it now.
    Now(Box<DistributedTopologyStatus>),
    /// Keep it in the ledger; reconcile again within `held.after` to write it if nothing else
    /// does.
    Later(Box<Held>),
    /// Nothing to write: the hub already holds it.
    Nothing,
}

/// The controller's memory between reconciles. Shared by all reconciles through the `Context`.
pub struct Ledger {
    clock: Arc<dyn Monotonic>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    topologies: HashMap<String, Entry>,
    delivered: HashMap<ClusterKey, Instant>,
}

#[derive(Default)]
struct Entry {
    /// Reconciles in a row that failed (reset by one that did not).
    failures: u32,
    held: Option<Held>,
    sent: Option<Sent>,
}

/// A decided status kept back, not written yet.
#[derive(Clone, Debug, PartialEq)]
pub struct Held {
    /// resourceVersion of the hub's object the status was decided on.
    base: String,
    status: DistributedTopologyStatus,
    /// When it was first held (the window runs from here).
    since: Instant,
    /// What is left of the window: the reconcile comes back after this long to write it.
    pub after: Duration,
}

#[derive(Clone, Debug)]
struct Sent {
    operation: Option<String>,
    action: Action,
    cluster: ClusterKey,
    answered: Instant,
}

fn uid_of(topo: &DistributedTopology) -> Option<&str> {
    topo.metadata.uid.as_deref()
}

impl Ledger {
    pub fn new(clock: Arc<dyn Monotonic>) -> Self {
        Self {
            clock,
            state: Mutex::new(State::default()),
        }
    }

    /// Now, on the ledger's clock: the only source of instants in the reconcile.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    // --- delivery times -------------------------------------------------------------------

    /// The member pool delivered a change of `key` (now).
    pub fn delivered(&self, key: &ClusterKey) {
        let now = self.now();
        self.lock().delivered.insert(key.clone(), now);
    }

    /// When the latest change of `key` was delivered (`None`: never, yet).
    pub fn last_delivered(&self, key: &ClusterKey) -> Option<Instant> {
        self.lock().delivered.get(key).copied()
    }

    // --- what a decision reads, and what its effects record ---------------------------------

    /// A snapshot of what is remembered for `topo` (by uid), taken now: what a reconcile's pure
    /// decision reads of the ledger. A status held on another version of `topo` is dropped on
    /// the way (somebody wrote since it was decided).
    pub fn view(&self, topo: &DistributedTopology) -> View {
        let now = self.now();
        let mut guard = self.lock();
        let state = &mut *guard;
        let entry = uid_of(topo).and_then(|uid| state.topologies.get_mut(uid));
        let version = topo.metadata.resource_version.as_deref();
        let entry = entry.map(|e| {
            if e.held
                .as_ref()
                .is_some_and(|h| version != Some(h.base.as_str()))
            {
                e.held = None;
            }
            &*e
        });
        let delivered = topo
            .spec
            .members
            .iter()
            .map(ClusterKey::of_member)
            .filter_map(|key| state.delivered.get(&key).map(|at| (key, *at)))
            .collect();
        View {
            now,
            held: entry.and_then(|e| e.held.clone()),
            sent: entry.and_then(|e| e.sent.clone()),
            delivered,
        }
    }

    /// Keeps `held` for `topo` (`None`: forgets what was held; every decision replaces it).
    pub fn hold(&self, topo: &DistributedTopology, held: Option<Held>) {
        let Some(uid) = uid_of(topo) else {
            return;
        };
        let mut state = self.lock();
        match held {
            Some(held) => state.topologies.entry(uid.to_owned()).or_default().held = Some(held),
            None => {
                if let Some(entry) = state.topologies.get_mut(uid) {
                    entry.held = None;
                }
            }
        }
    }

    // --- failed reconciles ----------------------------------------------------------------

    /// A reconcile of `topo` failed: how many failed in a row now, and when to retry.
    ///
    /// The delay doubles from [`RETRY_FIRST`] to [`RETRY_MAX`], minus up to a quarter chosen
    /// from the topology's uid and the count: topologies that failed together (a hub outage)
    /// spread their retries without a random source, so a test can predict them.
    pub fn failed(&self, topo: &DistributedTopology) -> (u32, Duration) {
        let uid = uid_of(topo).unwrap_or_default().to_owned();
        let failures = {
            let mut state = self.lock();
            let entry = state.topologies.entry(uid.clone()).or_default();
            entry.failures = entry.failures.saturating_add(1);
            entry.failures
        };
        (failures, retry_delay(&uid, failures))
    }

    /// A reconcile of `topo` did not fail: the next failure starts the backoff again.
    pub fn reconciled(&self, topo: &DistributedTopology) {
        if let Some(uid) = uid_of(topo)
            && let Some(entry) = self.lock().topologies.get_mut(uid)
        {
            entry.failures = 0;
        }
    }

    /// Forgets everything remembered for `topo` (it is gone: its finalizer was removed).
    pub fn forget(&self, topo: &DistributedTopology) {
        if let Some(uid) = uid_of(topo) {
            self.lock().topologies.remove(uid);
        }
    }

    /// Records that the member accepted `action` (answered now).
    pub fn accepted(
        &self,
        uid: &str,
        operation: Option<&str>,
        action: &Action,
        cluster: ClusterKey,
    ) {
        let answered = self.now();
        self.lock()
            .topologies
            .entry(uid.to_owned())
            .or_default()
            .sent = Some(Sent {
            operation: operation.map(str::to_owned),
            action: action.clone(),
            cluster,
            answered,
        });
    }
}

/// What the ledger remembered for one topology when a reconcile started: read by the pure
/// decision (`decide`), never written to. Its answers are those of the ledger at [`View::now`].
#[derive(Clone, Debug)]
pub struct View {
    /// When the view was taken, on the ledger's clock.
    pub now: Instant,
    held: Option<Held>,
    sent: Option<Sent>,
    /// When the member pool last delivered a change of each of the topology's Clusters.
    delivered: HashMap<ClusterKey, Instant>,
}

impl View {
    /// `topo` with the status held back for it, if that status was decided on this very version
    /// of the object (a held status on another version is stale: somebody wrote).
    pub fn on_top(&self, topo: &DistributedTopology) -> Option<DistributedTopology> {
        let held = self.held_on(topo)?;
        let mut with = topo.clone();
        with.status = Some(held.status.clone());
        Some(with)
    }

    /// The status a reconcile of `topo` starts from: the one held for this version, else the
    /// hub's.
    pub fn status_of<'a>(
        &'a self,
        topo: &'a DistributedTopology,
    ) -> Option<&'a DistributedTopologyStatus> {
        self.held_on(topo)
            .map(|h| &h.status)
            .or(topo.status.as_ref())
    }

    fn held_on(&self, topo: &DistributedTopology) -> Option<&Held> {
        self.held
            .as_ref()
            .filter(|h| topo.metadata.resource_version.as_deref() == Some(h.base.as_str()))
    }

    /// Whether `decided` is written now, held, or needs no write. `stored` is the object as the
    /// hub has it, `patch_follows` whether a patch comes after the write (then it is always
    /// written: the step log precedes every side effect).
    pub fn write(
        &self,
        stored: &DistributedTopology,
        decided: &DistributedTopologyStatus,
        patch_follows: bool,
    ) -> Write {
        if patch_follows || stored.metadata.uid.is_none() {
            return Write::Now(Box::new(decided.clone()));
        }
        if stored.status.as_ref() == Some(decided) {
            return Write::Nothing;
        }
        if !may_wait(stored.status.as_ref(), decided) {
            return Write::Now(Box::new(decided.clone()));
        }
        let since = self.held_on(stored).map_or(self.now, |h| h.since);
        let waited = self.now.saturating_duration_since(since);
        if waited >= MAX_DELAY {
            return Write::Now(Box::new(decided.clone()));
        }
        Write::Later(Box::new(Held {
            base: stored.metadata.resource_version.clone().unwrap_or_default(),
            status: decided.clone(),
            since,
            after: MAX_DELAY - waited,
        }))
    }

    /// The patch gate: true when `action` of `operation` is the patch last accepted for this
    /// topology, and either no change of `cluster` was delivered after it was answered or it was
    /// answered less than [`SETTLE`] ago: the member has it; its watch has not shown it yet.
    pub fn awaiting_watch(
        &self,
        operation: Option<&str>,
        action: &Action,
        cluster: &ClusterKey,
    ) -> bool {
        let delivered = self.delivered.get(cluster).copied();
        self.sent.as_ref().is_some_and(|sent| {
            sent.operation.as_deref() == operation
                && sent.action == *action
                && sent.cluster == *cluster
                && (delivered.is_none_or(|at| at <= sent.answered)
                    || self.now.saturating_duration_since(sent.answered) < SETTLE)
        })
    }

    /// When the member pool last delivered a change of one of the topology's Clusters: the
    /// change a patch of this reconcile answers (the start of `federator_reaction_seconds`).
    pub fn last_change(&self) -> Option<Instant> {
        self.delivered.values().copied().max()
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

/// The retry delay after `failures` failed reconciles in a row of the topology `uid`.
fn retry_delay(uid: &str, failures: u32) -> Duration {
    use std::hash::{Hash, Hasher};
    let doubled = RETRY_FIRST.saturating_mul(1 << failures.clamp(1, 16).saturating_sub(1));
    let base = doubled.min(RETRY_MAX);
    // SipHash with fixed keys: the same spread on every run and every replica.
    let mut hasher = std::hash::DefaultHasher::new();
    (uid, failures).hash(&mut hasher);
    let quarter = base / 4;
    let spread = (hasher.finish() % 1000) as u32;
    base - quarter * spread / 1000
}

#[cfg(test)]
mod tests;
