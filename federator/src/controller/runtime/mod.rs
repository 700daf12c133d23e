//! The controller's plumbing, apart from what it decides: leadership, metrics, the clock and the
//! planner's deadlines as timers.

pub(super) mod clock;
pub(super) mod deadlines;
pub(super) mod leader;
pub(super) mod metrics;
mod state_metrics;
