//! Deadlines are timers, not polling: the planner says how long until the current step's
//! deadline (or retry), and the reconcile asks kube-runtime to run again then. Everything else
//! wakes the controller through watches (the topology, or a member's Cluster).

use std::time::Duration;

use kube::runtime::controller::Action;

/// Requeue a little after the planner's instant, so the re-check lands past the deadline rather
/// than a hair before it (which would just schedule another wake-up).
const MARGIN: Duration = Duration::from_millis(20);

/// The kube-runtime action for a reconcile that wants to be re-run after `after` (or only on change).
pub fn action(after: Option<Duration>) -> Action {
    match after {
        Some(after) => Action::requeue(after + MARGIN),
        None => Action::await_change(),
    }
}
